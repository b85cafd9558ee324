//! The proposer's path: run the txs in order, record what each one touches, and build the
//! canonical access sets and DAG that validators will re-derive.

use rustc_hash::FxHashMap;

use super::{BlockOutcome, Hashing, SlotValues, collect_changes, lattice_sum, written_keys};
use crate::access::{AccessMode, AccessSets};
use crate::dag::ConflictDag;
use crate::logic::{TxResult, TxStore, apply_tx};
use crate::state::{StateKey, StateValue, StateView};
use crate::storage::StorageError;
use crate::tx::Transaction;

/// Everything a proposer puts in a block beside its txs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Proposal {
    pub access: AccessSets,
    pub dag: ConflictDag,
    pub outcome: BlockOutcome,
}

/// Before-and-after values of every key the block has touched so far.
#[derive(Default)]
struct Overlay {
    entries: FxHashMap<StateKey, (Option<StateValue>, Option<StateValue>)>,
}

struct RecordingStore<'a, S: ?Sized> {
    state: &'a S,
    overlay: &'a mut Overlay,
    recorded: Vec<(StateKey, AccessMode)>,
}

impl<S: StateView + ?Sized> RecordingStore<'_, S> {
    fn entry(
        &mut self,
        key: &StateKey,
    ) -> Result<&mut (Option<StateValue>, Option<StateValue>), StorageError> {
        if !self.overlay.entries.contains_key(key) {
            let value = self.state.get(key)?;
            self.overlay.entries.insert(*key, (value, value));
        }
        Ok(self.overlay.entries.get_mut(key).expect("inserted above"))
    }
}

impl<S: StateView + ?Sized> TxStore for RecordingStore<'_, S> {
    type Error = StorageError;

    fn read(&mut self, key: &StateKey) -> Result<Option<StateValue>, StorageError> {
        self.recorded.push((*key, AccessMode::Read));
        Ok(self.entry(key)?.1)
    }

    fn write(&mut self, key: &StateKey, value: StateValue) -> Result<(), StorageError> {
        self.recorded.push((*key, AccessMode::Write));
        self.entry(key)?.1 = Some(value);
        Ok(())
    }
}

/// Executes `txs` in order against `state`, recording each tx's accesses, and returns the
/// canonical access sets, the canonical DAG and the outcome (with the post-state root for the
/// header).
pub fn propose<S: StateView + ?Sized>(
    state: &S,
    txs: &[Transaction],
) -> Result<Proposal, StorageError> {
    let mut overlay = Overlay::default();
    let mut per_tx = Vec::with_capacity(txs.len());
    let mut results = Vec::with_capacity(txs.len());
    for tx in txs {
        let mut store = RecordingStore {
            state,
            overlay: &mut overlay,
            recorded: Vec::with_capacity(4),
        };
        let code = apply_tx(tx, &mut store)?;
        results.push(TxResult { code });
        per_tx.push(store.recorded);
    }
    let access = AccessSets::from_per_tx(&per_tx);
    let dag = ConflictDag::derive(&access);
    // The key table is exactly the overlay's keys, in canonical order.
    let (base, current) = access.keys().iter().map(|key| overlay.entries[key]).unzip();
    let slots = SlotValues { base, current };
    let written = written_keys(&access);
    let before = lattice_sum(access.keys(), &written, &slots.base, Hashing::Serial);
    let changes = collect_changes(
        state.lattice(),
        access.keys(),
        &written,
        &slots,
        &before,
        Hashing::Serial,
    );
    let outcome = BlockOutcome::new(results, changes, dag.stats(), false);
    Ok(Proposal {
        access,
        dag,
        outcome,
    })
}
