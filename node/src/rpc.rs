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

// --- Connections ---
//
// jsonrpsee's own server counts requests in flight, not connections, and reads request heads
// and bodies without a deadline (hyper's header-read timeout needs a timer it does not set), so
// a client could hold any number of idle or trickling connections. This accept loop bounds
// them: at most `rpc.max_connections` sockets (HTTP and WebSocket), each with deadlines on
// reading a request head, reading its body, and writing to a client that stopped reading.

/// The connection limits of `[rpc]`.
#[derive(Clone, Copy, Debug)]
struct ConnectionLimits {
    max_connections: usize,
    max_body_bytes: usize,
    header_read: Duration,
    body_read: Duration,
    write_stall: Duration,
}

/// What a connection over `rpc.max_connections` is told before it is closed.
const BUSY_RESPONSE: &str = concat!(
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n",
    "Content-Length: 84\r\nConnection: close\r\n\r\n",
    r#"{"jsonrpc":"2.0","error":{"code":-32009,"message":"Too many connections"},"id":null}"#,
);
/// A failed `accept` (say, out of file descriptors) is retried after this pause.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

type JsonRpcService =
    jsonrpsee::server::TowerService<tower::layer::util::Identity, tower::layer::util::Identity>;

async fn accept_loop(
    listener: tokio::net::TcpListener,
    service: JsonRpcService,
    stop: jsonrpsee::server::StopHandle,
    limits: ConnectionLimits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let stopped = stop.clone().shutdown();
    tokio::pin!(stopped);
    loop {
        let socket = tokio::select! {
            () = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(error) => {
                    tracing::debug!(%error, "RPC accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Best effort: the socket is fresh, so its send buffer has room.
            let _ = socket.try_write(BUSY_RESPONSE.as_bytes());
            continue;
        };
        let _ = socket.set_nodelay(true);
        let io = BoundedStream {
            stream: socket,
            write_stall: limits.write_stall,
            stalled: None,
            _slot: slot,
        };
        tokio::spawn(serve_connection(io, service.clone(), stop.clone(), limits));
    }
}

/// Serves one connection: HTTP/1.1 (with upgrades to WebSocket), a deadline on each request
/// head, and each body read whole within its deadline before jsonrpsee sees it.
async fn serve_connection(
    io: BoundedStream,
    service: JsonRpcService,
    stop: jsonrpsee::server::StopHandle,
    limits: ConnectionLimits,
) {
    let handler = hyper::service::service_fn(move |request| {
        let service = service.clone();
        handle_request(service, request, limits)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read);
    let connection = builder
        .serve_connection(hyper_util::rt::TokioIo::new(io), handler)
        .with_upgrades();
    tokio::pin!(connection);
    let stopped = stop.shutdown();
    tokio::pin!(stopped);
    let result = tokio::select! {
        result = &mut connection => result,
        () = &mut stopped => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "RPC connection closed");
    }
}

type ServiceResult = Result<jsonrpsee::server::HttpResponse, jsonrpsee::core::BoxError>;

async fn handle_request(
    mut service: JsonRpcService,
    request: hyper::Request<hyper::body::Incoming>,
    limits: ConnectionLimits,
) -> ServiceResult {
    match read_body_within(request, limits).await {
        Ok(request) => tower::Service::call(&mut service, request).await,
        Err(refusal) => refusal,
    }
}

/// The request with its body read whole, at most a byte over `rpc.max_body_bytes` (jsonrpsee
/// answers that with -32007), within `rpc.body_read_timeout_ms`; or the answer to give instead.
/// A WebSocket upgrade passes as it is.
async fn read_body_within(
    request: hyper::Request<hyper::body::Incoming>,
    limits: ConnectionLimits,
) -> Result<jsonrpsee::server::HttpRequest, ServiceResult> {
    use hyper::body::Body as _;

    if jsonrpsee::server::ws::is_upgrade_request(&request) {
        return Ok(request.map(jsonrpsee::server::HttpBody::new));
    }
    let (parts, mut body) = request.into_parts();
    let mut bytes = Vec::new();
    let read = async {
        while bytes.len() <= limits.max_body_bytes {
            let frame =
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
            match frame {
                None => break,
                Some(frame) => {
                    if let Some(data) = frame?.data_ref() {
                        bytes.extend_from_slice(data);
                    }
                }
            }
        }
        Ok::<(), hyper::Error>(())
    };
    match tokio::time::timeout(limits.body_read, read).await {
        Ok(Ok(())) => Ok(hyper::Request::from_parts(
            parts,
            jsonrpsee::server::HttpBody::from(bytes),
        )),
        // The connection broke mid-body: nothing to answer.
        Ok(Err(error)) => Err(Err(error.into())),
        Err(_) => Err(Ok(body_timeout_response(limits.body_read))),
    }
}

fn body_timeout_response(limit: Duration) -> jsonrpsee::server::HttpResponse {
    let body = json!({
        "jsonrpc": "2.0",
        "error": {
            "code": REQUEST_TIMEOUT_CODE,
            "message": format!("the request body did not arrive within {} ms", limit.as_millis()),
        },
        "id": null,
    });
    hyper::Response::builder()
        .status(hyper::StatusCode::REQUEST_TIMEOUT)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        // The unread rest of the body makes the connection unusable.
        .header(hyper::header::CONNECTION, "close")
        .body(jsonrpsee::server::HttpBody::from(body.to_string()))
        .expect("a static status and headers")
}

/// A client's socket, holding its connection slot until it is dropped (after a WebSocket
/// upgrade too), and failing a write that waits longer than `write_stall` for the client to
/// read.
struct BoundedStream {
    stream: tokio::net::TcpStream,
    write_stall: Duration,
    /// Running while writes wait on a full send buffer.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl BoundedStream {
    /// Turns a pending write into an error once it has waited `write_stall`.
    fn stall<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        poll: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::task::Poll;
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.write_stall;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing for {} ms", limit.as_millis()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl tokio::io::AsyncRead for BoundedStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for BoundedStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.stream).poll_write(cx, buf);
        self.stall(cx, poll)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.stall(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let poll = std::pin::Pin::new(&mut self.stream).poll_flush(cx);
        self.stall(cx, poll)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
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

// --- Params ---

/// Parses a method's params (`raw` is their JSON, `None` when absent) by name or position.
fn parse_params<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, ErrorObjectOwned> {
    serde_json::from_str(raw.unwrap_or("{}"))
        .map_err(|e| invalid_params(format!("invalid params: {e}")))
}

#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(default)]
struct HeightParams {
    #[serde(deserialize_with = "optional_u64")]
    height: Option<u64>,
}

#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(default)]
struct LimitParams {
    #[serde(deserialize_with = "optional_u64")]
    limit: Option<u64>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct HashParams {
    hash: String,
}

#[derive(Deserialize, Debug, PartialEq)]
struct AddressParams {
    address: String,
}

#[derive(Deserialize, Debug, PartialEq)]
struct TxParams {
    tx: String,
}

#[derive(Deserialize, Debug, PartialEq)]
struct QueryParams {
    query: String,
}

#[derive(Deserialize, Debug, PartialEq)]
struct IsolatedParams {
    isolated: bool,
}

/// A non-negative integer given as a JSON number or a decimal string, or absent/null.
fn optional_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{n} is not a non-negative integer"))),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{s:?} is not a non-negative integer"))),
        Some(other) => Err(D::Error::custom(format!("{other} is not an integer"))),
    }
}

