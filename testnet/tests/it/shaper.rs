//! The link shaper over 127.0.0.1, between a test client and a small server made here.
//!
//! Time is asserted only as a lower bound (a loaded machine may be slow, never early), and
//! every wait has a deadline that fails the test naming what it waited for.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use weft_testnet::shaper::{
    LinkShape, Links, Relay, ShapeError, VALUE_TEXT_BYTES_MAX, parse_bandwidth, parse_duration,
};

/// Every wait ends by then, or the test fails.
const DEADLINE: Duration = Duration::from_secs(30);
/// How often `eventually` looks again at a condition it cannot await.
const POLL_EVERY: Duration = Duration::from_millis(5);
/// Slack under a bandwidth bound, for clock reads on either side of the relay.
const BANDWIDTH_TOLERANCE: Duration = Duration::from_millis(50);
const MS: Duration = Duration::from_millis(1);
const MIB: usize = 1 << 20;

fn shape(delay_ms: u64, jitter_ms: u64, bandwidth_bytes_per_s: Option<u64>) -> LinkShape {
    LinkShape {
        delay: Duration::from_millis(delay_ms),
        jitter: Duration::from_millis(jitter_ms),
        bandwidth_bytes_per_s,
    }
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {DEADLINE:?}"))
}

/// For what no future announces (a counter in the relay's stats).
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(POLL_EVERY).await;
        }
    })
    .await
}

/// Every connection gets its own bytes back, then an EOF after the client's.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind(localhost()).await.expect("bind echo");
    let address = listener.local_addr().expect("echo address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                if tokio::io::copy(&mut read, &mut write).await.is_ok() {
                    let _ = write.shutdown().await;
                }
            });
        }
    });
    address
}

/// What a sink saw on its one connection.
struct Sunk {
    bytes: Vec<u8>,
    first_byte_at: Option<Instant>,
    last_byte_at: Option<Instant>,
}

/// Reads one connection to its end and reports what arrived when.
async fn sink_server() -> (SocketAddr, oneshot::Receiver<Sunk>) {
    let listener = TcpListener::bind(localhost()).await.expect("bind sink");
    let address = listener.local_addr().expect("sink address");
    let (report, reported) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("sink accepts");
        let mut sunk = Sunk {
            bytes: Vec::new(),
            first_byte_at: None,
            last_byte_at: None,
        };
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(read_bytes @ 1..) = stream.read(&mut buffer).await {
            let now = Instant::now();
            sunk.first_byte_at.get_or_insert(now);
            sunk.last_byte_at = Some(now);
            sunk.bytes.extend_from_slice(&buffer[..read_bytes]);
        }
        let _ = report.send(sunk);
    });
    (address, reported)
}

async fn connect(relay: &Relay) -> TcpStream {
    within(
        "connecting to the relay",
        TcpStream::connect(relay.local_addr()),
    )
    .await
    .expect("the relay's listener accepts")
}

/// A round trip through an echo server.
async fn ping(stream: &mut TcpStream) {
    stream.write_all(b"ping").await.expect("write ping");
    let mut pong = [0u8; 4];
    within("the echo of a ping", stream.read_exact(&mut pong))
        .await
        .expect("read the echo");
    assert_eq!(&pong, b"ping");
}

/// The peer closed or reset the connection: a read ends with EOF or an error, never bytes.
async fn expect_closed(stream: &mut TcpStream, what: &str) {
    let mut buffer = [0u8; 16];
    match within(what, stream.read(&mut buffer)).await {
        Ok(0) | Err(_) => {}
        Ok(read_bytes) => panic!("{what}: {read_bytes} bytes arrived on a closed link"),
    }
}

fn assert_same_bytes(received: &[u8], sent: &[u8], desc: &str) {
    if let Some(at) = received.iter().zip(sent).position(|(r, s)| r != s) {
        panic!("{desc}: the bytes differ first at offset {at}");
    }
    assert_eq!(received.len(), sent.len(), "{desc}: lengths");
}

