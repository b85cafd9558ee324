//! Durable state: the [`Storage`] trait, an in-memory implementation and a sled one.
//!
//! A block's changes are committed as one unit: every changed key, the new height and the new
//! lattice hash go into one sled batch, which sled applies atomically, and the batch is flushed
//! to disk before `commit` returns. After a crash, reopening yields the state of the last
//! committed height, never a mix of two.

use std::path::Path;

use thiserror::Error;

use crate::codec::DecodeError;
use crate::lattice::LtHash;
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

/// State stored in sled.
pub struct SledStorage {
    db: sled::Db,
    tree: sled::Tree,
    height: u64,
    lattice: LtHash,
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
        let db = sled::Config::new()
            .path(path)
            // Commits flush explicitly; the background flush only bounds what a crash between
            // commits could lose, which is nothing that was acknowledged.
            .flush_every_ms(Some(1_000))
            .open()?;
        let tree = db.open_tree("state")?;
        let mut storage = SledStorage {
            db,
            tree,
            height: 0,
            lattice: LtHash::identity(),
        };
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
        check_next(self.height, height)?;
        let mut batch = sled::Batch::default();
        for (key, value) in aux {
            if key.first().is_none_or(|b| *b < AUX_PREFIX_MIN) {
                return Err(StorageError::Corrupt(format!(
                    "auxiliary key {key:02x?} is below the reserved prefix"
                )));
            }
            batch.insert(key.as_slice(), value.as_slice());
        }
        self.commit_batch(height, changes, batch)
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
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        self.height = height;
        self.lattice = changes.lattice.clone();
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
