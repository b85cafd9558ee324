//! The vote keeper: weighted tallies, thresholds that fire once, duplicates, equivocation.

use weft_consensus::keeper::{FUTURE_ROUNDS_MAX, IgnoreReason};
use weft_consensus::{
    Evidence, Height, Round, Threshold, Validator, ValidatorSet, VoteKeeper, VoteOutcome, VoteType,
};

use crate::support::*;

fn keeper() -> VoteKeeper {
    VoteKeeper::new(H, four())
}

fn added(outcome: VoteOutcome) -> Vec<Threshold> {
    match outcome {
        VoteOutcome::Added(thresholds) => thresholds,
        other => panic!("expected Added, got {other:?}"),
    }
}

#[test]
fn thresholds_fire_once_each_as_power_crosses_two_thirds() {
    let mut keeper = keeper();
    let r = Round(0);
    let v = Some(value(1));
    assert_eq!(
        added(keeper.add_vote(vote(VoteType::Prevote, 0, v, 1), r)),
        vec![]
    );
    assert_eq!(
        added(keeper.add_vote(vote(VoteType::Prevote, 0, v, 2), r)),
        vec![]
    );
    assert_eq!(
        added(keeper.add_vote(vote(VoteType::Prevote, 0, v, 3), r)),
        vec![Threshold::PolkaAny(r), Threshold::PolkaValue(r, value(1))]
    );
    assert_eq!(
        added(keeper.add_vote(vote(VoteType::Prevote, 0, v, 4), r)),
        vec![]
    );
    assert_eq!(keeper.quorum_value(r, VoteType::Prevote), Some(value(1)));
}

#[test]
fn nil_and_precommit_thresholds() {
    let mut keeper = keeper();
    let r = Round(0);
    for from in [1, 2] {
        keeper.add_vote(vote(VoteType::Prevote, 0, None, from), r);
    }
    assert_eq!(
        added(keeper.add_vote(vote(VoteType::Prevote, 0, None, 3), r)),
        vec![Threshold::PolkaAny(r), Threshold::PolkaNil(r)]
    );
    keeper.add_vote(vote(VoteType::Precommit, 0, Some(value(2)), 1), r);
    keeper.add_vote(vote(VoteType::Precommit, 0, None, 2), r);
    assert_eq!(
        added(keeper.add_vote(vote(VoteType::Precommit, 0, Some(value(2)), 3), r)),
        vec![Threshold::PrecommitAny(r)]
    );
    assert_eq!(
        added(keeper.add_vote(vote(VoteType::Precommit, 0, Some(value(2)), 4), r)),
        vec![Threshold::PrecommitValue(r, value(2))]
    );
}

#[test]
fn power_not_heads_is_what_counts() {
    let set = ValidatorSet::new([
        Validator {
            id: id(1),
            power: 5,
        },
        Validator {
            id: id(2),
            power: 1,
        },
        Validator {
            id: id(3),
            power: 1,
        },
    ])
    .unwrap();
    let mut keeper = VoteKeeper::new(H, set);
    let r = Round(0);
    // 2 of 3 heads but 2 of 7 power: nothing.
    keeper.add_vote(vote(VoteType::Prevote, 0, None, 2), r);
    keeper.add_vote(vote(VoteType::Prevote, 0, None, 3), r);
    assert!(!keeper.has_quorum_any(r, VoteType::Prevote));
    // 5 + 1 of 7 > 2/3.
    let crossed = added(keeper.add_vote(vote(VoteType::Prevote, 0, None, 1), r));
    assert!(crossed.contains(&Threshold::PolkaNil(r)));
}

