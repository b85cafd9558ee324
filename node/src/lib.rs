//! The Weft validator node: config, mempool, blocks, the consensus driver, commit, the WAL and
//! double-sign guard, JSON-RPC and metrics. The binary `weft` (`main.rs`) is its CLI.
//!
//! Architecture invariant: the node holds no consensus rules; it feeds the pure state machine
//! of `weft-consensus` and runs the effects it returns.
