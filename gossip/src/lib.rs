//! Weft's gossip layer: the libp2p swarm, semantic gossip for consensus messages, tx gossip,
//! block sync, and overlay generation for testnets.
//!
//! So far only [`overlay`] exists; the transport and the protocols arrive with the rest of the
//! gossip issue.
//!
//! Architecture invariant: gossip decides nothing about consensus beyond the filter and
//! aggregation rules it is handed.

pub mod overlay;

pub use overlay::{Overlay, OverlayError, generate};
