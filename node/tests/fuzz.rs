//! Fuzz harnesses for what the node reads from outside: blocks, WAL records and files, the
//! blocks the WAL holds beside its entries, the sign guard, config.toml, and the JSON-RPC handler.
//!
//! Each decoder target checks, for arbitrary bytes and for structured mutations of valid
//! encodings (bit flips, truncation, extension, inserted and removed bytes, and splices of
//! large values into length and count fields):
//! - it never panics;
//! - what it allocates is bounded by its input (`Footprint::within`, under the process-wide
//!   [`AllocProbe`] installed below);
//! - where it decodes, the encoding round-trips (canonical codecs: re-encoding gives back the
//!   input).
//!
//! Cases per target default to a few seconds' worth in a debug build; `WEFT_FUZZ_CASES=<n>`
//! overrides all of them, `WEFT_FUZZ_SEED=<u64>` replays a run (each run prints its seed). A
//! failing input is shrunk, saved under `tests/corpus/<target>/`, and replayed from then on by
//! `the_corpus_replays_clean`.

// A test unwraps: a panic is how it fails (production code may not; see Cargo.toml).
#![allow(clippy::unwrap_used)]

use std::fmt::Debug;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestError, TestRunner};
use serde_json::{Value, json};
use weft_consensus::{
    CommitCertificate, Evidence, Height, Input, LastSigned, Proposal, Round, Signature, Signed,
    SignedVote, Timeout, TimeoutKind, TimeoutParams, Validator, ValidatorId, ValidatorSet,
    Validity, ValueId, Vote, VoteType, WalEntry,
};
use weft_execution::fuzzing::{self, leb128};
use weft_execution::probe::{AllocProbe, installed, measure};
use weft_execution::{Address, ChainId, MemoryState, Payload, StateRoot, Transaction, propose};
use weft_genesis::SecretKey;
use weft_node::block::{Block, Body, Header, SealedBlock};
use weft_node::config::Config;
use weft_node::guard::{GuardError, SignGuard};
use weft_node::light::LightBlock;
use weft_node::wal::{self, Wal};

#[global_allocator]
static PROBE: AllocProbe = AllocProbe;

const CHAIN: &str = "weft-fuzz";

// --- The runner ---

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(target)
}

/// Runs `check` on `cases` inputs from `strategy`, seeded from `WEFT_FUZZ_SEED` or at random
/// (printed). A failure is shrunk, its bytes (`bytes_of`) saved to the target's corpus, and the
/// test fails naming the file.
fn fuzz<S>(
    target: &str,
    default_cases: u32,
    strategy: S,
    bytes_of: impl Fn(&S::Value) -> Vec<u8>,
    check: impl Fn(&S::Value) -> Result<(), String>,
) where
    S: Strategy,
    S::Value: Debug,
{
    assert!(
        installed(),
        "the allocation probe is not the global allocator"
    );
    let seed = fuzzing::seed();
    let cases = fuzzing::cases(default_cases, 1);
    eprintln!("fuzz {target}: {cases} cases, WEFT_FUZZ_SEED={seed}");
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new_with_rng(config, fuzzing::seeded_rng(seed));
    let result = runner.run(&strategy, |value| {
        check(&value).map_err(proptest::test_runner::TestCaseError::fail)
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, value)) => {
            let bytes = bytes_of(&value);
            let dir = corpus_dir(target);
            std::fs::create_dir_all(&dir).unwrap();
            let name = format!("found-{}", &blake3::hash(&bytes).to_hex()[..16]);
            std::fs::write(dir.join(&name), &bytes).unwrap();
            panic!(
                "fuzz {target} (WEFT_FUZZ_SEED={seed}): {reason}\nsaved as tests/corpus/{target}/{name}; input {value:?}"
            );
        }
        Err(TestError::Abort(reason)) => panic!("fuzz {target} aborted: {reason}"),
    }
}

/// Asserts a closure's allocations stay within `per_byte × len + fixed` bytes.
fn bounded<R>(
    what: &str,
    len: usize,
    per_byte: usize,
    fixed: usize,
    f: impl FnOnce() -> R,
) -> Result<R, String> {
    let (result, footprint) = measure(f);
    if footprint.within(len, per_byte, fixed) {
        Ok(result)
    } else {
        Err(format!(
            "{what} allocated {footprint:?} for {len} input bytes, over {per_byte}·len + {fixed}"
        ))
    }
}

// --- Mutations ---

#[derive(Clone, Debug)]
enum Mutation {
    Flip {
        at: prop::sample::Index,
        mask: u8,
    },
    Truncate(prop::sample::Index),
    Extend(Vec<u8>),
    Insert {
        at: prop::sample::Index,
        bytes: Vec<u8>,
    },
    Remove {
        at: prop::sample::Index,
        len: usize,
    },
    Overwrite {
        at: prop::sample::Index,
        bytes: Vec<u8>,
    },
    /// A LEB128 varint over whatever was there: a count or length field, made large.
    Varint {
        at: prop::sample::Index,
        value: u64,
    },
    /// A u32 little-endian over whatever was there: a record length, made large.
    U32 {
        at: prop::sample::Index,
        value: u32,
    },
    /// A copy of one stretch of the input over another.
    Splice {
        from: prop::sample::Index,
        to: prop::sample::Index,
        len: usize,
    },
}

fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(127),
        Just(128),
        Just(u64::from(u32::MAX)),
        Just(u64::MAX),
        Just(1 << 20),
        Just((4 << 20) + 1),
        Just((8 << 20) + 1),
        any::<u64>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let index = any::<prop::sample::Index>;
    let bytes = || prop::collection::vec(any::<u8>(), 1..32);
    prop_oneof![
        3 => (index(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        2 => index().prop_map(Mutation::Truncate),
        1 => bytes().prop_map(Mutation::Extend),
        1 => (index(), bytes()).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (index(), 1usize..16).prop_map(|(at, len)| Mutation::Remove { at, len }),
        1 => (index(), bytes()).prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
        2 => (index(), interesting_u64()).prop_map(|(at, value)| Mutation::Varint { at, value }),
        1 => (index(), interesting_u64()).prop_map(|(at, value)| Mutation::U32 { at, value: value as u32 }),
        1 => (index(), index(), 1usize..64).prop_map(|(from, to, len)| Mutation::Splice { from, to, len }),
    ]
}

fn overwrite(bytes: &mut Vec<u8>, at: usize, with: &[u8]) {
    let end = (at + with.len()).min(bytes.len());
    bytes.splice(at..end, with.iter().copied());
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        // Positions range over the bytes as they are now; an empty input takes only additions.
        let len = bytes.len();
        let pick = |index: &prop::sample::Index| if len == 0 { 0 } else { index.index(len) };
        match mutation {
            Mutation::Flip { at, mask } if len > 0 => bytes[pick(at)] ^= mask,
            Mutation::Truncate(at) => bytes.truncate(pick(at)),
            Mutation::Extend(extra) => bytes.extend_from_slice(extra),
            Mutation::Insert { at, bytes: extra } => {
                let at = pick(at);
                bytes.splice(at..at, extra.iter().copied());
            }
            Mutation::Remove { at, len: count } if len > 0 => {
                let at = pick(at);
                bytes.drain(at..(at + count).min(len));
            }
            Mutation::Overwrite { at, bytes: with } => overwrite(&mut bytes, pick(at), with),
            Mutation::Varint { at, value } => overwrite(&mut bytes, pick(at), &leb128(*value)),
            Mutation::U32 { at, value } => overwrite(&mut bytes, pick(at), &value.to_le_bytes()),
            Mutation::Splice {
                from,
                to,
                len: count,
            } if len > 0 => {
                let from = pick(from);
                let chunk = bytes[from..(from + count).min(len)].to_vec();
                overwrite(&mut bytes, pick(to), &chunk);
            }
            _ => {}
        }
    }
    bytes
}

/// Valid encodings as they are, mutated, or replaced by arbitrary bytes.
fn hostile(valid: BoxedStrategy<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => valid.clone(),
        7 => (valid, prop::collection::vec(mutation(), 1..4))
            .prop_map(|(bytes, mutations)| apply(bytes, &mutations)),
        1 => prop::collection::vec(any::<u8>(), 0..1024),
    ]
}

// --- Values to encode ---

fn key(index: u8) -> SecretKey {
    SecretKey([index.wrapping_add(1); 32])
}

fn signed_vote(
    vote_type: VoteType,
    height: u64,
    round: u32,
    value: Option<[u8; 32]>,
    by: u8,
) -> SignedVote {
    Signed {
        message: Vote {
            vote_type,
            height: Height(height),
            round: Round(round),
            value: value.map(ValueId),
            validator: ValidatorId([by; 32]),
        },
        signature: Signature([by ^ 0x5a; 64]),
    }
}

fn signed_proposal(
    height: u64,
    round: u32,
    value: [u8; 32],
    pol_round: Option<u32>,
) -> Signed<Proposal> {
    Signed {
        message: Proposal {
            height: Height(height),
            round: Round(round),
            value: ValueId(value),
            pol_round: pol_round.map(Round),
            proposer: ValidatorId([3; 32]),
        },
        signature: Signature([7; 64]),
    }
}

/// A certificate the wire codec accepts: sorted, distinct signers, all for one value.
fn certificate(height: u64, round: u32, value: [u8; 32], signers: &[u8]) -> CommitCertificate {
    CommitCertificate {
        height: Height(height),
        round: Round(round),
        value: ValueId(value),
        precommits: signers
            .iter()
            .map(|&by| signed_vote(VoteType::Precommit, height, round, Some(value), by))
            .collect(),
    }
}

#[derive(Clone, Debug)]
struct BlockPlan {
    height: u64,
    time_ms: u64,
    /// (sender, nonce, amount, whether the sender pays itself).
    txs: Vec<(u8, u64, u64, bool)>,
    signers: Option<std::collections::BTreeSet<u8>>,
    evidence: Vec<(bool, u32)>,
}

fn block_plan() -> impl Strategy<Value = BlockPlan> {
    (
        1u64..1_000_000,
        any::<u64>(),
        prop::collection::vec((0u8..6, 0u64..4, any::<u64>(), any::<bool>()), 0..6),
        prop::option::of(prop::collection::btree_set(1u8..=255, 1..6)),
        prop::collection::vec((any::<bool>(), 0u32..3), 0..3),
    )
        .prop_map(|(height, time_ms, txs, signers, evidence)| BlockPlan {
            height,
            time_ms,
            txs,
            signers,
            evidence,
        })
}

fn build_block(plan: &BlockPlan) -> Block {
    let chain = ChainId::new(CHAIN).unwrap();
    let txs: Vec<Transaction> = plan
        .txs
        .iter()
        .map(|&(sender, nonce, amount, to_self)| {
            let payload = if to_self {
                Payload::Transfer {
                    to: Address([sender; 32]),
                    amount,
                }
            } else {
                Payload::Transfer {
                    to: Address([0xee; 32]),
                    amount: amount % 1_000,
                }
            };
            Transaction::sign(chain.clone(), &key(sender).signing_key(), nonce, payload)
        })
        .collect();
    let proposal = propose(&MemoryState::new(), &txs).unwrap();
    let last_commit = plan.signers.as_ref().map(|signers| {
        let signers: Vec<u8> = signers.iter().copied().collect();
        certificate(plan.height - 1, 0, [4; 32], &signers)
    });
    let evidence = plan
        .evidence
        .iter()
        .map(|&(votes, round)| {
            if votes {
                Evidence::DuplicateVote {
                    first: signed_vote(VoteType::Prevote, plan.height, round, Some([1; 32]), 9),
                    second: signed_vote(VoteType::Prevote, plan.height, round, Some([2; 32]), 9),
                }
            } else {
                Evidence::DuplicateProposal {
                    first: signed_proposal(plan.height, round, [1; 32], None),
                    second: signed_proposal(plan.height, round, [2; 32], Some(0)),
                }
            }
        })
        .collect();
    let header = Header {
        chain_id: chain,
        height: Height(plan.height),
        time_ms: plan.time_ms,
        prev_hash: [1; 32],
        proposer: ValidatorId([2; 32]),
        tx_root: [0; 32],
        dag_root: [0; 32],
        state_root: StateRoot([9; 32]),
        last_commit_hash: [0; 32],
        validators_hash: [8; 32],
        next_validators_hash: [8; 32],
        evidence_hash: [0; 32],
    };
    let body = Body {
        txs,
        access: proposal.access,
        dag: proposal.dag,
        last_commit,
        evidence,
    };
    Block::seal(header, body)
}

