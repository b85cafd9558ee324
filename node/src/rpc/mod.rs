//! The node's RPC: CometBFT v0.38's, shape for shape, so that CometBFT's clients, explorers
//! and wallets work against Weft unchanged (DESIGN §7). [`serve`] binds `rpc.laddr` and serves,
//! on one port:
//!
//! - JSON-RPC 2.0 by `POST /` (jsonrpsee), batches included;
//! - CometBFT's URI form by `GET /<method>?<args>` (`/status`, `/block?height=5`,
//!   `/tx?hash=0x…`, `/broadcast_tx_sync?tx=0x…`; see [`uri`]), answered with id -1, and the
//!   route list as HTML at `GET /`;
//! - CometBFT's WebSocket at `/websocket` ([`ws`]): every method, plus `subscribe`,
//!   `unsubscribe` and `unsubscribe_all`, with events in CometBFT's envelope ([`events`]).
//!
//! The methods are one typed API, [`api::Rpc`] and [`api::UnsafeRpc`] (jsonrpsee traits; Weft's
//! CLI, `weft-testnet` and benches call the generated [`RpcClient`]), with results in
//! [`api::types`] and CometBFT's encodings in [`api::encoding`]. `docs/rpc/openapi.json`
//! describes them all.
//!
//! # Methods
//! CometBFT's: `health`, `status`, `net_info`, `genesis`, `genesis_chunked`, `abci_info`,
//! `abci_query` (paths `/account` and `/name`, latest height only), `block`, `block_by_hash`,
//! `header`, `header_by_hash`, `block_results`, `commit`, `blockchain`, `validators` (paged),
//! `consensus_params`, `consensus_state`, `dump_consensus_state`, `tx`, `tx_search`,
//! `block_search`, `unconfirmed_txs`, `num_unconfirmed_txs`, `check_tx`, `broadcast_tx_async`,
//! `broadcast_tx_sync`, `broadcast_tx_commit`. Weft's: `account` (balance and next nonce) and,
//! with `rpc.unsafe` only, `unsafe_set_isolated` (cuts the node off from its peers).
//!
//! - Params go by name (CometBFT's habit) or by position; unknown names are ignored (`prove`
//!   is accepted and ignored: Weft has no proofs yet).
//! - A missing or 0 `height` means the latest, as in CometBFT.
//! - Hashes are 64 hex digits in either case, optionally `0x`-prefixed, or 32 bytes in
//!   base64 (tendermint-rs sends `tx` and `block_by_hash` hashes so).
//! - A `tx` is base64 (CometBFT's form) or hex with `0x`; a string of hex digits of even length
//!   is read as hex, as Weft always has.
//! - `tx_search` and `block_search` take CometBFT's query language ([`query`]) over `tx.height`,
//!   `tx.hash`, `block.height` and `tm.event`, with `page`, `per_page` (default 30, at most 100)
//!   and `order_by`. A search scans at most [`SEARCH_HEIGHTS_MAX`] heights: a wider one is
//!   refused (-32602) rather than run.
//! - `broadcast_tx_*` and `check_tx` answer the mempool's verdict as a result, not an error:
//!   code 0 admitted, else the mempool's `AdmitError::code()` with its message as `log`
//!   (1 malformed, 2 too large, 3 bad signature, 4 wrong chain, 5 nonce too low, 6 nonce gap,
//!   7 mempool full, 8 already known, 9 nonce taken, 10 state unavailable, 11 not the
//!   validator authority). `check_tx` admits nothing. `broadcast_tx_async` answers once the tx
//!   decodes and checks it in the background; past [`ASYNC_CHECKS_MAX`] running checks it
//!   checks inline, so a flood slows its sender instead of queueing without bound.
//!
//! # Encoding
//! As CometBFT's `libs/json`: 64-bit integers as decimal strings, hashes and addresses as
//! upper-case hex, txs and signatures as base64, times as RFC 3339 in UTC, keys as
//! `{"type": "tendermint/PubKeyEd25519", "value": <base64>}`. A validator's `address` is
//! CometBFT's (the first 20 bytes of the SHA-256 of its key); the node `id` likewise, in
//! lower-case hex, with the libp2p `peer_id` beside it. Header fields map as
//! [`api::types::Header`] says: `data_hash` is the tx root, `app_hash` the state root after the
//! block; `dag_root` and `proposer_pub_key` are Weft's own. Weft's block hash is its own
//! (blake3 of its header), as is its tx hash (blake3 of the tx): no client needs to recompute
//! CometBFT's.
//!
//! # Errors
//! | Code | Meaning |
//! |---|---|
//! | -32700 | parse error |
//! | -32600 | invalid request |
//! | -32601 | method not found (also an `unsafe_*` method without `rpc.unsafe`) |
//! | -32602 | invalid params: missing, mistyped, a bad hash, a bad or too wide query; the reason in `data` |
//! | -32603 | [`INTERNAL_ERROR_CODE`], CometBFT's "Internal error", the reason in `data`: a height out of range (`height 99 must be less than or equal to the current blockchain height 12`, `height 3 is not available, lowest height is 1000`), a tx not found (`tx (HASH) not found`), a page past the last, `broadcast_tx_commit` timing out ([`COMMIT_TIMEOUT_MESSAGE`]), storage failing, a bad subscription (WebSocket) |
//! | -32000 | (WebSocket) a subscription cancelled because its client read too slowly |
//! | -32004 | [`REQUEST_TIMEOUT_CODE`]: a method ran past `rpc.timeout_ms`, or (HTTP 408) a request body did not arrive within `rpc.body_read_timeout_ms` |
//! | -32005 | a batch while batches are disabled (`rpc.max_batch = 0`) |
//! | -32007 / -32008 | request / response over `rpc.max_body_bytes` / `rpc.max_response_bytes` |
//! | -32009 | (HTTP 503) a connection over `rpc.max_connections`, closed after this answer |
//! | -32010 | batch over `rpc.max_batch` |
//!
//! # Limits
//! Request and response bodies, connections and batch size come from `[rpc]`; each method runs
//! under `rpc.timeout_ms` (`broadcast_tx_commit` under that plus `rpc.commit_timeout_ms`). The
//! server speaks HTTP/1.1 (and WebSocket by upgrade) from its own accept loop: at most
//! `rpc.max_connections` open sockets, HTTP and WebSocket together; a request head must arrive
//! within `rpc.header_read_timeout_ms`, its body within `rpc.body_read_timeout_ms`, and a
//! client that stops reading is dropped after `rpc.write_stall_timeout_ms`. A WebSocket
//! connection holds at most [`SUBSCRIPTIONS_PER_CONNECTION_MAX`] subscriptions; a subscriber
//! [`WS_SEND_BUFFER_MAX`] messages behind is dropped rather than slowing the node.
//!
//! Architecture invariant: RPC never writes the chain. Its one write is mempool admission,
//! which takes the chain's read lock before the mempool's lock, in the driver's order. Chain
//! reads run on the blocking pool, so a commit holding the write lock never stalls the
//! server's async workers.

