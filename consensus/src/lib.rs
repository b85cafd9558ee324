//! Weft's Tendermint consensus core.
//!
//! - [`types`]: heights, rounds, steps, votes, proposals, sign bytes, certificates, evidence.
//! - [`validators`]: voting power, thresholds, CometBFT's proposer priority algorithm.
//! - [`keeper`]: per-round tallies, thresholds, equivocation evidence.
//! - [`machine`]: Algorithm 1 of "The latest gossip on BFT consensus" as
//!   `handle(Input) -> Vec<Effect>`.
//! - [`wal`]: WAL entries and replay.
//! - [`sim`]: a deterministic multi-node simulator with network and byzantine faults.
//!
//! Architecture invariant: this crate never does IO, reads a clock, spawns tasks, or uses
//! randomness it was not handed (the simulator draws from the seed it is given). It depends on
//! no tokio, libp2p or sled.

pub mod codec;
pub mod keeper;
pub mod machine;
pub mod sim;
pub mod types;
pub mod validators;
pub mod wal;

pub use keeper::{Threshold, VoteKeeper, VoteOutcome};
pub use machine::{Effect, Input, LastSigned, Machine, Validity};
pub use types::{
    CommitCertificate, Evidence, Height, PolkaCertificate, Proposal, Round, Signature, Signed,
    SignedProposal, SignedVote, Step, Timeout, TimeoutKind, TimeoutParams, ValidatorId, ValueId,
    Vote, VoteType, VotingPower,
};
pub use validators::{
    HeightSets, UpdateError, Validator, ValidatorSet, ValidatorSetError, change_within_bound,
};
pub use wal::{WalEntry, replay};
