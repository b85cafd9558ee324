//! JSON-RPC 2.0 over HTTP and WebSocket on one port (DESIGN §7), with CometBFT's method names
//! and result fields where they fit. [`serve`] binds `rpc.laddr` and runs jsonrpsee's server:
//! `POST /` for HTTP, a WebSocket upgrade on any path (CometBFT's `/websocket` works) for
//! `subscribe`.
//!
//! # Methods
//! Params go by name in an object, or by position in an array in the order listed; a method
//! without params ignores any it is sent, and unknown named params are ignored (CometBFT
//! clients send `prove`, `page`, …).
//!
//! | Method | Params | Result |
//! |---|---|---|
//! | `health` | – | `{}` |
//! | `status` | – | `{node_info, sync_info, validator_info}` |
//! | `net_info` | – | `{n_peers, peers[{id, height, round}], isolated}` |
//! | `validators` | – | `{block_height, validators[{pub_key, voting_power}], count, total, total_voting_power}` |
//! | `consensus_state` | – | `{height, round, catching_up}` |
//! | `block` | `height?` | `{block_id{hash}, block{header, data{txs}, num_txs, evidence, last_commit}}` |
//! | `block_results` | `height?` | `{height, txs_results[{code, log}]}` |
//! | `tx` | `hash` | `{hash, height, index, tx_result{code, log}, tx}` |
//! | `unconfirmed_txs` | `limit?` | `{n_txs, total, total_bytes, txs}` |
//! | `num_unconfirmed_txs` | – | `{n_txs, total, total_bytes}` |
//! | `account` | `address` | `{address, balance, nonce}` |
//! | `broadcast_tx_async` | `tx` | `{code, log, hash}` without waiting for the mempool check |
//! | `broadcast_tx_sync` | `tx` | `{code, log, hash}`: the mempool's verdict |
//! | `broadcast_tx_commit` | `tx` | `{check_tx{code, log}, tx_result{code, log}, hash, height}` |
//! | `subscribe` / `unsubscribe` | `query` | WebSocket only; notifications under method `event` |
//! | `unsafe_set_isolated` | `isolated` (bool) | `{isolated, peers}`; only with `rpc.unsafe` |
//!
//! - `height` defaults to the latest; `limit` to [`UNCONFIRMED_TXS_DEFAULT`], capped at
//!   [`UNCONFIRMED_TXS_MAX`]. Both may be a number or a decimal string (CometBFT sends strings).
//! - `hash` and `address` are 64 hex characters, either case, with an optional `0x`.
//! - `tx` is the canonical encoding of a signed transaction (`Transaction::encode`) in hex
//!   (optionally `0x`-prefixed). Base64 (CometBFT's habit) is accepted too: a string that is
//!   not all hex digits of even length is read as base64. The base64 of a real tx (over 100
//!   bytes) is all hex digits with odds of about (22/64)^130, so the two do not collide.
//! - `broadcast_tx_*` codes: 0 is admitted; otherwise the mempool's `AdmitError::code()` with
//!   its message as `log` (1 malformed, which includes undecodable hex or base64; 2 too large;
//!   3 bad signature; 4 wrong chain; 5 nonce too low; 6 nonce gap; 7 mempool full; 8 already
//!   known; 9 nonce taken; 10 state unavailable). These are results, not JSON-RPC errors.
//!   `broadcast_tx_async` answers code 0 once the tx decodes and checks it in the background;
//!   when [`ASYNC_CHECKS_MAX`] checks are already running it checks inline and answers the
//!   verdict, so a flood slows its sender instead of queueing without bound.
//! - `broadcast_tx_commit` returns `tx_result: null` and `height: 0` when the check failed.
//! - `subscribe` queries: `tm.event='NewBlock'` or `NewBlock` notify
//!   `{height, hash, time_ms, txs[{hash, code}]}` per block; `tm.event='Tx'` or `Tx` notify
//!   `{hash, height, index, code, log}` per committed tx. A subscriber that falls
//!   [`EVENTS_MAX`] events behind is closed with an error notification; it may resubscribe and
//!   read what it missed with `block`.
//! - `unsafe_*` methods exist only when `rpc.unsafe` is true (CometBFT's precedent); otherwise
//!   they answer -32601. `unsafe_set_isolated` with `isolated: true` cuts the node off from
//!   every peer (open connections closed, new ones refused both ways, static peers not
//!   redialled; see `GossipHandle::set_isolated`) and answers once no peer is left, or after
//!   [`ISOLATION_SETTLE_MS`] (at most half of `rpc.timeout_ms`); `peers` is the count of
//!   connected peers then. `isolated: false` heals at once: static peers and the peers it had
//!   are dialled, consensus catches up on reconnection, block sync if it fell behind.
//!   `net_info.isolated` reports the state.
//!
//! # Encoding
//! Hashes, keys, addresses and txs are lower-case hex. Integers are JSON numbers, except
//! `status.sync_info.latest_block_height`, a decimal string as in CometBFT. Tx result `log`s
//! are the execution code's name (`chain::code_name`).
//!
//! # Errors
//! | Code | Meaning |
//! |---|---|
//! | -32700 | parse error (jsonrpsee) |
//! | -32600 | invalid request (jsonrpsee) |
//! | -32601 | method not found (jsonrpsee) |
//! | -32602 | invalid params: missing, mistyped, or a bad hash/address; the message says which |
//! | -32603 | internal error (jsonrpsee): `subscribe` or `unsubscribe` over HTTP, which cannot carry notifications |
//! | -32001 | [`NOT_FOUND_CODE`]: no such block, results or committed tx (e.g. "height 99 is above the latest height 12") |
//! | -32002 | [`COMMIT_TIMEOUT_CODE`]: "timed out waiting for the tx to commit", `data` `{hash, timeout_ms}` |
//! | -32003 | [`INTERNAL_CODE`]: storage or the node failed (corrupt data, a failed task, shutdown) |
//! | -32004 | [`REQUEST_TIMEOUT_CODE`]: a method ran past `rpc.timeout_ms`, or (HTTP 408) a request body did not arrive within `rpc.body_read_timeout_ms` |
//! | -32005 | a batch while batches are disabled (`rpc.max_batch = 0`; jsonrpsee) |
//! | -32006 | too many subscriptions on this connection (jsonrpsee) |
//! | -32007 / -32008 | request / response over `rpc.max_body_bytes` / `rpc.max_response_bytes` (jsonrpsee) |
//! | -32009 | (HTTP 503) a connection over `rpc.max_connections`, closed after this answer |
//! | -32010 | batch over `rpc.max_batch` (jsonrpsee) |
//!
//! # Limits
//! Request and response bodies, connections and batch size come from `[rpc]`; each method runs
//! under `rpc.timeout_ms` (`broadcast_tx_commit` under that plus `rpc.commit_timeout_ms`);
//! subscriptions per connection are [`SUBSCRIPTIONS_PER_CONNECTION_MAX`]. The server speaks
//! HTTP/1.1 (and WebSocket by upgrade) from its own accept loop, which bounds what jsonrpsee's
//! leaves open: at most `rpc.max_connections` open sockets, HTTP and WebSocket together; a
//! request head must arrive within `rpc.header_read_timeout_ms` (an idle keep-alive connection
//! is closed then too), its body within `rpc.body_read_timeout_ms`, and a client that stops
//! reading is dropped after `rpc.write_stall_timeout_ms`. JSON nested deeper than serde_json's
//! recursion limit (128) is a parse error (-32700).
//!
//! Architecture invariant: RPC never writes the chain. Its one write is mempool admission,
//! which takes the chain's read lock before the mempool's lock, in the driver's order. Chain
//! reads run on the blocking pool, so a commit holding the write lock never stalls the
//! server's async workers.

