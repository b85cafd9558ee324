//! weft-gossip's integration tests: one binary, one module per feature.
//!
//! - `wire`: every message round-trips byte for byte; hostile bytes and frames are refused
//!   without panicking or allocating past the caps.

mod wire;
