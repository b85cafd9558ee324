//! CometBFT's JSON-RPC over WebSocket (`rpc/jsonrpc/server/ws_handler.go`,
//! `rpc/core/events.go`, v0.38): requests and answers as text messages, and events for
//! `subscribe`d queries. [`upgrade`] answers the HTTP upgrade and spawns the connection; the
//! node is reached only through a [`WsBackend`], so this module can be tested alone.
//!
//! - `subscribe {"query": q}` (or `[q]`) answers `{}`; from then on each event whose attributes
//!   match `q` arrives as `{"jsonrpc":"2.0","id":<the subscribe's id>,"result":{"query":q,
//!   "data":{"type","value"},"events":{..}}}`. `unsubscribe {"query": q}` and
//!   `unsubscribe_all` answer `{}`. Their failures are CometBFT's: code -32603 with `data`
//!   "failed to parse query: …", "max_subscriptions_per_client N reached", "maximum query length
//!   exceeded", "already subscribed", "subscription not found" (also `unsubscribe_all` with
//!   nothing to remove). Subscriptions are told apart by `Query::text`.
//! - Any other text goes to [`WsBackend::call`] as it is and its answer comes back as it is
//!   (batches included). Text that is not JSON, and binary messages, get a -32700 parse error.
//! - A `subscribe`, `unsubscribe` or `unsubscribe_all` without an id (or with id null) is a
//!   notification: CometBFT skips it, and so do we.
//! - The server pings every [`PING_INTERVAL`] and closes a connection that sends nothing (pongs
//!   included) for [`READ_IDLE_MAX`], CometBFT's timings.
//!
//! Architecture invariant: a slow client never slows the node. The node's only work per event
//! is one `broadcast` send; each connection's forwarder task filters events and queues them for
//! its writer task, in a bounded queue. A block may make more events than the queue holds (one
//! `Tx` per tx), so the forwarder waits for room, but at most [`WsLimits::write_stall`] per
//! node event; only that connection's forwarder waits. When the queue stays full that long, or
//! the forwarder lags a whole broadcast channel behind, every subscription on the connection is
//! cancelled with CometBFT's -32000 error (best effort) and the connection is closed. A write
//! that takes longer than [`WsLimits::write_stall`] closes the connection too.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::query::Query;

/// The longest query `subscribe` accepts, in bytes: CometBFT's `maxQueryLength`.
pub(crate) const QUERY_BYTES_MAX: usize = 512;

/// How often the server pings a client: CometBFT's `defaultWSPingPeriod`.
pub(crate) const PING_INTERVAL: Duration = Duration::from_secs(27);

/// How long a client may send nothing, pongs included: CometBFT's `defaultWSReadWait`.
pub(crate) const READ_IDLE_MAX: Duration = Duration::from_secs(30);

// A client that answers every ping is never idle for long.
const _: () = assert!(PING_INTERVAL.as_millis() < READ_IDLE_MAX.as_millis());

/// tungstenite's read buffer per connection, allocated up front (its default is 128 KiB);
/// requests are small, so idle subscribers stay cheap.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Why a subscription was cancelled under a client that reads too slowly, in CometBFT's words
/// (`rpc/core/README.md`; its code spells "canceled").
pub(crate) const SLOW_CLIENT_CANCEL: &str =
    "subscription was canceled (reason: client is not pulling messages fast enough)";

/// JSON-RPC's parse error, for text that is not JSON and for binary messages.
const PARSE_ERROR_CODE: i64 = -32700;
/// JSON-RPC's invalid request, for a subscription request whose id is not a string or number.
const INVALID_REQUEST_CODE: i64 = -32600;
/// JSON-RPC's internal error: CometBFT answers every failed `subscribe` with it.
const INTERNAL_ERROR_CODE: i64 = -32603;
/// CometBFT's "Server error", with which it cancels a subscription.
const SERVER_ERROR_CODE: i64 = -32000;

/// One event as subscribers see it: CometBFT's `data: {type, value}` and its `events` map.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WsEvent {
    /// `data.type`, e.g. `tendermint/event/NewBlock`.
    pub type_name: String,
    /// `data.value`.
    pub value: Value,
    /// `events`: what queries match against; includes `"tm.event": ["NewBlock"]`.
    pub attributes: BTreeMap<String, Vec<String>>,
}

/// What a WebSocket connection needs from the node.
pub(crate) trait WsBackend: Clone + Send + Sync + 'static {
    /// Answers one JSON-RPC request text (or a batch) for any method but subscribe/unsubscribe/
    /// unsubscribe_all; the response text (None for a notification without id).
    fn call(&self, request: String) -> impl Future<Output = Option<String>> + Send;

    /// Every event the node emits from now on; each item is all the events one node event makes
    /// (a block makes NewBlock, NewBlockHeader and one Tx per tx).
    fn events(&self) -> broadcast::Receiver<Arc<Vec<WsEvent>>>;
}

/// Bounds on one WebSocket connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WsLimits {
    /// The largest message (and frame) a client may send; a larger one closes the connection.
    pub max_message_bytes: usize,
    /// The most live subscriptions on one connection.
    pub max_subscriptions: usize,
    /// The most messages queued toward the client (at least 1 is used). A node event whose
    /// messages find no room for `write_stall` cancels the connection's subscriptions and closes
    /// it.
    pub send_buffer: usize,
    /// The longest one write to the client may take before the connection is closed, and the
    /// longest the forwarder waits for room in the queue.
    pub write_stall: Duration,
}

/// True when `request` asks for a WebSocket upgrade (`Upgrade: websocket`). Whether it asks
/// correctly is [`upgrade`]'s question.
pub(crate) fn is_upgrade<B>(request: &Request<B>) -> bool {
    has_token(request.headers(), header::UPGRADE, "websocket")
}

