//! Fuzz harnesses for every execution decoder of outside bytes: transactions, access sets, the
//! conflict DAG, state keys and values, the lattice hash, the codec's varints, and the state
//! pairs read back from a sled database.
//!
//! Each decoder is fed random bytes, structured mutations of valid encodings (bit flips, byte
//! overwrites, insertions, truncation, extension, and hostile fields spliced in: maximal and
//! non-minimal varints, counts past the caps, `u32::MAX`/`u64::MAX`), and generated valid values.
//! For every input it must
//! 1. never panic;
//! 2. allocate within a bound linear in the input (total and largest single allocation,
//!    measured by `weft_execution::probe`, which is this binary's global allocator);
//! 3. be canonical: accepted bytes re-encode to themselves, and decode(encode(x)) == x.
//!
//! Case counts are bounded for `cargo test`; `WEFT_FUZZ_CASES=<n>` sets every harness's count
//! for a long run (docs/fuzzing.md). `tests/corpus/<target>/` holds regression inputs, replayed
//! by `the_corpus_replays_cleanly`.

// A test unwraps: a panic is how it fails (production code may not; see Cargo.toml).
#![allow(clippy::unwrap_used)]

use std::fmt::Debug;
use std::path::Path;

use proptest::prelude::*;
use weft_execution::access::BLOCK_TXS_MAX;
use weft_execution::codec::{Reader, put_varint};
use weft_execution::fuzzing::{Bound, checked, config, corpus_files, mutate, mutation};
use weft_execution::probe::{self, AllocProbe};
use weft_execution::snapshot::{Manifest, decode_chunk, encode_chunk};
use weft_execution::{
    AccessMode, AccessSets, Address, ConflictDag, LtHash, MemoryState, Name, SledStorage, StateKey,
    StateValue, StateView, Transaction,
};

#[path = "it/values.rs"]
mod values;

use values::{address, forward_dag, leading_varint, name, transaction, value};

#[global_allocator]
static PROBE: AllocProbe = AllocProbe;

// ---------------------------------------------------------------------------------------------
// Allocation bounds for `fuzzing::checked`: never panics (a panic fails the case), bounded,
// canonical.

/// A transaction is at most `TX_BYTES_MAX` bytes and holds two heap values: its chain id (at
/// most 50 bytes) and its work slots (at most 8 × 8 bytes). Nothing scales with a length field.
const TX_BOUND: Bound = Bound {
    total_per_byte: 0,
    largest_per_byte: 0,
    fixed: 128,
};

/// The key table stores a 40-byte `StateKey` per key, and the smallest key (a one-letter name)
/// is 3 bytes: the table is reserved once from the count, capped at one key per 3 remaining
/// bytes, and never regrows (13⅓ bytes per byte). Accesses are 8 bytes per 1-byte access,
/// reserved for twice the key count and grown by doubling past it (at most ×4: 32 per byte);
/// offsets 4 bytes per 1-byte tx entry, reserved once; the used-key marks 1 byte per key. The
/// sum, over disjoint stretches of the input, stays under 64 per byte; the largest single
/// allocation is the access list's last buffer, at most 16 per byte. (Before the fix this
/// harness prompted, the table was reserved for one key per 9 bytes and regrew twice from a
/// table of name keys.)
const ACCESS_BOUND: Bound = Bound {
    total_per_byte: 64,
    largest_per_byte: 16,
    fixed: 1024,
};

/// Offsets are reserved once (4 bytes per 1-byte tx entry, the reservation capped by the bytes
/// that remain); predecessors are 4 bytes per 1-byte varint, grown by doubling (×4): ≈ 20 per
/// byte.
const DAG_BOUND: Bound = Bound {
    total_per_byte: 24,
    largest_per_byte: 8,
    fixed: 256,
};

/// State keys and values are `Copy` and live on the stack: decoding allocates nothing.
const NOTHING: Bound = Bound {
    total_per_byte: 0,
    largest_per_byte: 0,
    fixed: 0,
};

/// The lattice hash is one 2048-byte box, made only when the input is exactly 2048 bytes.
const LATTICE_BOUND: Bound = Bound {
    total_per_byte: 1,
    largest_per_byte: 1,
    fixed: 0,
};

/// Every target of this binary, by its corpus directory name.
/// A manifest holds boxed 2 KiB lattice hashes, one per 2 KiB of input.
const MANIFEST_BOUND: Bound = Bound {
    total_per_byte: 3,
    largest_per_byte: 1,
    fixed: 4096,
};

