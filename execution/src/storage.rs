//! Durable state: the [`Storage`] trait, an in-memory implementation and a sled one.
//!
//! A block's changes are committed as one unit: every changed key, the new height and the new
//! lattice hash go into one sled batch, which sled applies atomically, and the batch is flushed
//! to disk before `commit` returns. After a crash, reopening yields the state of the last
//! committed height, never a mix of two.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use thiserror::Error;

use crate::codec::DecodeError;
use crate::lattice::LtHash;
use crate::snapshot::{Chunk, Chunker};
use crate::state::{ChangeSet, MemoryState, StateKey, StateValue, StateView};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StorageError {
    #[error("storage IO failed: {0}")]
    Io(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("commit of height {got} does not follow committed height {committed}")]
    HeightGap { committed: u64, got: u64 },
}

impl From<sled::Error> for StorageError {
    fn from(error: sled::Error) -> Self {
        match error {
            sled::Error::Corruption { .. } => StorageError::Corrupt(error.to_string()),
            other => StorageError::Io(other.to_string()),
        }
    }
}

fn corrupt(what: &str, error: DecodeError) -> StorageError {
    StorageError::Corrupt(format!("{what}: {error}"))
}

/// A committed state that blocks are applied to, one height at a time.
pub trait Storage: StateView {
    /// The last committed height; 0 before the first commit.
    fn height(&self) -> u64;

    /// Applies one block's changes atomically and durably. `height` must be the next one.
    fn commit(&mut self, height: u64, changes: &ChangeSet) -> Result<(), StorageError>;
}

fn check_next(committed: u64, got: u64) -> Result<(), StorageError> {
    if got == committed + 1 {
        Ok(())
    } else {
        Err(StorageError::HeightGap { committed, got })
    }
}

/// Storage in memory only: for tests, benchmarks and throwaway nodes.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    state: MemoryState,
    height: u64,
}

impl MemoryStorage {
    pub fn new(genesis: MemoryState) -> Self {
        MemoryStorage {
            state: genesis,
            height: 0,
        }
    }

    pub fn state(&self) -> &MemoryState {
        &self.state
    }
}

impl StateView for MemoryStorage {
    fn get(&self, key: &StateKey) -> Result<Option<StateValue>, StorageError> {
        self.state.get(key)
    }

    fn lattice(&self) -> &LtHash {
        self.state.lattice()
    }
}

impl Storage for MemoryStorage {
    fn height(&self) -> u64 {
        self.height
    }

    fn commit(&mut self, height: u64, changes: &ChangeSet) -> Result<(), StorageError> {
        check_next(self.height, height)?;
        self.state.apply(changes);
        self.height = height;
        Ok(())
    }
}

/// Key prefixes in the one sled tree: state pairs and metadata share it so that one batch
/// covers both.
const STATE_PREFIX: u8 = 1;
const META_HEIGHT: &[u8] = &[0, b'h'];
const META_LATTICE: &[u8] = &[0, b'l'];
/// Present while a snapshot is being restored into the tree: a store that holds it on opening
/// was cut off mid-restore and is reset.
const META_RESTORING: &[u8] = &[0, b'r'];
/// Undo records of a snapshot being read: `[UNDO_PREFIX][height][state key]` holds what the key
/// held at that height (`[0]`: absent; `[1]` and the value), written before a commit changes
/// the key for the first time since.
const UNDO_PREFIX: u8 = 2;

/// State stored in sled.
pub struct SledStorage {
    db: sled::Db,
    tree: sled::Tree,
    height: u64,
    lattice: LtHash,
    /// The storage height a snapshot is being read at, if one is.
    frozen: Arc<Mutex<Option<u64>>>,
    /// Flush every commit (the default); off only to build fixtures fast.
    durable: bool,
    /// Set when opening found a restore cut short, and reset the store.
    abandoned_restore: bool,
}

