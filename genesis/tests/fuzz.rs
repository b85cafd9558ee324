//! Fuzz harnesses for the files a node reads at start: `genesis.json` ([`Genesis::load`]) and
//! the Ed25519 key files ([`read_key_file`]).
//!
//! Inputs are random bytes, byte-level mutations of valid files (flips, overwrites,
//! insertions, truncation, extension), and JSON-level edits of valid files: a value replaced by
//! a hostile one (numbers past `u64`, negative, fractional and exponent numbers, 100 000-deep
//! arrays, 100 000-byte strings, lone surrogates, control characters), duplicate keys, unknown
//! fields. For every input the loader must
//! 1. never panic (and never overflow the stack);
//! 2. allocate within a bound linear in the file (the probe is this binary's allocator);
//! 3. refuse with an error that names the file, or accept a genesis that every conversion
//!    takes without panicking (the conversions assume a validated genesis) and that survives
//!    save-format round trips: JSON is not canonical (whitespace, field order and hex case are
//!    free), so "round-trips" here means `load(to_json(g)) == g` with the same hash.
//!
//! `WEFT_FUZZ_CASES=<n>` sets every harness's case count for a long run (docs/fuzzing.md).
//! `tests/corpus/{genesis,key_file}/` hold regression files, replayed by
//! `the_corpus_replays_cleanly`.

// A test unwraps: a panic is how it fails (production code may not; see Cargo.toml).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;
use weft_execution::fuzzing::{Mutation, config, corpus_files, mutate};
use weft_execution::probe::{self, AllocProbe};
use weft_genesis::genesis::{BLOCK_BYTES_MAX, TIMEOUT_MS_MAX};
use weft_genesis::keys::KEY_FILE_BYTES_MAX;
use weft_genesis::{
    ConsensusParams, Genesis, GenesisProblem, KeyProblem, SecretKey, read_key_file, write_key_file,
};

#[global_allocator]
static PROBE: AllocProbe = AllocProbe;

// ---------------------------------------------------------------------------------------------
// The checked loads.

/// What loading a genesis file may allocate, per file byte and fixed. The file is read into one
/// buffer (1 per byte). serde_json copies each string once (at most 1 per byte, plus its scratch
/// buffer for escapes, 1 more) and builds the lists: a `GenesisValidator` is 56 bytes from at
/// least 34 bytes of JSON and a `GenesisAccount` 32 from at least 27, each list grown by
/// doubling (×4): under 7 per byte. Validation keeps a B-tree entry per validator (its
/// 32-byte key and name) and per account (its address): about one node slot per 100 file
/// bytes. 16 per byte leaves room; the fixed part covers paths in errors, error messages and
/// the reader's first buffers.
const GENESIS_TOTAL_PER_BYTE: usize = 16;
const GENESIS_LARGEST_PER_BYTE: usize = 4;
const GENESIS_FIXED: usize = 16 * 1024;

/// Loads `bytes` as `<dir>/genesis.json` and checks the load. Returns the genesis if accepted.
fn load_genesis(dir: &Path, bytes: &[u8]) -> Option<Genesis> {
    let path = dir.join("genesis.json");
    fs::write(&path, bytes).expect("write the genesis file");
    let (loaded, footprint) = probe::measure(|| Genesis::load(&path));
    let len = bytes.len();
    let shown = String::from_utf8_lossy(&bytes[..len.min(300)]);
    assert!(
        footprint.within(len, GENESIS_TOTAL_PER_BYTE, GENESIS_FIXED),
        "genesis: {len} bytes allocated {footprint:?}: {shown:?}"
    );
    assert!(
        footprint.largest_bytes <= len * GENESIS_LARGEST_PER_BYTE + GENESIS_FIXED,
        "genesis: {len} bytes made one allocation of {}: {shown:?}",
        footprint.largest_bytes
    );
    // Loading from memory agrees with loading from the file.
    if let Ok(text) = std::str::from_utf8(bytes) {
        assert_eq!(
            Genesis::from_json(text).ok(),
            loaded.as_ref().ok().cloned(),
            "from_json and load disagree on {shown:?}"
        );
    }
    match loaded {
        Ok(genesis) => {
            check_accepted_genesis(&genesis);
            Some(genesis)
        }
        Err(error) => {
            assert!(
                error.to_string().contains("genesis.json"),
                "{error} does not name the file"
            );
            None
        }
    }
}

