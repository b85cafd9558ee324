//! The snapshots a node keeps and serves: `<data>/snapshots/<height>/` holds a `manifest` and
//! `chunk-<i>` files, written under a temporary name, synced, then renamed, so a directory with
//! its final name is always complete. The last `snapshot_keep` are kept; the oldest one bounds
//! block pruning (a node restored from it block-syncs the rest from here).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use weft_consensus::Height;
use weft_execution::SnapshotReader;
use weft_execution::snapshot::{Manifest, SNAPSHOT_CHUNK_BYTES_MAX};
use weft_gossip::net::snapshot::SNAPSHOTS_LISTED_MAX;
use weft_gossip::{SnapshotInfo, SnapshotRequest, SnapshotResponse};

use crate::chain::{Chain, PRUNE_FLOOR_NONE};

struct Entry {
    manifest: Vec<u8>,
    hash: [u8; 32],
    chunks: u32,
    /// When a peer last fetched a chunk of it.
    served: Option<Instant>,
}

/// A snapshot a peer fetched a chunk of this recently is kept past `snapshot_keep` (up to twice
/// as many in all), so a joining node is not cut off mid-restore by a newer snapshot.
const FETCH_GRACE: Duration = Duration::from_secs(30);

/// The snapshot directory and an index of what it holds.
pub struct SnapshotStore {
    dir: PathBuf,
    keep: usize,
    index: Mutex<BTreeMap<u64, Entry>>,
    /// The oldest snapshot's height, shared with the chain's pruning (0 while there is none,
    /// so nothing is pruned before the first snapshot; [`PRUNE_FLOOR_NONE`] when snapshots are
    /// off).
    floor: Arc<AtomicU64>,
}

fn io_error(path: &Path, error: std::io::Error) -> String {
    format!("{}: {error}", path.display())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut file = fs::File::create(path).map_err(|e| io_error(path, e))?;
    file.write_all(bytes).map_err(|e| io_error(path, e))?;
    file.sync_all().map_err(|e| io_error(path, e))
}

fn sync_dir(path: &Path) -> Result<(), String> {
    fs::File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io_error(path, e))
}

impl SnapshotStore {
    /// Opens `dir` (creating it), keeping the last `keep` snapshots; `enabled` says whether
    /// this node takes snapshots (its oldest then bounds pruning). Leftover temporary
    /// directories (a write cut off by a crash) are removed.
    pub fn open(dir: &Path, keep: usize, enabled: bool) -> Result<SnapshotStore, String> {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let mut index = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
            let entry = entry.map_err(|e| io_error(dir, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(height) = name.parse::<u64>() else {
                if name.ends_with(".tmp") {
                    let _ = fs::remove_dir_all(&path);
                }
                continue;
            };
            let manifest_path = path.join("manifest");
            let Ok(bytes) = fs::read(&manifest_path) else {
                continue;
            };
            match Manifest::decode(&bytes) {
                Ok(manifest) if manifest.height == height => {
                    index.insert(
                        height,
                        Entry {
                            hash: manifest.hash(),
                            chunks: manifest.chunks.len() as u32,
                            manifest: bytes,
                            served: None,
                        },
                    );
                }
                _ => tracing::warn!(path = %manifest_path.display(), "unreadable snapshot skipped"),
            }
        }
        let store = SnapshotStore {
            dir: dir.to_path_buf(),
            keep: keep.max(1),
            index: Mutex::new(index),
            floor: Arc::new(AtomicU64::new(if enabled { 0 } else { PRUNE_FLOOR_NONE })),
        };
        store.update_floor(enabled);
        Ok(store)
    }

    /// The pruning floor the chain follows.
    pub fn floor(&self) -> Arc<AtomicU64> {
        self.floor.clone()
    }

    fn update_floor(&self, enabled: bool) {
        if enabled {
            let oldest = self.index.lock().keys().next().copied().unwrap_or(0);
            self.floor.store(oldest, Ordering::Release);
        }
    }

    /// Writes the snapshot `reader` holds as chain height `height`, then drops the oldest past
    /// `keep`. Runs for as long as cutting the state takes: call it off the consensus path.
    pub fn write(&self, height: u64, reader: SnapshotReader) -> Result<u32, String> {
        let tmp = self.dir.join(format!("{height}.tmp"));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(|e| io_error(&tmp, e))?;
        let mut chunks = Vec::new();
        reader
            .chunks(|chunk| {
                let path = tmp.join(format!("chunk-{}", chunks.len()));
                write_synced(&path, &chunk.bytes).map_err(weft_execution::StorageError::Io)?;
                chunks.push(chunk.lattice);
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        drop(reader);
        let manifest = Manifest { height, chunks };
        let bytes = manifest.encode();
        write_synced(&tmp.join("manifest"), &bytes)?;
        sync_dir(&tmp)?;
        let done = self.dir.join(height.to_string());
        let _ = fs::remove_dir_all(&done);
        fs::rename(&tmp, &done).map_err(|e| io_error(&done, e))?;
        sync_dir(&self.dir)?;
        let count = manifest.chunks.len() as u32;
        let mut index = self.index.lock();
        index.insert(
            height,
            Entry {
                hash: manifest.hash(),
                chunks: count,
                manifest: bytes,
                served: None,
            },
        );
        while index.len() > self.keep {
            // The oldest no peer is fetching; past twice the limit, the oldest regardless.
            let fetching =
                |entry: &Entry| entry.served.is_some_and(|at| at.elapsed() < FETCH_GRACE);
            let idle = index
                .iter()
                .find(|(at, entry)| **at != height && !fetching(entry))
                .map(|(at, _)| *at);
            let Some(oldest) = idle.or_else(|| {
                (index.len() > 2 * self.keep)
                    .then(|| index.keys().next().copied())
                    .flatten()
            }) else {
                break;
            };
            index.remove(&oldest);
            let path = self.dir.join(oldest.to_string());
            if let Err(e) = fs::remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), error = %e, "old snapshot not removed");
            }
        }
        drop(index);
        self.update_floor(true);
        Ok(count)
    }

