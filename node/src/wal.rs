//! The consensus write-ahead log: the file behind `weft_consensus::wal`'s contract.
//!
//! The file is a sequence of the node's records ([`crate::records`]: `[len: u32 LE][crc32 of
//! payload: u32 LE][payload]`, read and recovered by that module), where the payload is one [`WalEntry`] in the canonical codec of `weft_execution::codec`
//! ([`encode`], [`decode`]). Signed votes, proposals and commit certificates are written with
//! the gossip wire encoding (`weft_gossip::Message`), so the WAL and the network agree on them.
//!
//! Recovery: [`Wal::open`] reads records from the start and stops at the first one that is
//! incomplete (a torn write), fails its checksum, is over [`RECORD_BYTES_MAX`], or does not
//! decode. The file is truncated there and fsynced, so a bad tail is never trusted and later
//! appends follow the last good record. Records after a corrupt one are dropped with it: a
//! record's position in the log is part of its meaning (the machine is replayed in order), so
//! a log with a hole is not a log the machine ever saw.
//!
//! Blocks: the WAL keeps proposals without their blocks, and holds the blocks beside them as
//! records of their own ([`Wal::append_block`]): the bytes of every block this node proposed
//! or found valid at the current height, so that a node that restarts after deciding (or
//! precommitting) a value still holds the block behind it (without them, a network whose nodes
//! all stopped between a decision and its commit came back with a decided value and no block
//! for it anywhere). In the same file they are durable under the same fdatasync as the
//! entries, one per `Persist`. A block record is `[TAG_BLOCK][sealed block bytes]`; blocks may
//! take at most [`BLOCKS_BYTES_MAX`] of the file, past which a block is not logged (a liveness
//! aid only), so entries always have their own room.
//!
//! Rotation: [`Wal::start_height`] writes the new height's log to `<wal>.tmp`, fsyncs it, renames
//! it over the WAL and fsyncs the directory. A crash before the rename leaves the old WAL in
//! place (the stray temporary file is removed on the next open); after it, the new one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;
use weft_consensus::codec::{put_validator_set, read_validator_set};
use weft_consensus::{
    Height, Input, Round, Timeout, TimeoutKind, TimeoutParams, Validity, ValueId, WalEntry,
};
use weft_execution::codec::{DecodeError, Reader, check_cap, put_u32, put_u64};
use weft_gossip::wire::SIGNERS_MAX;
use weft_gossip::{BLOCK_BYTES_MAX, FRAME_BYTES_MAX, Message, WireError};

use crate::block::SealedBlock;

use crate::crashpoint;
use crate::records::{self, sync_parent_dir, temporary_path};

/// Largest payload of one record. The largest entries are a StartHeight with the largest set
/// (48 bytes a validator) and a commit certificate (96 bytes a signer): under 1 MiB each.
pub const RECORD_BYTES_MAX: usize = 4 << 20;
const _: () = assert!(
    SIGNERS_MAX as usize * weft_gossip::wire::SIGNER_BYTES + (64 << 10) <= RECORD_BYTES_MAX,
    "a commit certificate of the most signers must fit one WAL record"
);
/// Most bytes of block records in the WAL: a height keeps a bounded number of blocks (the
/// core's `BLOCKS_MAX`), each at most [`BLOCK_BYTES_MAX`].
pub const BLOCKS_BYTES_MAX: u64 = 512 << 20;
const _: () = assert!(
    (BLOCK_RECORD_BYTES_MAX + records::HEADER_BYTES) as u64 <= BLOCKS_BYTES_MAX,
    "a largest block must fit the WAL's room for blocks"
);
/// Largest payload of a block record: its tag and a largest block.
pub const BLOCK_RECORD_BYTES_MAX: usize = 1 + BLOCK_BYTES_MAX;
/// Largest WAL file: the entries' room and the blocks'. The machine bounds what one height
/// keeps (future messages, rounds ahead), so a larger file is not a log this node wrote:
/// opening it is an error, not a long read.
pub const WAL_BYTES_MAX: u64 = (256 << 20) + BLOCKS_BYTES_MAX;
/// Largest record of either kind.
const ANY_RECORD_BYTES_MAX: usize = if RECORD_BYTES_MAX > BLOCK_RECORD_BYTES_MAX {
    RECORD_BYTES_MAX
} else {
    BLOCK_RECORD_BYTES_MAX
};
/// Most validators in a StartHeight entry: as many as gossip accepts signers in a certificate.
pub const VALIDATORS_MAX: u32 = SIGNERS_MAX;

