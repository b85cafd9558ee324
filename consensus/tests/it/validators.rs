//! The validator set's transition, checked against CometBFT's published examples
//! (`types/validator_set_test.go` and `state/state_test.go` at v0.38) and by properties.
//!
//! How the two line up: CometBFT stores a set whose priorities have already been advanced for
//! the height (its proposer is the highest priority); Weft stores the priorities *before* that
//! step, and `proposer(Round(0))` takes it. So Weft's `set.next_height().priorities()` are
//! CometBFT's stored priorities of the same height, and CometBFT's
//! `next = inc(UpdateWithChangeSet(stored, changes))` is Weft's
//! `stored.apply_updates(changes).next_height()`, where `stored` holds CometBFT's priorities.
//! Ties go to the lower id here and to the lower address there, so the examples' addresses
//! become ids in the same order.

use proptest::prelude::*;
use weft_consensus::{
    Height, HeightSets, Round, UpdateError, Validator, ValidatorId, ValidatorSet,
    change_within_bound,
};

/// An id that sorts as `name` does (CometBFT's test addresses are the names' ASCII bytes).
fn named(name: &str) -> ValidatorId {
    let mut id = [0u8; 32];
    id[..name.len()].copy_from_slice(name.as_bytes());
    ValidatorId(id)
}

fn v(name: &str, power: u64) -> Validator {
    Validator {
        id: named(name),
        power,
    }
}

fn set(validators: &[Validator]) -> ValidatorSet {
    ValidatorSet::new(validators.iter().copied()).unwrap()
}

fn priority(set: &ValidatorSet, name: &str) -> i64 {
    set.priorities()[set.index_of(&named(name)).unwrap()]
}

fn name_of(id: ValidatorId) -> String {
    String::from_utf8(id.0.iter().copied().take_while(|b| *b != 0).collect()).unwrap()
}

/// TestProposerSelection1: foo 1000, bar 300, baz 330, 99 heights.
#[test]
fn proposer_selection_matches_cometbft_over_99_heights() {
    let expected = "foo baz foo bar foo foo baz foo bar foo foo baz foo foo bar foo baz foo foo bar \
        foo foo baz foo bar foo foo baz foo bar foo foo baz foo foo bar foo baz foo foo bar foo \
        baz foo foo bar foo baz foo foo bar foo baz foo foo foo baz bar foo foo foo baz foo bar \
        foo foo baz foo bar foo foo baz foo bar foo foo baz foo bar foo foo baz foo foo bar foo \
        baz foo foo bar foo baz foo foo bar foo baz foo foo";
    let mut current = set(&[v("foo", 1000), v("bar", 300), v("baz", 330)]);
    let mut names = Vec::new();
    for _ in 0..99 {
        names.push(name_of(current.proposer(Round(0))));
        current = current.next_height();
    }
    let expected: Vec<&str> = expected.split_whitespace().collect();
    assert_eq!(names, expected);
    // CometBFT's priorities after the first increment (foo proposed): foo −630, baz 330, bar 300.
    let first = set(&[v("foo", 1000), v("bar", 300), v("baz", 330)]).next_height();
    assert_eq!(
        [
            priority(&first, "foo"),
            priority(&first, "baz"),
            priority(&first, "bar")
        ],
        [-630, 330, 300]
    );
}

/// TestProposerSelection2 (d): powers 4, 5, 3 over 120 heights propose exactly 40, 50, 30 times.
#[test]
fn proposer_counts_match_cometbft() {
    let mut current = set(&[v("addr0", 4), v("addr1", 5), v("addr2", 3)]);
    let mut counts = [0; 3];
    for _ in 0..120 {
        let proposer = current.proposer(Round(0));
        counts[current.index_of(&proposer).unwrap()] += 1;
        current = current.next_height();
    }
    assert_eq!(counts, [40, 50, 30]);
    // (c): addr2 at 401 against two at 100 proposes twice, then addr0.
    let mut current = set(&[v("addr0", 100), v("addr1", 100), v("addr2", 401)]);
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(name_of(current.proposer(Round(0))));
        current = current.next_height();
    }
    assert_eq!(names, ["addr2", "addr2", "addr0"]);
}

/// TestAveragingInIncrementProposerPriorityWithVotingPower: the proposer of each step for
/// powers 10, 1, 1 (ties to the lower address).
#[test]
fn rounds_follow_cometbft_steps() {
    let current = set(&[v("a0", 10), v("a1", 1), v("a2", 1)]);
    let proposers: Vec<String> = (0..11)
        .map(|round| name_of(current.proposer(Round(round))))
        .collect();
    let expected = [
        "a0", "a0", "a0", "a0", "a1", "a0", "a0", "a0", "a2", "a0", "a0",
    ];
    assert_eq!(proposers, expected);
}

