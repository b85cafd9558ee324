//! One test per upon-rule of Algorithm 1: each puts the machine in the rule's precondition and
//! checks its effects and its new state.
//!
//! Validator 4 is "me" unless a test says otherwise; at height 1, validator 1 proposes round 0,
//! validator 2 round 1, validator 3 round 2, so "me" only votes.

use weft_consensus::{Effect, Input, Round, Step, Timeout, TimeoutKind, Validity, VoteType};

use crate::support::*;

const ME: u8 = 4;

/// Me at round 0, prevote step, after prevoting the round's proposal `value(1)`.
fn prevoted() -> weft_consensus::Machine {
    prevoted_as(ME)
}

fn prevoted_as(me: u8) -> weft_consensus::Machine {
    let (mut machine, _) = started(me);
    feed_proposal(&mut machine, proposal(0, value(1), None), Validity::Valid);
    assert_eq!(machine.step(), Step::Prevote);
    machine
}

#[test]
fn start_round_l11_non_proposer_schedules_the_propose_timeout() {
    let (machine, effects) = started(ME);
    assert_eq!((machine.round(), machine.step()), (Round(0), Step::Propose));
    assert_eq!(scheduled(&effects), vec![(TimeoutKind::Propose, 0)]);
    assert!(signed_votes(&effects).is_empty());
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::RequestValue { .. }))
    );
}

#[test]
fn start_round_l18_proposer_asks_for_a_value_then_proposes_it() {
    let (mut machine, effects) = started(1);
    assert!(effects.contains(&Effect::RequestValue {
        height: H,
        round: Round(0),
        timeout_ms: 100,
    }));
    let effects = machine.handle(Input::ProposeValue {
        height: H,
        round: Round(0),
        value: value(7),
    });
    assert_persist_before_sign(&effects);
    let proposed = effects.iter().find_map(|e| match e {
        Effect::SignProposal(p) => Some(*p),
        _ => None,
    });
    let proposed = proposed.expect("the proposer signs a proposal");
    assert_eq!((proposed.value, proposed.pol_round), (value(7), None));
}

#[test]
fn start_round_l15_proposer_reproposes_its_valid_value_with_its_round() {
    // Me is 2, the proposer of round 1. In round 0 I see a polka for value(1) and record it as
    // valid, then move to round 1.
    let mut machine = prevoted_as(2);
    feed_votes(
        &mut machine,
        VoteType::Prevote,
        0,
        Some(value(1)),
        &[1, 3, 4],
    );
    assert_eq!(machine.valid(), Some((value(1), Round(0))));
    feed_votes(&mut machine, VoteType::Precommit, 0, None, &[1, 3, 4]);
    let effects = fire(&mut machine, TimeoutKind::Precommit, 0);
    assert_eq!(machine.round(), Round(1));
    assert_persist_before_sign(&effects);
    let proposed = effects.iter().find_map(|e| match e {
        Effect::SignProposal(p) => Some(*p),
        _ => None,
    });
    let proposed = proposed.expect("the round-1 proposer re-proposes");
    assert_eq!(
        (proposed.value, proposed.pol_round),
        (value(1), Some(Round(0)))
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::RequestValue { .. }))
    );
}

#[test]
fn l22_a_valid_proposal_gets_a_prevote_for_its_value() {
    let (mut machine, _) = started(ME);
    let effects = feed_proposal(&mut machine, proposal(0, value(1), None), Validity::Valid);
    assert_persist_before_sign(&effects);
    assert_eq!(
        signed_votes(&effects),
        vec![my_vote(ME, VoteType::Prevote, 0, Some(value(1)))]
    );
    assert_eq!(machine.step(), Step::Prevote);
}

#[test]
fn l22_an_invalid_proposal_gets_a_nil_prevote() {
    let (mut machine, _) = started(ME);
    let effects = feed_proposal(&mut machine, proposal(0, value(1), None), Validity::Invalid);
    assert_eq!(
        signed_votes(&effects),
        vec![my_vote(ME, VoteType::Prevote, 0, None)]
    );
}

