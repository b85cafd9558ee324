//! Block execution: the proposer's path, DAG verification, and the two validator executors.
//!
//! - [`propose`] runs a block's txs serially against a state, recording what each touches, and
//!   returns the canonical access sets, the canonical DAG and the outcome.
//! - [`verify_block`] checks a proposed block's DAG (structure, then exact equality with the DAG
//!   re-derived from the declared access sets) and yields a [`VerifiedBlock`].
//! - [`SerialExecutor`] and [`ParallelExecutor`] execute a verified block, checking that each
//!   tx's actual accesses equal its declared ones, and return per-tx results, the state changes,
//!   the state root and the DAG's shape.
//! - [`validate_block`] does all of it and compares the root with the header's.

mod parallel;
mod propose;
mod serial;

use thiserror::Error;

pub use parallel::{ExecutorConfig, ParallelExecutor};
pub use propose::{Proposal, propose};
pub use serial::SerialExecutor;

use crate::access::{Access, AccessMode, AccessSets, BLOCK_TXS_MAX, TX_ACCESSES_MAX};
use crate::dag::{ConflictDag, DagError, DagStats};
use crate::lattice::{LtHash, StateRoot};
use crate::logic::{AccessViolation, TxResult};
use crate::state::{ChangeSet, StateKey, StateValue, StateView};
use crate::storage::StorageError;
use crate::tx::Transaction;

/// Why a proposed block is invalid. Each proposer lie of DESIGN §4 has its own variant (the DAG
/// lies sit inside [`BlockError::Dag`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlockError {
    #[error("block has {txs} txs, over the limit of {limit}")]
    TooManyTxs { txs: usize, limit: usize },
    #[error("access sets cover {access} txs but the block has {txs}")]
    AccessCountMismatch { access: usize, txs: usize },
    #[error("tx {tx} declares {accesses} accesses, over the limit of {limit}")]
    TooManyAccesses {
        tx: u32,
        accesses: usize,
        limit: usize,
    },
    #[error(transparent)]
    Dag(#[from] DagError),
    #[error("tx {tx} touched {key:?} ({mode:?}) outside its declared access set")]
    UnderDeclared {
        tx: u32,
        key: StateKey,
        mode: AccessMode,
    },
    #[error("tx {tx} declared {key:?} ({mode:?}) but never used it so")]
    OverDeclared {
        tx: u32,
        key: StateKey,
        mode: AccessMode,
    },
    #[error("state root {computed:?} differs from the header's {declared:?}")]
    StateRootMismatch {
        declared: StateRoot,
        computed: StateRoot,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl BlockError {
    fn from_violation(tx: usize, violation: AccessViolation) -> Self {
        let tx = tx as u32;
        match violation {
            AccessViolation::Undeclared { key, mode } => {
                BlockError::UnderDeclared { tx, key, mode }
            }
            AccessViolation::Unused { key, mode } => BlockError::OverDeclared { tx, key, mode },
        }
    }
}

/// What executing a block produced.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BlockOutcome {
    pub results: Vec<TxResult>,
    pub changes: ChangeSet,
    pub state_root: StateRoot,
    pub stats: DagStats,
    /// Whether the parallel path ran (it falls back to serial for small or narrow blocks).
    pub ran_parallel: bool,
}

impl BlockOutcome {
    /// The outcome of a run; the state root is the change set's.
    pub(crate) fn new(
        results: Vec<TxResult>,
        changes: ChangeSet,
        stats: DagStats,
        ran_parallel: bool,
    ) -> Self {
        BlockOutcome {
            results,
            state_root: changes.root(),
            changes,
            stats,
            ran_parallel,
        }
    }
}

/// A block whose DAG has passed [`verify_block`]. Only these can be executed.
#[derive(Clone, Copy, Debug)]
pub struct VerifiedBlock<'a> {
    txs: &'a [Transaction],
    access: &'a AccessSets,
    dag: &'a ConflictDag,
    stats: DagStats,
}