/// 32 bytes from 64 hex characters (either case, optional `0x`); `what` names the param.
fn parse_hash32(what: &str, text: &str) -> Result<[u8; 32], String> {
    let digits = strip_0x(text);
    if digits.len() != 64 {
        return Err(format!(
            "{what} must be 64 hex characters, got {}",
            digits.len()
        ));
    }
    let mut out = [0; 32];
    hex::decode_to_slice(digits, &mut out).map_err(|e| format!("{what} is not hex: {e}"))?;
    Ok(out)
}

fn strip_0x(text: &str) -> &str {
    text.strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text)
}

/// A tx's bytes from hex (optionally `0x`-prefixed) or, failing the look of hex, base64.
fn decode_tx_text(text: &str) -> Result<Vec<u8>, String> {
    if text.is_empty() {
        return Err("tx is empty".into());
    }
    let prefixed = strip_0x(text);
    let looks_hex = text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit());
    if prefixed.len() != text.len() || looks_hex {
        return hex::decode(prefixed).map_err(|e| format!("tx is not hex: {e}"));
    }
    decode_base64(text)
}

/// Standard or URL-safe base64, padding optional.
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let data = text.trim_end_matches('=');
    if text.len() - data.len() > 2 || data.len() % 4 == 1 {
        return Err("tx is neither hex nor well-formed base64".into());
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (index, byte) in data.bytes().enumerate() {
        let sextet = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => {
                return Err(format!(
                    "tx is neither hex nor base64: character {:?} at {index}",
                    char::from(byte)
                ));
            }
        };
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// The height a `block`-like method reads: `requested`, or the latest, if a block is there.
fn resolve_height(
    requested: Option<u64>,
    latest: Height,
    initial: u64,
) -> Result<Height, ErrorObjectOwned> {
    if latest.0 < initial {
        return Err(not_found("no block has been committed yet"));
    }
    match requested {
        None => Ok(latest),
        Some(h) if h > latest.0 => Err(not_found(format!(
            "height {h} is above the latest height {}",
            latest.0
        ))),
        Some(h) if h < initial => Err(not_found(format!(
            "height {h} is below the initial height {initial}"
        ))),
        Some(h) => Ok(Height(h)),
    }
}

fn chain_height(chain: &Chain, requested: Option<u64>) -> Result<Height, ErrorObjectOwned> {
    resolve_height(requested, chain.height(), chain.genesis().initial_height)
}

/// Which events a subscription wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Query {
    NewBlock,
    Tx,
}

/// `tm.event='NewBlock'` (spaces and either quote allowed) or the bare name.
fn parse_query(query: &str) -> Result<Query, String> {
    let compact: String = query.chars().filter(|c| !c.is_whitespace()).collect();
    let name = compact
        .strip_prefix("tm.event=")
        .map(|v| v.trim_matches(|c| c == '\'' || c == '"'))
        .unwrap_or(&compact);
    match name {
        "NewBlock" => Ok(Query::NewBlock),
        "Tx" => Ok(Query::Tx),
        _ => Err(format!(
            "query {query:?} is not supported; use tm.event='NewBlock' or tm.event='Tx'"
        )),
    }
}

// --- JSON shapes ---

fn header_json(header: &Header) -> Value {
    json!({
        "chain_id": header.chain_id.as_str(),
        "height": header.height.0,
        "time_ms": header.time_ms,
        "prev_hash": hex::encode(header.prev_hash),
        "proposer": hex::encode(header.proposer.0),
        "tx_root": hex::encode(header.tx_root),
        "dag_root": hex::encode(header.dag_root),
        "state_root": hex::encode(header.state_root.0),
        "last_commit_hash": hex::encode(header.last_commit_hash),
        "validators_hash": hex::encode(header.validators_hash),
        "evidence_hash": hex::encode(header.evidence_hash),
    })
}

fn commit_json(certificate: &CommitCertificate) -> Value {
    let signatures: Vec<Value> = certificate
        .precommits
        .iter()
        .map(|vote| {
            json!({
                "validator": hex::encode(vote.message.validator.0),
                "signature": hex::encode(vote.signature.0),
            })
        })
        .collect();
    json!({
        "height": certificate.height.0,
        "round": certificate.round.0,
        "block_id": { "hash": hex::encode(certificate.value.0) },
        "signatures": signatures,
    })
}

fn evidence_json(evidence: &Evidence) -> Value {
    let value = |v: Option<weft_consensus::ValueId>| v.map(|v| hex::encode(v.0));
    match evidence {
        Evidence::DuplicateVote { first, second } => json!({
            "type": "duplicate_vote",
            "validator": hex::encode(first.message.validator.0),
            "height": first.message.height.0,
            "round": first.message.round.0,
            "vote_type": match first.message.vote_type {
                VoteType::Prevote => "prevote",
                VoteType::Precommit => "precommit",
            },
            "first_value": value(first.message.value),
            "second_value": value(second.message.value),
        }),
        Evidence::DuplicateProposal { first, second } => json!({
            "type": "duplicate_proposal",
            "validator": hex::encode(first.message.proposer.0),
            "height": first.message.height.0,
            "round": first.message.round.0,
            "first_value": hex::encode(first.message.value.0),
            "second_value": hex::encode(second.message.value.0),
        }),
    }
}

/// `block`'s result; `last_commit` is null at the initial height.
fn block_json(sealed: &SealedBlock) -> Value {
    let block = &sealed.block;
    let txs: Vec<String> = block
        .txs
        .iter()
        .map(|tx| hex::encode(tx.encode()))
        .collect();
    let evidence: Vec<Value> = block.evidence.iter().map(evidence_json).collect();
    json!({
        "block_id": { "hash": hex::encode(sealed.hash.0) },
        "block": {
            "header": header_json(&block.header),
            "data": { "txs": txs },
            "num_txs": block.txs.len(),
            "evidence": evidence,
            "last_commit": block.last_commit.as_ref().map(commit_json),
        },
    })
}

