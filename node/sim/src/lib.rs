//! The node simulator: N instances of the real node core ([`weft_node::engine::Core`]) over
//! the real chain and mempool, with simulated time, network and disk, and checkers.
//!
//! A [`Scenario`] (from a seed) says how many validators run, how many heights to reach, how
//! txs arrive, and where nodes crash: at a numbered command of one node's command stream,
//! before it is carried out. The crashed node's disk keeps what its last fsync made durable,
//! and of the rest a prefix of any length (lost and torn writes; see [`disk`]); with damage on,
//! a crash may also flip a durable byte. It restarts later from what the disk kept and a chain
//! reopened from its database (committed heights are durable when `commit` returns).
//!
//! The network delivers every published message to every other node after a random delay,
//! and, as semantic gossip does, hands a node every message of the height it advertises
//! (so a restarted node hears its height again) and answers its block-sync requests from the
//! peer's chain. Messages to a crashed node are lost.
//!
//! In 4 runs in 10 the validator set changes while the chain runs: the genesis's authority
//! sends up to 3 `ValidatorUpdate` txs (full nodes started beside the validators join, powers
//! change, validators leave), each valid against the schedule before it and never giving the
//! faulty validator a third of the power; each must commit with code 0, and every checker
//! holds across the changes.
//!
//! Checkers, on every run:
//! - **agreement**: every node commits the same block at each height;
//! - **state roots**: every node's state root after a height is the same;
//! - **no double sign**: no validator signs two different votes for one (height, round, type)
//!   or two proposals for one (height, round), across crashes;
//! - **persist before speak**: when a node publishes its own signature, its WAL holds nothing
//!   that is not durable, and the guard holds that signature or a later one;
//! - **no committed height lost**: a restarted node's chain is at least as high as it was;
//! - **no acknowledged tx lost**: every tx reported committed is in every node's chain at the end;
//! - **liveness**: once every crash is over, every node reaches the target height in bounded
//!   virtual time.
//!
//! Everything random comes from the scenario's seed; a seed replays a run exactly.

pub mod disk;
mod world;

pub use world::{Mutant, Report, Scenario, SimUpdate, Violation, run};
