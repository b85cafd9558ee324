//! One encoding per consensus type, in the canonical codec (`weft-codec`): the wire
//! (`weft-gossip`), the WAL and the double-sign guard (`weft-node`) all write and read votes,
//! proposals and the last signed record through these functions, so there is one layout of
//! each to keep right.
//!
//! - a vote: type (0 prevote, 1 precommit), height (u64), round (u32), value (flag 0, or flag 1
//!   and 32 bytes), validator (32 bytes); [`put_vote_head`] is its first four fields, which a
//!   bundle or a certificate shares among its signers;
//! - a proposal: height, round, value (32 bytes), POL round (flag 0, or flag 1 and a u32),
//!   proposer (32 bytes);
//! - a signature: 64 bytes after what it signs;
//! - a last signed record: tag 0 and a proposal, or tag 1 and a vote.
//!
//! What a validator signs is not this: `Vote::sign_bytes` and `Proposal::sign_bytes` put a
//! domain tag and the chain id first (and number vote types from 1), so signed bytes can never
//! be read as a message, or one chain's signature replayed on another. They are fixed by every
//! signature already made, and stay as they are.

use weft_codec::{DecodeError, Reader, put_u32, put_u64, put_varint};

use crate::machine::LastSigned;
use crate::types::{
    Height, Proposal, Round, Signature, Signed, SignedProposal, SignedVote, ValidatorId, ValueId,
    Vote, VoteType,
};
use crate::validators::{Validator, ValidatorSet, ValidatorSetError};

const TAG_PROPOSAL: u8 = 0;
const TAG_VOTE: u8 = 1;

/// Bytes of an encoded vote with the largest value (a value, not nil).
pub const VOTE_BYTES_MAX: usize = 1 + 8 + 4 + 1 + 32 + 32;
/// Bytes of an encoded proposal with a POL round.
pub const PROPOSAL_BYTES_MAX: usize = 8 + 4 + 32 + 1 + 4 + 32;

/// A vote's type, height, round and value.
pub fn put_vote_head(
    out: &mut Vec<u8>,
    vote_type: VoteType,
    height: Height,
    round: Round,
    value: Option<ValueId>,
) {
    out.push(match vote_type {
        VoteType::Prevote => 0,
        VoteType::Precommit => 1,
    });
    put_u64(out, height.0);
    put_u32(out, round.0);
    put_option_value(out, value);
}

pub fn read_vote_head(
    reader: &mut Reader<'_>,
) -> Result<(VoteType, Height, Round, Option<ValueId>), DecodeError> {
    let vote_type = match reader.u8("vote type")? {
        0 => VoteType::Prevote,
        1 => VoteType::Precommit,
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "vote type",
                tag,
            });
        }
    };
    let height = Height(reader.u64("height")?);
    let round = Round(reader.u32("round")?);
    let value = read_option_value(reader)?;
    Ok((vote_type, height, round, value))
}

pub fn put_option_value(out: &mut Vec<u8>, value: Option<ValueId>) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            out.extend_from_slice(&value.0);
        }
    }
}

pub fn read_option_value(reader: &mut Reader<'_>) -> Result<Option<ValueId>, DecodeError> {
    match reader.u8("value flag")? {
        0 => Ok(None),
        1 => Ok(Some(ValueId(reader.array("value")?))),
        tag => Err(DecodeError::UnknownTag {
            what: "value flag",
            tag,
        }),
    }
}

pub fn put_vote(out: &mut Vec<u8>, vote: &Vote) {
    put_vote_head(out, vote.vote_type, vote.height, vote.round, vote.value);
    out.extend_from_slice(&vote.validator.0);
}

pub fn read_vote(reader: &mut Reader<'_>) -> Result<Vote, DecodeError> {
    let (vote_type, height, round, value) = read_vote_head(reader)?;
    let validator = ValidatorId(reader.array("validator")?);
    Ok(Vote {
        vote_type,
        height,
        round,
        value,
        validator,
    })
}

