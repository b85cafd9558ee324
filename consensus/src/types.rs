//! The nouns of consensus: heights, rounds, steps, votes, proposals, certificates, evidence.
//!
//! Signatures are opaque bytes here: the node signs and verifies, and only hands the machine
//! messages whose signatures it has checked. What this crate fixes is what gets signed: the
//! canonical sign bytes of votes and proposals, which include the chain id.

use std::fmt;

/// A block height. Heights start at 1.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Height(pub u64);

impl Height {
    pub fn next(self) -> Height {
        Height(self.0 + 1)
    }
}

/// A round within a height. Rounds start at 0; "no round" (the paper's −1) is `Option::None`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Round(pub u32);

impl Round {
    pub fn next(self) -> Round {
        Round(self.0 + 1)
    }
}

/// The step of a round, in the order the paper's rules compare them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Step {
    /// Before the first StartRound of a height.
    Unstarted,
    Propose,
    Prevote,
    Precommit,
    /// The height is decided.
    Commit,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum VoteType {
    Prevote,
    Precommit,
}

/// The id of a proposed value (a block hash).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValueId(pub [u8; 32]);

impl fmt::Debug for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: String = self.0.iter().take(4).map(|b| format!("{b:02x}")).collect();
        write!(f, "ValueId({hex})")
    }
}

/// A validator's identity: its ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValidatorId(pub [u8; 32]);

impl fmt::Debug for ValidatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: String = self.0.iter().take(4).map(|b| format!("{b:02x}")).collect();
        write!(f, "ValidatorId({hex})")
    }
}

/// Voting power. Sums are u64 and never overflow: the validator set caps the total.
pub type VotingPower = u64;

/// A prevote or precommit for a value, or for nil.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Vote {
    pub vote_type: VoteType,
    pub height: Height,
    pub round: Round,
    /// `None` is a vote for nil.
    pub value: Option<ValueId>,
    pub validator: ValidatorId,
}

/// A proposal of a value for (height, round). `pol_round` is the round of the polka that
/// justifies re-proposing a valid value (the paper's validRound), or `None`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Proposal {
    pub height: Height,
    pub round: Round,
    pub value: ValueId,
    pub pol_round: Option<Round>,
    pub proposer: ValidatorId,
}

/// Domain tags, so a vote's sign bytes can never be read as a proposal's.
const VOTE_DOMAIN: &[u8] = b"weft/vote/v1";
const PROPOSAL_DOMAIN: &[u8] = b"weft/proposal/v1";

fn put_chain_id(out: &mut Vec<u8>, chain_id: &str) {
    assert!(chain_id.len() <= 255, "chain ids are validated to 50 bytes");
    out.push(chain_id.len() as u8);
    out.extend_from_slice(chain_id.as_bytes());
}

impl Vote {
    /// The canonical bytes a validator signs: domain, chain id, type, height, round, value.
    pub fn sign_bytes(&self, chain_id: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(VOTE_DOMAIN.len() + chain_id.len() + 80);
        out.extend_from_slice(VOTE_DOMAIN);
        put_chain_id(&mut out, chain_id);
        out.push(match self.vote_type {
            VoteType::Prevote => 1,
            VoteType::Precommit => 2,
        });
        out.extend_from_slice(&self.height.0.to_le_bytes());
        out.extend_from_slice(&self.round.0.to_le_bytes());
        match self.value {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                out.extend_from_slice(&value.0);
            }
        }
        out.extend_from_slice(&self.validator.0);
        out
    }
}

impl Proposal {
    /// The canonical bytes a proposer signs: domain, chain id, height, round, value, POL round.
    pub fn sign_bytes(&self, chain_id: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(PROPOSAL_DOMAIN.len() + chain_id.len() + 96);
        out.extend_from_slice(PROPOSAL_DOMAIN);
        put_chain_id(&mut out, chain_id);
        out.extend_from_slice(&self.height.0.to_le_bytes());
        out.extend_from_slice(&self.round.0.to_le_bytes());
        out.extend_from_slice(&self.value.0);
        match self.pol_round {
            None => out.push(0),
            Some(round) => {
                out.push(1);
                out.extend_from_slice(&round.0.to_le_bytes());
            }
        }
        out.extend_from_slice(&self.proposer.0);
        out
    }
}

/// An ed25519 signature, opaque to this crate.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: String = self.0.iter().take(4).map(|b| format!("{b:02x}")).collect();
        write!(f, "Signature({hex})")
    }
}

/// A message with the signature the node checked.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Signed<T> {
    pub message: T,
    pub signature: Signature,
}

pub type SignedVote = Signed<Vote>;
pub type SignedProposal = Signed<Proposal>;

/// More than 2/3 of the voting power precommitted `value` at (height, round): the proof that
/// the height is decided. It travels in the next block and with block sync.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CommitCertificate {
    pub height: Height,
    pub round: Round,
    pub value: ValueId,
    /// The precommits, sorted by validator.
    pub precommits: Vec<SignedVote>,
}

/// More than 2/3 of the voting power prevoted `value` at (height, round).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PolkaCertificate {
    pub height: Height,
    pub round: Round,
    pub value: ValueId,
    /// The prevotes, sorted by validator.
    pub prevotes: Vec<SignedVote>,
}

/// Proof that a validator signed two conflicting messages.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Evidence {
    /// Two votes of one type for different values at one (height, round).
    DuplicateVote {
        first: SignedVote,
        second: SignedVote,
    },
    /// Two proposals for different values at one (height, round).
    DuplicateProposal {
        first: SignedProposal,
        second: SignedProposal,
    },
}

impl Evidence {
    pub fn validator(&self) -> ValidatorId {
        match self {
            Evidence::DuplicateVote { first, .. } => first.message.validator,
            Evidence::DuplicateProposal { first, .. } => first.message.proposer,
        }
    }

    pub fn height(&self) -> Height {
        match self {
            Evidence::DuplicateVote { first, .. } => first.message.height,
            Evidence::DuplicateProposal { first, .. } => first.message.height,
        }
    }
}

/// Timeouts: a base plus a per-round delta, in milliseconds (DESIGN §5).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TimeoutParams {
    pub propose_ms: u64,
    pub propose_delta_ms: u64,
    pub prevote_ms: u64,
    pub prevote_delta_ms: u64,
    pub precommit_ms: u64,
    pub precommit_delta_ms: u64,
}

impl Default for TimeoutParams {
    /// CometBFT's defaults: 3 s / 1 s / 1 s, each +0.5 s per round.
    fn default() -> Self {
        TimeoutParams {
            propose_ms: 3_000,
            propose_delta_ms: 500,
            prevote_ms: 1_000,
            prevote_delta_ms: 500,
            precommit_ms: 1_000,
            precommit_delta_ms: 500,
        }
    }
}

/// Which timeout.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum TimeoutKind {
    Propose,
    Prevote,
    Precommit,
}

/// A timeout for one (height, round).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Timeout {
    pub kind: TimeoutKind,
    pub height: Height,
    pub round: Round,
}

impl TimeoutParams {
    /// The duration of `kind` in `round`: base + round × delta, saturating.
    pub fn duration_ms(&self, kind: TimeoutKind, round: Round) -> u64 {
        let (base, delta) = match kind {
            TimeoutKind::Propose => (self.propose_ms, self.propose_delta_ms),
            TimeoutKind::Prevote => (self.prevote_ms, self.prevote_delta_ms),
            TimeoutKind::Precommit => (self.precommit_ms, self.precommit_delta_ms),
        };
        base.saturating_add(delta.saturating_mul(u64::from(round.0)))
    }
}
