//! Access sets: which keys each tx of a block reads and writes.
//!
//! A block ships its access sets in one canonical form: a table of every key the block touches,
//! strictly ascending, and for each tx its accesses as (index into the table, mode), strictly
//! ascending by index. A key both read and written by a tx counts as a write. Every table key is
//! used by some tx. This form is compact (each key is written once per block), it gives the
//! executors dense slot numbers for free, and it has exactly one encoding.
//!
//! ```text
//! key_count varint | keys (StateKey encodings, ascending) | tx_count varint |
//! per tx: access_count varint | per access: varint (gap << 1 | mode)
//! ```
//! where `gap` is the index for the first access, and `index - previous - 1` after it.

use crate::codec::{DecodeError, Reader, bounded_capacity, check_cap, put_varint};
use crate::state::StateKey;

/// Most distinct keys one tx may touch (a work tx touches at most 9).
pub const TX_ACCESSES_MAX: usize = 32;
/// Most txs in one block.
pub const BLOCK_TXS_MAX: usize = 65_536;
/// Largest encoded block (header, txs, access sets, DAG, certificate, evidence): the one block
/// cap. Genesis refuses a `block_max_bytes` above it, block decoding refuses a block past it,
/// and the gossip frame cap is it plus a proposal's envelope.
pub const BLOCK_BYTES_MAX: usize = (8 << 20) - (64 << 10);
const _: () = assert!(
    BLOCK_BYTES_MAX >= crate::tx::TX_BYTES_MAX,
    "a block must hold a largest tx"
);
/// Largest encoded access-set section of a block.
pub const ACCESS_SETS_BYTES_MAX: usize = 8 << 20;

/// Smallest possible encoding of one state key: a tag, a length and a one-letter name. (A
/// larger figure under-reserves the key table, which then regrows from a table of tiny name
/// keys: 31 bytes allocated per input byte instead of 14.)
const STATE_KEY_BYTES_MIN: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum AccessMode {
    Read = 0,
    Write = 1,
}

/// One access: an index into the block's key table, and how the key is used.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Access {
    pub key: u32,
    pub mode: AccessMode,
}

/// The access sets of every tx in a block, in canonical form.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct AccessSets {
    keys: Vec<StateKey>,
    offsets: Vec<u32>,
    accesses: Vec<Access>,
}

impl AccessSets {
    /// Canonicalises per-tx (key, mode) lists: sorts, merges a key read and written into a
    /// write, and builds the key table. Proposers call this with what execution recorded; tests
    /// call it to build blocks that lie.
    pub fn from_per_tx(per_tx: &[Vec<(StateKey, AccessMode)>]) -> Self {
        let mut keys: Vec<StateKey> = per_tx.iter().flatten().map(|(key, _)| *key).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut offsets = Vec::with_capacity(per_tx.len() + 1);
        let mut accesses: Vec<Access> = Vec::new();
        offsets.push(0);
        let mut scratch: Vec<Access> = Vec::new();
        for tx in per_tx {
            scratch.clear();
            for (key, mode) in tx {
                let index = keys.binary_search(key).expect("every key is in the table");
                scratch.push(Access {
                    key: index as u32,
                    mode: *mode,
                });
            }
            // Sorting by (key, mode) puts a key's Write after its Read; merge them per key.
            scratch.sort_unstable();
            let start = accesses.len();
            for access in &scratch {
                let same_key = accesses.len() > start
                    && accesses.last().is_some_and(|last| last.key == access.key);
                if same_key {
                    let last = accesses.last_mut().expect("checked above");
                    last.mode = last.mode.max(access.mode);
                } else {
                    accesses.push(*access);
                }
            }
            offsets.push(accesses.len() as u32);
        }
        AccessSets {
            keys,
            offsets,
            accesses,
        }
    }

    pub fn tx_count(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// The block's key table, ascending.
    pub fn keys(&self) -> &[StateKey] {
        &self.keys
    }

    /// The accesses of tx `index`, ascending by key.
    pub fn tx(&self, index: usize) -> &[Access] {
        let start = self.offsets[index] as usize;
        let end = self.offsets[index + 1] as usize;
        &self.accesses[start..end]
    }

    /// Total accesses over all txs.
    pub fn access_count(&self) -> usize {
        self.accesses.len()
    }

    /// The (key, mode) list of tx `index`, for display and for building lies in tests.
    pub fn tx_keys(&self, index: usize) -> Vec<(StateKey, AccessMode)> {
        self.tx(index)
            .iter()
            .map(|access| (self.keys[access.key as usize], access.mode))
            .collect()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.keys.len() * 34 + self.accesses.len() * 2 + 16);
        put_varint(&mut out, self.keys.len() as u32);
        for key in &self.keys {
            key.encode_into(&mut out);
        }
        put_varint(&mut out, self.tx_count() as u32);
        for tx in 0..self.tx_count() {
            let accesses = self.tx(tx);
            put_varint(&mut out, accesses.len() as u32);
            let mut next = 0u32;
            for access in accesses {
                let gap = access.key - next;
                put_varint(&mut out, (gap << 1) | access.mode as u32);
                next = access.key + 1;
            }
        }
        out
    }