#[test]
fn l22_a_validator_locked_on_another_value_prevotes_nil() {
    let mut machine = locked_on_value_1_in_round_0_then_round_1();
    let effects = feed_proposal(&mut machine, proposal(1, value(2), None), Validity::Valid);
    assert_eq!(
        signed_votes(&effects),
        vec![my_vote(ME, VoteType::Prevote, 1, None)]
    );
    // Locked on value(1), it prevotes value(1) when that is proposed again.
    let mut machine = locked_on_value_1_in_round_0_then_round_1();
    let effects = feed_proposal(&mut machine, proposal(1, value(1), None), Validity::Valid);
    assert_eq!(
        signed_votes(&effects),
        vec![my_vote(ME, VoteType::Prevote, 1, Some(value(1)))]
    );
}

/// Me locked on value(1) in round 0, now in round 1.
fn locked_on_value_1_in_round_0_then_round_1() -> weft_consensus::Machine {
    let (mut machine, _) = started(ME);
    feed_proposal(&mut machine, proposal(0, value(1), None), Validity::Valid);
    feed_votes(
        &mut machine,
        VoteType::Prevote,
        0,
        Some(value(1)),
        &[1, 2, 3],
    );
    assert_eq!(machine.locked(), Some((value(1), Round(0))));
    feed_votes(&mut machine, VoteType::Precommit, 0, None, &[1, 2, 3]);
    fire(&mut machine, TimeoutKind::Precommit, 0);
    assert_eq!((machine.round(), machine.step()), (Round(1), Step::Propose));
    machine
}

#[test]
fn l28_a_proposal_justified_by_a_polka_gets_a_prevote() {
    // Round 1's proposer re-proposes value(3) with a round-0 polka that I saw (I was not locked).
    let (mut machine, _) = started(ME);
    feed_votes(
        &mut machine,
        VoteType::Prevote,
        0,
        Some(value(3)),
        &[1, 2, 3],
    );
    feed_votes(&mut machine, VoteType::Precommit, 0, None, &[1, 2, 3]);
    fire(&mut machine, TimeoutKind::Propose, 0);
    fire(&mut machine, TimeoutKind::Precommit, 0);
    assert_eq!(machine.round(), Round(1));
    let effects = feed_proposal(
        &mut machine,
        proposal(1, value(3), Some(0)),
        Validity::Valid,
    );
    assert_eq!(
        signed_votes(&effects),
        vec![my_vote(ME, VoteType::Prevote, 1, Some(value(3)))]
    );
}

#[test]
fn l28_a_lock_from_a_later_round_than_the_polka_forces_nil() {
    // A polka for value(2) in round 0, a lock on value(1) in round 1; round 2 re-proposes
    // value(2) citing the round-0 polka. My lock is later than the polka: prevote nil.
    let (mut machine, _) = started(ME);
    // Round 0: a polka for value(2) that I see only later; I prevote nil on timeout.
    fire(&mut machine, TimeoutKind::Propose, 0);
    feed_votes(
        &mut machine,
        VoteType::Prevote,
        0,
        Some(value(2)),
        &[1, 2, 3],
    );
    feed_votes(&mut machine, VoteType::Precommit, 0, None, &[1, 2, 3]);
    fire(&mut machine, TimeoutKind::Precommit, 0);
    // Round 1: lock on value(1).
    feed_proposal(&mut machine, proposal(1, value(1), None), Validity::Valid);
    feed_votes(
        &mut machine,
        VoteType::Prevote,
        1,
        Some(value(1)),
        &[1, 2, 3],
    );
    assert_eq!(machine.locked(), Some((value(1), Round(1))));
    feed_votes(&mut machine, VoteType::Precommit, 1, None, &[1, 2, 3]);
    fire(&mut machine, TimeoutKind::Precommit, 1);
    assert_eq!(machine.round(), Round(2));
    // Round 2: value(2) with its round-0 polka; my lock (round 1) is later: prevote nil.
    let effects = feed_proposal(
        &mut machine,
        proposal(2, value(2), Some(0)),
        Validity::Valid,
    );
    assert_eq!(
        signed_votes(&effects),
        vec![my_vote(ME, VoteType::Prevote, 2, None)]
    );
}