/// Answers the upgrade (101 with `Sec-WebSocket-Accept`; 400 with the reason for a bad
/// handshake) and spawns the connection, which runs until the client leaves or `shutdown`
/// resolves. The caller's hyper connection must be served `.with_upgrades()`. Any origin is
/// accepted, as CometBFT does.
pub(crate) fn upgrade<B>(
    mut request: Request<B>,
    backend: impl WsBackend,
    limits: WsLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Response<String> {
    let accept = match handshake_accept(&request) {
        Ok(accept) => accept,
        Err(error) => return bad_handshake(&error),
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        let upgraded = tokio::select! {
            upgraded = on_upgrade => upgraded,
            () = &mut shutdown => return,
        };
        match upgraded {
            Ok(upgraded) => {
                let io = TokioIo::new(upgraded);
                let socket = WebSocketStream::from_raw_socket(
                    io,
                    Role::Server,
                    Some(socket_config(&limits)),
                )
                .await;
                serve(socket, backend, limits, shutdown).await;
            }
            Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
        }
    });
    let mut response = Response::new(String::new());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// Why an upgrade request is refused.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("a WebSocket handshake is an HTTP/1.1 GET")]
    NotGet,
    #[error("a WebSocket handshake needs `Connection: Upgrade`")]
    NoConnectionUpgrade,
    #[error("a WebSocket handshake needs `Upgrade: websocket`")]
    NoUpgradeWebsocket,
    #[error("only Sec-WebSocket-Version 13 is supported")]
    BadVersion,
    #[error("Sec-WebSocket-Key is missing or is not 16 bytes in base64")]
    BadKey,
}

/// The `Sec-WebSocket-Accept` for a valid handshake (RFC 6455 §4.2.1).
fn handshake_accept<B>(request: &Request<B>) -> Result<HeaderValue, HandshakeError> {
    let headers = request.headers();
    if request.method() != Method::GET || request.version() != Version::HTTP_11 {
        return Err(HandshakeError::NotGet);
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(HandshakeError::NoUpgradeWebsocket);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(HandshakeError::BadVersion);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes)
        .filter(|key| is_nonce(key))
        .ok_or(HandshakeError::BadKey)?;
    HeaderValue::try_from(derive_accept_key(key)).map_err(|_| HandshakeError::BadKey)
}

/// 16 bytes in base64: 22 base64 digits and `==`.
fn is_nonce(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// True when a comma-separated header `name` has `token`, in any case.
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// 400 with the reason as text (and the version we speak, as RFC 6455 §4.4 asks).
fn bad_handshake(error: &HandshakeError) -> Response<String> {
    let mut response = Response::new(error.to_string());
    *response.status_mut() = StatusCode::BAD_REQUEST;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    response
}

fn socket_config(limits: &WsLimits) -> WebSocketConfig {
    // The write buffer is left at tungstenite's defaults: the writer flushes every message before
    // taking the next, so it holds one message at most, and the queue in front of it is bounded.
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(limits.max_message_bytes))
        .max_frame_size(Some(limits.max_message_bytes))
        .accept_unmasked_frames(false)
}

/// How a connection ends; the first reason given is the one the writer acts on.
#[derive(Debug, Clone)]
enum Closing {
    /// The client left, broke the protocol, or went idle.
    Ended,
    /// The node is stopping.
    Shutdown,
    /// The client reads too slowly: these error responses, one per subscription, then close.
    SlowClient(Vec<String>),
}

/// Runs one upgraded connection until the client leaves, it fails, or `shutdown` resolves.
async fn serve<S, B>(
    socket: WebSocketStream<S>,
    backend: B,
    limits: WsLimits,
    shutdown: impl Future<Output = ()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: WsBackend,
{
    debug_assert!(limits.send_buffer > 0, "a WebSocket send_buffer of 0");
    let (sink, stream) = socket.split();
    let (queue, queue_rx) = mpsc::channel(limits.send_buffer.max(1));
    let (closing, closing_rx) = watch::channel(None);
    let writer = tokio::spawn(write_loop(sink, queue_rx, closing_rx, limits.write_stall));
    let mut connection = Connection {
        backend,
        max_subscriptions: limits.max_subscriptions,
        queue: queue.clone(),
        closing: closing.clone(),
        subscriptions: Arc::new(tokio::sync::Mutex::new(BTreeMap::new())),
        forwarder: None,
        queue_wait: limits.write_stall,
    };
    let reason = tokio::select! {
        () = shutdown => Closing::Shutdown,
        () = connection.read_loop(stream) => Closing::Ended,
        // The writer gave up (a stall, a failed write, or a slow client's farewell).
        () = queue.closed() => Closing::Ended,
    };
    drop(connection);
    close(&closing, reason);
    if let Err(error) = writer.await {
        tracing::warn!(%error, "websocket writer task failed");
    }
}

/// Asks the writer to end the connection, unless it has been asked already.
fn close(closing: &watch::Sender<Option<Closing>>, reason: Closing) {
    closing.send_if_modified(|current| {
        let first = current.is_none();
        if first {
            *current = Some(reason);
        }
        first
    });
}

/// The only task that writes to the client: queued messages and pings, each write bounded by
/// `write_stall`, then a farewell once asked to close.
async fn write_loop<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut queue: mpsc::Receiver<String>,
    mut closing: watch::Receiver<Option<Closing>>,
    write_stall: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            biased;
            _ = closing.changed() => break,
            text = queue.recv() => match text {
                Some(text) => Message::text(text),
                None => break,
            },
            _ = ping.tick() => Message::Ping(Default::default()),
        };
        match tokio::time::timeout(write_stall, sink.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "websocket write failed; closing");
                return;
            }
            Err(_) => {
                tracing::debug!(?write_stall, "websocket write stalled; closing");
                return;
            }
        }
    }
    let reason = closing.borrow().clone();
    farewell(&mut sink, reason, write_stall).await;
}

/// Best effort: the slow client's errors and a close frame, within `write_stall`.
async fn farewell<S>(
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    reason: Option<Closing>,
    write_stall: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (errors, frame) = match reason {
        Some(Closing::SlowClient(errors)) => (errors, Some((CloseCode::Policy, "slow client"))),
        Some(Closing::Shutdown) => (Vec::new(), Some((CloseCode::Away, "node shutting down"))),
        Some(Closing::Ended) | None => (Vec::new(), None),
    };
    let frame = frame.map(|(code, reason)| CloseFrame {
        code,
        reason: reason.into(),
    });
    let send_all = async {
        for text in errors {
            sink.feed(Message::text(text)).await?;
        }
        sink.send(Message::Close(frame)).await
    };
    match tokio::time::timeout(write_stall, send_all).await {
        Ok(Ok(())) => {}
        // After the client's own close, tungstenite refuses a second one: nothing is lost.
        Ok(Err(error)) => tracing::debug!(%error, "websocket farewell not sent"),
        Err(_) => tracing::debug!(?write_stall, "websocket farewell stalled"),
    }
}