pub fn put_signed_vote(out: &mut Vec<u8>, vote: &SignedVote) {
    put_vote(out, &vote.message);
    out.extend_from_slice(&vote.signature.0);
}

pub fn read_signed_vote(reader: &mut Reader<'_>) -> Result<SignedVote, DecodeError> {
    let message = read_vote(reader)?;
    let signature = Signature(reader.array("signature")?);
    Ok(Signed { message, signature })
}

pub fn put_proposal(out: &mut Vec<u8>, proposal: &Proposal) {
    put_u64(out, proposal.height.0);
    put_u32(out, proposal.round.0);
    out.extend_from_slice(&proposal.value.0);
    match proposal.pol_round {
        None => out.push(0),
        Some(round) => {
            out.push(1);
            put_u32(out, round.0);
        }
    }
    out.extend_from_slice(&proposal.proposer.0);
}

pub fn read_proposal(reader: &mut Reader<'_>) -> Result<Proposal, DecodeError> {
    let height = Height(reader.u64("height")?);
    let round = Round(reader.u32("round")?);
    let value = ValueId(reader.array("value")?);
    let pol_round = match reader.u8("POL flag")? {
        0 => None,
        1 => Some(Round(reader.u32("POL round")?)),
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "POL flag",
                tag,
            });
        }
    };
    let proposer = ValidatorId(reader.array("proposer")?);
    Ok(Proposal {
        height,
        round,
        value,
        pol_round,
        proposer,
    })
}

pub fn put_signed_proposal(out: &mut Vec<u8>, proposal: &SignedProposal) {
    put_proposal(out, &proposal.message);
    out.extend_from_slice(&proposal.signature.0);
}

pub fn read_signed_proposal(reader: &mut Reader<'_>) -> Result<SignedProposal, DecodeError> {
    let message = read_proposal(reader)?;
    let signature = Signature(reader.array("signature")?);
    Ok(Signed { message, signature })
}

pub fn put_last_signed(out: &mut Vec<u8>, record: &LastSigned) {
    match record {
        LastSigned::Proposal(proposal) => {
            out.push(TAG_PROPOSAL);
            put_proposal(out, proposal);
        }
        LastSigned::Vote(vote) => {
            out.push(TAG_VOTE);
            put_vote(out, vote);
        }
    }
}

pub fn read_last_signed(reader: &mut Reader<'_>) -> Result<LastSigned, DecodeError> {
    match reader.u8("record kind")? {
        TAG_PROPOSAL => Ok(LastSigned::Proposal(read_proposal(reader)?)),
        TAG_VOTE => Ok(LastSigned::Vote(read_vote(reader)?)),
        tag => Err(DecodeError::UnknownTag {
            what: "record kind",
            tag,
        }),
    }
}

/// Bytes of one validator in an encoded set: id, power, priority.
pub const VALIDATOR_BYTES: usize = 32 + 8 + 8;

/// A validator set: a varint count, then per validator (strictly ascending by id) its id, power
/// (u64) and proposer priority (i64 as u64). The priorities decide every proposer of the
/// height, so a set read back proposes exactly as the one written.
pub fn put_validator_set(out: &mut Vec<u8>, validators: &ValidatorSet) {
    put_varint(out, validators.len() as u32);
    for (validator, priority) in validators.validators().iter().zip(validators.priorities()) {
        out.extend_from_slice(&validator.id.0);
        put_u64(out, validator.power);
        put_u64(out, *priority as u64);
    }
}

