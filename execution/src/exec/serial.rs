//! The serial reference executor: txs in block order, one thread, no parallel machinery.

use super::{
    BlockError, BlockOutcome, DeclaredGuard, Executor, Hashing, SlotValues, VerifiedBlock,
    collect_changes, lattice_sum, load_base, written_keys,
};
use crate::access::AccessMode;
use crate::logic::{AccessViolation, TxResult, TxStore, apply_tx};
use crate::state::{StateKey, StateValue, StateView};

/// Executes a verified block in order on the calling thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct SerialExecutor;

/// The block's key table as plain slots: tx `j` sees exactly what txs `0..j` wrote.
struct SlotStore<'a> {
    slots: &'a mut SlotValues,
    guard: DeclaredGuard<'a>,
}

impl TxStore for SlotStore<'_> {
    type Error = AccessViolation;

    fn read(&mut self, key: &StateKey) -> Result<Option<StateValue>, AccessViolation> {
        let index = self.guard.check(key, AccessMode::Read)?;
        Ok(self.slots.current[index])
    }

    fn write(&mut self, key: &StateKey, value: StateValue) -> Result<(), AccessViolation> {
        let index = self.guard.check(key, AccessMode::Write)?;
        self.slots.current[index] = Some(value);
        Ok(())
    }
}

impl Executor for SerialExecutor {
    fn execute<S: StateView + ?Sized>(
        &self,
        state: &S,
        block: &VerifiedBlock<'_>,
    ) -> Result<BlockOutcome, BlockError> {
        let keys = block.access().keys();
        let base = load_base(state, keys, Hashing::Serial)?;
        let written = written_keys(block.access());
        let before = lattice_sum(keys, &written, &base, Hashing::Serial);
        let (results, slots) = run_in_order(block, base)?;
        let changes = collect_changes(
            state.lattice(),
            keys,
            &written,
            &slots,
            &before,
            Hashing::Serial,
        );
        Ok(BlockOutcome::new(results, changes, block.stats(), false))
    }
}

/// Runs the block's txs in order against its key table, starting from `base` (the table's values
/// before the block), checking declared accesses.
pub(super) fn run_in_order(
    block: &VerifiedBlock<'_>,
    base: Vec<Option<StateValue>>,
) -> Result<(Vec<TxResult>, SlotValues), BlockError> {
    let keys = block.access().keys();
    let mut slots = SlotValues {
        current: base.clone(),
        base,
    };
    let mut results = Vec::with_capacity(block.txs().len());
    for (index, tx) in block.txs().iter().enumerate() {
        let mut store = SlotStore {
            slots: &mut slots,
            guard: DeclaredGuard::new(keys, block.access().tx(index)),
        };
        let code = apply_tx(tx, &mut store)
            .and_then(|code| store.guard.finish().map(|()| code))
            .map_err(|violation| BlockError::from_violation(index, violation))?;
        results.push(TxResult { code });
    }
    Ok((results, slots))
}
