//! Every decoder of bytes from outside: it never panics on random or mutated input, never makes
//! an allocation larger than its input could justify, accepts only canonical encodings (what it
//! accepts re-encodes to the same bytes), and gives back every valid value it is handed.

use std::fmt::Debug;

use proptest::prelude::*;
use proptest::sample::Index;
use weft_execution::access::{ACCESS_SETS_BYTES_MAX, BLOCK_TXS_MAX};
use weft_execution::dag::DAG_BYTES_MAX;
use weft_execution::fuzzing::{Mutation, leb128, mutate};
use weft_execution::tx::{TX_BYTES_MAX, WORK_ROUNDS_MAX};
use weft_execution::{
    AccessMode, AccessSets, Address, ChainId, ConflictDag, DagError, DecodeError, Name, Payload,
    StateKey, StateValue, Transaction, WorkSlots,
};

use crate::largest_allocation;
use crate::values::{address, forward_dag, leading_varint, transaction, value};

/// The largest single allocation a decoder may make for `len` input bytes. The biggest thing a
/// decoder stores per input byte is a `StateKey` (40 bytes) from a 3-byte name key, and a
/// growing `Vec` may hold twice what it needs: under 32 bytes per input byte. A length field
/// read from the input must not raise this.
fn allocation_cap(len: usize) -> usize {
    32 * len + 4096
}

/// Every decoder, as one type, so that tables can name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decoder {
    Tx,
    Access,
    Dag,
    Key,
    Value,
}

const DECODERS: [Decoder; 5] = [
    Decoder::Tx,
    Decoder::Access,
    Decoder::Dag,
    Decoder::Key,
    Decoder::Value,
];

/// What a decoder made of some bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    Accepted,
    Rejected(DecodeError),
    RejectedDag(DagError),
}

/// Decodes `bytes` and, when they are accepted, checks that they re-encode to themselves.
/// Returns the verdict and the largest single allocation the decoding made.
fn probe<T, E>(
    bytes: &[u8],
    decode: impl FnOnce(&[u8]) -> Result<T, E>,
    encode: impl Fn(&T) -> Vec<u8>,
    verdict: impl Fn(E) -> Verdict,
) -> (Verdict, usize) {
    let (decoded, largest) = largest_allocation(|| decode(bytes));
    let verdict = match decoded {
        Ok(value) => {
            assert_eq!(
                encode(&value),
                bytes,
                "accepted bytes re-encode differently"
            );
            Verdict::Accepted
        }
        Err(error) => verdict(error),
    };
    (verdict, largest)
}

impl Decoder {
    /// Decodes `bytes` (with `txs` as the block's tx count where the decoder needs one).
    fn measure(self, bytes: &[u8], txs: usize) -> (Verdict, usize) {
        match self {
            Decoder::Tx => probe(
                bytes,
                Transaction::decode,
                Transaction::encode,
                Verdict::Rejected,
            ),
            Decoder::Access => probe(
                bytes,
                |b| AccessSets::decode(b, txs),
                AccessSets::encode,
                Verdict::Rejected,
            ),
            Decoder::Dag => probe(
                bytes,
                |b| ConflictDag::decode(b, txs),
                ConflictDag::encode,
                Verdict::RejectedDag,
            ),
            Decoder::Key => probe(bytes, StateKey::decode, StateKey::encode, Verdict::Rejected),
            Decoder::Value => probe(
                bytes,
                StateValue::decode,
                StateValue::encode,
                Verdict::Rejected,
            ),
        }
    }

    /// [`Decoder::measure`], checking the allocation cap.
    fn run(self, bytes: &[u8], txs: usize) -> Verdict {
        let (verdict, largest) = self.measure(bytes, txs);
        assert!(
            largest <= allocation_cap(bytes.len()),
            "{self:?} decoding {} bytes (tx count {txs}) allocated {largest} at once: {bytes:02x?}",
            bytes.len()
        );
        verdict
    }