#[test]
fn skip_round_needs_more_than_a_third_of_the_power_in_one_later_round() {
    let mut keeper = keeper();
    let current = Round(0);
    assert_eq!(
        added(keeper.add_vote(vote(VoteType::Prevote, 2, None, 1), current)),
        vec![]
    );
    // A different later round does not add up with round 2.
    keeper.add_vote(vote(VoteType::Prevote, 3, None, 2), current);
    assert_eq!(keeper.skip_round_above(current), None);
    let crossed = added(keeper.add_vote(vote(VoteType::Precommit, 2, None, 3), current));
    assert_eq!(crossed, vec![Threshold::SkipRound(Round(2))]);
    assert_eq!(keeper.skip_round_above(current), Some(Round(2)));
    assert_eq!(keeper.skip_round_above(Round(2)), None);
}

#[test]
fn duplicates_are_ignored_and_conflicts_are_evidence_counted_only_for_their_value() {
    let mut keeper = keeper();
    let r = Round(0);
    let first = vote(VoteType::Prevote, 0, Some(value(1)), 1);
    added(keeper.add_vote(first, r));
    assert_eq!(keeper.add_vote(first, r), VoteOutcome::Duplicate);
    let second = vote(VoteType::Prevote, 0, Some(value(2)), 1);
    assert_eq!(
        keeper.add_vote(second, r),
        VoteOutcome::Equivocation(Box::new(Evidence::DuplicateVote { first, second }), vec![])
    );
    // The same conflicting vote again is a duplicate, not new evidence.
    assert_eq!(keeper.add_vote(second, r), VoteOutcome::Duplicate);
    // Validator 1 counts once towards "anything": with validator 2, that is 2 of 4.
    keeper.add_vote(vote(VoteType::Prevote, 0, Some(value(2)), 2), r);
    assert!(!keeper.has_quorum_any(r, VoteType::Prevote));
    // But its vote for value(2) counts for value(2): with 2 and 3, a polka.
    let crossed = added(keeper.add_vote(vote(VoteType::Prevote, 0, Some(value(2)), 3), r));
    assert!(crossed.contains(&Threshold::PolkaValue(r, value(2))));
    let signers: Vec<_> = keeper
        .votes_for(r, VoteType::Prevote, value(2))
        .iter()
        .map(|v| v.message.validator)
        .collect();
    assert_eq!(signers, vec![id(1), id(2), id(3)]);
    // A precommit is a different type: no conflict with the prevote.
    added(keeper.add_vote(vote(VoteType::Precommit, 0, Some(value(2)), 1), r));
}

#[test]
fn an_equivocator_counts_for_a_bounded_number_of_values() {
    use weft_consensus::keeper::EQUIVOCATION_VALUES_MAX;
    let mut keeper = keeper();
    let r = Round(0);
    added(keeper.add_vote(vote(VoteType::Prevote, 0, None, 1), r));
    let mut counted = 0;
    for tag in 1..=(EQUIVOCATION_VALUES_MAX as u8 + 5) {
        match keeper.add_vote(vote(VoteType::Prevote, 0, Some(value(tag)), 1), r) {
            VoteOutcome::Equivocation(_, _) => counted += 1,
            other => panic!("expected evidence, got {other:?}"),
        }
    }
    assert_eq!(
        counted,
        EQUIVOCATION_VALUES_MAX + 5,
        "every conflict is evidence"
    );
    let last = value(EQUIVOCATION_VALUES_MAX as u8 + 5);
    assert!(
        keeper.votes_for(r, VoteType::Prevote, last).is_empty(),
        "past the cap: not counted"
    );
    assert_eq!(keeper.votes_for(r, VoteType::Prevote, value(1)).len(), 1);
}