fn block_bytes() -> BoxedStrategy<Vec<u8>> {
    block_plan()
        .prop_map(|plan| build_block(&plan).encode())
        .boxed()
}

fn validator_set(powers: &[u64], heights: usize) -> ValidatorSet {
    let validators = powers.iter().enumerate().map(|(i, &power)| Validator {
        id: ValidatorId([i as u8 + 1; 32]),
        power,
    });
    let mut set = ValidatorSet::new(validators).unwrap();
    for _ in 0..heights {
        set = set.next_height();
    }
    set
}

fn wal_entry() -> impl Strategy<Value = WalEntry> {
    let value = || prop::option::of(any::<[u8; 32]>());
    let vote = (
        any::<bool>(),
        any::<u64>(),
        any::<u32>(),
        value(),
        any::<u8>(),
    )
        .prop_map(|(precommit, height, round, value, by)| {
            let vote_type = if precommit {
                VoteType::Precommit
            } else {
                VoteType::Prevote
            };
            WalEntry(Input::Vote(signed_vote(
                vote_type, height, round, value, by,
            )))
        });
    let proposal = (
        any::<u64>(),
        any::<u32>(),
        any::<[u8; 32]>(),
        any::<Option<u32>>(),
        any::<bool>(),
    )
        .prop_map(|(height, round, value, pol_round, valid)| {
            WalEntry(Input::Proposal {
                proposal: signed_proposal(height, round, value, pol_round),
                validity: if valid {
                    Validity::Valid
                } else {
                    Validity::Invalid
                },
            })
        });
    let timeout = (0usize..3, any::<u64>(), any::<u32>()).prop_map(|(kind, height, round)| {
        let kinds = [
            TimeoutKind::Propose,
            TimeoutKind::Prevote,
            TimeoutKind::Precommit,
        ];
        WalEntry(Input::TimeoutElapsed(Timeout {
            kind: kinds[kind],
            height: Height(height),
            round: Round(round),
        }))
    });
    let start = (
        prop::collection::vec(1u64..1_000, 1..8),
        0usize..20,
        1u64..1_000,
    )
        .prop_map(|(powers, heights, height)| {
            WalEntry(Input::StartHeight {
                height: Height(height),
                validators: validator_set(&powers, heights),
                params: TimeoutParams::default(),
            })
        });
    let commit = (1u64..1_000, prop::collection::btree_set(1u8..=255, 1..8)).prop_map(
        |(height, signers)| {
            let signers: Vec<u8> = signers.into_iter().collect();
            WalEntry(Input::Commit(certificate(height, 1, [3; 32], &signers)))
        },
    );
    let propose_value =
        (any::<u64>(), any::<u32>(), any::<[u8; 32]>()).prop_map(|(height, round, value)| {
            WalEntry(Input::ProposeValue {
                height: Height(height),
                round: Round(round),
                value: ValueId(value),
            })
        });
    prop_oneof![vote, proposal, timeout, start, commit, propose_value]
}

// --- Decoder targets ---

/// Per input byte, what a block decode may allocate: the decoded body (txs, access sets, DAG,
/// certificate, evidence: each about its encoded size), the re-encodings the root checks hash
/// (access sets, DAG, certificate, evidence) and the tx hashes, and vectors' growth slack.
/// Fixed: headers and the encoders' initial capacities (`Header::encode` 512 bytes, …).
/// (Measured: at most 4.8 bytes per input byte on large blocks, and 9 KiB for the smallest.)
const BLOCK_PER_BYTE: usize = 8;
const BLOCK_FIXED_BYTES: usize = 16 << 10;

fn check_block(bytes: &[u8]) -> Result<(), String> {
    let decoded = bounded(
        "Block::decode",
        bytes.len(),
        BLOCK_PER_BYTE,
        BLOCK_FIXED_BYTES,
        || Block::decode(bytes),
    )?;
    let shared: Arc<[u8]> = Arc::from(bytes);
    let sealed = bounded(
        "SealedBlock::decode",
        bytes.len(),
        BLOCK_PER_BYTE,
        BLOCK_FIXED_BYTES,
        || SealedBlock::decode(Arc::clone(&shared)),
    )?;
    match (decoded, sealed) {
        (Ok(block), Ok(sealed)) => {
            if block.encode() != bytes {
                return Err("a decoded block encodes to other bytes".into());
            }
            if *sealed.block != block || sealed.hash != block.hash() || *sealed.bytes != *bytes {
                return Err("SealedBlock::decode disagrees with Block::decode".into());
            }
            Ok(())
        }
        (Err(_), Err(_)) => Ok(()),
        (block, sealed) => Err(format!(
            "Block::decode and SealedBlock::decode disagree: {:?} / {:?}",
            block.err(),
            sealed.err()
        )),
    }
}

/// A light block: a generated block's header, a certificate for it, and two sets.
fn light_block_bytes() -> BoxedStrategy<Vec<u8>> {
    (
        block_plan(),
        prop::collection::btree_set(1u8..=255, 1..6),
        prop::collection::vec(1u64..1_000, 1..5),
    )
        .prop_map(|(plan, signers, powers)| {
            let header = build_block(&plan).header;
            let signers: Vec<u8> = signers.into_iter().collect();
            LightBlock {
                certificate: certificate(header.height.0, 0, header.hash().0, &signers),
                header,
                validators: validator_set(&powers, 0),
                next_validators: validator_set(&powers, 2),
            }
            .encode()
        })
        .boxed()
}