/// A chunk's pairs: capacity bounded by the bytes left (a pair is at least 3 bytes).
const CHUNK_BOUND: Bound = Bound {
    total_per_byte: 64,
    largest_per_byte: 40,
    fixed: 1024,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Tx,
    Access,
    Dag,
    StateKey,
    StateValue,
    Lattice,
    Varint,
    Manifest,
    Chunk,
}

const TARGETS: [Target; 9] = [
    Target::Tx,
    Target::Access,
    Target::Dag,
    Target::StateKey,
    Target::StateValue,
    Target::Lattice,
    Target::Varint,
    Target::Manifest,
    Target::Chunk,
];

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Tx => "tx",
            Target::Access => "access",
            Target::Dag => "dag",
            Target::StateKey => "state_key",
            Target::StateValue => "state_value",
            Target::Lattice => "lattice",
            Target::Varint => "varint",
            Target::Manifest => "manifest",
            Target::Chunk => "chunk",
        }
    }

    /// Runs every check on `bytes`; `txs` is the block's tx count where the decoder takes one.
    /// Returns whether the bytes decoded.
    fn run(self, bytes: &[u8], txs: usize) -> bool {
        let name = self.name();
        match self {
            Target::Tx => checked(
                name,
                bytes,
                TX_BOUND,
                Transaction::decode,
                Transaction::encode,
            )
            .is_some(),
            Target::Access => checked(
                name,
                bytes,
                ACCESS_BOUND,
                |b| AccessSets::decode(b, txs),
                AccessSets::encode,
            )
            .inspect(|sets| {
                assert_eq!(sets.tx_count(), txs);
                // A decoded table is usable: every access names a key in it.
                for tx in 0..sets.tx_count() {
                    assert!(sets.tx_keys(tx).len() <= sets.keys().len());
                }
            })
            .is_some(),
            Target::Dag => checked(
                name,
                bytes,
                DAG_BOUND,
                |b| ConflictDag::decode(b, txs),
                ConflictDag::encode,
            )
            .inspect(|dag| {
                // A decoded DAG is structurally valid, so its analyses are total.
                assert_eq!(dag.validate(), Ok(()));
                assert!(dag.stats().critical_path as usize <= dag.tx_count());
                let (offsets, successors) = dag.successors();
                assert_eq!(successors.len(), dag.edge_count());
                assert_eq!(offsets.len(), dag.tx_count() + 1);
            })
            .is_some(),
            Target::StateKey => {
                checked(name, bytes, NOTHING, StateKey::decode, StateKey::encode).is_some()
            }
            Target::StateValue => {
                checked(name, bytes, NOTHING, StateValue::decode, StateValue::encode).is_some()
            }
            Target::Lattice => checked(
                name,
                bytes,
                LATTICE_BOUND,
                |b| LtHash::from_bytes(b).ok_or(()),
                LtHash::to_bytes,
            )
            .is_some(),
            Target::Varint => varint_prefix(bytes),
            Target::Manifest => checked(
                name,
                bytes,
                MANIFEST_BOUND,
                Manifest::decode,
                Manifest::encode,
            )
            .inspect(|manifest| {
                // A decoded manifest's sum and checks are total.
                let _ = manifest.check(manifest.height, manifest.total().root());
                assert!(!manifest.chunks.is_empty());
            })
            .is_some(),
            Target::Chunk => checked(name, bytes, CHUNK_BOUND, decode_chunk, |pairs| {
                encode_chunk(pairs)
            })
            .inspect(|pairs| {
                // Decoded pairs are strictly ascending in their encoding and fit their keys.
                assert!(pairs.windows(2).all(|w| w[0].0.encode() < w[1].0.encode()));
                assert!(pairs.iter().all(|(key, value)| value.fits(key)));
            })
            .is_some(),
        }
    }

    /// Tx counts worth trying on bytes of unknown origin: small ones, the cap, and the count
    /// the bytes announce where that is their first field.
    fn tx_counts(self, bytes: &[u8]) -> Vec<usize> {
        match self {
            Target::Access | Target::Dag => {
                let mut counts = vec![0, 1, 2, 3, BLOCK_TXS_MAX];
                if let Some(announced) = leading_varint(bytes) {
                    counts.push(announced as usize);
                }
                counts
            }
            _ => vec![0],
        }
    }
}

/// The codec primitives: a varint read from the front of `bytes` is minimal (re-encoding gives
/// back exactly the bytes read), reads nothing past its fifth byte, and allocates nothing.
/// Returns whether a varint was read.
fn varint_prefix(bytes: &[u8]) -> bool {
    let (read, footprint) = probe::measure(|| {
        let mut reader = Reader::new(bytes);
        let value = reader.varint("fuzz");
        (value, bytes.len() - reader.remaining())
    });
    assert_eq!(footprint.total_bytes, 0, "a varint read allocated");
    let (value, consumed) = read;
    assert!(consumed <= 5, "a varint read {consumed} bytes");
    let Ok(value) = value else { return false };
    let mut again = Vec::new();
    put_varint(&mut again, value);
    assert_eq!(again, &bytes[..consumed], "varint {value} is not minimal");
    true
}

