//! Batched, parallel verification of a block's transaction signatures.
//!
//! Signatures are checked in batches of [`SIGNATURE_BATCH_LEN`] with ed25519-dalek's
//! `verify_batch`, one batch per rayon task. A batch that fails is re-checked one signature at a
//! time, so a single bad signature costs its own batch a second pass and nothing more. Weak
//! (small-order) public keys are rejected before batching: `verify_batch` does not check them.
//! See docs/adr/0004-signature-verification.md for the remaining gap between batch and single
//! verification.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use rayon::prelude::*;
use thiserror::Error;

use crate::tx::Transaction;

/// Signatures per `verify_batch` call: large enough to amortise the multiscalar multiplication,
/// small enough to spread a block over every core.
pub const SIGNATURE_BATCH_LEN: usize = 128;

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
    txs.par_chunks(SIGNATURE_BATCH_LEN)
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
    if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
        return verdicts;
    }
    // Some signature in the batch is bad: find which, one by one.
    let candidates = verdicts.iter_mut().filter(|verdict| verdict.is_ok());
    for (candidate, verdict) in candidates.enumerate() {
        if keys[candidate]
            .verify(messages[candidate], &signatures[candidate])
            .is_err()
        {
            *verdict = Err(SignatureError::BadSignature);
        }
    }
    verdicts
}