    /// The snapshots kept, newest first.
    pub fn list(&self) -> Vec<SnapshotInfo> {
        self.index
            .lock()
            .iter()
            .rev()
            .take(SNAPSHOTS_LISTED_MAX)
            .map(|(&height, entry)| SnapshotInfo {
                height,
                chunks: entry.chunks,
                manifest_hash: entry.hash,
            })
            .collect()
    }

    pub fn manifest(&self, height: u64) -> Option<Vec<u8>> {
        self.index.lock().get(&height).map(|e| e.manifest.clone())
    }

    pub fn chunk(&self, height: u64, index: u32) -> Option<Vec<u8>> {
        let chunks = {
            let mut entries = self.index.lock();
            let entry = entries.get_mut(&height)?;
            entry.served = Some(Instant::now());
            entry.chunks
        };
        if index >= chunks {
            return None;
        }
        let path = self
            .dir
            .join(height.to_string())
            .join(format!("chunk-{index}"));
        fs::read(path)
            .ok()
            .filter(|bytes| bytes.len() <= SNAPSHOT_CHUNK_BYTES_MAX)
    }
}

/// Answers a peer's snapshot request: light blocks from the chain, the rest from `store` (none
/// kept when it is `None`).
pub fn serve(
    chain: &RwLock<Chain>,
    store: Option<&SnapshotStore>,
    request: &SnapshotRequest,
) -> SnapshotResponse {
    match *request {
        SnapshotRequest::List => {
            SnapshotResponse::List(store.map(|s| s.list()).unwrap_or_default())
        }
        SnapshotRequest::Manifest { height } => {
            SnapshotResponse::Manifest(store.and_then(|s| s.manifest(height)))
        }
        SnapshotRequest::Chunk { height, index } => {
            SnapshotResponse::Chunk(store.and_then(|s| s.chunk(height, index)))
        }
        SnapshotRequest::LightBlock { height } => {
            let block = chain.read().light_block(Height(height)).ok().flatten();
            SnapshotResponse::LightBlock(block.map(|b| b.encode()))
        }
    }
}

#[cfg(test)]
mod tests {
    use weft_execution::{Account, Address, MemoryState, SledStorage, StateKey, StateValue};

    use super::*;

    /// Past `snapshot_keep`, the oldest snapshot goes, unless a peer is fetching it; past
    /// twice the limit, the oldest goes regardless. The floor follows the oldest kept.
    #[test]
    fn old_snapshots_go_unless_a_peer_is_fetching_them() {
        let dir = tempfile::tempdir().unwrap();
        let state = MemoryState::from_pairs([(
            StateKey::Account(Address([1; 32])),
            StateValue::Account(Account::default()),
        )]);
        let storage = SledStorage::open(&dir.path().join("db"), &state).unwrap();
        let store = SnapshotStore::open(&dir.path().join("snapshots"), 1, true).unwrap();
        let write = |height: u64| {
            store
                .write(height, storage.begin_snapshot().unwrap())
                .unwrap()
        };
        let heights = |store: &SnapshotStore| -> Vec<u64> {
            store.list().iter().rev().map(|info| info.height).collect()
        };
        assert_eq!(
            store.floor().load(Ordering::Acquire),
            0,
            "nothing pruned before one"
        );
        write(10);
        write(20);
        assert_eq!(heights(&store), vec![20]);
        assert!(store.chunk(20, 0).is_some(), "a peer fetches from 20");
        write(30);
        assert_eq!(heights(&store), vec![20, 30], "20 is being fetched");
        write(40);
        assert_eq!(heights(&store), vec![20, 40]);
        assert_eq!(store.floor().load(Ordering::Acquire), 20);
        assert!(store.manifest(30).is_none() && store.chunk(30, 0).is_none());
        assert!(!dir.path().join("snapshots/30").exists());
        let reopened = SnapshotStore::open(&dir.path().join("snapshots"), 1, true).unwrap();
        assert_eq!(heights(&reopened), vec![20, 40]);
    }
}
