//! The router over a sparse overlay, in memory: plain mode delivers every vote everywhere;
//! semantic mode delivers, for every (type, height, round, value), every vote or at least a
//! quorum, with fewer messages.

use std::collections::BTreeSet;

use weft_consensus::{
    Height, Round, Signature, Signed, SignedVote, Validator, ValidatorId, ValidatorSet, ValueId,
    Vote, VoteType,
};
use weft_gossip::{GossipMode, Message, Router, generate};

/// The votes one node delivered to consensus, as (type, voter, value).
type Delivered = BTreeSet<(VoteType, usize, Option<ValueId>)>;

fn id(index: usize) -> ValidatorId {
    ValidatorId([index as u8 + 1; 32])
}

fn validators(n: usize) -> ValidatorSet {
    ValidatorSet::new((0..n).map(|i| Validator {
        id: id(i),
        power: 1,
    }))
    .unwrap()
}

fn vote(vote_type: VoteType, from: usize, value: Option<ValueId>) -> SignedVote {
    Signed {
        message: Vote {
            vote_type,
            height: Height(1),
            round: Round(0),
            value,
            validator: id(from),
        },
        signature: Signature([from as u8; 64]),
    }
}

/// Runs one height's votes over an overlay until no queue holds anything. Returns what each
/// node delivered to consensus and the messages each node received.
fn run(
    mode: GossipMode,
    nodes: usize,
    degree: usize,
    seed: u64,
    votes_of: impl Fn(usize) -> Vec<SignedVote>,
) -> (Vec<Delivered>, Vec<u64>) {
    let overlay = generate(nodes, degree, 1, seed).unwrap();
    let neighbours: Vec<Vec<usize>> = (0..nodes)
        .map(|n| overlay.neighbours(n).iter().copied().collect())
        .collect();
    let mut routers: Vec<Router> = (0..nodes)
        .map(|n| Router::new(mode, validators(nodes), neighbours[n].len()))
        .collect();
    let mut delivered = vec![BTreeSet::new(); nodes];
    let mut received = vec![0u64; nodes];
    let record = |delivered: &mut BTreeSet<_>, messages: Vec<Message>| {
        for message in messages {
            if let Message::Vote(vote) = message {
                let index = vote.message.validator.0[0] as usize - 1;
                delivered.insert((vote.message.vote_type, index, vote.message.value));
            }
        }
    };
    for node in 0..nodes {
        for vote in votes_of(node) {
            let fresh = routers[node].publish(Message::Vote(vote));
            record(&mut delivered[node], fresh);
        }
    }
    for _round in 0..10_000 {
        let mut moved = false;
        for node in 0..nodes {
            for (slot, &neighbour) in neighbours[node].iter().enumerate() {
                let batch = routers[node].drain(slot);
                moved |= !batch.is_empty();
                let back = neighbours[neighbour]
                    .iter()
                    .position(|&n| n == node)
                    .unwrap();
                for message in batch {
                    received[neighbour] += 1;
                    let fresh = routers[neighbour].on_verified(back, message);
                    record(&mut delivered[neighbour], fresh);
                }
            }
        }
        if !moved {
            return (delivered, received);
        }
    }
    panic!("gossip did not settle");
}

fn honest_votes(value: ValueId) -> impl Fn(usize) -> Vec<SignedVote> {
    move |node| {
        vec![
            vote(VoteType::Prevote, node, Some(value)),
            vote(VoteType::Precommit, node, Some(value)),
        ]
    }
}

#[test]
fn plain_mode_delivers_every_vote_to_every_node() {
    for seed in 0..10 {
        let (delivered, _) = run(
            GossipMode::Plain,
            10,
            3,
            seed,
            honest_votes(ValueId([7; 32])),
        );
        for (node, got) in delivered.iter().enumerate() {
            assert_eq!(got.len(), 20, "seed {seed}: node {node} got {}", got.len());
        }
    }
}

#[test]
fn semantic_mode_delivers_a_quorum_of_every_topic_with_fewer_messages() {
    let quorum = 7; // of 10
    for seed in 0..10 {
        let value = ValueId([7; 32]);
        let (semantic, semantic_received) =
            run(GossipMode::Semantic, 10, 3, seed, honest_votes(value));
        let (_, plain_received) = run(GossipMode::Plain, 10, 3, seed, honest_votes(value));
        for (node, got) in semantic.iter().enumerate() {
            for vote_type in [VoteType::Prevote, VoteType::Precommit] {
                let count = got.iter().filter(|(t, _, _)| *t == vote_type).count();
                assert!(
                    count >= quorum,
                    "seed {seed}: node {node} holds {count} {vote_type:?}s, short of a quorum"
                );
            }
        }
        let (semantic_total, plain_total): (u64, u64) =
            (semantic_received.iter().sum(), plain_received.iter().sum());
        assert!(
            semantic_total < plain_total,
            "seed {seed}: semantic {semantic_total} messages vs plain {plain_total}"
        );
    }
}

