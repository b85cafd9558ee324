//! What every crate's fuzz binary (`tests/fuzz.rs`) shares: case counts from
//! `WEFT_FUZZ_CASES`, a replayable seed from `WEFT_FUZZ_SEED`, LEB128 fields, and byte-level
//! mutations of valid encodings with the crate's own hostile fields spliced in, the checked
//! decode (bounded allocation, canonical re-encoding), and the regression corpus's file list.
//!
//! Behind the `fuzzing` feature, which only the crates' dev-dependencies turn on: proptest
//! stays out of every normal build (docs/fuzzing.md).

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestRng};

use crate::probe;

/// The case count of a harness: `default`, or for a long run `WEFT_FUZZ_CASES` divided by the
/// harness's `cost` (how many ordinary cases one of its cases is worth in time), at least 1.
pub fn cases(default: u32, cost: u32) -> u32 {
    std::env::var("WEFT_FUZZ_CASES")
        .ok()
        .and_then(|text| text.parse::<u32>().ok())
        .map_or(default, |cases| (cases / cost).max(1))
}

/// A proptest config running [`cases`]`(default_cases, cost)` cases. Failures are kept in the
/// binary's `tests/fuzz.proptest-regressions` and replayed first.
pub fn config(default_cases: u32, cost: u32) -> Config {
    Config {
        cases: cases(default_cases, cost),
        ..Config::default()
    }
}

/// The seed of a run: `WEFT_FUZZ_SEED`, or a random one (a harness prints it, so any run can be
/// replayed).
pub fn seed() -> u64 {
    std::env::var("WEFT_FUZZ_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(rand::random::<u64>)
}

/// A proptest RNG drawn from `seed` alone.
pub fn seeded_rng(seed: u64) -> TestRng {
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes)
}

/// `value` as an LEB128 varint of any width (up to 10 bytes for `u64::MAX`).
pub fn leb128(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// One change to a valid encoding. Positions are [`Index`]es, resolved against the bytes as
/// they are when the mutation applies.
#[derive(Clone, Debug)]
pub enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
    Extend(Vec<u8>),
    /// A hostile field (by index into the caller's list) written over the bytes at a position.
    Overwrite(Index, Index),
    /// A hostile field inserted at a position.
    Splice(Index, Index),
}

/// Any [`Mutation`]: single-byte edits (`Set` favours 0, 0x7f, 0x80 and 0xff), truncation,
/// extension by up to 15 bytes, and hostile fields written over or inserted.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        (
            any::<Index>(),
            prop_oneof![Just(0u8), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()]
        )
            .prop_map(|(at, byte)| Mutation::Set(at, byte)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Extend),
        (any::<Index>(), any::<Index>()).prop_map(|(at, field)| Mutation::Overwrite(at, field)),
        (any::<Index>(), any::<Index>()).prop_map(|(at, field)| Mutation::Splice(at, field)),
    ]
}

/// Applies `mutations` in order. `hostile_fields` are the values the crate's peers would write
/// into a length or count (maximal and past-the-cap varints, `u32::MAX`, ...); with none,
/// `Overwrite` and `Splice` change nothing, as does an edit of a byte of empty input.
pub fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation], hostile_fields: &[Vec<u8>]) -> Vec<u8> {
    for mutation in mutations {
        let len = bytes.len();
        match mutation {
            Mutation::Flip(at, mask) if len > 0 => bytes[at.index(len)] ^= mask,
            Mutation::Set(at, byte) if len > 0 => bytes[at.index(len)] = *byte,
            Mutation::Insert(at, byte) => bytes.insert(at.index(len + 1), *byte),
            Mutation::Delete(at) if len > 0 => {
                bytes.remove(at.index(len));
            }
            Mutation::Truncate(at) => bytes.truncate(at.index(len + 1)),
            Mutation::Extend(tail) => bytes.extend_from_slice(tail),
            Mutation::Overwrite(at, field) if !hostile_fields.is_empty() => {
                let field = hostile_fields[field.index(hostile_fields.len())].as_slice();
                let start = at.index(len + 1);
                let end = (start + field.len()).min(len);
                bytes.splice(start..end, field.iter().copied());
            }
            Mutation::Splice(at, field) if !hostile_fields.is_empty() => {
                let field = hostile_fields[field.index(hostile_fields.len())].as_slice();
                let start = at.index(len + 1);
                bytes.splice(start..start, field.iter().copied());
            }
            _ => {}
        }
    }
    bytes
}

/// How much a decoder may allocate for `len` input bytes: `total_per_byte × len + fixed` in
/// all, and no single allocation over `largest_per_byte × len + fixed`.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub total_per_byte: usize,
    pub largest_per_byte: usize,
    pub fixed: usize,
}

/// Decodes `bytes` under [`probe::measure`], asserting the allocation bound and, when they
/// decode, that they re-encode to themselves. Returns the decoded value. A panic in `decode`
/// fails the case. Only meaningful where `AllocProbe` is the global allocator.
pub fn checked<T, E: Debug>(
    target: &str,
    bytes: &[u8],
    bound: Bound,
    decode: impl FnOnce(&[u8]) -> Result<T, E>,
    encode: impl FnOnce(&T) -> Vec<u8>,
) -> Option<T> {
    let (decoded, footprint) = probe::measure(|| decode(bytes));
    let len = bytes.len();
    let shown = &bytes[..len.min(256)];
    assert!(
        footprint.within(len, bound.total_per_byte, bound.fixed),
        "{target}: {len} input bytes allocated {footprint:?}, over {bound:?}: {shown:02x?}"
    );
    assert!(
        footprint.largest_bytes <= len * bound.largest_per_byte + bound.fixed,
        "{target}: {len} input bytes made one allocation of {}, over {bound:?}: {shown:02x?}",
        footprint.largest_bytes
    );
    let value = decoded.ok()?;
    assert!(
        encode(&value) == bytes,
        "{target}: accepted bytes re-encode differently: {shown:02x?}"
    );
    Some(value)
}

/// The files of one target's regression corpus, sorted by name. Panics if `dir` cannot be read
/// or is empty: a corpus that silently vanished would replay nothing.
pub fn corpus_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
}
