//! State snapshots: the whole state at one height, cut into chunks, and the manifest that lets a
//! joining node check every chunk on arrival.
//!
//! The state root is blake3 of a lattice hash, and a lattice hash is a sum: the state's is the
//! sum of its pairs' (ADR 0003). So the state's pairs, cut into chunks in key order, have chunk
//! lattice hashes that sum to the state's. A manifest lists each chunk's lattice hash; a node
//! that holds a verified header checks once that the manifest's hashes sum to the header's state
//! root, and then checks each chunk, from whichever peer it came, against its own entry as it
//! arrives. A lying peer is caught at its first bad chunk, without a Merkle tree and without
//! waiting for the whole state (ADR 0019).
//!
//! Chunking is deterministic: pairs in encoded-key order, a chunk closed before the pair that
//! would take it past [`SNAPSHOT_CHUNK_BYTES_TARGET`]. Two honest nodes with the same state cut
//! the same chunks and write the same manifest, so a joining node can fetch one snapshot's chunks
//! from several peers at once.

use thiserror::Error;

use crate::codec::{DecodeError, Reader, bounded_capacity, check_cap, put_u64, put_varint};
use crate::lattice::{LtHash, StateRoot};
use crate::state::{StateKey, StateValue};

/// A chunk is closed before the pair that would take it past this many bytes.
pub const SNAPSHOT_CHUNK_BYTES_TARGET: usize = 512 << 10;
/// Largest chunk a node accepts (the target, plus room for one more pair than a target-sized
/// chunk could hold, rounded up).
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 1 << 20;
/// Most chunks one snapshot may have: with the target size, states up to 1.5 GiB encoded.
pub const SNAPSHOT_CHUNKS_MAX: u32 = 3_072;
/// Bytes of one chunk's entry in a manifest: its lattice hash.
const LATTICE_BYTES: usize = 2_048;
/// Largest manifest: its header and one lattice hash per chunk.
pub const SNAPSHOT_MANIFEST_BYTES_MAX: usize = 16 + SNAPSHOT_CHUNKS_MAX as usize * LATTICE_BYTES;
/// The manifest format this build writes and reads.
pub const SNAPSHOT_FORMAT: u8 = 1;
/// Largest encoded pair (a key and a value with their framing) in a chunk.
const PAIR_BYTES_MAX: usize = 128;

const _: () = assert!(SNAPSHOT_CHUNK_BYTES_TARGET + PAIR_BYTES_MAX <= SNAPSHOT_CHUNK_BYTES_MAX);

/// One snapshot's table of contents: its height and each chunk's lattice hash, in order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Manifest {
    /// The chain height whose state (after its block) the snapshot holds.
    pub height: u64,
    pub chunks: Vec<LtHash>,
}