impl std::fmt::Debug for SledStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStorage")
            .field("height", &self.height)
            .field("root", &self.lattice.root())
            .finish()
    }
}

impl SledStorage {
    /// Opens (or creates) the database at `path`. A new database holds `genesis` at height 0;
    /// an existing one keeps what it holds and `genesis` is ignored.
    pub fn open(path: &Path, genesis: &MemoryState) -> Result<Self, StorageError> {
        let config = sled::Config::new()
            .path(path)
            // Commits flush explicitly; the background flush only bounds what a crash between
            // commits could lose, which is nothing that was acknowledged.
            .flush_every_ms(Some(1_000));
        let db = open_locked(&config)?;
        let tree = db.open_tree("state")?;
        let mut storage = SledStorage {
            db,
            tree,
            height: 0,
            lattice: LtHash::identity(),
            frozen: Arc::new(Mutex::new(None)),
            durable: true,
            abandoned_restore: false,
        };
        if storage.tree.get(META_RESTORING)?.is_some() {
            // A restore was cut short: what the tree holds is a partial state. Start afresh.
            storage.tree.clear()?;
            storage.db.flush()?;
            storage.abandoned_restore = true;
        }
        storage.clear_prefix(&[UNDO_PREFIX])?;
        match storage.tree.get(META_LATTICE)? {
            Some(bytes) => storage.load_meta(&bytes)?,
            None => storage.write_genesis(genesis)?,
        }
        Ok(storage)
    }

    fn load_meta(&mut self, lattice: &[u8]) -> Result<(), StorageError> {
        self.lattice = LtHash::from_bytes(lattice)
            .ok_or_else(|| StorageError::Corrupt("lattice hash has the wrong length".into()))?;
        let height = self
            .tree
            .get(META_HEIGHT)?
            .ok_or_else(|| StorageError::Corrupt("height is missing".into()))?;
        let height: [u8; 8] = height
            .as_ref()
            .try_into()
            .map_err(|_| StorageError::Corrupt("height has the wrong length".into()))?;
        self.height = u64::from_le_bytes(height);
        Ok(())
    }

    fn write_genesis(&mut self, genesis: &MemoryState) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for (key, value) in genesis.sorted_pairs() {
            batch.insert(state_key(&key), value.encode());
        }
        batch.insert(META_HEIGHT, &0u64.to_le_bytes());
        batch.insert(META_LATTICE, genesis.lattice().to_bytes());
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        self.lattice = genesis.lattice().clone();
        Ok(())
    }

    /// Recomputes the lattice hash from every stored pair and compares it with the stored one:
    /// O(state), for startup checks and tests.
    pub fn verify_integrity(&self) -> Result<(), StorageError> {
        let mut lattice = LtHash::identity();
        for entry in self.tree.scan_prefix([STATE_PREFIX]) {
            let (key, value) = entry?;
            let (key, value) = decode_pair(&key, &value)?;
            lattice.add_state(&key, &value);
        }
        if lattice == self.lattice {
            Ok(())
        } else {
            Err(StorageError::Corrupt(
                "stored pairs do not match the stored state root".into(),
            ))
        }
    }

    /// Whether opening found a snapshot restore cut short (and reset the store to genesis).
    pub fn abandoned_restore(&self) -> bool {
        self.abandoned_restore
    }

    /// Turns the flush after each commit off (`false`) or on. Only for building fixtures and
    /// benchmarks' chains fast: a crash loses commits made while it is off.
    pub fn set_durable(&mut self, durable: bool) {
        self.durable = durable;
    }

    fn clear_prefix(&self, prefix: &[u8]) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        let mut any = false;
        for entry in self.tree.scan_prefix(prefix) {
            let (key, _) = entry?;
            batch.remove(key);
            any = true;
        }
        if any {
            self.tree.apply_batch(batch)?;
        }
        Ok(())
    }

    /// The stored pairs whose key's encoding starts with `kind` (one [`StateKey`] variant).
    pub fn pairs_of_kind(&self, kind: u8) -> Result<Vec<(StateKey, StateValue)>, StorageError> {
        self.tree
            .scan_prefix([STATE_PREFIX, kind])
            .map(|entry| {
                let (key, value) = entry?;
                decode_pair(&key, &value)
            })
            .collect()
    }

    /// Every stored pair, sorted by encoded key.
    pub fn pairs(&self) -> Result<Vec<(StateKey, StateValue)>, StorageError> {
        self.tree
            .scan_prefix([STATE_PREFIX])
            .map(|entry| {
                let (key, value) = entry?;
                decode_pair(&key, &value)
            })
            .collect()
    }
}