fn varint(value: u32) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, value);
    out
}

// ---------------------------------------------------------------------------------------------
// Mutations of valid encodings.

/// Fields a hostile peer would write into a length or count: maximal and past-the-cap varints,
/// non-minimal and unterminated ones, and the widest fixed integers.
fn hostile_fields() -> Vec<Vec<u8>> {
    vec![
        varint(u32::MAX),
        varint(BLOCK_TXS_MAX as u32),
        varint(BLOCK_TXS_MAX as u32 + 1),
        varint(1 << 21),
        vec![0x80, 0x00],
        vec![0xff, 0xff, 0xff, 0xff, 0x1f],
        vec![0x80, 0x80, 0x80, 0x80, 0x80],
        u32::MAX.to_le_bytes().to_vec(),
        u64::MAX.to_le_bytes().to_vec(),
        vec![0],
        vec![0xff],
    ]
}

// ---------------------------------------------------------------------------------------------
// Strategies for valid values.

/// Keys from a small space, so that txs share them, and from the whole space.
fn key() -> impl Strategy<Value = StateKey> {
    prop_oneof![
        (0u8..6).prop_map(|b| StateKey::Account(Address([b; 32]))),
        (0u32..6).prop_map(|i| StateKey::Name(Name::new(&format!("n{i}")).expect("valid"))),
        (b'a'..=b'z')
            .prop_map(|c| StateKey::Name(Name::new(&char::from(c).to_string()).expect("valid"))),
        (0u64..10).prop_map(StateKey::WorkSlot),
        any::<u64>().prop_map(StateKey::WorkSlot),
        name().prop_map(StateKey::Name),
        address().prop_map(StateKey::Account),
    ]
}

/// Access sets of up to 300 txs, so the decoders' vectors grow past their first buffers.
fn access_sets() -> impl Strategy<Value = AccessSets> {
    let per_tx = || {
        let mode = prop_oneof![Just(AccessMode::Read), Just(AccessMode::Write)];
        prop::collection::vec((key(), mode), 0..10)
    };
    prop_oneof![
        prop::collection::vec(per_tx(), 0..24),
        prop::collection::vec(per_tx(), 100..300),
    ]
    .prop_map(|per_tx: Vec<Vec<(StateKey, AccessMode)>>| AccessSets::from_per_tx(&per_tx))
}

/// Valid DAGs: the canonical DAG of random access sets, or random forward edges.
fn dag() -> impl Strategy<Value = ConflictDag> {
    let random = forward_dag(0..8, 0..200);
    prop_oneof![
        access_sets().prop_map(|sets| ConflictDag::derive(&sets)),
        random
    ]
}

fn lattice() -> impl Strategy<Value = LtHash> {
    prop::collection::vec((any::<[u8; 8]>(), any::<[u8; 8]>()), 0..4).prop_map(|pairs| {
        let mut hash = LtHash::identity();
        for (key, value) in pairs {
            hash.add_pair(&key, &value);
        }
        hash
    })
}

/// A value of the type `key` demands.
fn fitting_value(key: &StateKey, n: u64) -> StateValue {
    match key {
        StateKey::Account(_) => StateValue::Account(weft_execution::Account {
            balance: n,
            nonce: n / 3,
        }),
        StateKey::Name(_) => StateValue::NameOwner(Address([n as u8; 32])),
        StateKey::WorkSlot(_) => StateValue::WorkDigest([n as u8; 32]),
        StateKey::Validator(_) => StateValue::ValidatorPower(n),
        StateKey::ValidatorTotals => StateValue::ValidatorTotals {
            total: n,
            count: n as u32,
        },
        StateKey::ValidatorAuthority => StateValue::Authority(Address([n as u8; 32])),
    }
}