impl<'a> VerifiedBlock<'a> {
    pub fn txs(&self) -> &'a [Transaction] {
        self.txs
    }

    pub fn access(&self) -> &'a AccessSets {
        self.access
    }

    pub fn dag(&self) -> &'a ConflictDag {
        self.dag
    }

    pub fn stats(&self) -> DagStats {
        self.stats
    }
}

/// Checks a proposed DAG: counts, structure, then exact equality with the DAG re-derived from the
/// declared access sets.
pub fn verify_block<'a>(
    txs: &'a [Transaction],
    access: &'a AccessSets,
    dag: &'a ConflictDag,
) -> Result<VerifiedBlock<'a>, BlockError> {
    if txs.len() > BLOCK_TXS_MAX {
        return Err(BlockError::TooManyTxs {
            txs: txs.len(),
            limit: BLOCK_TXS_MAX,
        });
    }
    if access.tx_count() != txs.len() {
        return Err(BlockError::AccessCountMismatch {
            access: access.tx_count(),
            txs: txs.len(),
        });
    }
    // Decoded access sets already respect the cap; in-memory ones are checked here, since the
    // executors track each tx's declared accesses in a 64-bit mask.
    for tx in 0..access.tx_count() {
        let accesses = access.tx(tx).len();
        if accesses > TX_ACCESSES_MAX {
            return Err(BlockError::TooManyAccesses {
                tx: tx as u32,
                accesses,
                limit: TX_ACCESSES_MAX,
            });
        }
    }
    if dag.tx_count() != txs.len() {
        return Err(DagError::TxCountMismatch {
            dag: dag.tx_count(),
            block: txs.len(),
        }
        .into());
    }
    dag.validate()?;
    ConflictDag::compare(dag, &ConflictDag::derive(access))?;
    Ok(VerifiedBlock {
        txs,
        access,
        dag,
        stats: dag.stats(),
    })
}

/// Executes verified blocks. Both implementations return the same outcome for the same block.
pub trait Executor {
    fn execute<S: StateView + ?Sized>(
        &self,
        state: &S,
        block: &VerifiedBlock<'_>,
    ) -> Result<BlockOutcome, BlockError>;
}

/// The full validator check: DAG verification, execution, and the state root against the
/// header's.
pub fn validate_block<E: Executor, S: StateView + ?Sized>(
    executor: &E,
    state: &S,
    txs: &[Transaction],
    access: &AccessSets,
    dag: &ConflictDag,
    declared_root: StateRoot,
) -> Result<BlockOutcome, BlockError> {
    let block = verify_block(txs, access, dag)?;
    let outcome = executor.execute(state, &block)?;
    if outcome.state_root != declared_root {
        return Err(BlockError::StateRootMismatch {
            declared: declared_root,
            computed: outcome.state_root,
        });
    }
    Ok(outcome)
}

/// Checks one tx's state accesses against its declared set and remembers which declared
/// accesses happened.
pub(crate) struct DeclaredGuard<'a> {
    keys: &'a [StateKey],
    declared: &'a [Access],
    read: u64,
    written: u64,
}

impl<'a> DeclaredGuard<'a> {
    pub(crate) fn new(keys: &'a [StateKey], declared: &'a [Access]) -> Self {
        assert!(
            declared.len() <= 64,
            "verify_block caps declared accesses far below the 64-bit mask"
        );
        DeclaredGuard {
            keys,
            declared,
            read: 0,
            written: 0,
        }
    }

    /// The key-table index of `key`, if the declared set allows `mode` on it.
    pub(crate) fn check(
        &mut self,
        key: &StateKey,
        mode: AccessMode,
    ) -> Result<usize, AccessViolation> {
        let undeclared = AccessViolation::Undeclared { key: *key, mode };
        let position = self
            .declared
            .iter()
            .position(|access| self.keys[access.key as usize] == *key)
            .ok_or(undeclared)?;
        let access = self.declared[position];
        match mode {
            AccessMode::Read => self.read |= 1 << position,
            AccessMode::Write if access.mode == AccessMode::Write => self.written |= 1 << position,
            AccessMode::Write => return Err(undeclared),
        }
        Ok(access.key as usize)
    }