/// How long opening waits for the database's file lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the database, waiting up to [`LOCK_WAIT`] for its file lock: a database closed a moment
/// ago in this process stays locked until sled's background flusher lets go of it. A lock held
/// by another process is still an error, once the wait is over.
fn open_locked(config: &sled::Config) -> Result<sled::Db, StorageError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            // sled 0.34 reports a held lock as an `Other` IO error with this message.
            Err(sled::Error::Io(error))
                if error.to_string().starts_with("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            result => return Ok(result?),
        }
    }
}

fn check_aux(key: &[u8]) -> Result<(), StorageError> {
    if key.first().is_none_or(|b| *b < AUX_PREFIX_MIN) {
        return Err(StorageError::Corrupt(format!(
            "auxiliary key {key:02x?} is below the reserved prefix"
        )));
    }
    Ok(())
}

fn undo_key(at: u64, encoded_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + encoded_key.len());
    out.push(UNDO_PREFIX);
    out.extend_from_slice(&at.to_be_bytes());
    out.extend_from_slice(encoded_key);
    out
}

/// Reads the state as it was at a frozen height while commits go on, and cuts it into chunks.
/// Dropping it (or [`SnapshotReader::finish`]) unfreezes the store.
pub struct SnapshotReader {
    tree: sled::Tree,
    frozen: Arc<Mutex<Option<u64>>>,
    height: u64,
    lattice: LtHash,
}

impl SnapshotReader {
    /// The storage height frozen.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The lattice hash of the state at that height.
    pub fn lattice(&self) -> &LtHash {
        &self.lattice
    }

    /// Cuts the frozen state into chunks, handing each to `sink` in order, and checks that
    /// their lattice hashes sum to the frozen state's. Stops at the first error of `sink`.
    pub fn chunks(
        &self,
        mut sink: impl FnMut(Chunk) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut chunker = Chunker::default();
        let mut total = LtHash::identity();
        let mut emit = |chunk: Chunk, total: &mut LtHash| {
            total.add(&chunk.lattice);
            sink(chunk)
        };
        for entry in self.tree.scan_prefix([STATE_PREFIX]) {
            let (key, current) = entry?;
            // Read after the value: a reader that saw a new value finds its record.
            let value = match self.tree.get(undo_key(self.height, &key[1..]))? {
                None => current.to_vec(),
                Some(record) if record.first() == Some(&0) => continue,
                Some(record) => record[1..].to_vec(),
            };
            let (key, value) = decode_pair(&key, &value)?;
            if let Some(chunk) = chunker.push(key, value) {
                emit(chunk, &mut total)?;
            }
        }
        if let Some(chunk) = chunker.finish() {
            emit(chunk, &mut total)?;
        }
        if total != self.lattice {
            return Err(StorageError::Corrupt(
                "the snapshot's pairs do not sum to the frozen state root".into(),
            ));
        }
        Ok(())
    }

    /// Unfreezes the store and removes the undo records.
    pub fn finish(self) {}
}