#[test]
fn l34_any_prevote_quorum_schedules_the_prevote_timeout_once() {
    let mut machine = prevoted();
    let effects = feed_votes(&mut machine, VoteType::Prevote, 0, None, &[1]);
    assert!(scheduled(&effects).is_empty());
    let effects = feed_votes(&mut machine, VoteType::Prevote, 0, Some(value(9)), &[3]);
    // Me (value(1)), 1 (nil), 3 (value(9)): a quorum for anything, none for one value.
    let mut own = feed_votes(&mut machine, VoteType::Prevote, 0, Some(value(1)), &[ME]);
    own.extend(effects);
    assert_eq!(scheduled(&own), vec![(TimeoutKind::Prevote, 0)]);
    let again = feed_votes(&mut machine, VoteType::Prevote, 0, Some(value(8)), &[2]);
    assert!(scheduled(&again).is_empty());
}

#[test]
fn l36_a_polka_for_the_proposal_locks_and_precommits_it() {
    let mut machine = prevoted();
    let effects = feed_votes(
        &mut machine,
        VoteType::Prevote,
        0,
        Some(value(1)),
        &[1, 2, 3],
    );
    assert_persist_before_sign(&effects);
    assert_eq!(
        signed_votes(&effects),
        vec![my_vote(ME, VoteType::Precommit, 0, Some(value(1)))]
    );
    assert_eq!(machine.locked(), Some((value(1), Round(0))));
    assert_eq!(machine.valid(), Some((value(1), Round(0))));
    assert_eq!(machine.step(), Step::Precommit);
}

#[test]
fn l36_after_precommitting_nil_a_late_polka_only_updates_the_valid_value() {
    let mut machine = prevoted();
    feed_votes(&mut machine, VoteType::Prevote, 0, None, &[1, 3]);
    feed_votes(&mut machine, VoteType::Prevote, 0, Some(value(1)), &[ME]);
    fire(&mut machine, TimeoutKind::Prevote, 0);
    assert_eq!(machine.step(), Step::Precommit);
    // Validator 1 and 3 cannot change their votes; a polka for value(1) needs 3 of 4, so
    // rebuild with a fresh scenario where the polka completes after my nil precommit.
    let mut machine = prevoted();
    feed_votes(&mut machine, VoteType::Prevote, 0, Some(value(1)), &[ME, 1]);
    fire(&mut machine, TimeoutKind::Propose, 0);
    feed_votes(&mut machine, VoteType::Prevote, 0, None, &[2]);
    fire(&mut machine, TimeoutKind::Prevote, 0);
    assert_eq!(machine.step(), Step::Precommit);
    let effects = feed_votes(&mut machine, VoteType::Prevote, 0, Some(value(1)), &[3]);
    assert!(signed_votes(&effects).is_empty(), "no second precommit");
    assert_eq!(machine.locked(), None);
    assert_eq!(machine.valid(), Some((value(1), Round(0))));
}

#[test]
fn l44_a_nil_polka_gets_a_nil_precommit() {
    let mut machine = prevoted();
    let effects = feed_votes(&mut machine, VoteType::Prevote, 0, None, &[1, 2, 3]);
    assert_eq!(
        signed_votes(&effects),
        vec![my_vote(ME, VoteType::Precommit, 0, None)]
    );
    assert_eq!(machine.step(), Step::Precommit);
}

#[test]
fn l47_any_precommit_quorum_schedules_the_precommit_timeout_once() {
    let (mut machine, _) = started(ME);
    let effects = feed_votes(&mut machine, VoteType::Precommit, 0, None, &[1, 3]);
    assert!(scheduled(&effects).is_empty());
    let effects = feed_votes(&mut machine, VoteType::Precommit, 0, Some(value(5)), &[2]);
    assert_eq!(scheduled(&effects), vec![(TimeoutKind::Precommit, 0)]);
    let effects = feed_votes(&mut machine, VoteType::Precommit, 0, Some(value(5)), &[ME]);
    assert!(scheduled(&effects).is_empty());
}

