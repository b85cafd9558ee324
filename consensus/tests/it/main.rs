//! weft-consensus's integration tests: one binary, one module per feature.
//!
//! - `rules`: one test per upon-rule of Algorithm 1.
//! - `keeper`: tallies, thresholds, duplicates and equivocation.
//! - `machine`: future-height buffering, evidence, WAL replay and the signing guard.
//! - `purity`: the crate's sources use no clock, IO, threads or unseeded randomness.
//! - `validators`: the set transition against CometBFT's published examples.
//! - `sim`: thousands of simulator seeds with network and byzantine faults, checked for
//!   agreement, validity, no double-sign and liveness; the checker can fail; targeted faults.

// A test unwraps: a panic is how it fails (production code may not; see Cargo.toml).
#![allow(clippy::unwrap_used)]

mod keeper;
mod machine;
mod purity;
mod rules;
mod sim;
mod support;
mod validators;