/// A valid encoding of some target, with the tx count it needs.
fn encoding() -> impl Strategy<Value = (Target, Vec<u8>, usize)> {
    prop_oneof![
        transaction().prop_map(|tx| (Target::Tx, tx.encode(), 0)),
        access_sets().prop_map(|sets| (Target::Access, sets.encode(), sets.tx_count())),
        dag().prop_map(|dag| (Target::Dag, dag.encode(), dag.tx_count())),
        key().prop_map(|key| (Target::StateKey, key.encode(), 0)),
        value().prop_map(|value| (Target::StateValue, value.encode(), 0)),
        lattice().prop_map(|hash| (Target::Lattice, hash.to_bytes(), 0)),
        any::<u32>().prop_map(|value| (Target::Varint, varint(value), 0)),
        proptest::collection::vec(lattice(), 1..4).prop_map(|chunks| {
            let manifest = Manifest { height: 9, chunks };
            (Target::Manifest, manifest.encode(), 0)
        }),
        proptest::collection::btree_map(key(), any::<u64>(), 1..16).prop_map(|pairs| {
            let mut pairs: Vec<(StateKey, StateValue)> = pairs
                .into_iter()
                .map(|(key, n)| (key, fitting_value(&key, n)))
                .collect();
            pairs.sort_by_key(|(key, _)| key.encode());
            (Target::Chunk, encode_chunk(&pairs), 0)
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// The harnesses.

proptest! {
    #![proptest_config(config(1024, 1))]

    #[test]
    fn random_bytes_never_panic_stay_bounded_and_are_canonical(
        bytes in prop::collection::vec(any::<u8>(), 0..700),
    ) {
        for target in TARGETS {
            for txs in target.tx_counts(&bytes) {
                target.run(&bytes, txs);
            }
        }
    }

    #[test]
    fn mutated_encodings_never_panic_stay_bounded_and_are_canonical(
        (target, bytes, txs) in encoding(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        prop_assert!(target.run(&bytes, txs), "the unmutated {:?} encoding decodes", target);
        let mutated = mutate(bytes, &mutations, &hostile_fields());
        for txs in [txs, txs + 1, txs.saturating_sub(1)] {
            target.run(&mutated, txs);
        }
    }
}

proptest! {
    #![proptest_config(config(256, 1))]

    #[test]
    fn generated_values_round_trip_within_bounds(
        tx in transaction(),
        sets in access_sets(),
        dag in dag(),
        key in key(),
        value in value(),
        hash in lattice(),
    ) {
        let decoded = checked("tx", &tx.encode(), TX_BOUND, Transaction::decode, Transaction::encode);
        prop_assert_eq!(decoded, Some(tx));
        let bytes = sets.encode();
        let decoded = checked("access", &bytes, ACCESS_BOUND, |b| AccessSets::decode(b, sets.tx_count()), AccessSets::encode);
        prop_assert_eq!(decoded, Some(sets));
        let bytes = dag.encode();
        let decoded = checked("dag", &bytes, DAG_BOUND, |b| ConflictDag::decode(b, dag.tx_count()), ConflictDag::encode);
        prop_assert_eq!(decoded, Some(dag));
        let decoded = checked("state_key", &key.encode(), NOTHING, StateKey::decode, StateKey::encode);
        prop_assert_eq!(decoded, Some(key));
        let decoded = checked("state_value", &value.encode(), NOTHING, StateValue::decode, StateValue::encode);
        prop_assert_eq!(decoded, Some(value));
        let decoded = checked("lattice", &hash.to_bytes(), LATTICE_BOUND, |b| LtHash::from_bytes(b).ok_or(()), LtHash::to_bytes);
        prop_assert_eq!(decoded, Some(hash));
    }

    /// The codec's primitives on a whole script of reads: no read panics or allocates, a failed
    /// read consumes nothing it should not, and every varint value round-trips.
    #[test]
    fn codec_primitives_never_panic_or_allocate(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        reads in prop::collection::vec(0u8..8, 1..16),
        value in any::<u32>(),
    ) {
        let ((), footprint) = probe::measure(|| {
            let mut reader = Reader::new(&bytes);
            for read in &reads {
                let before = reader.remaining();
                let ok = match read {
                    0 => reader.u8("u8").is_ok(),
                    1 => reader.u32("u32").is_ok(),
                    2 => reader.u64("u64").is_ok(),
                    3 => reader.varint("varint").is_ok(),
                    4 => reader.varint_max("varint", 300).is_ok_and(|v| v <= 300),
                    5 => reader.take(7, "take").is_ok(),
                    6 => reader.array::<32>("array").is_ok(),
                    _ => weft_execution::codec::bounded_capacity(u32::MAX, &reader, 9) <= before / 9,
                };
                assert!(reader.remaining() <= before);
                if !ok && *read != 3 && *read != 4 {
                    // Fixed-width reads fail only at the end and then take nothing.
                    assert_eq!(reader.remaining(), before);
                }
            }
        });
        prop_assert_eq!(footprint.total_bytes, 0);
        let bytes = varint(value);
        let mut reader = Reader::new(&bytes);
        prop_assert_eq!(reader.varint("value"), Ok(value));
        prop_assert!(reader.finish().is_ok());
    }
}

// ---------------------------------------------------------------------------------------------
// The storage pair decoder, reached through a sled database whose bytes we write by hand.

/// Writes raw records into the tree `SledStorage` uses, the way a damaged disk would hold
/// them: `pairs` under the state prefix, and the two metadata records.
fn write_raw_db(path: &Path, pairs: &[(Vec<u8>, Vec<u8>)], height: &[u8], lattice: &[u8]) {
    let db = sled::Config::new().path(path).open().expect("sled opens");
    let tree = db.open_tree("state").expect("tree opens");
    for (key, value) in pairs {
        let mut stored = vec![1u8];
        stored.extend_from_slice(key);
        tree.insert(stored, value.as_slice()).expect("insert");
    }
    tree.insert([0, b'h'], height).expect("insert height");
    tree.insert([0, b'l'], lattice).expect("insert lattice");
    db.flush().expect("flush");
}

/// Stored bytes: a valid encoding kept (most often), mutated, or replaced by random bytes.
fn stored(valid: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    valid.prop_flat_map(|bytes| {
        let kept = bytes.clone();
        prop_oneof![
            3 => Just(kept),
            1 => prop::collection::vec(mutation(), 1..3)
                .prop_map(move |mutations| mutate(bytes.clone(), &mutations, &hostile_fields())),
            1 => prop::collection::vec(any::<u8>(), 0..40),
        ]
    })
}

fn stored_pair() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (
        stored(key().prop_map(|key| key.encode())),
        stored(value().prop_map(|value| value.encode())),
    )
}

proptest! {
    // Each case writes and reopens a sled database: worth about 32 ordinary cases.
    #![proptest_config(config(24, 32))]

    #[test]
    fn damaged_state_pairs_are_corrupt_errors_never_panics(
        pairs in prop::collection::vec(stored_pair(), 0..6),
        height in prop_oneof![Just(7u64.to_le_bytes().to_vec()), prop::collection::vec(any::<u8>(), 0..12)],
        lattice_ok in any::<bool>(),
        lattice_len in 0usize..2100,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let lattice = if lattice_ok {
            LtHash::identity().to_bytes()
        } else {
            vec![0x5a; lattice_len]
        };
        write_raw_db(dir.path(), &pairs, &height, &lattice);
        let storage = match SledStorage::open(dir.path(), &MemoryState::new()) {
            Ok(storage) => storage,
            // A typed error (Corrupt, or Io) is the required outcome for damaged metadata.
            Err(_) => return Ok(()),
        };
        prop_assert_eq!(lattice.len(), 2048, "a wrong-length lattice hash was accepted");
        prop_assert_eq!(height.len(), 8, "a wrong-length height was accepted");
        let _ = storage.verify_integrity();
        if let Ok(decoded) = storage.pairs() {
            // Every pair read back is canonical: it re-encodes to the bytes on disk, and the
            // value has the type its key demands.
            prop_assert_eq!(decoded.len(), pairs.iter().map(|p| &p.0).collect::<std::collections::BTreeSet<_>>().len());
            for (key, value) in &decoded {
                prop_assert!(value.fits(key));
                let stored = pairs.iter().rev().find(|(k, _)| *k == key.encode());
                prop_assert_eq!(stored.map(|(_, v)| v.clone()), Some(value.encode()));
                prop_assert_eq!(storage.get(key), Ok(Some(*value)));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The regression corpus.

/// Replays every file under `tests/corpus/<target>/`: each must pass the same checks as a
/// proptest case. The seeds are hand-made edge cases (maximal length prefixes, counts past the
/// caps, trailing bytes, empty input); failures found by proptest are saved here too.
#[test]
fn the_corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut replayed = 0;
    for target in TARGETS {
        let dir = root.join(target.name());
        for file in corpus_files(&dir) {
            let bytes = std::fs::read(&file).expect("corpus file");
            println!("{}", file.display());
            for txs in target.tx_counts(&bytes) {
                target.run(&bytes, txs);
            }
            replayed += 1;
        }
    }
    println!("replayed {replayed} corpus files");
}

/// The probe is this binary's allocator and sees allocations: otherwise every bound above
/// would hold vacuously.
#[test]
fn the_probe_is_installed() {
    assert!(probe::installed());
    let (buffer, footprint) = probe::measure(|| Vec::<u8>::with_capacity(4096));
    assert!(footprint.largest_bytes >= 4096 && footprint.within(0, 0, 4096 + 64));
    drop(buffer);
}
