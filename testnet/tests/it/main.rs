//! weft-testnet's integration tests: one binary, one module per feature. The networks of
//! real processes run one at a time (`support::network_lock`).
//!
//! - `local`: `up` + `status` + `load` + `chaos --scenario all` + Ctrl-C, as a user runs them;
//!   `up` killed outright takes its nodes with it.
//! - `hosts`: hosts of their own (network namespaces, veth pairs, a bridge) from
//!   `generate`'s output, with a cut link.
//! - `compose`: `generate`'s docker-compose.yml and `FROM scratch` image under Docker, with
//!   kill, pause and network disconnect (skipped, saying so, where no daemon answers).
//! - `shaper`: the userspace link shaper over loopback.

// A test unwraps: a panic is how it fails (production code may not; see Cargo.toml).
#![allow(clippy::unwrap_used)]

mod compose;
mod hosts;
mod local;
mod shaper;
mod support;