/// TestProposerPriorityDoesNotGetResetToZero: a newcomer starts at −1.125 × the total, priorities
/// are re-centred (the average rounded toward −∞), and a power change re-scales them (Go's
/// division, toward zero).
#[test]
fn a_newcomer_and_a_power_change_match_cometbft() {
    // CometBFT's stored set after genesis and one empty block: val1 at 0.
    let stored = set(&[v("val1", 10)]).next_height().next_height();
    assert_eq!(priority(&stored, "val1"), 0);
    let updated = stored.apply_updates(&[v("val2", 100)]).unwrap();
    assert_eq!(priority(&updated, "val1"), 62);
    assert_eq!(priority(&updated, "val2"), -61);
    let stored = updated.next_height();
    assert_eq!(priority(&stored, "val1"), -38);
    assert_eq!(priority(&stored, "val2"), 39);
    assert_eq!(name_of(updated.proposer(Round(0))), "val1");
    let updated = stored.apply_updates(&[v("val2", 1)]).unwrap();
    assert_eq!(priority(&updated, "val1"), -9);
    assert_eq!(priority(&updated, "val2"), 9);
    let stored = updated.next_height();
    assert_eq!(name_of(updated.proposer(Round(0))), "val2");
    assert_eq!(priority(&stored, "val1"), 1);
    assert_eq!(priority(&stored, "val2"), -1);
}

/// TestProposerPriorityProposerAlternates: two validators of equal power alternate after the
/// second joins, at −22 re-centred to −11.
#[test]
fn equal_validators_alternate_after_a_join_as_in_cometbft() {
    let stored = set(&[v("val1", 10)]).next_height().next_height();
    let updated = stored.apply_updates(&[v("val2", 10)]).unwrap();
    assert_eq!(
        (priority(&updated, "val1"), priority(&updated, "val2")),
        (11, -11)
    );
    let mut stored = updated.next_height();
    assert_eq!(
        (priority(&stored, "val1"), priority(&stored, "val2")),
        (1, -1)
    );
    for step in 0..10 {
        stored = stored.next_height();
        let expected = if step % 2 == 0 { (-9, 9) } else { (1, -1) };
        assert_eq!(
            (priority(&stored, "val1"), priority(&stored, "val2")),
            expected
        );
    }
}

/// TestValSetUpdatePriorityOrderTests, case 2, worked through: a removal of most of the power, a
/// power change and two newcomers at once.
#[test]
fn newcomers_start_lowest_and_equal_as_in_cometbft() {
    // NewValidatorSet's increment, then the test's IncrementProposerPriority(1).
    let stored = set(&[v("v3", 1000), v("v2", 2), v("v1", 1)])
        .next_height()
        .next_height();
    assert_eq!(
        [
            priority(&stored, "v3"),
            priority(&stored, "v2"),
            priority(&stored, "v1")
        ],
        [-6, 4, 2]
    );
    let updated = stored
        .apply_updates(&[v("v3", 0), v("v2", 1), v("v5", 50), v("v4", 40)])
        .unwrap();
    let powers: Vec<(String, u64)> = updated
        .validators()
        .iter()
        .map(|v| (name_of(v.id), v.power))
        .collect();
    assert_eq!(
        powers,
        [
            ("v1".into(), 1),
            ("v2".into(), 1),
            ("v4".into(), 40),
            ("v5".into(), 50)
        ]
    );
    assert_eq!(
        [
            priority(&updated, "v5"),
            priority(&updated, "v4"),
            priority(&updated, "v1"),
            priority(&updated, "v2")
        ],
        [-87, -87, 88, 88]
    );
}

/// CometBFT's error cases: duplicates, unknown removals, an empty result, overflow; and the
/// overflow-related case that is allowed (a large removal beside a large addition).
#[test]
fn bad_change_sets_are_refused_as_in_cometbft() {
    let two = set(&[v("v1", 10), v("v2", 10)]);
    assert_eq!(
        two.apply_updates(&[v("v1", 11), v("v1", 22)]),
        Err(UpdateError::Duplicate(named("v1")))
    );
    assert_eq!(
        two.apply_updates(&[v("v1", 0), v("v2", 20), v("v1", 30)]),
        Err(UpdateError::Duplicate(named("v1")))
    );
    assert_eq!(
        two.apply_updates(&[v("v3", 0)]),
        Err(UpdateError::UnknownRemoval(named("v3")))
    );
    assert_eq!(
        two.apply_updates(&[v("v1", 0), v("v2", 0)]),
        Err(UpdateError::Empty)
    );
    // On a set of one, removing some other key reports the empty result first, as CometBFT does.
    let one = set(&[v("v1", 10)]);
    assert_eq!(one.apply_updates(&[v("v9", 0)]), Err(UpdateError::Empty));
    let max = weft_consensus::validators::TOTAL_VOTING_POWER_MAX;
    assert_eq!(
        two.apply_updates(&[v("v1", max)]),
        Err(UpdateError::TotalTooLarge)
    );
    let large = set(&[v("v1", max - 2), v("v2", 1), v("v3", 1)]);
    let swapped = large
        .apply_updates(&[v("v1", 0), v("v4", max - 2)])
        .unwrap();
    assert_eq!(swapped.total_power(), max);
    assert_eq!(swapped.power(&named("v1")), None);
}

