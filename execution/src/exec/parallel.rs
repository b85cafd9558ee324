//! The parallel executor: txs run on a rayon pool as soon as their DAG predecessors are done.
//!
//! Each tx keeps a count of unfinished predecessors. The roots are split into chunks, one rayon
//! task per chunk; finishing a tx decrements its successors' counts, runs the first one that
//! reaches zero on the same thread and spawns the rest. A verified DAG orders every conflicting
//! pair, so txs that run at the same time touch disjoint keys (or only read a shared one). Each
//! key's slot still sits behind its own uncontended mutex, so memory safety never rests on the
//! DAG being right.
//!
//! When a tx strays outside its declared access set, the run stops and the serial executor
//! re-runs the block: its first violation is the same on every validator, so the error is
//! deterministic, not just the verdict.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use parking_lot::Mutex;
use rayon::prelude::*;

use super::serial::run_in_order;
use super::{
    BlockError, BlockOutcome, DeclaredGuard, Executor, Hashing, SerialExecutor, SlotValues,
    VerifiedBlock, collect_changes, lattice_sum, load_base, written_keys,
};
use crate::access::AccessMode;
use crate::logic::{AccessViolation, TxCode, TxResult, TxStore, apply_tx};
use crate::state::{StateKey, StateValue, StateView};
use crate::tx::{Payload, Transaction};

/// How the parallel executor runs and when it falls back to serial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// Worker threads in the executor's own rayon pool.
    pub threads: usize,
    /// Blocks with fewer txs run serially: scheduling would cost more than it saves.
    pub parallel_txs_min: usize,
    /// Blocks whose work/span is below this many hundredths run serially (a chain of dependent
    /// txs gains nothing from threads).
    pub parallelism_percent_min: u32,
    /// Blocks whose txs are estimated to cost less than this on average run serially: below about
    /// 1 µs per tx, scheduling a tx on another thread costs more than running it.
    pub tx_cost_ns_min: u64,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            parallel_txs_min: 64,
            parallelism_percent_min: 150,
            tx_cost_ns_min: 1_000,
        }
    }
}

/// Executes verified blocks on its own rayon pool.
pub struct ParallelExecutor {
    pool: rayon::ThreadPool,
    config: ExecutorConfig,
}

impl std::fmt::Debug for ParallelExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelExecutor")
            .field("config", &self.config)
            .finish()
    }
}

impl ParallelExecutor {
    pub fn new(config: ExecutorConfig) -> Result<Self, rayon::ThreadPoolBuildError> {
        let threads = config.threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|index| format!("weft-exec-{index}"))
            .build()?;
        Ok(ParallelExecutor {
            pool,
            config: ExecutorConfig { threads, ..config },
        })
    }

    pub fn config(&self) -> ExecutorConfig {
        self.config
    }

    /// Runs `work` inside this executor's pool, e.g. to verify signatures on the same threads.
    pub fn install<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        self.pool.install(work)
    }

    /// Runs the txs on the pool, starting from `base`. Must run inside the pool.
    fn run_parallel(
        &self,
        block: &VerifiedBlock<'_>,
        base: &[Option<StateValue>],
    ) -> Result<(Vec<TxResult>, SlotValues), BlockError> {
        let run = Run::new(block, base);
        run.execute_all();
        if run.aborted.load(Ordering::Relaxed) {
            let verdict = run_in_order(block, base.to_vec());
            assert!(
                verdict.is_err(),
                "a parallel run found an access violation that the serial run did not"
            );
            return verdict;
        }
        let results = run.results();
        let current = run.slots.into_iter().map(Mutex::into_inner).collect();
        Ok((
            results,
            SlotValues {
                base: base.to_vec(),
                current,
            },
        ))
    }

    fn should_run_serially(&self, block: &VerifiedBlock<'_>) -> bool {
        let stats = block.stats();
        let txs = stats.txs as u64;
        let narrow = txs * 100
            < u64::from(stats.critical_path) * u64::from(self.config.parallelism_percent_min);
        let cost_ns: u64 = block.txs().iter().map(estimated_cost_ns).sum();
        let light = cost_ns < txs * self.config.tx_cost_ns_min;
        (stats.txs as usize) < self.config.parallel_txs_min || narrow || light
    }
}

impl Executor for ParallelExecutor {
    fn execute<S: StateView + ?Sized>(
        &self,
        state: &S,
        block: &VerifiedBlock<'_>,
    ) -> Result<BlockOutcome, BlockError> {
        if self.config.threads < 2 {
            return SerialExecutor.execute(state, block);
        }
        let keys = block.access().keys();
        let ran_parallel = !self.should_run_serially(block);
        let changes = self.pool.install(|| {
            let base = load_base(state, keys, Hashing::Parallel)?;
            let written = written_keys(block.access());
            // The written keys' hashes before the block need only `base`: compute them while the
            // txs run. Even when txs run in order, this work spreads over the pool.
            let (run, before) = rayon::join(
                || {
                    if ran_parallel {
                        self.run_parallel(block, &base)
                    } else {
                        run_in_order(block, base.clone())
                    }
                },
                || lattice_sum(keys, &written, &base, Hashing::Parallel),
            );
            let (results, slots) = run?;
            let changes = collect_changes(
                state.lattice(),
                keys,
                &written,
                &slots,
                &before,
                Hashing::Parallel,
            );
            Ok::<_, BlockError>((results, changes))
        });
        let (results, changes) = changes?;
        Ok(BlockOutcome::new(
            results,
            changes,
            block.stats(),
            ran_parallel,
        ))
    }
}

