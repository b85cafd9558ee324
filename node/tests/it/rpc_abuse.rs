//! RPC abuse against a real `weft` node: deeply nested JSON, huge batches, slowloris
//! connections, more connections than the limit, more WebSocket subscriptions than the limit,
//! and a subscriber that stops reading. Each is bounded (answered with its documented error,
//! or closed), other clients are served meanwhile, and the node keeps committing throughout
//! and after.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use weft_node::rpc::{EventStream, SUBSCRIPTIONS_PER_CONNECTION_MAX};

use crate::support::{DEADLINE, TestNode};

const CHAIN: &str = "weft-rpc-abuse";
/// The abused node's `rpc.max_connections`.
const CONNECTIONS_MAX: usize = 8;
/// The slowloris node's header, body and write-stall timeouts.
const SLOW_TIMEOUT_MS: u64 = 1_000;
/// How long a slowloris client waits between two bytes.
const TRICKLE_PAUSE: Duration = Duration::from_millis(50);
/// Past this, a slowloris connection the server never dropped fails the test. Below
/// jsonrpsee's own 30 s first-request timeout, which the trickle after a first request
/// never meets anyway.
const DROP_DEADLINE: Duration = Duration::from_secs(20);

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

fn request_head(body_len: usize) -> String {
    format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n"
    )
}

/// Sends one request on a keep-alive connection.
fn send(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    stream.write_all(request_head(body.len()).as_bytes())?;
    stream.write_all(body)
}

/// Reads one response (status line, headers, a `Content-Length` body); `Err` when the server
/// closed the connection first.
fn read_response(stream: &mut TcpStream) -> std::io::Result<(u16, String)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
        assert!(head.len() < 64 * 1024, "a response head without an end");
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// One request on a fresh connection.
fn post(port: u16, body: &[u8]) -> (u16, String) {
    let mut stream = connect(port);
    send(&mut stream, body).unwrap();
    read_response(&mut stream).unwrap()
}

fn status_request(id: u64) -> Vec<u8> {
    json!({ "jsonrpc": "2.0", "id": id, "method": "status" })
        .to_string()
        .into_bytes()
}

/// The height in a `status` response body.
fn height_of(body: &str) -> u64 {
    let status: Value = serde_json::from_str(body).unwrap();
    status["result"]["sync_info"]["latest_block_height"]
        .as_str()
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("not a status answer: {body}"))
}

/// The JSON-RPC error code of a response body, checked to be a well-formed 2.0 error.
fn error_code(body: &str) -> i64 {
    let answer: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(answer["jsonrpc"], "2.0", "{body}");
    answer["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no error code: {body}"))
}