/// Why a manifest or a chunk is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    #[error("malformed: {0}")]
    Decode(#[from] DecodeError),
    #[error("manifest format {0} is not {SNAPSHOT_FORMAT}")]
    Format(u8),
    #[error("manifest is for height {got}, not {expected}")]
    Height { expected: u64, got: u64 },
    #[error("the manifest's chunk hashes do not sum to the state root")]
    Root,
    #[error("chunk {index} does not hash to its manifest entry")]
    ChunkHash { index: u32 },
    #[error("chunk {index} is not in the manifest")]
    NoSuchChunk { index: u32 },
    #[error("chunk keys are not strictly ascending")]
    Order,
    #[error("chunk holds a value of the wrong type for its key")]
    ValueType,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.chunks.len() * LATTICE_BYTES);
        out.push(SNAPSHOT_FORMAT);
        put_u64(&mut out, self.height);
        put_varint(&mut out, self.chunks.len() as u32);
        for chunk in &self.chunks {
            out.extend_from_slice(&chunk.to_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Manifest, SnapshotError> {
        check_cap(bytes, SNAPSHOT_MANIFEST_BYTES_MAX)?;
        let mut reader = Reader::new(bytes);
        let format = reader.u8("manifest format")?;
        if format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::Format(format));
        }
        let height = reader.u64("manifest height")?;
        let count = reader.varint_max("manifest chunks", SNAPSHOT_CHUNKS_MAX)?;
        if count == 0 {
            return Err(DecodeError::Invalid {
                what: "manifest",
                reason: "a snapshot has at least one chunk",
            }
            .into());
        }
        let mut chunks = Vec::with_capacity(bounded_capacity(count, &reader, LATTICE_BYTES));
        for _ in 0..count {
            let lanes = reader.take(LATTICE_BYTES, "chunk lattice hash")?;
            chunks.push(LtHash::from_bytes(lanes).ok_or(DecodeError::Invalid {
                what: "chunk lattice hash",
                reason: "wrong length",
            })?);
        }
        reader.finish()?;
        Ok(Manifest { height, chunks })
    }

    /// blake3 of the encoding: names one snapshot across peers.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.encode()).as_bytes()
    }

    /// The sum of the chunks' lattice hashes: the state's, if the manifest is true.
    pub fn total(&self) -> LtHash {
        let mut total = LtHash::identity();
        for chunk in &self.chunks {
            total.add(chunk);
        }
        total
    }

    /// Checks that this manifest is for `height` and that its chunks sum to `root`, the state
    /// root of a verified header of that height.
    pub fn check(&self, height: u64, root: StateRoot) -> Result<(), SnapshotError> {
        if self.height != height {
            return Err(SnapshotError::Height {
                expected: height,
                got: self.height,
            });
        }
        if self.total().root() != root {
            return Err(SnapshotError::Root);
        }
        Ok(())
    }

    /// Decodes chunk `index` and checks it against its entry: well formed, keys strictly
    /// ascending, each value of its key's type, and pairs whose lattice hash is the entry.
    pub fn check_chunk(
        &self,
        index: u32,
        bytes: &[u8],
    ) -> Result<Vec<(StateKey, StateValue)>, SnapshotError> {
        let expected = self
            .chunks
            .get(index as usize)
            .ok_or(SnapshotError::NoSuchChunk { index })?;
        let pairs = decode_chunk(bytes)?;
        if &chunk_lattice(&pairs) != expected {
            return Err(SnapshotError::ChunkHash { index });
        }
        Ok(pairs)
    }
}

/// The lattice hash of a chunk's pairs.
pub fn chunk_lattice(pairs: &[(StateKey, StateValue)]) -> LtHash {
    let mut lattice = LtHash::identity();
    for (key, value) in pairs {
        lattice.add_state(key, value);
    }
    lattice
}

/// A chunk's bytes: the pair count, then each key in its own encoding and each value with its
/// length.
pub fn encode_chunk(pairs: &[(StateKey, StateValue)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pairs.len() * 56 + 5);
    put_varint(&mut out, pairs.len() as u32);
    for (key, value) in pairs {
        put_pair(&mut out, key, value);
    }
    out
}

fn put_pair(out: &mut Vec<u8>, key: &StateKey, value: &StateValue) {
    key.encode_into(out);
    let value = value.encode();
    put_varint(out, value.len() as u32);
    out.extend_from_slice(&value);
}

/// The bytes one pair adds to a chunk.
pub fn pair_bytes(key: &StateKey, value: &StateValue) -> usize {
    let mut out = Vec::with_capacity(PAIR_BYTES_MAX);
    put_pair(&mut out, key, value);
    out.len()
}

/// Decodes a chunk: bounded by [`SNAPSHOT_CHUNK_BYTES_MAX`], keys strictly ascending in their
/// encoding (as storage orders them), each value of its key's type, nothing trailing.
pub fn decode_chunk(bytes: &[u8]) -> Result<Vec<(StateKey, StateValue)>, SnapshotError> {
    check_cap(bytes, SNAPSHOT_CHUNK_BYTES_MAX)?;
    let mut reader = Reader::new(bytes);
    let count = reader.varint_max("chunk pairs", SNAPSHOT_CHUNK_BYTES_MAX as u32)?;
    if count == 0 {
        return Err(DecodeError::Invalid {
            what: "chunk",
            reason: "a chunk holds at least one pair",
        }
        .into());
    }
    let mut pairs = Vec::with_capacity(bounded_capacity(count, &reader, 3));
    let mut previous: Option<Vec<u8>> = None;
    for _ in 0..count {
        let key = StateKey::decode_from(&mut reader)?;
        let len = reader.varint_max("state value bytes", PAIR_BYTES_MAX as u32)?;
        let value = StateValue::decode(reader.take(len as usize, "state value")?)?;
        if !value.fits(&key) {
            return Err(SnapshotError::ValueType);
        }
        let encoded = key.encode();
        if previous.as_ref().is_some_and(|p| *p >= encoded) {
            return Err(SnapshotError::Order);
        }
        previous = Some(encoded);
        pairs.push((key, value));
    }
    reader.finish()?;
    Ok(pairs)
}