/// A rough cost of running one tx, in ns on this class of machine. It only steers the choice
/// between running txs in order or in parallel, never a result.
fn estimated_cost_ns(tx: &Transaction) -> u64 {
    const TX_COST_NS: u64 = 300;
    const WORK_ROUND_COST_NS: u64 = 70;
    match &tx.payload {
        Payload::Work { rounds, .. } => TX_COST_NS + u64::from(*rounds) * WORK_ROUND_COST_NS,
        _ => TX_COST_NS,
    }
}

/// The shared state of one parallel run.
struct Run<'a> {
    block: &'a VerifiedBlock<'a>,
    slots: Vec<Mutex<Option<StateValue>>>,
    pending: Vec<AtomicU32>,
    successor_offsets: Vec<u32>,
    successors: Vec<u32>,
    results: Vec<OnceLock<TxCode>>,
    aborted: AtomicBool,
}

impl<'a> Run<'a> {
    fn new(block: &'a VerifiedBlock<'a>, base: &[Option<StateValue>]) -> Self {
        let dag = block.dag();
        let (successor_offsets, successors) = dag.successors();
        Run {
            block,
            slots: base.iter().map(|value| Mutex::new(*value)).collect(),
            pending: (0..dag.tx_count())
                .map(|tx| AtomicU32::new(dag.preds(tx).len() as u32))
                .collect(),
            successor_offsets,
            successors,
            results: (0..dag.tx_count()).map(|_| OnceLock::new()).collect(),
            aborted: AtomicBool::new(false),
        }
    }

    fn execute_all(&self) {
        let roots: Vec<u32> = (0..self.block.dag().tx_count() as u32)
            .filter(|&tx| self.block.dag().preds(tx as usize).is_empty())
            .collect();
        // rayon splits the roots adaptively and steals between threads, so heavy txs do not
        // leave one thread with a long tail of roots.
        rayon::scope(|scope| {
            roots
                .par_iter()
                .for_each(|&root| self.run_from(scope, root));
        });
    }

    /// Runs `first`, then keeps going with one newly ready successor, spawning the others.
    fn run_from<'s>(&'s self, scope: &rayon::Scope<'s>, first: u32) {
        let mut next = Some(first);
        while let Some(tx) = next.take() {
            if self.aborted.load(Ordering::Relaxed) || !self.execute_one(tx as usize) {
                self.aborted.store(true, Ordering::Relaxed);
                return;
            }
            let start = self.successor_offsets[tx as usize] as usize;
            let end = self.successor_offsets[tx as usize + 1] as usize;
            for &successor in &self.successors[start..end] {
                if self.pending[successor as usize].fetch_sub(1, Ordering::AcqRel) != 1 {
                    continue;
                }
                if next.is_none() {
                    next = Some(successor);
                } else {
                    scope.spawn(move |scope| self.run_from(scope, successor));
                }
            }
        }
    }

    /// Executes one tx; false on an access violation.
    fn execute_one(&self, index: usize) -> bool {
        let access = self.block.access();
        let mut store = LockedSlots {
            slots: &self.slots,
            guard: DeclaredGuard::new(access.keys(), access.tx(index)),
        };
        let outcome = apply_tx(&self.block.txs()[index], &mut store)
            .and_then(|code| store.guard.finish().map(|()| code));
        match outcome {
            Ok(code) => {
                self.results[index]
                    .set(code)
                    .expect("each tx runs exactly once");
                true
            }
            Err(_) => false,
        }
    }

    fn results(&self) -> Vec<TxResult> {
        self.results
            .iter()
            .map(|code| TxResult {
                code: *code.get().expect("a finished run executed every tx"),
            })
            .collect()
    }
}

struct LockedSlots<'a> {
    slots: &'a [Mutex<Option<StateValue>>],
    guard: DeclaredGuard<'a>,
}

impl TxStore for LockedSlots<'_> {
    type Error = AccessViolation;

    fn read(&mut self, key: &StateKey) -> Result<Option<StateValue>, AccessViolation> {
        let index = self.guard.check(key, AccessMode::Read)?;
        Ok(*self.slots[index].lock())
    }

    fn write(&mut self, key: &StateKey, value: StateValue) -> Result<(), AccessViolation> {
        let index = self.guard.check(key, AccessMode::Write)?;
        *self.slots[index].lock() = Some(value);
        Ok(())
    }
}