    /// Tx counts worth trying on bytes of unknown origin: small ones, and the one the bytes
    /// themselves announce where that is their first field.
    fn tx_counts(self, bytes: &[u8]) -> Vec<usize> {
        let mut counts = vec![0, 1, 2, 3];
        if self == Decoder::Dag
            && let Some(announced) = leading_varint(bytes)
        {
            counts.push(announced as usize);
        }
        counts
    }
}

// Strategies for valid values.

/// Keys from a small space, so that txs share them.
fn key() -> impl Strategy<Value = StateKey> {
    prop_oneof![
        (0u8..6).prop_map(|b| StateKey::Account(Address([b; 32]))),
        (0u32..6).prop_map(|i| StateKey::Name(Name::new(&format!("n{i}")).expect("valid"))),
        (0u64..4).prop_map(|i| StateKey::Name(Name::new(&"z".repeat(i as usize + 1)).expect("ok"))),
        (0u64..10).prop_map(StateKey::WorkSlot),
        any::<u64>().prop_map(StateKey::WorkSlot),
        address().prop_map(StateKey::Account),
    ]
}

fn access_sets() -> impl Strategy<Value = AccessSets> {
    let mode = prop_oneof![Just(AccessMode::Read), Just(AccessMode::Write)];
    prop::collection::vec(prop::collection::vec((key(), mode), 0..8), 0..24)
        .prop_map(|per_tx| AccessSets::from_per_tx(&per_tx))
}

/// Valid DAGs: the canonical DAG of random access sets, or random forward edges.
fn dag() -> impl Strategy<Value = ConflictDag> {
    let random = forward_dag(0..6, 0..40);
    prop_oneof![
        access_sets().prop_map(|sets| ConflictDag::derive(&sets)),
        random
    ]
}

/// One change to a valid encoding: the shared engine's single-byte edits, extension by one
/// byte, and no hostile fields.
fn mutation() -> impl Strategy<Value = Mutation> {
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
        any::<u8>().prop_map(|byte| Mutation::Extend(vec![byte])),
    ]
}

/// A valid value of some decoder's type, as (decoder, bytes, tx count).
fn encoding() -> impl Strategy<Value = (Decoder, Vec<u8>, usize)> {
    prop_oneof![
        transaction().prop_map(|tx| (Decoder::Tx, tx.encode(), 0)),
        access_sets().prop_map(|sets| (Decoder::Access, sets.encode(), sets.tx_count())),
        dag().prop_map(|dag| (Decoder::Dag, dag.encode(), dag.tx_count())),
        key().prop_map(|key| (Decoder::Key, key.encode(), 0)),
        value().prop_map(|value| (Decoder::Value, value.encode(), 0)),
    ]
}

