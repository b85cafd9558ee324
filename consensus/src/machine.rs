//! The round state machine of "The latest gossip on BFT consensus" (Buchman, Kwon, Milosevic,
//! 2018), Algorithm 1, as a pure function: `handle(Input) -> Vec<Effect>`.
//!
//! After every input the machine re-evaluates the paper's upon-rules against its state and the
//! vote keeper until none fires; each rule is one function named after its line. The node runs
//! the effects: it signs and broadcasts, and hands its own signed messages back as inputs, so
//! they are counted like anyone else's.

use std::collections::{BTreeMap, BTreeSet};

use crate::keeper::{FUTURE_ROUNDS_MAX, VoteKeeper, VoteOutcome};
use crate::types::{
    CommitCertificate, Evidence, Height, Proposal, Round, SignedProposal, SignedVote, Step,
    Timeout, TimeoutKind, TimeoutParams, ValidatorId, ValueId, Vote, VoteType,
};
use crate::validators::ValidatorSet;

/// Messages for heights above the current one that the machine holds until it gets there.
pub const FUTURE_MESSAGES_MAX: usize = 4_096;
/// How many heights ahead a held message may be.
pub const FUTURE_HEIGHTS_MAX: u64 = 2;

/// The application's verdict on a proposed value (the paper's `valid(v)`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Validity {
    Valid,
    Invalid,
}

/// What the node hands the machine.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Input {
    /// Start consensus for `height` with this validator set and these timeouts.
    StartHeight {
        height: Height,
        validators: ValidatorSet,
        params: TimeoutParams,
    },
    /// A proposal whose signature the node checked, with the application's verdict on its value.
    Proposal {
        proposal: SignedProposal,
        validity: Validity,
    },
    /// The value to propose, answering [`Effect::RequestValue`] (the paper's `getValue()`).
    ProposeValue {
        height: Height,
        round: Round,
        value: ValueId,
    },
    /// A vote whose signature the node checked.
    Vote(SignedVote),
    /// A timeout the machine scheduled has elapsed.
    TimeoutElapsed(Timeout),
    /// A commit certificate obtained through block sync, checked by the node (signatures,
    /// quorum) and whose value the node holds and judged valid.
    Commit(CommitCertificate),
}

/// What the machine asks the node to do, in order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Effect {
    /// Make this record durable (fsync) before running any later effect of this batch.
    Persist(LastSigned),
    /// Sign this proposal, broadcast it, and hand it back as [`Input::Proposal`].
    SignProposal(Proposal),
    /// Sign this vote, broadcast it, and hand it back as [`Input::Vote`].
    SignVote(Vote),
    /// Hand back [`Input::TimeoutElapsed`] after `duration_ms`.
    ScheduleTimeout { timeout: Timeout, duration_ms: u64 },
    /// Produce a value to propose and hand it back as [`Input::ProposeValue`].
    RequestValue {
        height: Height,
        round: Round,
        timeout_ms: u64,
    },
    /// The height is decided.
    Decide {
        value: ValueId,
        certificate: CommitCertificate,
    },
    /// A validator signed two conflicting messages.
    Evidence(Evidence),
}

/// The double-sign guard's record: what this validator is about to sign.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LastSigned {
    Proposal(Proposal),
    Vote(Vote),
}

/// A proposal received for one round: the first one from the round's proposer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct ReceivedProposal {
    signed: SignedProposal,
    validity: Validity,
}

/// One validator's (or a full node's) consensus state.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Machine {
    /// This node's validator id; `None` for a node that only follows.
    me: Option<ValidatorId>,
    height: Height,
    round: Round,
    step: Step,
    params: TimeoutParams,
    keeper: VoteKeeper,
    locked: Option<(ValueId, Round)>,
    valid: Option<(ValueId, Round)>,
    decided: Option<ValueId>,
    proposals: BTreeMap<Round, ReceivedProposal>,
    /// Rounds whose "for the first time" rules already fired.
    prevote_timeout_scheduled: BTreeSet<Round>,
    precommit_timeout_scheduled: BTreeSet<Round>,
    polka_value_seen: BTreeSet<Round>,
    /// Votes this validator signed at this height: it never signs a different one.
    signed_votes: BTreeMap<(Round, VoteType), Option<ValueId>>,
    signed_proposals: BTreeMap<Round, ValueId>,
    /// Messages for later heights, replayed on StartHeight.
    future: Vec<Input>,
}