const TAG_START_HEIGHT: u8 = 0;
const TAG_PROPOSAL: u8 = 1;
const TAG_PROPOSE_VALUE: u8 = 2;
const TAG_VOTE: u8 = 3;
const TAG_TIMEOUT: u8 = 4;
const TAG_COMMIT: u8 = 5;
/// A block record (not an entry): far from the entry tags, so neither is read as the other.
const TAG_BLOCK: u8 = 0xB1;

#[derive(Debug, Error)]
pub enum WalError {
    #[error("WAL {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("WAL {path} is {len_bytes} bytes, over the cap of {WAL_BYTES_MAX}")]
    TooLarge { path: PathBuf, len_bytes: u64 },
    #[error("WAL record of {len_bytes} bytes is over the cap of {RECORD_BYTES_MAX}")]
    RecordTooLarge { len_bytes: usize },
    #[error("appending {record_bytes} bytes would take the WAL over {WAL_BYTES_MAX} bytes")]
    Full { record_bytes: usize },
    #[error(
        "logging a {record_bytes}-byte block would take the WAL's blocks over {BLOCKS_BYTES_MAX} bytes"
    )]
    BlocksFull { record_bytes: usize },
    /// The entry would not read back as written (say, a certificate whose precommits are not
    /// sorted): writing it would make the next open truncate the log at it.
    #[error("WAL entry does not read back as written: {0:?}")]
    Unrepresentable(Box<WalEntry>),
    #[error("WAL {path} is unusable: an earlier write failed and could not be rolled back")]
    Poisoned { path: PathBuf },
}

pub use crate::records::{Damage, Recovery};

/// An open WAL, positioned to append after its last good record.
#[derive(Debug)]
pub struct Wal {
    path: PathBuf,
    /// Opened for appending, so a rolled-back failed write leaves the next one at the end.
    file: File,
    len_bytes: u64,
    /// The length at the last sync: what a power cut leaves (the `unsynced` crash point).
    synced_bytes: u64,
    /// Bytes of block records in the file.
    block_bytes: u64,
    /// The blocks read at open, until [`Wal::take_blocks`].
    opened_blocks: Vec<SealedBlock>,
    poisoned: bool,
}

/// One record of the WAL: an entry, or a block beside the entries.
#[derive(Clone, Debug)]
pub enum Record {
    Entry(WalEntry),
    Block(SealedBlock),
}

/// Why a record does not decode.
#[derive(Debug, Error)]
pub enum RecordError {
    #[error(transparent)]
    Entry(#[from] DecodeError),
    #[error("block record: {0}")]
    Block(#[from] crate::block::BlockDecodeError),
    #[error("block record of {len_bytes} bytes is over the cap of {BLOCK_RECORD_BYTES_MAX}")]
    BlockTooLarge { len_bytes: usize },
}

/// Decodes one record's payload: a block by its tag, else an entry.
pub fn decode_record(bytes: &[u8]) -> Result<Record, RecordError> {
    match bytes.split_first() {
        Some((&TAG_BLOCK, block)) => {
            if bytes.len() > BLOCK_RECORD_BYTES_MAX {
                return Err(RecordError::BlockTooLarge {
                    len_bytes: bytes.len(),
                });
            }
            Ok(Record::Block(SealedBlock::decode(std::sync::Arc::from(
                block,
            ))?))
        }
        _ => Ok(Record::Entry(decode(bytes)?)),
    }
}

/// The payload of a block record.
pub fn encode_block(block: &SealedBlock) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + block.bytes.len());
    out.push(TAG_BLOCK);
    out.extend_from_slice(&block.bytes);
    out
}

impl Wal {
    /// Opens (or creates) the WAL at `path`, returns its good entries in order, and truncates a
    /// damaged tail.
    pub fn open(path: impl AsRef<Path>) -> Result<(Wal, Vec<WalEntry>, Recovery), WalError> {
        let path = path.as_ref().to_path_buf();
        let io_error = |source| WalError::Io {
            path: path.clone(),
            source,
        };
        let opened = records::open_log(&path, WAL_BYTES_MAX, ANY_RECORD_BYTES_MAX, decode_record)
            .map_err(|error| match error {
            records::OpenError::Io(source) => io_error(source),
            records::OpenError::TooLarge { len_bytes } => WalError::TooLarge {
                path: path.clone(),
                len_bytes,
            },
        })?;
        let (file, items, good_bytes, recovery) =
            (opened.file, opened.items, opened.len_bytes, opened.recovery);
        let mut entries = Vec::new();
        let mut blocks = Vec::new();
        let mut block_bytes = 0;
        for item in items {
            match item {
                Record::Entry(entry) => entries.push(entry),
                Record::Block(block) => {
                    block_bytes += (records::HEADER_BYTES + 1 + block.bytes.len()) as u64;
                    blocks.push(block);
                }
            }
        }
        let wal = Wal {
            path,
            file,
            len_bytes: good_bytes,
            synced_bytes: good_bytes,
            block_bytes,
            opened_blocks: blocks,
            poisoned: false,
        };
        Ok((wal, entries, recovery))
    }

