//! Batched signature verification blames exactly the txs that are bad, with the reason, on any
//! pool, and agrees with verifying each tx alone.

use ed25519_dalek::VerifyingKey;
use weft_execution::sig::{SIGNATURE_BATCH_LEN_MAX, batch_len};
use weft_execution::workload::Workload;
use weft_execution::{
    Address, ChainId, Payload, SignatureError, Transaction, verify_signature, verify_signatures,
};

use crate::support::parallel_executors;

/// How one tx is spoiled after signing.
#[derive(Clone, Copy, Debug)]
enum Spoil {
    /// Flip bits of one signature byte.
    SignatureByte(usize),
    /// Change the amount, keeping the old signature.
    Amount,
    Nonce,
    ChainId,
    /// Claim another sender (a valid key, a weak one, or bytes that are no point).
    Sender([u8; 32]),
}

fn spoil(tx: &mut Transaction, how: Spoil) {
    match how {
        Spoil::SignatureByte(at) => tx.signature[at] ^= 0x21,
        Spoil::Amount => match &mut tx.payload {
            Payload::Transfer { amount, .. } | Payload::PayName { amount, .. } => {
                *amount ^= 1;
            }
            other => panic!("no amount in {other:?}"),
        },
        Spoil::Nonce => tx.nonce += 1,
        Spoil::ChainId => tx.chain_id = ChainId::new("weft-other").expect("valid"),
        Spoil::Sender(key) => tx.sender = Address(key),
    }
}

/// Which txs of a block are spoiled, and how.
type Spoiled = Vec<(usize, Spoil)>;

/// The identity point: order 1.
const IDENTITY: [u8; 32] = {
    let mut key = [0; 32];
    key[0] = 1;
    key
};

/// y = 0: a point of order 4.
const ORDER_FOUR: [u8; 32] = [0; 32];

/// y = -1 = 2^255 - 20: the point of order 2.
const ORDER_TWO: [u8; 32] = {
    let mut key = [0xff; 32];
    key[0] = 0xec;
    key[31] = 0x7f;
    key
};

/// The first of a few candidate encodings that does not decompress to a curve point.
fn not_a_point() -> [u8; 32] {
    (2u8..=255)
        .map(|y| {
            let mut key = [0; 32];
            key[0] = y;
            key
        })
        .find(|key| VerifyingKey::from_bytes(key).is_err())
        .expect("about half of all y coordinates are off the curve")
}

/// Length of the runs of spoiled txs below: long enough to span bisection levels.
const RUN_LEN: usize = 128;

/// A block of transfers that all verify: more than one batch long.
fn transfers() -> Vec<Transaction> {
    Workload::Uniform { accounts: 64 }
        .generate(4 * RUN_LEN + 7, 5)
        .txs
}

/// Spoils `spoiled` txs of `txs` and checks that exactly those fail, with `expected`.
fn check(
    name: &str,
    mut txs: Vec<Transaction>,
    spoiled: &[(usize, Spoil)],
    expected: SignatureError,
) {
    for &(index, how) in spoiled {
        spoil(&mut txs[index], how);
    }
    let want: Vec<Result<(), SignatureError>> = (0..txs.len())
        .map(|index| {
            if spoiled.iter().any(|(i, _)| *i == index) {
                Err(expected)
            } else {
                Ok(())
            }
        })
        .collect();
    check_verdicts(name, &txs, &want);
}

/// Checks that `txs` get the verdicts `want` whether verified one by one, on the global pool,
/// or on the pools of 1- and 2-thread executors (batch sizes follow the pool's width).
fn check_verdicts(name: &str, txs: &[Transaction], want: &[Result<(), SignatureError>]) {
    let alone: Vec<_> = txs.iter().map(verify_signature).collect();
    assert_eq!(alone, want, "{name}: one by one");
    assert_eq!(verify_signatures(txs), want, "{name}: global pool");
    for executor in &parallel_executors()[..2] {
        let threads = executor.config().threads;
        let pooled = executor.install(|| verify_signatures(txs));
        assert_eq!(pooled, want, "{name}: {threads}-thread pool");
    }
}

