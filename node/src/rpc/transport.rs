//! The accept loop: bounded connections, deadlines on request heads and bodies, and on
//! writes to a client that stopped reading; and the routes: JSON-RPC by POST, CometBFT's URI
//! form by GET, the route list at `GET /`, and CometBFT's WebSocket at `/websocket`.

use super::*;

// jsonrpsee's own server counts requests in flight, not connections, and reads request heads
// and bodies without a deadline (hyper's header-read timeout needs a timer it does not set), so
// a client could hold any number of idle or trickling connections. This accept loop bounds
// them: at most `rpc.max_connections` sockets (HTTP and WebSocket), each with deadlines on
// reading a request head, reading its body, and writing to a client that stopped reading.

/// The connection limits of `[rpc]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct ConnectionLimits {
    pub(super) max_connections: usize,
    pub(super) max_body_bytes: usize,
    pub(super) header_read: Duration,
    pub(super) body_read: Duration,
    pub(super) write_stall: Duration,
}

/// What a connection over `rpc.max_connections` is told before it is closed.
pub(super) const BUSY_RESPONSE: &str = concat!(
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n",
    "Content-Length: 84\r\nConnection: close\r\n\r\n",
    r#"{"jsonrpc":"2.0","error":{"code":-32009,"message":"Too many connections"},"id":null}"#,
);
/// A failed `accept` (say, out of file descriptors) is retried after this pause.
pub(super) const ACCEPT_RETRY: Duration = Duration::from_millis(10);

type JsonRpcService =
    jsonrpsee::server::TowerService<tower::layer::util::Identity, tower::layer::util::Identity>;

/// What the routes besides JSON-RPC by POST need.
#[derive(Clone)]
pub(super) struct Routes {
    pub(super) events: broadcast::Sender<Arc<Vec<ws::WsEvent>>>,
    pub(super) unsafe_routes: bool,
}

pub(super) async fn accept_loop(
    listener: tokio::net::TcpListener,
    service: JsonRpcService,
    routes: Routes,
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
        tokio::spawn(serve_connection(
            io,
            service.clone(),
            routes.clone(),
            stop.clone(),
            limits,
        ));
    }
}