fn tx_result_json(code: u8) -> Value {
    json!({ "code": code, "log": code_name(code) })
}

/// The notifications one event makes for a subscription.
fn event_notifications(event: &NodeEvent, query: Query) -> Vec<Value> {
    let NodeEvent::NewBlock {
        height,
        hash,
        time_ms,
        txs,
    } = event;
    match query {
        Query::NewBlock => {
            let txs: Vec<Value> = txs
                .iter()
                .map(|(hash, code)| json!({ "hash": hex::encode(hash.0), "code": code }))
                .collect();
            vec![json!({
                "height": height.0,
                "hash": hex::encode(hash),
                "time_ms": time_ms,
                "txs": txs,
            })]
        }
        Query::Tx => txs
            .iter()
            .enumerate()
            .map(|(index, (hash, code))| {
                json!({
                    "hash": hex::encode(hash.0),
                    "height": height.0,
                    "index": index,
                    "code": code,
                    "log": code_name(*code),
                })
            })
            .collect(),
    }
}

// --- Info methods ---

/// What `status` reads from the chain.
struct Tip {
    height: Height,
    hash: [u8; 32],
    app_hash: [u8; 32],
    time_ms: u64,
    voting_power: u64,
}

async fn status(state: Arc<RpcState>, _: Params<'static>) -> MethodResult {
    let info = &state.ctx.info;
    let validator = info
        .validator
        .as_deref()
        .and_then(|key| parse_hash32("validator key", key).ok())
        .map(ValidatorId);
    let tip = read_chain(&state, move |chain| {
        Ok(Tip {
            height: chain.height(),
            hash: chain.last_hash().0,
            app_hash: chain.state_root(),
            time_ms: chain.last_time_ms(),
            voting_power: validator
                .and_then(|id| chain.validators().power(&id))
                .unwrap_or(0),
        })
    })
    .await?;
    let catching_up = state.ctx.consensus.lock().catching_up;
    let listen_addr = info
        .p2p_addrs
        .first()
        .cloned()
        .unwrap_or_else(|| state.ctx.config.p2p.listen.clone());
    Ok(json!({
        "node_info": {
            "id": info.peer_id,
            "moniker": info.moniker,
            "network": info.chain_id,
            "version": info.version,
            "listen_addr": listen_addr,
            "rpc_addr": state.rpc_addr.to_string(),
        },
        "sync_info": {
            "latest_block_hash": hex::encode(tip.hash),
            "latest_app_hash": hex::encode(tip.app_hash),
            "latest_block_height": tip.height.0.to_string(),
            "latest_block_time_ms": tip.time_ms,
            "catching_up": catching_up,
        },
        "validator_info": {
            "pub_key": info.validator,
            "voting_power": tip.voting_power,
        },
    }))
}

async fn net_info(state: Arc<RpcState>, _: Params<'static>) -> MethodResult {
    let peers: Vec<Value> = state
        .ctx
        .gossip
        .peers()
        .iter()
        .map(|p| json!({ "id": p.peer.to_string(), "height": p.height.0, "round": p.round.0 }))
        .collect();
    let isolated = state.ctx.gossip.is_isolated();
    Ok(json!({ "n_peers": peers.len(), "peers": peers, "isolated": isolated }))
}

// --- Unsafe methods (registered only with `rpc.unsafe`) ---

async fn unsafe_set_isolated(state: Arc<RpcState>, params: Params<'static>) -> MethodResult {
    let IsolatedParams { isolated } = parse_params(params.as_str())?;
    tracing::warn!(isolated, "unsafe_set_isolated called");
    let gossip = &state.ctx.gossip;
    gossip.set_isolated(isolated);
    if isolated {
        // Answer once the cut shows, so the caller may go on to look at the other nodes; the
        // wait stays well inside the method's own timeout.
        let settle =
            Duration::from_millis(ISOLATION_SETTLE_MS).min(state.ctx.config.rpc_timeout() / 2);
        let deadline = Instant::now() + settle;
        while gossip.is_isolated() && !gossip.peers().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(ISOLATION_POLL).await;
        }
    }
    Ok(json!({ "isolated": isolated, "peers": gossip.peers().len() }))
}

async fn validators(state: Arc<RpcState>, _: Params<'static>) -> MethodResult {
    read_chain(&state, |chain| {
        let set = chain.validators();
        let validators: Vec<Value> = set
            .validators()
            .iter()
            .map(|v| json!({ "pub_key": hex::encode(v.id.0), "voting_power": v.power }))
            .collect();
        Ok(json!({
            "block_height": chain.height().0,
            "validators": validators,
            "count": set.len(),
            "total": set.len(),
            "total_voting_power": set.total_power(),
        }))
    })
    .await
}

async fn consensus_state(state: Arc<RpcState>, _: Params<'static>) -> MethodResult {
    let status = state.ctx.consensus.lock().clone();
    let evidence: Vec<Value> = state
        .ctx
        .evidence
        .lock()
        .iter()
        .map(evidence_json)
        .collect();
    Ok(json!({
        "height": status.height.0,
        "round": status.round.0,
        "catching_up": status.catching_up,
        "evidence": evidence,
    }))
}

// --- Chain reads ---

async fn block(state: Arc<RpcState>, params: Params<'static>) -> MethodResult {
    let HeightParams { height } = parse_params(params.as_str())?;
    read_chain(&state, move |chain| {
        let height = chain_height(chain, height)?;
        let block = chain
            .block(height)
            .map_err(internal)?
            .ok_or_else(|| not_found(format!("block {} is not stored", height.0)))?;
        Ok(block_json(&block))
    })
    .await
}

async fn block_results(state: Arc<RpcState>, params: Params<'static>) -> MethodResult {
    let HeightParams { height } = parse_params(params.as_str())?;
    read_chain(&state, move |chain| {
        let height = chain_height(chain, height)?;
        let codes = chain
            .results(height)
            .map_err(internal)?
            .ok_or_else(|| not_found(format!("results of block {} are not stored", height.0)))?;
        let results: Vec<Value> = codes.iter().map(|code| tx_result_json(*code)).collect();
        Ok(json!({ "height": height.0, "txs_results": results }))
    })
    .await
}

async fn tx(state: Arc<RpcState>, params: Params<'static>) -> MethodResult {
    let HashParams { hash } = parse_params(params.as_str())?;
    let hash = TxHash(parse_hash32("hash", &hash).map_err(invalid_params)?);
    read_chain(&state, move |chain| {
        let hash_hex = hex::encode(hash.0);
        let location = chain
            .tx(&hash)
            .map_err(internal)?
            .ok_or_else(|| not_found(format!("tx {hash_hex} is not in a committed block")))?;
        let block = chain.block(location.height).map_err(internal)?;
        let tx = block
            .as_ref()
            .and_then(|b| b.block.txs.get(location.index as usize))
            .ok_or_else(|| {
                internal(format!(
                    "tx {hash_hex} is indexed at block {} index {}, which is not stored",
                    location.height.0, location.index
                ))
            })?;
        Ok(json!({
            "hash": hash_hex,
            "height": location.height.0,
            "index": location.index,
            "tx_result": tx_result_json(location.code),
            "tx": hex::encode(tx.encode()),
        }))
    })
    .await
}

