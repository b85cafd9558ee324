//! weft-gossip's integration tests: one binary, one module per feature.
//!
//! - `abuse`: misbehaving peers over loopback (far-future and flooded votes, oversized frames,
//!   slow readers, many streams) are survived, bounded, charged and banned.
//! - `metrics`: the Prometheus collectors count by direction and kind and export.
//! - `misbehaviour`: a bad signature in a bundle costs only itself and its sender; bans.
//! - `networks`: peers of another chain id or genesis are refused and never heard; static
//!   peers named by DNS are dialled.
//! - `routing`: the router over a sparse overlay: delivery in both modes, fewer messages in
//!   semantic mode, nothing withheld without a quorum, equivocations relayed.
//! - `snapshot`: the state-sync snapshot codec (round trips, hostile bytes) and protocol over
//!   loopback (answers byte for byte, answers of another kind charged, in-flight bounds, the
//!   node's charges and bans).
//! - `wire`: every message round-trips byte for byte; hostile bytes and frames are refused
//!   without panicking or allocating past the caps.

// A test unwraps: a panic is how it fails (production code may not; see Cargo.toml).
#![allow(clippy::unwrap_used)]

mod abuse;
mod metrics;
mod misbehaviour;
mod net;
mod networks;
mod routing;
mod snapshot;
mod wire;