    /// Decodes and checks the canonical form. `tx_count` is the block's tx count.
    pub fn decode(bytes: &[u8], tx_count: usize) -> Result<Self, DecodeError> {
        check_cap(bytes, ACCESS_SETS_BYTES_MAX)?;
        let mut reader = Reader::new(bytes);
        let key_count = reader.varint("access key count")?;
        let mut keys =
            Vec::with_capacity(bounded_capacity(key_count, &reader, STATE_KEY_BYTES_MIN));
        for _ in 0..key_count {
            let key = StateKey::decode_from(&mut reader)?;
            if keys.last().is_some_and(|last| *last >= key) {
                return Err(invalid("key table is not strictly ascending"));
            }
            keys.push(key);
        }
        let declared_txs = reader.varint_max("access tx count", BLOCK_TXS_MAX as u32)?;
        if declared_txs as usize != tx_count {
            return Err(invalid("tx count differs from the block's"));
        }
        let (offsets, accesses) = decode_tx_accesses(&mut reader, tx_count, keys.len())?;
        reader.finish()?;
        let sets = AccessSets {
            keys,
            offsets,
            accesses,
        };
        sets.check_every_key_used()?;
        Ok(sets)
    }

    fn check_every_key_used(&self) -> Result<(), DecodeError> {
        let mut used = vec![false; self.keys.len()];
        for access in &self.accesses {
            used[access.key as usize] = true;
        }
        if used.iter().all(|u| *u) {
            Ok(())
        } else {
            Err(invalid("key table holds a key no tx uses"))
        }
    }
}

fn decode_tx_accesses(
    reader: &mut Reader<'_>,
    tx_count: usize,
    key_count: usize,
) -> Result<(Vec<u32>, Vec<Access>), DecodeError> {
    let mut offsets = Vec::with_capacity(bounded_capacity(tx_count as u32, reader, 1) + 1);
    let mut accesses = Vec::with_capacity(bounded_capacity(key_count as u32 * 2, reader, 1));
    offsets.push(0);
    for _ in 0..tx_count {
        let count = reader.varint_max("tx access count", TX_ACCESSES_MAX as u32)?;
        let mut next: u64 = 0;
        for _ in 0..count {
            let word = reader.varint("access")?;
            let index = next + u64::from(word >> 1);
            if index >= key_count as u64 {
                return Err(invalid("access names a key outside the table"));
            }
            let mode = if word & 1 == 1 {
                AccessMode::Write
            } else {
                AccessMode::Read
            };
            accesses.push(Access {
                key: index as u32,
                mode,
            });
            next = index + 1;
        }
        offsets.push(accesses.len() as u32);
    }
    Ok((offsets, accesses))
}

fn invalid(reason: &'static str) -> DecodeError {
    DecodeError::Invalid {
        what: "access sets",
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::Address;

    fn account(byte: u8) -> StateKey {
        StateKey::Account(Address([byte; 32]))
    }

    #[test]
    fn read_and_write_of_one_key_is_a_write() {
        let sets = AccessSets::from_per_tx(&[vec![
            (account(2), AccessMode::Read),
            (account(1), AccessMode::Read),
            (account(2), AccessMode::Write),
            (account(1), AccessMode::Read),
        ]]);
        assert_eq!(
            sets.tx_keys(0),
            vec![
                (account(1), AccessMode::Read),
                (account(2), AccessMode::Write)
            ]
        );
    }

    #[test]
    fn encoding_round_trips_and_checks_canonical_form() {
        let sets = AccessSets::from_per_tx(&[
            vec![
                (account(1), AccessMode::Write),
                (account(3), AccessMode::Read),
            ],
            vec![],
            vec![(account(3), AccessMode::Write)],
        ]);
        let bytes = sets.encode();
        assert_eq!(AccessSets::decode(&bytes, 3).unwrap(), sets);
        assert!(AccessSets::decode(&bytes, 2).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(AccessSets::decode(&trailing, 3).is_err());
    }
}