/// Waits until the node, asked on fresh connections, reports a height above `height`.
fn wait_above(port: u16, height: u64) -> u64 {
    let until = Instant::now() + DEADLINE;
    loop {
        let (status, body) = post(port, &status_request(1));
        if status == 200 && height_of(&body) > height {
            return height_of(&body);
        }
        assert!(
            Instant::now() < until,
            "the node stopped committing at {height}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn started(
    dir: &std::path::Path,
    edit: impl FnOnce(&mut weft_node::config::Config),
) -> TestNode {
    let mut node = TestNode::init(dir, CHAIN, "abused");
    node.configure(|config| {
        config.consensus.timeout_commit_ms = Some(50);
        edit(config);
    });
    node.start();
    node.wait_height(1).await;
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_json_huge_batches_and_excess_connections_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = started(dir.path(), |config| {
        config.rpc.max_connections = CONNECTIONS_MAX as u32;
    })
    .await;
    let port = node.rpc_port;
    let max_batch = weft_node::config::RpcConfig::default().max_batch as usize;
    let max_body = weft_node::config::RpcConfig::default().max_body_bytes as usize;
    let mut height = wait_above(port, 0);

    // Deeply nested JSON, inside the body limit: a parse error (serde_json's recursion limit),
    // never a stack overflow.
    let depth = 100_000;
    let nested_params = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"block","params":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let nested_object = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"block","params":{}1{}}}"#,
        r#"{"a":"#.repeat(depth),
        "}".repeat(depth)
    );
    let open_only = "[".repeat(depth);
    for (what, body) in [
        ("nested params", nested_params),
        ("nested objects", nested_object),
        ("unclosed brackets", open_only),
    ] {
        assert!(body.len() < max_body, "{what} must fit the body limit");
        // An error, or a result where the method ignores params it does not know.
        let (_, answer) = post(port, body.as_bytes());
        let parsed: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(parsed["jsonrpc"], "2.0", "{what}: {answer}");
        if parsed.get("result").is_none() {
            let code = error_code(&answer);
            assert!([-32700, -32600, -32602].contains(&code), "{what}: {answer}");
        }
        height = wait_above(port, height);
    }

    // Batches: at the limit all answered; one past it, and thousands, refused whole.
    let batch = |calls: usize| {
        let calls: Vec<Value> = (0..calls)
            .map(|id| json!({ "jsonrpc": "2.0", "id": id, "method": "health" }))
            .collect();
        Value::Array(calls).to_string().into_bytes()
    };
    let (status, answer) = post(port, &batch(max_batch));
    let answers: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        answers.as_array().map(Vec::len),
        Some(max_batch),
        "{answer}"
    );
    for calls in [max_batch + 1, 10_000] {
        let body = batch(calls);
        assert!(
            body.len() < max_body,
            "{calls} calls must fit the body limit"
        );
        let (_, answer) = post(port, &body);
        assert_eq!(error_code(&answer), -32010, "{calls} calls: {answer}");
        height = wait_above(port, height);
    }
    let (_, answer) = post(port, b"[]");
    assert_eq!(error_code(&answer), -32600, "an empty batch: {answer}");

    // More connections than the limit. The held ones are each served once, so all were
    // accepted before the extra ones connect.
    let mut held: Vec<TcpStream> = Vec::new();
    for id in 0..CONNECTIONS_MAX {
        let mut stream = connect(port);
        send(&mut stream, &status_request(id as u64)).unwrap();
        let (status, body) = read_response(&mut stream).unwrap();
        assert_eq!(status, 200, "held connection {id}: {body}");
        held.push(stream);
    }
    for extra in 0..4 {
        let mut stream = connect(port);
        // Refused: a 503 naming the limit, or closed; never left hanging.
        match read_response(&mut stream) {
            Ok((status, body)) => {
                assert_eq!(status, 503, "extra connection {extra}: {body}");
                assert_eq!(error_code(&body), -32009, "{body}");
            }
            Err(error) => assert!(
                !matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "extra connection {extra} was left open: {error}"
            ),
        }
    }
    // The held connections are still served, and the node still commits.
    for (id, stream) in held.iter_mut().enumerate() {
        send(stream, &status_request(id as u64)).unwrap();
        let (status, body) = read_response(stream).unwrap();
        assert_eq!(
            status, 200,
            "held connection {id} after the refusals: {body}"
        );
        height = height.max(height_of(&body));
    }
    // Once they close, new connections are accepted again (each slot frees when the server
    // sees its close).
    drop(held);
    let until = Instant::now() + DEADLINE;
    loop {
        let mut stream = connect(port);
        let served = send(&mut stream, &status_request(1))
            .and_then(|()| read_response(&mut stream))
            .is_ok_and(|(status, _)| status == 200);
        if served {
            break;
        }
        assert!(
            Instant::now() < until,
            "no connection accepted after the others closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    node.wait_height(height + 3).await;
    assert!(node.stop());
}

/// How a slowloris connection ended.
#[derive(Debug, PartialEq)]
enum Ending {
    /// The server closed it (EOF or reset).
    Closed,
    /// The server answered (then closed): the status.
    Answered(u16),
}

/// Sends `prefix`, then trickles `trickle` a byte at a time (cycling) until the server closes
/// the connection; panics past [`DROP_DEADLINE`].
fn trickle(port: u16, prefix: &[u8], trickle: &[u8]) -> Ending {
    let mut stream = connect(port);
    stream.set_read_timeout(Some(TRICKLE_PAUSE)).unwrap();
    stream.write_all(prefix).unwrap();
    let until = Instant::now() + DROP_DEADLINE;
    let mut response = Vec::new();
    for &byte in trickle.iter().cycle() {
        assert!(
            Instant::now() < until,
            "a slowloris connection was never dropped"
        );
        if stream.write_all(&[byte]).is_err() {
            break;
        }
        // The read's timeout paces the trickle.
        let mut buf = [0u8; 1024];
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&response);
    match text.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
        Some(status) => Ending::Answered(status),
        None => Ending::Closed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_dropped_and_others_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = started(dir.path(), |config| {
        config.rpc.header_read_timeout_ms = SLOW_TIMEOUT_MS;
        config.rpc.body_read_timeout_ms = SLOW_TIMEOUT_MS;
    })
    .await;
    let port = node.rpc_port;
    let height = wait_above(port, 0);

    let status = status_request(7);
    let first_request = [request_head(status.len()).into_bytes(), status.clone()].concat();
    let slow_head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_vec();
    let header_bytes = b"X-Slow: abcdefghijklmnopqrstuvwxyz\r\n".to_vec();
    let slow_body_head = request_head(status.len() * 100).into_bytes();
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        // Headers a byte at a time, never finished.
        ("trickled headers", slow_head.clone(), header_bytes.clone()),
        // A complete first request, then the second's headers a byte at a time (jsonrpsee's
        // first-request timeout no longer applies).
        (
            "trickle after a request",
            [first_request, slow_head].concat(),
            header_bytes,
        ),
        // A complete head, then the body a byte at a time.
        ("trickled body", slow_body_head, b" ".to_vec()),
    ];
    let slow: Vec<_> = cases
        .into_iter()
        .map(|(what, prefix, bytes)| {
            std::thread::spawn(move || (what, trickle(port, &prefix, &bytes)))
        })
        .collect();
    // An idle connection that sends nothing is closed too.
    let idle = std::thread::spawn(move || {
        let mut stream = connect(port);
        stream.set_read_timeout(Some(DROP_DEADLINE)).unwrap();
        let mut buf = [0u8; 64];
        stream.read(&mut buf)
    });

    // Meanwhile others are served and the node commits.
    let mut during = height;
    while slow.iter().any(|t| !t.is_finished()) {
        during = wait_above(port, during);
    }
    assert!(
        during > height,
        "no height committed while the slow clients hung on"
    );
    for thread in slow {
        let (what, ending) = thread.join().unwrap();
        match what {
            "trickled body" => assert!(
                matches!(ending, Ending::Closed | Ending::Answered(408)),
                "{what}: {ending:?}"
            ),
            "trickle after a request" => assert_eq!(ending, Ending::Answered(200), "{what}"),
            _ => assert!(
                matches!(ending, Ending::Closed | Ending::Answered(408)),
                "{what}: {ending:?}"
            ),
        }
    }
    let idle = idle.join().unwrap();
    match idle {
        Ok(read) => assert_eq!(read, 0, "an idle connection got data"),
        Err(error) => assert!(
            !matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "an idle connection was never closed"
        ),
    }
    let after = wait_above(port, during);
    node.wait_height(after + 2).await;
    assert!(node.stop());
}

