//! The proposal-block log beside the consensus WAL (`cs.wal.blocks`): the bytes of every block
//! this node proposed or found valid at the current height, so that a node that restarts
//! after deciding (or precommitting) a value still holds the block behind it.
//!
//! The WAL keeps proposals without their blocks (ADR 0009). Without this log, a network whose
//! nodes all stopped between a decision and its commit came back with a decided value and no
//! block for it anywhere: each node asked the others to sync a height none had committed.
//!
//! Format: records of `[len: u32 LE][crc32: u32 LE][sealed block bytes]`, appended as blocks
//! arrive and made durable by [`BlockLog::sync`], which the driver calls with the WAL's sync,
//! before any signature leaves. [`BlockLog::open`] keeps the records up to the first damaged
//! one and truncates the rest; a record that does not decode as a block is dropped the same
//! way. [`BlockLog::reset`] truncates the file and appends the blocks still wanted when a new
//! height starts; they are synced at the next `Persist`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use weft_gossip::BLOCK_BYTES_MAX;

use crate::block::SealedBlock;

/// Largest log file: a height keeps a bounded number of blocks (the driver's `BLOCKS_MAX`),
/// each at most [`BLOCK_BYTES_MAX`]; past this, blocks are not logged (a liveness aid only).
pub const BLOCK_LOG_BYTES_MAX: u64 = 512 << 20;

const HEADER_BYTES: usize = 8;

#[derive(Debug, Error)]
pub enum BlockLogError {
    #[error("block log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("block log {path} is {len_bytes} bytes, over the cap of {BLOCK_LOG_BYTES_MAX}")]
    TooLarge { path: PathBuf, len_bytes: u64 },
    #[error(
        "logging a {record_bytes}-byte block would take the block log over {BLOCK_LOG_BYTES_MAX} bytes"
    )]
    Full { record_bytes: usize },
}

pub struct BlockLog {
    path: PathBuf,
    file: File,
    len_bytes: u64,
    /// Appends since the last sync: a sync with none costs nothing.
    dirty: bool,
    recovery: Recovery,
}

/// Why reading the log stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    ShortHeader,
    ShortPayload,
    RecordTooLarge {
        len_bytes: u32,
    },
    BadChecksum,
    /// The record's checksum held but its bytes are not a block: the decoder's reason.
    Undecodable(String),
}

/// What [`BlockLog::open`] found, as [`BlockLog::recovery`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Good records read.
    pub records: usize,
    /// Bytes cut from the end of the file: the damaged record and everything after it.
    pub truncated_bytes: u64,
    /// Why the tail was cut, if it was.
    pub damage: Option<Damage>,
}