/// One subscription, rendered once for every event it will carry.
#[derive(Debug)]
struct Subscription {
    query: Query,
    /// The subscribe request's id, as JSON: CometBFT sends each event under it.
    id_json: String,
    /// The query as the client sent it, as a JSON string: CometBFT echoes it in each event.
    query_json: String,
}

/// A connection's subscriptions by `Query::text`, shared by its reader and its forwarder. The
/// forwarder queues each event's messages under the lock, and the reader changes the map and
/// queues its answer under it too, so no event of a subscription is queued before its
/// subscribe answer or after its unsubscribe answer.
/// An async lock: the forwarder holds it while it waits for room in the queue, so that an
/// unsubscribe's answer never overtakes an event queued for that subscription.
type Subscriptions = Arc<tokio::sync::Mutex<BTreeMap<String, Subscription>>>;

/// What a valid `subscribe`, `unsubscribe` or `unsubscribe_all` asks for.
enum Change {
    Subscribe(Subscription),
    Unsubscribe(Query),
    UnsubscribeAll,
}

/// Why a subscription request failed; the messages are CometBFT's.
#[derive(Debug, thiserror::Error)]
enum SubscriptionError {
    #[error("error converting json params to arguments: expected {{\"query\": string}}")]
    BadParams,
    #[error("max_subscriptions_per_client {0} reached")]
    TooMany(usize),
    #[error("maximum query length exceeded")]
    QueryTooLong,
    #[error("failed to parse query: {0}")]
    BadQuery(String),
    #[error("already subscribed")]
    AlreadySubscribed,
    #[error("subscription not found")]
    NotFound,
}

/// The writer is gone, so the connection is over.
struct QueueClosed;

/// Aborts the event forwarder when the last subscription goes or the connection ends.
struct Forwarder(JoinHandle<()>);

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A connection's reading side: answers requests and owns the subscriptions.
struct Connection<B> {
    backend: B,
    max_subscriptions: usize,
    queue: mpsc::Sender<String>,
    closing: watch::Sender<Option<Closing>>,
    subscriptions: Subscriptions,
    /// Runs while there are subscriptions (and briefly while a subscribe is answered).
    forwarder: Option<Forwarder>,
    /// How long the forwarder waits for room in the queue before it drops the client.
    queue_wait: Duration,
}

impl<B: WsBackend> Connection<B> {
    /// Reads and answers messages, in order, until the client leaves, fails or goes idle.
    async fn read_loop<S>(&mut self, mut stream: SplitStream<WebSocketStream<S>>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            let message = match tokio::time::timeout(READ_IDLE_MAX, stream.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(error))) => {
                    tracing::debug!(%error, "websocket read failed; closing");
                    return;
                }
                Ok(None) => return,
                Err(_) => {
                    tracing::debug!(?READ_IDLE_MAX, "websocket client idle; closing");
                    return;
                }
            };
            let answered = match message {
                Message::Text(text) => self.answer(text.as_str()).await,
                Message::Binary(_) => {
                    self.reply(parse_error("binary messages are not JSON-RPC"))
                        .await
                }
                Message::Close(_) => return,
                // tungstenite answers pings itself.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
            };
            if answered.is_err() {
                return;
            }
        }
    }

    /// Answers one text message, if it gets an answer.
    async fn answer(&mut self, text: &str) -> Result<(), QueueClosed> {
        let request: Value = match serde_json::from_str(text) {
            Ok(request) => request,
            Err(error) => {
                return self
                    .reply(parse_error(&format!("error unmarshaling request: {error}")))
                    .await;
            }
        };
        let method = request.get("method").and_then(Value::as_str);
        if !matches!(
            method,
            Some("subscribe" | "unsubscribe" | "unsubscribe_all")
        ) {
            return match self.backend.call(text.to_owned()).await {
                Some(response) => self.reply(response).await,
                None => Ok(()),
            };
        }
        let id_json = match request.get("id") {
            None | Some(Value::Null) => return Ok(()),
            Some(id @ (Value::String(_) | Value::Number(_))) => id.to_string(),
            Some(_) => {
                let data = "id must be a string or a number";
                return self
                    .reply(error_response(
                        "null",
                        INVALID_REQUEST_CODE,
                        "Invalid Request",
                        data,
                    ))
                    .await;
            }
        };
        let params = request.get("params");
        let live = self.subscriptions.lock().await.len();
        let change = match method {
            Some("subscribe") => subscribe(&id_json, params, live, self.max_subscriptions),
            Some("unsubscribe") => unsubscribe(params),
            _ => Ok(Change::UnsubscribeAll),
        };
        self.apply(change, &id_json).await
    }

    /// Makes the change and queues its answer, under the subscriptions' lock.
    async fn apply(
        &mut self,
        change: Result<Change, SubscriptionError>,
        id_json: &str,
    ) -> Result<(), QueueClosed> {
        // Events from the moment of the answer on: the receiver must exist before it is queued.
        if matches!(change, Ok(Change::Subscribe(_))) && self.forwarder.is_none() {
            let task = forward_events(
                self.backend.events(),
                Arc::clone(&self.subscriptions),
                self.queue.clone(),
                self.closing.clone(),
                self.queue_wait,
            );
            self.forwarder = Some(Forwarder(tokio::spawn(task)));
        }
        let permit = self
            .queue
            .clone()
            .reserve_owned()
            .await
            .map_err(|_| QueueClosed)?;
        let mut subscriptions = self.subscriptions.lock().await;
        let outcome = change.and_then(|change| change.apply(&mut subscriptions));
        let answer = match outcome {
            Ok(()) => success_response(id_json, "{}"),
            Err(error) => error_response(
                id_json,
                INTERNAL_ERROR_CODE,
                "Internal error",
                &error.to_string(),
            ),
        };
        permit.send(answer);
        debug_assert!(subscriptions.len() <= self.max_subscriptions);
        if subscriptions.is_empty() {
            self.forwarder = None;
        }
        Ok(())
    }

    /// Queues an answer, waiting for room: a client that sends requests without reading the
    /// answers slows only itself.
    async fn reply(&self, answer: String) -> Result<(), QueueClosed> {
        self.queue.send(answer).await.map_err(|_| QueueClosed)
    }
}

