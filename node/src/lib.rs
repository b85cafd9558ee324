//! The Weft validator node: config, mempool, blocks, the consensus driver, commit, the WAL and
//! double-sign guard, JSON-RPC and metrics. The binary `weft` (`main.rs`) is its CLI.
//!
//! Architecture invariant: the node holds no consensus rules; it feeds the pure state machine
//! of `weft-consensus` and runs the effects it returns.

pub mod admit;
pub mod block;
pub mod byzantine;
pub mod ceremony;
pub mod chain;
pub mod cli;
pub mod config;
pub mod context;
pub mod crashpoint;
pub mod driver;
pub mod engine;
pub mod fixture;
pub mod guard;
pub mod light;
pub mod mempool;
pub mod metrics;
pub mod node;
pub mod records;
pub mod rpc;
pub mod snapshots;
pub mod statesync;
pub mod test_hooks;
pub mod wal;