fn check_light_block(bytes: &[u8]) -> Result<(), String> {
    let decoded = bounded(
        "LightBlock::decode",
        bytes.len(),
        BLOCK_PER_BYTE,
        BLOCK_FIXED_BYTES,
        || LightBlock::decode(bytes),
    )?;
    if let Ok(block) = decoded {
        if block.encode() != bytes {
            return Err("a decoded light block encodes to other bytes".into());
        }
        // Checking it against itself is total (and fails: the signatures are made up).
        if block.check_self(CHAIN).is_ok() {
            return Err("a light block with made-up signatures checked".into());
        }
    }
    Ok(())
}

#[test]
fn light_blocks() {
    fuzz(
        "light_block",
        1024,
        hostile(light_block_bytes()),
        Clone::clone,
        |bytes| check_light_block(bytes),
    );
}

#[test]
fn blocks() {
    fuzz(
        "block",
        2048,
        hostile(block_bytes()),
        Clone::clone,
        |bytes| check_block(bytes),
    );
}

#[test]
fn generated_blocks_round_trip() {
    fuzz(
        "block",
        256,
        block_plan(),
        |plan| build_block(plan).encode(),
        |plan| {
            let block = build_block(plan);
            let decoded = Block::decode(&block.encode()).map_err(|e| e.to_string())?;
            if decoded != block {
                return Err(format!("decode(encode(x)) != x: {decoded:?}"));
            }
            Ok(())
        },
    );
}

/// Per input byte, what `wal::decode` may allocate: the entry (a validator set or certificate
/// holds about its encoding) and its vectors' slack. Fixed: the small entries' own sizes.
/// (Measured: under 2 bytes per input byte.)
const WAL_RECORD_PER_BYTE: usize = 4;
const WAL_RECORD_FIXED_BYTES: usize = 1 << 10;

fn check_wal_record(bytes: &[u8]) -> Result<(), String> {
    let decoded = bounded(
        "wal::decode",
        bytes.len(),
        WAL_RECORD_PER_BYTE,
        WAL_RECORD_FIXED_BYTES,
        || wal::decode(bytes),
    )?;
    if let Ok(entry) = decoded
        && wal::encode(&entry) != bytes
    {
        return Err(format!(
            "a decoded WAL entry encodes to other bytes: {entry:?}"
        ));
    }
    Ok(())
}

#[test]
fn wal_records() {
    let valid = wal_entry().prop_map(|entry| wal::encode(&entry)).boxed();
    fuzz("wal_record", 4096, hostile(valid), Clone::clone, |bytes| {
        check_wal_record(bytes)
    });
}

#[test]
fn generated_wal_records_round_trip() {
    fuzz(
        "wal_record",
        1024,
        wal_entry(),
        wal::encode,
        |entry| match wal::decode(&wal::encode(entry)) {
            Ok(decoded) if decoded == *entry => Ok(()),
            other => Err(format!("decode(encode(x)) = {other:?}")),
        },
    );
}

// --- Files: the WAL, its entries and the blocks beside them ---

/// How a good file is damaged.
#[derive(Clone, Debug)]
enum Damage {
    None,
    Truncate(prop::sample::Index),
    Flip {
        at: prop::sample::Index,
        mask: u8,
    },
    Append(Vec<u8>),
    Overwrite {
        at: prop::sample::Index,
        bytes: Vec<u8>,
    },
    Mutate(Vec<Mutation>),
}

fn damage() -> impl Strategy<Value = Damage> {
    let index = any::<prop::sample::Index>;
    prop_oneof![
        1 => Just(Damage::None),
        3 => index().prop_map(Damage::Truncate),
        3 => (index(), 1u8..=255).prop_map(|(at, mask)| Damage::Flip { at, mask }),
        2 => prop::collection::vec(any::<u8>(), 1..64).prop_map(Damage::Append),
        2 => (index(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Damage::Overwrite { at, bytes }),
        2 => prop::collection::vec(mutation(), 1..3).prop_map(Damage::Mutate),
    ]
}

/// The damaged file, and the offset of its first byte that differs from `good` (its length
/// when it is a prefix of `good` or equal to it; `good`'s length when only bytes were added).
fn damaged(good: &[u8], damage: &Damage) -> (Vec<u8>, usize) {
    let mut bytes = good.to_vec();
    let len = bytes.len().max(1);
    match damage {
        Damage::None => {}
        Damage::Truncate(at) => bytes.truncate(at.index(len)),
        Damage::Flip { at, mask } if !bytes.is_empty() => bytes[at.index(len)] ^= mask,
        Damage::Append(extra) => bytes.extend_from_slice(extra),
        Damage::Overwrite { at, bytes: with } => overwrite(&mut bytes, at.index(len), with),
        Damage::Mutate(mutations) => bytes = apply(bytes, mutations),
        Damage::Flip { .. } => {}
    }
    let first_difference = good
        .iter()
        .zip(&bytes)
        .position(|(a, b)| a != b)
        .unwrap_or(good.len().min(bytes.len()));
    (bytes, first_difference)
}

/// Records wholly before `offset`: the ones that must survive damage starting there.
fn records_before(ends: &[u64], offset: usize) -> usize {
    ends.iter().take_while(|&&end| end <= offset as u64).count()
}

/// Per file byte, what opening a WAL may allocate: the entries (about their encoding, with
/// slack) and one record's payload buffer. Fixed: the 8 KiB read buffer, paths, the file.
/// (Measured: 9 KiB for the smallest files, 13 KiB for 2 KiB ones.)
const WAL_FILE_PER_BYTE: usize = 4;
const WAL_FILE_FIXED_BYTES: usize = 16 << 10;

/// What must hold for any WAL file: opening never panics and is bounded; what it keeps is a
/// prefix it reports, the file is cut to it, a second open finds it clean, and appends work.
fn check_wal_file(bytes: &[u8]) -> Result<Vec<WalEntry>, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cs.wal");
    std::fs::write(&path, bytes).unwrap();
    let opened = bounded(
        "Wal::open",
        bytes.len(),
        WAL_FILE_PER_BYTE,
        WAL_FILE_FIXED_BYTES,
        || Wal::open(&path),
    )?;
    let (mut wal, entries, recovery) = opened.map_err(|e| format!("Wal::open failed: {e}"))?;
    let kept = std::fs::metadata(&path).unwrap().len();
    if recovery.records != entries.len()
        || kept + recovery.truncated_bytes != bytes.len() as u64
        || wal.len_bytes() != kept
        || (recovery.truncated_bytes > 0) != recovery.damage.is_some()
    {
        return Err(format!(
            "inconsistent recovery {recovery:?}: {} entries, {kept} of {} bytes kept",
            entries.len(),
            bytes.len()
        ));
    }
    let extra = WalEntry(Input::TimeoutElapsed(Timeout {
        kind: TimeoutKind::Prevote,
        height: Height(9),
        round: Round(9),
    }));
    wal.append_sync(&extra).map_err(|e| e.to_string())?;
    drop(wal);
    let (_, again, recovery) = Wal::open(&path).map_err(|e| e.to_string())?;
    if again != [entries.clone(), vec![extra]].concat() || recovery.damage.is_some() {
        return Err(format!(
            "after an append and a reopen: {recovery:?}, {} entries",
            again.len()
        ));
    }
    Ok(entries)
}

