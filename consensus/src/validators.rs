//! The validator set: voting power, the two thresholds, and weighted round-robin proposer
//! selection with CometBFT's priority algorithm.

use thiserror::Error;

use std::sync::Arc;

use crate::types::{Height, Round, ValidatorId, VotingPower};

/// The largest total power a set may have, as in CometBFT: priorities stay far from overflow.
pub const TOTAL_VOTING_POWER_MAX: VotingPower = (i64::MAX / 8) as u64;
/// Priorities are rescaled when their spread exceeds this many times the total power.
const PRIORITY_WINDOW_FACTOR: i64 = 2;
/// A restored priority may be at most this many times the total power from zero. Every set this
/// module builds stays within 3 × total + 1: a window of 2 × total, plus a power, less a total.
const PRIORITY_MAGNITUDE_FACTOR: u64 = 4;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidatorSetError {
    #[error("the validator set is empty")]
    Empty,
    #[error("validator {0:?} has zero power")]
    ZeroPower(ValidatorId),
    #[error("validator {0:?} appears twice")]
    Duplicate(ValidatorId),
    #[error("total voting power exceeds {TOTAL_VOTING_POWER_MAX}")]
    TotalTooLarge,
    #[error("validator {0:?} has a proposer priority out of range")]
    PriorityOutOfRange(ValidatorId),
}

/// Why a change set cannot be applied to a validator set ([`ValidatorSet::apply_updates`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UpdateError {
    #[error("validator {0:?} appears twice in the changes")]
    Duplicate(ValidatorId),
    #[error("validator {0:?} is removed but is not in the set")]
    UnknownRemoval(ValidatorId),
    #[error("the changes leave the validator set empty")]
    Empty,
    #[error("the changes take the total voting power over {TOTAL_VOTING_POWER_MAX}")]
    TotalTooLarge,
}

/// The most voting power one height's changes may move, as a fraction of the total before
/// them: a third. `changed`, the sum over the changes of |new power - old power|, must satisfy
/// `3 × changed ≤ total`. Then a quorum of the old set and a quorum of the new one share more
/// than a third of the old power, so at least one honest validator is in both: a light client
/// or a syncing node that trusts the old set can follow the change.
pub fn change_within_bound(changed: u64, total: u64) -> bool {
    u128::from(changed) * 3 <= u128::from(total)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Validator {
    pub id: ValidatorId,
    pub power: VotingPower,
}

/// A validator set with its proposer priorities at the start of a height.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ValidatorSet {
    /// Sorted by id.
    validators: Vec<Validator>,
    priorities: Vec<i64>,
    total: VotingPower,
}

impl ValidatorSet {
    /// A new set; every validator starts at priority 0.
    pub fn new(validators: impl IntoIterator<Item = Validator>) -> Result<Self, ValidatorSetError> {
        let mut validators: Vec<Validator> = validators.into_iter().collect();
        if validators.is_empty() {
            return Err(ValidatorSetError::Empty);
        }
        validators.sort_by_key(|v| v.id);
        let mut total: VotingPower = 0;
        for (index, validator) in validators.iter().enumerate() {
            if validator.power == 0 {
                return Err(ValidatorSetError::ZeroPower(validator.id));
            }
            if index > 0 && validators[index - 1].id == validator.id {
                return Err(ValidatorSetError::Duplicate(validator.id));
            }
            total = total
                .checked_add(validator.power)
                .filter(|t| *t <= TOTAL_VOTING_POWER_MAX)
                .ok_or(ValidatorSetError::TotalTooLarge)?;
        }
        let priorities = vec![0; validators.len()];
        Ok(ValidatorSet {
            validators,
            priorities,
            total,
        })
    }

    /// A set with the proposer priorities that [`ValidatorSet::priorities`] reported, so a set
    /// saved mid-chain (the node's WAL) comes back exactly. Checked like [`ValidatorSet::new`],
    /// and every priority must lie within the range a real set keeps.
    pub fn with_priorities(
        validators: impl IntoIterator<Item = (Validator, i64)>,
    ) -> Result<Self, ValidatorSetError> {
        let mut entries: Vec<(Validator, i64)> = validators.into_iter().collect();
        entries.sort_by_key(|(validator, _)| validator.id);
        let mut set = ValidatorSet::new(entries.iter().map(|(validator, _)| *validator))?;
        let magnitude_max = set.total.saturating_mul(PRIORITY_MAGNITUDE_FACTOR);
        for (validator, priority) in &entries {
            if priority.unsigned_abs() > magnitude_max {
                return Err(ValidatorSetError::PriorityOutOfRange(validator.id));
            }
        }
        set.priorities = entries.iter().map(|(_, priority)| *priority).collect();
        Ok(set)
    }

