//! Durable storage: sled keeps every committed block across reopening, agrees key for key with
//! the in-memory storage, refuses commits out of order, and ignores the genesis it is handed
//! once it holds a state.

use weft_execution::workload::Workload;
use weft_execution::{
    ChangeSet, Executor, MemoryState, MemoryStorage, SledStorage, StateKey, StateView, Storage,
    StorageError, propose, verify_block,
};

use crate::support::{follow_up_block, parallel_executors};

const SEED: u64 = 21;
const ACCOUNTS: u32 = 16;

fn open(path: &std::path::Path, genesis: &MemoryState) -> SledStorage {
    SledStorage::open(path, genesis).unwrap_or_else(|error| panic!("open {path:?}: {error}"))
}

/// Proposes a follow-up block on `state`, validates it on 4 threads, and returns its changes.
fn next_block(state: &impl StateView, height: u64, size: usize) -> ChangeSet {
    let txs = follow_up_block(state, SEED, ACCOUNTS, height, size);
    let proposal = propose(state, &txs).expect("state reads");
    let block = verify_block(&txs, &proposal.access, &proposal.dag).expect("honest block");
    let outcome = parallel_executors()[2]
        .execute(state, &block)
        .expect("honest block executes");
    assert_eq!(outcome.changes, proposal.outcome.changes, "height {height}");
    outcome.changes
}

/// Both storages hold the same pairs, root and height, and sled's pairs hash to its root.
fn assert_agree(sled: &SledStorage, memory: &MemoryStorage, what: &str) {
    assert_eq!(sled.height(), memory.height(), "{what}: height");
    assert_eq!(sled.root(), memory.root(), "{what}: root");
    let pairs = sled.pairs().expect("sled scan");
    assert_eq!(pairs, memory.state().sorted_pairs(), "{what}: pairs");
    sled.verify_integrity()
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    assert_eq!(
        MemoryState::from_pairs(pairs).root(),
        sled.root(),
        "{what}: the stored root differs from the root of the stored pairs"
    );
}

#[test]
fn sled_keeps_every_committed_block_across_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state");
    let generated = Workload::Mixed {
        accounts: ACCOUNTS,
        names: 6,
    }
    .generate(120, SEED);
    let genesis = generated.genesis;
    let mut memory = MemoryStorage::new(genesis.clone());
    let mut committed: Vec<ChangeSet> = Vec::new();
    {
        let mut sled = open(&path, &genesis);
        assert_agree(&sled, &memory, "fresh database");
        // Height 1: the generated block, proposed on sled and on memory alike.
        let on_sled = propose(&sled, &generated.txs).expect("sled reads");
        let on_memory = propose(&memory, &generated.txs).expect("memory reads");
        assert_eq!(on_sled, on_memory, "proposals on sled and memory differ");
        let mut changes = on_sled.outcome.changes;
        for height in 1..=4u64 {
            if height > 1 {
                changes = next_block(&sled, height, 40 + 20 * height as usize);
                assert_eq!(
                    changes,
                    next_block(&memory, height, 40 + 20 * height as usize)
                );
            }
            assert!(
                !changes.writes.is_empty(),
                "height {height} changes nothing"
            );
            sled.commit(height, &changes).expect("sled commit");
            memory.commit(height, &changes).expect("memory commit");
            assert_agree(&sled, &memory, &format!("after height {height}"));
            committed.push(changes.clone());
        }
    }
    // Reopening ignores the genesis it is handed: it keeps what it holds.
    let mut sled = open(&path, &MemoryState::new());
    assert_agree(&sled, &memory, "reopened");
    assert_eq!(sled.height(), 4);
    // No committed block's changes are lost: every key any block wrote reads back its last value.
    for (height, changes) in committed.iter().enumerate() {
        for (key, _) in &changes.writes {
            assert_eq!(
                sled.get(key).expect("sled read"),
                memory.get(key).expect("memory read"),
                "{key:?} written at height {}",
                height + 1
            );
        }
    }
    // The reopened storage goes on committing where it left off.
    for height in 5..=6u64 {
        let changes = next_block(&sled, height, 50);
        sled.commit(height, &changes).expect("sled commit");
        memory.commit(height, &changes).expect("memory commit");
        assert_agree(&sled, &memory, &format!("after height {height}, reopened"));
    }
    drop(sled);
    let sled = open(&path, &genesis);
    assert_agree(&sled, &memory, "reopened twice");
}

/// Which heights a storage at height 2 refuses, and that a refused commit changes nothing.
#[test]
fn commits_out_of_order_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let genesis = Workload::Uniform { accounts: 8 }.generate(0, SEED).genesis;
    let mut sled = open(dir.path(), &genesis);
    let mut memory = MemoryStorage::new(genesis);
    for height in 1..=2 {
        let changes = next_block(&memory, height, 20);
        sled.commit(height, &changes).expect("sled commit");
        memory.commit(height, &changes).expect("memory commit");
    }
    let pending = next_block(&memory, 3, 20);
    let cases: &[(u64, Result<(), StorageError>)] = &[
        (0, gap(2, 0)),
        (1, gap(2, 1)),
        (2, gap(2, 2)),
        (4, gap(2, 4)),
        (u64::MAX, gap(2, u64::MAX)),
    ];
    for (height, expected) in cases {
        let root = memory.root();
        assert_eq!(
            &sled.commit(*height, &pending),
            expected,
            "sled, height {height}"
        );
        assert_eq!(
            &memory.commit(*height, &pending),
            expected,
            "memory, height {height}"
        );
        assert_agree(&sled, &memory, &format!("after refusing height {height}"));
        assert_eq!(sled.root(), root, "a refused commit changed the root");
    }
    sled.commit(3, &pending).expect("the next height commits");
    memory.commit(3, &pending).expect("the next height commits");
    assert_agree(&sled, &memory, "after height 3");
}

fn gap(committed: u64, got: u64) -> Result<(), StorageError> {
    Err(StorageError::HeightGap { committed, got })
}

#[test]
fn a_fresh_database_holds_genesis_at_height_zero() {
    let cases = [
        ("empty genesis", MemoryState::new()),
        (
            "workload genesis",
            Workload::PayName {
                accounts: 5,
                names: 3,
            }
            .generate(0, SEED)
            .genesis,
        ),
    ];
    for (name, genesis) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let sled = open(dir.path(), &genesis);
        let memory = MemoryStorage::new(genesis.clone());
        assert_agree(&sled, &memory, name);
        assert_eq!(sled.height(), 0, "{name}");
        assert_eq!(sled.root(), genesis.root(), "{name}");
        for (key, value) in genesis.sorted_pairs() {
            assert_eq!(
                sled.get(&key).expect("read"),
                Some(value),
                "{name}: {key:?}"
            );
        }
        assert_eq!(
            sled.get(&StateKey::WorkSlot(99)).expect("read"),
            None,
            "{name}"
        );
    }
}