/// An accepted genesis converts without panicking and round-trips through its own JSON.
fn check_accepted_genesis(genesis: &Genesis) {
    let hash = genesis.hash();
    let set = genesis.validator_set();
    assert_eq!(set.len(), genesis.validators.len());
    let _ = genesis.chain_id();
    let _ = genesis.timeout_params();
    let _ = genesis.genesis_time_ms();
    // Each account, each validator, the validator totals, and the authority if named.
    let authority = usize::from(genesis.validator_authority.is_some());
    assert_eq!(
        genesis.initial_state().len(),
        genesis.accounts.len() + genesis.validators.len() + 1 + authority
    );
    let again = Genesis::from_json(&genesis.to_json_pretty()).expect("its own JSON loads");
    assert_eq!(&again, genesis);
    assert_eq!(again.hash(), hash);
}

/// What reading a key file may allocate: the file is at most `KEY_FILE_BYTES_MAX` bytes (a
/// larger one is refused from its metadata, before a byte is read), read into a `String`
/// grown by doubling (×4), parsed into three strings (×1) and hex-decoded (×1): 8 per byte
/// and a fixed part for the path in the error and the error message.
const KEY_TOTAL_PER_BYTE: usize = 8;
const KEY_FIXED: usize = 4096;

/// Writes `bytes` as a key file with `mode`, reads it back, and checks the read.
fn read_key(dir: &Path, bytes: &[u8], mode: u32) -> Option<SecretKey> {
    let path = dir.join("node_key.json");
    fs::write(&path, bytes).expect("write the key file");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    let (read, footprint) = probe::measure(|| read_key_file(&path));
    let len = bytes.len();
    let counted = len.min(KEY_FILE_BYTES_MAX as usize + 1);
    let shown = String::from_utf8_lossy(&bytes[..len.min(300)]);
    assert!(
        footprint.within(counted, KEY_TOTAL_PER_BYTE, KEY_FIXED),
        "key file: {len} bytes allocated {footprint:?}: {shown:?}"
    );
    match read {
        Ok(key) => {
            assert_eq!(mode & 0o077, 0, "a key file others can access was read");
            assert!(len as u64 <= KEY_FILE_BYTES_MAX);
            // The loaded key writes back and reads back as itself.
            let copy = dir.join("copy.json");
            let _ = fs::remove_file(&copy);
            write_key_file(&copy, &key).expect("write the copy");
            assert_eq!(read_key_file(&copy).expect("read the copy").0, key.0);
            Some(key)
        }
        Err(error) => {
            assert!(
                error.to_string().contains("node_key.json"),
                "{error} does not name the file"
            );
            // Permissions are checked first, whatever the contents.
            if mode & 0o077 != 0 {
                assert!(
                    matches!(error.problem, KeyProblem::Permissions { mode: m } if m == mode),
                    "mode {mode:o} gave {error}"
                );
            }
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Valid files and mutations of them.

fn key_seed() -> impl Strategy<Value = [u8; 32]> {
    prop_oneof![any::<[u8; 32]>(), (1u8..8).prop_map(|b| [b; 32])]
}

fn consensus_params() -> impl Strategy<Value = ConsensusParams> {
    let base = 1..=TIMEOUT_MS_MAX;
    let delta = 0..=TIMEOUT_MS_MAX;
    (
        (base.clone(), delta.clone(), base.clone(), delta.clone()),
        (base, delta.clone(), delta),
        (1u64..=65_536, 512u64..=BLOCK_BYTES_MAX),
    )
        .prop_map(
            |(
                (propose, propose_delta, prevote, prevote_delta),
                (precommit, precommit_delta, commit),
                (txs, bytes),
            )| {
                ConsensusParams {
                    timeout_propose_ms: propose,
                    timeout_propose_delta_ms: propose_delta,
                    timeout_prevote_ms: prevote,
                    timeout_prevote_delta_ms: prevote_delta,
                    timeout_precommit_ms: precommit,
                    timeout_precommit_delta_ms: precommit_delta,
                    timeout_commit_ms: commit,
                    block_max_txs: txs,
                    block_max_bytes: bytes,
                }
            },
        )
}

/// Valid genesis files: 1 to 6 validators, 0 to 6 accounts, any time from 1970 to 9999.
fn genesis() -> impl Strategy<Value = Genesis> {
    (
        "[A-Za-z0-9._-]{1,50}",
        0u64..253_402_300_799_999,
        prop::collection::btree_map(key_seed(), ("[ -~]{1,64}", 1u64..1_000_000), 1..=6),
        prop::collection::btree_map(key_seed(), any::<u32>(), 0..=6),
        consensus_params(),
    )
        .prop_map(|(chain, time_ms, validators, accounts, params)| {
            let validators = validators
                .into_iter()
                .enumerate()
                .map(|(i, (seed, (name, power)))| {
                    // Names must be distinct; the index keeps them so.
                    let name = format!("{i}{}", &name[..name.len().min(60)]);
                    (name, SecretKey(seed).public(), power)
                })
                .collect();
            let accounts = accounts
                .into_iter()
                .map(|(seed, balance)| (SecretKey(seed).public(), u64::from(balance)))
                .collect();
            Genesis::new(&chain, time_ms, validators, accounts, params).expect("valid genesis")
        })
}

/// Values a hostile genesis file would hold where a field is expected, as raw JSON text.
fn hostile_json() -> Vec<String> {
    vec![
        "18446744073709551615".into(),
        "18446744073709551616".into(),
        "99999999999999999999999999999999999999".into(),
        "-1".into(),
        "-0".into(),
        "1.5".into(),
        "1e400".into(),
        "1e3".into(),
        "0".into(),
        "null".into(),
        "true".into(),
        "\"\"".into(),
        "\"\\ud800\"".into(),
        "\"\\u0000\"".into(),
        "\"é\"".into(),
        format!("\"{}\"", "é".repeat(32)),
        format!("\"{}\"", "a".repeat(100_000)),
        format!("{}{}", "[".repeat(200), "]".repeat(200)),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        "[".repeat(100_000),
        format!("{}{}", "{\"a\":".repeat(1_000), "}".repeat(1_000)),
        "[]".into(),
        "{}".into(),
    ]
}

/// A structural edit of a valid genesis's JSON.
#[derive(Clone, Debug)]
enum Edit {
    /// Replace the value at some path with a hostile value.
    Replace(Index, Index),
    /// Remove the key at some path.
    Remove(Index),
    /// Add an unknown field to the object at some path.
    Unknown(Index),
    /// Repeat the first key of the object at some path, with another value.
    Duplicate(Index, Index),
    /// Uppercase every hex string.
    Uppercase,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<Index>(), any::<Index>()).prop_map(|(at, value)| Edit::Replace(at, value)),
        1 => any::<Index>().prop_map(Edit::Remove),
        1 => any::<Index>().prop_map(Edit::Unknown),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(at, value)| Edit::Duplicate(at, value)),
        1 => Just(Edit::Uppercase),
    ]
}

