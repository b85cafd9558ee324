//! Long chains built offline, for tests and benchmarks that need a chain of thousands of
//! heights (state sync, pruning) without waiting for consensus to make them.
//!
//! The validators' own keys sign each height's precommits, and every block goes through the
//! chain's real `build` and `commit`: the result is the chain those validators would have
//! decided with a proposer that never missed a round, byte for byte what a node stores. The
//! store's flush after each commit is off while building (one flush at the end), which is the
//! only shortcut.

use std::path::Path;

use ed25519_dalek::SigningKey;
use weft_consensus::{CommitCertificate, Height, Round, ValidatorId, Vote, VoteType};
use weft_genesis::Genesis;
use weft_gossip::verify::sign_vote;

use crate::chain::{Chain, ChainError};
use weft_execution::Transaction;

/// Time between two built blocks.
pub const BLOCK_INTERVAL_MS: u64 = 10;

/// Builds `heights` blocks onto the chain database in `dir` (created from `genesis` if new),
/// signed by `keys` (which must hold more than 2/3 of the power); `txs` gives each height's txs.
/// Returns the last height. Blocks are timed [`BLOCK_INTERVAL_MS`] apart, from the genesis time
/// or the last block's.
pub fn grow(
    dir: &Path,
    genesis: Genesis,
    keys: &[SigningKey],
    heights: u64,
    mut txs: impl FnMut(Height) -> Vec<Transaction>,
) -> Result<Height, ChainError> {
    let mut chain = Chain::open(dir, genesis, 1)?;
    chain.set_durable(false);
    let chain_id = chain.chain_id().as_str().to_owned();
    let mut last_commit = match chain.height() {
        h if h.0 >= chain.genesis().initial_height => chain.certificate(h)?,
        _ => None,
    };
    for _ in 0..heights {
        let height = chain.height().next();
        let proposer = chain.current_validators().proposer(Round(0));
        let time = chain.last_time_ms() + BLOCK_INTERVAL_MS;
        let block = chain.build(proposer, txs(height), last_commit.take(), Vec::new(), time)?;
        let mut precommits: Vec<_> = keys
            .iter()
            .filter(|key| {
                chain
                    .current_validators()
                    .power(&ValidatorId(key.verifying_key().to_bytes()))
                    .is_some()
            })
            .map(|key| {
                sign_vote(
                    key,
                    &chain_id,
                    Vote {
                        vote_type: VoteType::Precommit,
                        height,
                        round: Round(0),
                        value: Some(block.hash),
                        validator: ValidatorId(key.verifying_key().to_bytes()),
                    },
                )
            })
            .collect();
        precommits.sort_by_key(|vote| vote.message.validator);
        let certificate = CommitCertificate {
            height,
            round: Round(0),
            value: block.hash,
            precommits,
        };
        chain.commit(&certificate)?;
        last_commit = Some(certificate);
    }
    chain.set_durable(true);
    chain.state().flush()?;
    Ok(chain.height())
}