#[test]
fn wal_files() {
    let plan = (prop::collection::vec(wal_entry(), 0..6), damage());
    let file_of = |(entries, damage): &(Vec<WalEntry>, Damage)| {
        let (good, _) = wal_file(entries);
        damaged(&good, damage).0
    };
    fuzz("wal_file", 256, plan, file_of, |(entries, damage)| {
        let (good, ends) = wal_file(entries);
        let (bytes, first_difference) = damaged(&good, damage);
        let kept = check_wal_file(&bytes)?;
        // Exactly the records before the first damaged one survive (a record that the damage
        // left whole but moved, such as one after an insertion, is cut with the rest).
        let expected = records_before(&ends, first_difference);
        if kept[..] != entries[..expected] {
            return Err(format!(
                "kept {} records, expected the first {expected}",
                kept.len()
            ));
        }
        Ok(())
    });
}

#[test]
fn wal_files_of_arbitrary_bytes() {
    let bytes = prop::collection::vec(any::<u8>(), 0..512);
    fuzz("wal_file", 256, bytes, Clone::clone, |bytes| {
        check_wal_file(bytes).map(drop)
    });
}

/// A WAL file holding `entries`, and each record's end offset.
fn wal_file(entries: &[WalEntry]) -> (Vec<u8>, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cs.wal");
    let (mut wal, _, _) = Wal::open(&path).unwrap();
    let mut ends = Vec::new();
    for entry in entries {
        wal.append(entry).unwrap();
        ends.push(wal.len_bytes());
    }
    wal.sync().unwrap();
    (std::fs::read(&path).unwrap(), ends)
}

/// Per file byte, what opening a WAL of blocks may allocate: the whole file (read at once), the
/// blocks decoded from it (see [`BLOCK_PER_BYTE`]) and each record's shared copy.
/// (Measured: at most 7.4 bytes per file byte.)
const BLOCK_LOG_PER_BYTE: usize = BLOCK_PER_BYTE + 2;
const BLOCK_LOG_FIXED_BYTES: usize = 32 << 10;

/// The blocks a WAL file holds beside its entries, through `Wal::open`; checks the recovery is
/// consistent and that a block appended after the good prefix reads back after it.
fn check_block_log(bytes: &[u8]) -> Result<Vec<SealedBlock>, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cs.wal");
    std::fs::write(&path, bytes).unwrap();
    let opened = bounded(
        "Wal::open (blocks)",
        bytes.len(),
        BLOCK_LOG_PER_BYTE,
        BLOCK_LOG_FIXED_BYTES,
        || Wal::open(&path),
    )?;
    let (mut log, entries, recovery) = opened.map_err(|e| format!("Wal::open failed: {e}"))?;
    let blocks = log.take_blocks();
    let kept = std::fs::metadata(&path).unwrap().len();
    if recovery.records != blocks.len() + entries.len()
        || kept + recovery.truncated_bytes != bytes.len() as u64
        || (recovery.truncated_bytes > 0) != recovery.damage.is_some()
    {
        return Err(format!(
            "inconsistent recovery {recovery:?}: {} blocks, {kept} bytes kept",
            blocks.len()
        ));
    }
    let extra = SealedBlock::new(build_block(&BlockPlan {
        height: 77,
        time_ms: 7,
        txs: Vec::new(),
        signers: None,
        evidence: Vec::new(),
    }));
    log.append_block(&extra).map_err(|e| e.to_string())?;
    log.sync().map_err(|e| e.to_string())?;
    drop(log);
    let (mut log, _, recovery) = Wal::open(&path).map_err(|e| e.to_string())?;
    let again = log.take_blocks();
    let hashes = |blocks: &[SealedBlock]| blocks.iter().map(|b| b.hash).collect::<Vec<_>>();
    let expected = [hashes(&blocks), vec![extra.hash]].concat();
    if hashes(&again) != expected || recovery.damage.is_some() {
        return Err(format!("after an append and a reopen: {recovery:?}"));
    }
    Ok(blocks)
}

/// A WAL holding `blocks` (block records only), and each record's end offset.
fn block_log_file(plans: &[BlockPlan]) -> (Vec<u8>, Vec<u64>, Vec<SealedBlock>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cs.wal");
    let (mut log, _, _) = Wal::open(&path).unwrap();
    let mut ends = Vec::new();
    let mut blocks = Vec::new();
    let mut end = 0;
    for plan in plans {
        let block = SealedBlock::new(build_block(plan));
        log.append_block(&block).unwrap();
        end += 8 + 1 + block.bytes.len() as u64;
        ends.push(end);
        blocks.push(block);
    }
    log.sync().unwrap();
    (std::fs::read(&path).unwrap(), ends, blocks)
}

