//! Blocks: a header that commits to everything, and the body it commits to.
//!
//! The header carries the chain id, height, time, previous block hash, proposer, tx root,
//! DAG/access-set root, post-execution state root, last-commit hash, validator-set hash and
//! evidence hash (DESIGN §5). The block hash is blake3 of the header's canonical encoding, and
//! is the value consensus decides. The body holds the txs, their access sets and conflict DAG,
//! the previous height's commit certificate, and evidence.
//!
//! Decoding is bounded ([`BLOCK_BYTES_MAX`], the execution caps on txs, access sets and DAGs)
//! and checks that the body matches the header's roots, so a decoded block is self-consistent;
//! whether it is *valid* (signatures, DAG, state root, certificate) is the chain's question.

use std::sync::Arc;

use thiserror::Error;
use weft_consensus::{CommitCertificate, Evidence, Height, ValidatorId, ValidatorSet, ValueId};
use weft_execution::codec::{
    DecodeError, Reader, bounded_capacity, check_cap, put_u64, put_varint,
};
use weft_execution::{AccessSets, ChainId, ConflictDag, DagError, StateRoot, Transaction};
use weft_gossip::{BLOCK_BYTES_MAX, Message, WireError};

/// Most evidence items one block carries.
pub const EVIDENCE_PER_BLOCK_MAX: u32 = 64;
const _: () = assert!(
    weft_genesis::genesis::BLOCK_BYTES_MAX as usize == BLOCK_BYTES_MAX,
    "genesis may allow no block size that decoding refuses"
);

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Header {
    pub chain_id: ChainId,
    pub height: Height,
    pub time_ms: u64,
    pub prev_hash: [u8; 32],
    pub proposer: ValidatorId,
    pub tx_root: [u8; 32],
    pub dag_root: [u8; 32],
    pub state_root: StateRoot,
    pub last_commit_hash: [u8; 32],
    pub validators_hash: [u8; 32],
    /// The validator set of the next height (CometBFT's `next_validators_hash`).
    pub next_validators_hash: [u8; 32],
    pub evidence_hash: [u8; 32],
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Block {
    pub header: Header,
    pub txs: Vec<Transaction>,
    pub access: AccessSets,
    pub dag: ConflictDag,
    /// The certificate that decided the previous height; `None` at the initial height.
    pub last_commit: Option<CommitCertificate>,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Error)]
pub enum BlockDecodeError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Dag(#[from] DagError),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("the body does not match the header's {0}")]
    RootMismatch(&'static str),
}

impl Header {
    /// A header for unit tests: chain `weft-test`, fixed placeholder hashes, the given height
    /// and time.
    #[cfg(test)]
    pub(crate) fn for_tests(height: Height, time_ms: u64) -> Header {
        Header {
            chain_id: ChainId::new("weft-test").expect("a valid chain id"),
            height,
            time_ms,
            prev_hash: [1; 32],
            proposer: ValidatorId([2; 32]),
            tx_root: [0; 32],
            dag_root: [0; 32],
            state_root: StateRoot([9; 32]),
            last_commit_hash: [0; 32],
            validators_hash: [8; 32],
            next_validators_hash: [8; 32],
            evidence_hash: [0; 32],
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        let chain = self.chain_id.as_str().as_bytes();
        put_varint(&mut out, chain.len() as u32);
        out.extend_from_slice(chain);
        put_u64(&mut out, self.height.0);
        put_u64(&mut out, self.time_ms);
        out.extend_from_slice(&self.prev_hash);
        out.extend_from_slice(&self.proposer.0);
        out.extend_from_slice(&self.tx_root);
        out.extend_from_slice(&self.dag_root);
        out.extend_from_slice(&self.state_root.0);
        out.extend_from_slice(&self.last_commit_hash);
        out.extend_from_slice(&self.validators_hash);
        out.extend_from_slice(&self.next_validators_hash);
        out.extend_from_slice(&self.evidence_hash);
        out
    }

    pub(crate) fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = reader.varint_max("chain id bytes", 64)?;
        let chain = reader.take(len as usize, "chain id")?;
        let chain = std::str::from_utf8(chain).map_err(|_| DecodeError::Invalid {
            what: "chain id",
            reason: "not UTF-8",
        })?;
        Ok(Header {
            chain_id: ChainId::new(chain)?,
            height: Height(reader.u64("height")?),
            time_ms: reader.u64("time")?,
            prev_hash: reader.array("previous hash")?,
            proposer: ValidatorId(reader.array("proposer")?),
            tx_root: reader.array("tx root")?,
            dag_root: reader.array("dag root")?,
            state_root: StateRoot(reader.array("state root")?),
            last_commit_hash: reader.array("last commit hash")?,
            validators_hash: reader.array("validators hash")?,
            next_validators_hash: reader.array("next validators hash")?,
            evidence_hash: reader.array("evidence hash")?,
        })
    }

    /// The block hash: the value consensus decides.
    pub fn hash(&self) -> ValueId {
        ValueId(*blake3::hash(&self.encode()).as_bytes())
    }
}

fn hash_parts<'a>(domain: &str, parts: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(domain);
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}