/// The receive buffer of the subscriber that stops reading: small, so that the node's writes
/// to it stall soon after it stops.
const STALLED_RECEIVE_BUFFER_BYTES: u32 = 4 * 1024;

/// A WebSocket connection to the node's `/websocket`, its socket's receive buffer set if given.
async fn websocket(
    addr: &str,
    receive_buffer_bytes: Option<u32>,
) -> WebSocketStream<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(bytes) = receive_buffer_bytes {
        socket.set_recv_buffer_size(bytes).unwrap();
    }
    let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let url = format!("ws://{addr}/websocket");
    tokio_tungstenite::client_async(url, stream)
        .await
        .unwrap()
        .0
}

/// The answer to request `id`, skipping the events before it (an event carries the id of its
/// subscription's request, and never comes before that request's answer).
async fn answer_to(socket: &mut WebSocketStream<tokio::net::TcpStream>, id: u64) -> Value {
    loop {
        let message = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no answer to request {id}"))
            .unwrap()
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        let answer: Value = serde_json::from_str(text.as_str()).unwrap();
        if answer["id"] == json!(id) {
            return answer;
        }
    }
}

/// One connection holds at most 16 subscriptions, the 17th refused with CometBFT's error; a
/// subscriber that stops reading is dropped, while a subscriber that reads receives every
/// block and the node commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_subscriptions_are_bounded_and_a_subscriber_that_stops_reading_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = started(dir.path(), |config| {
        config.rpc.write_stall_timeout_ms = SLOW_TIMEOUT_MS;
    })
    .await;
    let addr = node.rpc_addr();
    let limit = SUBSCRIPTIONS_PER_CONNECTION_MAX as u64;

    // Distinct queries; past height 16 each matches every block.
    let mut hog = websocket(&addr, Some(STALLED_RECEIVE_BUFFER_BYTES)).await;
    for id in 0..=limit {
        let query = format!("tm.event='NewBlock' AND block.height > {id}");
        let request = json!({
            "jsonrpc": "2.0", "id": id, "method": "subscribe", "params": {"query": query},
        });
        hog.send(Message::text(request.to_string())).await.unwrap();
        let answer = answer_to(&mut hog, id).await;
        if id < limit {
            assert_eq!(answer["result"], json!({}), "subscription {id}: {answer}");
        } else {
            assert_eq!(answer["error"]["code"], -32603, "{answer}");
            assert_eq!(
                answer["error"]["data"],
                format!("max_subscriptions_per_client {limit} reached"),
                "{answer}"
            );
        }
    }

    // From here the hog reads nothing; it pings once per block the reader receives, until a
    // ping fails because the node closed the connection. The pings keep it from being idle,
    // so only its not reading can get it dropped.
    let mut reader = EventStream::subscribe(&addr, "tm.event='NewBlock'")
        .await
        .unwrap();
    let (mut hog_pings, hog_unread) = hog.split();
    let until = Instant::now() + DEADLINE;
    let (mut last, mut blocks) = (None, 0);
    loop {
        let event = tokio::time::timeout(DEADLINE, reader.next_block())
            .await
            .expect("the reading subscriber stopped receiving blocks")
            .unwrap();
        let height = event.block.header.height.0;
        if let Some(last) = last {
            assert_eq!(height, last + 1, "the reading subscriber missed a block");
        }
        last = Some(height);
        blocks += 1;
        if hog_pings
            .send(Message::Ping(Default::default()))
            .await
            .is_err()
        {
            break;
        }
        assert!(
            Instant::now() < until,
            "a subscriber that stopped reading was never dropped"
        );
    }
    drop(hog_unread);
    eprintln!("the subscriber that stopped reading was dropped within {blocks} blocks");

    // The node goes on, and a new connection subscribes again.
    let mut again = EventStream::subscribe(&addr, "tm.event='NewBlock'")
        .await
        .unwrap();
    let next = again.next_block().await.unwrap().block.header.height.0;
    node.wait_height(next + 2).await;
    assert!(node.stop());
}