#[test]
fn block_log_files() {
    let plan = (prop::collection::vec(block_plan(), 0..4), damage());
    let file_of = |(plans, damage): &(Vec<BlockPlan>, Damage)| {
        let (good, _, _) = block_log_file(plans);
        damaged(&good, damage).0
    };
    fuzz("block_log", 128, plan, file_of, |(plans, damage)| {
        let (good, ends, blocks) = block_log_file(plans);
        let (bytes, first_difference) = damaged(&good, damage);
        let kept = check_block_log(&bytes)?;
        let expected = records_before(&ends, first_difference);
        let hashes = |blocks: &[SealedBlock]| blocks.iter().map(|b| b.hash).collect::<Vec<_>>();
        if hashes(&kept) != hashes(&blocks[..expected]) {
            return Err(format!(
                "kept {} blocks, expected the first {expected}",
                kept.len()
            ));
        }
        Ok(())
    });
}

#[test]
fn block_log_files_of_arbitrary_bytes() {
    let bytes = prop::collection::vec(any::<u8>(), 0..512);
    fuzz("block_log", 128, bytes, Clone::clone, |bytes| {
        check_block_log(bytes).map(drop)
    });
}

// --- The sign guard ---

fn last_signed() -> impl Strategy<Value = LastSigned> {
    let value = || any::<[u8; 32]>();
    prop_oneof![
        (any::<u64>(), any::<u32>(), value(), any::<Option<u32>>())
            .prop_map(|(h, r, v, pol)| LastSigned::Proposal(signed_proposal(h, r, v, pol).message)),
        (
            any::<bool>(),
            any::<u64>(),
            any::<u32>(),
            prop::option::of(value()),
            any::<u8>()
        )
            .prop_map(|(precommit, h, r, v, by)| {
                let vote_type = if precommit {
                    VoteType::Precommit
                } else {
                    VoteType::Prevote
                };
                LastSigned::Vote(signed_vote(vote_type, h, r, v, by).message)
            }),
    ]
}

fn guard_file(record: &LastSigned) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guard");
    SignGuard::open(&path).unwrap().persist(record).unwrap();
    std::fs::read(&path).unwrap()
}

/// Opening a guard file: a `Corrupt` error, or a record whose own file is exactly these bytes.
fn check_guard(bytes: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guard");
    std::fs::write(&path, bytes).unwrap();
    // The file is capped at 256 bytes before it is read; the rest is the path's copies.
    // (Measured: at most 309 bytes.)
    let opened = bounded("SignGuard::open", bytes.len().min(257), 4, 4 << 10, || {
        SignGuard::open(&path)
    })?;
    match opened {
        Ok(guard) => match guard.last() {
            Some(record) if guard_file(record) == bytes => Ok(()),
            other => Err(format!(
                "accepted as {other:?}, which does not encode back to the file"
            )),
        },
        Err(GuardError::Corrupt { path: named, .. }) if named == path => Ok(()),
        Err(other) => Err(format!("not a Corrupt error naming the file: {other}")),
    }
}

#[test]
fn guard_files() {
    let valid = last_signed().prop_map(|record| guard_file(&record)).boxed();
    let oversized = prop::collection::vec(any::<u8>(), 257..400);
    let inputs = prop_oneof![9 => hostile(valid), 1 => oversized];
    fuzz("guard", 1024, inputs, Clone::clone, |bytes| {
        check_guard(bytes)
    });
}

// --- config.toml ---

/// Loading a config file: a config that saves and loads back the same, or an error naming
/// the file.
fn check_config(bytes: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, bytes).unwrap();
    // TOML parsing builds a document tree: a few dozen bytes per input byte, and the default
    // config's own strings. (Measured: 39 KiB for a 1 KiB file; 78 bytes per byte for arrays
    // nested 20,000 deep, linear up to 250,000, so 128 leaves room.)
    let loaded = bounded("Config::load", bytes.len(), 128, 64 << 10, || {
        Config::load(&path)
    })?;
    match loaded {
        Ok(config) => {
            let again = dir.path().join("again.toml");
            config.save(&again).map_err(|e| e.to_string())?;
            match Config::load(&again) {
                Ok(reloaded) if reloaded == config => Ok(()),
                other => Err(format!(
                    "a loaded config does not save and load back: {other:?}"
                )),
            }
        }
        Err(error) if error.to_string().contains(&path.display().to_string()) => Ok(()),
        Err(error) => Err(format!("an error that does not name the file: {error}")),
    }
}

fn default_config_text() -> String {
    toml::to_string_pretty(&Config::default()).unwrap()
}

#[test]
fn config_files() {
    let valid = Just(default_config_text().into_bytes()).boxed();
    fuzz("config", 1024, hostile(valid), Clone::clone, |bytes| {
        check_config(bytes)
    });
}

