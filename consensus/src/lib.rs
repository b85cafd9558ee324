//! Weft's Tendermint consensus core.
//!
//! This crate will hold the pure round state machine (`Input -> Vec<Effect>`), the vote keeper,
//! proposer selection, the WAL entry types and the deterministic simulator. It is empty until the
//! consensus issue lands: nothing here pretends to decide anything yet.
//!
//! Architecture invariant: this crate never does IO, reads a clock, spawns tasks, or uses
//! randomness it was not handed. It depends on no tokio, libp2p or sled.