/// Every JSON pointer in `value`, the root included.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                pointers(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{index}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

const HOLE: &str = "\u{1}hole";

/// Applies `edit` to the JSON of `genesis` and returns the file's text. Whether the result must
/// be refused: `Some(true)` for an edit that makes any genesis invalid (an unknown field or a
/// duplicate key), `None` when it depends.
fn apply(genesis: &Genesis, edit: &Edit) -> (String, Option<bool>) {
    let mut value = serde_json::to_value(genesis).expect("a genesis is JSON");
    let mut paths = Vec::new();
    pointers(&value, String::new(), &mut paths);
    let hostile = hostile_json();
    match edit {
        Edit::Replace(at, with) => {
            let path = &paths[at.index(paths.len())];
            *value.pointer_mut(path).expect("a path from the value") = Value::from(HOLE);
            let text = serde_json::to_string_pretty(&value).expect("JSON");
            let hole = serde_json::to_string(HOLE).expect("JSON");
            let text = text.replacen(&hole, &hostile[with.index(hostile.len())], 1);
            (text, None)
        }
        Edit::Remove(at) => {
            let path = &paths[at.index(paths.len())];
            if let Some((parent, key)) = path.rsplit_once('/')
                && let Some(Value::Object(map)) = value.pointer_mut(parent)
            {
                map.remove(key);
            }
            (serde_json::to_string(&value).expect("JSON"), None)
        }
        Edit::Unknown(at) => {
            let objects: Vec<&String> = paths
                .iter()
                .filter(|p| value.pointer(p).is_some_and(Value::is_object))
                .collect();
            let path = objects[at.index(objects.len())].clone();
            if let Some(Value::Object(map)) = value.pointer_mut(&path) {
                map.insert("unexpected".into(), Value::from(1));
            }
            (serde_json::to_string(&value).expect("JSON"), Some(true))
        }
        Edit::Duplicate(at, with) => {
            let objects: Vec<&String> = paths
                .iter()
                .filter(|p| {
                    value
                        .pointer(p)
                        .is_some_and(|v| v.as_object().is_some_and(|m| !m.is_empty()))
                })
                .collect();
            let path = objects[at.index(objects.len())].clone();
            let object = value.pointer(&path).expect("an object path");
            let (key, original) = object
                .as_object()
                .and_then(|m| m.iter().next())
                .expect("a non-empty object");
            let original = serde_json::to_string(original).expect("JSON");
            let repeated = if with.index(2) == 0 {
                original
            } else {
                hostile[with.index(hostile.len())].clone()
            };
            // Written by hand: serde_json's maps cannot hold a key twice.
            let first = serde_json::to_string(key).expect("JSON");
            let marker = Value::from(HOLE);
            let mut marked = value.clone();
            *marked.pointer_mut(&path).expect("the path") = marker;
            let text = serde_json::to_string(&marked).expect("JSON");
            let inner = serde_json::to_string(object).expect("JSON");
            let doubled = format!("{{{first}:{repeated},{}", &inner[1..]);
            let hole = serde_json::to_string(HOLE).expect("JSON");
            (text.replacen(&hole, &doubled, 1), Some(true))
        }
        Edit::Uppercase => {
            let text = serde_json::to_string(&value).expect("JSON");
            let upper = genesis
                .validators
                .iter()
                .map(|v| &v.pub_key)
                .chain(genesis.accounts.iter().map(|a| &a.address))
                .fold(text, |text, hex| {
                    text.replace(hex.as_str(), &hex.to_uppercase())
                });
            (upper, Some(false))
        }
    }
}

