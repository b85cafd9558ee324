//! The node core's view of the chain and the mempool: the [`Ledger`] trait, and [`NodeLedger`],
//! the node's own (the sled chain and the mempool behind their locks, shared with RPC).
//!
//! The core calls these synchronously: a commit is durable when `commit` returns (the chain
//! flushes one atomic batch per height), and validation and block building run the parallel
//! executor in place. The shell calls the core on a thread that may block.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use weft_consensus::{CommitCertificate, Evidence, Height, ValidatorId, ValidatorSet};
use weft_execution::Transaction;
use weft_gossip::SyncBlock;

use crate::block::SealedBlock;
use crate::chain::{Chain, ChainError, Committed, Invalid};
use crate::mempool::Mempool;
use crate::metrics::NodeMetrics;

/// What the node core asks of the chain and the mempool.
pub trait Ledger {
    /// The last committed height (below the genesis's initial height when none is).
    fn height(&self) -> Height;
    /// The genesis's first height.
    fn initial_height(&self) -> u64;
    /// The validator set (with its priorities) of the height after the last committed one.
    fn next_height_validators(&self) -> ValidatorSet;
    /// The commit certificate stored for `height`.
    fn certificate(&self, height: Height) -> Result<Option<CommitCertificate>, ChainError>;
    /// Fully validates a proposed block for the next height, caching the outcome for commit;
    /// txs whose signatures the mempool checked are not checked again. A valid block's txs
    /// count as signature-checked from then on.
    fn validate(
        &mut self,
        block: &SealedBlock,
        proposer: Option<ValidatorId>,
        now_ms: u64,
    ) -> Result<(), Invalid>;
    /// Commits the validated block `certificate` decides, durably, and drops its txs from the
    /// mempool.
    fn commit(&mut self, certificate: &CommitCertificate) -> Result<Committed, ChainError>;
    /// Checks (certificate, then full validation) and commits a block from block sync.
    fn apply_synced(&mut self, synced: &SyncBlock, now_ms: u64) -> Result<Committed, ChainError>;
    /// Builds this node's proposal for the next height from the mempool.
    fn build(&mut self, proposal: BlockRequest, now_ms: u64) -> Result<SealedBlock, ChainError>;
    /// Whether the mempool holds txs waiting for a block.
    fn has_pending_txs(&self) -> bool;
}

/// What a proposal is built from, beside the mempool's txs.
pub struct BlockRequest {
    pub proposer: ValidatorId,
    pub max_txs: usize,
    pub max_bytes: usize,
    pub last_commit: Option<CommitCertificate>,
    pub evidence: Vec<Evidence>,
}

/// The node's ledger: the chain and the mempool it shares with RPC, locked chain first.
pub struct NodeLedger {
    pub chain: Arc<RwLock<Chain>>,
    pub mempool: Arc<Mutex<Mempool>>,
    pub metrics: Arc<NodeMetrics>,
}

impl NodeLedger {
    fn after_commit(&self, committed: &Committed) {
        let chain = self.chain.read();
        let mut mempool = self.mempool.lock();
        mempool.update(&committed.block.block.txs, chain.state());
        self.metrics.mempool_size.set(mempool.len() as i64);
    }
}

impl Ledger for NodeLedger {
    fn height(&self) -> Height {
        self.chain.read().height()
    }

    fn initial_height(&self) -> u64 {
        self.chain.read().genesis().initial_height
    }

    fn next_height_validators(&self) -> ValidatorSet {
        self.chain.read().current_validators().clone()
    }

    fn certificate(&self, height: Height) -> Result<Option<CommitCertificate>, ChainError> {
        self.chain.read().certificate(height)
    }

    fn validate(
        &mut self,
        block: &SealedBlock,
        proposer: Option<ValidatorId>,
        now_ms: u64,
    ) -> Result<(), Invalid> {
        let chain = self.chain.read();
        let mut mempool = self.mempool.lock();
        let started = Instant::now();
        let verdict = chain.validate(block, proposer, now_ms, &|hash| {
            mempool.signature_verified(hash)
        });
        if verdict.is_ok() {
            // The proposer's fresh txs reach us by gossip after its block does; their
            // signatures are now known good.
            mempool.note_signatures_valid(block.block.txs.iter().map(|tx| tx.hash()));
        }
        self.metrics
            .execution_seconds
            .observe(started.elapsed().as_secs_f64());
        verdict
    }

    fn commit(&mut self, certificate: &CommitCertificate) -> Result<Committed, ChainError> {
        let committed = self.chain.write().commit(certificate)?;
        self.after_commit(&committed);
        Ok(committed)
    }

    fn apply_synced(&mut self, synced: &SyncBlock, now_ms: u64) -> Result<Committed, ChainError> {
        let committed = self.chain.write().apply_synced(synced, now_ms)?;
        self.after_commit(&committed);
        Ok(committed)
    }

    fn build(&mut self, request: BlockRequest, now_ms: u64) -> Result<SealedBlock, ChainError> {
        let chain = self.chain.read();
        let txs: Vec<Transaction> = {
            let mempool = self.mempool.lock();
            mempool
                .reap(request.max_txs, request.max_bytes, chain.state())
                .into_iter()
                .map(|tx| (*tx).clone())
                .collect()
        };
        chain.build(
            request.proposer,
            txs,
            request.last_commit,
            request.evidence,
            now_ms,
        )
    }

    fn has_pending_txs(&self) -> bool {
        !self.mempool.lock().is_empty()
    }
}