async fn account(state: Arc<RpcState>, params: Params<'static>) -> MethodResult {
    let AddressParams { address } = parse_params(params.as_str())?;
    let address = Address(parse_hash32("address", &address).map_err(invalid_params)?);
    read_chain(&state, move |chain| {
        let account = chain.account(&address).map_err(internal)?;
        Ok(json!({
            "address": hex::encode(address.0),
            "balance": account.balance,
            "nonce": account.nonce,
        }))
    })
    .await
}

// --- Mempool ---

async fn unconfirmed_txs(state: Arc<RpcState>, params: Params<'static>) -> MethodResult {
    let LimitParams { limit } = parse_params(params.as_str())?;
    let limit = limit
        .unwrap_or(UNCONFIRMED_TXS_DEFAULT)
        .min(UNCONFIRMED_TXS_MAX) as usize;
    let (pending, total, total_bytes) = {
        let mempool = state.ctx.mempool.lock();
        (mempool.pending(limit), mempool.len(), mempool.bytes())
    };
    let txs: Vec<String> = pending.iter().map(|tx| hex::encode(tx.encode())).collect();
    Ok(json!({
        "n_txs": txs.len(),
        "total": total,
        "total_bytes": total_bytes,
        "txs": txs,
    }))
}

async fn num_unconfirmed_txs(state: Arc<RpcState>, _: Params<'static>) -> MethodResult {
    let (total, total_bytes) = {
        let mempool = state.ctx.mempool.lock();
        (mempool.len(), mempool.bytes())
    };
    Ok(json!({ "n_txs": total, "total": total, "total_bytes": total_bytes }))
}

/// The mempool's verdict on one tx, as CometBFT's CheckTx result.
#[derive(Clone, Debug, PartialEq)]
struct Check {
    code: u32,
    log: String,
    /// `None` when the bytes are not a transaction.
    hash: Option<TxHash>,
}

impl Check {
    fn malformed(reason: String) -> Check {
        Check {
            code: AdmitError::Malformed(String::new()).code(),
            log: AdmitError::Malformed(reason).to_string(),
            hash: None,
        }
    }

    fn json(&self) -> Value {
        json!({
            "code": self.code,
            "log": self.log,
            "hash": self.hash.map(|h| hex::encode(h.0)),
        })
    }
}

/// Admits `bytes` to the mempool and, when admitted, gossips them (batched with other callers'
/// txs by the [`Admitter`]).
async fn check_tx(state: &RpcState, bytes: Vec<u8>) -> Result<Check, ErrorObjectOwned> {
    let admission = state
        .admitter
        .admit(bytes)
        .await
        .map_err(|e| internal(format!("mempool check failed: {e}")))?;
    Ok(match admission.verdict {
        Ok(hash) => Check {
            code: 0,
            log: String::new(),
            hash: Some(hash),
        },
        Err(reason) => Check {
            code: reason.code(),
            log: reason.to_string(),
            hash: admission.hash,
        },
    })
}

/// Decodes the `tx` param into a transaction's bytes, or the malformed verdict.
fn tx_param(params: &Params<'static>) -> Result<Result<Vec<u8>, Check>, ErrorObjectOwned> {
    let TxParams { tx } = parse_params(params.as_str())?;
    Ok(decode_tx_text(&tx).map_err(Check::malformed))
}

async fn broadcast_tx_sync(state: Arc<RpcState>, params: Params<'static>) -> MethodResult {
    let check = match tx_param(&params)? {
        Ok(bytes) => check_tx(&state, bytes).await?,
        Err(malformed) => malformed,
    };
    Ok(check.json())
}

async fn broadcast_tx_async(state: Arc<RpcState>, params: Params<'static>) -> MethodResult {
    let bytes = match tx_param(&params)? {
        Ok(bytes) => bytes,
        Err(malformed) => return Ok(malformed.json()),
    };
    let hash = match Transaction::decode(&bytes) {
        Ok(tx) => tx.hash(),
        Err(e) => return Ok(Check::malformed(e.to_string()).json()),
    };
    let Ok(permit) = Arc::clone(&state.async_checks).try_acquire_owned() else {
        return Ok(check_tx(&state, bytes).await?.json());
    };
    let background = Arc::clone(&state);
    tokio::spawn(async move {
        match check_tx(&background, bytes).await {
            Ok(check) if check.code != 0 => {
                tracing::debug!(code = check.code, log = %check.log, "async tx refused");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.message(), "async tx check failed"),
        }
        drop(permit);
    });
    Ok(Check {
        code: 0,
        log: String::new(),
        hash: Some(hash),
    }
    .json())
}

async fn broadcast_tx_commit(state: Arc<RpcState>, params: Params<'static>) -> MethodResult {
    // Subscribe before admitting, so a block that commits the tx at once is still seen.
    let mut events = state.ctx.events.subscribe();
    let check = match tx_param(&params)? {
        Ok(bytes) => check_tx(&state, bytes).await?,
        Err(malformed) => malformed,
    };
    let reply = |tx_result: Value, height: u64| {
        json!({
            "check_tx": { "code": check.code, "log": check.log },
            "tx_result": tx_result,
            "hash": check.hash.map(|h| hex::encode(h.0)),
            "height": height,
        })
    };
    let Some(hash) = check.hash.filter(|_| check.code == 0) else {
        return Ok(reply(Value::Null, 0));
    };
    let timeout_ms = state.ctx.config.rpc.commit_timeout_ms;
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    match wait_for_commit(&state, &mut events, hash, deadline).await? {
        Some((height, code)) => Ok(reply(tx_result_json(code), height.0)),
        None => Err(ErrorObjectOwned::owned(
            COMMIT_TIMEOUT_CODE,
            COMMIT_TIMEOUT_MESSAGE,
            Some(json!({ "hash": hex::encode(hash.0), "timeout_ms": timeout_ms })),
        )),
    }
}

