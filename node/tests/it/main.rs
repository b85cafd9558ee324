//! weft-node's integration tests: real `weft` processes on loopback, ephemeral ports.
//!
//! - `one_node`: init, start, txs over RPC commit and move balances and nonces; a restart keeps
//!   every block and all state.
//! - `four_nodes`: identical blocks and state roots on every node; a tx sent to one is found on
//!   all; a node killed with SIGKILL catches up by block sync and rejoins.
//! - `bad_input`: malformed JSON, unknown methods, wrong params, oversized bodies, malformed
//!   txs, bad signatures, wrong chain ids, replayed nonces and a full mempool each get their
//!   documented error, and the node keeps committing.
//! - `cometbft_client`: tendermint-rs's own RPC client (HTTP and WebSocket, CompatMode
//!   v0.38) decodes every method Weft serves under load; CometBFT's URI GETs, route list and
//!   errors answer as CometBFT's do.
//! - `ceremony`: operators form a network with the CLI from public keys only; a full node
//!   joins later by DNS names and follows without signing; other networks are refused.
//! - `byzantine`: a lying proposer's blocks are never committed; an equivocator's evidence
//!   is.
//! - `crash_points`: a validator stopped at 28 durable writes (WAL append, guard fsync, commit
//!   batch, block-sync store), under load, loses nothing, never signs twice, and rejoins.
//! - `damaged_disk`: a torn or overwritten WAL tail is cut and the node carries on; a damaged
//!   chain database is refused with an error naming it, or used only if provably intact.
//! - `rpc_abuse`: nested JSON, huge batches, slowloris, excess connections, excess WebSocket
//!   subscriptions and a subscriber that stops reading are bounded, and the node keeps
//!   committing.
//! - `validator_set`: validators join, change power and leave while the chain runs under
//!   load; a node restarts mid-change; a fresh node block-syncs across every change.
//! - `test_hooks`: a plain build leaves the test switches out; the tests' builds have them.

// A test unwraps: a panic is how it fails (production code may not; see Cargo.toml).
#![allow(clippy::unwrap_used)]

mod bad_input;
mod byzantine;
mod ceremony;
mod cometbft_client;
mod crash_points;
mod damaged_disk;
mod four_nodes;
mod one_node;
mod pruning;
mod rpc_abuse;
mod state_sync;
mod state_sync_liars;
mod support;
mod test_hooks;
mod validator_set;