/// The shared engine's single-byte edits, truncation and extension, with bytes that matter in
/// JSON favoured; no binary hostile fields.
fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        Just(b'"'),
        Just(b'{'),
        Just(b'}'),
        Just(b'['),
        Just(b','),
        Just(b':'),
        Just(b'\\'),
        Just(b'9'),
        Just(b'-'),
        Just(0u8),
        Just(0xff),
        any::<u8>(),
    ];
    prop_oneof![
        (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        (any::<Index>(), interesting.clone()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        (any::<Index>(), interesting).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Extend),
    ]
}

fn key_file_text(key: &SecretKey) -> String {
    format!(
        r#"{{"type":"ed25519","public":"{}","secret":"{}"}}"#,
        hex::encode(key.public()),
        hex::encode(key.0)
    )
}

/// Key files a careless parser might accept: duplicate fields, case, prefixes, whitespace.
fn key_file_variant(key: &SecretKey, variant: usize) -> (String, bool) {
    let public = hex::encode(key.public());
    let secret = hex::encode(key.0);
    let variants: [(String, bool); 8] = [
        (key_file_text(key), true),
        (
            format!(
                "\n {{ \"secret\" : \"{secret}\" ,\n \"public\":\"{public}\", \"type\":\"ed25519\" }}\n"
            ),
            true,
        ),
        (
            format!(
                r#"{{"type":"ed25519","public":"{}","secret":"{}"}}"#,
                public.to_uppercase(),
                secret.to_uppercase()
            ),
            true,
        ),
        (
            format!(
                r#"{{"type":"ed25519","type":"ed25519","public":"{public}","secret":"{secret}"}}"#
            ),
            false,
        ),
        (
            format!(
                r#"{{"type":"ed25519","public":"{public}","secret":"{secret}","secret":"{}"}}"#,
                hex::encode([9u8; 32])
            ),
            false,
        ),
        (
            format!(r#"{{"type":"ed25519","public":"0x{public}","secret":"{secret}"}}"#),
            false,
        ),
        (
            format!(r#"{{"type":"Ed25519","public":"{public}","secret":"{secret}"}}"#),
            false,
        ),
        (
            format!(r#"{{"type":"ed25519","public":"{public}","secret":"{secret}0"}}"#),
            false,
        ),
    ];
    variants[variant % variants.len()].clone()
}

// ---------------------------------------------------------------------------------------------
// The harnesses.

proptest! {
    #![proptest_config(config(512, 1))]

    #[test]
    fn random_genesis_bytes_are_refused_cleanly(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            "[ -~\n]{0,512}".prop_map(String::into_bytes),
        ],
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        prop_assert!(load_genesis(dir.path(), &bytes).is_none());
    }

    #[test]
    fn mutated_genesis_files_never_panic_and_stay_bounded(
        genesis in genesis(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = genesis.to_json_pretty().into_bytes();
        prop_assert_eq!(load_genesis(dir.path(), &bytes), Some(genesis));
        load_genesis(dir.path(), &mutate(bytes, &mutations, &[]));
    }

    #[test]
    fn edited_genesis_files_never_panic_and_stay_bounded(
        genesis in genesis(),
        edits in prop::collection::vec(edit(), 1..3),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut current = genesis.clone();
        for edit in &edits {
            let (text, refused) = apply(&current, edit);
            let loaded = load_genesis(dir.path(), text.as_bytes());
            if let Some(refused) = refused {
                prop_assert_eq!(loaded.is_none(), refused, "{:?} on {}", edit, text);
            }
            if let Some(loaded) = loaded {
                // Hex case is free: the hash depends on the decoded values only.
                if matches!(edit, Edit::Uppercase) {
                    prop_assert_eq!(loaded.hash(), current.hash());
                }
                current = loaded;
            }
        }
    }

    #[test]
    fn valid_genesis_files_round_trip(genesis in genesis()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let compact = serde_json::to_string(&genesis).expect("JSON");
        let loaded = load_genesis(dir.path(), compact.as_bytes());
        prop_assert_eq!(loaded.as_ref().map(Genesis::hash), Some(genesis.hash()));
        prop_assert_eq!(loaded, Some(genesis));
    }

    #[test]
    fn key_files_never_panic_and_honour_permissions(
        seed in any::<[u8; 32]>(),
        variant in 0usize..8,
        mutations in prop::collection::vec(mutation(), 0..4),
        random in prop::option::weighted(0.25, prop::collection::vec(any::<u8>(), 0..300)),
        mode in prop_oneof![3 => Just(0o600u32), 1 => Just(0o400), 2 => 0u32..=0o777],
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = SecretKey(seed);
        let (text, valid) = key_file_variant(&key, variant);
        let unmutated = mutations.is_empty() && random.is_none();
        let bytes = random.unwrap_or_else(|| mutate(text.into_bytes(), &mutations, &[]));
        let read = read_key(dir.path(), &bytes, mode);
        // Root reads a file whatever its owner bits; anyone else needs the owner's read bit.
        let decided = mode & 0o077 != 0 || mode & 0o400 != 0;
        if unmutated && decided {
            let expected = (valid && mode & 0o077 == 0).then_some(key.0);
            prop_assert_eq!(read.map(|k| k.0), expected);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Files at the limits: too large for the corpus, built here.

/// A genesis file one byte over its cap is refused before it is read, and so is a key file;
/// a genesis at the account limit loads within the bound.
#[test]
fn files_at_the_caps_stay_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("genesis.json");
    let file = fs::File::create(&path).expect("create");
    file.set_len(weft_genesis::GENESIS_FILE_BYTES_MAX + 1)
        .expect("a sparse file");
    let (loaded, footprint) = probe::measure(|| Genesis::load(&path));
    let error = loaded.expect_err("over the cap");
    assert!(
        matches!(error.problem, GenesisProblem::TooLarge { .. }),
        "{error}"
    );
    assert!(footprint.within(0, 0, GENESIS_FIXED), "{footprint:?}");

    let key_path = dir.path().join("node_key.json");
    let file = fs::File::create(&key_path).expect("create");
    file.set_len(KEY_FILE_BYTES_MAX + 1).expect("a sparse file");
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).expect("chmod");
    let (read, footprint) = probe::measure(|| read_key_file(&key_path));
    let error = read.expect_err("over the cap");
    assert!(
        matches!(error.problem, KeyProblem::TooLarge { .. }),
        "{error}"
    );
    assert!(footprint.within(0, 0, KEY_FIXED), "{footprint:?}");

    // Many accounts: the lists grow by doubling, the bound still holds.
    let accounts = (0..2_000u32)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            (SecretKey(seed).public(), 1)
        })
        .collect();
    let validators = vec![("v".to_owned(), SecretKey([1; 32]).public(), 1)];
    let genesis = Genesis::new(
        "weft-fuzz",
        0,
        validators,
        accounts,
        ConsensusParams::default(),
    )
    .expect("valid");
    let text = serde_json::to_string(&genesis).expect("JSON");
    assert_eq!(load_genesis(dir.path(), text.as_bytes()), Some(genesis));
}

// ---------------------------------------------------------------------------------------------
// The regression corpus.

/// Replays every file under `tests/corpus/genesis/` and `tests/corpus/key_file/` with the same
/// checks as a proptest case (key files with mode 0600 and 0644).
#[test]
fn the_corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut replayed = 0;
    for target in ["genesis", "key_file"] {
        let corpus = root.join(target);
        for file in corpus_files(&corpus) {
            let bytes = fs::read(&file).expect("corpus file");
            println!("{}", file.display());
            // Files named `valid-*` must load; every other one must be refused.
            let valid = file
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("valid-"));
            if target == "genesis" {
                assert_eq!(load_genesis(dir.path(), &bytes).is_some(), valid);
            } else {
                assert_eq!(read_key(dir.path(), &bytes, 0o600).is_some(), valid);
                assert!(read_key(dir.path(), &bytes, 0o644).is_none());
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
}