impl Drop for SnapshotReader {
    fn drop(&mut self) {
        let mut frozen = self.frozen.lock();
        *frozen = None;
        let mut prefix = vec![UNDO_PREFIX];
        prefix.extend_from_slice(&self.height.to_be_bytes());
        let mut batch = sled::Batch::default();
        for (key, _) in self.tree.scan_prefix(&prefix).flatten() {
            batch.remove(key);
        }
        // Left records are removed when the store next opens.
        let _ = self.tree.apply_batch(batch);
    }
}

fn state_key(key: &StateKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(35);
    out.push(STATE_PREFIX);
    key.encode_into(&mut out);
    out
}

fn decode_pair(key: &[u8], value: &[u8]) -> Result<(StateKey, StateValue), StorageError> {
    let key = StateKey::decode(&key[1..]).map_err(|e| corrupt("state key", e))?;
    let value = decode_value(&key, value)?;
    Ok((key, value))
}

fn decode_value(key: &StateKey, bytes: &[u8]) -> Result<StateValue, StorageError> {
    let value = StateValue::decode(bytes).map_err(|e| corrupt("state value", e))?;
    if !value.fits(key) {
        return Err(StorageError::Corrupt(format!(
            "value {value:?} stored under {key:?}"
        )));
    }
    Ok(value)
}

impl StateView for SledStorage {
    fn get(&self, key: &StateKey) -> Result<Option<StateValue>, StorageError> {
        self.tree
            .get(state_key(key))?
            .map(|bytes| decode_value(key, &bytes))
            .transpose()
    }

    fn lattice(&self) -> &LtHash {
        &self.lattice
    }
}

/// First byte of the keys the caller may store beside the state ([`SledStorage::commit_with`]):
/// blocks, certificates, indexes. State and metadata use the bytes below it.
pub const AUX_PREFIX_MIN: u8 = 0x10;

impl SledStorage {
    /// Commits `changes` and the caller's records `aux` (each key starting with a byte
    /// ≥ [`AUX_PREFIX_MIN`]) in one atomic, flushed batch: after a crash, either all of the
    /// height is there or none of it.
    pub fn commit_with(
        &mut self,
        height: u64,
        changes: &ChangeSet,
        aux: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), StorageError> {
        self.commit_pruning(height, changes, aux, &[])
    }

    /// [`SledStorage::commit_with`], also removing the caller's records `remove` (pruning) in
    /// the same batch.
    pub fn commit_pruning(
        &mut self,
        height: u64,
        changes: &ChangeSet,
        aux: &[(Vec<u8>, Vec<u8>)],
        remove: &[Vec<u8>],
    ) -> Result<(), StorageError> {
        check_next(self.height, height)?;
        let mut batch = sled::Batch::default();
        for key in remove {
            check_aux(key)?;
            batch.remove(key.as_slice());
        }
        for (key, value) in aux {
            check_aux(key)?;
            batch.insert(key.as_slice(), value.as_slice());
        }
        self.commit_batch(height, changes, batch)
    }

    /// Writes or removes the caller's records outside a commit (for example what a restored
    /// snapshot's height needs), in one atomic, flushed batch.
    pub fn aux_apply(
        &self,
        insert: &[(Vec<u8>, Vec<u8>)],
        remove: &[Vec<u8>],
    ) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for key in remove {
            check_aux(key)?;
            batch.remove(key.as_slice());
        }
        for (key, value) in insert {
            check_aux(key)?;
            batch.insert(key.as_slice(), value.as_slice());
        }
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// The size of the database's files on disk, in bytes.
    pub fn size_on_disk(&self) -> Result<u64, StorageError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Flushes everything to disk (commits already do; this is for a clean shutdown).
    pub fn flush(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        Ok(())
    }

