//! The consensus wire format: the messages Weft's gossip protocol carries, and their frames.
//!
//! A frame is a 4-byte little-endian length and a payload of at most [`FRAME_BYTES_MAX`] bytes;
//! the length is checked before a byte of the payload is read. A payload is one [`Message`] in
//! the canonical codec of `weft_execution::codec`: fixed-width integers, minimal varints, no
//! trailing bytes, and lists strictly ascending where order is free, so every message has one
//! encoding. Votes and proposals are written by `weft_consensus::codec`, the one encoding of
//! each that the WAL and the double-sign guard use too.
//!
//! Signatures are carried, not checked: receivers batch-verify them before any semantic use.

use std::sync::Arc;

use thiserror::Error;
use weft_consensus::codec;
use weft_consensus::{
    CommitCertificate, Height, Round, Signature, Signed, SignedProposal, SignedVote, ValidatorId,
    ValueId, Vote, VoteType,
};
use weft_execution::codec::{
    DecodeError, Reader, bounded_capacity, check_cap, put_u32, put_u64, put_varint,
};

/// Largest block a proposal may carry: the one block cap, defined beside the tx caps.
pub use weft_execution::access::BLOCK_BYTES_MAX;
/// Most bytes a proposal frame adds around its block (tag, ids, signature, lengths).
pub const PROPOSAL_ENVELOPE_BYTES_MAX: usize = 64 << 10;
/// Largest frame payload: a proposal carries its block, so this is the block cap and the
/// envelope.
pub const FRAME_BYTES_MAX: usize = BLOCK_BYTES_MAX + PROPOSAL_ENVELOPE_BYTES_MAX;
const _: () = assert!(
    FRAME_BYTES_MAX <= u32::MAX as usize,
    "a frame's length prefix is 4 bytes"
);
/// Most signers in one bundle or certificate: more than any validator set Weft runs.
pub const SIGNERS_MAX: u32 = 10_000;

/// Bytes of one (validator, signature) pair.
pub const SIGNER_BYTES: usize = 32 + 64;
const _: () = assert!(
    weft_genesis::genesis::VALIDATORS_MAX <= SIGNERS_MAX as usize,
    "every validator set genesis accepts must fit a commit certificate"
);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("frame of {len} bytes is over the cap of {FRAME_BYTES_MAX}")]
    FrameTooLarge { len: usize },
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Votes of one (type, height, round, value) from several validators, sent as one message: the
/// content once, then a (validator, signature) per voter, validators strictly ascending.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VoteBundle {
    pub vote_type: VoteType,
    pub height: Height,
    pub round: Round,
    pub value: Option<ValueId>,
    pub signers: Vec<(ValidatorId, Signature)>,
}

impl VoteBundle {
    /// Bundles votes that share (type, height, round, value). `None` if they do not, or if there
    /// are none.
    pub fn from_votes(votes: &[SignedVote]) -> Option<Self> {
        let first = votes.first()?.message;
        let same = |v: &SignedVote| {
            let m = v.message;
            (m.vote_type, m.height, m.round, m.value)
                == (first.vote_type, first.height, first.round, first.value)
        };
        if !votes.iter().all(same) {
            return None;
        }
        let mut signers: Vec<_> = votes
            .iter()
            .map(|v| (v.message.validator, v.signature))
            .collect();
        signers.sort_by_key(|(validator, _)| *validator);
        signers.dedup_by_key(|(validator, _)| *validator);
        Some(VoteBundle {
            vote_type: first.vote_type,
            height: first.height,
            round: first.round,
            value: first.value,
            signers,
        })
    }

    /// The individual signed votes.
    pub fn votes(&self) -> impl Iterator<Item = SignedVote> + '_ {
        self.signers.iter().map(|(validator, signature)| Signed {
            message: Vote {
                vote_type: self.vote_type,
                height: self.height,
                round: self.round,
                value: self.value,
                validator: *validator,
            },
            signature: *signature,
        })
    }
}

/// Everything the consensus protocol sends.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    /// The sender's consensus position, so peers can skip what it no longer needs.
    Status {
        height: Height,
        round: Round,
    },
    /// A signed proposal and the block it proposes, in the node's encoding (gossip checks the
    /// binding through the node's [`crate::net::BlockCheck`], never the contents).
    Proposal {
        proposal: SignedProposal,
        block: Arc<[u8]>,
    },
    Vote(SignedVote),
    Bundle(VoteBundle),
    /// A decided height's certificate, sent once instead of the precommits it holds.
    Commit(CommitCertificate),
}

