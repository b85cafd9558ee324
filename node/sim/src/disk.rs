//! A node's simulated disk: the WAL (entries and the blocks beside them) as a byte file in
//! the node's real record format ([`weft_node::records`], [`weft_node::wal`]), and the sign
//! guard's one record.
//!
//! The log keeps the bytes made durable by the last sync apart from those appended since. A
//! crash keeps the durable bytes and, of the rest, a prefix of any length: nothing (the writes
//! were lost), all of it, or a cut through a record (a torn write). With damage on, a crash may
//! also flip a byte in the durable part, which the reader must cut the log at. Reopening reads
//! the files back with the node's own reader and decoders, as a restart would.

use weft_consensus::sim::SimRng;
use weft_consensus::{LastSigned, WalEntry};
use weft_node::block::SealedBlock;
use weft_node::engine::Recovered;
use weft_node::records;
use weft_node::wal::{self, BLOCK_RECORD_BYTES_MAX, RECORD_BYTES_MAX, Record};

/// One append-only file.
#[derive(Default, Clone)]
struct Log {
    bytes: Vec<u8>,
    /// How many of `bytes` the last sync made durable.
    synced: usize,
}

impl Log {
    fn append(&mut self, payload: &[u8]) {
        self.bytes.extend_from_slice(&records::frame(payload));
    }

    fn sync(&mut self) {
        self.synced = self.bytes.len();
    }

    /// What survives a crash: the durable bytes and a prefix of the rest.
    fn crash(&mut self, rng: &mut SimRng, damage: bool) -> CrashMark {
        let unsynced = self.bytes.len() - self.synced;
        let kept = match rng.below(3) {
            0 => 0,
            1 => unsynced,
            _ => rng.range(0, unsynced as u64) as usize,
        };
        self.bytes.truncate(self.synced + kept);
        let mut mark = CrashMark {
            lost_bytes: unsynced - kept,
            damaged_at: None,
        };
        if damage && self.synced > 0 && rng.chance(250) {
            let at = rng.index(self.synced);
            self.bytes[at] ^= 0x5A;
            mark.damaged_at = Some(at);
        }
        self.synced = self.bytes.len();
        mark
    }
}

/// What a crash did to one file.
#[derive(Debug, Default, Clone, Copy)]
pub struct CrashMark {
    pub lost_bytes: usize,
    pub damaged_at: Option<usize>,
}

/// The durable files of one node.
#[derive(Default, Clone)]
pub struct Disk {
    wal: Log,
    guard: Option<LastSigned>,
}

impl Disk {
    pub fn wal_append(&mut self, entry: &WalEntry) {
        self.wal.append(&wal::encode(entry));
    }

    /// The WAL replaced, atomically and durably, by these entries and blocks.
    pub fn wal_rotate(&mut self, entries: &[WalEntry], blocks: &[SealedBlock]) {
        self.wal = Log::default();
        for entry in entries {
            self.wal.append(&wal::encode(entry));
        }
        for block in blocks {
            self.wal.append(&wal::encode_block(block));
        }
        self.wal.sync();
    }

    pub fn wal_sync(&mut self) {
        self.wal.sync();
    }

    /// Whether every WAL byte written is durable.
    pub fn wal_synced(&self) -> bool {
        self.wal.synced == self.wal.bytes.len()
    }

    pub fn log_block(&mut self, block: &SealedBlock) {
        self.wal.append(&wal::encode_block(block));
    }

    pub fn guard(&self) -> Option<LastSigned> {
        self.guard
    }

    /// The guard file replaced (temporary file, fsync, rename): durable at once.
    pub fn guard_persist(&mut self, record: LastSigned) {
        self.guard = Some(record);
    }

    /// A crash: unsynced bytes lost or torn, and with `damage`, perhaps a flipped byte.
    pub fn crash(&mut self, rng: &mut SimRng, damage: bool) -> CrashMark {
        self.wal.crash(rng, damage)
    }

    /// What a restarting node reads back, through the node's own reader and decoder.
    pub fn recover(&self) -> Recovered {
        let (records, _, _) = records::read(
            self.wal.bytes.as_slice(),
            self.wal.bytes.len() as u64,
            BLOCK_RECORD_BYTES_MAX.max(RECORD_BYTES_MAX),
            wal::decode_record,
        )
        .unwrap_or_default();
        let mut recovered = Recovered {
            last_signed: self.guard,
            ..Recovered::default()
        };
        for record in records {
            match record {
                Record::Entry(entry) => recovered.entries.push(entry),
                Record::Block(block) => recovered.blocks.push(block),
            }
        }
        recovered
    }
}