/// Reads what [`put_validator_set`] wrote: at most `count_max` validators, one encoding per set.
pub fn read_validator_set(
    reader: &mut Reader<'_>,
    count_max: u32,
) -> Result<ValidatorSet, DecodeError> {
    let count = reader.varint_max("validator count", count_max)?;
    let capacity = (count as usize).min(reader.remaining() / VALIDATOR_BYTES);
    let mut entries: Vec<(Validator, i64)> = Vec::with_capacity(capacity);
    for _ in 0..count {
        let id = ValidatorId(reader.array("validator id")?);
        let power = reader.u64("power")?;
        let priority = reader.u64("priority")? as i64;
        if entries.last().is_some_and(|(last, _)| last.id >= id) {
            return Err(DecodeError::Invalid {
                what: "validators",
                reason: "not strictly ascending",
            });
        }
        entries.push((Validator { id, power }, priority));
    }
    ValidatorSet::with_priorities(entries).map_err(|error| DecodeError::Invalid {
        what: "validator set",
        reason: match error {
            ValidatorSetError::Empty => "empty",
            ValidatorSetError::ZeroPower(_) => "zero power",
            ValidatorSetError::Duplicate(_) => "duplicate",
            ValidatorSetError::TotalTooLarge => "total power too large",
            ValidatorSetError::PriorityOutOfRange(_) => "priority out of range",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(value: Option<u8>) -> Vote {
        Vote {
            vote_type: VoteType::Precommit,
            height: Height(u64::MAX - 1),
            round: Round(7),
            value: value.map(|v| ValueId([v; 32])),
            validator: ValidatorId([3; 32]),
        }
    }

    fn proposal(pol_round: Option<u32>) -> Proposal {
        Proposal {
            height: Height(9),
            round: Round(2),
            value: ValueId([5; 32]),
            pol_round: pol_round.map(Round),
            proposer: ValidatorId([4; 32]),
        }
    }

    fn round_trip<T: PartialEq + std::fmt::Debug>(
        value: &T,
        put: impl Fn(&mut Vec<u8>, &T),
        read: impl Fn(&mut Reader<'_>) -> Result<T, DecodeError>,
    ) -> usize {
        let mut bytes = Vec::new();
        put(&mut bytes, value);
        let mut reader = Reader::new(&bytes);
        assert_eq!(&read(&mut reader).unwrap(), value);
        reader.finish().unwrap();
        bytes.len()
    }

    #[test]
    fn every_type_round_trips_within_its_bound() {
        for value in [None, Some(1)] {
            let len = round_trip(&vote(value), put_vote, read_vote);
            assert!(len <= VOTE_BYTES_MAX);
            let record = LastSigned::Vote(vote(value));
            round_trip(&record, put_last_signed, read_last_signed);
        }
        assert_eq!(
            round_trip(&vote(Some(1)), put_vote, read_vote),
            VOTE_BYTES_MAX
        );
        for pol in [None, Some(0), Some(u32::MAX)] {
            let len = round_trip(&proposal(pol), put_proposal, read_proposal);
            assert!(len <= PROPOSAL_BYTES_MAX);
            let record = LastSigned::Proposal(proposal(pol));
            round_trip(&record, put_last_signed, read_last_signed);
        }
        let signed = Signed {
            message: vote(None),
            signature: Signature([8; 64]),
        };
        round_trip(&signed, put_signed_vote, read_signed_vote);
        let signed = Signed {
            message: proposal(Some(1)),
            signature: Signature([8; 64]),
        };
        round_trip(&signed, put_signed_proposal, read_signed_proposal);
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let mut bytes = Vec::new();
        put_vote(&mut bytes, &vote(None));
        let mut expected = vec![1];
        expected.extend_from_slice(&(u64::MAX - 1).to_le_bytes());
        expected.extend_from_slice(&7u32.to_le_bytes());
        expected.push(0);
        expected.extend_from_slice(&[3; 32]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn unknown_tags_and_short_input_are_refused() {
        let mut bytes = Vec::new();
        put_last_signed(&mut bytes, &LastSigned::Vote(vote(Some(2))));
        for bad in [2u8, 0xff] {
            let mut wrong = bytes.clone();
            wrong[0] = bad;
            assert!(matches!(
                read_last_signed(&mut Reader::new(&wrong)),
                Err(DecodeError::UnknownTag { .. })
            ));
        }
        let mut wrong = bytes.clone();
        wrong[1] = 2; // vote type
        assert!(read_last_signed(&mut Reader::new(&wrong)).is_err());
        for len in 0..bytes.len() {
            assert!(read_last_signed(&mut Reader::new(&bytes[..len])).is_err());
        }
    }
}