impl Message {
    /// A proposal with no block bytes (tests and benchmarks of the consensus traffic alone).
    pub fn proposal_without_block(proposal: SignedProposal) -> Self {
        Message::Proposal {
            proposal,
            block: Arc::from(&[][..]),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(match self {
            Message::Proposal { block, .. } => 256 + block.len(),
            _ => 128,
        });
        match self {
            Message::Status { height, round } => {
                out.push(0);
                put_u64(&mut out, height.0);
                put_u32(&mut out, round.0);
            }
            Message::Proposal { proposal, block } => {
                out.push(1);
                codec::put_signed_proposal(&mut out, proposal);
                put_varint(&mut out, block.len() as u32);
                out.extend_from_slice(block);
            }
            Message::Vote(vote) => {
                out.push(2);
                codec::put_signed_vote(&mut out, vote);
            }
            Message::Bundle(bundle) => {
                out.push(3);
                codec::put_vote_head(
                    &mut out,
                    bundle.vote_type,
                    bundle.height,
                    bundle.round,
                    bundle.value,
                );
                encode_signers(&mut out, bundle.signers.iter().copied());
            }
            Message::Commit(certificate) => {
                out.push(4);
                put_u64(&mut out, certificate.height.0);
                put_u32(&mut out, certificate.round.0);
                out.extend_from_slice(&certificate.value.0);
                let signers = certificate
                    .precommits
                    .iter()
                    .map(|v| (v.message.validator, v.signature));
                encode_signers(&mut out, signers);
            }
        }
        out
    }

    /// Decodes one canonical payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        check_cap(bytes, FRAME_BYTES_MAX)?;
        let mut reader = Reader::new(bytes);
        let message = match reader.u8("message kind")? {
            0 => Message::Status {
                height: Height(reader.u64("height")?),
                round: Round(reader.u32("round")?),
            },
            1 => {
                let proposal = codec::read_signed_proposal(&mut reader)?;
                let len = reader.varint_max("block bytes", BLOCK_BYTES_MAX as u32)?;
                let block = Arc::from(reader.take(len as usize, "block")?);
                Message::Proposal { proposal, block }
            }
            2 => Message::Vote(codec::read_signed_vote(&mut reader)?),
            3 => {
                let (vote_type, height, round, value) = codec::read_vote_head(&mut reader)?;
                let signers = decode_signers(&mut reader)?;
                Message::Bundle(VoteBundle {
                    vote_type,
                    height,
                    round,
                    value,
                    signers,
                })
            }
            4 => Message::Commit(decode_commit(&mut reader)?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "message kind",
                    tag,
                }
                .into());
            }
        };
        reader.finish()?;
        Ok(message)
    }

    /// The message as a frame: length, then payload.
    pub fn to_frame(&self) -> Vec<u8> {
        let payload = self.encode();
        let mut frame = Vec::with_capacity(payload.len() + 4);
        put_u32(&mut frame, payload.len() as u32);
        frame.extend_from_slice(&payload);
        frame
    }
}

/// The payload length a frame header announces, checked against the cap before anything is
/// read or allocated.
pub fn frame_len(header: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(WireError::FrameTooLarge { len });
    }
    Ok(len)
}

fn encode_signers(
    out: &mut Vec<u8>,
    signers: impl ExactSizeIterator<Item = (ValidatorId, Signature)>,
) {
    put_varint(out, signers.len() as u32);
    for (validator, signature) in signers {
        out.extend_from_slice(&validator.0);
        out.extend_from_slice(&signature.0);
    }
}

/// At least one signer, validators strictly ascending.
fn decode_signers(reader: &mut Reader<'_>) -> Result<Vec<(ValidatorId, Signature)>, DecodeError> {
    let count = reader.varint_max("signer count", SIGNERS_MAX)?;
    if count == 0 {
        return Err(DecodeError::Invalid {
            what: "signers",
            reason: "empty",
        });
    }
    let mut signers: Vec<(ValidatorId, Signature)> =
        Vec::with_capacity(bounded_capacity(count, reader, SIGNER_BYTES));
    for _ in 0..count {
        let validator = ValidatorId(reader.array("signer")?);
        let signature = Signature(reader.array("signature")?);
        if signers.last().is_some_and(|(last, _)| *last >= validator) {
            return Err(DecodeError::Invalid {
                what: "signers",
                reason: "not strictly ascending",
            });
        }
        signers.push((validator, signature));
    }
    Ok(signers)
}

fn decode_commit(reader: &mut Reader<'_>) -> Result<CommitCertificate, DecodeError> {
    let height = Height(reader.u64("height")?);
    let round = Round(reader.u32("round")?);
    let value = ValueId(reader.array("value")?);
    let precommits = decode_signers(reader)?
        .into_iter()
        .map(|(validator, signature)| Signed {
            message: Vote {
                vote_type: VoteType::Precommit,
                height,
                round,
                value: Some(value),
                validator,
            },
            signature,
        })
        .collect();
    Ok(CommitCertificate {
        height,
        round,
        value,
        precommits,
    })
}