use std::net::{AddrParseError, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::core::{RpcResult, async_trait};
use jsonrpsee::server::{BatchRequestConfig, RpcModule, Server, ServerConfig, ServerHandle};
use jsonrpsee::types::ErrorObjectOwned;
use serde_json::json;
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;
use weft_consensus::{
    CommitCertificate, Evidence, Height, Round, ValidatorId, ValidatorSet, ValueId, VoteType,
};
use weft_execution::{Address, Transaction, TxHash};

use crate::admit::Admitter;
use crate::block::{Header as WeftHeader, SealedBlock};
use crate::chain::{Chain, code_name};
use crate::context::{NodeContext, NodeEvent};
use crate::mempool::AdmitError;

pub mod api;
mod convert;
pub mod events;
mod info;
mod params;
mod query;
mod reads;
#[cfg(test)]
mod tests;
mod transport;
mod txs;
mod uri;
mod ws;

use api::encoding::Int;
use api::types::*;
use api::{HashParam, Order, RpcServer, TxText, UnsafeRpcServer};
use params::*;
use transport::*;

pub use api::{RpcClient, UnsafeRpcClient};
pub use events::{EventStream, EventStreamError};
pub use reads::SEARCH_HEIGHTS_MAX;

/// CometBFT's code for every server-side failure: "Internal error", with what went wrong (a
/// height out of range, a tx not found, storage failing) in `data`.
pub const INTERNAL_ERROR_CODE: i32 = -32603;
/// A method ran past `rpc.timeout_ms`.
pub const REQUEST_TIMEOUT_CODE: i32 = -32004;
/// The message of `broadcast_tx_commit`'s timeout, with the hash and the wait in `data`.
pub const COMMIT_TIMEOUT_MESSAGE: &str = "timed out waiting for tx to be included in a block";

/// Pending txs `unconfirmed_txs` lists when no `limit` is given.
pub const UNCONFIRMED_TXS_DEFAULT: u64 = 30;
/// Most pending txs one `unconfirmed_txs` lists.
pub const UNCONFIRMED_TXS_MAX: u64 = 1_000;
/// Most live subscriptions on one WebSocket connection.
pub const SUBSCRIPTIONS_PER_CONNECTION_MAX: usize = 16;
/// Messages queued for one WebSocket client; a subscriber this far behind is dropped.
pub const WS_SEND_BUFFER_MAX: usize = 256;
/// Most `broadcast_tx_async` checks running in the background at once.
pub const ASYNC_CHECKS_MAX: usize = 256;
/// Longest `unsafe_set_isolated` waits for the node's connections to close before answering.
pub const ISOLATION_SETTLE_MS: u64 = 2_000;
/// How often `unsafe_set_isolated` looks at the peer count while it waits.
const ISOLATION_POLL: Duration = Duration::from_millis(10);

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
    /// How long a method may run, and `broadcast_tx_commit`.
    limit: Duration,
    commit_limit: Duration,
}

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
        .set_batch_request_config(batch)
        .build();
    let limits = ConnectionLimits {
        max_connections: rpc.max_connections as usize,
        max_body_bytes: rpc.max_body_bytes as usize,
        header_read: Duration::from_millis(rpc.header_read_timeout_ms),
        body_read: Duration::from_millis(rpc.body_read_timeout_ms),
        write_stall: Duration::from_millis(rpc.write_stall_timeout_ms),
    };
    let unsafe_routes = rpc.unsafe_routes;
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
    let limit = ctx.config.rpc_timeout();
    let commit_limit = limit + Duration::from_millis(ctx.config.rpc.commit_timeout_ms);
    let rendered = events::spawn_renderer(Arc::clone(&ctx));
    let state = Arc::new(RpcState {
        ctx,
        rpc_addr: bound,
        async_checks: Arc::new(Semaphore::new(ASYNC_CHECKS_MAX)),
        admitter,
        limit,
        commit_limit,
    });
    let module = methods(&state, unsafe_routes);
    let (stop, handle) = jsonrpsee::server::stop_channel();
    let service = Server::builder()
        .set_config(config)
        .to_service_builder()
        .build(module, stop.clone());
    let routes = Routes {
        events: rendered,
        unsafe_routes,
    };
    tokio::spawn(accept_loop(listener, service, routes, stop, limits));
    tracing::info!(addr = %bound, "JSON-RPC server listening");
    Ok((handle, bound))
}