/// Absurd values in a valid file: each refused with an error naming the file and the field.
#[test]
fn absurd_config_values_are_refused_naming_the_file() {
    let cases = [
        ("rpc", "max_body_bytes", "0"),
        ("rpc", "max_response_bytes", "0"),
        ("rpc", "max_connections", "0"),
        ("rpc", "max_connections", "4294967296"),
        ("rpc", "max_connections", "-1"),
        ("rpc", "timeout_ms", "0"),
        ("rpc", "timeout_ms", "18446744073709551615"),
        ("rpc", "timeout_ms", "9223372036854775807"),
        ("rpc", "header_read_timeout_ms", "0"),
        ("rpc", "body_read_timeout_ms", "99999999999"),
        ("rpc", "write_stall_timeout_ms", "0"),
        ("rpc", "commit_timeout_ms", "18446744073709551615"),
        ("rpc", "laddr", "\"not an address\""),
        ("p2p", "max_connections", "0"),
        ("p2p", "listen", "\"/ip4/999.0.0.1/tcp/1\""),
        ("p2p", "gossip", "\"loud\""),
        ("mempool", "size", "0"),
        ("mempool", "max_bytes", "0"),
        ("mempool", "tx_bytes_max", "0"),
        ("mempool", "tx_bytes_max", "18446744073709551615"),
        ("consensus", "timeout_propose_ms", "18446744073709551615"),
        ("consensus", "timeout_commit_ms", "3600001"),
        ("consensus", "block_max_txs", "0"),
        ("consensus", "block_max_bytes", "0"),
        ("execution", "threads", "1000000000"),
        ("metrics", "laddr", "\"nowhere\""),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    for (section, field, value) in cases {
        let text = format!("[{section}]\n{field} = {value}\n");
        std::fs::write(&path, &text).unwrap();
        let error = match Config::load(&path) {
            Ok(config) => panic!("{section}.{field} = {value} accepted: {config:?}"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(
            error.contains(field),
            "{section}.{field} = {value}: {error}"
        );
    }
}

// --- The corpus ---

/// A target's check of one input.
type Check = fn(&[u8]) -> Result<(), String>;

/// Every saved input of every target, replayed through its check.
#[test]
fn the_corpus_replays_clean() {
    let targets: [(&str, Check); 7] = [
        ("block", check_block),
        ("light_block", check_light_block),
        ("wal_record", check_wal_record),
        ("wal_file", |bytes| check_wal_file(bytes).map(drop)),
        ("block_log", |bytes| check_block_log(bytes).map(drop)),
        ("guard", check_guard),
        ("config", check_config),
    ];
    let mut replayed = 0;
    for (target, check) in targets {
        let Ok(entries) = std::fs::read_dir(corpus_dir(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            if let Err(reason) = check(&bytes) {
                panic!("{}: {reason}", path.display());
            }
            replayed += 1;
        }
    }
    assert!(replayed > 0, "the corpus is empty");
}

// --- The JSON-RPC handler ---

/// The codes the RPC module documents; any other in an answer is a bug. Failures of a method
/// are CometBFT's -32603 with the reason in `data` (Weft's own -32001 to -32003 are gone), and
/// subscriptions live only on the WebSocket (over HTTP, `subscribe` is an unknown method).
const DOCUMENTED_CODES: [i64; 11] = [
    -32700, -32600, -32601, -32602, -32603, -32004, -32005, -32007, -32008, -32009, -32010,
];

/// Every method the node serves (from its route lists, so a new one is fuzzed too), the
/// WebSocket-only ones, and names that are none.
fn methods() -> Vec<&'static str> {
    use weft_node::rpc::api::{ROUTES, UNSAFE_ROUTES, WEBSOCKET_ROUTES};
    let served = ROUTES.iter().chain(UNSAFE_ROUTES).chain(WEBSOCKET_ROUTES);
    served
        .map(|(name, _)| *name)
        .chain(["rpc.discover", "", "status\u{0}"])
        .collect()
}

/// Every param name some method takes.
fn param_names() -> Vec<String> {
    use weft_node::rpc::api::{ROUTES, UNSAFE_ROUTES};
    let mut names: Vec<String> = ROUTES
        .iter()
        .chain(UNSAFE_ROUTES)
        .flat_map(|(_, params)| params.iter().map(|p| (*p).to_owned()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Any JSON value, a few levels deep, with the awkward ones weighted up.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        "[0-9a-fA-Fx]{0,80}".prop_map(Value::String),
        ".{0,40}".prop_map(Value::String),
        (1usize..20_000).prop_map(|n| Value::String("a".repeat(n))),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    3 => prop::sample::select(param_names()),
                    1 => "[a-z]{1,8}",
                ],
                inner,
                0..4,
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn rpc_call() -> impl Strategy<Value = Value> {
    let method = prop_oneof![
        4 => prop::sample::select(methods()).prop_map(String::from),
        1 => ".{0,24}",
    ];
    let id = prop_oneof![
        Just(json!(1)),
        Just(json!("x")),
        Just(Value::Null),
        Just(json!(u64::MAX)),
        Just(json!({ "nested": [1] })),
    ];
    (
        method,
        prop::option::of(json_value()),
        id,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(method, params, id, notification, bad_version)| {
            let mut call = json!({
                "jsonrpc": if bad_version { "1.0" } else { "2.0" },
                "method": method,
            });
            if let Some(params) = params {
                call["params"] = params;
            }
            if !notification {
                call["id"] = id;
            }
            call
        })
}

/// A request body: one call, a batch, a deeply nested value, or raw bytes.
fn rpc_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => rpc_call().prop_map(|call| call.to_string().into_bytes()),
        2 => prop::collection::vec(rpc_call(), 0..80)
            .prop_map(|calls| Value::Array(calls).to_string().into_bytes()),
        1 => (1usize..5_000, any::<bool>()).prop_map(|(depth, object)| {
            let (open, close) = if object { ("{\"a\":", "}") } else { ("[", "]") };
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"block","params":{}0{}}}"#,
                open.repeat(depth),
                close.repeat(depth)
            )
            .into_bytes()
        }),
        2 => prop::collection::vec(any::<u8>(), 0..256),
        1 => (rpc_call(), prop::collection::vec(mutation(), 1..3))
            .prop_map(|(call, mutations)| apply(call.to_string().into_bytes(), &mutations)),
    ]
}

/// One HTTP/1.1 POST on a fresh connection: the status and body.
fn post(addr: SocketAddr, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .map_err(|e| e.to_string())?;
    stream.write_all(body).map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("no answer: {e}"))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("an answer without a head")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    Ok((status, response[split + 4..].to_vec()))
}