#[test]
fn l49_the_proposal_and_a_precommit_quorum_decide_in_any_round() {
    // The decision comes from round 3's precommits while the machine is still in round 0.
    let (mut machine, _) = started(ME);
    feed_proposal(&mut machine, proposal(3, value(4), None), Validity::Valid);
    let effects = feed_votes(
        &mut machine,
        VoteType::Precommit,
        3,
        Some(value(4)),
        &[1, 2, 3],
    );
    let decided = effects.iter().find_map(|e| match e {
        Effect::Decide { value, certificate } => Some((*value, certificate.clone())),
        _ => None,
    });
    let (decided, certificate) = decided.expect("decides");
    assert_eq!(decided, value(4));
    assert_eq!((certificate.height, certificate.round), (H, Round(3)));
    let signers: Vec<_> = certificate
        .precommits
        .iter()
        .map(|v| v.message.validator)
        .collect();
    assert_eq!(signers, vec![id(1), id(2), id(3)]);
    assert_eq!(machine.step(), Step::Commit);
    assert_eq!(machine.decided(), Some(value(4)));
}

#[test]
fn l49_an_invalid_value_is_never_decided() {
    let (mut machine, _) = started(ME);
    feed_proposal(&mut machine, proposal(0, value(4), None), Validity::Invalid);
    let effects = feed_votes(
        &mut machine,
        VoteType::Precommit,
        0,
        Some(value(4)),
        &[1, 2, 3],
    );
    assert!(!effects.iter().any(|e| matches!(e, Effect::Decide { .. })));
    assert_eq!(machine.decided(), None);
}

#[test]
fn l55_f_plus_one_messages_of_a_later_round_skip_to_it() {
    let (mut machine, _) = started(ME);
    let effects = feed_votes(&mut machine, VoteType::Prevote, 3, None, &[1]);
    assert_eq!(machine.round(), Round(0), "one validator is not f + 1");
    assert!(scheduled(&effects).is_empty());
    let effects = feed_votes(&mut machine, VoteType::Precommit, 3, None, &[2]);
    assert_eq!((machine.round(), machine.step()), (Round(3), Step::Propose));
    assert_eq!(scheduled(&effects), vec![(TimeoutKind::Propose, 3)]);
}

#[test]
fn l57_the_propose_timeout_prevotes_nil() {
    let (mut machine, _) = started(ME);
    let effects = fire(&mut machine, TimeoutKind::Propose, 0);
    assert_eq!(
        signed_votes(&effects),
        vec![my_vote(ME, VoteType::Prevote, 0, None)]
    );
    assert_eq!(machine.step(), Step::Prevote);
    // A stale timeout (another round) does nothing.
    let stale = fire(&mut machine, TimeoutKind::Propose, 5);
    assert!(stale.is_empty());
}

#[test]
fn l61_the_prevote_timeout_precommits_nil() {
    let mut machine = prevoted();
    let effects = fire(&mut machine, TimeoutKind::Prevote, 0);
    assert_eq!(
        signed_votes(&effects),
        vec![my_vote(ME, VoteType::Precommit, 0, None)]
    );
    assert_eq!(machine.step(), Step::Precommit);
}

#[test]
fn l65_the_precommit_timeout_starts_the_next_round() {
    let mut machine = prevoted();
    let effects = fire(&mut machine, TimeoutKind::Precommit, 0);
    assert_eq!((machine.round(), machine.step()), (Round(1), Step::Propose));
    assert_eq!(scheduled(&effects), vec![(TimeoutKind::Propose, 1)]);
    assert!(effects.contains(&Effect::ScheduleTimeout {
        timeout: Timeout {
            kind: TimeoutKind::Propose,
            height: H,
            round: Round(1),
        },
        duration_ms: 110,
    }));
}