    /// The proposer priorities at the start of this height, in the order of
    /// [`ValidatorSet::validators`].
    pub fn priorities(&self) -> &[i64] {
        &self.priorities
    }

    pub fn len(&self) -> usize {
        self.validators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    pub fn total_power(&self) -> VotingPower {
        self.total
    }

    /// The power of `id`, or `None` if it is not in the set.
    pub fn power(&self, id: &ValidatorId) -> Option<VotingPower> {
        self.index_of(id).map(|index| self.validators[index].power)
    }

    pub fn index_of(&self, id: &ValidatorId) -> Option<usize> {
        self.validators.binary_search_by_key(id, |v| v.id).ok()
    }

    /// More than 2/3 of the total power.
    pub fn is_quorum(&self, power: VotingPower) -> bool {
        u128::from(power) * 3 > u128::from(self.total) * 2
    }

    /// More than 1/3 of the total power: at least one honest validator is among them.
    pub fn is_one_third(&self, power: VotingPower) -> bool {
        u128::from(power) * 3 > u128::from(self.total)
    }

    /// The proposer of `round` at this height: the priorities advanced `round + 1` times.
    pub fn proposer(&self, round: Round) -> ValidatorId {
        let mut priorities = self.priorities.clone();
        let mut proposer = 0;
        for _ in 0..=round.0 {
            proposer = self.increment(&mut priorities);
        }
        self.validators[proposer].id
    }

    /// The set for the next height: priorities advanced once, as CometBFT does per block.
    pub fn next_height(&self) -> ValidatorSet {
        let mut next = self.clone();
        let mut priorities = std::mem::take(&mut next.priorities);
        self.increment(&mut priorities);
        next.priorities = priorities;
        next
    }

    /// This set with `changes` applied (a power of 0 removes a validator), as CometBFT's
    /// `UpdateWithChangeSet`: a validator new to the set starts at priority −1.125 × the total
    /// power after the changes (before removals), so it does not propose at once; a validator
    /// whose power changes keeps its priority; then priorities are re-scaled to the window and
    /// re-centred on zero. Refused: a key twice in `changes`, removing a key not in the set, an
    /// empty result, and a total over [`TOTAL_VOTING_POWER_MAX`]. The bound on how much power
    /// may move in one height is the caller's ([`ValidatorSet::power_moved`],
    /// [`change_within_bound`]), so this stays CometBFT's transition exactly.
    pub fn apply_updates(&self, changes: &[Validator]) -> Result<ValidatorSet, UpdateError> {
        let mut sorted: Vec<Validator> = changes.to_vec();
        sorted.sort_by_key(|v| v.id);
        for pair in sorted.windows(2) {
            if pair[0].id == pair[1].id {
                return Err(UpdateError::Duplicate(pair[0].id));
            }
        }
        // In CometBFT's order: an empty result first, then unknown removals, then the total.
        let additions = sorted
            .iter()
            .filter(|c| c.power > 0 && self.index_of(&c.id).is_none())
            .count();
        let removals = sorted.iter().filter(|c| c.power == 0).count();
        if additions == 0 && removals == self.len() {
            return Err(UpdateError::Empty);
        }
        let mut removed: u128 = 0;
        let mut after: u128 = u128::from(self.total);
        for change in &sorted {
            let old = self.power(&change.id);
            match (change.power, old) {
                (0, None) => return Err(UpdateError::UnknownRemoval(change.id)),
                (0, Some(old)) => removed += u128::from(old),
                (new, old) => after = after + u128::from(new) - u128::from(old.unwrap_or(0)),
            }
        }
        if after - removed > u128::from(TOTAL_VOTING_POWER_MAX) {
            return Err(UpdateError::TotalTooLarge);
        }
        // The total after the updates but before the removals: at most twice the largest total,
        // so 1.125 × it still fits an i64.
        let after_updates = after as i64;
        let newcomer = -(after_updates + (after_updates >> 3));
        let mut merged: Vec<(Validator, i64)> = Vec::with_capacity(self.len() + sorted.len());
        let mut mine = self.validators.iter().zip(&self.priorities).peekable();
        let mut theirs = sorted.iter().peekable();
        loop {
            let next = match (mine.peek(), theirs.peek()) {
                (None, None) => break,
                (Some(_), None) => Err(mine.next().expect("peeked")),
                (None, Some(_)) => Ok(theirs.next().expect("peeked")),
                (Some((held, _)), Some(change)) => {
                    if held.id < change.id {
                        Err(mine.next().expect("peeked"))
                    } else {
                        if held.id == change.id {
                            mine.next();
                        }
                        Ok(theirs.next().expect("peeked"))
                    }
                }
            };
            match next {
                Err((held, priority)) => merged.push((*held, *priority)),
                Ok(change) if change.power == 0 => {}
                Ok(change) => {
                    let priority = self
                        .index_of(&change.id)
                        .map_or(newcomer, |index| self.priorities[index]);
                    merged.push((*change, priority));
                }
            }
        }
        if merged.is_empty() {
            return Err(UpdateError::Empty);
        }
        let total: u64 = merged.iter().map(|(v, _)| v.power).sum();
        let validators: Vec<Validator> = merged.iter().map(|(v, _)| *v).collect();
        let mut priorities: Vec<i64> = merged.iter().map(|(_, p)| *p).collect();
        rescale(&mut priorities, total);
        centre(&mut priorities);
        Ok(ValidatorSet {
            validators,
            priorities,
            total,
        })
    }

    /// The voting power `changes` would move: the sum of |new power − old power|.
    pub fn power_moved(&self, changes: &[Validator]) -> u64 {
        changes.iter().fold(0u64, |sum, change| {
            let old = self.power(&change.id).unwrap_or(0);
            sum.saturating_add(old.abs_diff(change.power))
        })
    }

    /// Whether `other` holds the same validators with the same powers (priorities aside).
    pub fn same_members(&self, other: &ValidatorSet) -> bool {
        self.validators == other.validators
    }

    /// One step of CometBFT's algorithm: rescale, centre, add each power, and take the highest
    /// priority (ties to the lowest id) as proposer, who then pays the total power.
    fn increment(&self, priorities: &mut [i64]) -> usize {
        let total = self.total as i64;
        rescale(priorities, self.total);
        centre(priorities);
        let mut proposer = 0;
        for (index, priority) in priorities.iter_mut().enumerate() {
            *priority += self.validators[index].power as i64;
        }
        for index in 1..priorities.len() {
            // Strictly greater wins, so on a tie the lower index (lower id) stays.
            if priorities[index] > priorities[proposer] {
                proposer = index;
            }
        }
        priorities[proposer] -= total;
        proposer
    }
}

/// The validator sets of a span of heights, each from its first height until the next one's: the
/// checks that must use the set of a message's own height (gossip's signature checks and quorum
/// counts) look the set up here. Priorities are those of each entry's first height.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeightSets {
    /// Ascending by height, never empty.
    entries: Vec<(Height, Arc<ValidatorSet>)>,
    /// The highest height whose set is known: above it the set may yet change.
    known_to: Height,
}