/// Cuts pairs, given in encoded-key order, into chunks as they come: [`Chunker::push`] returns a
/// finished chunk whenever the next pair would take the open one past the target.
#[derive(Default)]
pub struct Chunker {
    pairs: Vec<(StateKey, StateValue)>,
    bytes: usize,
}

/// A finished chunk: its bytes and its lattice hash.
pub struct Chunk {
    pub bytes: Vec<u8>,
    pub lattice: LtHash,
}

impl Chunker {
    pub fn push(&mut self, key: StateKey, value: StateValue) -> Option<Chunk> {
        let size = pair_bytes(&key, &value);
        let full = !self.pairs.is_empty() && self.bytes + size > SNAPSHOT_CHUNK_BYTES_TARGET;
        let done = if full { self.take() } else { None };
        self.bytes += size;
        self.pairs.push((key, value));
        done
    }

    /// The last, partly filled chunk (none if no pair is left).
    pub fn finish(mut self) -> Option<Chunk> {
        self.take()
    }

    fn take(&mut self) -> Option<Chunk> {
        if self.pairs.is_empty() {
            return None;
        }
        let pairs = std::mem::take(&mut self.pairs);
        self.bytes = 0;
        Some(Chunk {
            bytes: encode_chunk(&pairs),
            lattice: chunk_lattice(&pairs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Account;
    use crate::tx::Address;

    fn account(i: u32) -> (StateKey, StateValue) {
        let mut address = [0u8; 32];
        address[..4].copy_from_slice(&i.to_be_bytes());
        (
            StateKey::Account(Address(address)),
            StateValue::Account(Account {
                balance: u64::from(i),
                nonce: 0,
            }),
        )
    }

    #[test]
    fn chunks_sum_to_the_whole_and_each_checks_against_its_entry() {
        let mut chunker = Chunker::default();
        let mut chunks = Vec::new();
        let mut whole = LtHash::identity();
        for i in 0..30_000 {
            let (key, value) = account(i);
            whole.add_state(&key, &value);
            chunks.extend(chunker.push(key, value));
        }
        chunks.extend(chunker.finish());
        assert!(chunks.len() > 1);
        let manifest = Manifest {
            height: 7,
            chunks: chunks.iter().map(|c| c.lattice.clone()).collect(),
        };
        let decoded = Manifest::decode(&manifest.encode()).unwrap();
        assert_eq!(decoded, manifest);
        decoded.check(7, whole.root()).unwrap();
        assert_eq!(
            decoded.check(8, whole.root()),
            Err(SnapshotError::Height {
                expected: 8,
                got: 7
            })
        );
        for (i, chunk) in chunks.iter().enumerate() {
            assert!(chunk.bytes.len() <= SNAPSHOT_CHUNK_BYTES_MAX);
            decoded.check_chunk(i as u32, &chunk.bytes).unwrap();
        }
        assert_eq!(
            decoded.check_chunk(0, &chunks[1].bytes),
            Err(SnapshotError::ChunkHash { index: 0 })
        );
    }

    #[test]
    fn out_of_order_or_mistyped_pairs_are_refused() {
        let (a, b) = (account(1), account(2));
        let swapped = encode_chunk(&[b, a]);
        assert_eq!(decode_chunk(&swapped), Err(SnapshotError::Order));
        let twice = encode_chunk(&[a, a]);
        assert_eq!(decode_chunk(&twice), Err(SnapshotError::Order));
        let mistyped = encode_chunk(&[(a.0, StateValue::ValidatorPower(1))]);
        assert_eq!(decode_chunk(&mistyped), Err(SnapshotError::ValueType));
        let mut trailing = encode_chunk(&[a, b]);
        trailing.push(0);
        assert!(matches!(
            decode_chunk(&trailing),
            Err(SnapshotError::Decode(DecodeError::TrailingBytes { .. }))
        ));
    }
}
