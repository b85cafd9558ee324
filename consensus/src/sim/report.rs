//! What a run reports: decisions, counts, evidence seen, and the checkers' violations.

use thiserror::Error;

use crate::types::{Height, Proposal, Round, ValueId, Vote};

use super::scenario::ScenarioError;

/// One node's decision of one height.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Decision {
    pub node: usize,
    pub honest: bool,
    pub height: Height,
    pub round: Round,
    pub value: ValueId,
    pub at_ms: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum EvidenceKind {
    DuplicateVote,
    DuplicateProposal,
}

/// Evidence an honest node's machine reported, once per (node, kind, validator, height, round).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct EvidenceSeen {
    pub node: usize,
    pub kind: EvidenceKind,
    /// The offender's validator index.
    pub validator: usize,
    pub height: Height,
    pub round: Round,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Counts {
    /// Transmissions put on the network (each copy to each peer).
    pub messages_sent: u64,
    pub messages_delivered: u64,
    /// Dropped before GST, by chance or by a partition.
    pub messages_dropped: u64,
    pub messages_duplicated: u64,
    /// Arrived at a crashed node.
    pub messages_lost_to_crashes: u64,
    /// Gossip retransmissions after GST of messages lost before it.
    pub messages_retransmitted: u64,
    pub votes_signed: u64,
    pub proposals_signed: u64,
    pub timeouts_fired: u64,
    pub block_syncs: u64,
    pub crashes: u64,
    /// Crashes that struck after a Persist and before the signature it guards.
    pub crashes_between_persist_and_sign: u64,
    pub restarts: u64,
    /// The fewest and the most heights an honest node decided.
    pub heights_decided_min: u64,
    pub heights_decided_max: u64,
    /// Over the first honest decision of each height: the highest round, and the sum of
    /// (round + 1), i.e. the rounds the heights took.
    pub decision_round_max: u32,
    pub rounds_total: u64,
    pub events: u64,
}

/// What the checkers found. None of these may appear while byzantine power is at most f.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum Violation {
    #[error("agreement: at {height:?} honest nodes decided {decisions:?}")]
    Agreement {
        height: Height,
        decisions: Vec<(usize, ValueId)>,
    },
    #[error("validity: node {node} decided {value:?} at {height:?}, which {why}")]
    Validity {
        node: usize,
        height: Height,
        value: ValueId,
        why: &'static str,
    },
    #[error("double sign: honest node {node} sent {first:?} and then {second:?}")]
    DoubleSignVote {
        node: usize,
        first: Box<Vote>,
        second: Box<Vote>,
    },
    #[error("double sign: honest node {node} proposed {first:?} and then {second:?}")]
    DoubleSignProposal {
        node: usize,
        first: Box<Proposal>,
        second: Box<Proposal>,
    },
    #[error("node {node} signed {what} without persisting it first")]
    SignedWithoutPersist { node: usize, what: String },
    #[error("node {node} decided {first:?} and then {second:?} at {height:?}")]
    DecidedTwice {
        node: usize,
        height: Height,
        first: ValueId,
        second: ValueId,
    },
    #[error(
        "liveness: honest node {node} decided {decided} of {target} heights by {deadline_ms} ms \
         (stable from {stable_ms} ms)"
    )]
    Liveness {
        node: usize,
        decided: u64,
        target: u64,
        stable_ms: u64,
        deadline_ms: u64,
    },
    #[error("a simulator bound was exceeded: {what}")]
    LimitExceeded { what: &'static str },
    #[error("the run panicked: {0}")]
    Panic(String),
    #[error("invalid scenario: {0}")]
    Scenario(ScenarioError),
}

/// The outcome of one run.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub decisions: Vec<Decision>,
    pub evidence: Vec<EvidenceSeen>,
    pub counts: Counts,
    pub violations: Vec<Violation>,
    /// Whether the run expected, and so checked, liveness.
    pub liveness_checked: bool,
    /// When every honest node had to have decided every target height, if checked.
    pub liveness_deadline_ms: Option<u64>,
    pub end_ms: u64,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// Evidence of `kind` against `validator` that honest node `node` saw.
    pub fn saw_evidence(
        &self,
        kind: EvidenceKind,
        validator: usize,
    ) -> impl Iterator<Item = usize> {
        self.evidence
            .iter()
            .filter(move |e| e.kind == kind && e.validator == validator)
            .map(|e| e.node)
    }
}