/// Split votes (no value reaches a quorum) are never filtered by the quorum rule: every node
/// gets every vote, as in plain mode.
#[test]
fn without_a_quorum_semantic_mode_withholds_nothing() {
    let split = |node: usize| {
        let value = if node.is_multiple_of(2) {
            Some(ValueId([1; 32]))
        } else {
            None
        };
        vec![vote(VoteType::Prevote, node, value)]
    };
    for seed in 0..10 {
        let (delivered, _) = run(GossipMode::Semantic, 10, 3, seed, split);
        for (node, got) in delivered.iter().enumerate() {
            assert_eq!(got.len(), 10, "seed {seed}: node {node}");
        }
    }
}

/// An equivocator's two votes are both relayed: the second is evidence, not a duplicate.
#[test]
fn equivocations_are_relayed_not_filtered() {
    let with_equivocator = |node: usize| {
        let mut votes = vec![vote(VoteType::Prevote, node, None)];
        if node == 0 {
            votes.push(vote(VoteType::Prevote, 0, Some(ValueId([5; 32]))));
        }
        votes
    };
    let (delivered, _) = run(GossipMode::Semantic, 10, 3, 4, with_equivocator);
    for got in &delivered {
        assert!(got.contains(&(VoteType::Prevote, 0, None)));
        assert!(got.contains(&(VoteType::Prevote, 0, Some(ValueId([5; 32])))));
    }
}

/// A byzantine validator signing vote after vote (new rounds, new values) cannot grow the
/// router past its per-signer bound, and proposals are bounded per height.
#[test]
fn a_flooding_signer_is_bounded() {
    use weft_gossip::semantic::{PROPOSALS_PER_HEIGHT_MAX, VOTES_PER_SIGNER_HEIGHT_MAX};
    let mut router = Router::new(GossipMode::Semantic, validators(4), 1);
    let mut accepted = 0;
    for round in 0..(VOTES_PER_SIGNER_HEIGHT_MAX + 100) {
        let mut flood = vote(VoteType::Prevote, 0, None);
        flood.message.round = Round(round);
        accepted += router.on_verified(0, Message::Vote(flood)).len();
    }
    assert_eq!(accepted, VOTES_PER_SIGNER_HEIGHT_MAX as usize);
    // Another validator is unaffected.
    assert_eq!(
        router
            .on_verified(0, Message::Vote(vote(VoteType::Prevote, 1, None)))
            .len(),
        1
    );
    let mut proposals = 0;
    for tag in 0..(PROPOSALS_PER_HEIGHT_MAX + 10) {
        let proposal = weft_consensus::Signed {
            message: weft_consensus::Proposal {
                height: Height(1),
                round: Round(0),
                value: ValueId([(tag % 251) as u8; 32]),
                pol_round: Some(Round(tag as u32)),
                proposer: id(0),
            },
            signature: Signature([0; 64]),
        };
        proposals += router
            .on_verified(0, Message::proposal_without_block(proposal))
            .len();
    }
    assert_eq!(proposals, PROPOSALS_PER_HEIGHT_MAX);
}

/// A peer whose height jumps past its window (back from block sync) dropped what it was sent
/// for its new height: the router sends it again what it holds of that height. A peer that
/// moves on by one height gets nothing twice.
#[test]
fn a_peer_back_from_block_sync_gets_its_new_heights_votes_again() {
    for mode in [GossipMode::Plain, GossipMode::Semantic] {
        back_from_block_sync(mode);
    }
}

fn back_from_block_sync(mode: GossipMode) {
    let mut router = Router::new(mode, validators(4), 3);
    router.advertise(Height(9), Round(0));
    let (source, jumper, stepper) = (0, 1, 2);
    router.on_status(jumper, Height(3), Round(0));
    router.on_status(stepper, Height(8), Round(0));
    let mut at_nine = vote(VoteType::Prevote, 3, None);
    at_nine.message.height = Height(9);
    assert_eq!(router.on_verified(source, Message::Vote(at_nine)).len(), 1);
    // A vote alone, or inside a bundle.
    let votes = |batch: Vec<Message>| {
        batch
            .into_iter()
            .map(|m| match m {
                Message::Vote(v) => usize::from(v.message.height == Height(9)),
                Message::Bundle(b) => b.votes().filter(|v| v.message.height == Height(9)).count(),
                _ => 0,
            })
            .sum::<usize>()
    };
    // Relayed once to each (the jumper, at height 3, drops it: past its window).
    assert_eq!(votes(router.drain(jumper)), 1);
    assert_eq!(votes(router.drain(stepper)), 1);
    router.on_status(jumper, Height(9), Round(0));
    router.on_status(stepper, Height(9), Round(0));
    assert_eq!(votes(router.drain(jumper)), 1, "sent again after the jump");
    assert_eq!(
        votes(router.drain(stepper)),
        0,
        "nothing twice for a step of one"
    );
}
