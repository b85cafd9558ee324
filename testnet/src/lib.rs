//! `weft-testnet`: local testnets of real `weft` processes on 127.0.0.1, their load, their
//! faults and their benchmark.
//!
//! - [`manifest`]: the testnet on disk (homes, genesis, ports) and its manifest.
//! - [`process`]: the node processes (start, stop, kill, pause) and their pid files.
//! - [`client`]: typed JSON-RPC and `/metrics` reads of one node.
//! - [`status`]: the per-node table and the agreement check at the shared height.
//! - [`load`]: the open-loop load generator and its report (CSV, plot).
//! - [`up`]: `up`, `down`, `status` and `load`.
//! - [`chaos`]: faults under load and the invariants.
//! - [`bench`]: the saturation benchmark.

pub mod bench;
pub mod chaos;
pub mod client;
pub mod load;
pub mod manifest;
pub mod process;
pub mod status;
pub mod up;
