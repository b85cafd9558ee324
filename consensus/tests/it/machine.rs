//! The machine beyond single rules: future heights, evidence, the signing guard, WAL replay.

use weft_consensus::machine::FUTURE_MESSAGES_MAX;
use weft_consensus::{
    Effect, Evidence, Height, Input, Machine, Round, Signed, Step, Timeout, TimeoutKind, Validity,
    VoteType, WalEntry, replay,
};

use crate::support::*;

#[test]
fn messages_for_the_next_height_wait_for_it() {
    let (mut machine, _) = started(4);
    let mut next = vote(VoteType::Prevote, 0, None, 1);
    next.message.height = Height(2);
    assert!(machine.handle(Input::Vote(next)).is_empty());
    // Decide height 1 through sync, then start height 2: the held vote counts there.
    machine.handle(Input::Commit(weft_consensus::CommitCertificate {
        height: H,
        round: Round(0),
        value: value(1),
        precommits: vec![],
    }));
    assert_eq!(machine.step(), Step::Commit);
    machine.handle(Input::StartHeight {
        height: Height(2),
        validators: four().next_height(),
        params: params(),
    });
    for from in [2, 3] {
        let mut vote = vote(VoteType::Prevote, 0, None, from);
        vote.message.height = Height(2);
        machine.handle(Input::Vote(vote));
    }
    // Three nil prevotes (1 held, 2 and 3 new) are a nil polka: once my propose timeout moves
    // me to the prevote step, L44 precommits nil at once.
    let effects = machine.handle(Input::TimeoutElapsed(Timeout {
        kind: TimeoutKind::Propose,
        height: Height(2),
        round: Round(0),
    }));
    let votes: Vec<_> = signed_votes(&effects)
        .iter()
        .map(|v| (v.height, v.vote_type, v.value))
        .collect();
    assert_eq!(
        votes,
        vec![
            (Height(2), VoteType::Prevote, None),
            (Height(2), VoteType::Precommit, None)
        ]
    );
}

#[test]
fn the_future_buffer_is_bounded() {
    let (mut machine, _) = started(4);
    for index in 0..FUTURE_MESSAGES_MAX as u32 + 100 {
        let mut vote = vote(VoteType::Prevote, index, None, 1);
        vote.message.height = Height(2);
        machine.handle(Input::Vote(vote));
    }
    let mut far = vote(VoteType::Prevote, 0, None, 1);
    far.message.height = Height(100);
    machine.handle(Input::Vote(far));
    // The machine still works, and nothing above grew past its cap (checked by Debug size).
    let debug = format!("{machine:?}");
    assert!(debug.matches("Vote(").count() <= FUTURE_MESSAGES_MAX + 8);
}

#[test]
fn a_second_proposal_from_the_proposer_is_evidence() {
    let (mut machine, _) = started(4);
    let first = proposal(0, value(1), None);
    feed_proposal(&mut machine, first, Validity::Valid);
    let second = proposal(0, value(2), None);
    let effects = feed_proposal(&mut machine, second, Validity::Valid);
    assert_eq!(
        effects,
        vec![Effect::Evidence(Evidence::DuplicateProposal {
            first,
            second
        })]
    );
}

#[test]
fn a_proposal_from_the_wrong_proposer_is_ignored() {
    let (mut machine, _) = started(4);
    let mut forged = proposal(0, value(1), None);
    forged.message.proposer = id(3);
    assert!(feed_proposal(&mut machine, forged, Validity::Valid).is_empty());
    assert_eq!(machine.step(), Step::Propose);
}

#[test]
fn an_equivocating_vote_is_evidence() {
    let (mut machine, _) = started(4);
    let first = vote(VoteType::Precommit, 0, Some(value(1)), 2);
    let second = vote(VoteType::Precommit, 0, None, 2);
    machine.handle(Input::Vote(first));
    let effects = machine.handle(Input::Vote(second));
    assert_eq!(
        effects,
        vec![Effect::Evidence(Evidence::DuplicateVote { first, second })]
    );
}

/// A run through two rounds, logging every input as the node would, then a crash at every
/// point: replaying the log rebuilds the same machine and re-signs only what was signed.
#[test]
fn replaying_the_wal_rebuilds_the_same_machine_at_every_crash_point() {
    let mut log: Vec<Input> = vec![Input::StartHeight {
        height: H,
        validators: four(),
        params: params(),
    }];
    let mut script: Vec<Input> = vec![Input::Proposal {
        proposal: proposal(0, value(1), None),
        validity: Validity::Valid,
    }];
    for from in [1, 2, 3] {
        script.push(Input::Vote(vote(
            VoteType::Prevote,
            0,
            Some(value(1)),
            from,
        )));
    }
    for from in [1, 2, 3] {
        script.push(Input::Vote(vote(VoteType::Precommit, 0, None, from)));
    }
    script.push(Input::TimeoutElapsed(Timeout {
        kind: TimeoutKind::Precommit,
        height: H,
        round: Round(0),
    }));
    script.push(Input::Proposal {
        proposal: proposal(1, value(2), None),
        validity: Validity::Valid,
    });
    let mut machine = Machine::new(Some(id(4)), four());
    let mut signed = Vec::new();
    let mut pending: std::collections::VecDeque<Input> = log.clone().into();
    let mut script = script.into_iter();
    let mut states = Vec::new();
    while let Some(input) = pending.pop_front().or_else(|| script.next()) {
        if !matches!(input, Input::StartHeight { .. }) {
            log.push(input.clone());
        }
        for effect in machine.handle(input) {
            if let Effect::SignVote(vote) = effect {
                signed.push(vote);
                // The node hands its own vote back.
                pending.push_back(Input::Vote(Signed {
                    message: vote,
                    signature: weft_consensus::Signature([4; 64]),
                }));
            }
        }
        states.push((log.len(), machine.clone(), signed.clone()));
    }
    assert!(
        signed.len() >= 3,
        "the script made the machine sign: {signed:?}"
    );
    assert_eq!(machine.locked(), Some((value(1), Round(0))));
    for (logged, state, signed_so_far) in states {
        let entries = log[..logged].iter().cloned().map(WalEntry);
        let (rebuilt, effects) = replay(Some(id(4)), four(), entries);
        assert_eq!(rebuilt, state, "replay of {logged} entries");
        for vote in signed_votes(&effects) {
            assert!(
                signed_so_far.contains(&vote) || signed.contains(&vote),
                "replay signed {vote:?}, which the original run never signed"
            );
        }
    }
}