    /// A record stored by [`SledStorage::commit_with`].
    pub fn aux_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    fn commit_batch(
        &mut self,
        height: u64,
        changes: &ChangeSet,
        mut batch: sled::Batch,
    ) -> Result<(), StorageError> {
        for (key, value) in &changes.writes {
            batch.insert(state_key(key), value.encode());
        }
        batch.insert(META_HEIGHT, &height.to_le_bytes());
        batch.insert(META_LATTICE, changes.lattice.to_bytes());
        // Held through the commit, so a snapshot's reader never ends between the undo records
        // and the change they cover.
        let frozen = self.frozen.clone();
        let frozen = frozen.lock();
        if let Some(at) = *frozen {
            self.write_undo(at, changes)?;
        }
        self.tree.apply_batch(batch)?;
        drop(frozen);
        if self.durable {
            self.db.flush()?;
        }
        self.height = height;
        self.lattice = changes.lattice.clone();
        Ok(())
    }

    /// Records what each key `changes` writes held at the frozen height, unless an earlier
    /// commit since has: in a batch of its own applied before the change, so a reader that sees
    /// the new value finds the record.
    fn write_undo(&self, at: u64, changes: &ChangeSet) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for (key, _) in &changes.writes {
            let stored = state_key(key);
            let undo = undo_key(at, &stored[1..]);
            if self.tree.get(&undo)?.is_some() {
                continue;
            }
            let record = match self.tree.get(&stored)? {
                None => vec![0],
                Some(old) => {
                    let mut record = Vec::with_capacity(old.len() + 1);
                    record.push(1);
                    record.extend_from_slice(&old);
                    record
                }
            };
            batch.insert(undo, record);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Freezes the state at the last committed height for a snapshot, which the returned
    /// reader cuts into chunks (on any thread, while commits go on). One snapshot is read at a
    /// time: `None` while another reader lives.
    pub fn begin_snapshot(&self) -> Option<SnapshotReader> {
        let mut frozen = self.frozen.lock();
        if frozen.is_some() {
            return None;
        }
        *frozen = Some(self.height);
        Some(SnapshotReader {
            tree: self.tree.clone(),
            frozen: self.frozen.clone(),
            height: self.height,
            lattice: self.lattice.clone(),
        })
    }

    /// Begins restoring a snapshot: marks the store as mid-restore (a store opened with the
    /// mark is reset) and empties it. Chunks follow ([`SledStorage::restore_chunk`]), then
    /// [`SledStorage::finish_restore`].
    pub fn begin_restore(&mut self) -> Result<(), StorageError> {
        self.tree.insert(META_RESTORING, &[1])?;
        self.db.flush()?;
        let mut batch = sled::Batch::default();
        for entry in self.tree.iter() {
            let (key, _) = entry?;
            if key.as_ref() != META_RESTORING {
                batch.remove(key);
            }
        }
        self.tree.apply_batch(batch)?;
        self.height = 0;
        self.lattice = LtHash::identity();
        Ok(())
    }

    /// Writes one checked chunk's pairs.
    pub fn restore_chunk(&mut self, pairs: &[(StateKey, StateValue)]) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for (key, value) in pairs {
            batch.insert(state_key(key), value.encode());
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Ends a restore at storage height `height`: recomputes the lattice hash of every pair
    /// written and compares it with `lattice` (the verified one), then writes the height, the
    /// hash and the caller's records `aux` and clears the mark, in one flushed batch.
    pub fn finish_restore(
        &mut self,
        height: u64,
        lattice: &LtHash,
        aux: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), StorageError> {
        self.lattice = lattice.clone();
        self.verify_integrity()?;
        let mut batch = sled::Batch::default();
        for (key, value) in aux {
            check_aux(key)?;
            batch.insert(key.as_slice(), value.as_slice());
        }
        batch.insert(META_HEIGHT, &height.to_le_bytes());
        batch.insert(META_LATTICE, lattice.to_bytes());
        batch.remove(META_RESTORING);
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        self.height = height;
        Ok(())
    }
}

impl Storage for SledStorage {
    fn height(&self) -> u64 {
        self.height
    }

    fn commit(&mut self, height: u64, changes: &ChangeSet) -> Result<(), StorageError> {
        check_next(self.height, height)?;
        self.commit_batch(height, changes, sled::Batch::default())
    }
}