/// blake3 over the txs' hashes, in block order.
pub fn tx_root(txs: &[Transaction]) -> [u8; 32] {
    let hashes: Vec<[u8; 32]> = txs.iter().map(|tx| tx.hash().0).collect();
    hash_parts("weft tx root v1", hashes.iter().map(|h| &h[..]))
}

/// blake3 over the encoded access sets and DAG.
pub fn dag_root(access: &AccessSets, dag: &ConflictDag) -> [u8; 32] {
    hash_parts(
        "weft dag root v1",
        [&access.encode()[..], &dag.encode()[..]],
    )
}

pub fn commit_hash(certificate: Option<&CommitCertificate>) -> [u8; 32] {
    match certificate {
        None => [0; 32],
        Some(certificate) => hash_parts(
            "weft last commit v1",
            [&Message::Commit(certificate.clone()).encode()[..]],
        ),
    }
}

pub fn validators_hash(validators: &ValidatorSet) -> [u8; 32] {
    let mut encoded = Vec::new();
    for validator in validators.validators() {
        encoded.extend_from_slice(&validator.id.0);
        encoded.extend_from_slice(&validator.power.to_le_bytes());
    }
    hash_parts("weft validators v1", [&encoded[..]])
}

pub fn evidence_hash(evidence: &[Evidence]) -> [u8; 32] {
    let encoded: Vec<Vec<u8>> = evidence.iter().map(encode_evidence).collect();
    hash_parts("weft evidence v1", encoded.iter().map(|e| &e[..]))
}

fn encode_evidence(evidence: &Evidence) -> Vec<u8> {
    let mut out = Vec::new();
    let (tag, first, second) = match evidence {
        Evidence::DuplicateVote { first, second } => (
            0,
            Message::Vote(*first).encode(),
            Message::Vote(*second).encode(),
        ),
        Evidence::DuplicateProposal { first, second } => (
            1,
            Message::proposal_without_block(*first).encode(),
            Message::proposal_without_block(*second).encode(),
        ),
    };
    out.push(tag);
    put_varint(&mut out, first.len() as u32);
    out.extend_from_slice(&first);
    put_varint(&mut out, second.len() as u32);
    out.extend_from_slice(&second);
    out
}

fn decode_evidence(reader: &mut Reader<'_>) -> Result<Evidence, BlockDecodeError> {
    let tag = reader.u8("evidence kind")?;
    let mut message = |what| -> Result<Message, BlockDecodeError> {
        let len = reader.varint_max(what, 4096)?;
        Ok(Message::decode(reader.take(len as usize, what)?)?)
    };
    let (first, second) = (message("evidence first")?, message("evidence second")?);
    let invalid = || DecodeError::Invalid {
        what: "evidence",
        reason: "messages of the wrong kind",
    };
    Ok(match (tag, first, second) {
        (0, Message::Vote(first), Message::Vote(second)) => {
            Evidence::DuplicateVote { first, second }
        }
        (
            1,
            Message::Proposal {
                proposal: first, ..
            },
            Message::Proposal {
                proposal: second, ..
            },
        ) => Evidence::DuplicateProposal { first, second },
        _ => return Err(invalid().into()),
    })
}

impl Block {
    /// Fills in a header's body roots from the body (the proposer's side).
    pub fn seal(mut header: Header, body: Body) -> Block {
        header.tx_root = tx_root(&body.txs);
        header.dag_root = dag_root(&body.access, &body.dag);
        header.last_commit_hash = commit_hash(body.last_commit.as_ref());
        header.evidence_hash = evidence_hash(&body.evidence);
        Block {
            header,
            txs: body.txs,
            access: body.access,
            dag: body.dag,
            last_commit: body.last_commit,
            evidence: body.evidence,
        }
    }

