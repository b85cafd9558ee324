//! Weft's gossip layer: the libp2p swarm, semantic gossip for consensus messages, tx gossip,
//! block sync, and overlay generation for testnets.
//!
//! So far: [`overlay`] (testnet overlays) and [`wire`] (the consensus messages, bundles and
//! frames). The transport and the protocols arrive with the rest of the gossip issue.
//!
//! Architecture invariant: gossip decides nothing about consensus beyond the filter and
//! aggregation rules it is handed.

pub mod overlay;
pub mod wire;

pub use overlay::{Overlay, OverlayError, generate};
pub use wire::{FRAME_BYTES_MAX, Message, VoteBundle, WireError, frame_len};