/// Waits until `deadline` for a block holding `hash`; its height and the tx's code.
async fn wait_for_commit(
    state: &RpcState,
    events: &mut broadcast::Receiver<NodeEvent>,
    hash: TxHash,
    deadline: Instant,
) -> Result<Option<(Height, u8)>, ErrorObjectOwned> {
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(NodeEvent::NewBlock { height, txs, .. })) => {
                if let Some((_, code)) = txs.iter().find(|(h, _)| *h == hash) {
                    return Ok(Some((height, *code)));
                }
            }
            // Missed events may have held the tx: ask the index.
            Ok(Err(RecvError::Lagged(_))) => {
                if let Some(found) = committed_tx(state, hash).await? {
                    return Ok(Some(found));
                }
            }
            Ok(Err(RecvError::Closed)) => {
                return Err(internal("the node is shutting down"));
            }
            // A last look: the commit may have raced the deadline.
            Err(_) => return committed_tx(state, hash).await,
        }
    }
}

async fn committed_tx(
    state: &RpcState,
    hash: TxHash,
) -> Result<Option<(Height, u8)>, ErrorObjectOwned> {
    read_chain(state, move |chain| {
        let location = chain.tx(&hash).map_err(internal)?;
        Ok(location.map(|l| (l.height, l.code)))
    })
    .await
}

// --- Subscriptions ---

async fn subscribe(
    params: Params<'static>,
    pending: PendingSubscriptionSink,
    state: Arc<RpcState>,
) -> jsonrpsee::core::SubscriptionResult {
    let query = parse_params::<QueryParams>(params.as_str())
        .and_then(|p| parse_query(&p.query).map_err(invalid_params));
    let query = match query {
        Ok(query) => query,
        Err(e) => {
            pending.reject(e).await;
            return Ok(());
        }
    };
    let events = state.ctx.events.subscribe();
    let sink = pending.accept().await?;
    forward_events(sink, events, query).await
}