/// Every method: [`api::Rpc`], and [`api::UnsafeRpc`] with `rpc.unsafe`.
fn methods(state: &Arc<RpcState>, unsafe_routes: bool) -> RpcModule<()> {
    let mut module = RpcModule::new(());
    module
        .merge(RpcServer::into_rpc(Handler(Arc::clone(state))))
        .expect("method names are unique");
    if unsafe_routes {
        module
            .merge(UnsafeRpcServer::into_rpc(Handler(Arc::clone(state))))
            .expect("method names are unique");
    }
    module
}

// --- Errors ---

/// CometBFT's answer to a failed call: -32603 "Internal error", the reason in `data`.
fn rpc_error(data: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(INTERNAL_ERROR_CODE, "Internal error", Some(data.into()))
}

/// Nothing at what was asked for (a height out of range, an unknown tx).
fn not_found(message: impl Into<String>) -> ErrorObjectOwned {
    rpc_error(message)
}

/// Storage or the node failed.
fn internal(message: impl std::fmt::Display) -> ErrorObjectOwned {
    rpc_error(message.to_string())
}

fn invalid_params(message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        jsonrpsee::types::error::INVALID_PARAMS_CODE,
        "Invalid params",
        Some(message.into()),
    )
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

/// The server side of [`api::Rpc`]: each method cut off after `rpc.timeout_ms`.
struct Handler(Arc<RpcState>);