    /// Fails if a declared access never happened: a declared write that was not written, or a
    /// declared read that was not read.
    pub(crate) fn finish(&self) -> Result<(), AccessViolation> {
        for (position, access) in self.declared.iter().enumerate() {
            let bit = 1u64 << position;
            let happened = match access.mode {
                AccessMode::Write => self.written & bit != 0,
                AccessMode::Read => self.read & bit != 0,
            };
            if !happened {
                return Err(AccessViolation::Unused {
                    key: self.keys[access.key as usize],
                    mode: access.mode,
                });
            }
        }
        Ok(())
    }
}

/// The value of each key-table entry before the block and after it.
pub(crate) struct SlotValues {
    pub(crate) base: Vec<Option<StateValue>>,
    pub(crate) current: Vec<Option<StateValue>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hashing {
    Serial,
    /// Spread over the current rayon pool.
    Parallel,
}

/// Every key-table entry's value before the block, read from `state`.
pub(crate) fn load_base<S: StateView + ?Sized>(
    state: &S,
    keys: &[StateKey],
    hashing: Hashing,
) -> Result<Vec<Option<StateValue>>, StorageError> {
    match hashing {
        Hashing::Serial => keys.iter().map(|key| state.get(key)).collect(),
        Hashing::Parallel => {
            use rayon::prelude::*;
            keys.par_iter().map(|key| state.get(key)).collect()
        }
    }
}

/// The key-table indices some tx declares as written: the only keys a block can change.
pub(crate) fn written_keys(access: &AccessSets) -> Vec<usize> {
    let mut written = vec![false; access.keys().len()];
    for tx in 0..access.tx_count() {
        for item in access.tx(tx) {
            if item.mode == AccessMode::Write {
                written[item.key as usize] = true;
            }
        }
    }
    (0..written.len()).filter(|&index| written[index]).collect()
}

/// The sum of the pair hashes of `values[i]` for `i` in `indices`; absent values add nothing.
pub(crate) fn lattice_sum(
    keys: &[StateKey],
    indices: &[usize],
    values: &[Option<StateValue>],
    hashing: Hashing,
) -> LtHash {
    let add = |mut sum: LtHash, &index: &usize| {
        if let Some(value) = &values[index] {
            sum.add_state(&keys[index], value);
        }
        sum
    };
    match hashing {
        Hashing::Serial => indices.iter().fold(LtHash::identity(), add),
        Hashing::Parallel => {
            use rayon::prelude::*;
            indices
                .par_iter()
                .fold(LtHash::identity, add)
                .reduce(LtHash::identity, |mut a, b| {
                    a.add(&b);
                    a
                })
        }
    }
}

/// The changed keys (sorted, since the key table is) and the lattice hash after the block.
///
/// Only keys declared as written can change, so the new lattice is the old one minus the written
/// keys' pair hashes before the block (`before`, from [`lattice_sum`] over `slots.base`, which
/// callers may compute while the txs run) plus their pair hashes after it. Two pair hashes per
/// written key, whatever the size of the state.
pub(crate) fn collect_changes(
    lattice: &LtHash,
    keys: &[StateKey],
    written: &[usize],
    slots: &SlotValues,
    before: &LtHash,
    hashing: Hashing,
) -> ChangeSet {
    let after = lattice_sum(keys, written, &slots.current, hashing);
    let mut lattice = lattice.clone();
    lattice.sub(before);
    lattice.add(&after);
    let writes = written
        .iter()
        .filter(|&&index| slots.base[index] != slots.current[index])
        .map(|&index| {
            let value = slots.current[index].expect("a changed slot holds a value");
            (keys[index], value)
        })
        .collect();
    ChangeSet { writes, lattice }
}
