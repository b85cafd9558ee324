//! Long chains built offline, for tests and benchmarks that need a chain of thousands of
//! heights (state sync, pruning) without waiting for consensus to make them.
//!
//! The validators' own keys sign each height's precommits, and every block goes through the
//! chain's real `build` and `commit`: the result is the chain those validators would have
//! decided with a proposer that never missed a round, byte for byte what a node stores. The
//! store's flush after each commit is off while building (one flush at the end), which is the
//! only shortcut.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use ed25519_dalek::SigningKey;
use weft_consensus::{CommitCertificate, Height, Round, ValidatorId, Vote, VoteType};
use weft_genesis::Genesis;
use weft_gossip::verify::sign_vote;

use crate::chain::{Chain, ChainError, PRUNE_FLOOR_NONE};
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
    txs: impl FnMut(Height) -> Vec<Transaction>,
) -> Result<Height, ChainError> {
    grow_pruned(dir, genesis, keys, heights, 0, txs)
}

/// [`grow`], pruning as a node with `storage.retain_blocks = retain_blocks` does (0 keeps
/// every block).
pub fn grow_pruned(
    dir: &Path,
    genesis: Genesis,
    keys: &[SigningKey],
    heights: u64,
    retain_blocks: u64,
    mut txs: impl FnMut(Height) -> Vec<Transaction>,
) -> Result<Height, ChainError> {
    let mut chain = Chain::open(dir, genesis, 1)?;
    chain.set_retention(retain_blocks, Arc::new(AtomicU64::new(PRUNE_FLOOR_NONE)), 0);
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

/// Copies a directory tree (a closed chain database, to give several nodes one built chain).
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The bytes of the files under `dir` (0 if it cannot be read): a database's size on disk.
pub fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| match entry.file_type() {
                    Ok(kind) if kind.is_dir() => dir_size(&entry.path()),
                    _ => entry.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch (for genesis times that put a built chain in the past).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