#[test]
fn the_third_bound_counts_every_moved_unit_of_power() {
    let four = set(&[v("a", 1), v("b", 1), v("c", 1), v("d", 1)]);
    // Adding one of power 1 to four of power 1 moves 1 of 4: allowed.
    assert_eq!(four.power_moved(&[v("e", 1)]), 1);
    assert!(change_within_bound(1, 4));
    // Removing one and adding one moves 2 of 4: refused.
    assert_eq!(four.power_moved(&[v("a", 0), v("e", 1)]), 2);
    assert!(!change_within_bound(2, 4));
    // Exactly a third is allowed; one more unit is not.
    assert!(change_within_bound(10, 30));
    assert!(!change_within_bound(11, 30));
}

#[test]
fn height_sets_answer_with_the_set_of_each_height() {
    let first = set(&[v("a", 1), v("b", 1)]);
    let second = first.apply_updates(&[v("c", 1)]).unwrap();
    let sets = HeightSets::new([
        (Height(5), first.clone()),
        (Height(6), first.next_height()),
        (Height(7), second.clone()),
    ])
    .unwrap();
    assert_eq!(sets.at(Height(4)), None);
    assert!(sets.at(Height(5)).unwrap().same_members(&first));
    assert!(sets.at(Height(6)).unwrap().same_members(&first));
    assert!(sets.at(Height(7)).unwrap().same_members(&second));
    assert_eq!(sets.at(Height(8)), None, "above the last height known");
    assert!(sets.contains(&named("c")) && !sets.contains(&named("z")));
    assert!(HeightSets::new([(Height(2), first.clone()), (Height(2), second)]).is_none());
}

fn arbitrary_set() -> impl Strategy<Value = ValidatorSet> {
    (
        proptest::collection::btree_map(1u8..40, 1u64..1_000, 1..12),
        0usize..50,
    )
        .prop_map(|(powers, heights)| {
            let mut current = ValidatorSet::new(powers.into_iter().map(|(id, power)| Validator {
                id: ValidatorId([id; 32]),
                power,
            }))
            .unwrap();
            for _ in 0..heights {
                current = current.next_height();
            }
            current
        })
}

proptest! {
    /// What CometBFT's `verifyValidatorSet` checks after every update: the priorities sum to
    /// within (−n, n) and span at most 2 × the total; and newcomers start lowest, all equal; and
    /// the order of the changes does not matter.
    #[test]
    fn updates_keep_cometbfts_invariants(
        current in arbitrary_set(),
        changes in proptest::collection::btree_map(1u8..60, 0u64..1_000, 1..8),
    ) {
        let changes: Vec<Validator> = changes
            .into_iter()
            .map(|(id, power)| Validator { id: ValidatorId([id; 32]), power })
            .collect();
        let Ok(updated) = current.apply_updates(&changes) else {
            return Ok(());
        };
        let n = updated.len() as i64;
        let sum: i64 = updated.priorities().iter().sum();
        prop_assert!(sum > -n && sum < n, "sum {sum} of {n}");
        let max = *updated.priorities().iter().max().unwrap();
        let min = *updated.priorities().iter().min().unwrap();
        prop_assert!((max - min) as u64 <= 2 * updated.total_power());
        let newcomers: Vec<i64> = changes
            .iter()
            .filter(|c| c.power > 0 && current.power(&c.id).is_none())
            .map(|c| updated.priorities()[updated.index_of(&c.id).unwrap()])
            .collect();
        if let Some(first) = newcomers.first() {
            prop_assert!(newcomers.iter().all(|p| p == first));
            prop_assert_eq!(*first, min);
        }
        let mut reversed = changes.clone();
        reversed.reverse();
        prop_assert_eq!(current.apply_updates(&reversed).unwrap(), updated.clone());
        // Removals, additions and power changes are exactly the changes asked for.
        for change in &changes {
            prop_assert_eq!(updated.power(&change.id), (change.power > 0).then_some(change.power));
        }
    }
}
