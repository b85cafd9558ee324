//! The validator set: voting power, the two thresholds, and weighted round-robin proposer
//! selection with CometBFT's priority algorithm.

use thiserror::Error;

use crate::types::{Round, ValidatorId, VotingPower};

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

    /// One step of CometBFT's algorithm: rescale, centre, add each power, and take the highest
    /// priority (ties to the lowest id) as proposer, who then pays the total power.
    fn increment(&self, priorities: &mut [i64]) -> usize {
        let total = self.total as i64;
        let (min, max) = priorities
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), &p| (lo.min(p), hi.max(p)));
        let window = PRIORITY_WINDOW_FACTOR * total;
        let spread = max - min;
        if spread > window {
            let ratio = (spread + window - 1) / window;
            for priority in priorities.iter_mut() {
                *priority /= ratio;
            }
        }
        let sum: i128 = priorities.iter().map(|&p| i128::from(p)).sum();
        let average = sum.div_euclid(priorities.len() as i128) as i64;
        let mut proposer = 0;
        for (index, priority) in priorities.iter_mut().enumerate() {
            *priority = *priority - average + self.validators[index].power as i64;
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