    pub fn hash(&self) -> ValueId {
        self.header.hash()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024 + self.txs.len() * 200);
        let header = self.header.encode();
        put_varint(&mut out, header.len() as u32);
        out.extend_from_slice(&header);
        put_varint(&mut out, self.txs.len() as u32);
        for tx in &self.txs {
            let bytes = tx.encode();
            put_varint(&mut out, bytes.len() as u32);
            out.extend_from_slice(&bytes);
        }
        let access = self.access.encode();
        put_varint(&mut out, access.len() as u32);
        out.extend_from_slice(&access);
        let dag = self.dag.encode();
        put_varint(&mut out, dag.len() as u32);
        out.extend_from_slice(&dag);
        match &self.last_commit {
            None => out.push(0),
            Some(certificate) => {
                out.push(1);
                let bytes = Message::Commit(certificate.clone()).encode();
                put_varint(&mut out, bytes.len() as u32);
                out.extend_from_slice(&bytes);
            }
        }
        put_varint(&mut out, self.evidence.len() as u32);
        for evidence in &self.evidence {
            out.extend_from_slice(&encode_evidence(evidence));
        }
        out
    }

    /// Decodes a block and checks its body against its header's roots.
    pub fn decode(bytes: &[u8]) -> Result<Block, BlockDecodeError> {
        check_cap(bytes, BLOCK_BYTES_MAX)?;
        let mut reader = Reader::new(bytes);
        let len = reader.varint_max("header bytes", 4096)?;
        let header = {
            let mut inner = Reader::new(reader.take(len as usize, "header")?);
            let header = Header::decode_from(&mut inner)?;
            inner.finish()?;
            header
        };
        let count = reader.varint_max("txs", weft_execution::access::BLOCK_TXS_MAX as u32)?;
        let mut txs = Vec::with_capacity(bounded_capacity(count, &reader, 100));
        for _ in 0..count {
            let len = reader.varint_max("tx bytes", weft_execution::tx::TX_BYTES_MAX as u32)?;
            txs.push(Transaction::decode(reader.take(len as usize, "tx")?)?);
        }
        let len = reader.varint_max("access bytes", BLOCK_BYTES_MAX as u32)?;
        let access = AccessSets::decode(reader.take(len as usize, "access sets")?, txs.len())?;
        let len = reader.varint_max("dag bytes", BLOCK_BYTES_MAX as u32)?;
        let dag = ConflictDag::decode(reader.take(len as usize, "dag")?, txs.len())?;
        let last_commit = match reader.u8("last commit flag")? {
            0 => None,
            1 => {
                let len = reader.varint_max("certificate bytes", BLOCK_BYTES_MAX as u32)?;
                match Message::decode(reader.take(len as usize, "certificate")?)? {
                    Message::Commit(certificate) => Some(certificate),
                    _ => {
                        return Err(DecodeError::Invalid {
                            what: "last commit",
                            reason: "not a commit certificate",
                        }
                        .into());
                    }
                }
            }
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "last commit flag",
                    tag,
                }
                .into());
            }
        };
        let count = reader.varint_max("evidence", EVIDENCE_PER_BLOCK_MAX)?;
        let mut evidence = Vec::with_capacity(count as usize);
        for _ in 0..count {
            evidence.push(decode_evidence(&mut reader)?);
        }
        reader.finish()?;
        let block = Block {
            header,
            txs,
            access,
            dag,
            last_commit,
            evidence,
        };
        block.check_roots()?;
        Ok(block)
    }

    /// Whether the body is the one the header commits to.
    pub fn check_roots(&self) -> Result<(), BlockDecodeError> {
        if tx_root(&self.txs) != self.header.tx_root {
            return Err(BlockDecodeError::RootMismatch("tx root"));
        }
        if dag_root(&self.access, &self.dag) != self.header.dag_root {
            return Err(BlockDecodeError::RootMismatch("dag root"));
        }
        if commit_hash(self.last_commit.as_ref()) != self.header.last_commit_hash {
            return Err(BlockDecodeError::RootMismatch("last commit hash"));
        }
        if evidence_hash(&self.evidence) != self.header.evidence_hash {
            return Err(BlockDecodeError::RootMismatch("evidence hash"));
        }
        Ok(())
    }
}

/// What a proposer puts under a header.
pub struct Body {
    pub txs: Vec<Transaction>,
    pub access: AccessSets,
    pub dag: ConflictDag,
    pub last_commit: Option<CommitCertificate>,
    pub evidence: Vec<Evidence>,
}

/// A decoded block with its encoding and hash, shared between the driver, the chain and gossip.
#[derive(Clone, Debug)]
pub struct SealedBlock {
    pub block: Arc<Block>,
    pub bytes: Arc<[u8]>,
    pub hash: ValueId,
}

impl SealedBlock {
    pub fn new(block: Block) -> Self {
        let bytes = Arc::from(block.encode());
        SealedBlock {
            hash: block.hash(),
            block: Arc::new(block),
            bytes,
        }
    }

    pub fn decode(bytes: Arc<[u8]>) -> Result<Self, BlockDecodeError> {
        let block = Block::decode(&bytes)?;
        Ok(SealedBlock {
            hash: block.hash(),
            block: Arc::new(block),
            bytes,
        })
    }
}
