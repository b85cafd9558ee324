//! Weft's gossip layer: the libp2p swarm, semantic gossip for consensus messages, tx gossip,
//! block sync, and overlay generation for testnets.
//!
//! So far: [`overlay`] (testnet overlays), [`wire`] (the consensus messages, bundles and
//! frames), [`verify`] (batched signature checks of votes and proposals), [`metrics`]
//! (Prometheus collectors), [`score`]
//! (misbehaviour penalties and bans) and [`semantic`] (the router: plain relaying, or semantic
//! filtering and aggregation at dequeue time). The libp2p transport, tx gossip and block sync arrive with the rest of the
//! gossip issue.
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

pub use net::{
    BlockSource, GossipConfig, GossipEvent, GossipHandle, Hooks, Limits, NetError, PeerInfo,
    SyncBlock, SyncError, TxValidator, TxVerdict, spawn,
};
pub use overlay::{Overlay, OverlayError, generate};
pub use semantic::{GossipMode, Router, RouterCounters};
pub use wire::{FRAME_BYTES_MAX, Message, VoteBundle, WireError, frame_len};