fn round_trips<T: PartialEq + Debug>(value: &T, bytes: &[u8], decoded: Result<T, impl Debug>) {
    let decoded = decoded.unwrap_or_else(|error| panic!("{value:?} fails to decode: {error:?}"));
    assert_eq!(&decoded, value, "{bytes:02x?}");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic_or_overallocate(
        bytes in prop::collection::vec(any::<u8>(), 0..700),
    ) {
        for decoder in DECODERS {
            for txs in decoder.tx_counts(&bytes) {
                decoder.run(&bytes, txs);
            }
        }
    }

    #[test]
    fn mutated_encodings_never_panic_or_overallocate(
        (decoder, bytes, txs) in encoding(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        prop_assert_eq!(decoder.run(&bytes, txs), Verdict::Accepted, "the original is valid");
        let mutated = mutate(bytes, &mutations, &[]);
        for txs in [txs, txs + 1, txs.saturating_sub(1)] {
            decoder.run(&mutated, txs);
        }
    }

    #[test]
    fn transactions_round_trip(tx in transaction()) {
        let bytes = tx.encode();
        prop_assert!(bytes.len() <= TX_BYTES_MAX);
        round_trips(&tx, &bytes, Transaction::decode(&bytes));
        prop_assert_eq!(Decoder::Tx.run(&bytes, 0), Verdict::Accepted);
    }

    #[test]
    fn access_sets_round_trip(sets in access_sets()) {
        let bytes = sets.encode();
        round_trips(&sets, &bytes, AccessSets::decode(&bytes, sets.tx_count()));
        prop_assert_eq!(Decoder::Access.run(&bytes, sets.tx_count()), Verdict::Accepted);
    }

    #[test]
    fn dags_round_trip(dag in dag()) {
        let bytes = dag.encode();
        round_trips(&dag, &bytes, ConflictDag::decode(&bytes, dag.tx_count()));
        prop_assert_eq!(Decoder::Dag.run(&bytes, dag.tx_count()), Verdict::Accepted);
    }

    #[test]
    fn keys_and_values_round_trip(key in key(), value in value()) {
        let bytes = key.encode();
        round_trips(&key, &bytes, StateKey::decode(&bytes));
        let bytes = value.encode();
        round_trips(&value, &bytes, StateValue::decode(&bytes));
    }
}

/// The probe sees allocations at all: otherwise every cap above would hold vacuously.
#[test]
fn the_allocation_probe_sees_allocations() {
    let (buffer, largest) = largest_allocation(|| Vec::<u8>::with_capacity(1 << 20));
    assert!(largest >= 1 << 20, "probe saw {largest}");
    drop(buffer);
    let ((), largest) = largest_allocation(|| ());
    assert_eq!(largest, 0);
}

fn valid_tx() -> Transaction {
    Transaction {
        chain_id: ChainId::new("weft-test").expect("valid"),
        sender: Address([3; 32]),
        nonce: 9,
        payload: Payload::Work {
            slots: WorkSlots::new(vec![1, 5]).expect("valid"),
            rounds: 3,
        },
        signature: [7; 64],
    }
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Bytes built to make a careless decoder allocate, loop, or accept a second form, and the
/// exact verdict each must get.
#[test]
fn crafted_inputs_get_their_exact_verdict() {
    use Decoder::*;
    use Verdict::{Accepted, Rejected, RejectedDag};
    let max = leb128(u64::from(u32::MAX));
    let block_max = leb128(BLOCK_TXS_MAX as u64);
    let tx = valid_tx().encode();
    let sets = AccessSets::from_per_tx(&[
        vec![(StateKey::WorkSlot(1), AccessMode::Write)],
        vec![(StateKey::WorkSlot(1), AccessMode::Read)],
    ]);
    let dag = ConflictDag::derive(&sets);
    let name_key = StateKey::Name(Name::new("a").expect("valid")).encode();
    let slot_key = StateKey::WorkSlot(1).encode();
    let end = |what| Rejected(DecodeError::UnexpectedEnd { what });
    let invalid = |what, reason| Rejected(DecodeError::Invalid { what, reason });
    let over =
        |what, value: u64, limit: u64| Rejected(DecodeError::OverLimit { what, value, limit });
    let dag_err = |error: DecodeError| RejectedDag(DagError::Malformed(error));
    let trailing = |count| Rejected(DecodeError::TrailingBytes { count });
    let truncated_tx = &tx[..tx.len() - 1];
    let cases: Vec<(&str, Decoder, Vec<u8>, usize, Verdict)> = vec![
        // Transactions.
        ("valid tx", Tx, tx.clone(), 0, Accepted),
        (
            "tx one byte over the cap",
            Tx,
            vec![0; TX_BYTES_MAX + 1],
            0,
            Rejected(DecodeError::TooLarge {
                len: TX_BYTES_MAX + 1,
                cap: TX_BYTES_MAX,
            }),
        ),
        (
            "tx exactly at the cap is decoded, not capped",
            Tx,
            vec![0; TX_BYTES_MAX],
            0,
            invalid("chain id", "length must be 1 to 50 bytes"),
        ),
        (
            "tx with a trailing byte",
            Tx,
            concat(&[&tx, &[0]]),
            0,
            trailing(1),
        ),
        (
            "tx missing its last byte",
            Tx,
            truncated_tx.to_vec(),
            0,
            end("signature"),
        ),
        ("empty tx", Tx, vec![], 0, end("chain id length")),
        (
            "chain id of 51 bytes",
            Tx,
            concat(&[&[51], &[b'a'; 51]]),
            0,
            over("chain id length", 51, 50),
        ),
        (
            "chain id with a space",
            Tx,
            concat(&[&[3], b"a b"]),
            0,
            invalid("chain id", "allowed characters are A-Z a-z 0-9 . _ -"),
        ),
        (
            "chain id not UTF-8",
            Tx,
            concat(&[&[2], &[0xc3, 0x28]]),
            0,
            invalid("chain id", "not UTF-8"),
        ),
        (
            "unknown payload kind",
            Tx,
            concat(&[&[1, b'c'], &[0; 32], &[0; 8], &[5]]),
            0,
            Rejected(DecodeError::UnknownTag {
                what: "payload kind",
                tag: 5,
            }),
        ),
        (
            "validator update naming a key off the curve",
            Tx,
            concat(&[&[1, b'c'], &[0; 32], &[0; 8], &[4, 2], &[0; 31], &[0; 8]]),
            0,
            Rejected(DecodeError::Invalid {
                what: "validator key",
                reason: "not an ed25519 public key",
            }),
        ),
        (
            "name of 33 bytes",
            Tx,
            concat(&[&[1, b'c'], &[0; 32], &[0; 8], &[1, 33], &[b'a'; 33]]),
            0,
            over("name length", 33, 32),
        ),
        (
            "empty name",
            Tx,
            concat(&[&[1, b'c'], &[0; 32], &[0; 8], &[1, 0]]),
            0,
            invalid("name", "length must be 1 to 32 bytes"),
        ),
        (
            "upper-case name",
            Tx,
            concat(&[&[1, b'c'], &[0; 32], &[0; 8], &[1, 1, b'A']]),
            0,
            invalid("name", "allowed characters are a-z 0-9 -"),
        ),
        (
            "work over no slots",
            Tx,
            concat(&[&[1, b'c'], &[0; 32], &[0; 8], &[3, 0]]),
            0,
            over("work slot count", 0, 8),
        ),
        (
            "work over 255 slots, then nothing",
            Tx,
            concat(&[&[1, b'c'], &[0; 32], &[0; 8], &[3, 255]]),
            0,
            over("work slot count", 255, 8),
        ),
        (
            "work slots repeated",
            Tx,
            concat(&[
                &[1, b'c'],
                &[0; 32],
                &[0; 8],
                &[3, 2],
                &[5, 0, 0, 0, 0, 0, 0, 0],
                &[5, 0, 0, 0, 0, 0, 0, 0],
            ]),
            0,
            invalid("work slots", "not strictly ascending"),
        ),
        (
            "work rounds one over the limit",
            Tx,
            concat(&[
                &[1, b'c'],
                &[0; 32],
                &[0; 8],
                &[3, 1],
                &[0; 8],
                &(WORK_ROUNDS_MAX + 1).to_le_bytes(),
            ]),
            0,
            over(
                "work rounds",
                u64::from(WORK_ROUNDS_MAX) + 1,
                u64::from(WORK_ROUNDS_MAX),
            ),
        ),
        // Access sets.
        ("valid access sets", Access, sets.encode(), 2, Accepted),
        (
            "access sets for another tx count",
            Access,
            sets.encode(),
            3,
            invalid("access sets", "tx count differs from the block's"),
        ),
        (
            "2^32-1 keys, then nothing",
            Access,
            max.clone(),
            0,
            end("state key kind"),
        ),
        (
            "2^32-1 keys, then one name key",
            Access,
            concat(&[&max, &name_key]),
            0,
            end("state key kind"),
        ),
        (
            "no keys, 2^32-1 txs",
            Access,
            concat(&[&[0], &max]),
            0,
            over("access tx count", u64::from(u32::MAX), BLOCK_TXS_MAX as u64),
        ),
        (
            "no keys, the most txs, then nothing",
            Access,
            concat(&[&[0], &block_max]),
            BLOCK_TXS_MAX,
            end("tx access count"),
        ),
        (
            "a tx with 2^32-1 accesses",
            Access,
            concat(&[&[0, 1], &max]),
            1,
            over("tx access count", u64::from(u32::MAX), 32),
        ),
        (
            "a tx with 32 accesses, then nothing",
            Access,
            concat(&[&[1], &slot_key, &[1, 32]]),
            1,
            end("access"),
        ),
        (
            "non-minimal key count",
            Access,
            vec![0x80, 0x00, 0x00],
            0,
            Rejected(DecodeError::NonCanonicalVarint {
                what: "access key count",
            }),
        ),
        (
            "varint past u32",
            Access,
            vec![0xff, 0xff, 0xff, 0xff, 0x1f],
            0,
            Rejected(DecodeError::NonCanonicalVarint {
                what: "access key count",
            }),
        ),
        (
            "keys not ascending",
            Access,
            concat(&[&[2], &slot_key, &slot_key, &[1, 2, 0, 0]]),
            1,
            invalid("access sets", "key table is not strictly ascending"),
        ),
        (
            "an access past the key table",
            Access,
            concat(&[&[1], &slot_key, &[1, 1, 2]]),
            1,
            invalid("access sets", "access names a key outside the table"),
        ),
        (
            "a key no tx uses",
            Access,
            concat(&[&[1], &slot_key, &[1, 0]]),
            1,
            invalid("access sets", "key table holds a key no tx uses"),
        ),
        (
            "access sets with a trailing byte",
            Access,
            concat(&[&sets.encode(), &[0]]),
            2,
            trailing(1),
        ),
        (
            "access sets over the cap",
            Access,
            vec![0; ACCESS_SETS_BYTES_MAX + 1],
            0,
            Rejected(DecodeError::TooLarge {
                len: ACCESS_SETS_BYTES_MAX + 1,
                cap: ACCESS_SETS_BYTES_MAX,
            }),
        ),
        // DAGs.
        ("valid DAG", Dag, dag.encode(), 2, Accepted),
        ("empty DAG", Dag, vec![0], 0, Accepted),
        (
            "DAG for another tx count",
            Dag,
            dag.encode(),
            3,
            RejectedDag(DagError::TxCountMismatch { dag: 2, block: 3 }),
        ),
        (
            "2^32-1 txs",
            Dag,
            max.clone(),
            0,
            dag_err(DecodeError::OverLimit {
                what: "DAG tx count",
                value: u64::from(u32::MAX),
                limit: BLOCK_TXS_MAX as u64,
            }),
        ),
        (
            "the most txs, then nothing",
            Dag,
            block_max.clone(),
            BLOCK_TXS_MAX,
            dag_err(DecodeError::UnexpectedEnd {
                what: "DAG predecessor count",
            }),
        ),
        (
            "2^32-1 predecessors, then nothing",
            Dag,
            concat(&[&[1], &max]),
            1,
            dag_err(DecodeError::UnexpectedEnd {
                what: "DAG predecessor",
            }),
        ),
        (
            "2^32-1 predecessors, then 64 KiB of them",
            Dag,
            concat(&[&[1], &max, &[0; 65_536]]),
            1,
            dag_err(DecodeError::UnexpectedEnd {
                what: "DAG predecessor",
            }),
        ),
        (
            "non-minimal tx count",
            Dag,
            vec![0x80, 0x00],
            0,
            dag_err(DecodeError::NonCanonicalVarint {
                what: "DAG tx count",
            }),
        ),
        (
            "non-minimal predecessor",
            Dag,
            vec![2, 0, 1, 0x80, 0x00],
            2,
            dag_err(DecodeError::NonCanonicalVarint {
                what: "DAG predecessor",
            }),
        ),
        (
            "backward edge",
            Dag,
            vec![2, 1, 1, 0],
            2,
            RejectedDag(DagError::Cyclic { from: 1, to: 0 }),
        ),
        (
            "self loop",
            Dag,
            vec![2, 0, 1, 1],
            2,
            RejectedDag(DagError::Cyclic { from: 1, to: 1 }),
        ),
        (
            "predecessor out of range",
            Dag,
            vec![2, 0, 1, 7],
            2,
            RejectedDag(DagError::IndexOutOfRange {
                tx: 1,
                pred: 7,
                txs: 2,
            }),
        ),
        (
            "predecessor gap past u32",
            Dag,
            concat(&[&[2, 0, 2, 0], &max]),
            2,
            RejectedDag(DagError::IndexOutOfRange {
                tx: 1,
                pred: u32::MAX,
                txs: 2,
            }),
        ),
        (
            "DAG with a trailing byte",
            Dag,
            concat(&[&dag.encode(), &[0]]),
            2,
            dag_err(DecodeError::TrailingBytes { count: 1 }),
        ),
        (
            "DAG over the cap",
            Dag,
            vec![0; DAG_BYTES_MAX + 1],
            0,
            dag_err(DecodeError::TooLarge {
                len: DAG_BYTES_MAX + 1,
                cap: DAG_BYTES_MAX,
            }),
        ),
        // State keys and values.
        ("valid name key", Key, name_key.clone(), 0, Accepted),
        ("empty key", Key, vec![], 0, end("state key kind")),
        (
            "unknown key kind",
            Key,
            vec![6],
            0,
            Rejected(DecodeError::UnknownTag {
                what: "state key kind",
                tag: 6,
            }),
        ),
        (
            "validator key off the curve",
            Key,
            concat(&[&[3, 2], &[0; 31]]),
            0,
            Rejected(DecodeError::Invalid {
                what: "validator key",
                reason: "not an ed25519 public key",
            }),
        ),
        (
            "key with a trailing byte",
            Key,
            concat(&[&slot_key, &[0]]),
            0,
            trailing(1),
        ),
        (
            "short slot key",
            Key,
            slot_key[..8].to_vec(),
            0,
            end("work slot"),
        ),
        (
            "name key of 33 bytes",
            Key,
            concat(&[&[1, 33], &[b'a'; 33]]),
            0,
            over("name length", 33, 32),
        ),
        (
            "valid value",
            Value,
            StateValue::WorkDigest([1; 32]).encode(),
            0,
            Accepted,
        ),
        (
            "unknown value kind",
            Value,
            vec![9],
            0,
            Rejected(DecodeError::UnknownTag {
                what: "state value kind",
                tag: 9,
            }),
        ),
        ("short account value", Value, vec![0; 16], 0, end("nonce")),
        (
            "value with a trailing byte",
            Value,
            concat(&[&StateValue::NameOwner(Address([2; 32])).encode(), &[0]]),
            0,
            trailing(1),
        ),
    ];
    for (name, decoder, bytes, txs, expected) in cases {
        assert_eq!(decoder.run(&bytes, txs), expected, "{name}");
    }
}

/// A huge announced count must not even reserve memory for what could follow: the largest
/// allocation is bounded by a few KiB, not by the count.
#[test]
fn huge_counts_allocate_nothing_big() {
    let max = leb128(u64::from(u32::MAX));
    let cases: Vec<(&str, Decoder, Vec<u8>, usize)> = vec![
        ("keys", Decoder::Access, max.clone(), 0),
        (
            "txs",
            Decoder::Access,
            concat(&[&[0], &leb128(BLOCK_TXS_MAX as u64)]),
            BLOCK_TXS_MAX,
        ),
        ("accesses", Decoder::Access, concat(&[&[0, 1], &max]), 1),
        (
            "DAG txs",
            Decoder::Dag,
            leb128(BLOCK_TXS_MAX as u64),
            BLOCK_TXS_MAX,
        ),
        ("predecessors", Decoder::Dag, concat(&[&[1], &max]), 1),
    ];
    for (name, decoder, bytes, txs) in cases {
        let (verdict, largest) = decoder.measure(&bytes, txs);
        assert_ne!(verdict, Verdict::Accepted, "{name}");
        assert!(largest <= 4096, "{name}: {largest} bytes at once");
    }
}