#[test]
fn outsiders_other_heights_and_far_rounds_are_ignored() {
    let mut keeper = keeper();
    let r = Round(0);
    assert_eq!(
        keeper.add_vote(vote(VoteType::Prevote, 0, None, 9), r),
        VoteOutcome::Ignored(IgnoreReason::UnknownValidator)
    );
    let mut other_height = vote(VoteType::Prevote, 0, None, 1);
    other_height.message.height = Height(2);
    assert_eq!(
        keeper.add_vote(other_height, r),
        VoteOutcome::Ignored(IgnoreReason::WrongHeight)
    );
    assert_eq!(
        keeper.add_vote(vote(VoteType::Prevote, FUTURE_ROUNDS_MAX + 1, None, 1), r),
        VoteOutcome::Ignored(IgnoreReason::RoundTooFarAhead)
    );
    assert!(matches!(
        keeper.add_vote(vote(VoteType::Prevote, FUTURE_ROUNDS_MAX, None, 1), r),
        VoteOutcome::Added(_)
    ));
}

mod model {
    //! The keeper against a model: for any order of votes, with duplicates and conflicting
    //! second votes, the tallies are those of each validator's first vote, by power.

    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use weft_consensus::{Round, Validator, ValidatorSet, VoteKeeper, VoteOutcome, VoteType};

    use crate::support::{H, id, value, vote};

    fn set(powers: &[u64]) -> ValidatorSet {
        ValidatorSet::new(powers.iter().enumerate().map(|(i, &power)| Validator {
            id: id(i as u8 + 1),
            power,
        }))
        .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn tallies_count_each_validators_first_vote_by_power(
            powers in prop::collection::vec(1u64..10, 1..7),
            votes in prop::collection::vec((0usize..7, 0u32..3, any::<bool>(), 0u8..3), 0..60),
        ) {
            let set = set(&powers);
            let mut keeper = VoteKeeper::new(H, set.clone());
            // Each validator's first vote counts for "anything"; every distinct (validator,
            // value) counts for its value (three values stay under the equivocation cap).
            let mut first: BTreeMap<(usize, u32, bool), Option<u8>> = BTreeMap::new();
            let mut counted: std::collections::BTreeSet<(usize, u32, bool, Option<u8>)> =
                std::collections::BTreeSet::new();
            for (validator, round, precommit, choice) in votes {
                let validator = validator % powers.len();
                let vote_type = if precommit { VoteType::Precommit } else { VoteType::Prevote };
                let chosen = (choice > 0).then_some(choice);
                let signed = vote(vote_type, round, chosen.map(value), validator as u8 + 1);
                let outcome = keeper.add_vote(signed, Round(0));
                match first.get(&(validator, round, precommit)) {
                    None => {
                        prop_assert!(matches!(outcome, VoteOutcome::Added(_)));
                        first.insert((validator, round, precommit), chosen);
                        counted.insert((validator, round, precommit, chosen));
                    }
                    Some(_) if counted.contains(&(validator, round, precommit, chosen)) => {
                        prop_assert_eq!(outcome, VoteOutcome::Duplicate);
                    }
                    Some(_) => {
                        prop_assert!(matches!(outcome, VoteOutcome::Equivocation(..)));
                        counted.insert((validator, round, precommit, chosen));
                    }
                }
            }
            for round in 0..3u32 {
                for precommit in [false, true] {
                    let vote_type = if precommit { VoteType::Precommit } else { VoteType::Prevote };
                    let mut any = 0;
                    let mut by_value: BTreeMap<Option<u8>, u64> = BTreeMap::new();
                    for (validator, r, p) in first.keys() {
                        if *r == round && *p == precommit {
                            any += powers[*validator];
                        }
                    }
                    for (validator, r, p, chosen) in &counted {
                        if *r == round && *p == precommit {
                            *by_value.entry(*chosen).or_insert(0) += powers[*validator];
                        }
                    }
                    prop_assert_eq!(keeper.has_quorum_any(Round(round), vote_type), set.is_quorum(any));
                    for choice in [None, Some(1), Some(2)] {
                        let power = by_value.get(&choice).copied().unwrap_or(0);
                        prop_assert_eq!(
                            keeper.has_quorum_for(Round(round), vote_type, choice.map(value)),
                            set.is_quorum(power)
                        );
                    }
                }
            }
        }
    }
}