#[test]
fn exactly_the_spoiled_txs_fail() {
    use SignatureError::{BadSignature, MalformedKey, WeakKey};
    use Spoil::*;
    let base = transfers();
    let last = base.len() - 1;
    let middle = base.len() / 2;
    let other_sender = base
        .iter()
        .map(|tx| tx.sender)
        .find(|sender| *sender != base[7].sender)
        .expect("several senders")
        .0;
    let run = |from: usize, len: usize, how: fn(usize) -> Spoil| -> Spoiled {
        (from..from + len).map(|i| (i, how(i))).collect()
    };
    let run_of_bad = run(100, RUN_LEN, |i| SignatureByte(i % 64));
    let run_of_weak = run(150, RUN_LEN, |_| Sender(IDENTITY));
    let all_bad = run(0, base.len(), |i| SignatureByte(i % 64));
    let all_weak = run(0, base.len(), |_| Sender(ORDER_TWO));
    let scattered: Spoiled = (0..base.len()).step_by(37).map(|i| (i, Amount)).collect();
    let cases: Vec<(&str, Spoiled, SignatureError)> = vec![
        ("nothing spoiled", vec![], BadSignature),
        (
            "first signature byte of the first tx",
            vec![(0, SignatureByte(0))],
            BadSignature,
        ),
        (
            "last byte of R",
            vec![(63, SignatureByte(31))],
            BadSignature,
        ),
        (
            "first byte of s",
            vec![(64, SignatureByte(32))],
            BadSignature,
        ),
        (
            "last byte of s, last tx",
            vec![(last, SignatureByte(63))],
            BadSignature,
        ),
        (
            "amount, old signature kept",
            vec![(3, Amount)],
            BadSignature,
        ),
        (
            "nonce, old signature kept",
            vec![(200, Nonce)],
            BadSignature,
        ),
        (
            "chain id, old signature kept",
            vec![(last - 1, ChainId)],
            BadSignature,
        ),
        (
            "another valid sender",
            vec![(7, Sender(other_sender))],
            BadSignature,
        ),
        (
            "two neighbours",
            vec![(middle, Amount), (middle + 1, Nonce)],
            BadSignature,
        ),
        (
            "first, middle and last",
            vec![(0, Amount), (middle, Nonce), (last, SignatureByte(5))],
            BadSignature,
        ),
        ("every 37th", scattered, BadSignature),
        ("a run of bad signatures", run_of_bad, BadSignature),
        ("every signature", all_bad, BadSignature),
        ("identity key", vec![(9, Sender(IDENTITY))], WeakKey),
        ("order-4 key", vec![(middle, Sender(ORDER_FOUR))], WeakKey),
        ("order-2 key", vec![(last, Sender(ORDER_TWO))], WeakKey),
        ("a run of weak keys", run_of_weak, WeakKey),
        ("every key weak", all_weak, WeakKey),
        (
            "key that is no point",
            vec![(0, Sender(not_a_point())), (last, Sender(not_a_point()))],
            MalformedKey,
        ),
    ];
    for (name, spoiled, expected) in cases {
        check(name, base.clone(), &spoiled, expected);
    }
}

/// Blocks several batches long, with spoiled txs on batch boundaries.
#[test]
fn large_blocks_blame_exactly_the_spoiled_txs() {
    use Spoil::*;
    // Eight batches of a few hundred signatures, plus a short last one.
    let len = 3 * SIGNATURE_BATCH_LEN_MAX + 5;
    let boundary = batch_len(len);
    let base = Workload::Uniform { accounts: 64 }.generate(len, 6).txs;
    let last = len - 1;
    let cases: Vec<(&str, Spoiled, SignatureError)> = vec![
        ("nothing spoiled", vec![], SignatureError::BadSignature),
        (
            "one bad signature per thousand",
            vec![(5, Amount), (2_000, SignatureByte(40)), (last, Nonce)],
            SignatureError::BadSignature,
        ),
        (
            "weak keys around a batch boundary",
            (boundary - 2..boundary + 2)
                .map(|i| (i, Sender(ORDER_FOUR)))
                .collect(),
            SignatureError::WeakKey,
        ),
    ];
    for (name, spoiled, expected) in cases {
        check(name, base.clone(), &spoiled, expected);
    }
}

#[test]
fn every_kind_of_tx_verifies() {
    let cases = [
        (
            "mixed",
            Workload::Mixed {
                accounts: 12,
                names: 5,
            }
            .generate(300, 3)
            .txs,
        ),
        (
            "work",
            Workload::Work {
                accounts: 4,
                rounds: 1,
                slots_per_tx: 8,
                slot_space: 100,
            }
            .generate(150, 4)
            .txs,
        ),
        ("empty block", Vec::new()),
        ("one tx", Workload::Chain { accounts: 2 }.generate(1, 6).txs),
    ];
    for (name, txs) in cases {
        check(name, txs, &[], SignatureError::BadSignature);
    }
}

/// The weak-key constants above really are small-order points, and the non-point is none.
#[test]
fn the_spoiled_keys_are_what_they_claim() {
    for key in [IDENTITY, ORDER_FOUR, ORDER_TWO] {
        let point = VerifyingKey::from_bytes(&key).expect("a curve point");
        assert!(point.is_weak(), "{key:02x?}");
    }
    assert!(VerifyingKey::from_bytes(&not_a_point()).is_err());
}

/// Scalars mod the group order l, as four little-endian u64 limbs: just enough arithmetic to
/// sign by hand with a chosen R.
mod scalar {
    pub type Scalar = [u64; 4];

    /// l = 2^252 + 27742317777372353535851937790883648493.
    const L: Scalar = [
        0x5812_631a_5cf5_d3ed,
        0x14de_f9de_a2f7_9cd6,
        0,
        0x1000_0000_0000_0000,
    ];

    fn reduce(value: &mut Scalar) {
        let at_least_l = (0..4)
            .rev()
            .find(|&i| value[i] != L[i])
            .is_none_or(|i| value[i] > L[i]);
        if at_least_l {
            let mut borrow = false;
            for (limb, l) in value.iter_mut().zip(L) {
                let (difference, under) = limb.overflowing_sub(l);
                let (difference, under_again) = difference.overflowing_sub(u64::from(borrow));
                *limb = difference;
                borrow = under || under_again;
            }
        }
    }