    /// The blocks read at open (once).
    pub fn take_blocks(&mut self) -> Vec<SealedBlock> {
        std::mem::take(&mut self.opened_blocks)
    }

    /// Appends a block record. Not durable until [`Wal::sync`]. Past the blocks' room it is
    /// refused ([`WalError::BlocksFull`]) and the WAL is as it was.
    pub fn append_block(&mut self, block: &SealedBlock) -> Result<(), WalError> {
        let record = records::frame(&encode_block(block));
        if self.block_bytes + record.len() as u64 > BLOCKS_BYTES_MAX {
            return Err(WalError::BlocksFull {
                record_bytes: record.len(),
            });
        }
        self.append_record(&record)?;
        self.block_bytes += record.len() as u64;
        Ok(())
    }

    /// Appends one entry. Not durable until [`Wal::sync`].
    pub fn append(&mut self, entry: &WalEntry) -> Result<(), WalError> {
        let record = record_of(entry)?;
        let entry_bytes = self.len_bytes - self.block_bytes;
        if entry_bytes + record.len() as u64 > WAL_BYTES_MAX - BLOCKS_BYTES_MAX {
            return Err(WalError::Full {
                record_bytes: record.len(),
            });
        }
        self.append_record(&record)
    }

    fn append_record(&mut self, record: &[u8]) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned {
                path: self.path.clone(),
            });
        }
        if self.len_bytes + record.len() as u64 > WAL_BYTES_MAX {
            return Err(WalError::Full {
                record_bytes: record.len(),
            });
        }
        let reached = crashpoint::begin(crashpoint::Write::WalAppend);
        if reached.torn() {
            let _ = self.file.write_all(&record[..record.len() / 2]);
            reached.crash_torn();
        }
        if reached.unsynced() {
            // A power cut: what was appended since the last sync never reached the disk.
            let _ = self.file.set_len(self.synced_bytes);
            reached.crash_unsynced();
        }
        if let Err(source) = self.file.write_all(record) {
            // A partial record would end the log at the next open and hide every later record:
            // cut it now, or refuse further appends.
            if self.file.set_len(self.len_bytes).is_err() {
                self.poisoned = true;
            }
            return Err(self.io_error(source));
        }
        self.len_bytes += record.len() as u64;
        reached.end();
        Ok(())
    }

    /// Makes every appended record durable (fdatasync).
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.file
            .sync_data()
            .map_err(|source| self.io_error(source))?;
        self.synced_bytes = self.len_bytes;
        Ok(())
    }

    pub fn append_sync(&mut self, entry: &WalEntry) -> Result<(), WalError> {
        self.append(entry)?;
        self.sync()
    }

    /// Replaces the log, atomically, with `entries`: a StartHeight, then the kept entries of
    /// that height and above, in their original order.
    pub fn start_height(&mut self, entries: &[WalEntry]) -> Result<(), WalError> {
        self.start_height_with(entries, &[])
    }

    /// [`Wal::start_height`], with the blocks still wanted after the entries (as many as fit
    /// the blocks' room; the rest are not kept).
    pub fn start_height_with(
        &mut self,
        entries: &[WalEntry],
        blocks: &[SealedBlock],
    ) -> Result<(), WalError> {
        let height = match entries.first() {
            Some(WalEntry(Input::StartHeight { height, .. })) => *height,
            other => panic!("a new WAL starts with a StartHeight, not {other:?}"),
        };
        for entry in &entries[1..] {
            assert!(
                entry.height().is_some_and(|h| h >= height),
                "a new WAL at {height:?} keeps only entries of that height and above: {entry:?}"
            );
        }
        let mut bytes = Vec::new();
        for entry in entries {
            bytes.extend_from_slice(&record_of(entry)?);
            if bytes.len() as u64 > WAL_BYTES_MAX - BLOCKS_BYTES_MAX {
                return Err(WalError::Full {
                    record_bytes: bytes.len(),
                });
            }
        }
        let mut block_bytes = 0u64;
        for block in blocks {
            let record = records::frame(&encode_block(block));
            if block_bytes + record.len() as u64 > BLOCKS_BYTES_MAX {
                break;
            }
            block_bytes += record.len() as u64;
            bytes.extend_from_slice(&record);
        }
        let temporary = temporary_path(&self.path);
        let file = write_temporary(&temporary, &bytes).map_err(|source| self.io_error(source))?;
        fs::rename(&temporary, &self.path).map_err(|source| self.io_error(source))?;
        sync_parent_dir(&self.path).map_err(|source| self.io_error(source))?;
        // The handle follows the renamed file, which is now the WAL.
        self.file = file;
        self.len_bytes = bytes.len() as u64;
        self.synced_bytes = self.len_bytes;
        self.block_bytes = block_bytes;
        self.poisoned = false;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of good records in the file.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    fn io_error(&self, source: io::Error) -> WalError {
        WalError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// The framed record of an entry, checked to read back as the same entry.
fn record_of(entry: &WalEntry) -> Result<Vec<u8>, WalError> {
    let payload = encode(entry);
    if payload.len() > RECORD_BYTES_MAX {
        return Err(WalError::RecordTooLarge {
            len_bytes: payload.len(),
        });
    }
    if decode(&payload).as_ref() != Ok(entry) {
        return Err(WalError::Unrepresentable(Box::new(entry.clone())));
    }
    Ok(records::frame(&payload))
}

fn write_temporary(path: &Path, bytes: &[u8]) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    // `append` forbids `truncate` at open; a stray file from a crash is emptied here.
    file.set_len(0)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(file)
}

/// The canonical payload of an entry.
pub fn encode(entry: &WalEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    match &entry.0 {
        Input::StartHeight {
            height,
            validators,
            params,
        } => {
            out.push(TAG_START_HEIGHT);
            put_u64(&mut out, height.0);
            put_validator_set(&mut out, validators);
            encode_params(&mut out, params);
        }
        Input::Proposal { proposal, validity } => {
            out.push(TAG_PROPOSAL);
            out.push(match validity {
                Validity::Valid => 0,
                Validity::Invalid => 1,
            });
            // The block travels apart from the WAL: the machine needs only the proposal and the
            // verdict on it.
            out.extend_from_slice(&Message::proposal_without_block(*proposal).encode());
        }
        Input::ProposeValue {
            height,
            round,
            value,
        } => {
            out.push(TAG_PROPOSE_VALUE);
            put_u64(&mut out, height.0);
            put_u32(&mut out, round.0);
            out.extend_from_slice(&value.0);
        }
        Input::Vote(vote) => {
            out.push(TAG_VOTE);
            out.extend_from_slice(&Message::Vote(*vote).encode());
        }
        Input::TimeoutElapsed(timeout) => {
            out.push(TAG_TIMEOUT);
            out.push(match timeout.kind {
                TimeoutKind::Propose => 0,
                TimeoutKind::Prevote => 1,
                TimeoutKind::Precommit => 2,
            });
            put_u64(&mut out, timeout.height.0);
            put_u32(&mut out, timeout.round.0);
        }
        Input::Commit(certificate) => {
            out.push(TAG_COMMIT);
            out.extend_from_slice(&Message::Commit(certificate.clone()).encode());
        }
    }
    out
}

/// Decodes one canonical payload: size cap first, trailing bytes rejected.
pub fn decode(bytes: &[u8]) -> Result<WalEntry, DecodeError> {
    check_cap(bytes, RECORD_BYTES_MAX)?;
    let mut reader = Reader::new(bytes);
    let input = match reader.u8("WAL entry kind")? {
        TAG_START_HEIGHT => Input::StartHeight {
            height: Height(reader.u64("height")?),
            validators: read_validator_set(&mut reader, VALIDATORS_MAX)?,
            params: decode_params(&mut reader)?,
        },
        TAG_PROPOSAL => {
            let validity = match reader.u8("validity")? {
                0 => Validity::Valid,
                1 => Validity::Invalid,
                tag => return Err(unknown("validity", tag)),
            };
            match decode_message(&mut reader)? {
                Message::Proposal { proposal, block } if block.is_empty() => {
                    Input::Proposal { proposal, validity }
                }
                _ => return Err(wrong_message("proposal")),
            }
        }
        TAG_PROPOSE_VALUE => Input::ProposeValue {
            height: Height(reader.u64("height")?),
            round: Round(reader.u32("round")?),
            value: ValueId(reader.array("value")?),
        },
        TAG_VOTE => match decode_message(&mut reader)? {
            Message::Vote(vote) => Input::Vote(vote),
            _ => return Err(wrong_message("vote")),
        },
        TAG_TIMEOUT => Input::TimeoutElapsed(decode_timeout(&mut reader)?),
        TAG_COMMIT => match decode_message(&mut reader)? {
            Message::Commit(certificate) => Input::Commit(certificate),
            _ => return Err(wrong_message("commit certificate")),
        },
        tag => return Err(unknown("WAL entry kind", tag)),
    };
    reader.finish()?;
    Ok(WalEntry(input))
}

fn encode_params(out: &mut Vec<u8>, params: &TimeoutParams) {
    for value in [
        params.propose_ms,
        params.propose_delta_ms,
        params.prevote_ms,
        params.prevote_delta_ms,
        params.precommit_ms,
        params.precommit_delta_ms,
    ] {
        put_u64(out, value);
    }
}

fn decode_params(reader: &mut Reader<'_>) -> Result<TimeoutParams, DecodeError> {
    Ok(TimeoutParams {
        propose_ms: reader.u64("propose_ms")?,
        propose_delta_ms: reader.u64("propose_delta_ms")?,
        prevote_ms: reader.u64("prevote_ms")?,
        prevote_delta_ms: reader.u64("prevote_delta_ms")?,
        precommit_ms: reader.u64("precommit_ms")?,
        precommit_delta_ms: reader.u64("precommit_delta_ms")?,
    })
}

fn decode_timeout(reader: &mut Reader<'_>) -> Result<Timeout, DecodeError> {
    let kind = match reader.u8("timeout kind")? {
        0 => TimeoutKind::Propose,
        1 => TimeoutKind::Prevote,
        2 => TimeoutKind::Precommit,
        tag => return Err(unknown("timeout kind", tag)),
    };
    Ok(Timeout {
        kind,
        height: Height(reader.u64("height")?),
        round: Round(reader.u32("round")?),
    })
}

/// The rest of the payload as one gossip message.
fn decode_message(reader: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let bytes = reader.take(reader.remaining(), "message")?;
    Message::decode(bytes).map_err(|error| match error {
        WireError::Decode(error) => error,
        WireError::FrameTooLarge { len } => DecodeError::TooLarge {
            len,
            cap: FRAME_BYTES_MAX,
        },
    })
}

fn unknown(what: &'static str, tag: u8) -> DecodeError {
    DecodeError::UnknownTag { what, tag }
}

fn wrong_message(what: &'static str) -> DecodeError {
    DecodeError::Invalid {
        what,
        reason: "the embedded message is of another kind",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use weft_consensus::codec::VALIDATOR_BYTES;
    use weft_consensus::{
        CommitCertificate, Proposal, Signature, Signed, SignedVote, Validator, ValidatorId,
        ValidatorSet, Vote, VoteType,
    };
    use weft_execution::codec::put_varint;

    fn validator_id(byte: u8) -> ValidatorId {
        ValidatorId([byte; 32])
    }

    fn vote(vote_type: VoteType, height: u64, round: u32, value: Option<u8>, by: u8) -> SignedVote {
        Signed {
            message: Vote {
                vote_type,
                height: Height(height),
                round: Round(round),
                value: value.map(|v| ValueId([v; 32])),
                validator: validator_id(by),
            },
            signature: Signature([by ^ 0x5a; 64]),
        }
    }

    fn proposal_entry(height: u64, round: u32, validity: Validity) -> WalEntry {
        WalEntry(Input::Proposal {
            proposal: Signed {
                message: Proposal {
                    height: Height(height),
                    round: Round(round),
                    value: ValueId([7; 32]),
                    pol_round: round.checked_sub(1).map(Round),
                    proposer: validator_id(2),
                },
                signature: Signature([9; 64]),
            },
            validity,
        })
    }

    /// A set whose priorities have moved away from zero, as any set past its first height has.
    fn validator_set(powers: &[u64], heights: usize) -> ValidatorSet {
        let validators = powers.iter().enumerate().map(|(i, &power)| Validator {
            id: validator_id(i as u8 + 1),
            power,
        });
        let mut set = ValidatorSet::new(validators).unwrap();
        for _ in 0..heights {
            set = set.next_height();
        }
        set
    }

    fn start_height(height: u64) -> WalEntry {
        WalEntry(Input::StartHeight {
            height: Height(height),
            validators: validator_set(&[5, 1, 3, 7], height as usize),
            params: TimeoutParams {
                propose_ms: 1,
                propose_delta_ms: 2,
                prevote_ms: 3,
                prevote_delta_ms: 4,
                precommit_ms: 5,
                precommit_delta_ms: 6,
            },
        })
    }

    fn commit(height: u64, signers: &[u8]) -> WalEntry {
        WalEntry(Input::Commit(CommitCertificate {
            height: Height(height),
            round: Round(1),
            value: ValueId([3; 32]),
            precommits: signers
                .iter()
                .map(|&by| vote(VoteType::Precommit, height, 1, Some(3), by))
                .collect(),
        }))
    }

    /// One entry of every kind, of `height`.
    fn every_kind(height: u64) -> Vec<WalEntry> {
        vec![
            start_height(height),
            proposal_entry(height, 0, Validity::Valid),
            proposal_entry(height, 2, Validity::Invalid),
            WalEntry(Input::ProposeValue {
                height: Height(height),
                round: Round(4),
                value: ValueId([8; 32]),
            }),
            WalEntry(Input::Vote(vote(VoteType::Prevote, height, 0, None, 1))),
            WalEntry(Input::Vote(vote(
                VoteType::Precommit,
                height,
                3,
                Some(4),
                2,
            ))),
            WalEntry(Input::TimeoutElapsed(Timeout {
                kind: TimeoutKind::Precommit,
                height: Height(height),
                round: Round(5),
            })),
            commit(height, &[1, 3, 4]),
        ]
    }

    fn check_round_trip(entry: &WalEntry) {
        let bytes = encode(entry);
        assert_eq!(decode(&bytes).as_ref(), Ok(entry), "{entry:?}");
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(
            decode(&trailing).is_err(),
            "trailing byte accepted: {entry:?}"
        );
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "prefix {len} of {entry:?}");
        }
    }

    #[test]
    fn every_input_variant_round_trips() {
        let entries = every_kind(9);
        let Input::StartHeight { validators, .. } = &entries[0].0 else {
            unreachable!()
        };
        assert!(validators.priorities().iter().any(|p| *p != 0));
        for entry in &entries {
            check_round_trip(entry);
        }
        for kind in [TimeoutKind::Propose, TimeoutKind::Prevote] {
            let timeout = Timeout {
                kind,
                height: Height(1),
                round: Round(0),
            };
            check_round_trip(&WalEntry(Input::TimeoutElapsed(timeout)));
        }
    }

    #[test]
    fn hostile_payloads_are_refused() {
        let set = encode(&start_height(3));
        let mut unsorted = set.clone();
        // The second validator's id: tag, height, count, then 48 bytes per validator.
        unsorted[1 + 8 + 1 + VALIDATOR_BYTES..][..32].copy_from_slice(&[0; 32]);
        let mut zero_power = set.clone();
        zero_power[1 + 8 + 1 + 32..][..8].copy_from_slice(&[0; 8]);
        let mut wrong_message = vec![TAG_VOTE];
        wrong_message.extend_from_slice(&encode(&proposal_entry(1, 0, Validity::Valid))[2..]);
        let mut huge_count = vec![TAG_START_HEIGHT];
        put_u64(&mut huge_count, 1);
        put_varint(&mut huge_count, VALIDATORS_MAX + 1);
        let cases: [(&str, Vec<u8>); 7] = [
            ("empty", vec![]),
            ("unknown kind", vec![6]),
            ("unsorted validators", unsorted),
            ("zero power", zero_power),
            ("wrong embedded message", wrong_message),
            ("validator count over the cap", huge_count),
            ("over the record cap", vec![TAG_VOTE; RECORD_BYTES_MAX + 1]),
        ];
        for (name, bytes) in cases {
            assert!(decode(&bytes).is_err(), "{name} accepted");
        }
    }

    fn any_vote() -> impl Strategy<Value = SignedVote> {
        let value = proptest::option::of(any::<[u8; 32]>().prop_map(ValueId));
        (
            any::<bool>(),
            any::<u64>(),
            any::<u32>(),
            value,
            any::<[u8; 32]>(),
            any::<u8>(),
        )
            .prop_map(
                |(precommit, height, round, value, validator, signature)| Signed {
                    message: Vote {
                        vote_type: if precommit {
                            VoteType::Precommit
                        } else {
                            VoteType::Prevote
                        },
                        height: Height(height),
                        round: Round(round),
                        value,
                        validator: ValidatorId(validator),
                    },
                    signature: Signature([signature; 64]),
                },
            )
    }

    fn any_entry() -> impl Strategy<Value = WalEntry> {
        let proposal = (
            any::<u64>(),
            any::<u32>(),
            any::<[u8; 32]>(),
            any::<Option<u32>>(),
        )
            .prop_flat_map(|(height, round, value, pol_round)| {
                (any::<bool>(), any::<[u8; 32]>()).prop_map(move |(valid, proposer)| {
                    WalEntry(Input::Proposal {
                        proposal: Signed {
                            message: Proposal {
                                height: Height(height),
                                round: Round(round),
                                value: ValueId(value),
                                pol_round: pol_round.map(Round),
                                proposer: ValidatorId(proposer),
                            },
                            signature: Signature([round as u8; 64]),
                        },
                        validity: if valid {
                            Validity::Valid
                        } else {
                            Validity::Invalid
                        },
                    })
                })
            });
        let timeout = (0usize..3, any::<u64>(), any::<u32>()).prop_map(|(index, height, round)| {
            let kinds = [
                TimeoutKind::Propose,
                TimeoutKind::Prevote,
                TimeoutKind::Precommit,
            ];
            WalEntry(Input::TimeoutElapsed(Timeout {
                kind: kinds[index],
                height: Height(height),
                round: Round(round),
            }))
        });
        let start = (
            proptest::collection::vec(1u64..1_000, 1..12),
            0usize..50,
            1u64..100,
        )
            .prop_map(|(powers, heights, height)| {
                WalEntry(Input::StartHeight {
                    height: Height(height),
                    validators: validator_set(&powers, heights),
                    params: TimeoutParams::default(),
                })
            });
        let certificate = (
            1u64..1_000,
            proptest::collection::btree_set(1u8..=255, 1..20),
        )
            .prop_map(|(height, signers)| commit(height, &signers.into_iter().collect::<Vec<_>>()));
        let propose_value =
            (any::<u64>(), any::<u32>(), any::<[u8; 32]>()).prop_map(|(height, round, value)| {
                WalEntry(Input::ProposeValue {
                    height: Height(height),
                    round: Round(round),
                    value: ValueId(value),
                })
            });
        prop_oneof![
            any_vote().prop_map(|vote| WalEntry(Input::Vote(vote))),
            propose_value,
            proposal,
            timeout,
            start,
            certificate,
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(entry in any_entry()) {
            let bytes = encode(&entry);
            prop_assert_eq!(decode(&bytes), Ok(entry));
        }

        /// Canonical form: a flipped byte either fails to decode or is a different entry that
        /// encodes back to exactly the flipped bytes.
        #[test]
        fn decoded_bytes_encode_back_the_same(
            entry in any_entry(),
            offset in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut bytes = encode(&entry);
            let offset = offset.index(bytes.len());
            bytes[offset] ^= flip;
            if let Ok(decoded) = decode(&bytes) {
                prop_assert_eq!(encode(&decoded), bytes);
            }
        }
    }

    fn open(path: &Path) -> (Wal, Vec<WalEntry>, Recovery) {
        Wal::open(path).unwrap()
    }

    /// A WAL holding `entries`, and the end offset of each record.
    fn written(path: &Path, entries: &[WalEntry]) -> Vec<u64> {
        let (mut wal, read, _) = open(path);
        assert!(read.is_empty());
        let mut ends = Vec::new();
        for entry in entries {
            wal.append(entry).unwrap();
            ends.push(wal.len_bytes());
        }
        wal.sync().unwrap();
        ends
    }

    #[test]
    fn append_then_reopen_returns_the_same_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let entries = every_kind(4);
        let ends = written(&path, &entries);
        let (mut wal, read, recovery) = open(&path);
        assert_eq!(read, entries);
        let clean = Recovery {
            records: entries.len(),
            truncated_bytes: 0,
            damage: None,
        };
        assert_eq!(recovery, clean);
        assert_eq!(wal.len_bytes(), *ends.last().unwrap());
        let more = WalEntry(Input::Vote(vote(VoteType::Prevote, 4, 1, Some(1), 3)));
        wal.append_sync(&more).unwrap();
        let (_, read, _) = open(&path);
        assert_eq!(read.last(), Some(&more));
        assert_eq!(read.len(), entries.len() + 1);
    }

    // Torn tails, flipped bytes and oversized lengths are the record format's, tested once in
    // `records`; what is the WAL's own is a record that holds no entry.
    #[test]
    fn a_good_checksum_over_a_bad_payload_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let ends = written(&path, &every_kind(2)[..2]);
        let mut bytes = fs::read(&path).unwrap();
        let payload = [TAG_VOTE, 0xff];
        put_u32(&mut bytes, payload.len() as u32);
        put_u32(&mut bytes, crc32fast::hash(&payload));
        bytes.extend_from_slice(&payload);
        fs::write(&path, &bytes).unwrap();
        let (_, read, recovery) = open(&path);
        assert_eq!(read.len(), 2);
        assert!(matches!(recovery.damage, Some(Damage::Undecodable(_))));
        assert_eq!(fs::metadata(&path).unwrap().len(), ends[1]);
    }

    #[test]
    fn a_wal_over_the_cap_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        File::create(&path)
            .unwrap()
            .set_len(WAL_BYTES_MAX + 1)
            .unwrap();
        assert!(matches!(
            Wal::open(&path),
            Err(WalError::TooLarge { len_bytes, .. }) if len_bytes == WAL_BYTES_MAX + 1
        ));
    }

    #[test]
    fn an_entry_that_would_not_read_back_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let (mut wal, _, _) = open(&path);
        for bad in [commit(3, &[4, 2]), commit(3, &[])] {
            assert!(matches!(
                wal.append(&bad),
                Err(WalError::Unrepresentable(_))
            ));
        }
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn start_height_keeps_only_the_given_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let old = every_kind(5);
        written(&path, &old);
        let (mut wal, _, _) = open(&path);
        let held = WalEntry(Input::Vote(vote(VoteType::Prevote, 7, 0, Some(2), 4)));
        let new = vec![start_height(6), held];
        wal.start_height(&new).unwrap();
        let extra = WalEntry(Input::Vote(vote(VoteType::Precommit, 6, 0, Some(2), 4)));
        wal.append_sync(&extra).unwrap();
        let (_, read, recovery) = open(&path);
        assert_eq!(read, [new, vec![extra]].concat());
        assert_eq!(recovery.truncated_bytes, 0);
        assert!(!temporary_path(&path).exists());
    }

    #[test]
    #[should_panic(expected = "starts with a StartHeight")]
    fn start_height_needs_a_start_height_first() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = open(&dir.path().join("wal"));
        let _ = wal.start_height(&every_kind(3)[1..]);
    }

    #[test]
    fn a_crash_before_the_rename_leaves_the_old_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let old = every_kind(5);
        written(&path, &old);
        // The crash: the next log was written, in part, and never renamed.
        let stray = temporary_path(&path);
        assert_eq!(stray, dir.path().join("wal.tmp"));
        let mut partial = encode(&start_height(6));
        partial.truncate(10);
        fs::write(&stray, &partial).unwrap();
        let (mut wal, read, recovery) = open(&path);
        assert_eq!(read, old);
        assert_eq!(recovery.truncated_bytes, 0);
        assert!(!stray.exists());
        // Rotation still works over a stray file.
        fs::write(&stray, b"junk").unwrap();
        wal.start_height(&[start_height(6)]).unwrap();
        assert_eq!(open(&path).1, vec![start_height(6)]);
    }

    /// An empty block at `height`: enough to be told apart and to decode.
    fn block(height: u64) -> SealedBlock {
        use weft_execution::{MemoryState, propose};

        use crate::block::{Block, Body, Header};

        let proposal = propose(&MemoryState::new(), &[]).unwrap();
        let header = Header::for_tests(Height(height), 1_000 + height);
        let body = Body {
            txs: Vec::new(),
            access: proposal.access,
            dag: proposal.dag,
            last_commit: None,
            evidence: Vec::new(),
        };
        SealedBlock::new(Block::seal(header, body))
    }

    fn hashes(blocks: &[SealedBlock]) -> Vec<ValueId> {
        blocks.iter().map(|b| b.hash).collect()
    }

    #[test]
    fn blocks_beside_entries_survive_a_reopen_in_their_places() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cs.wal");
        let (mut wal, _, _) = open(&path);
        let entries = every_kind(3);
        let (a, b) = (block(3), block(4));
        wal.append(&entries[0]).unwrap();
        wal.append_block(&a).unwrap();
        for entry in &entries[1..] {
            wal.append(entry).unwrap();
        }
        wal.append_block(&b).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (mut wal, read, recovery) = open(&path);
        assert_eq!(read, entries);
        assert_eq!(hashes(&wal.take_blocks()), vec![a.hash, b.hash]);
        assert_eq!(recovery.records, entries.len() + 2);
        assert!(
            wal.take_blocks().is_empty(),
            "the blocks are handed out once"
        );

        // A torn last block record is cut like any torn record; the entries stay.
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (mut wal, read, recovery) = open(&path);
        assert_eq!(read, entries);
        assert_eq!(hashes(&wal.take_blocks()), vec![a.hash]);
        assert!(recovery.damage.is_some());
    }

    #[test]
    fn a_rotation_keeps_the_blocks_it_is_given_after_the_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cs.wal");
        let (mut wal, _, _) = open(&path);
        for h in 1..=3 {
            wal.append_block(&block(h)).unwrap();
        }
        let (kept, later) = (block(5), block(6));
        wal.start_height_with(&[start_height(5)], std::slice::from_ref(&kept))
            .unwrap();
        wal.append_block(&later).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (mut wal, read, _) = open(&path);
        assert_eq!(read, vec![start_height(5)]);
        assert_eq!(hashes(&wal.take_blocks()), vec![kept.hash, later.hash]);
    }

    #[test]
    fn a_block_record_is_not_read_as_an_entry_nor_an_entry_as_a_block() {
        let a = block(7);
        match decode_record(&encode_block(&a)).unwrap() {
            Record::Block(read) => assert_eq!(read.hash, a.hash),
            Record::Entry(entry) => panic!("a block read as {entry:?}"),
        }
        for entry in every_kind(7) {
            match decode_record(&encode(&entry)).unwrap() {
                Record::Entry(read) => assert_eq!(read, entry),
                Record::Block(_) => panic!("{entry:?} read as a block"),
            }
        }
        // A block tag over bytes that are no block is damage, not an entry.
        assert!(matches!(
            decode_record(&[TAG_BLOCK, 1, 2, 3]),
            Err(RecordError::Block(_))
        ));
    }
}