/// One JSON-RPC 2.0 response object: `jsonrpc`, an `id`, and a result or an error with a
/// documented code.
fn check_response(answer: &Value) -> Result<(), String> {
    let object = answer
        .as_object()
        .ok_or_else(|| format!("a response that is not an object: {answer}"))?;
    if object.get("jsonrpc") != Some(&json!("2.0")) || !object.contains_key("id") {
        return Err(format!("not a JSON-RPC 2.0 response: {answer}"));
    }
    match (object.get("result"), object.get("error")) {
        (Some(_), None) => Ok(()),
        (None, Some(error)) => {
            let code = error["code"].as_i64().ok_or("an error without a code")?;
            if !DOCUMENTED_CODES.contains(&code) || !error["message"].is_string() {
                return Err(format!("an undocumented error: {answer}"));
            }
            Ok(())
        }
        _ => Err(format!("neither a result nor an error: {answer}")),
    }
}

/// The fuzzed server's `rpc.max_body_bytes`.
const RPC_BODY_BYTES_MAX: usize = 256 << 10;

fn check_rpc(addr: SocketAddr, body: &[u8]) -> Result<(), String> {
    if body.len() > RPC_BODY_BYTES_MAX {
        // Refused with -32007 (HTTP 413), or closed while the client still writes.
        return match post(addr, body) {
            Err(_) => Ok(()),
            Ok((413, answer)) => {
                let answer: Value = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
                check_response(&answer)?;
                match answer["error"]["code"].as_i64() {
                    Some(-32007) => Ok(()),
                    _ => Err(format!("an oversized body answered {answer}")),
                }
            }
            Ok((status, _)) => Err(format!("an oversized body answered HTTP {status}")),
        };
    }
    let (status, answer) = post(addr, body)?;
    if answer.is_empty() {
        // Notifications, and batches of only notifications, get an empty 200.
        return if status == 200 {
            Ok(())
        } else {
            Err(format!("HTTP {status} with no body"))
        };
    }
    let answer: Value = serde_json::from_slice(&answer).map_err(|e| {
        format!(
            "HTTP {status}, not JSON ({e}): {}",
            String::from_utf8_lossy(&answer)
        )
    })?;
    match &answer {
        // jsonrpsee acknowledges a notification (or a call whose id is not a valid id, which
        // it reads as one) with `null`.
        Value::Null if status == 200 => Ok(()),
        Value::Array(answers) if !answers.is_empty() => answers.iter().try_for_each(check_response),
        _ => check_response(&answer),
    }
}

/// A node context with no consensus running: a fresh chain, a mempool, gossip with no peers.
async fn rpc_context(dir: &Path) -> Arc<weft_node::context::NodeContext> {
    use parking_lot::{Mutex, RwLock};
    use weft_genesis::{ConsensusParams, Genesis};
    use weft_gossip::net::keypair_from_secret;
    use weft_gossip::{GossipConfig, Hooks};
    use weft_node::chain::Chain;
    use weft_node::context::{ConsensusStatus, EVENTS_MAX, NodeContext, NodeInfo};
    use weft_node::mempool::{Mempool, MempoolConfig};
    use weft_node::metrics::NodeMetrics;

    let (validator, sender) = (key(0), key(1));
    let genesis = Genesis::new(
        CHAIN,
        1_000,
        vec![("v".into(), validator.public(), 10)],
        vec![(sender.public(), 1_000)],
        ConsensusParams::default(),
    )
    .unwrap();
    let chain = Chain::open(dir, genesis, 1).unwrap();
    let (chain_id, validators) = (chain.chain_id().clone(), chain.current_validators().clone());
    let gossip_config = GossipConfig::new(
        keypair_from_secret(&validator),
        chain_id.as_str(),
        validators,
    );
    let (gossip, _events) = weft_gossip::spawn(gossip_config, Hooks::default())
        .await
        .unwrap();
    let mut config = Config::default();
    config.rpc.laddr = "127.0.0.1:0".into();
    config.rpc.commit_timeout_ms = 100;
    config.rpc.max_body_bytes = RPC_BODY_BYTES_MAX as u32;
    let info = NodeInfo {
        moniker: "fuzz".into(),
        chain_id: CHAIN.into(),
        version: "0".into(),
        peer_id: gossip.peer_id().to_string(),
        validator: Some(hex::encode(validator.public())),
        p2p_addrs: Vec::new(),
        rpc_addr: config.rpc.laddr.clone(),
    };
    Arc::new(NodeContext {
        config,
        info,
        chain: Arc::new(RwLock::new(chain)),
        mempool: Arc::new(Mutex::new(Mempool::new(MempoolConfig::default(), chain_id))),
        gossip,
        events: tokio::sync::broadcast::channel(EVENTS_MAX).0,
        consensus: Arc::new(Mutex::new(ConsensusStatus::default())),
        evidence: Arc::new(Mutex::new(Vec::new())),
        metrics: Arc::new(NodeMetrics::new().unwrap()),
        snapshots: None,
    })
}

/// The JSON-RPC server in process, on loopback: random methods and params of every shape,
/// batches, deep nesting and raw bytes each get well-formed answers with documented codes,
/// and the server still answers `status` afterwards.
#[test]
fn rpc_handler() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (handle, addr) = runtime.block_on(async {
        let ctx = rpc_context(dir.path()).await;
        weft_node::rpc::serve(ctx).await.unwrap()
    });
    if let Ok(entries) = std::fs::read_dir(corpus_dir("rpc")) {
        for entry in entries {
            let path = entry.unwrap().path();
            let body = std::fs::read(&path).unwrap();
            if let Err(reason) = check_rpc(addr, &body) {
                panic!("{}: {reason}", path.display());
            }
        }
    }
    fuzz("rpc", 1024, rpc_body(), Clone::clone, |body| {
        check_rpc(addr, body)
    });
    let status = json!({ "jsonrpc": "2.0", "id": 1, "method": "status" }).to_string();
    let (code, answer) = post(addr, status.as_bytes()).unwrap();
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(
        (code, &answer["result"]["node_info"]["network"]),
        (200, &json!(CHAIN))
    );
    handle.stop().unwrap();
    runtime.block_on(handle.stopped());
}
