//! weft-execution's integration tests: one binary, one module per feature.
//!
//! - `parallel`: parallel execution equals serial execution (and the proposer) on every thread
//!   count; failed txs change nothing; the incremental state root equals the from-scratch one.
//! - `lies`: each proposer lie of DESIGN §4 is rejected with its own error; the honest block is
//!   accepted.
//! - `hostile`: every decoder survives random and mutated bytes, never allocates past what its
//!   input could hold, and is canonical.
//! - `storage`: sled keeps every committed block across reopening and agrees with memory.
//! - `crash`: a child process committing to sled is SIGKILLed; reopening gives exactly the state
//!   of a height at or after the last one it acknowledged.
//! - `signatures`: batched verification blames exactly the bad txs.
//! - `validator_updates`: each `ValidatorUpdate` outcome code; the set and totals it writes.
//! - `architecture`: the crate graph keeps tokio, libp2p and the node's crates out of the core.
//!
//! Randomized tests print their seed in every failure message. To replay one, add the seed to
//! the module's `REPLAY` table (those seeds run on every `cargo test`), or rerun with
//! `PROPTEST_RNG_SEED=<n>` to repeat a whole proptest run.

// A test unwraps: a panic is how it fails (production code may not; see Cargo.toml).
#![allow(clippy::unwrap_used)]

mod architecture;
mod crash;
mod hostile;
mod lies;
mod parallel;
mod signatures;
mod snapshot;
mod storage;
mod support;
mod validator_updates;
mod values;

use weft_execution::probe::{self, AllocProbe};

/// Counts, per thread, what a measured closure allocates (`weft_execution::probe`). `hostile`
/// uses it to check that no decoder allocates from an unchecked length.
#[global_allocator]
static ALLOCATOR: AllocProbe = AllocProbe;

/// Runs `work` on this thread and returns its result with the size of the largest single
/// allocation (or reallocation) it made. Allocations on other threads are not counted.
pub fn largest_allocation<R>(work: impl FnOnce() -> R) -> (R, usize) {
    let (result, footprint) = probe::measure(work);
    (result, footprint.largest_bytes)
}
