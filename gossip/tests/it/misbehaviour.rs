//! Bad messages: a bundle with one bad signature delivers its valid votes, drops the bad one
//! and costs the sender; repeated offences ban the peer for a while; a removed validator's
//! votes are judged against the set of their own height.

use ed25519_dalek::{Signer, SigningKey};
use weft_consensus::{
    Height, HeightSets, Round, Signature, Signed, SignedVote, Validator, ValidatorId, ValidatorSet,
    ValueId, Vote, VoteType,
};
use weft_execution::SignatureError;
use weft_gossip::score::{BAN_MS, Offence, Scores, Verdict};
use weft_gossip::verify::{Rejection, verify_votes};
use weft_gossip::{GossipMode, Message, Router, VoteBundle};

const CHAIN: &str = "weft-gossip-test";

fn keys(n: u8) -> Vec<SigningKey> {
    (1..=n).map(|i| SigningKey::from_bytes(&[i; 32])).collect()
}

fn set(keys: &[SigningKey]) -> ValidatorSet {
    ValidatorSet::new(keys.iter().map(|k| Validator {
        id: ValidatorId(k.verifying_key().to_bytes()),
        power: 1,
    }))
    .unwrap()
}

fn signed_vote(key: &SigningKey) -> SignedVote {
    let message = Vote {
        vote_type: VoteType::Precommit,
        height: Height(3),
        round: Round(0),
        value: Some(ValueId([4; 32])),
        validator: ValidatorId(key.verifying_key().to_bytes()),
    };
    Signed {
        message,
        signature: Signature(key.sign(&message.sign_bytes(CHAIN)).to_bytes()),
    }
}

#[test]
fn a_bad_signature_in_a_bundle_costs_only_itself_and_its_sender() {
    let keys = keys(7);
    let validators = set(&keys);
    let mut votes: Vec<SignedVote> = keys.iter().map(signed_vote).collect();
    votes[3].signature.0[10] ^= 1;
    let bundle = VoteBundle::from_votes(&votes).unwrap();
    let unbundled: Vec<SignedVote> = bundle.votes().collect();
    let verdicts = verify_votes(CHAIN, &validators, &unbundled);
    let bad_validator = votes[3].message.validator;
    for (vote, verdict) in unbundled.iter().zip(&verdicts) {
        if vote.message.validator == bad_validator {
            assert_eq!(
                *verdict,
                Err(Rejection::Signature(SignatureError::BadSignature))
            );
        } else {
            assert_eq!(*verdict, Ok(()));
        }
    }
    // The node hands the router only the verified votes, and charges the sender for the rest.
    let mut router = Router::new(GossipMode::Semantic, validators, 2);
    let mut scores: Scores<usize> = Scores::new();
    let mut delivered = 0;
    for (vote, verdict) in unbundled.iter().zip(&verdicts) {
        match verdict {
            Ok(()) => delivered += router.on_verified(0, Message::Vote(*vote)).len(),
            Err(_) => {
                let verdict = scores.penalise(&0, Offence::BadSignature, 1_000);
                assert_eq!(verdict, Verdict::Tolerated { points: 25 });
            }
        }
    }
    assert_eq!(delivered, 6);
    assert_eq!(scores.points(&0), 25);
    assert!(!scores.is_banned(&0, 1_000));
}

#[test]
fn votes_from_outside_the_set_are_rejected() {
    let keys = keys(4);
    let validators = set(&keys[..3]);
    let votes: Vec<SignedVote> = keys.iter().map(signed_vote).collect();
    let verdicts = verify_votes(CHAIN, &validators, &votes);
    assert_eq!(verdicts[..3], [Ok(()), Ok(()), Ok(())]);
    assert_eq!(verdicts[3], Err(Rejection::UnknownValidator));
    // Signed for another chain: bad signature.
    let verdicts = verify_votes("another-chain", &validators, &votes[..3]);
    assert!(verdicts.iter().all(|v| v.is_err()));
}

#[test]
fn repeated_offences_ban_a_peer_for_a_while() {
    let mut scores: Scores<&str> = Scores::new();
    let mut now = 0;
    let mut verdict = Verdict::Tolerated { points: 0 };
    for _ in 0..4 {
        verdict = scores.penalise(&"peer", Offence::BadSignature, now);
        now += 10;
    }
    assert_eq!(
        verdict,
        Verdict::Banned {
            until_ms: 30 + BAN_MS
        }
    );
    assert!(scores.is_banned(&"peer", now));
    assert!(!scores.is_banned(&"other", now));
    // While banned, more offences change nothing; after it, the slate is clean.
    assert_eq!(
        scores.penalise(&"peer", Offence::Malformed, now),
        Verdict::Banned {
            until_ms: 30 + BAN_MS
        }
    );
    let later = 30 + BAN_MS + 1;
    assert!(!scores.is_banned(&"peer", later));
    assert_eq!(
        scores.penalise(&"peer", Offence::UnknownValidator, later),
        Verdict::Tolerated { points: 10 }
    );
    // One oversized frame and then a malformed message: 50 + 20, tolerated; two more: banned.
    assert!(matches!(
        scores.penalise(&"big", Offence::OversizedFrame, 0),
        Verdict::Tolerated { points: 50 }
    ));
    assert!(matches!(
        scores.penalise(&"big", Offence::OversizedFrame, 0),
        Verdict::Banned { .. }
    ));
}

#[test]
fn the_score_table_is_bounded() {
    use weft_gossip::score::SCORED_PEERS_MAX;
    let mut scores: Scores<usize> = Scores::new();
    for peer in 0..SCORED_PEERS_MAX + 50 {
        scores.penalise(&peer, Offence::UnknownValidator, 0);
    }
    let tracked = (0..SCORED_PEERS_MAX + 50)
        .filter(|peer| scores.points(peer) > 0)
        .count();
    assert_eq!(tracked, SCORED_PEERS_MAX);
}

fn vote_at(key: &SigningKey, height: u64) -> SignedVote {
    let message = Vote {
        height: Height(height),
        ..signed_vote(key).message
    };
    Signed {
        message,
        signature: Signature(key.sign(&message.sign_bytes(CHAIN)).to_bytes()),
    }
}

/// A validator removed from height 4 on: its votes of height 3 still verify and count toward
/// quorums, those of height 4 are refused as from outside the set (and charged), and a height
/// above the last one whose set is known is neither trusted nor blamed.
#[test]
fn a_removed_validators_votes_count_until_its_last_height_and_are_charged_after() {
    let keys = keys(4);
    let before = set(&keys);
    let after = set(&keys[..3]);
    let sets = HeightSets::new([(Height(3), before), (Height(4), after)]).unwrap();
    let removed = &keys[3];
    let old = verify_votes(CHAIN, sets.at(Height(3)).unwrap(), &[vote_at(removed, 3)]);
    assert_eq!(old, [Ok(())]);
    let new = verify_votes(CHAIN, sets.at(Height(4)).unwrap(), &[vote_at(removed, 4)]);
    assert_eq!(new, [Err(Rejection::UnknownValidator)]);
    assert!(
        sets.at(Height(5)).is_none(),
        "height 5's set is not known yet"
    );

    // Quorums are each height's own: three of four at height 3, three of three at height 4.
    assert!(!sets.at(Height(3)).unwrap().is_quorum(2));
    assert!(sets.at(Height(3)).unwrap().is_quorum(3));
    assert!(sets.at(Height(4)).unwrap().is_quorum(3));
    assert_eq!(sets.at(Height(4)).unwrap().total_power(), 3);
}
