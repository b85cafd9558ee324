//! Batched, parallel verification of a block's transaction signatures.
//!
//! Signatures are checked in batches with ed25519-dalek's `verify_batch`, one batch per rayon
//! task. Batches are as large as the pool's width allows, up to [`SIGNATURE_BATCH_LEN_MAX`]:
//! the per-signature cost falls from ~19 µs at 64 to ~14 µs at 1024 on this machine. A batch that
//! fails is bisected, so a few bad signatures cost a few extra batch checks, not one single
//! verification per signature. Weak
//! (small-order) public keys are rejected before batching: `verify_batch` does not check them.
//! See docs/adr/0004-signature-verification.md for the remaining gap between batch and single
//! verification.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use rayon::prelude::*;
use thiserror::Error;

use crate::tx::Transaction;

/// Most signatures per `verify_batch` call.
pub const SIGNATURE_BATCH_LEN_MAX: usize = 1024;
/// Fewest signatures per batch when a block is split over the pool.
pub const SIGNATURE_BATCH_LEN_MIN: usize = 64;
/// Below this many signatures, a failed batch is checked one signature at a time.
const BISECT_LEN_MIN: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error("sender key is not a valid ed25519 point")]
    MalformedKey,
    #[error("sender key has small order")]
    WeakKey,
    #[error("signature does not verify")]
    BadSignature,
}

/// Verifies every tx's signature on the current rayon pool (call it inside
/// [`crate::ParallelExecutor::install`] to pick the pool). Returns one verdict per tx, in order.
pub fn verify_signatures(txs: &[Transaction]) -> Vec<Result<(), SignatureError>> {
    // Two batches per thread: large batches, and still some slack for uneven threads.
    let batch_len = txs
        .len()
        .div_ceil(rayon::current_num_threads() * 2)
        .clamp(SIGNATURE_BATCH_LEN_MIN, SIGNATURE_BATCH_LEN_MAX);
    txs.par_chunks(batch_len)
        .flat_map_iter(verify_chunk)
        .collect()
}

/// Verifies one tx's signature on the calling thread.
pub fn verify_signature(tx: &Transaction) -> Result<(), SignatureError> {
    let key = decode_key(tx)?;
    let signature = Signature::from_bytes(&tx.signature);
    key.verify(&tx.sign_bytes(), &signature)
        .map_err(|_| SignatureError::BadSignature)
}

fn decode_key(tx: &Transaction) -> Result<VerifyingKey, SignatureError> {
    let key = VerifyingKey::from_bytes(&tx.sender.0).map_err(|_| SignatureError::MalformedKey)?;
    if key.is_weak() {
        return Err(SignatureError::WeakKey);
    }
    Ok(key)
}

fn verify_chunk(chunk: &[Transaction]) -> Vec<Result<(), SignatureError>> {
    let mut verdicts: Vec<Result<(), SignatureError>> = Vec::with_capacity(chunk.len());
    let mut keys = Vec::with_capacity(chunk.len());
    let mut signatures = Vec::with_capacity(chunk.len());
    let mut message_bytes = Vec::with_capacity(chunk.len() * 128);
    let mut message_ends = Vec::with_capacity(chunk.len());
    for tx in chunk {
        match decode_key(tx) {
            Ok(key) => {
                keys.push(key);
                signatures.push(Signature::from_bytes(&tx.signature));
                tx.write_sign_bytes(&mut message_bytes);
                message_ends.push(message_bytes.len());
                verdicts.push(Ok(()));
            }
            Err(error) => verdicts.push(Err(error)),
        }
    }
    let mut messages = Vec::with_capacity(message_ends.len());
    let mut start = 0;
    for &end in &message_ends {
        messages.push(&message_bytes[start..end]);
        start = end;
    }
    let mut bad = Vec::new();
    find_bad(&messages, &signatures, &keys, 0, &mut bad);
    // `bad` indexes the candidates, i.e. the txs whose keys decoded, in order.
    let mut bad = bad.into_iter().peekable();
    let candidates = verdicts.iter_mut().filter(|verdict| verdict.is_ok());
    for (candidate, verdict) in candidates.enumerate() {
        if bad.next_if_eq(&candidate).is_some() {
            *verdict = Err(SignatureError::BadSignature);
        }
    }
    verdicts
}

/// Pushes onto `bad`, ascending, the positions (offset by `base`) of the signatures that fail.
fn find_bad(
    messages: &[&[u8]],
    signatures: &[Signature],
    keys: &[VerifyingKey],
    base: usize,
    bad: &mut Vec<usize>,
) {
    if ed25519_dalek::verify_batch(messages, signatures, keys).is_ok() {
        return;
    }
    if messages.len() <= BISECT_LEN_MIN {
        for (index, key) in keys.iter().enumerate() {
            if key.verify(messages[index], &signatures[index]).is_err() {
                bad.push(base + index);
            }
        }
        return;
    }
    let half = messages.len() / 2;
    find_bad(
        &messages[..half],
        &signatures[..half],
        &keys[..half],
        base,
        bad,
    );
    find_bad(
        &messages[half..],
        &signatures[half..],
        &keys[half..],
        base + half,
        bad,
    );
}