impl Machine {
    /// A machine waiting for its first [`Input::StartHeight`].
    pub fn new(me: Option<ValidatorId>, validators: ValidatorSet) -> Self {
        Machine {
            me,
            height: Height(0),
            round: Round(0),
            step: Step::Unstarted,
            params: TimeoutParams::default(),
            keeper: VoteKeeper::new(Height(0), validators),
            locked: None,
            valid: None,
            decided: None,
            proposals: BTreeMap::new(),
            prevote_timeout_scheduled: BTreeSet::new(),
            precommit_timeout_scheduled: BTreeSet::new(),
            polka_value_seen: BTreeSet::new(),
            signed_votes: BTreeMap::new(),
            signed_proposals: BTreeMap::new(),
            future: Vec::new(),
        }
    }

    pub fn height(&self) -> Height {
        self.height
    }

    pub fn round(&self) -> Round {
        self.round
    }

    pub fn step(&self) -> Step {
        self.step
    }

    pub fn locked(&self) -> Option<(ValueId, Round)> {
        self.locked
    }

    pub fn valid(&self) -> Option<(ValueId, Round)> {
        self.valid
    }

    pub fn decided(&self) -> Option<ValueId> {
        self.decided
    }

    pub fn validators(&self) -> &ValidatorSet {
        self.keeper.validators()
    }

    pub fn proposer(&self, round: Round) -> ValidatorId {
        self.keeper.validators().proposer(round)
    }

    /// Test support for the simulator's amnesia fault: forget the lock, as a byzantine validator
    /// that ignores it would.
    #[doc(hidden)]
    pub fn forget_lock(&mut self) {
        self.locked = None;
    }

