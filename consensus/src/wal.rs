//! The write-ahead log's entries and its replay.
//!
//! The contract, which the simulator follows:
//! - Before handing a proposal or vote to the machine, the node appends it to the WAL, durably,
//!   if and only if `Machine::keeps_height` says the machine takes it (handles it now or holds
//!   it for a later height). Timeouts, proposed values and commit certificates are appended
//!   before they are handed over.
//! - `StartHeight(h)` begins a new log: the StartHeight entry, then the kept entries of heights
//!   ≥ h in their original order (the machine held those and will process them at h or later).
//!
//! Since the machine is a pure function of its inputs, replaying that log into a fresh machine
//! rebuilds exactly the state it had: the same locks, the same round, and the same record of
//! what it signed. So a restarted validator never signs a vote that conflicts with one
//! it signed before the crash: it re-derives the same vote, and its signing guard refuses any
//! other. (Framing, length and checksum belong to the node, which owns the file.)

use crate::machine::{Effect, Input, Machine};
use crate::types::{Height, ValidatorId};
use crate::validators::ValidatorSet;

/// One WAL record: an input, exactly as the machine received it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct WalEntry(pub Input);

impl WalEntry {
    /// The height an entry belongs to, if it names one.
    pub fn height(&self) -> Option<Height> {
        match &self.0 {
            Input::StartHeight { height, .. } => Some(*height),
            Input::Proposal { proposal, .. } => Some(proposal.message.height),
            Input::ProposeValue { height, .. } => Some(*height),
            Input::Vote(vote) => Some(vote.message.height),
            Input::TimeoutElapsed(timeout) => Some(timeout.height),
            Input::Commit(certificate) => Some(certificate.height),
        }
    }
}

/// Rebuilds a machine from the entries of its current height, which start with that height's
/// `StartHeight`. Returns the machine and the effects the replay produced: the node re-runs the
/// signing ones (they repeat what it already signed, byte for byte) and reschedules timeouts.
pub fn replay(
    me: Option<ValidatorId>,
    validators: ValidatorSet,
    entries: impl IntoIterator<Item = WalEntry>,
) -> (Machine, Vec<Effect>) {
    let mut machine = Machine::new(me, validators);
    let mut effects = Vec::new();
    for WalEntry(input) in entries {
        effects.extend(machine.handle(input));
    }
    (machine, effects)
}