/// A `subscribe`'s checks in CometBFT's order, but for "already subscribed" ([`Change::apply`]).
fn subscribe(
    id_json: &str,
    params: Option<&Value>,
    live: usize,
    max_subscriptions: usize,
) -> Result<Change, SubscriptionError> {
    let text = query_param(params)?;
    if live >= max_subscriptions {
        return Err(SubscriptionError::TooMany(max_subscriptions));
    }
    if text.len() > QUERY_BYTES_MAX {
        return Err(SubscriptionError::QueryTooLong);
    }
    let query =
        Query::parse(text).map_err(|error| SubscriptionError::BadQuery(error.to_string()))?;
    Ok(Change::Subscribe(Subscription {
        query,
        id_json: id_json.to_owned(),
        query_json: Value::String(text.to_owned()).to_string(),
    }))
}

fn unsubscribe(params: Option<&Value>) -> Result<Change, SubscriptionError> {
    let text = query_param(params)?;
    let query =
        Query::parse(text).map_err(|error| SubscriptionError::BadQuery(error.to_string()))?;
    Ok(Change::Unsubscribe(query))
}

/// `params.query`, or `params[0]`.
fn query_param(params: Option<&Value>) -> Result<&str, SubscriptionError> {
    let query = match params {
        Some(Value::Object(named)) => named.get("query"),
        Some(Value::Array(positional)) => positional.first(),
        _ => None,
    };
    query
        .and_then(Value::as_str)
        .ok_or(SubscriptionError::BadParams)
}

impl Change {
    fn apply(
        self,
        subscriptions: &mut BTreeMap<String, Subscription>,
    ) -> Result<(), SubscriptionError> {
        match self {
            Change::Subscribe(subscription) => {
                let key = subscription.query.text();
                if subscriptions.contains_key(key) {
                    return Err(SubscriptionError::AlreadySubscribed);
                }
                subscriptions.insert(key.to_owned(), subscription);
            }
            Change::Unsubscribe(query) => {
                subscriptions
                    .remove(query.text())
                    .ok_or(SubscriptionError::NotFound)?;
            }
            Change::UnsubscribeAll if subscriptions.is_empty() => {
                return Err(SubscriptionError::NotFound);
            }
            Change::UnsubscribeAll => subscriptions.clear(),
        }
        Ok(())
    }
}

/// The forwarder: queues each event for each subscription it matches, without ever waiting on
/// the client. A full queue or a lag behind the node cancels every subscription and closes.
async fn forward_events(
    mut events: broadcast::Receiver<Arc<Vec<WsEvent>>>,
    subscriptions: Subscriptions,
    queue: mpsc::Sender<String>,
    closing: watch::Sender<Option<Closing>>,
    queue_wait: Duration,
) {
    loop {
        let batch = match events.recv().await {
            Ok(batch) => batch,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "websocket subscriber lagged; closing");
                return cancel(&*subscriptions.lock().await, &closing);
            }
            // The node is stopping; `shutdown` closes the connection.
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let subscriptions = subscriptions.lock().await;
        match queue_matches(&batch, &subscriptions, &queue, queue_wait).await {
            Ok(()) => {}
            Err(Unqueued::Stalled) => {
                tracing::debug!(
                    ?queue_wait,
                    "websocket subscriber's queue stayed full; closing"
                );
                return cancel(&subscriptions, &closing);
            }
            Err(Unqueued::Closed) => return,
        }
    }
}

/// Why an event was not queued.
enum Unqueued {
    /// The queue had no room for `queue_wait`: the client reads too slowly.
    Stalled,
    /// The connection is closing.
    Closed,
}

/// Queues each event of `batch` once for each subscription it matches. A block can make more
/// events than the queue holds (one `Tx` per tx), so a full queue is waited on, for at most
/// `queue_wait` from the batch's start: a client that reads keeps up, one that does not is
/// dropped. The node never waits: only this connection's forwarder does, and if it falls a
/// whole event channel behind, it is dropped for that.
async fn queue_matches(
    batch: &[WsEvent],
    subscriptions: &BTreeMap<String, Subscription>,
    queue: &mpsc::Sender<String>,
    queue_wait: Duration,
) -> Result<(), Unqueued> {
    let deadline = Instant::now() + queue_wait;
    for event in batch {
        let mut rendered = None;
        for subscription in subscriptions
            .values()
            .filter(|s| s.query.matches(&event.attributes))
        {
            let (data, attributes) = rendered.get_or_insert_with(|| render(event));
            let query = &subscription.query_json;
            let result = format!(r#"{{"query":{query},"data":{data},"events":{attributes}}}"#);
            let message = success_response(&subscription.id_json, &result);
            match queue.try_send(message) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(Unqueued::Closed),
                Err(mpsc::error::TrySendError::Full(message)) => {
                    match tokio::time::timeout_at(deadline, queue.send(message)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return Err(Unqueued::Closed),
                        Err(_) => return Err(Unqueued::Stalled),
                    }
                }
            }
        }
    }
    Ok(())
}

/// An event's `data` and `events` as JSON, rendered once however many subscriptions match.
fn render(event: &WsEvent) -> (String, String) {
    let data = format!(
        r#"{{"type":{},"value":{}}}"#,
        Value::String(event.type_name.clone()),
        event.value
    );
    let attributes: serde_json::Map<String, Value> = event
        .attributes
        .iter()
        .map(|(key, values)| (key.clone(), Value::from(values.clone())))
        .collect();
    (data, Value::Object(attributes).to_string())
}

/// Cancels every subscription with CometBFT's error and asks the writer to close.
fn cancel(
    subscriptions: &BTreeMap<String, Subscription>,
    closing: &watch::Sender<Option<Closing>>,
) {
    let errors = subscriptions
        .values()
        .map(|s| {
            error_response(
                &s.id_json,
                SERVER_ERROR_CODE,
                "Server error",
                SLOW_CLIENT_CANCEL,
            )
        })
        .collect();
    close(closing, Closing::SlowClient(errors));
}

