//! Weft's gossip layer: the libp2p swarm, semantic gossip for consensus messages, tx gossip,
//! block sync, state-sync snapshots, and overlay generation for testnets.
//!
//! - [`net`]: the libp2p transport ([`spawn`] returns a [`GossipHandle`] and the node's
//!   [`GossipEvent`]s): TCP + Noise + Yamux, identify, connection limits, static peers with
//!   backoff, bans; consensus messages on Weft's stream protocol; txs over gossipsub; block
//!   sync and state-sync snapshots over request-response.
//! - [`semantic`]: the [`Router`]: plain relaying, or semantic filtering and aggregation at
//!   dequeue time.
//! - [`wire`] (messages, bundles, frames), [`verify`] (batched signature checks), [`score`]
//!   (penalties and bans), [`metrics`] (Prometheus collectors), [`overlay`] (testnet
//!   overlays), and [`cluster`] (an in-process cluster for tests and `gossip-bench`).
//!
//! Architecture invariant: gossip decides nothing about consensus beyond the filter and
//! aggregation rules it is handed.

pub mod cluster;
pub mod metrics;
pub mod net;
pub mod overlay;
pub mod score;
pub mod semantic;
pub mod verify;
pub mod wire;

pub use net::snapshot::{
    SNAPSHOT_PROTOCOL, SNAPSHOT_REQUEST_BYTES_MAX, SNAPSHOT_RESPONSE_BYTES_MAX,
    SNAPSHOTS_LISTED_MAX,
};
pub use net::{
    BlockCheck, BlockSource, Endpoint, GossipConfig, GossipEvent, GossipHandle, Hooks, Limits,
    NetError, PeerInfo, SnapshotInfo, SnapshotRequest, SnapshotResponse, SnapshotSource, SyncBlock,
    SyncError, TxValidator, TxVerdict, spawn,
};
pub use overlay::{Overlay, OverlayError, generate};
pub use semantic::{GossipMode, Router, RouterCounters};
pub use wire::{BLOCK_BYTES_MAX, FRAME_BYTES_MAX, Message, VoteBundle, WireError, frame_len};