    /// Handles one input and returns the effects to run, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        let mut effects = Vec::new();
        match input {
            Input::StartHeight {
                height,
                validators,
                params,
            } => self.start_height(height, validators, params, &mut effects),
            Input::Proposal { proposal, validity } => {
                self.on_proposal(proposal, validity, &mut effects)
            }
            Input::ProposeValue {
                height,
                round,
                value,
            } => self.on_propose_value(height, round, value, &mut effects),
            Input::Vote(vote) => self.on_vote(vote, &mut effects),
            Input::TimeoutElapsed(timeout) => self.on_timeout(timeout, &mut effects),
            Input::Commit(certificate) => self.on_commit(certificate, &mut effects),
        }
        self.run_rules(&mut effects);
        effects
    }

    fn start_height(
        &mut self,
        height: Height,
        validators: ValidatorSet,
        params: TimeoutParams,
        effects: &mut Vec<Effect>,
    ) {
        assert!(
            height > self.height,
            "heights only move forward: {height:?} after {:?}",
            self.height
        );
        let future = std::mem::take(&mut self.future);
        *self = Machine {
            params,
            height,
            keeper: VoteKeeper::new(height, validators.clone()),
            ..Machine::new(self.me, validators)
        };
        self.start_round(Round(0), effects);
        for input in future {
            let held = match &input {
                Input::Proposal { proposal, .. } => proposal.message.height,
                Input::Vote(vote) => vote.message.height,
                _ => continue,
            };
            if held == height {
                effects.extend(self.handle(input));
            } else if held > height {
                self.future.push(input);
            }
        }
    }

    /// Whether a message of `height` would be taken now: handled (this height) or held for its
    /// height (within [`FUTURE_HEIGHTS_MAX`] and while the buffer has room). The node appends a
    /// message to its WAL only if this is true, so that a replay, which runs at a later height
    /// than some of the messages were received, sees exactly what the live machine kept.
    pub fn keeps_height(&self, height: Height) -> bool {
        height == self.height
            || (height > self.height
                && height.0 <= self.height.0 + FUTURE_HEIGHTS_MAX
                && self.future.len() < FUTURE_MESSAGES_MAX)
    }

    /// Holds a message for a later height, within bounds. Returns true if it was for a later
    /// height (held or dropped).
    fn hold_if_future(&mut self, height: Height, input: &Input) -> bool {
        if height <= self.height {
            return false;
        }
        if self.keeps_height(height) {
            self.future.push(input.clone());
        }
        true
    }

    /// StartRound (L11-L21).
    fn start_round(&mut self, round: Round, effects: &mut Vec<Effect>) {
        self.round = round;
        self.step = Step::Propose;
        let timeout = Timeout {
            kind: TimeoutKind::Propose,
            height: self.height,
            round,
        };
        let duration_ms = self.params.duration_ms(TimeoutKind::Propose, round);
        if self.me == Some(self.proposer(round)) {
            match self.valid {
                // L15: re-propose the valid value with the round of its polka.
                Some((value, valid_round)) => self.sign_proposal(value, Some(valid_round), effects),
                // L18: getValue().
                None => effects.push(Effect::RequestValue {
                    height: self.height,
                    round,
                    timeout_ms: duration_ms,
                }),
            }
        }
        // L21 schedules this for non-proposers; scheduling it for the proposer too keeps a slow
        // or failed getValue() from stalling the round.
        effects.push(Effect::ScheduleTimeout {
            timeout,
            duration_ms,
        });
    }

    fn on_propose_value(
        &mut self,
        height: Height,
        round: Round,
        value: ValueId,
        effects: &mut Vec<Effect>,
    ) {
        let current = height == self.height && round == self.round && self.step == Step::Propose;
        // A second answer for the same round (a retry, a slow app) must not become a second
        // proposal.
        let already_proposed = self.signed_proposals.contains_key(&round);
        if current
            && !already_proposed
            && self.me == Some(self.proposer(round))
            && self.valid.is_none()
        {
            self.sign_proposal(value, None, effects);
        }
    }

    fn on_proposal(
        &mut self,
        signed: SignedProposal,
        validity: Validity,
        effects: &mut Vec<Effect>,
    ) {
        let proposal = signed.message;
        let input = Input::Proposal {
            proposal: signed,
            validity,
        };
        if proposal.height < self.height || self.hold_if_future(proposal.height, &input) {
            return;
        }
        let far_ahead = proposal.round.0 > self.round.0.saturating_add(FUTURE_ROUNDS_MAX);
        if far_ahead || proposal.proposer != self.proposer(proposal.round) {
            return;
        }
        if let Some(first) = self.proposals.get(&proposal.round) {
            if first.signed.message != proposal {
                effects.push(Effect::Evidence(Evidence::DuplicateProposal {
                    first: first.signed,
                    second: signed,
                }));
            }
            return;
        }
        self.proposals
            .insert(proposal.round, ReceivedProposal { signed, validity });
        self.keeper
            .note_proposal(proposal.round, proposal.proposer, self.round);
    }

    fn on_vote(&mut self, vote: SignedVote, effects: &mut Vec<Effect>) {
        let height = vote.message.height;
        if height < self.height || self.hold_if_future(height, &Input::Vote(vote)) {
            return;
        }
        if let VoteOutcome::Equivocation(evidence, _) = self.keeper.add_vote(vote, self.round) {
            effects.push(Effect::Evidence(*evidence));
        }
    }

    fn on_timeout(&mut self, timeout: Timeout, effects: &mut Vec<Effect>) {
        if timeout.height != self.height || timeout.round != self.round {
            return;
        }
        match (timeout.kind, self.step) {
            // L57: OnTimeoutPropose.
            (TimeoutKind::Propose, Step::Propose) => {
                self.sign_vote(VoteType::Prevote, None, effects);
                self.step = Step::Prevote;
            }
            // L61: OnTimeoutPrevote.
            (TimeoutKind::Prevote, Step::Prevote) => {
                self.sign_vote(VoteType::Precommit, None, effects);
                self.step = Step::Precommit;
            }
            // L65: OnTimeoutPrecommit.
            (TimeoutKind::Precommit, step) if step != Step::Commit => {
                self.start_round(self.round.next(), effects);
            }
            _ => {}
        }
    }

    fn on_commit(&mut self, certificate: CommitCertificate, effects: &mut Vec<Effect>) {
        if certificate.height == self.height && self.decided.is_none() {
            self.decide(certificate.value, certificate, effects);
        }
    }

    /// Evaluates the upon-rules until none fires.
    fn run_rules(&mut self, effects: &mut Vec<Effect>) {
        if self.step == Step::Unstarted {
            return;
        }
        loop {
            let fired = self.rule_l49(effects)
                || self.rule_l55(effects)
                || self.rule_l22(effects)
                || self.rule_l28(effects)
                || self.rule_l34(effects)
                || self.rule_l36(effects)
                || self.rule_l44(effects)
                || self.rule_l47(effects);
            if !fired || self.step == Step::Commit {
                return;
            }
        }
    }

    fn current_proposal(&self) -> Option<ReceivedProposal> {
        self.proposals.get(&self.round).copied()
    }

    /// L22: upon PROPOSAL(h, r, v, −1) from proposer(h, r) while step = propose.
    fn rule_l22(&mut self, effects: &mut Vec<Effect>) -> bool {
        let Some(received) = self.current_proposal() else {
            return false;
        };
        let proposal = received.signed.message;
        if self.step != Step::Propose || proposal.pol_round.is_some() {
            return false;
        }
        let unlocked_or_same = match self.locked {
            None => true,
            Some((locked_value, _)) => locked_value == proposal.value,
        };
        let prevote =
            (received.validity == Validity::Valid && unlocked_or_same).then_some(proposal.value);
        self.sign_vote(VoteType::Prevote, prevote, effects);
        self.step = Step::Prevote;
        true
    }

    /// L28: upon PROPOSAL(h, r, v, vr) and 2f+1 PREVOTE(h, vr, id(v)) while step = propose and
    /// 0 ≤ vr < r.
    fn rule_l28(&mut self, effects: &mut Vec<Effect>) -> bool {
        let Some(received) = self.current_proposal() else {
            return false;
        };
        let proposal = received.signed.message;
        let Some(vr) = proposal.pol_round else {
            return false;
        };
        let polka = self
            .keeper
            .has_quorum_for(vr, VoteType::Prevote, Some(proposal.value));
        if self.step != Step::Propose || vr >= self.round || !polka {
            return false;
        }
        let lock_allows = match self.locked {
            None => true,
            Some((locked_value, locked_round)) => {
                locked_round <= vr || locked_value == proposal.value
            }
        };
        let prevote =
            (received.validity == Validity::Valid && lock_allows).then_some(proposal.value);
        self.sign_vote(VoteType::Prevote, prevote, effects);
        self.step = Step::Prevote;
        true
    }

    /// L34: upon 2f+1 PREVOTE(h, r, ∗) while step = prevote, for the first time.
    fn rule_l34(&mut self, effects: &mut Vec<Effect>) -> bool {
        let quorum = self.keeper.has_quorum_any(self.round, VoteType::Prevote);
        if self.step != Step::Prevote
            || !quorum
            || !self.prevote_timeout_scheduled.insert(self.round)
        {
            return false;
        }
        self.schedule(TimeoutKind::Prevote, effects);
        true
    }

    /// L36: upon PROPOSAL(h, r, v, ∗) and 2f+1 PREVOTE(h, r, id(v)) while valid(v) and
    /// step ≥ prevote, for the first time.
    fn rule_l36(&mut self, effects: &mut Vec<Effect>) -> bool {
        let Some(received) = self.current_proposal() else {
            return false;
        };
        let value = received.signed.message.value;
        let polka = self
            .keeper
            .has_quorum_for(self.round, VoteType::Prevote, Some(value));
        if received.validity != Validity::Valid
            || self.step < Step::Prevote
            || !polka
            || self.polka_value_seen.contains(&self.round)
        {
            return false;
        }
        self.polka_value_seen.insert(self.round);
        if self.step == Step::Prevote {
            self.locked = Some((value, self.round));
            self.sign_vote(VoteType::Precommit, Some(value), effects);
            self.step = Step::Precommit;
        }
        self.valid = Some((value, self.round));
        true
    }

    /// L44: upon 2f+1 PREVOTE(h, r, nil) while step = prevote.
    fn rule_l44(&mut self, effects: &mut Vec<Effect>) -> bool {
        let nil_polka = self
            .keeper
            .has_quorum_for(self.round, VoteType::Prevote, None);
        if self.step != Step::Prevote || !nil_polka {
            return false;
        }
        self.sign_vote(VoteType::Precommit, None, effects);
        self.step = Step::Precommit;
        true
    }

    /// L47: upon 2f+1 PRECOMMIT(h, r, ∗), for the first time.
    fn rule_l47(&mut self, effects: &mut Vec<Effect>) -> bool {
        let quorum = self.keeper.has_quorum_any(self.round, VoteType::Precommit);
        if !quorum || !self.precommit_timeout_scheduled.insert(self.round) {
            return false;
        }
        self.schedule(TimeoutKind::Precommit, effects);
        true
    }

    /// L49: upon PROPOSAL(h, r, v, ∗) and 2f+1 PRECOMMIT(h, r, id(v)), in any round, while
    /// the height is undecided.
    fn rule_l49(&mut self, effects: &mut Vec<Effect>) -> bool {
        if self.decided.is_some() {
            return false;
        }
        let decision = self.proposals.iter().find_map(|(&round, received)| {
            let value = received.signed.message.value;
            let committed = self
                .keeper
                .has_quorum_for(round, VoteType::Precommit, Some(value));
            (committed && received.validity == Validity::Valid).then_some((round, value))
        });
        let Some((round, value)) = decision else {
            return false;
        };
        let certificate = CommitCertificate {
            height: self.height,
            round,
            value,
            precommits: self.keeper.votes_for(round, VoteType::Precommit, value),
        };
        self.decide(value, certificate, effects);
        true
    }

    /// L55: upon f+1 messages of a round above the current one.
    fn rule_l55(&mut self, effects: &mut Vec<Effect>) -> bool {
        match self.keeper.skip_round_above(self.round) {
            Some(round) => {
                self.start_round(round, effects);
                true
            }
            None => false,
        }
    }

    fn decide(
        &mut self,
        value: ValueId,
        certificate: CommitCertificate,
        effects: &mut Vec<Effect>,
    ) {
        self.decided = Some(value);
        self.step = Step::Commit;
        effects.push(Effect::Decide { value, certificate });
    }

    fn schedule(&self, kind: TimeoutKind, effects: &mut Vec<Effect>) {
        effects.push(Effect::ScheduleTimeout {
            timeout: Timeout {
                kind,
                height: self.height,
                round: self.round,
            },
            duration_ms: self.params.duration_ms(kind, self.round),
        });
    }

    /// Asks the node to sign a vote, after making the double-sign guard's record durable. A
    /// validator never signs two different votes for one (height, round, type): asking to would
    /// be a bug in this machine, so it stops the node.
    fn sign_vote(
        &mut self,
        vote_type: VoteType,
        value: Option<ValueId>,
        effects: &mut Vec<Effect>,
    ) {
        let Some(me) = self.me else {
            return;
        };
        if self.keeper.validators().power(&me).is_none() {
            return;
        }
        let previous = self.signed_votes.insert((self.round, vote_type), value);
        assert!(
            previous.is_none_or(|previous| previous == value),
            "about to sign {vote_type:?} {value:?} at {:?}/{:?} after signing {previous:?}",
            self.height,
            self.round
        );
        let vote = Vote {
            vote_type,
            height: self.height,
            round: self.round,
            value,
            validator: me,
        };
        effects.push(Effect::Persist(LastSigned::Vote(vote)));
        effects.push(Effect::SignVote(vote));
    }

    fn sign_proposal(
        &mut self,
        value: ValueId,
        pol_round: Option<Round>,
        effects: &mut Vec<Effect>,
    ) {
        let Some(me) = self.me else {
            return;
        };
        let previous = self.signed_proposals.insert(self.round, value);
        assert!(
            previous.is_none_or(|previous| previous == value),
            "about to propose {value:?} at {:?}/{:?} after proposing {previous:?}",
            self.height,
            self.round
        );
        let proposal = Proposal {
            height: self.height,
            round: self.round,
            value,
            pol_round,
            proposer: me,
        };
        effects.push(Effect::Persist(LastSigned::Proposal(proposal)));
        effects.push(Effect::SignProposal(proposal));
    }
}