impl Handler {
    async fn timed<T>(
        &self,
        name: &str,
        limit: Duration,
        call: impl std::future::Future<Output = RpcResult<T>>,
    ) -> RpcResult<T> {
        tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Err(ErrorObjectOwned::owned(
                REQUEST_TIMEOUT_CODE,
                format!("{name} ran past the {} ms limit", limit.as_millis()),
                None::<()>,
            ))
        })
    }

    async fn run<T>(
        &self,
        name: &str,
        call: impl std::future::Future<Output = RpcResult<T>>,
    ) -> RpcResult<T> {
        self.timed(name, self.0.limit, call).await
    }
}

#[async_trait]
impl RpcServer for Handler {
    async fn health(&self) -> RpcResult<Empty> {
        Ok(Empty {})
    }

    async fn status(&self) -> RpcResult<StatusResult> {
        self.run("status", info::status(&self.0)).await
    }

    async fn net_info(&self) -> RpcResult<NetInfoResult> {
        self.run("net_info", info::net_info(&self.0)).await
    }

    async fn genesis(&self) -> RpcResult<GenesisResult> {
        self.run("genesis", info::genesis(&self.0)).await
    }

    async fn genesis_chunked(&self, chunk: Option<Int>) -> RpcResult<GenesisChunkedResult> {
        self.run("genesis_chunked", info::genesis_chunked(&self.0, chunk))
            .await
    }

    async fn abci_info(&self) -> RpcResult<AbciInfoResult> {
        self.run("abci_info", info::abci_info(&self.0)).await
    }

    async fn abci_query(
        &self,
        path: Option<String>,
        data: Option<api::encoding::HexBytes>,
        height: Option<Int>,
        _prove: Option<bool>,
    ) -> RpcResult<AbciQueryResult> {
        self.run("abci_query", reads::abci_query(&self.0, path, data, height))
            .await
    }

    async fn block(&self, height: Option<Int>) -> RpcResult<BlockResult> {
        self.run("block", reads::block(&self.0, height)).await
    }

    async fn block_by_hash(&self, hash: HashParam) -> RpcResult<BlockResult> {
        self.run("block_by_hash", reads::block_by_hash(&self.0, hash))
            .await
    }

    async fn header(&self, height: Option<Int>) -> RpcResult<HeaderResult> {
        self.run("header", reads::header(&self.0, height)).await
    }

    async fn header_by_hash(&self, hash: HashParam) -> RpcResult<HeaderResult> {
        self.run("header_by_hash", reads::header_by_hash(&self.0, hash))
            .await
    }

    async fn block_results(&self, height: Option<Int>) -> RpcResult<BlockResultsResult> {
        self.run("block_results", reads::block_results(&self.0, height))
            .await
    }