use std::future::Future;
use std::net::{AddrParseError, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::server::{
    BatchRequestConfig, PendingSubscriptionSink, RpcModule, Server, ServerConfig, ServerHandle,
    SubscriptionMessage, SubscriptionSink,
};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;
use weft_consensus::{CommitCertificate, Evidence, Height, ValidatorId, VoteType};
use weft_execution::{Address, Transaction, TxHash};

use crate::admit::Admitter;
use crate::block::{Header, SealedBlock};
use crate::chain::{Chain, code_name};
use crate::context::{EVENTS_MAX, NodeContext, NodeEvent};
use crate::mempool::AdmitError;

/// Not found: no block, results or committed tx at what was asked for.
pub const NOT_FOUND_CODE: i32 = -32001;
/// `broadcast_tx_commit` waited `rpc.commit_timeout_ms` without seeing its tx commit.
pub const COMMIT_TIMEOUT_CODE: i32 = -32002;
/// Storage or the node failed while answering.
pub const INTERNAL_CODE: i32 = -32003;
/// A method ran past `rpc.timeout_ms`.
pub const REQUEST_TIMEOUT_CODE: i32 = -32004;
/// The message of a [`COMMIT_TIMEOUT_CODE`] error.
pub const COMMIT_TIMEOUT_MESSAGE: &str = "timed out waiting for the tx to commit";

/// Pending txs `unconfirmed_txs` lists when no `limit` is given.
pub const UNCONFIRMED_TXS_DEFAULT: u64 = 100;
/// Most pending txs one `unconfirmed_txs` lists.
pub const UNCONFIRMED_TXS_MAX: u64 = 1_000;
/// Most live subscriptions on one WebSocket connection.
pub const SUBSCRIPTIONS_PER_CONNECTION_MAX: u32 = 16;
/// Messages buffered per WebSocket connection before the server stops reading from it.
pub const WS_MESSAGE_BUFFER_MAX: u32 = 256;
/// Most `broadcast_tx_async` checks running in the background at once.
pub const ASYNC_CHECKS_MAX: usize = 256;
/// Longest `unsafe_set_isolated` waits for the node's connections to close before answering.
pub const ISOLATION_SETTLE_MS: u64 = 2_000;
/// How often `unsafe_set_isolated` looks at the peer count while it waits.
const ISOLATION_POLL: Duration = Duration::from_millis(10);

/// Name of the method that carries subscription notifications.
const NOTIFICATION_METHOD: &str = "event";

#[derive(Debug, Error)]
pub enum RpcError {
    #[error("rpc.laddr {laddr:?} is not a socket address: {source}")]
    Laddr {
        laddr: String,
        source: AddrParseError,
    },
    #[error("RPC server on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What every handler sees.
struct RpcState {
    ctx: Arc<NodeContext>,
    /// The address actually bound (`rpc.laddr` may name port 0).
    rpc_addr: SocketAddr,
    async_checks: Arc<Semaphore>,
    admitter: Admitter,
}

type MethodResult = Result<Value, ErrorObjectOwned>;

/// Binds `ctx.config.rpc.laddr` and serves every method until the handle is stopped.
pub async fn serve(ctx: Arc<NodeContext>) -> Result<(ServerHandle, SocketAddr), RpcError> {
    let rpc = &ctx.config.rpc;
    let addr: SocketAddr = rpc.laddr.parse().map_err(|source| RpcError::Laddr {
        laddr: rpc.laddr.clone(),
        source,
    })?;
    let batch = match rpc.max_batch {
        0 => BatchRequestConfig::Disabled,
        limit => BatchRequestConfig::Limit(limit),
    };
    let config = ServerConfig::builder()
        .max_request_body_size(rpc.max_body_bytes)
        .max_response_body_size(rpc.max_response_bytes)
        // Per request here; the accept loop bounds connections with the same number.
        .max_connections(rpc.max_connections)
        .max_subscriptions_per_connection(SUBSCRIPTIONS_PER_CONNECTION_MAX)
        .set_message_buffer_capacity(WS_MESSAGE_BUFFER_MAX)
        .set_batch_request_config(batch)
        .build();
    let limits = ConnectionLimits {
        max_connections: rpc.max_connections as usize,
        max_body_bytes: rpc.max_body_bytes as usize,
        header_read: Duration::from_millis(rpc.header_read_timeout_ms),
        body_read: Duration::from_millis(rpc.body_read_timeout_ms),
        write_stall: Duration::from_millis(rpc.write_stall_timeout_ms),
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RpcError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| RpcError::Bind { addr, source })?;
    let admitter = Admitter::spawn(
        Arc::clone(&ctx.chain),
        Arc::clone(&ctx.mempool),
        ctx.gossip.clone(),
        Arc::clone(&ctx.metrics),
    );
    let module = methods(RpcState {
        ctx,
        rpc_addr: bound,
        async_checks: Arc::new(Semaphore::new(ASYNC_CHECKS_MAX)),
        admitter,
    });
    let (stop, handle) = jsonrpsee::server::stop_channel();
    let service = Server::builder()
        .set_config(config)
        .to_service_builder()
        .build(module, stop.clone());
    tokio::spawn(accept_loop(listener, service, stop, limits));
    tracing::info!(addr = %bound, "JSON-RPC server listening");
    Ok((handle, bound))
}

fn methods(state: RpcState) -> RpcModule<RpcState> {
    let limit = state.ctx.config.rpc_timeout();
    let commit_limit = limit + Duration::from_millis(state.ctx.config.rpc.commit_timeout_ms);
    let unsafe_routes = state.ctx.config.rpc.unsafe_routes;
    let mut module = RpcModule::new(state);
    let m = &mut module;
    register(m, "health", limit, |_, _| async { Ok(json!({})) });
    register(m, "status", limit, status);
    register(m, "net_info", limit, net_info);
    register(m, "validators", limit, validators);
    register(m, "consensus_state", limit, consensus_state);
    register(m, "block", limit, block);
    register(m, "block_results", limit, block_results);
    register(m, "tx", limit, tx);
    register(m, "unconfirmed_txs", limit, unconfirmed_txs);
    register(m, "num_unconfirmed_txs", limit, num_unconfirmed_txs);
    register(m, "account", limit, account);
    register(m, "broadcast_tx_async", limit, broadcast_tx_async);
    register(m, "broadcast_tx_sync", limit, broadcast_tx_sync);
    register(m, "broadcast_tx_commit", commit_limit, broadcast_tx_commit);
    if unsafe_routes {
        register(m, "unsafe_set_isolated", limit, unsafe_set_isolated);
    }
    module
        .register_subscription(
            "subscribe",
            NOTIFICATION_METHOD,
            "unsubscribe",
            |params, pending, state, _| subscribe(params, pending, state),
        )
        .expect("subscribe is registered once");
    module
}

/// Registers `handler` as `name`, cut off after `limit`.
fn register<F, Fut>(
    module: &mut RpcModule<RpcState>,
    name: &'static str,
    limit: Duration,
    handler: F,
) where
    F: Fn(Arc<RpcState>, Params<'static>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = MethodResult> + Send + 'static,
{
    module
        .register_async_method(name, move |params, state, _| {
            let handler = handler.clone();
            async move {
                tokio::time::timeout(limit, handler(state, params))
                    .await
                    .unwrap_or_else(|_| {
                        Err(error(
                            REQUEST_TIMEOUT_CODE,
                            format!("{name} ran past the {} ms limit", limit.as_millis()),
                        ))
                    })
            }
        })
        .expect("each method is registered once");
}

// --- Errors ---

fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message, None::<()>)
}

fn not_found(message: impl Into<String>) -> ErrorObjectOwned {
    error(NOT_FOUND_CODE, message)
}

fn internal(message: impl std::fmt::Display) -> ErrorObjectOwned {
    error(INTERNAL_CODE, message.to_string())
}

fn invalid_params(message: impl Into<String>) -> ErrorObjectOwned {
    error(jsonrpsee::types::error::INVALID_PARAMS_CODE, message)
}

/// Runs `read` against the chain on the blocking pool: it may wait for the read lock while a
/// commit holds the write lock, and it reads sled.
async fn read_chain<T, F>(state: &RpcState, read: F) -> Result<T, ErrorObjectOwned>
where
    T: Send + 'static,
    F: FnOnce(&Chain) -> Result<T, ErrorObjectOwned> + Send + 'static,
{
    let chain = Arc::clone(&state.ctx.chain);
    tokio::task::spawn_blocking(move || read(&chain.read()))
        .await
        .map_err(|e| internal(format!("chain read failed: {e}")))?
}

mod events;
mod info;
mod json;
mod params;
mod reads;
#[cfg(test)]
mod tests;
mod transport;
mod txs;

use events::*;
use info::*;
use json::*;
use params::*;
use reads::*;
use transport::*;
use txs::*;
