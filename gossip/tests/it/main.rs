//! weft-gossip's integration tests: one binary, one module per feature.
//!
//! - `routing`: the router over a sparse overlay: delivery in both modes, fewer messages in
//!   semantic mode, nothing withheld without a quorum, equivocations relayed.
//! - `wire`: every message round-trips byte for byte; hostile bytes and frames are refused
//!   without panicking or allocating past the caps.

mod routing;
mod wire;