/// Sends each event to the subscriber until it leaves, falls behind, or the node stops.
async fn forward_events(
    sink: SubscriptionSink,
    mut events: broadcast::Receiver<NodeEvent>,
    query: Query,
) -> jsonrpsee::core::SubscriptionResult {
    loop {
        let event = tokio::select! {
            _ = sink.closed() => return Ok(()),
            event = events.recv() => event,
        };
        match event {
            Ok(event) => {
                for notification in event_notifications(&event, query) {
                    let message = serde_json::value::to_raw_value(&notification)?;
                    if sink.send(SubscriptionMessage::from(message)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            Err(RecvError::Lagged(missed)) => {
                return Err(format!(
                    "subscriber fell behind and missed {missed} events (at most {EVENTS_MAX} \
                     wait); resubscribe and read the gap with `block`"
                )
                .into());
            }
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use weft_consensus::{Proposal, Round, Signature, Signed, ValueId, Vote};
    use weft_execution::{ChainId, MemoryState, Payload, StateRoot, propose};

    use super::*;
    use crate::block::{Block, Body};

    fn code(error: &ErrorObjectOwned) -> i32 {
        error.code()
    }

    #[test]
    fn hashes_must_be_64_hex_characters() {
        let hex64 = "ab".repeat(32);
        let cases: [(&str, Result<[u8; 32], &str>); 6] = [
            (&hex64, Ok([0xab; 32])),
            (&format!("0x{hex64}"), Ok([0xab; 32])),
            (&hex64.to_uppercase(), Ok([0xab; 32])),
            ("abcd", Err("hash must be 64 hex characters, got 4")),
            (&"zz".repeat(32), Err("hash is not hex")),
            ("", Err("hash must be 64 hex characters, got 0")),
        ];
        for (text, expected) in cases {
            match (parse_hash32("hash", text), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{text}: {got}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn txs_decode_from_hex_or_base64() {
        let cases: [(&str, Result<&[u8], &str>); 9] = [
            ("00ff10", Ok(&[0x00, 0xff, 0x10])),
            ("0x00FF10", Ok(&[0x00, 0xff, 0x10])),
            ("AP8Q", Ok(&[0x00, 0xff, 0x10])),
            ("aGVsbG8=", Ok(b"hello")),
            ("aGVsbG8", Ok(b"hello")),
            ("+/8=", Ok(&[0xfb, 0xff])),
            ("", Err("tx is empty")),
            ("0x0g", Err("tx is not hex")),
            ("aGV$", Err("tx is neither hex nor base64")),
        ];
        for (text, expected) in cases {
            match (decode_tx_text(text), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{text}: {got}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
        assert!(decode_base64("a").is_err(), "a lone sextet is no byte");
        assert!(decode_base64("aa===").is_err(), "three pads");
    }

    #[test]
    fn params_by_name_or_position_numbers_or_strings() {
        let cases: [(Option<&str>, Option<u64>); 8] = [
            (None, None),
            (Some("{}"), None),
            (Some("[]"), None),
            (Some(r#"{"height":5}"#), Some(5)),
            (Some(r#"{"height":"7"}"#), Some(7)),
            (Some(r#"{"height":null}"#), None),
            (Some("[9]"), Some(9)),
            (Some(r#"{"height":3,"prove":true}"#), Some(3)),
        ];
        for (raw, expected) in cases {
            let got: HeightParams = parse_params(raw).unwrap();
            assert_eq!(got.height, expected, "{raw:?}");
        }
        for raw in [r#"{"height":-1}"#, r#"{"height":"x"}"#, r#"{"height":[]}"#] {
            let error = parse_params::<HeightParams>(Some(raw)).unwrap_err();
            assert_eq!(code(&error), -32602, "{raw}");
            assert!(error.message().contains("integer"), "{raw}: {error:?}");
        }
        let error = parse_params::<HashParams>(None).unwrap_err();
        assert!(
            error.message().contains("missing field `hash`"),
            "{error:?}"
        );
        let got: TxParams = parse_params(Some(r#"["00ff"]"#)).unwrap();
        assert_eq!(got.tx, "00ff");
    }

    #[test]
    fn heights_resolve_within_the_stored_range() {
        let latest = Height(12);
        assert_eq!(resolve_height(None, latest, 1).unwrap(), latest);
        assert_eq!(resolve_height(Some(1), latest, 1).unwrap(), Height(1));
        let cases: [(Option<u64>, Height, u64, &str); 4] = [
            (
                Some(99),
                latest,
                1,
                "height 99 is above the latest height 12",
            ),
            (Some(0), latest, 1, "height 0 is below the initial height 1"),
            (None, Height(0), 1, "no block has been committed yet"),
            (Some(1), Height(0), 1, "no block has been committed yet"),
        ];
        for (requested, latest, initial, message) in cases {
            let error = resolve_height(requested, latest, initial).unwrap_err();
            assert_eq!((code(&error), error.message()), (NOT_FOUND_CODE, message));
        }
    }

    #[test]
    fn queries_name_new_blocks_or_txs() {
        for query in [
            "tm.event='NewBlock'",
            "tm.event = 'NewBlock'",
            "tm.event=\"NewBlock\"",
            "NewBlock",
        ] {
            assert_eq!(parse_query(query), Ok(Query::NewBlock), "{query}");
        }
        assert_eq!(parse_query("tm.event='Tx'"), Ok(Query::Tx));
        assert!(parse_query("tm.event='Vote'").is_err());
        assert!(parse_query("").is_err());
    }

    fn sample_block() -> (SealedBlock, Vec<Transaction>) {
        let chain_id = ChainId::new("weft-test").unwrap();
        let txs: Vec<Transaction> = (1..=2)
            .map(|seed| {
                let key = SigningKey::from_bytes(&[seed; 32]);
                let to = Address([0xee; 32]);
                let payload = Payload::Transfer { to, amount: 5 };
                Transaction::sign(chain_id.clone(), &key, 0, payload)
            })
            .collect();
        let proposal = propose(&MemoryState::new(), &txs).unwrap();
        let vote = |value| Signed {
            message: Vote {
                vote_type: VoteType::Precommit,
                height: Height(6),
                round: Round(1),
                value,
                validator: ValidatorId([3; 32]),
            },
            signature: Signature([4; 64]),
        };
        let certificate = CommitCertificate {
            height: Height(6),
            round: Round(1),
            value: ValueId([5; 32]),
            precommits: vec![vote(Some(ValueId([5; 32])))],
        };
        let header = Header {
            chain_id,
            height: Height(7),
            time_ms: 1_000,
            prev_hash: [1; 32],
            proposer: ValidatorId([2; 32]),
            tx_root: [0; 32],
            dag_root: [0; 32],
            state_root: StateRoot([9; 32]),
            last_commit_hash: [0; 32],
            validators_hash: [8; 32],
            evidence_hash: [0; 32],
        };
        let evidence = vec![Evidence::DuplicateVote {
            first: vote(Some(ValueId([5; 32]))),
            second: vote(None),
        }];
        let body = Body {
            txs: txs.clone(),
            access: proposal.access,
            dag: proposal.dag,
            last_commit: Some(certificate),
            evidence,
        };
        (SealedBlock::new(Block::seal(header, body)), txs)
    }

    #[test]
    fn a_block_is_shaped_like_cometbfts() {
        let (block, txs) = sample_block();
        let json = block_json(&block);
        assert_eq!(json["block_id"]["hash"], hex::encode(block.hash.0));
        let header = &json["block"]["header"];
        assert_eq!(header["chain_id"], "weft-test");
        assert_eq!(header["height"], 7);
        assert_eq!(header["time_ms"], 1_000);
        assert_eq!(header["prev_hash"], hex::encode([1; 32]));
        assert_eq!(header["proposer"], hex::encode([2; 32]));
        assert_eq!(header["state_root"], hex::encode([9; 32]));
        assert_eq!(header["validators_hash"], hex::encode([8; 32]));
        assert_eq!(
            header["tx_root"],
            hex::encode(block.block.header.tx_root),
            "sealing fills the roots"
        );
        for field in ["dag_root", "last_commit_hash", "evidence_hash"] {
            assert_eq!(header[field].as_str().map(str::len), Some(64), "{field}");
        }
        let want_txs: Vec<String> = txs.iter().map(|tx| hex::encode(tx.encode())).collect();
        assert_eq!(json["block"]["data"]["txs"], json!(want_txs));
        assert_eq!(json["block"]["num_txs"], 2);
        let commit = &json["block"]["last_commit"];
        assert_eq!(
            (&commit["height"], &commit["round"]),
            (&json!(6), &json!(1))
        );
        assert_eq!(commit["block_id"]["hash"], hex::encode([5; 32]));
        assert_eq!(
            commit["signatures"],
            json!([{ "validator": hex::encode([3; 32]), "signature": hex::encode([4; 64]) }])
        );
        assert_eq!(
            json["block"]["evidence"],
            json!([{
                "type": "duplicate_vote",
                "validator": hex::encode([3; 32]),
                "height": 6,
                "round": 1,
                "vote_type": "precommit",
                "first_value": hex::encode([5; 32]),
                "second_value": null,
            }])
        );
    }

    #[test]
    fn duplicate_proposals_name_both_values() {
        let proposal = |value| Signed {
            message: Proposal {
                height: Height(3),
                round: Round(0),
                value: ValueId([value; 32]),
                pol_round: None,
                proposer: ValidatorId([7; 32]),
            },
            signature: Signature([0; 64]),
        };
        let json = evidence_json(&Evidence::DuplicateProposal {
            first: proposal(1),
            second: proposal(2),
        });
        assert_eq!(json["type"], "duplicate_proposal");
        assert_eq!(json["validator"], hex::encode([7; 32]));
        assert_eq!(json["first_value"], hex::encode([1; 32]));
        assert_eq!(json["second_value"], hex::encode([2; 32]));
    }

    #[test]
    fn events_become_block_or_tx_notifications() {
        let event = NodeEvent::NewBlock {
            height: Height(4),
            hash: [6; 32],
            time_ms: 50,
            txs: Arc::new(vec![(TxHash([1; 32]), 0), (TxHash([2; 32]), 2)]),
        };
        assert_eq!(
            event_notifications(&event, Query::NewBlock),
            vec![json!({
                "height": 4,
                "hash": hex::encode([6; 32]),
                "time_ms": 50,
                "txs": [
                    { "hash": hex::encode([1; 32]), "code": 0 },
                    { "hash": hex::encode([2; 32]), "code": 2 },
                ],
            })]
        );
        let txs = event_notifications(&event, Query::Tx);
        assert_eq!(txs.len(), 2);
        assert_eq!(
            txs[1],
            json!({
                "hash": hex::encode([2; 32]),
                "height": 4,
                "index": 1,
                "code": 2,
                "log": code_name(2),
            })
        );
    }

    #[test]
    fn malformed_txs_get_the_mempools_code_one() {
        let check = Check::malformed("tx is not hex".into());
        assert_eq!(check.code, 1);
        assert_eq!(
            check.json(),
            json!({ "code": 1, "log": "malformed transaction: tx is not hex", "hash": null })
        );
        assert_eq!(tx_result_json(0), json!({ "code": 0, "log": "ok" }));
    }

    /// A context over a fresh chain with one funded account, real (peerless) gossip, and no
    /// driver: blocks come only from events the test sends.
    async fn context(dir: &std::path::Path) -> (Arc<NodeContext>, SigningKey) {
        context_with(dir, |_| {}).await
    }

    /// [`context`], with `tweak` applied to the config.
    async fn context_with(
        dir: &std::path::Path,
        tweak: impl FnOnce(&mut crate::config::Config),
    ) -> (Arc<NodeContext>, SigningKey) {
        use parking_lot::{Mutex, RwLock};
        use weft_genesis::{ConsensusParams, Genesis, SecretKey};
        use weft_gossip::net::keypair_from_secret;
        use weft_gossip::{GossipConfig, Hooks};

        use crate::config::Config;
        use crate::context::{ConsensusStatus, NodeInfo};
        use crate::mempool::{Mempool, MempoolConfig};
        use crate::metrics::NodeMetrics;

        let (validator, sender) = (SecretKey([1; 32]), SecretKey([2; 32]));
        let genesis = Genesis::new(
            "weft-rpc",
            1_000,
            vec![("v".into(), validator.public(), 10)],
            vec![(sender.public(), 1_000)],
            ConsensusParams::default(),
        )
        .unwrap();
        let chain = Chain::open(dir, genesis, 1).unwrap();
        let (chain_id, validators) = (chain.chain_id().clone(), chain.validators().clone());
        let gossip_config = GossipConfig::new(
            keypair_from_secret(&validator),
            chain_id.as_str(),
            validators,
        );
        let (gossip, _gossip_events) = weft_gossip::spawn(gossip_config, Hooks::default())
            .await
            .unwrap();
        let mut config = Config::default();
        config.rpc.laddr = "127.0.0.1:0".into();
        config.rpc.commit_timeout_ms = 300;
        tweak(&mut config);
        let info = NodeInfo {
            moniker: "m".into(),
            chain_id: chain_id.as_str().into(),
            version: "0".into(),
            peer_id: gossip.peer_id().to_string(),
            validator: Some(hex::encode(validator.public())),
            p2p_addrs: Vec::new(),
            rpc_addr: config.rpc.laddr.clone(),
        };
        let ctx = NodeContext {
            config,
            info,
            chain: Arc::new(RwLock::new(chain)),
            mempool: Arc::new(Mutex::new(Mempool::new(MempoolConfig::default(), chain_id))),
            gossip,
            events: broadcast::channel(EVENTS_MAX).0,
            consensus: Arc::new(Mutex::new(ConsensusStatus::default())),
            evidence: Arc::new(Mutex::new(Vec::new())),
            metrics: Arc::new(NodeMetrics::new().unwrap()),
        };
        (Arc::new(ctx), sender.signing_key())
    }

    fn transfer(key: &SigningKey, nonce: u64) -> Transaction {
        let payload = Payload::Transfer {
            to: Address([0xee; 32]),
            amount: 1,
        };
        Transaction::sign(ChainId::new("weft-rpc").unwrap(), key, nonce, payload)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[expect(
        clippy::await_holding_lock,
        reason = "the held lock stalls the admitter on purpose; the queue has room, so sends never wait"
    )]
    async fn concurrent_admissions_are_batched_in_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, key) = context(dir.path()).await;
        let admitter = Admitter::spawn(
            Arc::clone(&ctx.chain),
            Arc::clone(&ctx.mempool),
            ctx.gossip.clone(),
            Arc::clone(&ctx.metrics),
        );
        // One sender's nonces 0..200 queued before the task can take them, so several share a
        // batch; nonce 0 first. A forged copy of nonce 100 just before the genuine one is
        // refused alone and holds no nonce.
        let mut forged = transfer(&key, 100);
        forged.signature[7] ^= 1;
        let mut raws: Vec<Vec<u8>> = (0..200).map(|n| transfer(&key, n).encode()).collect();
        raws.insert(100, forged.encode());
        raws.push(b"not a tx".to_vec());
        // The mempool's lock, held while queueing, stalls the admitter's first batch, so the
        // rest wait in the queue together.
        let mut pending = Vec::new();
        {
            let _stall = ctx.mempool.lock();
            for raw in &raws {
                pending.push(admitter.submit(raw.clone()).await.unwrap());
            }
        }
        let mut answers = Vec::new();
        for answer in pending {
            answers.push(answer.await.unwrap());
        }
        for (index, answer) in answers.iter().enumerate() {
            match index {
                100 => {
                    assert!(matches!(answer.verdict, Err(AdmitError::BadSignature(_))));
                    assert_eq!(answer.hash, Some(forged.hash()));
                }
                201 => {
                    assert_eq!(answer.verdict.as_ref().unwrap_err().code(), 1);
                    assert_eq!(answer.hash, None);
                }
                _ => {
                    let nonce = if index < 100 { index } else { index - 1 } as u64;
                    let hash = transfer(&key, nonce).hash();
                    assert_eq!(answer.verdict, Ok(hash), "nonce {nonce}");
                    assert_eq!(answer.hash, Some(hash));
                }
            }
        }
        assert_eq!(ctx.mempool.lock().len(), 200);
        assert!(
            answers.iter().any(|answer| answer.batch > 1),
            "no batch held more than one tx"
        );
        assert!(
            answers
                .iter()
                .all(|a| a.batch <= crate::admit::ADMIT_BATCH_MAX)
        );
    }

    /// Named params for a client call.
    fn named(pairs: &[(&str, Value)]) -> jsonrpsee::core::params::ObjectParams {
        let mut params = jsonrpsee::core::params::ObjectParams::new();
        for (name, value) in pairs {
            params.insert(name, value).unwrap();
        }
        params
    }

    /// The code and message of a call's JSON-RPC error.
    fn call_error(error: jsonrpsee::core::ClientError) -> (i32, String) {
        match error {
            jsonrpsee::core::ClientError::Call(e) => (e.code(), e.message().to_owned()),
            other => panic!("not a call error: {other}"),
        }
    }

    /// Waits, with a deadline, until `count` receivers listen for events.
    async fn until_listening(ctx: &NodeContext, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while ctx.events.receiver_count() < count {
            assert!(Instant::now() < deadline, "no listener subscribed");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_server_answers_over_http_and_websocket() {
        use jsonrpsee::core::client::{ClientT, SubscriptionClientT};
        use jsonrpsee::http_client::HttpClientBuilder;
        use jsonrpsee::rpc_params;
        use jsonrpsee::ws_client::WsClientBuilder;

        let dir = tempfile::tempdir().unwrap();
        let (ctx, key) = context(dir.path()).await;
        let (handle, addr) = serve(Arc::clone(&ctx)).await.unwrap();
        let http = HttpClientBuilder::default()
            .build(format!("http://{addr}"))
            .unwrap();

        let health: Value = http.request("health", rpc_params![]).await.unwrap();
        assert_eq!(health, json!({}));
        let status: Value = http.request("status", rpc_params![]).await.unwrap();
        assert_eq!(status["node_info"]["network"], "weft-rpc");
        assert_eq!(status["node_info"]["rpc_addr"], addr.to_string());
        assert_eq!(status["sync_info"]["latest_block_height"], "0");
        assert_eq!(status["validator_info"]["voting_power"], 10);
        let error = http
            .request::<Value, _>("block", rpc_params![])
            .await
            .unwrap_err();
        assert_eq!(
            call_error(error),
            (NOT_FOUND_CODE, "no block has been committed yet".into())
        );

        let address = hex::encode(key.verifying_key().to_bytes());
        let account: Value = http
            .request("account", named(&[("address", json!(address))]))
            .await
            .unwrap();
        assert_eq!(
            account,
            json!({ "address": address, "balance": 1_000, "nonce": 0 })
        );
        let error = http
            .request::<Value, _>("account", named(&[("address", json!("12"))]))
            .await
            .unwrap_err();
        assert_eq!(
            call_error(error),
            (-32602, "address must be 64 hex characters, got 2".into())
        );

        let first = transfer(&key, 0);
        let hash = hex::encode(first.hash().0);
        let tx = json!(hex::encode(first.encode()));
        let sync: Value = http
            .request("broadcast_tx_sync", named(&[("tx", tx.clone())]))
            .await
            .unwrap();
        assert_eq!(sync, json!({ "code": 0, "log": "", "hash": hash }));
        let again: Value = http
            .request("broadcast_tx_sync", rpc_params![tx])
            .await
            .unwrap();
        assert_eq!((&again["code"], &again["hash"]), (&json!(8), &json!(hash)));
        let garbage: Value = http
            .request("broadcast_tx_async", named(&[("tx", json!("zz"))]))
            .await
            .unwrap();
        assert_eq!(garbage["code"], 1);
        let pending: Value = http
            .request("unconfirmed_txs", named(&[("limit", json!("5"))]))
            .await
            .unwrap();
        assert_eq!(
            (&pending["n_txs"], &pending["total"]),
            (&json!(1), &json!(1))
        );
        let error = http
            .request::<Value, _>("tx", named(&[("hash", json!(hash))]))
            .await
            .unwrap_err();
        assert_eq!(call_error(error).0, NOT_FOUND_CODE);

        // No driver runs, so the commit waits out rpc.commit_timeout_ms.
        let second = hex::encode(transfer(&key, 1).encode());
        let error = http
            .request::<Value, _>("broadcast_tx_commit", named(&[("tx", json!(second))]))
            .await
            .unwrap_err();
        assert_eq!(
            call_error(error),
            (COMMIT_TIMEOUT_CODE, COMMIT_TIMEOUT_MESSAGE.into())
        );

        // A commit that sees its block.
        let third = transfer(&key, 2);
        let third_hash = third.hash();
        let call = {
            let http = http.clone();
            let tx = json!(hex::encode(third.encode()));
            tokio::spawn(async move {
                http.request::<Value, _>("broadcast_tx_commit", named(&[("tx", tx)]))
                    .await
            })
        };
        until_listening(&ctx, 1).await;
        let event = NodeEvent::NewBlock {
            height: Height(1),
            hash: [6; 32],
            time_ms: 2_000,
            txs: Arc::new(vec![(third_hash, 0)]),
        };
        // The handler subscribes before it admits; wait for the admission too.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ctx.mempool.lock().contains(&third_hash) {
            assert!(Instant::now() < deadline, "the tx was never admitted");
            tokio::task::yield_now().await;
        }
        ctx.events.send(event.clone()).unwrap();
        let committed = call.await.unwrap().unwrap();
        assert_eq!(
            committed,
            json!({
                "check_tx": { "code": 0, "log": "" },
                "tx_result": { "code": 0, "log": "ok" },
                "hash": hex::encode(third_hash.0),
                "height": 1,
            })
        );

        let ws = WsClientBuilder::default()
            .build(format!("ws://{addr}/websocket"))
            .await
            .unwrap();
        let refused = ws
            .subscribe::<Value, _>("subscribe", rpc_params!["tm.event='Vote'"], "unsubscribe")
            .await;
        assert!(refused.is_err(), "an unsupported query is refused");
        let mut blocks = ws
            .subscribe::<Value, _>(
                "subscribe",
                named(&[("query", json!("tm.event='NewBlock'"))]),
                "unsubscribe",
            )
            .await
            .unwrap();
        until_listening(&ctx, 1).await;
        ctx.events.send(event.clone()).unwrap();
        let notification = blocks.next().await.unwrap().unwrap();
        assert_eq!(
            notification,
            event_notifications(&event, Query::NewBlock)[0]
        );
        blocks.unsubscribe().await.unwrap();
        handle.stop().unwrap();
    }

    #[test]
    fn the_busy_answer_is_well_formed() {
        let (head, body) = BUSY_RESPONSE.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], -32009);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unsafe_set_isolated_exists_only_with_rpc_unsafe() {
        use jsonrpsee::core::client::ClientT;
        use jsonrpsee::http_client::HttpClientBuilder;
        use jsonrpsee::rpc_params;

        for unsafe_routes in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (ctx, _) = context_with(dir.path(), |config| {
                config.rpc.unsafe_routes = unsafe_routes
            })
            .await;
            let (handle, addr) = serve(Arc::clone(&ctx)).await.unwrap();
            let http = HttpClientBuilder::default()
                .build(format!("http://{addr}"))
                .unwrap();
            let isolate = named(&[("isolated", json!(true))]);
            let answer = http
                .request::<Value, _>("unsafe_set_isolated", isolate)
                .await;
            let net_info: Value = http.request("net_info", rpc_params![]).await.unwrap();
            if !unsafe_routes {
                let (code, _) = call_error(answer.unwrap_err());
                assert_eq!(code, jsonrpsee::types::error::METHOD_NOT_FOUND_CODE);
                assert!(!ctx.gossip.is_isolated());
                assert_eq!(net_info["isolated"], false);
                handle.stop().unwrap();
                continue;
            }
            assert_eq!(answer.unwrap(), json!({ "isolated": true, "peers": 0 }));
            assert!(ctx.gossip.is_isolated());
            assert_eq!(net_info["isolated"], true);
            let healed: Value = http
                .request("unsafe_set_isolated", rpc_params![false])
                .await
                .unwrap();
            assert_eq!(healed, json!({ "isolated": false, "peers": 0 }));
            assert!(!ctx.gossip.is_isolated());
            for (params, what) in [
                (named(&[]), "missing field `isolated`"),
                (named(&[("isolated", json!("yes"))]), "expected a boolean"),
            ] {
                let error = http
                    .request::<Value, _>("unsafe_set_isolated", params)
                    .await
                    .unwrap_err();
                let (code, message) = call_error(error);
                assert_eq!(code, jsonrpsee::types::error::INVALID_PARAMS_CODE, "{what}");
                assert!(message.contains(what), "{message}");
            }
            assert!(!ctx.gossip.is_isolated());
            handle.stop().unwrap();
        }
    }
}