impl HeightSets {
    /// One set for every height.
    pub fn single(set: ValidatorSet) -> Self {
        HeightSets {
            entries: vec![(Height(0), Arc::new(set))],
            known_to: Height(u64::MAX),
        }
    }

    /// Sets from their first heights, known up to the last entry's height; entries equal in
    /// members to the one before are merged. `None` when `entries` is empty or not ascending.
    pub fn new(entries: impl IntoIterator<Item = (Height, ValidatorSet)>) -> Option<Self> {
        let mut out: Vec<(Height, Arc<ValidatorSet>)> = Vec::new();
        let mut known_to = Height(0);
        for (height, set) in entries {
            if out.last().is_some() && known_to >= height {
                return None;
            }
            known_to = height;
            if out.last().is_some_and(|(_, last)| last.same_members(&set)) {
                continue;
            }
            out.push((height, Arc::new(set)));
        }
        (!out.is_empty()).then_some(HeightSets {
            entries: out,
            known_to,
        })
    }

    /// The set of `height`: the entry with the greatest first height at or below it. `None`
    /// below the first entry (a height too old to judge here) and above the last height known
    /// (whose set a block not yet committed here may change): a message of such a height can
    /// be neither trusted nor blamed.
    pub fn at(&self, height: Height) -> Option<&ValidatorSet> {
        if height > self.known_to {
            return None;
        }
        let index = self.entries.partition_point(|(first, _)| *first <= height);
        index
            .checked_sub(1)
            .map(|index| self.entries[index].1.as_ref())
    }

    /// The set of the highest heights known.
    pub fn latest(&self) -> &ValidatorSet {
        &self.entries.last().expect("never empty").1
    }

    /// Whether `id` is in any of the sets.
    pub fn contains(&self, id: &ValidatorId) -> bool {
        self.entries.iter().any(|(_, set)| set.power(id).is_some())
    }
}

/// Divides every priority by the smallest integer that brings their spread within
/// [`PRIORITY_WINDOW_FACTOR`] × `total` (CometBFT's `RescalePriorities`; Go's division, toward
/// zero).
fn rescale(priorities: &mut [i64], total: u64) {
    let (min, max) = priorities
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &p| (lo.min(p), hi.max(p)));
    let window = PRIORITY_WINDOW_FACTOR * total as i64;
    let spread = max - min;
    if spread > window {
        let ratio = (spread + window - 1) / window;
        for priority in priorities.iter_mut() {
            *priority /= ratio;
        }
    }
}

