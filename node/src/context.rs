//! What the node's tasks share: the chain, the mempool, gossip, consensus status, events and
//! metrics. The driver writes; RPC and metrics read.

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;
use weft_consensus::{Evidence, Height, Round, SignedVote};
use weft_execution::TxHash;
use weft_gossip::GossipHandle;

use crate::block::SealedBlock;
use crate::chain::Chain;
use crate::config::Config;
use crate::mempool::Mempool;
use crate::metrics::NodeMetrics;

/// Events for RPC subscribers and `broadcast_tx_commit` waiters.
#[derive(Clone, Debug)]
pub enum NodeEvent {
    NewBlock {
        height: Height,
        hash: [u8; 32],
        time_ms: u64,
        /// Each tx's hash and result code (0 is success), in block order.
        txs: Arc<Vec<(TxHash, u8)>>,
        /// The block itself (cheap to clone: its parts are shared).
        block: SealedBlock,
    },
    /// Consensus moved to a new height or round.
    NewRound { height: Height, round: Round },
    /// A vote this node signed and sent.
    Vote(SignedVote),
}

/// Events waiting per subscriber; a slower one misses the oldest.
pub const EVENTS_MAX: usize = 1_024;

/// Where consensus stands, for `status` and `consensus_state`.
#[derive(Clone, Debug, Default)]
pub struct ConsensusStatus {
    pub height: Height,
    pub round: Round,
    /// The node is fetching blocks rather than voting.
    pub catching_up: bool,
    pub last_block_time_ms: u64,
}

/// Who this node is.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub moniker: String,
    pub chain_id: String,
    pub version: String,
    pub peer_id: String,
    /// The validator's public key, hex; `None` for a node without a validator key.
    pub validator: Option<String>,
    pub p2p_addrs: Vec<String>,
    pub rpc_addr: String,
}

pub struct NodeContext {
    pub config: Config,
    pub info: NodeInfo,
    pub chain: Arc<RwLock<Chain>>,
    pub mempool: Arc<Mutex<Mempool>>,
    pub gossip: GossipHandle,
    pub events: broadcast::Sender<NodeEvent>,
    pub consensus: Arc<Mutex<ConsensusStatus>>,
    /// Equivocation evidence seen (committed or pending), newest last, bounded.
    pub evidence: Arc<Mutex<Vec<Evidence>>>,
    pub metrics: Arc<NodeMetrics>,
    /// The snapshots this node keeps and serves; `None` when it takes none.
    pub snapshots: Option<Arc<crate::snapshots::SnapshotStore>>,
}

/// Most evidence items kept for RPC.
pub const EVIDENCE_KEPT_MAX: usize = 256;