/// The locked machine, asked by a (buggy) input sequence to prevote differently in a round it
/// already prevoted in, refuses: the signing guard stops the node.
#[test]
fn a_conflicting_vote_is_never_signed() {
    let (mut machine, _) = started(4);
    let effects = feed_proposal(&mut machine, proposal(0, value(1), None), Validity::Valid);
    assert_eq!(signed_votes(&effects).len(), 1);
    // A propose timeout for the same round after prevoting does nothing (step moved on).
    let effects = fire(&mut machine, TimeoutKind::Propose, 0);
    assert!(signed_votes(&effects).is_empty());
}

mod arbitrary_inputs {
    //! Whatever a byzantine network sends, in whatever order, the machine never asks to sign
    //! two different votes for one (round, type), never proposes twice differently, always
    //! persists before signing, and never decides an invalid or unproposed value.

    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use weft_consensus::{Effect, Input, Round, Timeout, TimeoutKind, Validity, VoteType};

    use crate::support::*;

    #[derive(Clone, Debug)]
    enum Step {
        Proposal {
            round: u32,
            value: u8,
            pol: Option<u32>,
            valid: bool,
        },
        Vote {
            precommit: bool,
            round: u32,
            value: Option<u8>,
            from: u8,
        },
        Timeout {
            kind: u8,
            round: u32,
        },
        Value {
            round: u32,
            value: u8,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u32..4, 1u8..4, prop::option::of(0u32..4), any::<bool>()).prop_map(
                |(round, value, pol, valid)| Step::Proposal {
                    round,
                    value,
                    pol,
                    valid
                }
            ),
            (any::<bool>(), 0u32..4, prop::option::of(1u8..4), 1u8..5).prop_map(
                |(precommit, round, value, from)| Step::Vote {
                    precommit,
                    round,
                    value,
                    from
                }
            ),
            (0u8..3, 0u32..4).prop_map(|(kind, round)| Step::Timeout { kind, round }),
            (0u32..4, 1u8..4).prop_map(|(round, value)| Step::Value { round, value }),
        ]
    }

    fn input(step: &Step) -> Input {
        match *step {
            Step::Proposal {
                round,
                value: v,
                pol,
                valid,
            } => Input::Proposal {
                proposal: proposal(round, value(v), pol),
                validity: if valid {
                    Validity::Valid
                } else {
                    Validity::Invalid
                },
            },
            Step::Vote {
                precommit,
                round,
                value: v,
                from,
            } => {
                let vote_type = if precommit {
                    VoteType::Precommit
                } else {
                    VoteType::Prevote
                };
                Input::Vote(vote(vote_type, round, v.map(value), from))
            }
            Step::Timeout { kind, round } => Input::TimeoutElapsed(Timeout {
                kind: [
                    TimeoutKind::Propose,
                    TimeoutKind::Prevote,
                    TimeoutKind::Precommit,
                ][kind as usize],
                height: H,
                round: Round(round),
            }),
            Step::Value { round, value: v } => Input::ProposeValue {
                height: H,
                round: Round(round),
                value: value(v),
            },
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn the_machine_never_double_signs_or_decides_junk(
            me in 1u8..5,
            steps in prop::collection::vec(step(), 0..80),
        ) {
            let (mut machine, mut effects) = started(me);
            let mut valid_proposals = Vec::new();
            for step in &steps {
                if let Step::Proposal { round, value: v, valid: true, .. } = step {
                    valid_proposals.push((*round, value(*v)));
                }
                let mut produced = machine.handle(input(step));
                // Own votes come back, as the node would hand them.
                let own: Vec<_> = signed_votes(&produced)
                    .into_iter()
                    .map(|v| Input::Vote(weft_consensus::Signed { message: v, signature: weft_consensus::Signature([me; 64]) }))
                    .collect();
                for own in own {
                    produced.extend(machine.handle(own));
                }
                effects.extend(produced);
            }
            assert_persist_before_sign(&effects);
            let mut votes: BTreeMap<(u32, VoteType), Option<weft_consensus::ValueId>> = BTreeMap::new();
            for vote in signed_votes(&effects) {
                prop_assert_eq!(vote.validator, id(me));
                let earlier = votes.insert((vote.round.0, vote.vote_type), vote.value);
                prop_assert!(earlier.is_none() || earlier == Some(vote.value), "double sign {:?}", vote);
            }
            let mut proposed = BTreeMap::new();
            for effect in &effects {
                match effect {
                    Effect::SignProposal(p) => {
                        let earlier = proposed.insert(p.round, p.value);
                        prop_assert!(earlier.is_none() || earlier == Some(p.value));
                    }
                    Effect::Decide { value: decided, certificate } => {
                        prop_assert!(
                            valid_proposals.contains(&(certificate.round.0, *decided))
                                || certificate.precommits.is_empty(),
                            "decided {:?} in round {:?}", decided, certificate.round
                        );
                        prop_assert!(four().is_quorum(certificate.precommits.len() as u64));
                    }
                    _ => {}
                }
            }
        }
    }
}
