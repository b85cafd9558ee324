//! Light blocks and their verification, as CometBFT's light client does it: a joining node that
//! trusts one header (an operator's `--trust-height`/`--trust-hash`, or the genesis) verifies a
//! far header without the blocks between, following validator-set changes.
//!
//! A light block is a header, the certificate that decided it, and the validator sets of its
//! height and the next (whose hashes the header holds). From a trusted height `T` whose next set
//! is known, a header at `T + 1` is verified when its set is that next set and more than 2/3 of
//! it signed (adjacent); a header further on is verified when more than 2/3 of its own set
//! signed and the signers hold more than 1/3 of the trusted next set's power (non-adjacent: at
//! least one of them is honest by the trust assumption). When the overlap is too small the
//! caller bisects: it verifies a header half way first and goes on from there.

use std::sync::Arc;

use thiserror::Error;
use weft_consensus::codec::{put_validator_set, read_validator_set};
use weft_consensus::{CommitCertificate, Height, ValidatorSet, ValueId};
use weft_execution::codec::{DecodeError, Reader, check_cap, put_varint};
use weft_execution::tx::VALIDATOR_COUNT_MAX;
use weft_gossip::Message;
use weft_gossip::net::snapshot::SNAPSHOT_RESPONSE_BYTES_MAX;

use crate::block::{Header, validators_hash};
use crate::chain::check_certificate;

/// Largest light block on the wire: a snapshot response.
pub const LIGHT_BLOCK_BYTES_MAX: usize = SNAPSHOT_RESPONSE_BYTES_MAX;

/// A header with what verifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LightBlock {
    pub header: Header,
    pub certificate: CommitCertificate,
    /// The validator set of the header's height (with proposer priorities).
    pub validators: ValidatorSet,
    /// The validator set of the next height (with proposer priorities).
    pub next_validators: ValidatorSet,
}

/// Why a light block was not verified.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LightError {
    #[error("malformed light block: {0}")]
    Decode(#[from] DecodeError),
    /// The light block is false: whoever served it lied (or serves another chain).
    #[error("invalid light block: {0}")]
    Invalid(String),
    /// Too little of the trusted set signed to skip to this height: verify one between first.
    #[error("signers hold no more than 1/3 of the trusted validator set's power")]
    NotEnoughTrust,
}

fn invalid(reason: impl Into<String>) -> LightError {
    LightError::Invalid(reason.into())
}

impl LightBlock {
    pub fn height(&self) -> Height {
        self.header.height
    }

    pub fn hash(&self) -> ValueId {
        self.header.hash()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let header = self.header.encode();
        put_varint(&mut out, header.len() as u32);
        out.extend_from_slice(&header);
        let certificate = Message::Commit(self.certificate.clone()).encode();
        put_varint(&mut out, certificate.len() as u32);
        out.extend_from_slice(&certificate);
        put_validator_set(&mut out, &self.validators);
        put_validator_set(&mut out, &self.next_validators);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<LightBlock, LightError> {
        check_cap(bytes, LIGHT_BLOCK_BYTES_MAX)?;
        let mut reader = Reader::new(bytes);
        let len = reader.varint_max("header bytes", 1024)?;
        let mut header_reader = Reader::new(reader.take(len as usize, "header")?);
        let header = Header::decode_from(&mut header_reader)?;
        header_reader.finish()?;
        let len = reader.varint_max("certificate bytes", LIGHT_BLOCK_BYTES_MAX as u32)?;
        let certificate = match Message::decode(reader.take(len as usize, "certificate")?) {
            Ok(Message::Commit(certificate)) => certificate,
            Ok(_) => return Err(invalid("the certificate is another kind of message")),
            Err(e) => return Err(invalid(format!("certificate: {e}"))),
        };
        let validators = read_validator_set(&mut reader, VALIDATOR_COUNT_MAX)?;
        let next_validators = read_validator_set(&mut reader, VALIDATOR_COUNT_MAX)?;
        reader.finish()?;
        Ok(LightBlock {
            header,
            certificate,
            validators,
            next_validators,
        })
    }

    /// Checks the light block against itself: the chain, the sets against the header's hashes,
    /// and a certificate for this header signed by more than 2/3 of its own set.
    pub fn check_self(&self, chain_id: &str) -> Result<(), LightError> {
        if self.header.chain_id.as_str() != chain_id {
            return Err(invalid(format!(
                "header of chain {}, not {chain_id}",
                self.header.chain_id.as_str()
            )));
        }
        if validators_hash(&self.validators) != self.header.validators_hash {
            return Err(invalid("the validator set is not the header's"));
        }
        if validators_hash(&self.next_validators) != self.header.next_validators_hash {
            return Err(invalid("the next validator set is not the header's"));
        }
        check_certificate(
            chain_id,
            &self.validators,
            &self.certificate,
            self.header.height,
            self.hash(),
        )
        .map_err(invalid)
    }
}

/// What the verifier trusts: a height, its header's time and hash, and the set of the height
/// after it.
#[derive(Clone, Debug)]
pub struct Trusted {
    pub height: Height,
    pub time_ms: u64,
    /// The trusted header's hash; `None` for the genesis (before the initial height).
    pub hash: Option<ValueId>,
    pub next_validators: Arc<ValidatorSet>,
}

impl Trusted {
    /// Trust in a light block the caller verified (by its hash, or by [`verify`]).
    pub fn from_block(block: &LightBlock) -> Trusted {
        Trusted {
            height: block.height(),
            time_ms: block.header.time_ms,
            hash: Some(block.hash()),
            next_validators: Arc::new(block.next_validators.clone()),
        }
    }
}

/// Verifies `untrusted` from `trusted` (adjacent or skipping); `NotEnoughTrust` asks the
/// caller to bisect.
pub fn verify(chain_id: &str, trusted: &Trusted, untrusted: &LightBlock) -> Result<(), LightError> {
    let height = untrusted.height();
    if height <= trusted.height {
        return Err(invalid(format!(
            "height {height:?} is not above the trusted {:?}",
            trusted.height
        )));
    }
    if untrusted.header.time_ms <= trusted.time_ms {
        return Err(invalid("header time is not after the trusted header's"));
    }
    untrusted.check_self(chain_id)?;
    if height.0 == trusted.height.0 + 1 {
        if validators_hash(&untrusted.validators) != validators_hash(&trusted.next_validators) {
            return Err(invalid("the validator set is not the trusted next set"));
        }
        if let Some(hash) = trusted.hash
            && untrusted.header.prev_hash != hash.0
        {
            return Err(invalid("the previous hash is not the trusted header's"));
        }
        return Ok(());
    }
    let signed: u64 = untrusted
        .certificate
        .precommits
        .iter()
        .filter_map(|vote| trusted.next_validators.power(&vote.message.validator))
        .sum();
    if trusted.next_validators.is_one_third(signed) {
        Ok(())
    } else {
        Err(LightError::NotEnoughTrust)
    }
}
