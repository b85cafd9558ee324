//! The vote keeper: per-round tallies by voting power, the thresholds of Algorithm 1, and
//! equivocation evidence.
//!
//! It keeps the first vote of each (validator, round, type) and ignores exact duplicates. A
//! conflicting vote is evidence. It is never counted twice towards "anything" (the 2f+1 of
//! `∗` and the skip-round rule count each validator once), but it does count towards its own
//! value, up to [`EQUIVOCATION_VALUES_MAX`] values per validator: the paper counts every
//! message received, and if it did not, an equivocator could show one honest node a vote for X
//! and another a vote for Y, so that neither ever sees the other's polka and the height stalls
//! (the simulator found exactly that). It is safe while faulty power is at most f: two values
//! with 2f+1 each would need more than f validators voting for both.
//!
//! The state machine queries the thresholds after every input; each query is a lookup in
//! running sums.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{
    Evidence, Height, PolkaCertificate, Round, SignedVote, ValidatorId, ValueId, VoteType,
    VotingPower,
};
use crate::validators::ValidatorSet;

/// Votes further ahead of the current round than this are dropped: a peer cannot make the
/// keeper hold an unbounded number of rounds.
pub const FUTURE_ROUNDS_MAX: u32 = 64;
/// Most distinct values one validator's votes count for in one (round, type). Past it, an
/// equivocator's further votes are evidence only.
pub const EQUIVOCATION_VALUES_MAX: usize = 8;

/// A threshold of Algorithm 1 that a vote made true for the first time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Threshold {
    /// 2f+1 prevotes for anything.
    PolkaAny(Round),
    /// 2f+1 prevotes for nil.
    PolkaNil(Round),
    /// 2f+1 prevotes for one value.
    PolkaValue(Round, ValueId),
    /// 2f+1 precommits for anything.
    PrecommitAny(Round),
    /// 2f+1 precommits for one value.
    PrecommitValue(Round, ValueId),
    /// f+1 of the power sent messages in a round above the current one.
    SkipRound(Round),
}

/// What happened to a vote handed to the keeper.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum VoteOutcome {
    /// Counted; these thresholds became true with it.
    Added(Vec<Threshold>),
    /// The same vote again.
    Duplicate,
    /// A different vote of the same type and round from the same validator: evidence. It
    /// counts towards its own value (within [`EQUIVOCATION_VALUES_MAX`]), and these thresholds
    /// became true with it.
    Equivocation(Box<Evidence>, Vec<Threshold>),
    /// Wrong height, unknown validator, or a round too far ahead.
    Ignored(IgnoreReason),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IgnoreReason {
    WrongHeight,
    UnknownValidator,
    RoundTooFarAhead,
}

/// Votes of one type in one round.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
struct Tally {
    /// Each validator's first vote: these count towards "anything".
    votes: BTreeMap<ValidatorId, SignedVote>,
    /// Conflicting later votes, counted towards their own values only.
    conflicting: BTreeMap<(ValidatorId, Option<ValueId>), SignedVote>,
    /// Power per value; `None` is nil.
    power_by_value: BTreeMap<Option<ValueId>, VotingPower>,
    power: VotingPower,
}

#[derive(Clone, PartialEq, Eq, Debug, Default)]
struct RoundVotes {
    prevotes: Tally,
    precommits: Tally,
    /// Validators with any message in this round, and their power (for the skip-round rule).
    senders: BTreeSet<ValidatorId>,
    senders_power: VotingPower,
}

impl RoundVotes {
    fn tally(&self, vote_type: VoteType) -> &Tally {
        match vote_type {
            VoteType::Prevote => &self.prevotes,
            VoteType::Precommit => &self.precommits,
        }
    }

    fn tally_mut(&mut self, vote_type: VoteType) -> &mut Tally {
        match vote_type {
            VoteType::Prevote => &mut self.prevotes,
            VoteType::Precommit => &mut self.precommits,
        }
    }
}

/// The votes of one height.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VoteKeeper {
    height: Height,
    validators: ValidatorSet,
    rounds: BTreeMap<Round, RoundVotes>,
}

