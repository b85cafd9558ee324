//! An allocation probe for tests and fuzz harnesses: "a decoder's allocations are bounded by
//! its input" is a property a test can assert.
//!
//! A test binary installs it as its global allocator:
//!
//! ```ignore
//! #[global_allocator]
//! static PROBE: weft_execution::probe::AllocProbe = weft_execution::probe::AllocProbe;
//! ```
//!
//! and measures a closure with [`measure`]. Accounting is per thread (the decoders run on
//! the caller's thread), so tests in one binary may run side by side. Outside a measurement
//! the probe only forwards to the system allocator.
//!
//! A global allocator is unsafe by definition: this module is one of the two places in the
//! workspace allowed unsafe code (the lint is denied everywhere else).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The system allocator, counting what the current thread allocates while [`measure`] runs.
pub struct AllocProbe;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

/// The process-wide watermark ([`arm_everywhere`]): the largest allocation on any thread.
static EVERYWHERE_ARMED: AtomicBool = AtomicBool::new(false);
static EVERYWHERE_LARGEST: AtomicUsize = AtomicUsize::new(0);

fn note(size: usize) {
    if EVERYWHERE_ARMED.load(Ordering::Relaxed) {
        EVERYWHERE_LARGEST.fetch_max(size, Ordering::Relaxed);
    }
    // `try_with`: never touch a thread-local being torn down.
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        let _ = TOTAL.try_with(|t| t.set(t.get().saturating_add(size)));
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every call forwards to `System` unchanged; the extra work touches const-initialised
// thread-locals (no allocation, no destructor) only.
unsafe impl GlobalAlloc for AllocProbe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded as received.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What one measured closure allocated on its thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Sum of every allocation's size (a `realloc` counts its new size).
    pub total_bytes: usize,
    /// The largest single allocation.
    pub largest_bytes: usize,
    /// Number of allocations.
    pub allocations: usize,
}

impl Footprint {
    /// Whether the total stays within `per_input_byte × input_len + fixed_bytes`.
    pub fn within(&self, input_len: usize, per_input_byte: usize, fixed_bytes: usize) -> bool {
        self.total_bytes <= input_len.saturating_mul(per_input_byte) + fixed_bytes
    }
}

/// Runs `f` and returns what it allocated on this thread. Only meaningful in a binary whose
/// global allocator is [`AllocProbe`]; elsewhere the footprint reads zero. Not reentrant.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Footprint) {
    TOTAL.with(|t| t.set(0));
    LARGEST.with(|l| l.set(0));
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    let result = f();
    ARMED.with(|a| a.set(false));
    let footprint = Footprint {
        total_bytes: TOTAL.with(Cell::get),
        largest_bytes: LARGEST.with(Cell::get),
        allocations: COUNT.with(Cell::get),
    };
    (result, footprint)
}

/// Starts recording the largest single allocation made on any thread, for code that allocates
/// on threads the test does not own (a network stack's tasks). Process-wide: a binary that
/// uses it runs one such test at a time.
pub fn arm_everywhere() {
    EVERYWHERE_LARGEST.store(0, Ordering::SeqCst);
    EVERYWHERE_ARMED.store(true, Ordering::SeqCst);
}

/// Stops recording, and returns the largest single allocation since [`arm_everywhere`].
pub fn disarm_everywhere() -> usize {
    EVERYWHERE_ARMED.store(false, Ordering::SeqCst);
    EVERYWHERE_LARGEST.load(Ordering::SeqCst)
}

/// Whether this binary's global allocator is the probe (a one-byte allocation is seen).
pub fn installed() -> bool {
    let (_, footprint) = measure(|| std::hint::black_box(Box::new(0u8)));
    footprint.allocations > 0
}