impl BlockLog {
    /// Opens (or creates) the log and returns its good blocks in order; a damaged tail is
    /// truncated.
    pub fn open(path: impl AsRef<Path>) -> Result<(BlockLog, Vec<SealedBlock>), BlockLogError> {
        let path = path.as_ref().to_path_buf();
        let io_error = |source| BlockLogError::Io {
            path: path.clone(),
            source,
        };
        let _ = fs::remove_file(temporary_path(&path));
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_error)?;
        let file_bytes = file.metadata().map_err(io_error)?.len();
        if file_bytes > BLOCK_LOG_BYTES_MAX {
            return Err(BlockLogError::TooLarge {
                path,
                len_bytes: file_bytes,
            });
        }
        let mut bytes = Vec::with_capacity(file_bytes as usize);
        file.read_to_end(&mut bytes).map_err(io_error)?;
        let (blocks, good, damage) = parse(&bytes);
        let recovery = Recovery {
            records: blocks.len(),
            truncated_bytes: file_bytes - good as u64,
            damage,
        };
        if recovery.truncated_bytes > 0 {
            tracing::warn!(path = %path.display(), kept = blocks.len(), truncated_bytes = recovery.truncated_bytes, damage = ?recovery.damage, "block log had a damaged tail");
            file.set_len(good as u64).map_err(io_error)?;
            file.sync_all().map_err(io_error)?;
        }
        let log = BlockLog {
            path,
            file,
            len_bytes: good as u64,
            dirty: false,
            recovery,
        };
        Ok((log, blocks))
    }

    /// What [`BlockLog::open`] kept and cut.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Appends one block; durable after [`BlockLog::sync`].
    pub fn append(&mut self, block: &SealedBlock) -> Result<(), BlockLogError> {
        let record = record_of(&block.bytes);
        if self.len_bytes + record.len() as u64 > BLOCK_LOG_BYTES_MAX {
            return Err(BlockLogError::Full {
                record_bytes: record.len(),
            });
        }
        if let Err(source) = self.file.write_all(&record) {
            // Cut a partial record so later appends stay readable.
            let _ = self.file.set_len(self.len_bytes);
            return Err(self.io_error(source));
        }
        self.len_bytes += record.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Makes the appended blocks durable; free when nothing was appended since the last sync
    /// (the driver calls it at every `Persist`, several times a height).
    pub fn sync(&mut self) -> Result<(), BlockLogError> {
        if !self.dirty {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(|source| self.io_error(source))?;
        self.dirty = false;
        Ok(())
    }

    /// Replaces the log with `keep` (the blocks of the new height and above). Not atomic and
    /// not synced here: a crash in between loses at most blocks of heights not yet decided,
    /// and blocks below the next height are ignored on open anyway. What is kept is synced at
    /// the next `Persist`, with everything else. (Rewriting through a synced temporary file
    /// cost two fsyncs a height and a third of the empty heights per second.)
    pub fn reset<'a>(
        &mut self,
        keep: impl IntoIterator<Item = &'a SealedBlock>,
    ) -> Result<(), BlockLogError> {
        self.file
            .set_len(0)
            .map_err(|source| self.io_error(source))?;
        self.len_bytes = 0;
        self.dirty = false;
        for block in keep {
            self.append(block)?;
        }
        Ok(())
    }

    fn io_error(&self, source: io::Error) -> BlockLogError {
        BlockLogError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

fn record_of(block: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(HEADER_BYTES + block.len());
    record.extend_from_slice(&(block.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(block).to_le_bytes());
    record.extend_from_slice(block);
    record
}

/// The blocks of the good prefix of `bytes`, that prefix's length, and what ended it early.
fn parse(bytes: &[u8]) -> (Vec<SealedBlock>, usize, Option<Damage>) {
    let mut blocks = Vec::new();
    let mut at = 0;
    let damage = loop {
        let remaining = bytes.len() - at;
        if remaining == 0 {
            break None;
        }
        if remaining < HEADER_BYTES {
            break Some(Damage::ShortHeader);
        }
        let len_bytes = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let len = len_bytes as usize;
        if len > BLOCK_BYTES_MAX {
            break Some(Damage::RecordTooLarge { len_bytes });
        }
        if remaining - HEADER_BYTES < len {
            break Some(Damage::ShortPayload);
        }
        let payload = &bytes[at + HEADER_BYTES..at + HEADER_BYTES + len];
        if crc32fast::hash(payload) != crc {
            break Some(Damage::BadChecksum);
        }
        match SealedBlock::decode(Arc::from(payload)) {
            Ok(block) => blocks.push(block),
            Err(error) => break Some(Damage::Undecodable(error.to_string())),
        }
        at += HEADER_BYTES + len;
    };
    (blocks, at, damage)
}

#[cfg(test)]
mod tests {
    use weft_consensus::{Height, ValidatorId};
    use weft_execution::{ChainId, MemoryState, StateRoot, propose};

    use super::*;
    use crate::block::{Block, Body, Header};

    /// An empty block at `height`: enough to be told apart and to decode.
    fn block(height: u64) -> SealedBlock {
        let proposal = propose(&MemoryState::new(), &[]).unwrap();
        let header = Header {
            chain_id: ChainId::new("weft-test").unwrap(),
            height: Height(height),
            time_ms: 1_000 + height,
            prev_hash: [1; 32],
            proposer: ValidatorId([2; 32]),
            tx_root: [0; 32],
            dag_root: [0; 32],
            state_root: StateRoot([9; 32]),
            last_commit_hash: [0; 32],
            validators_hash: [8; 32],
            evidence_hash: [0; 32],
        };
        let body = Body {
            txs: Vec::new(),
            access: proposal.access,
            dag: proposal.dag,
            last_commit: None,
            evidence: Vec::new(),
        };
        SealedBlock::new(Block::seal(header, body))
    }

    #[test]
    fn blocks_survive_a_reopen_and_a_damaged_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cs.wal.blocks");
        let (mut log, blocks) = BlockLog::open(&path).unwrap();
        assert!(blocks.is_empty());
        let (a, b) = (block(5), block(6));
        log.append(&a).unwrap();
        log.append(&b).unwrap();
        log.sync().unwrap();
        drop(log);
        let (_, blocks) = BlockLog::open(&path).unwrap();
        let hashes: Vec<_> = blocks.iter().map(|b| b.hash).collect();
        assert_eq!(hashes, vec![a.hash, b.hash]);

        // A torn last record, then a flipped byte in the first: each cuts the log there.
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (_, blocks) = BlockLog::open(&path).unwrap();
        assert_eq!(blocks.len(), 1);
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER_BYTES + 2] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let (mut log, blocks) = BlockLog::open(&path).unwrap();
        assert!(blocks.is_empty());
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        log.append(&a).unwrap();
        drop(log);
        assert_eq!(
            BlockLog::open(&path).unwrap().1.len(),
            1,
            "appends follow the cut"
        );
    }

    #[test]
    fn reset_keeps_only_what_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cs.wal.blocks");
        let (mut log, _) = BlockLog::open(&path).unwrap();
        let (a, b, c) = (block(1), block(2), block(3));
        for blk in [&a, &b, &c] {
            log.append(blk).unwrap();
        }
        log.reset([&c]).unwrap();
        log.append(&b).unwrap();
        drop(log);
        let hashes: Vec<_> = BlockLog::open(&path)
            .unwrap()
            .1
            .iter()
            .map(|b| b.hash)
            .collect();
        assert_eq!(hashes, vec![c.hash, b.hash]);
    }
}