    async fn commit(&self, height: Option<Int>) -> RpcResult<CommitResult> {
        self.run("commit", reads::commit(&self.0, height)).await
    }

    async fn blockchain(
        &self,
        min_height: Option<Int>,
        max_height: Option<Int>,
    ) -> RpcResult<BlockchainResult> {
        self.run(
            "blockchain",
            reads::blockchain(&self.0, min_height, max_height),
        )
        .await
    }

    async fn validators(
        &self,
        height: Option<Int>,
        page: Option<Int>,
        per_page: Option<Int>,
    ) -> RpcResult<ValidatorsResult> {
        self.run(
            "validators",
            info::validators(&self.0, height, page, per_page),
        )
        .await
    }

    async fn consensus_params(&self, height: Option<Int>) -> RpcResult<ConsensusParamsResult> {
        self.run("consensus_params", info::consensus_params(&self.0, height))
            .await
    }

    async fn consensus_state(&self) -> RpcResult<ConsensusStateResult> {
        self.run("consensus_state", info::consensus_state(&self.0))
            .await
    }

    async fn dump_consensus_state(&self) -> RpcResult<DumpConsensusStateResult> {
        self.run("dump_consensus_state", info::dump_consensus_state(&self.0))
            .await
    }

    async fn tx(&self, hash: HashParam, _prove: Option<bool>) -> RpcResult<TxResult> {
        self.run("tx", reads::tx(&self.0, hash)).await
    }

    async fn tx_search(
        &self,
        query: String,
        _prove: Option<bool>,
        page: Option<Int>,
        per_page: Option<Int>,
        order_by: Option<Order>,
    ) -> RpcResult<TxSearchResult> {
        self.run(
            "tx_search",
            reads::tx_search(&self.0, query, page, per_page, order_by),
        )
        .await
    }

    async fn block_search(
        &self,
        query: String,
        page: Option<Int>,
        per_page: Option<Int>,
        order_by: Option<Order>,
    ) -> RpcResult<BlockSearchResult> {
        self.run(
            "block_search",
            reads::block_search(&self.0, query, page, per_page, order_by),
        )
        .await
    }

    async fn unconfirmed_txs(&self, limit: Option<Int>) -> RpcResult<UnconfirmedTxsResult> {
        self.run("unconfirmed_txs", txs::unconfirmed_txs(&self.0, limit))
            .await
    }

    async fn num_unconfirmed_txs(&self) -> RpcResult<UnconfirmedTxsResult> {
        self.run("num_unconfirmed_txs", txs::num_unconfirmed_txs(&self.0))
            .await
    }

    async fn check_tx(&self, tx: TxText) -> RpcResult<CheckTxResult> {
        self.run("check_tx", txs::check_tx(&self.0, tx)).await
    }

    async fn broadcast_tx_async(&self, tx: TxText) -> RpcResult<BroadcastResult> {
        self.run("broadcast_tx_async", txs::broadcast_tx_async(&self.0, tx))
            .await
    }

    async fn broadcast_tx_sync(&self, tx: TxText) -> RpcResult<BroadcastResult> {
        self.run("broadcast_tx_sync", txs::broadcast_tx_sync(&self.0, tx))
            .await
    }

    async fn broadcast_tx_commit(&self, tx: TxText) -> RpcResult<BroadcastCommitResult> {
        let limit = self.0.commit_limit;
        self.timed(
            "broadcast_tx_commit",
            limit,
            txs::broadcast_tx_commit(&self.0, tx),
        )
        .await
    }

    async fn account(&self, address: HashParam) -> RpcResult<AccountResult> {
        self.run("account", reads::account(&self.0, address)).await
    }
}

#[async_trait]
impl UnsafeRpcServer for Handler {
    async fn unsafe_set_isolated(&self, isolated: bool) -> RpcResult<IsolatedResult> {
        self.run(
            "unsafe_set_isolated",
            info::unsafe_set_isolated(&self.0, isolated),
        )
        .await
    }
}