impl VoteKeeper {
    pub fn new(height: Height, validators: ValidatorSet) -> Self {
        VoteKeeper {
            height,
            validators,
            rounds: BTreeMap::new(),
        }
    }

    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }

    /// Adds a vote whose signature the node has checked. `current_round` bounds how far ahead
    /// votes are kept.
    pub fn add_vote(&mut self, vote: SignedVote, current_round: Round) -> VoteOutcome {
        let message = vote.message;
        if message.height != self.height {
            return VoteOutcome::Ignored(IgnoreReason::WrongHeight);
        }
        let Some(power) = self.validators.power(&message.validator) else {
            return VoteOutcome::Ignored(IgnoreReason::UnknownValidator);
        };
        if message.round.0 > current_round.0.saturating_add(FUTURE_ROUNDS_MAX) {
            return VoteOutcome::Ignored(IgnoreReason::RoundTooFarAhead);
        }
        let before = self.thresholds(message.round, message.vote_type, current_round);
        let round = self.rounds.entry(message.round).or_default();
        let tally = round.tally_mut(message.vote_type);
        let Some(first) = tally.votes.get(&message.validator).copied() else {
            tally.votes.insert(message.validator, vote);
            *tally.power_by_value.entry(message.value).or_insert(0) += power;
            tally.power += power;
            round.note_sender(message.validator, power);
            let crossed =
                self.newly_crossed(&before, message.round, message.vote_type, current_round);
            return VoteOutcome::Added(crossed);
        };
        let key = (message.validator, message.value);
        if first.message == message || tally.conflicting.contains_key(&key) {
            return VoteOutcome::Duplicate;
        }
        let evidence = Box::new(Evidence::DuplicateVote {
            first,
            second: vote,
        });
        let counted = tally
            .conflicting
            .range((message.validator, None)..)
            .take_while(|((validator, _), _)| *validator == message.validator)
            .count();
        if counted >= EQUIVOCATION_VALUES_MAX {
            return VoteOutcome::Equivocation(evidence, Vec::new());
        }
        tally.conflicting.insert(key, vote);
        *tally.power_by_value.entry(message.value).or_insert(0) += power;
        let crossed = self.newly_crossed(&before, message.round, message.vote_type, current_round);
        VoteOutcome::Equivocation(evidence, crossed)
    }

    fn newly_crossed(
        &self,
        before: &[Threshold],
        round: Round,
        vote_type: VoteType,
        current_round: Round,
    ) -> Vec<Threshold> {
        self.thresholds(round, vote_type, current_round)
            .into_iter()
            .filter(|threshold| !before.contains(threshold))
            .collect()
    }

    /// The thresholds that hold for `vote_type` in `round`, and the skip-round one.
    fn thresholds(&self, round: Round, vote_type: VoteType, current: Round) -> Vec<Threshold> {
        let mut out = Vec::new();
        if self.has_quorum_any(round, vote_type) {
            out.push(match vote_type {
                VoteType::Prevote => Threshold::PolkaAny(round),
                VoteType::Precommit => Threshold::PrecommitAny(round),
            });
        }
        if vote_type == VoteType::Prevote && self.has_quorum_for(round, vote_type, None) {
            out.push(Threshold::PolkaNil(round));
        }
        if let Some(value) = self.quorum_value(round, vote_type) {
            out.push(match vote_type {
                VoteType::Prevote => Threshold::PolkaValue(round, value),
                VoteType::Precommit => Threshold::PrecommitValue(round, value),
            });
        }
        if round > current
            && self
                .rounds
                .get(&round)
                .is_some_and(|votes| self.validators.is_one_third(votes.senders_power))
        {
            out.push(Threshold::SkipRound(round));
        }
        out
    }

    /// Records that `validator` sent a proposal in `round`, for the skip-round rule.
    pub fn note_proposal(&mut self, round: Round, validator: ValidatorId, current_round: Round) {
        if round.0 > current_round.0.saturating_add(FUTURE_ROUNDS_MAX) {
            return;
        }
        if let Some(power) = self.validators.power(&validator) {
            self.rounds
                .entry(round)
                .or_default()
                .note_sender(validator, power);
        }
    }

    fn power(&self, round: Round, vote_type: VoteType, value: Option<Option<ValueId>>) -> u64 {
        let Some(votes) = self.rounds.get(&round) else {
            return 0;
        };
        let tally = votes.tally(vote_type);
        match value {
            None => tally.power,
            Some(value) => tally.power_by_value.get(&value).copied().unwrap_or(0),
        }
    }

    /// 2f+1 votes of `vote_type` in `round`, for anything (the paper's `∗`).
    pub fn has_quorum_any(&self, round: Round, vote_type: VoteType) -> bool {
        self.validators
            .is_quorum(self.power(round, vote_type, None))
    }

    /// 2f+1 votes of `vote_type` in `round` for `value` (`None`: nil).
    pub fn has_quorum_for(
        &self,
        round: Round,
        vote_type: VoteType,
        value: Option<ValueId>,
    ) -> bool {
        self.validators
            .is_quorum(self.power(round, vote_type, Some(value)))
    }

    /// The value with 2f+1 votes of `vote_type` in `round`, if any (at most one can have them
    /// while faulty power is below 1/3; the lowest id wins otherwise, deterministically).
    pub fn quorum_value(&self, round: Round, vote_type: VoteType) -> Option<ValueId> {
        let votes = self.rounds.get(&round)?;
        votes
            .tally(vote_type)
            .power_by_value
            .iter()
            .find(|(value, power)| value.is_some() && self.validators.is_quorum(**power))
            .and_then(|(value, _)| *value)
    }

    /// The rounds above `round` where validators holding more than 1/3 of the power sent
    /// something: the smallest one is where the skip-round rule (L55) jumps.
    pub fn skip_round_above(&self, round: Round) -> Option<Round> {
        self.rounds
            .range(round.next()..)
            .find(|(_, votes)| self.validators.is_one_third(votes.senders_power))
            .map(|(round, _)| *round)
    }

    /// The polka for `value` in `round`, if more than 2/3 of the power prevoted it.
    pub fn polka_certificate(&self, round: Round, value: ValueId) -> Option<PolkaCertificate> {
        self.has_quorum_for(round, VoteType::Prevote, Some(value))
            .then(|| PolkaCertificate {
                height: self.height,
                round,
                value,
                prevotes: self.votes_for(round, VoteType::Prevote, value),
            })
    }

    /// The signed votes for `value` of `vote_type` in `round` (an equivocator's conflicting
    /// vote included when it is for `value`), sorted by validator.
    pub fn votes_for(&self, round: Round, vote_type: VoteType, value: ValueId) -> Vec<SignedVote> {
        let Some(votes) = self.rounds.get(&round) else {
            return Vec::new();
        };
        let tally = votes.tally(vote_type);
        let mut found: Vec<SignedVote> = tally
            .votes
            .values()
            .chain(tally.conflicting.values())
            .filter(|vote| vote.message.value == Some(value))
            .copied()
            .collect();
        found.sort_by_key(|vote| vote.message.validator);
        found
    }
}

impl RoundVotes {
    fn note_sender(&mut self, validator: ValidatorId, power: VotingPower) {
        if self.senders.insert(validator) {
            self.senders_power += power;
        }
    }
}
