//! Snapshots of the sled state: a frozen height read while commits go on, chunks checked
//! against the manifest, a restore that reproduces the state, and a restore cut short.

use std::thread;

use weft_execution::snapshot::{Manifest, SnapshotError};
use weft_execution::{
    Account, Address, ChangeSet, LtHash, MemoryState, SledStorage, StateKey, StateValue, StateView,
    Storage,
};

fn account(i: u32, balance: u64) -> (StateKey, StateValue) {
    let mut address = [7u8; 32];
    address[..4].copy_from_slice(&i.to_be_bytes());
    (
        StateKey::Account(Address(address)),
        StateValue::Account(Account { balance, nonce: 0 }),
    )
}

fn genesis(accounts: u32) -> MemoryState {
    MemoryState::from_pairs((0..accounts).map(|i| account(i, 1_000)))
}

/// A block that changes `changed` existing accounts and creates `created` new ones.
fn block(state: &mut MemoryState, height: u64, changed: u32, created: u32) -> ChangeSet {
    let mut writes = Vec::new();
    for i in 0..changed {
        writes.push(account((i * 7 + height as u32) % 20_000, height));
    }
    for i in 0..created {
        writes.push(account(1_000_000 + height as u32 * 100 + i, 1));
    }
    writes.sort_by_key(|w| w.0);
    writes.dedup_by_key(|w| w.0);
    let mut lattice = state.lattice().clone();
    for (key, value) in &writes {
        if let Some(old) = state.get(key).unwrap() {
            lattice.sub_state(key, &old);
        }
        lattice.add_state(key, value);
    }
    let changes = ChangeSet { writes, lattice };
    state.apply(&changes);
    changes
}

/// The snapshot of a frozen height holds that height's state exactly, though blocks that
/// change and create keys commit while it is read; restored elsewhere, it is that state.
#[test]
fn a_snapshot_read_during_commits_is_the_frozen_height_and_restores_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut memory = genesis(20_000);
    let mut storage = SledStorage::open(&dir.path().join("a"), &memory).unwrap();
    for height in 1..=3 {
        storage
            .commit(height, &block(&mut memory, height, 50, 5))
            .unwrap();
    }
    let frozen_root = storage.root();
    let frozen_pairs = storage.pairs().unwrap();
    let reader = storage.begin_snapshot().unwrap();
    assert!(storage.begin_snapshot().is_none(), "one snapshot at a time");
    assert_eq!(reader.height(), 3);
    let read = thread::spawn(move || {
        let mut chunks = Vec::new();
        reader
            .chunks(|chunk| {
                chunks.push(chunk);
                Ok(())
            })
            .unwrap();
        chunks
    });
    for height in 4..=40 {
        storage
            .commit(height, &block(&mut memory, height, 400, 20))
            .unwrap();
    }
    let chunks = read.join().unwrap();
    assert!(chunks.len() > 1, "{} chunks", chunks.len());
    assert!(
        storage.begin_snapshot().is_some(),
        "the reader's end unfroze the store"
    );

    let manifest = Manifest {
        height: 3,
        chunks: chunks.iter().map(|c| c.lattice.clone()).collect(),
    };
    manifest.check(3, frozen_root).unwrap();
    let mut restored = SledStorage::open(&dir.path().join("b"), &genesis(10)).unwrap();
    restored.begin_restore().unwrap();
    for (i, chunk) in chunks.iter().enumerate() {
        let pairs = manifest.check_chunk(i as u32, &chunk.bytes).unwrap();
        restored.restore_chunk(&pairs).unwrap();
    }
    restored.finish_restore(3, &manifest.total(), &[]).unwrap();
    assert_eq!(restored.height(), 3);
    assert_eq!(restored.root(), frozen_root);
    assert_eq!(restored.pairs().unwrap(), frozen_pairs);
    drop(restored);
    let reopened = SledStorage::open(&dir.path().join("b"), &genesis(10)).unwrap();
    assert!(!reopened.abandoned_restore());
    assert_eq!(reopened.root(), frozen_root);
    reopened.verify_integrity().unwrap();
}

/// A chunk from another state, or a manifest that does not sum to the root, is refused.
#[test]
fn a_chunk_or_manifest_that_lies_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let storage = SledStorage::open(dir.path(), &genesis(20_000)).unwrap();
    let mut chunks = Vec::new();
    let reader = storage.begin_snapshot().unwrap();
    reader
        .chunks(|chunk| {
            chunks.push(chunk);
            Ok(())
        })
        .unwrap();
    drop(reader);
    let manifest = Manifest {
        height: 0,
        chunks: chunks.iter().map(|c| c.lattice.clone()).collect(),
    };
    let mut other = genesis(20_000);
    other.insert(account(3, 999).0, account(3, 999).1);
    assert_eq!(manifest.check(0, other.root()), Err(SnapshotError::Root));
    let mut liar = manifest.clone();
    liar.chunks[0] = LtHash::identity();
    assert_eq!(liar.check(0, storage.root()), Err(SnapshotError::Root));
    let mut corrupt = chunks[1].bytes.clone();
    let at = corrupt.len() - 3;
    corrupt[at] ^= 1;
    assert!(matches!(
        manifest.check_chunk(1, &corrupt),
        Err(SnapshotError::ChunkHash { index: 1 })
    ));
}

/// A restore cut off before its end leaves a store that opens at genesis, saying so.
#[test]
fn a_restore_cut_short_reopens_at_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let source = SledStorage::open(&dir.path().join("a"), &genesis(20_000)).unwrap();
    let mut chunks = Vec::new();
    source
        .begin_snapshot()
        .unwrap()
        .chunks(|chunk| {
            chunks.push(chunk);
            Ok(())
        })
        .unwrap();
    let start = genesis(5);
    let mut restoring = SledStorage::open(&dir.path().join("b"), &start).unwrap();
    restoring.begin_restore().unwrap();
    let pairs = weft_execution::snapshot::decode_chunk(&chunks[0].bytes).unwrap();
    restoring.restore_chunk(&pairs).unwrap();
    restoring.flush().unwrap();
    drop(restoring);
    let reopened = SledStorage::open(&dir.path().join("b"), &start).unwrap();
    assert!(reopened.abandoned_restore());
    assert_eq!(reopened.height(), 0);
    assert_eq!(reopened.root(), start.root());
    reopened.verify_integrity().unwrap();
}
