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
//! - `architecture`: the crate graph keeps tokio, libp2p and the node's crates out of the core.
//!
//! Randomized tests print their seed in every failure message. To replay one, add the seed to
//! the module's `REPLAY` table (those seeds run on every `cargo test`), or rerun with
//! `PROPTEST_RNG_SEED=<n>` to repeat a whole proptest run.

mod architecture;
mod crash;
mod hostile;
mod lies;
mod parallel;
mod signatures;
mod storage;
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, plus a per-thread record of the largest single allocation made while a
/// probe is active. `hostile` uses it to check that no decoder allocates from an unchecked length.
struct ProbingAllocator;

thread_local! {
    static PROBING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation(size: usize) {
    // `try_with`: allocations can happen while a thread's locals are being torn down.
    let _ = PROBING.try_with(|probing| {
        if probing.get() {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

// SAFETY: every call forwards to `System` with the caller's arguments unchanged; the only extra
// work touches const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for ProbingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: forwarded as received.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: ProbingAllocator = ProbingAllocator;

/// Runs `work` on this thread and returns its result with the size of the largest single
/// allocation (or reallocation) it made. Allocations on other threads are not counted.
pub fn largest_allocation<R>(work: impl FnOnce() -> R) -> (R, usize) {
    struct StopProbing;
    impl Drop for StopProbing {
        fn drop(&mut self) {
            PROBING.set(false);
        }
    }
    LARGEST.set(0);
    PROBING.set(true);
    let stop = StopProbing;
    let result = work();
    drop(stop);
    (result, LARGEST.get())
}