struct IntactCase {
    desc: &'static str,
    seed: u64,
    shape: LinkShape,
    total_bytes: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bytes_arrive_intact_and_in_order() {
    let cases = [
        IntactCase {
            desc: "20 ms ± 15 ms",
            seed: 1,
            shape: shape(20, 15, None),
            total_bytes: 2 * MIB,
        },
        IntactCase {
            desc: "no shaping at all",
            seed: 2,
            shape: LinkShape::default(),
            total_bytes: 2 * MIB,
        },
        IntactCase {
            desc: "5 ms ± 5 ms at 400 Mbit/s, more than the relay queues (backpressure)",
            seed: 3,
            shape: shape(5, 5, Some(50_000_000)),
            total_bytes: 20 * MIB,
        },
    ];
    let echo = echo_server().await;
    for case in cases {
        eprintln!("case {:?}: seed {}", case.desc, case.seed);
        let relay = Relay::spawn(localhost(), echo, case.shape).expect("relay");
        let mut rng = ChaCha8Rng::seed_from_u64(case.seed);
        let mut sent = vec![0u8; case.total_bytes];
        rng.fill(&mut sent[..]);
        let (mut read, mut write) = connect(&relay).await.into_split();
        // Write while reading: the echo's replies would otherwise fill every buffer and stall.
        let writer = tokio::spawn({
            let sent = sent.clone();
            async move {
                let mut rest = &sent[..];
                while !rest.is_empty() {
                    let write_bytes = rng.random_range(1..=100_000).min(rest.len());
                    write.write_all(&rest[..write_bytes]).await?;
                    rest = &rest[write_bytes..];
                }
                write.shutdown().await
            }
        });
        let mut received = Vec::with_capacity(case.total_bytes);
        within(case.desc, read.read_to_end(&mut received))
            .await
            .expect("read the echo");
        writer.await.expect("writer task").expect("write");
        assert_same_bytes(&received, &sent, case.desc);
        let stats = relay.stats();
        assert_eq!(
            stats.forward_bytes, case.total_bytes as u64,
            "{}",
            case.desc
        );
        assert_eq!(
            stats.reverse_bytes, case.total_bytes as u64,
            "{}",
            case.desc
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_byte_arrives_before_its_delay() {
    let cases = [
        ("40 ms ± 10 ms", shape(40, 10, None)),
        ("25 ms, no jitter", shape(25, 0, None)),
        ("15 ms ± 5 ms at 1 Mbit/s", shape(15, 5, Some(125_000))),
    ];
    let echo = echo_server().await;
    for (desc, shape) in cases {
        let one_way_min = shape.delay - shape.jitter;
        // One way: from the client's write to the sink's first read.
        let (sink, sunk) = sink_server().await;
        let relay = Relay::spawn(localhost(), sink, shape).expect("relay");
        let mut stream = connect(&relay).await;
        let written_at = Instant::now();
        stream.write_all(b"x").await.expect("write");
        stream.shutdown().await.expect("shutdown");
        let sunk = within(desc, sunk).await.expect("sink report");
        let first_byte_at = sunk.first_byte_at.expect("the byte arrived");
        assert!(
            first_byte_at - written_at >= one_way_min,
            "{desc}: the first byte took {:?}, under {one_way_min:?}",
            first_byte_at - written_at
        );
        // Round trips: every chunk, not only the first, is delayed each way.
        let relay = Relay::spawn(localhost(), echo, shape).expect("relay");
        let mut stream = connect(&relay).await;
        for _ in 0..5 {
            let sent_at = Instant::now();
            ping(&mut stream).await;
            let round_trip = sent_at.elapsed();
            assert!(
                round_trip >= 2 * one_way_min,
                "{desc}: a round trip took {round_trip:?}, under {:?}",
                2 * one_way_min
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bandwidth_cap_holds_the_transfer_back() {
    let bandwidth_bytes_per_s = parse_bandwidth("8mbit").expect("8 Mbit/s");
    assert_eq!(bandwidth_bytes_per_s, 1_000_000);
    let total_bytes = MIB;
    let (sink, sunk) = sink_server().await;
    let relay =
        Relay::spawn(localhost(), sink, shape(0, 0, Some(bandwidth_bytes_per_s))).expect("relay");
    let mut stream = connect(&relay).await;
    let started_at = Instant::now();
    within("writing 1 MiB", stream.write_all(&vec![7u8; total_bytes]))
        .await
        .expect("write");
    stream.shutdown().await.expect("shutdown");
    let sunk = within("the capped transfer", sunk)
        .await
        .expect("sink report");
    assert_eq!(sunk.bytes.len(), total_bytes);
    let took = sunk.last_byte_at.expect("bytes arrived") - started_at;
    let floor = Duration::from_secs_f64(total_bytes as f64 / bandwidth_bytes_per_s as f64);
    assert!(
        took >= floor - BANDWIDTH_TOLERANCE,
        "1 MiB at 8 Mbit/s took {took:?}, under {floor:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_closes_open_connections_and_refuses_new_ones_until_healed() {
    let echo = echo_server().await;
    let relay = Relay::spawn(localhost(), echo, shape(5, 0, None)).expect("relay");
    let mut open = connect(&relay).await;
    ping(&mut open).await;
    assert_eq!(relay.stats().connections_open, 1);

    relay.set_cut(true);
    assert!(relay.is_cut());
    expect_closed(&mut open, "the open connection after the cut").await;
    eventually("the cut connection's tasks end", || {
        relay.stats().connections_open == 0
    })
    .await;

    // The kernel completes the handshake; the relay then closes the connection at once.
    let mut refused = connect(&relay).await;
    expect_closed(&mut refused, "a new connection while cut").await;
    assert_eq!(relay.stats().connections_refused, 1);

    relay.set_cut(false);
    let mut healed = connect(&relay).await;
    ping(&mut healed).await;
    expect_closed(&mut open, "the first connection, after the heal").await;
    let stats = relay.stats();
    assert_eq!(
        (stats.connections_accepted, stats.connections_refused),
        (2, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_and_heal_before_the_relay_looks_still_closes_the_connection() {
    let echo = echo_server().await;
    let relay = Relay::spawn(localhost(), echo, LinkShape::default()).expect("relay");
    let mut open = connect(&relay).await;
    ping(&mut open).await;
    relay.set_cut(true);
    relay.set_cut(false);
    expect_closed(&mut open, "a connection cut and healed at once").await;
}

#[derive(Clone, Copy, Debug)]
enum Closer {
    Client,
    Server,
}

/// One connection: the closer writes its greeting and shuts its write half; the other reads
/// to the EOF, then answers and shuts its own. The server reports what it read.
async fn half_close_server(closer: Closer) -> (SocketAddr, oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind(localhost()).await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (report, reported) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut received = Vec::new();
        if let Closer::Client = closer {
            stream
                .read_to_end(&mut received)
                .await
                .expect("server reads");
        }
        stream.write_all(b"from the server").await.expect("write");
        stream.shutdown().await.expect("server shuts down");
        if let Closer::Server = closer {
            stream
                .read_to_end(&mut received)
                .await
                .expect("server reads");
        }
        let _ = report.send(received);
    });
    (address, reported)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_eof_from_either_side_reaches_the_other_after_its_bytes() {
    for closer in [Closer::Client, Closer::Server] {
        let desc = format!("{closer:?} closes first");
        let (server, server_received) = half_close_server(closer).await;
        let relay = Relay::spawn(localhost(), server, shape(10, 5, None)).expect("relay");
        let mut stream = connect(&relay).await;
        let mut received = Vec::new();
        if let Closer::Server = closer {
            within(&desc, stream.read_to_end(&mut received))
                .await
                .expect("client reads");
        }
        stream.write_all(b"from the client").await.expect("write");
        stream.shutdown().await.expect("client shuts down");
        if let Closer::Client = closer {
            within(&desc, stream.read_to_end(&mut received))
                .await
                .expect("client reads");
        }
        assert_eq!(received, b"from the server", "{desc}");
        let server_received = within(&desc, server_received).await.expect("report");
        assert_eq!(server_received, b"from the client", "{desc}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_that_refuses_closes_the_client_connection() {
    let vacant = TcpListener::bind(localhost()).await.expect("bind");
    let target = vacant.local_addr().expect("address");
    drop(vacant);
    let relay = Relay::spawn(localhost(), target, LinkShape::default()).expect("relay");
    let mut stream = connect(&relay).await;
    expect_closed(&mut stream, "a connection whose target refused").await;
    eventually("the failure is counted", || {
        relay.stats().connections_failed == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn links_cut_and_heal_by_node() {
    let echo = echo_server().await;
    let mut links = Links::new();
    for (from, to) in [(0, 1), (1, 0), (1, 2)] {
        links
            .spawn(from, to, localhost(), echo, LinkShape::default())
            .expect("relay");
    }
    let relay = |from, to| links.get(from, to).expect("link");
    let mut across = connect(relay(0, 1)).await;
    let mut aside = connect(relay(1, 2)).await;
    ping(&mut across).await;

    assert_eq!(links.cut_node(0), 2);
    let cut: Vec<bool> = links.iter().map(|(_, relay)| relay.is_cut()).collect();
    assert_eq!(cut, [true, true, false]);
    expect_closed(&mut across, "a link of the cut node").await;
    ping(&mut aside).await;
    assert!(!links.cut(5, 6), "no such link");

    links.heal_all();
    assert!(links.iter().all(|(_, relay)| !relay.is_cut()));
    ping(&mut connect(relay(0, 1)).await).await;
    assert!(links.cut(1, 2) && links.heal(1, 2));

    let refusal = links.set_shape_all(shape(1, 2, None));
    assert!(matches!(refusal, Err(ShapeError::JitterAboveDelay { .. })));
    links.shutdown().await;
}

#[tokio::test]
async fn relays_refuse_bad_shapes_and_busy_ports() {
    let target = localhost();
    let error = Relay::spawn(localhost(), target, shape(1, 2, None)).expect_err("jitter > delay");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(
        error.to_string().contains("larger than the delay"),
        "{error}"
    );

    let busy = TcpListener::bind(localhost()).await.expect("bind");
    let taken = busy.local_addr().expect("address");
    Relay::spawn(taken, target, LinkShape::default()).expect_err("the port is taken");

    let relay = Relay::spawn(localhost(), target, LinkShape::default()).expect("relay");
    let address = relay.local_addr();
    assert_ne!(address.port(), 0);
    assert!(relay.set_shape(shape(11_000, 0, None)).is_err());
    relay.set_shape(shape(3, 1, None)).expect("a valid shape");
    assert_eq!(relay.shape(), shape(3, 1, None));
    relay.shutdown().await;
    // The listener is gone once `shutdown` returns, so the port binds again.
    Relay::spawn(address, target, LinkShape::default()).expect("the port is free again");
}

#[test]
fn a_relay_needs_a_runtime() {
    let error =
        Relay::spawn(localhost(), localhost(), LinkShape::default()).expect_err("no runtime here");
    assert!(error.to_string().contains("tokio runtime"), "{error}");
}

/// Accepted text and its value, or refused text and words its error must contain.
type ParseCase<T> = (&'static str, Result<T, &'static str>);

fn check_parser<T: PartialEq + std::fmt::Debug>(
    parse: fn(&str) -> Result<T, ShapeError>,
    cases: &[ParseCase<T>],
) {
    for (text, expected) in cases {
        match (parse(text), expected) {
            (Ok(value), Ok(want)) => assert_eq!(&value, want, "{text:?}"),
            (Err(error), Err(words)) => {
                let message = error.to_string();
                assert!(
                    message.contains(words),
                    "{text:?}: {message:?} lacks {words:?}"
                );
            }
            (got, _) => panic!("{text:?}: got {got:?}, expected {expected:?}"),
        }
    }
}

#[test]
fn durations_parse_or_say_what_is_wrong() {
    let too_long: &'static str = "1".repeat(VALUE_TEXT_BYTES_MAX + 1).leak();
    check_parser(
        parse_duration,
        &[
            ("50ms", Ok(50 * MS)),
            ("1.5s", Ok(1_500 * MS)),
            ("200us", Ok(Duration::from_micros(200))),
            ("200µs", Ok(Duration::from_micros(200))),
            ("0", Ok(Duration::ZERO)),
            ("0.0", Ok(Duration::ZERO)),
            ("0ms", Ok(Duration::ZERO)),
            (" 7 ms ", Ok(7 * MS)),
            ("2.25ms", Ok(Duration::from_micros(2_250))),
            ("10ns", Ok(Duration::from_nanos(10))),
            ("10s", Ok(Duration::from_secs(10))),
            ("", Err("empty")),
            ("   ", Err("empty")),
            ("ms", Err("not a number")),
            ("-5ms", Err("not a number")),
            (".5s", Err("start with a digit")),
            ("1..5ms", Err("one `.`")),
            ("50", Err("no unit")),
            ("50m", Err("unknown duration unit \"m\"")),
            ("50 parsecs", Err("unknown duration unit \"parsecs\"")),
            ("10.5s", Err("over the 10s limit")),
            ("1h", Err("unknown duration unit")),
            ("1.0000000001s", Err("finer than one nanosecond")),
            ("1234567890123456789ns", Err("too many digits")),
            (too_long, Err("too long")),
        ],
    );
}

#[test]
fn bandwidths_parse_or_say_what_is_wrong() {
    check_parser(
        parse_bandwidth,
        &[
            ("100mbit", Ok(12_500_000)),
            ("10Mbit", Ok(1_250_000)),
            ("1gbit", Ok(125_000_000)),
            ("500kbit", Ok(62_500)),
            ("2MB/s", Ok(2_000_000)),
            ("2MiB/s", Ok(2 * 1_048_576)),
            ("64 KiB/s", Ok(65_536)),
            ("1kbit", Ok(125)),
            ("1.5kbit", Ok(187)),
            ("100gbit", Ok(12_500_000_000)),
            ("", Err("empty")),
            ("fast", Err("not a number")),
            ("100", Err("no unit")),
            ("999bit", Err("below the 1 kbit/s floor")),
            ("0mbit", Err("below the 1 kbit/s floor")),
            ("2mb/s", Err("unknown bandwidth unit \"mb/s\"")),
            ("10mbps", Err("unknown bandwidth unit \"mbps\"")),
            ("101gbit", Err("over the 100 Gbit/s ceiling")),
            ("1000.5bit", Err("finer than one bit per second")),
        ],
    );
}