/// Serves one connection: HTTP/1.1 (with upgrades to WebSocket), a deadline on each request
/// head, and each body read whole within its deadline before jsonrpsee sees it.
pub(super) async fn serve_connection(
    io: BoundedStream,
    service: JsonRpcService,
    routes: Routes,
    stop: jsonrpsee::server::StopHandle,
    limits: ConnectionLimits,
) {
    let handler_stop = stop.clone();
    let handler = hyper::service::service_fn(move |request| {
        let service = service.clone();
        let routes = routes.clone();
        let stop = handler_stop.clone();
        handle_request(service, routes, stop, request, limits)
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

pub(super) async fn handle_request(
    mut service: JsonRpcService,
    routes: Routes,
    stop: jsonrpsee::server::StopHandle,
    request: hyper::Request<hyper::body::Incoming>,
    limits: ConnectionLimits,
) -> ServiceResult {
    if ws::is_upgrade(&request) {
        if request.uri().path() != "/websocket" {
            return Ok(plain_response(
                hyper::StatusCode::NOT_FOUND,
                "text/plain",
                "the WebSocket endpoint is /websocket\n".into(),
            ));
        }
        let backend = Backend {
            service,
            events: routes.events.clone(),
        };
        let ws_limits = ws::WsLimits {
            max_message_bytes: limits.max_body_bytes,
            max_subscriptions: SUBSCRIPTIONS_PER_CONNECTION_MAX,
            send_buffer: WS_SEND_BUFFER_MAX,
            write_stall: limits.write_stall,
        };
        let response = ws::upgrade(request, backend, ws_limits, stop.shutdown());
        return Ok(response.map(jsonrpsee::server::HttpBody::from));
    }
    if request.method() == hyper::Method::GET {
        return Ok(get(&mut service, &routes, request).await);
    }
    match read_body_within(request, limits).await {
        Ok(request) => tower::Service::call(&mut service, request).await,
        Err(refusal) => refusal,
    }
}

fn plain_response(
    status: hyper::StatusCode,
    content_type: &'static str,
    body: String,
) -> jsonrpsee::server::HttpResponse {
    hyper::Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(jsonrpsee::server::HttpBody::from(body))
        .expect("a static status and headers")
}

/// `GET /`: the route list; `GET /<method>?<args>`: the method, CometBFT's URI form.
async fn get(
    service: &mut JsonRpcService,
    routes: &Routes,
    request: hyper::Request<hyper::body::Incoming>,
) -> jsonrpsee::server::HttpResponse {
    let path = request.uri().path().to_owned();
    if path == "/" {
        let host = request
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_owned();
        let mut list: Vec<(&str, &[&str])> = api::ROUTES.to_vec();
        if routes.unsafe_routes {
            list.extend_from_slice(api::UNSAFE_ROUTES);
        }
        list.sort_by_key(|(name, _)| *name);
        return plain_response(
            hyper::StatusCode::OK,
            "text/html; charset=utf-8",
            uri::routes_html(&host, &list),
        );
    }
    let body = match uri::uri_request(&path, request.uri().query()) {
        Ok(body) => body,
        Err(error) => {
            let answer = json!({
                "jsonrpc": "2.0",
                "id": -1,
                "error": {"code": jsonrpsee::types::error::INVALID_PARAMS_CODE,
                          "message": "Invalid params", "data": error.to_string()},
            });
            return plain_response(
                hyper::StatusCode::OK,
                "application/json",
                answer.to_string(),
            );
        }
    };
    let post = post_request(body);
    match tower::Service::call(service, post).await {
        Ok(response) => {
            use http_body_util::BodyExt as _;
            let (mut parts, body) = response.into_parts();
            // The body changes length below; hyper sets the length of what is sent.
            parts.headers.remove(hyper::header::CONTENT_LENGTH);
            let Ok(bytes) = body.collect().await.map(|b| b.to_bytes()) else {
                return plain_response(
                    hyper::StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "the answer could not be read\n".into(),
                );
            };
            let (from, to) = uri::URI_ANSWER_PREFIX;
            let body = match bytes.strip_prefix(from.as_bytes()) {
                Some(rest) => [to.as_bytes(), rest].concat(),
                None => bytes.to_vec(),
            };
            hyper::Response::from_parts(parts, jsonrpsee::server::HttpBody::from(body))
        }
        Err(error) => plain_response(
            hyper::StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("{error}\n"),
        ),
    }
}

/// A JSON-RPC request text as the POST jsonrpsee serves.
fn post_request(body: String) -> jsonrpsee::server::HttpRequest {
    hyper::Request::builder()
        .method(hyper::Method::POST)
        .uri("/")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(jsonrpsee::server::HttpBody::from(body))
        .expect("a static method, uri and header")
}

/// The WebSocket's way to the methods: each request goes through the same jsonrpsee service as
/// a POST would (its limits on batches and response size included).
#[derive(Clone)]
struct Backend {
    service: JsonRpcService,
    events: broadcast::Sender<Arc<Vec<ws::WsEvent>>>,
}

impl ws::WsBackend for Backend {
    fn call(&self, request: String) -> impl std::future::Future<Output = Option<String>> + Send {
        let mut service = self.service.clone();
        async move {
            use http_body_util::BodyExt as _;
            let response = tower::Service::call(&mut service, post_request(request))
                .await
                .ok()?;
            let bytes = response.into_body().collect().await.ok()?.to_bytes();
            (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
        }
    }

    fn events(&self) -> broadcast::Receiver<Arc<Vec<ws::WsEvent>>> {
        self.events.subscribe()
    }
}

/// The request with its body read whole, at most a byte over `rpc.max_body_bytes` (jsonrpsee
/// answers that with -32007), within `rpc.body_read_timeout_ms`; or the answer to give instead.
pub(super) async fn read_body_within(
    request: hyper::Request<hyper::body::Incoming>,
    limits: ConnectionLimits,
) -> Result<jsonrpsee::server::HttpRequest, ServiceResult> {
    use hyper::body::Body as _;

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

pub(super) fn body_timeout_response(limit: Duration) -> jsonrpsee::server::HttpResponse {
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
pub(super) struct BoundedStream {
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