/// A JSON-RPC result; `id_json` and `result` are JSON.
fn success_response(id_json: &str, result: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id_json},"result":{result}}}"#)
}

/// A JSON-RPC error response; `id_json` is the id as JSON.
fn error_response(id_json: &str, code: i64, message: &str, data: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id_json},"error":{{"code":{code},"message":{},"data":{}}}}}"#,
        Value::String(message.to_owned()),
        Value::String(data.to_owned()),
    )
}

fn parse_error(data: &str) -> String {
    error_response("null", PARSE_ERROR_CODE, "Parse error", data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Incoming;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use serde_json::json;
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::{MaybeTlsStream, connect_async};

    /// Long enough for anything a test waits for: a deadline, never a measure.
    const DEADLINE: Duration = Duration::from_secs(20);

    /// The fake node's event buffer: more than any test emits at once.
    const EVENTS_CAPACITY: usize = 1024;

    const LIMITS: WsLimits = WsLimits {
        max_message_bytes: 64 * 1024,
        max_subscriptions: 16,
        send_buffer: 64,
        write_stall: Duration::from_secs(5),
    };

    /// Echoes each call as its result; events come from `events`.
    #[derive(Clone)]
    struct FakeBackend {
        events: broadcast::Sender<Arc<Vec<WsEvent>>>,
    }

    impl WsBackend for FakeBackend {
        async fn call(&self, request: String) -> Option<String> {
            let request: Value = serde_json::from_str(&request).ok()?;
            let id = request.get("id")?.clone();
            Some(json!({"jsonrpc": "2.0", "id": id, "result": {"echo": request}}).to_string())
        }

        fn events(&self) -> broadcast::Receiver<Arc<Vec<WsEvent>>> {
            self.events.subscribe()
        }
    }

    /// A hyper http1 server on 127.0.0.1 that serves [`upgrade`] and 404 otherwise.
    struct TestServer {
        address: SocketAddr,
        backend: FakeBackend,
        stop: watch::Sender<bool>,
    }

    impl TestServer {
        async fn start(limits: WsLimits) -> TestServer {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let backend = FakeBackend {
                events: broadcast::channel(EVENTS_CAPACITY).0,
            };
            let (stop, stopped) = watch::channel(false);
            let served = backend.clone();
            tokio::spawn(async move {
                loop {
                    let (tcp, _) = listener.accept().await.unwrap();
                    let (backend, stopped) = (served.clone(), stopped.clone());
                    let service = service_fn(move |request: Request<Incoming>| {
                        let response = if is_upgrade(&request) {
                            upgrade(request, backend.clone(), limits, stop_of(stopped.clone()))
                        } else {
                            let mut response = Response::new(String::from("not found"));
                            *response.status_mut() = StatusCode::NOT_FOUND;
                            response
                        };
                        async move { Ok::<_, Infallible>(response) }
                    });
                    tokio::spawn(
                        http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), service)
                            .with_upgrades(),
                    );
                }
            });
            TestServer {
                address,
                backend,
                stop,
            }
        }

        fn emit(&self, events: Vec<WsEvent>) {
            // No receiver is fine: no connection has a subscription.
            let _ = self.backend.events.send(Arc::new(events));
        }

        /// Connections whose forwarder runs (those with subscriptions).
        fn forwarders(&self) -> usize {
            self.backend.events.receiver_count()
        }
    }

    async fn stop_of(mut stopped: watch::Receiver<bool>) {
        let _ = stopped.wait_for(|stop| *stop).await;
    }

    /// A tokio-tungstenite client, every wait under [`DEADLINE`].
    struct Client {
        socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    }

    impl Client {
        async fn connect(server: &TestServer) -> Client {
            let url = format!("ws://{}/websocket", server.address);
            let (socket, response) = connect_async(url).await.unwrap();
            assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
            Client { socket }
        }

        async fn send(&mut self, message: Message) {
            self.socket.send(message).await.unwrap();
        }

        /// The next message, or None once the connection has ended.
        async fn next(&mut self) -> Option<Message> {
            let next = tokio::time::timeout(DEADLINE, self.socket.next())
                .await
                .expect("nothing arrived before the deadline");
            next.and_then(Result::ok)
        }

        /// The next text message, as JSON.
        async fn receive(&mut self) -> Value {
            loop {
                match self.next().await {
                    Some(Message::Text(text)) => return serde_json::from_str(&text).unwrap(),
                    Some(Message::Ping(_) | Message::Pong(_)) => {}
                    other => panic!("expected a text message, got {other:?}"),
                }
            }
        }

        async fn call(&mut self, request: &Value) -> Value {
            self.send(Message::text(request.to_string())).await;
            self.receive().await
        }

        async fn subscribe(&mut self, id: &str, query: &str) {
            let subscribe = request(json!(id), "subscribe", json!({"query": query}));
            assert_eq!(self.call(&subscribe).await, ok(json!(id)), "{subscribe}");
        }

        /// Every text message and the close frame until the connection ends.
        async fn drain(&mut self) -> (Vec<Value>, Option<CloseFrame>) {
            let mut texts = Vec::new();
            loop {
                match self.next().await {
                    Some(Message::Text(text)) => texts.push(serde_json::from_str(&text).unwrap()),
                    Some(Message::Close(frame)) => return (texts, frame),
                    None => return (texts, None),
                    Some(_) => {}
                }
            }
        }
    }

    fn ok(id: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "result": {}})
    }

    fn event(kind: &str, height: u64) -> WsEvent {
        WsEvent {
            type_name: format!("tendermint/event/{kind}"),
            value: json!({"height": height}),
            attributes: BTreeMap::from([
                ("tm.event".to_owned(), vec![kind.to_owned()]),
                ("block.height".to_owned(), vec![height.to_string()]),
            ]),
        }
    }

    /// What a subscriber with `id` and `query` receives for `event(kind, height)`.
    fn envelope(id: &str, query: &str, kind: &str, height: u64) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "result": {
            "query": query,
            "data": {"type": format!("tendermint/event/{kind}"), "value": {"height": height}},
            "events": {"tm.event": [kind], "block.height": [height.to_string()]},
        }})
    }

    /// What a step's answer must be.
    enum Expect {
        /// `{"result": {}}` under the request's id.
        Ok,
        /// The fake backend's echo of the request.
        Echo,
        /// CometBFT's -32603 "Internal error" under the request's id, `data` starting so.
        Internal(&'static str),
        /// -32600 "Invalid Request" under id null.
        InvalidRequest,
    }

    /// Sends each request in turn on one connection and checks its answer.
    async fn check(limits: WsLimits, steps: &[(Value, Expect)]) {
        let server = TestServer::start(limits).await;
        let mut client = Client::connect(&server).await;
        for (request, expected) in steps {
            let answer = client.call(request).await;
            let (id, code, message, data) = match expected {
                Expect::Ok => {
                    assert_eq!(answer, ok(request["id"].clone()), "{request}");
                    continue;
                }
                Expect::Echo => {
                    assert_eq!(answer["result"]["echo"], *request);
                    continue;
                }
                Expect::Internal(data) => (&request["id"], -32603, "Internal error", *data),
                Expect::InvalidRequest => (&Value::Null, -32600, "Invalid Request", ""),
            };
            let error = &answer["error"];
            assert_eq!(answer["jsonrpc"], "2.0", "{request} answered {answer}");
            assert_eq!(answer["id"], *id, "{request} answered {answer}");
            assert_eq!(error["code"], code, "{request} answered {answer}");
            assert_eq!(error["message"], message, "{request} answered {answer}");
            let got = error["data"].as_str().unwrap();
            assert!(got.starts_with(data), "{request} answered {answer}");
        }
    }

    fn request(id: Value, method: &str, params: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
    }

    fn subscribe(id: u64, query: &str) -> Value {
        request(json!(id), "subscribe", json!({"query": query}))
    }

    fn unsubscribe(id: u64, query: &str) -> Value {
        request(json!(id), "unsubscribe", json!({"query": query}))
    }

    #[tokio::test]
    async fn subscription_requests_are_answered_as_cometbft_does() {
        let long_query = format!("tm.event='{}'", "x".repeat(QUERY_BYTES_MAX));
        let limits = WsLimits {
            max_subscriptions: 2,
            ..LIMITS
        };
        let object_id = json!({"an": "object"});
        let steps = [
            (subscribe(1, "tm.event='NewBlock'"), Expect::Ok),
            (
                subscribe(2, "tm.event='NewBlock'"),
                Expect::Internal("already subscribed"),
            ),
            (
                subscribe(3, "tm.event="),
                Expect::Internal("failed to parse query: "),
            ),
            (
                subscribe(4, &long_query),
                Expect::Internal("maximum query length exceeded"),
            ),
            (
                request(json!(5), "subscribe", json!({})),
                Expect::Internal("error converting"),
            ),
            (
                request(json!(6), "subscribe", json!(null)),
                Expect::Internal("error converting"),
            ),
            (
                request(json!("seven"), "subscribe", json!(["tm.event='Tx'"])),
                Expect::Ok,
            ),
            (
                subscribe(8, "tm.event='Vote'"),
                Expect::Internal("max_subscriptions_per_client 2 reached"),
            ),
            (
                unsubscribe(9, "tm.event='Vote'"),
                Expect::Internal("subscription not found"),
            ),
            (
                unsubscribe(10, "tm.event="),
                Expect::Internal("failed to parse query: "),
            ),
            (unsubscribe(11, "tm.event='Tx'"), Expect::Ok),
            (subscribe(12, "tm.event='Vote'"), Expect::Ok),
            (request(json!(13), "unsubscribe_all", json!({})), Expect::Ok),
            (
                request(json!(14), "unsubscribe_all", json!({})),
                Expect::Internal("subscription not found"),
            ),
            (
                request(object_id, "subscribe", json!(["tm.event='Tx'"])),
                Expect::InvalidRequest,
            ),
            (request(json!(15), "status", json!({})), Expect::Echo),
        ];
        check(limits, &steps).await;
    }

    #[tokio::test]
    async fn text_that_is_not_json_gets_a_parse_error() {
        let server = TestServer::start(LIMITS).await;
        let mut client = Client::connect(&server).await;
        for text in ["", "{", "not json", "{\"id\": 1,}"] {
            client.send(Message::text(text)).await;
            let answer = client.receive().await;
            assert_eq!(answer["id"], Value::Null, "{text:?} answered {answer}");
            assert_eq!(
                answer["error"]["code"], -32700,
                "{text:?} answered {answer}"
            );
            assert_eq!(answer["error"]["message"], "Parse error", "{answer}");
            assert!(
                answer["error"]["data"]
                    .as_str()
                    .unwrap()
                    .starts_with("error unmarshaling request")
            );
        }
        client.send(Message::binary(b"{}".to_vec())).await;
        let answer = client.receive().await;
        assert_eq!(answer["error"]["code"], -32700, "{answer}");
        // The connection is still open and answers.
        let call = request(json!(1), "status", json!({}));
        assert_eq!(client.call(&call).await["result"]["echo"], call);
    }

    #[tokio::test]
    async fn other_methods_go_to_the_backend_and_notifications_get_no_answer() {
        let server = TestServer::start(LIMITS).await;
        let mut client = Client::connect(&server).await;
        let call = request(json!("a"), "block", json!({"height": "5"}));
        assert_eq!(
            client.call(&call).await,
            json!({"jsonrpc": "2.0", "id": "a", "result": {"echo": call}})
        );

        // Notifications, to the backend or to subscribe, get no answer: the next is the call's.
        let notification = json!({"jsonrpc": "2.0", "method": "block", "params": {}});
        client.send(Message::text(notification.to_string())).await;
        let skipped = request(Value::Null, "subscribe", json!({"query": "tm.event='Tx'"}));
        client.send(Message::text(skipped.to_string())).await;
        let call = request(json!(2), "health", json!({}));
        assert_eq!(client.call(&call).await["result"]["echo"], call);
        // The skipped subscribe did not subscribe.
        client.subscribe("3", "tm.event='Tx'").await;

        client
            .send(Message::Ping(b"are you there".to_vec().into()))
            .await;
        assert_eq!(
            client.next().await,
            Some(Message::Pong(b"are you there".to_vec().into()))
        );
    }

    #[tokio::test]
    async fn a_subscriber_receives_matching_events_under_the_subscribe_id() {
        let server = TestServer::start(LIMITS).await;
        let mut client = Client::connect(&server).await;
        client.subscribe("sub-1", "tm.event='NewBlock'").await;
        server.emit(vec![
            event("NewBlock", 1),
            event("Tx", 1),
            event("NewBlock", 2),
        ]);
        assert_eq!(
            client.receive().await,
            envelope("sub-1", "tm.event='NewBlock'", "NewBlock", 1)
        );
        assert_eq!(
            client.receive().await,
            envelope("sub-1", "tm.event='NewBlock'", "NewBlock", 2)
        );

        // An event two subscriptions match comes once for each.
        client.subscribe("sub-2", "block.height='3'").await;
        server.emit(vec![event("NewBlock", 3)]);
        let mut got = vec![client.receive().await, client.receive().await];
        got.sort_by_key(|answer| answer["id"].to_string());
        assert_eq!(
            got,
            [
                envelope("sub-1", "tm.event='NewBlock'", "NewBlock", 3),
                envelope("sub-2", "block.height='3'", "NewBlock", 3),
            ]
        );
    }

    #[tokio::test]
    async fn an_unsubscribed_query_receives_nothing_more() {
        let server = TestServer::start(LIMITS).await;
        let mut client = Client::connect(&server).await;
        client.subscribe("blocks", "tm.event='NewBlock'").await;
        client.subscribe("txs", "tm.event='Tx'").await;
        assert_eq!(
            client.call(&unsubscribe(3, "tm.event='NewBlock'")).await,
            ok(json!(3))
        );

        // The Tx after the NewBlock arrives, and it is the first thing that does.
        server.emit(vec![event("NewBlock", 1), event("Tx", 1)]);
        assert_eq!(
            client.receive().await,
            envelope("txs", "tm.event='Tx'", "Tx", 1)
        );

        // After unsubscribe_all only a new subscription's events come.
        assert_eq!(
            client
                .call(&request(json!(4), "unsubscribe_all", json!([])))
                .await,
            ok(json!(4))
        );
        wait_until("the forwarder stops", || server.forwarders() == 0).await;
        client.subscribe("votes", "tm.event='Vote'").await;
        server.emit(vec![event("NewBlock", 2), event("Tx", 2), event("Vote", 2)]);
        assert_eq!(
            client.receive().await,
            envelope("votes", "tm.event='Vote'", "Vote", 2)
        );
    }

    #[tokio::test]
    async fn events_never_come_before_a_subscribe_answer_nor_after_an_unsubscribe_answer() {
        let server = TestServer::start(LIMITS).await;
        let mut client = Client::connect(&server).await;
        client.subscribe("txs", "tm.event='Tx'").await;
        // A node that emits a block and a tx at a time, a few heights ahead of the client.
        let (acked, mut acked_rx) = watch::channel(0);
        let events = server.backend.events.clone();
        let node = tokio::spawn(async move {
            for height in 1.. {
                if acked_rx
                    .wait_for(|acked| height <= acked + 8)
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = events.send(Arc::new(vec![
                    event("NewBlock", height),
                    event("Tx", height),
                ]));
            }
        });
        /// The next message; an event tells the node how far the client has read.
        async fn next(client: &mut Client, acked: &watch::Sender<u64>) -> Value {
            let message = client.receive().await;
            if let Some(height) = message["result"]["data"]["value"]["height"].as_u64() {
                acked.send_replace(height);
            }
            message
        }
        let is_answer =
            |message: &Value| message.get("error").is_some() || message["result"] == json!({});

        let subscribe = request(
            json!("b"),
            "subscribe",
            json!({"query": "tm.event='NewBlock'"}),
        );
        client.send(Message::text(subscribe.to_string())).await;
        let answer = loop {
            let message = next(&mut client, &acked).await;
            if is_answer(&message) {
                break message;
            }
            assert_eq!(message["id"], "txs", "{message}");
        };
        assert_eq!(answer, ok(json!("b")));
        while next(&mut client, &acked).await["id"] != "b" {}

        let unsubscribe = unsubscribe(7, "tm.event='NewBlock'");
        client.send(Message::text(unsubscribe.to_string())).await;
        let answer = loop {
            let message = next(&mut client, &acked).await;
            if is_answer(&message) {
                break message;
            }
        };
        assert_eq!(answer, ok(json!(7)));
        for _ in 0..100 {
            let message = next(&mut client, &acked).await;
            assert_eq!(message["id"], "txs", "{message}");
        }
        drop(acked);
        node.await.unwrap();
    }

    #[tokio::test]
    async fn a_burst_over_the_send_buffer_reaches_a_client_that_reads() {
        // One node event can make more messages than the queue holds (a block's `Tx` events):
        // a client that reads gets them all, in order; only one that stops reading is dropped.
        let limits = WsLimits {
            send_buffer: 2,
            ..LIMITS
        };
        let server = TestServer::start(limits).await;
        let mut client = Client::connect(&server).await;
        client.subscribe("blocks", "tm.event='NewBlock'").await;
        client.subscribe("first", "block.height='1'").await;
        server.emit((1..=50).map(|height| event("NewBlock", height)).collect());
        let mut got = Vec::new();
        while got.len() < 51 {
            let message = client.receive().await;
            assert!(message.get("error").is_none(), "{message}");
            got.push((
                message["id"].clone(),
                message["result"]["data"]["value"]["height"].clone(),
            ));
        }
        // Per event, subscriptions in the order of their queries.
        let mut want = vec![(json!("first"), json!(1)), (json!("blocks"), json!(1))];
        want.extend((2..=50).map(|height| (json!("blocks"), json!(height))));
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_client_that_never_reads_is_dropped_while_the_others_keep_receiving() {
        let limits = WsLimits {
            send_buffer: 4,
            ..LIMITS
        };
        let server = TestServer::start(limits).await;
        let mut reader = Client::connect(&server).await;
        let mut sleeper = Client::connect(&server).await;
        reader.subscribe("reader", "tm.event='NewBlock'").await;
        sleeper.subscribe("sleeper", "tm.event='NewBlock'").await;
        // Big events fill the sleeper's socket buffers, then its queue.
        let padding = "x".repeat(64 * 1024);
        let padded = |height| {
            let mut event = event("NewBlock", height);
            event.value["padding"] = json!(padding);
            event
        };
        let mut height = 0;
        while server.forwarders() == 2 {
            height += 1;
            assert!(height < 100_000, "the sleeper was never dropped");
            server.emit(vec![padded(height)]);
            let got = reader.receive().await;
            assert_eq!(got["result"]["data"]["value"]["height"], height);
        }
        for _ in 0..3 {
            height += 1;
            server.emit(vec![padded(height)]);
            let got = reader.receive().await;
            assert_eq!(got["result"]["data"]["value"]["height"], height);
        }
        // The sleeper's connection ends, after its error if that got through.
        let (texts, _) = sleeper.drain().await;
        let events = texts
            .iter()
            .take_while(|text| text.get("result").is_some())
            .count();
        assert!(events < height as usize, "{events} of {height} events");
        for text in &texts[events..] {
            assert_eq!(text["id"], "sleeper");
            assert_eq!(text["error"]["data"], SLOW_CLIENT_CANCEL);
        }
    }

    #[tokio::test]
    async fn a_write_that_stalls_closes_the_connection() {
        const EVENTS: u64 = 400;
        let limits = WsLimits {
            send_buffer: 10 * EVENTS as usize,
            write_stall: Duration::from_millis(200),
            ..LIMITS
        };
        let server = TestServer::start(limits).await;
        let mut sleeper = Client::connect(&server).await;
        sleeper.subscribe("sleeper", "tm.event='NewBlock'").await;
        // 25 MiB, more than the sockets buffer, far less than the queue holds.
        let padding = "x".repeat(64 * 1024);
        for height in 1..=EVENTS {
            let mut event = event("NewBlock", height);
            event.value["padding"] = json!(padding);
            server.emit(vec![event]);
        }
        wait_until("the connection closes", || server.forwarders() == 0).await;
        let (texts, _) = sleeper.drain().await;
        assert!(
            (texts.len() as u64) < EVENTS,
            "{} of {EVENTS} events",
            texts.len()
        );
    }

    #[tokio::test]
    async fn shutdown_closes_connections_as_going_away() {
        let server = TestServer::start(LIMITS).await;
        let mut client = Client::connect(&server).await;
        client.subscribe("1", "tm.event='NewBlock'").await;
        server.stop.send_replace(true);
        let (texts, frame) = client.drain().await;
        assert_eq!(texts, Vec::<Value>::new());
        assert_eq!(frame.map(|frame| frame.code), Some(CloseCode::Away));
        wait_until("the forwarder stops", || server.forwarders() == 0).await;
    }

    #[tokio::test]
    async fn a_message_over_the_limit_closes_the_connection() {
        let limits = WsLimits {
            max_message_bytes: 1024,
            ..LIMITS
        };
        let server = TestServer::start(limits).await;
        let mut client = Client::connect(&server).await;
        let call = request(json!(1), "status", json!({"pad": "x".repeat(900)}));
        assert_eq!(client.call(&call).await["result"]["echo"], call);
        let call = request(json!(2), "status", json!({"pad": "x".repeat(1024)}));
        client.send(Message::text(call.to_string())).await;
        let (texts, _) = client.drain().await;
        assert_eq!(texts, Vec::<Value>::new());
    }

    #[tokio::test]
    async fn a_bad_handshake_is_answered_400_and_a_plain_get_is_not_an_upgrade() {
        let server = TestServer::start(LIMITS).await;
        let exchange = |head: &'static str| async move {
            let mut tcp = TcpStream::connect(server.address).await.unwrap();
            tcp.write_all(head.as_bytes()).await.unwrap();
            let mut answer = vec![0; 1024];
            let read = tokio::time::timeout(DEADLINE, tcp.read(&mut answer))
                .await
                .unwrap()
                .unwrap();
            String::from_utf8_lossy(&answer[..read]).into_owned()
        };
        let no_key = "GET /websocket HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let answer = exchange(no_key).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("Sec-WebSocket-Key"), "{answer}");
        let plain = "GET /websocket HTTP/1.1\r\nHost: h\r\n\r\n";
        let answer = exchange(plain).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    }

    #[test]
    fn handshakes_are_checked_and_accepted_as_rfc_6455_says() {
        let handshake = |edit: &dyn Fn(&mut Request<()>)| {
            let mut request = Request::new(());
            let headers = request.headers_mut();
            headers.insert(
                header::CONNECTION,
                HeaderValue::from_static("keep-alive, Upgrade"),
            );
            headers.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
            headers.insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            // RFC 6455 §1.3's example.
            headers.insert(
                header::SEC_WEBSOCKET_KEY,
                HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
            );
            edit(&mut request);
            assert_eq!(
                is_upgrade(&request),
                has_token(request.headers(), header::UPGRADE, "websocket")
            );
            handshake_accept(&request).map_err(|error| error.to_string())
        };
        assert_eq!(
            handshake(&|_| {}),
            Ok(HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
        );
        let refused = [
            handshake(&|r| *r.method_mut() = Method::POST),
            handshake(&|r| *r.version_mut() = Version::HTTP_10),
            handshake(&|r| {
                r.headers_mut().remove(header::CONNECTION);
            }),
            handshake(&|r| {
                r.headers_mut()
                    .insert(header::UPGRADE, HeaderValue::from_static("h2c"));
            }),
            handshake(&|r| {
                r.headers_mut()
                    .insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
            }),
            handshake(&|r| {
                r.headers_mut().remove(header::SEC_WEBSOCKET_KEY);
            }),
            handshake(&|r| {
                r.headers_mut().insert(
                    header::SEC_WEBSOCKET_KEY,
                    HeaderValue::from_static("c2hvcnQ="),
                );
            }),
        ];
        let expected = [
            HandshakeError::NotGet,
            HandshakeError::NotGet,
            HandshakeError::NoConnectionUpgrade,
            HandshakeError::NoUpgradeWebsocket,
            HandshakeError::BadVersion,
            HandshakeError::BadKey,
            HandshakeError::BadKey,
        ];
        assert_eq!(refused, expected.map(|error| Err(error.to_string())));
    }

    async fn wait_until(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
