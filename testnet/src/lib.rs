//! `weft-testnet`: local testnets of real `weft` processes on 127.0.0.1, their load, their
//! faults and their benchmark.
//!
//! - [`ceremony`]: a network formed as independent operators form one (homes made apart, a
//!   genesis from public keys), shared by `up` and `generate`.
//! - [`generate`]: a network for real hosts (homes, genesis, cards) and [`deploy`]: its
//!   docker-compose.yml and FROM-scratch image, systemd units, Prometheus config and README.
//! - [`manifest`]: the testnet on disk (homes, genesis, ports) and its manifest.
//! - [`process`]: the node processes (start, stop, kill, pause) and their pid files.
//! - [`client`]: typed JSON-RPC and `/metrics` reads of one node.
//! - [`status`]: the per-node table and the agreement check at the shared height.
//! - [`load`]: the open-loop load generator and its report (CSV, plot).
//! - [`up`]: `up`, `down`, `status` and `load`.
//! - [`chaos`]: faults under load and the invariants.
//! - [`bench`]: the saturation benchmark.
//! - [`links`]: a testnet's links through the shaper (`--latency`), and `links.json`.
//! - [`shaper`]: a userspace link shaper (delay, jitter, bandwidth, cut), in place of netem.
//! - [`validators`]: `validator add|remove|set-power`, a running testnet's set changed by its
//!   validator authority.

pub mod bench;
pub mod ceremony;
pub mod chaos;
pub mod client;
pub mod deploy;
pub mod generate;
pub mod links;
pub mod load;
pub mod manifest;
pub mod process;
pub mod shaper;
pub mod status;
pub mod up;
pub mod validators;