/// Subtracts the average priority, rounded toward −∞ as CometBFT's `big.Int.Div` does.
fn centre(priorities: &mut [i64]) {
    let sum: i128 = priorities.iter().map(|&p| i128::from(p)).sum();
    let average = sum.div_euclid(priorities.len() as i128) as i64;
    for priority in priorities.iter_mut() {
        *priority -= average;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8) -> ValidatorId {
        ValidatorId([byte; 32])
    }

    fn set(powers: &[u64]) -> ValidatorSet {
        ValidatorSet::new(powers.iter().enumerate().map(|(i, &power)| Validator {
            id: id(i as u8 + 1),
            power,
        }))
        .unwrap()
    }

    #[test]
    fn thresholds_are_strict() {
        let set = set(&[1, 1, 1]);
        assert!(!set.is_quorum(2));
        assert!(set.is_quorum(3));
        assert!(!set.is_one_third(1));
        assert!(set.is_one_third(2));
        let set = set_of_four();
        assert!(set.is_quorum(3) && !set.is_quorum(2));
        assert!(set.is_one_third(2) && !set.is_one_third(1));
    }

    fn set_of_four() -> ValidatorSet {
        set(&[1, 1, 1, 1])
    }

    #[test]
    fn bad_sets_are_refused() {
        assert_eq!(ValidatorSet::new([]), Err(ValidatorSetError::Empty));
        let zero = ValidatorSet::new([Validator {
            id: id(1),
            power: 0,
        }]);
        assert_eq!(zero, Err(ValidatorSetError::ZeroPower(id(1))));
        let twice = ValidatorSet::new([
            Validator {
                id: id(1),
                power: 1,
            },
            Validator {
                id: id(1),
                power: 2,
            },
        ]);
        assert_eq!(twice, Err(ValidatorSetError::Duplicate(id(1))));
        let huge = ValidatorSet::new([
            Validator {
                id: id(1),
                power: TOTAL_VOTING_POWER_MAX,
            },
            Validator {
                id: id(2),
                power: 1,
            },
        ]);
        assert_eq!(huge, Err(ValidatorSetError::TotalTooLarge));
    }

    #[test]
    fn equal_powers_rotate() {
        let set = set_of_four();
        let proposers: Vec<_> = (0..8).map(|r| set.proposer(Round(r))).collect();
        assert_eq!(
            proposers,
            vec![id(1), id(2), id(3), id(4), id(1), id(2), id(3), id(4)]
        );
    }

    /// Over many heights and rounds, each validator proposes in proportion to its power.
    #[test]
    fn selection_is_fair_in_proportion_to_power() {
        let cases: [&[u64]; 4] = [&[1, 2, 3, 4], &[10, 1, 1], &[100, 33, 33, 1, 7], &[5; 7]];
        for powers in cases {
            let mut set = set(powers);
            let total: u64 = powers.iter().sum();
            let heights = 200 * total;
            let mut counts = vec![0u64; powers.len()];
            for _ in 0..heights {
                let proposer = set.proposer(Round(0));
                counts[set.index_of(&proposer).unwrap()] += 1;
                set = set.next_height();
            }
            for (index, &power) in powers.iter().enumerate() {
                // CometBFT's algorithm is exact over a full window: within one of the share.
                let expected = heights * power / total;
                let got = counts[index];
                assert!(
                    got.abs_diff(expected) <= 1,
                    "powers {powers:?}: validator {index} proposed {got}, expected {expected}"
                );
            }
        }
    }

    #[test]
    fn priorities_survive_a_rebuild() {
        let mut set = set(&[5, 1, 3, 7]);
        for _ in 0..37 {
            set = set.next_height();
        }
        let pairs = set
            .validators()
            .iter()
            .copied()
            .zip(set.priorities().iter().copied())
            .rev();
        let rebuilt = ValidatorSet::with_priorities(pairs).unwrap();
        assert_eq!(rebuilt, set);
        let too_far = [(set.validators()[0], 4 * 5 + 1)];
        assert_eq!(
            ValidatorSet::with_priorities(too_far),
            Err(ValidatorSetError::PriorityOutOfRange(id(1)))
        );
    }

    #[test]
    fn rounds_within_a_height_are_fair_too() {
        let set = set(&[3, 1]);
        let proposers: Vec<_> = (0..400).map(|r| set.proposer(Round(r))).collect();
        let first = proposers.iter().filter(|p| **p == id(1)).count();
        assert_eq!(first, 300);
    }
}