    /// value = 2 * value + bit, mod l (value < l, so nothing overflows 256 bits).
    fn double_plus(value: &mut Scalar, bit: bool) {
        let mut carry = u64::from(bit);
        for limb in value.iter_mut() {
            let top = *limb >> 63;
            *limb = (*limb << 1) | carry;
            carry = top;
        }
        reduce(value);
    }

    fn add(value: &mut Scalar, other: &Scalar) {
        let mut carry = false;
        for (limb, other) in value.iter_mut().zip(other) {
            let (sum, over) = limb.overflowing_add(*other);
            let (sum, over_again) = sum.overflowing_add(u64::from(carry));
            *limb = sum;
            carry = over || over_again;
        }
        reduce(value);
    }

    fn bits_high_first(bytes: &[u8]) -> impl Iterator<Item = bool> + '_ {
        bytes
            .iter()
            .rev()
            .flat_map(|byte| (0..8).rev().map(move |bit| (byte >> bit) & 1 == 1))
    }

    /// A little-endian number of any length, mod l.
    pub fn from_le(bytes: &[u8]) -> Scalar {
        let mut value = [0; 4];
        for bit in bits_high_first(bytes) {
            double_plus(&mut value, bit);
        }
        value
    }

    /// x * y mod l, for x < l.
    pub fn mul(x: &Scalar, y: &[u8; 32]) -> Scalar {
        let mut value = [0; 4];
        for bit in bits_high_first(y) {
            double_plus(&mut value, false);
            if bit {
                add(&mut value, x);
            }
        }
        value
    }

    pub fn to_le(value: &Scalar) -> [u8; 32] {
        let mut out = [0; 32];
        for (chunk, limb) in out.chunks_exact_mut(8).zip(value) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        out
    }
}

/// Signs `tx` by hand with R = the identity point, encoded as `r_bytes`: s = H(R || A || M) * a,
/// so that [s]B = R + [H(R || A || M)]A holds exactly.
fn sign_with_identity_r(tx: &mut Transaction, key: &ed25519_dalek::SigningKey, r_bytes: [u8; 32]) {
    use ed25519_dalek::{Digest, Sha512};
    tx.sender = Address::from(key);
    let hash = Sha512::new()
        .chain_update(r_bytes)
        .chain_update(tx.sender.0)
        .chain_update(tx.sign_bytes())
        .finalize();
    let k = scalar::from_le(&hash);
    let s = scalar::mul(&k, &key.to_scalar().to_bytes());
    tx.signature[..32].copy_from_slice(&r_bytes);
    tx.signature[32..].copy_from_slice(&scalar::to_le(&s));
}

/// The identity point's canonical encoding: y = 1.
const IDENTITY_R: [u8; 32] = IDENTITY;

/// The identity point encoded with y = p + 1, which is not reduced mod p. RFC 8032 rejects such
/// an R; `verify` rejects it (it compares encodings); `verify_batch` decompresses it to the
/// identity and accepts.
const NON_CANONICAL_IDENTITY_R: [u8; 32] = {
    let mut r = [0xff; 32];
    r[0] = 0xee;
    r[31] = 0x7f;
    r
};

/// A hand-made signature whose R is the identity, canonically encoded, verifies alone and in
/// every batch: this checks the hand-signing above.
#[test]
fn a_hand_made_signature_verifies() {
    let key = weft_execution::workload::account_key(77, 0);
    let mut txs = transfers();
    sign_with_identity_r(&mut txs[10], &key, IDENTITY_R);
    let want = vec![Ok(()); txs.len()];
    check_verdicts("identity R, canonical", &txs, &want);
}

/// A signature with a non-canonical R must get the same verdict alone and in any batch, on any
/// pool: otherwise validators whose pools batch a block differently disagree about it. It is
/// rejected before batching, with its own error.
#[test]
fn a_non_canonical_r_gets_one_verdict_however_it_is_batched() {
    let key = weft_execution::workload::account_key(77, 0);
    let mut txs = transfers();
    sign_with_identity_r(&mut txs[10], &key, NON_CANONICAL_IDENTITY_R);
    let lying = txs[10].clone();
    assert_eq!(
        verify_signature(&lying),
        Err(SignatureError::NonCanonicalR),
        "RFC 8032 rejects an R that is not reduced mod p"
    );
    let bad = |at: usize| {
        let mut want = vec![Ok(()); txs.len()];
        want[at] = Err(SignatureError::NonCanonicalR);
        want
    };
    check_verdicts(
        "alone",
        std::slice::from_ref(&lying),
        &[Err(SignatureError::NonCanonicalR)],
    );
    check_verdicts("among good signatures", &txs, &bad(10));
    let mut neighbour = txs.clone();
    spoil(&mut neighbour[11], Spoil::Amount);
    let mut want = bad(10);
    want[11] = Err(SignatureError::BadSignature);
    check_verdicts("next to a bad signature", &neighbour, &want);
}
