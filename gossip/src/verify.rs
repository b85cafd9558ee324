//! Signature checks for consensus messages, before any semantic decision is taken on them.
//!
//! A bundle's votes are checked in one batch (bisected on failure, as for transactions), so a
//! bad signature costs its own vote and the sender's score, never the valid votes beside it.

use ed25519_dalek::{Signer, SigningKey};
use thiserror::Error;
use weft_consensus::{Proposal, Signature, Signed, SignedProposal, SignedVote, ValidatorSet, Vote};
use weft_execution::SignatureError;
use weft_execution::sig::{Detached, verify_detached};

/// Why a consensus message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Rejection {
    #[error("signer is not in the validator set")]
    UnknownValidator,
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

/// Checks each vote's signer and signature; one verdict per vote, in order.
pub fn verify_votes(
    chain_id: &str,
    validators: &ValidatorSet,
    votes: &[SignedVote],
) -> Vec<Result<(), Rejection>> {
    let sign_bytes: Vec<Vec<u8>> = votes
        .iter()
        .map(|v| v.message.sign_bytes(chain_id))
        .collect();
    let known: Vec<bool> = votes
        .iter()
        .map(|v| validators.power(&v.message.validator).is_some())
        .collect();
    let items: Vec<Detached<'_>> = votes
        .iter()
        .zip(&sign_bytes)
        .zip(&known)
        .filter(|(_, known)| **known)
        .map(|((vote, bytes), _)| Detached {
            key: &vote.message.validator.0,
            message: bytes,
            signature: &vote.signature.0,
        })
        .collect();
    let mut checked = verify_detached(&items).into_iter();
    known
        .iter()
        .map(|known| match known {
            false => Err(Rejection::UnknownValidator),
            true => checked
                .next()
                .expect("one verdict per known signer")
                .map_err(Rejection::from),
        })
        .collect()
}

/// Checks a proposal's proposer and signature.
pub fn verify_proposal(
    chain_id: &str,
    validators: &ValidatorSet,
    proposal: &SignedProposal,
) -> Result<(), Rejection> {
    if validators.power(&proposal.message.proposer).is_none() {
        return Err(Rejection::UnknownValidator);
    }
    let bytes = proposal.message.sign_bytes(chain_id);
    let item = Detached {
        key: &proposal.message.proposer.0,
        message: &bytes,
        signature: &proposal.signature.0,
    };
    verify_detached(&[item])
        .pop()
        .expect("one verdict")
        .map_err(Rejection::from)
}

/// Signs a vote over its chain-bound sign bytes (the counterpart of [`verify_votes`]).
pub fn sign_vote(key: &SigningKey, chain_id: &str, vote: Vote) -> SignedVote {
    Signed {
        message: vote,
        signature: Signature(key.sign(&vote.sign_bytes(chain_id)).to_bytes()),
    }
}

/// Signs a proposal over its chain-bound sign bytes (the counterpart of [`verify_proposal`]).
pub fn sign_proposal(key: &SigningKey, chain_id: &str, proposal: Proposal) -> SignedProposal {
    Signed {
        message: proposal,
        signature: Signature(key.sign(&proposal.sign_bytes(chain_id)).to_bytes()),
    }
}
