//! A userspace link shaper: a TCP relay per link that adds one-way delay, jitter and a
//! bandwidth cap, and can cut and heal the link. It stands in for `tc netem`, which this
//! machine's kernel lacks.
//!
//! Each connection accepted on the relay's listen address gets its own connection to the
//! target and two pumps, one per direction. A pump's reader stamps every chunk it reads with a
//! release time ([`release_time`], pure); its writer sleeps until that time and writes the
//! chunk. The model is a delay line followed by a bottleneck: a chunk is ready at
//! `arrival + delay ± jitter`, then takes `len / bandwidth` to leave, after the chunk before it.
//!
//! Architecture invariants:
//! - A pump never reorders bytes: release times never decrease.
//! - A pump never drops bytes: when [`QUEUED_BYTES_MAX`] bytes wait, it stops reading, and TCP
//!   flow control pushes back on the sender.
//! - No byte leaves before `arrival + delay − jitter`, and `jitter ≤ delay` (a [`LinkShape`]
//!   that breaks this is refused).
//! - A cut closes every open connection; a heal resurrects none of them.
//! - Dropping a [`Relay`] stops its accept loop and every pump: each task is owned by a
//!   `JoinSet` inside the task that started it.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

/// The longest one-way delay: beyond it a link is down, and a cut says so better.
pub const DELAY_MAX: Duration = Duration::from_secs(10);
/// The widest jitter; [`LinkShape::validate`] also keeps it within the delay.
pub const JITTER_MAX: Duration = DELAY_MAX;
/// The narrowest bandwidth cap, 1 kbit/s: below it a 64 KiB chunk would take over 8 minutes.
pub const BANDWIDTH_BYTES_PER_S_MIN: u64 = 1_000 / 8;
/// The widest bandwidth cap, 100 Gbit/s: beyond what a userspace relay can move anyway.
pub const BANDWIDTH_BYTES_PER_S_MAX: u64 = 100_000_000_000 / 8;
/// The most bytes one read takes from a socket, and so the largest chunk.
pub const CHUNK_BYTES_MAX: usize = 64 * 1024;
/// The most bytes waiting for release in one direction of one connection.
pub const QUEUED_BYTES_MAX: usize = 8 * 1024 * 1024;
/// The most chunks waiting in one direction; small writes make small chunks, and 16 Ki of
/// them keep a 50 ms link busy at over 300 000 messages a second.
pub const QUEUED_CHUNKS_MAX: usize = 16 * 1024;
/// The most connections one relay carries at once; more are accepted and closed.
pub const CONNECTIONS_MAX: usize = 64;
/// How long the relay waits for the target to accept before giving up on a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The listen backlog of a relay.
pub const LISTEN_BACKLOG: u32 = 1_024;
/// A pause after a failed `accept` (out of descriptors, say), so the loop does not spin.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// The longest text the parsers read; a value longer than this is a mistake.
pub const VALUE_TEXT_BYTES_MAX: usize = 64;
/// The most digits on either side of a decimal point; keeps the arithmetic in range.
const NUMBER_DIGITS_MAX: usize = 18;
const NANOS_PER_S: u128 = 1_000_000_000;

const _: () = assert!(CHUNK_BYTES_MAX <= QUEUED_BYTES_MAX);
const _: () = assert!(CHUNK_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(QUEUED_BYTES_MAX <= Semaphore::MAX_PERMITS);
const _: () = assert!(JITTER_MAX.as_nanos() <= i64::MAX as u128);

/// Why a duration, a bandwidth or a link shape was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ShapeError {
    #[error("empty value: give a number and a unit, e.g. `50ms` or `100mbit`")]
    Empty,
    #[error("a value of {length} bytes is too long (at most {VALUE_TEXT_BYTES_MAX})")]
    TooLong { length: usize },
    #[error("{text:?}: {problem}")]
    Number { text: String, problem: &'static str },
    #[error("{text:?}: no unit: write e.g. `{text}ms` (only `0` may go without one)")]
    MissingUnit { text: String },
    #[error("{text:?}: unknown duration unit {unit:?}: use s, ms, us or ns")]
    DurationUnit { text: String, unit: String },
    #[error(
        "{text:?}: unknown bandwidth unit {unit:?}: use bit, kbit, mbit, gbit (bits/s) or \
         B/s, kB/s, MB/s, GB/s, KiB/s, MiB/s, GiB/s (bytes/s)"
    )]
    BandwidthUnit { text: String, unit: String },
    #[error("{text:?}: finer than one {resolution}")]
    TooPrecise {
        text: String,
        resolution: &'static str,
    },
    #[error("{what} {value:?} is over the {max:?} limit")]
    DurationTooLarge {
        what: &'static str,
        value: Duration,
        max: Duration,
    },
    #[error("jitter {jitter:?} is larger than the delay {delay:?}: a chunk would leave early")]
    JitterAboveDelay { jitter: Duration, delay: Duration },
    #[error("bandwidth {} is below the 1 kbit/s floor", bandwidth_text(*.bytes_per_s))]
    BandwidthTooLow { bytes_per_s: u64 },
    #[error("bandwidth {text:?} is over the 100 Gbit/s ceiling")]
    BandwidthTooHigh { text: String },
}

/// What a link does to the bytes that cross it, in each direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkShape {
    /// One-way delay added to every chunk.
    pub delay: Duration,
    /// Each chunk's delay moves by a uniform draw in `[-jitter, +jitter]`; order is kept.
    pub jitter: Duration,
    /// The bandwidth cap; `None` for none.
    pub bandwidth_bytes_per_s: Option<u64>,
}

impl LinkShape {
    /// Refuses a delay or jitter over [`DELAY_MAX`], jitter above the delay, and a bandwidth
    /// outside [`BANDWIDTH_BYTES_PER_S_MIN`]..=[`BANDWIDTH_BYTES_PER_S_MAX`].
    pub fn validate(&self) -> Result<(), ShapeError> {
        let too_large = |what, value: Duration, max| {
            (value > max).then_some(ShapeError::DurationTooLarge { what, value, max })
        };
        if let Some(error) = too_large("delay", self.delay, DELAY_MAX)
            .or_else(|| too_large("jitter", self.jitter, JITTER_MAX))
        {
            return Err(error);
        }
        if self.jitter > self.delay {
            return Err(ShapeError::JitterAboveDelay {
                jitter: self.jitter,
                delay: self.delay,
            });
        }
        match self.bandwidth_bytes_per_s {
            Some(rate) if rate < BANDWIDTH_BYTES_PER_S_MIN => {
                Err(ShapeError::BandwidthTooLow { bytes_per_s: rate })
            }
            Some(rate) if rate > BANDWIDTH_BYTES_PER_S_MAX => Err(ShapeError::BandwidthTooHigh {
                text: bandwidth_text(rate),
            }),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for LinkShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "delay {:?} ± {:?}, ", self.delay, self.jitter)?;
        match self.bandwidth_bytes_per_s {
            Some(rate) => write!(f, "bandwidth {}", bandwidth_text(rate)),
            None => write!(f, "no bandwidth cap"),
        }
    }
}

/// `8 Mbit/s` when the rate is a round number of bits, else bytes per second.
fn bandwidth_text(bytes_per_s: u64) -> String {
    let bits_per_s = u128::from(bytes_per_s) * 8;
    let units = [
        (1_000_000_000, "Gbit/s"),
        (1_000_000, "Mbit/s"),
        (1_000, "kbit/s"),
    ];
    match units
        .iter()
        .find(|(scale, _)| bits_per_s.is_multiple_of(*scale))
    {
        Some((scale, unit)) if bits_per_s > 0 => format!("{} {unit}", bits_per_s / scale),
        _ => format!("{bytes_per_s} B/s"),
    }
}

/// A duration for a link's delay or jitter: `50ms`, `1.5s`, `200us` (or `µs`), `10ns`, or a
/// bare `0`. At most [`DELAY_MAX`]. Usable as a clap `value_parser`.
pub fn parse_duration(text: &str) -> Result<Duration, ShapeError> {
    let (number, unit) = split_value(text)?;
    let ns_per_unit: u128 = match unit {
        "" if scaled(number, 1, "unit")? == 0 => return Ok(Duration::ZERO),
        "" => {
            return Err(ShapeError::MissingUnit {
                text: number.to_owned(),
            });
        }
        "s" => NANOS_PER_S,
        "ms" => 1_000_000,
        "us" | "µs" => 1_000,
        "ns" => 1,
        _ => {
            return Err(ShapeError::DurationUnit {
                text: text.trim().to_owned(),
                unit: unit.to_owned(),
            });
        }
    };
    let nanos = scaled(number, ns_per_unit, "nanosecond")?;
    let value = u64::try_from(nanos)
        .map(Duration::from_nanos)
        .unwrap_or(Duration::MAX);
    if value > DELAY_MAX {
        return Err(ShapeError::DurationTooLarge {
            what: "duration",
            value,
            max: DELAY_MAX,
        });
    }
    Ok(value)
}

/// A bandwidth in bytes per second. Bit rates are decimal and case-blind (`500kbit`, `10Mbit`,
/// `1gbit`); byte rates need a capital `B` (`2MB/s` decimal, `2MiB/s` binary), so `mb/s`, which
/// could be either, is refused. Between 1 kbit/s and 100 Gbit/s. Usable as a clap
/// `value_parser`.
pub fn parse_bandwidth(text: &str) -> Result<u64, ShapeError> {
    let (number, unit) = split_value(text)?;
    if unit.is_empty() {
        return Err(ShapeError::MissingUnit {
            text: number.to_owned(),
        });
    }
    let bits_per_unit: u128 = match unit.to_ascii_lowercase().as_str() {
        "bit" => 1,
        "kbit" => 1_000,
        "mbit" => 1_000_000,
        "gbit" => 1_000_000_000,
        _ => match unit {
            "B/s" => 8,
            "kB/s" | "KB/s" => 8 * 1_000,
            "MB/s" => 8 * 1_000_000,
            "GB/s" => 8 * 1_000_000_000,
            "KiB/s" => 8 << 10,
            "MiB/s" => 8 << 20,
            "GiB/s" => 8 << 30,
            _ => {
                return Err(ShapeError::BandwidthUnit {
                    text: text.trim().to_owned(),
                    unit: unit.to_owned(),
                });
            }
        },
    };
    let bits_per_s = scaled(number, bits_per_unit, "bit per second")?;
    let bytes_per_s = bits_per_s / 8;
    if bytes_per_s > u128::from(BANDWIDTH_BYTES_PER_S_MAX) {
        return Err(ShapeError::BandwidthTooHigh {
            text: text.trim().to_owned(),
        });
    }
    let bytes_per_s = u64::try_from(bytes_per_s).expect("at most the ceiling, which fits");
    if bytes_per_s < BANDWIDTH_BYTES_PER_S_MIN {
        return Err(ShapeError::BandwidthTooLow { bytes_per_s });
    }
    Ok(bytes_per_s)
}

/// Splits `"1.5 ms"` into `("1.5", "ms")`, bounding the text first.
fn split_value(text: &str) -> Result<(&str, &str), ShapeError> {
    if text.len() > VALUE_TEXT_BYTES_MAX {
        return Err(ShapeError::TooLong { length: text.len() });
    }
    let text = text.trim();
    if text.is_empty() {
        return Err(ShapeError::Empty);
    }
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    if number_end == 0 {
        return Err(ShapeError::Number {
            text: text.to_owned(),
            problem: "not a number: start with a digit, e.g. `50ms`",
        });
    }
    Ok((&text[..number_end], text[number_end..].trim_start()))
}

/// `number` (`digits[.digits]`) times `scale`, exactly: a fraction finer than one
/// `resolution` is refused rather than rounded, so what is written is what runs.
fn scaled(number: &str, scale: u128, resolution: &'static str) -> Result<u128, ShapeError> {
    assert!(
        scale > 0 && scale <= 1 << 33,
        "the units' scales stay small"
    );
    let refuse = |problem| ShapeError::Number {
        text: number.to_owned(),
        problem,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() {
        return Err(refuse("not a number: start with a digit, e.g. `0.5`"));
    }
    if number.ends_with('.') || fraction.contains('.') {
        return Err(refuse("not a number: one `.` between digits at most"));
    }
    if whole.len() > NUMBER_DIGITS_MAX || fraction.len() > NUMBER_DIGITS_MAX {
        return Err(refuse("too many digits"));
    }
    // Only ASCII digits reach here (see `split_value`), and at most 18 of them on each side
    // times a scale of at most 2^33 stays far inside u128.
    let digits = |part: &str| part.parse::<u128>().unwrap_or(0);
    let fraction_scale = 10u128.pow(fraction.len() as u32);
    let fraction_scaled = digits(fraction) * scale;
    if !fraction_scaled.is_multiple_of(fraction_scale) {
        return Err(ShapeError::TooPrecise {
            text: number.to_owned(),
            resolution,
        });
    }
    Ok(digits(whole) * scale + fraction_scaled / fraction_scale)
}

/// When a chunk of `chunk_bytes` that arrived at `arrival` may leave: ready at
/// `arrival + delay + jitter_ns`, never before the previous chunk (so order is kept), and, under
/// a bandwidth cap, `chunk_bytes / bandwidth` after it is ready and after the previous chunk.
///
/// `jitter_ns` is this chunk's draw in `[-jitter, +jitter]`; the shape must be valid.
pub fn release_time(
    previous_release: Option<Instant>,
    arrival: Instant,
    chunk_bytes: usize,
    shape: &LinkShape,
    jitter_ns: i64,
) -> Instant {
    assert!(shape.jitter <= shape.delay, "a validated shape: {shape}");
    assert!(
        u128::from(jitter_ns.unsigned_abs()) <= shape.jitter.as_nanos(),
        "jitter draw {jitter_ns} ns outside ±{:?}",
        shape.jitter
    );
    let offset = Duration::from_nanos(jitter_ns.unsigned_abs());
    // `jitter ≤ delay`, so even the earliest draw leaves no sooner than the chunk arrived.
    let propagated = if jitter_ns >= 0 {
        arrival + shape.delay + offset
    } else {
        arrival + (shape.delay - offset)
    };
    let ready = previous_release.map_or(propagated, |previous| previous.max(propagated));
    match shape.bandwidth_bytes_per_s {
        Some(rate) => ready + serialisation_time(chunk_bytes, rate),
        None => ready,
    }
}

/// How long `chunk_bytes` take to cross a link of `bandwidth_bytes_per_s`, rounded up.
pub fn serialisation_time(chunk_bytes: usize, bandwidth_bytes_per_s: u64) -> Duration {
    assert!(bandwidth_bytes_per_s > 0, "a bandwidth cap is positive");
    let nanos = (chunk_bytes as u128 * NANOS_PER_S).div_ceil(u128::from(bandwidth_bytes_per_s));
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .unwrap_or(Duration::MAX)
}

/// A uniform draw in `[-jitter, +jitter]`, in nanoseconds.
fn draw_jitter_ns(rng: &mut ChaCha8Rng, jitter: Duration) -> i64 {
    if jitter.is_zero() {
        return 0;
    }
    let bound = i64::try_from(jitter.as_nanos()).expect("jitter is at most JITTER_MAX");
    rng.random_range(-bound..=bound)
}

/// Bytes relayed each way and connections seen, since the relay started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Bytes delivered from the listen side to the target.
    pub forward_bytes: u64,
    /// Bytes delivered from the target back to the listen side.
    pub reverse_bytes: u64,
    /// Connections relayed.
    pub connections_accepted: u64,
    /// Connections closed on arrival: the link was cut, or [`CONNECTIONS_MAX`] were open.
    pub connections_refused: u64,
    /// Relayed connections that ended in an error (the target refused, a reset).
    pub connections_failed: u64,
    /// Relayed connections open now.
    pub connections_open: u64,
}

#[derive(Clone, Copy, Debug)]
enum Direction {
    /// Listen side to target.
    Forward,
    /// Target to listen side.
    Reverse,
}

/// The cut flag, and how many cuts there have been: a connection compares the count with the
/// one it was accepted under, so a cut and heal in quick succession still closes it.
#[derive(Clone, Copy, Debug, Default)]
struct CutState {
    cut: bool,
    cuts: u64,
}

/// What a relay's tasks share with its handle.
struct Shared {
    target: SocketAddr,
    shape: RwLock<LinkShape>,
    cut: watch::Sender<CutState>,
    forward_bytes: AtomicU64,
    reverse_bytes: AtomicU64,
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    connections_failed: AtomicU64,
    connections_open: AtomicU64,
}

impl Shared {
    fn delivered(&self, direction: Direction, bytes: usize) {
        let counter = match direction {
            Direction::Forward => &self.forward_bytes,
            Direction::Reverse => &self.reverse_bytes,
        };
        counter.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// One shaped link: a listener whose every connection is relayed to `target` through the
/// current [`LinkShape`]. Dropping it stops the accept loop and every pump.
pub struct Relay {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Binds `listen` (port 0 picks one; see [`Relay::local_addr`]) and relays each connection
    /// to `target` on the current tokio runtime. Errors: no runtime, an invalid shape
    /// (`InvalidInput`), or the bind itself.
    pub fn spawn(listen: SocketAddr, target: SocketAddr, shape: LinkShape) -> io::Result<Relay> {
        shape
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("a relay needs a tokio runtime: {e}")))?;
        let socket = if listen.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // A relay restarted on its port must not wait out the old connections' TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(listen)?;
        let listener = {
            let _entered = runtime.enter();
            socket.listen(LISTEN_BACKLOG)?
        };
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            shape: RwLock::new(shape),
            cut: watch::Sender::new(CutState::default()),
            forward_bytes: AtomicU64::new(0),
            reverse_bytes: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            connections_failed: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
        });
        let accept = runtime.spawn(accept_loop(listener, shared.clone()));
        Ok(Relay {
            local_addr,
            shared,
            accept,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where connections are relayed to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    pub fn shape(&self) -> LinkShape {
        *self.shared.shape.read()
    }

    /// Shapes chunks that arrive from now on; queued chunks keep their release times, and the
    /// order of bytes is kept across the change.
    pub fn set_shape(&self, shape: LinkShape) -> Result<(), ShapeError> {
        shape.validate()?;
        *self.shared.shape.write() = shape;
        Ok(())
    }

    /// Cutting closes every open connection at once and closes new ones on arrival; healing
    /// lets new connections through (closed ones stay closed).
    pub fn set_cut(&self, cut: bool) {
        self.shared.cut.send_modify(|state| {
            if cut && !state.cut {
                state.cuts += 1;
            }
            state.cut = cut;
        });
    }

    pub fn is_cut(&self) -> bool {
        self.shared.cut.borrow().cut
    }

    pub fn stats(&self) -> RelayStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let shared = &self.shared;
        RelayStats {
            forward_bytes: read(&shared.forward_bytes),
            reverse_bytes: read(&shared.reverse_bytes),
            connections_accepted: read(&shared.connections_accepted),
            connections_refused: read(&shared.connections_refused),
            connections_failed: read(&shared.connections_failed),
            connections_open: read(&shared.connections_open),
        }
    }

    /// Stops the accept loop and every pump, and returns once the listener is closed.
    pub async fn shutdown(mut self) {
        self.accept.abort();
        // The accept task owns the listener and, through its `JoinSet`, every connection.
        let _ = (&mut self.accept).await;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("local_addr", &self.local_addr)
            .field("target", &self.shared.target)
            .field("shape", &self.shape())
            .field("cut", &self.is_cut())
            .finish()
    }
}

/// Accepts connections until aborted; owns every connection task, so aborting it ends them.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((inbound, _)) => admit(inbound, &shared, &mut connections),
                Err(_) => tokio::time::sleep(ACCEPT_ERROR_PAUSE).await,
            },
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = ended
                    && error.is_panic()
                {
                    std::panic::resume_unwind(error.into_panic());
                }
            }
        }
    }
}

/// Relays `inbound`, or closes it at once when the link is cut or full.
fn admit(inbound: TcpStream, shared: &Arc<Shared>, connections: &mut JoinSet<()>) {
    let state = *shared.cut.borrow();
    if state.cut || connections.len() >= CONNECTIONS_MAX {
        shared.connections_refused.fetch_add(1, Ordering::Relaxed);
        drop(inbound);
        return;
    }
    shared.connections_accepted.fetch_add(1, Ordering::Relaxed);
    let cut_seen = shared.cut.subscribe();
    connections.spawn(relay_connection(
        inbound,
        shared.clone(),
        cut_seen,
        state.cuts,
    ));
}

/// Counts a connection as open for as long as it lives, however it ends.
struct OpenConnection(Arc<Shared>);

impl OpenConnection {
    fn new(shared: Arc<Shared>) -> OpenConnection {
        shared.connections_open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(shared)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One relayed connection, until both directions end, an error, or a cut.
async fn relay_connection(
    inbound: TcpStream,
    shared: Arc<Shared>,
    mut cut_seen: watch::Receiver<CutState>,
    cuts_at_accept: u64,
) {
    let _open = OpenConnection::new(shared.clone());
    // `wait_for` looks at the current state first, so a cut between accept and here counts.
    let cut = cut_seen.wait_for(|state| state.cuts != cuts_at_accept);
    tokio::select! {
        // Leaving drops the pumps, and with them both sockets.
        _ = cut => {}
        relayed = pump_connection(inbound, &shared) => {
            if relayed.is_err() {
                shared.connections_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Connects to the target and runs both directions; the first error closes both sockets.
async fn pump_connection(inbound: TcpStream, shared: &Arc<Shared>) -> io::Result<()> {
    let outbound = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(shared.target))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connecting to the target"))??;
    // The shaper decides when bytes leave; Nagle would add its own, unshaped, delay.
    inbound.set_nodelay(true)?;
    outbound.set_nodelay(true)?;
    let (inbound_read, inbound_write) = inbound.into_split();
    let (outbound_read, outbound_write) = outbound.into_split();
    let mut pumps = JoinSet::new();
    spawn_pump(
        &mut pumps,
        inbound_read,
        outbound_write,
        shared,
        Direction::Forward,
    );
    spawn_pump(
        &mut pumps,
        outbound_read,
        inbound_write,
        shared,
        Direction::Reverse,
    );
    while let Some(ended) = pumps.join_next().await {
        match ended {
            Ok(Ok(())) => {}
            // Returning drops `pumps`, which aborts the others and closes both sockets.
            Ok(Err(error)) => return Err(error),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => return Err(io::Error::other("a pump was cancelled")),
        }
    }
    Ok(())
}

/// A chunk waiting for its release time; its permit holds its place in the byte bound.
struct Chunk {
    bytes: Vec<u8>,
    release: Instant,
    _queued: OwnedSemaphorePermit,
}

/// One direction: a reader that stamps chunks and a writer that releases them.
fn spawn_pump(
    pumps: &mut JoinSet<io::Result<()>>,
    from: OwnedReadHalf,
    to: OwnedWriteHalf,
    shared: &Arc<Shared>,
    direction: Direction,
) {
    let (chunks_sender, chunks_receiver) = mpsc::channel(QUEUED_CHUNKS_MAX);
    let queue = Arc::new(Semaphore::new(QUEUED_BYTES_MAX));
    pumps.spawn(read_chunks(from, chunks_sender, queue, shared.clone()));
    pumps.spawn(write_chunks(to, chunks_receiver, shared.clone(), direction));
}

/// Reads chunks and queues them with their release times; ends at EOF, which closes the
/// queue, so the writer passes the EOF on once the queue is empty.
async fn read_chunks(
    mut from: OwnedReadHalf,
    chunks: mpsc::Sender<Chunk>,
    queue: Arc<Semaphore>,
    shared: Arc<Shared>,
) -> io::Result<()> {
    let mut rng = ChaCha8Rng::from_rng(&mut rand::rng());
    let mut buffer = vec![0u8; CHUNK_BYTES_MAX];
    let mut previous_release = None;
    loop {
        // Room for a whole chunk before reading: while the queue is full the socket is not
        // read, and TCP flow control holds the sender back. Bytes are never dropped.
        let mut room = queue
            .clone()
            .acquire_many_owned(CHUNK_BYTES_MAX as u32)
            .await
            .expect("the queue's semaphore is never closed");
        let read_bytes = from.read(&mut buffer).await?;
        if read_bytes == 0 {
            return Ok(());
        }
        let arrival = Instant::now();
        let shape = *shared.shape.read();
        let jitter_ns = draw_jitter_ns(&mut rng, shape.jitter);
        let release = release_time(previous_release, arrival, read_bytes, &shape, jitter_ns);
        previous_release = Some(release);
        let queued = room
            .split(read_bytes)
            .expect("a read fits in the buffer, which is one chunk of room");
        drop(room);
        let chunk = Chunk {
            bytes: buffer[..read_bytes].to_vec(),
            release,
            _queued: queued,
        };
        if chunks.send(chunk).await.is_err() {
            // The writer failed; its error closes the connection.
            return Ok(());
        }
    }
}

/// Writes each chunk at its release time; when the reader is done and the queue is empty,
/// shuts the write half so the far side sees the EOF.
async fn write_chunks(
    mut to: OwnedWriteHalf,
    mut chunks: mpsc::Receiver<Chunk>,
    shared: Arc<Shared>,
    direction: Direction,
) -> io::Result<()> {
    while let Some(chunk) = chunks.recv().await {
        tokio::time::sleep_until(tokio::time::Instant::from_std(chunk.release)).await;
        to.write_all(&chunk.bytes).await?;
        shared.delivered(direction, chunk.bytes.len());
    }
    to.shutdown().await
}

/// A link's id: connections that node `from` opens to node `to`. A link carries both
/// directions of its connections; cut `(a, b)` and `(b, a)` to part two nodes whichever dials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId {
    pub from: usize,
    pub to: usize,
}

/// Many relays, one per link, cut and healed by node indices.
#[derive(Debug, Default)]
pub struct Links {
    relays: BTreeMap<LinkId, Relay>,
}

impl Links {
    pub fn new() -> Links {
        Links::default()
    }

    /// Starts a relay for `from → to`, replacing (and so stopping) any relay the link had.
    pub fn spawn(
        &mut self,
        from: usize,
        to: usize,
        listen: SocketAddr,
        target: SocketAddr,
        shape: LinkShape,
    ) -> io::Result<&Relay> {
        let relay = Relay::spawn(listen, target, shape)?;
        let link = LinkId { from, to };
        self.relays.insert(link, relay);
        Ok(&self.relays[&link])
    }

    /// Adds a relay made elsewhere; returns the one it replaces.
    pub fn insert(&mut self, from: usize, to: usize, relay: Relay) -> Option<Relay> {
        self.relays.insert(LinkId { from, to }, relay)
    }

    pub fn get(&self, from: usize, to: usize) -> Option<&Relay> {
        self.relays.get(&LinkId { from, to })
    }

    pub fn iter(&self) -> impl Iterator<Item = (LinkId, &Relay)> {
        self.relays.iter().map(|(link, relay)| (*link, relay))
    }

    pub fn len(&self) -> usize {
        self.relays.len()
    }

    pub fn is_empty(&self) -> bool {
        self.relays.is_empty()
    }

    /// Cuts `from → to`; false when there is no such link.
    #[must_use]
    pub fn cut(&self, from: usize, to: usize) -> bool {
        self.get(from, to)
            .map(|relay| relay.set_cut(true))
            .is_some()
    }

    /// Heals `from → to`; false when there is no such link.
    #[must_use]
    pub fn heal(&self, from: usize, to: usize) -> bool {
        self.get(from, to)
            .map(|relay| relay.set_cut(false))
            .is_some()
    }

    /// Cuts every link from or to `node`; returns how many.
    pub fn cut_node(&self, node: usize) -> usize {
        self.iter()
            .filter(|(link, _)| link.from == node || link.to == node)
            .map(|(_, relay)| relay.set_cut(true))
            .count()
    }

    pub fn heal_all(&self) {
        for relay in self.relays.values() {
            relay.set_cut(false);
        }
    }

    /// Gives every link `shape`.
    pub fn set_shape_all(&self, shape: LinkShape) -> Result<(), ShapeError> {
        shape.validate()?;
        for relay in self.relays.values() {
            relay.set_shape(shape)?;
        }
        Ok(())
    }

    /// Stops every relay and returns once their listeners are closed.
    pub async fn shutdown(self) {
        for relay in self.relays.into_values() {
            relay.shutdown().await;
        }
    }
}

/// `weft-testnet relay`: one relay until SIGINT or SIGTERM.
pub async fn run_relay(
    listen: SocketAddr,
    target: SocketAddr,
    shape: LinkShape,
) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    shape.validate().map_err(|e| e.to_string())?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let relay =
        Relay::spawn(listen, target, shape).map_err(|e| format!("relaying from {listen}: {e}"))?;
    println!(
        "relaying {} -> {target}: {shape}; Ctrl-C stops",
        relay.local_addr()
    );
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    let stats = relay.stats();
    relay.shutdown().await;
    println!(
        "stopped: {} B forward, {} B back, {} connections relayed, {} refused",
        stats.forward_bytes,
        stats.reverse_bytes,
        stats.connections_accepted,
        stats.connections_refused
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(delay_ms: u64, jitter_ms: u64, bandwidth_bytes_per_s: Option<u64>) -> LinkShape {
        LinkShape {
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::from_millis(jitter_ms),
            bandwidth_bytes_per_s,
        }
    }

    /// One chunk through `release_time`, with times in ms after a common origin.
    struct ReleaseCase {
        desc: &'static str,
        shape: LinkShape,
        previous_release_ms: Option<u64>,
        arrival_ms: u64,
        chunk_bytes: usize,
        jitter_ns: i64,
        release_ms: u64,
    }

    #[test]
    fn release_time_keeps_order_adds_delay_jitter_and_serialisation() {
        let cases = [
            ReleaseCase {
                desc: "no shape: released on arrival",
                shape: LinkShape::default(),
                previous_release_ms: None,
                arrival_ms: 7,
                chunk_bytes: 100,
                jitter_ns: 0,
                release_ms: 7,
            },
            ReleaseCase {
                desc: "delay only",
                shape: shape(20, 0, None),
                previous_release_ms: Some(5),
                arrival_ms: 10,
                chunk_bytes: 100,
                jitter_ns: 0,
                release_ms: 30,
            },
            ReleaseCase {
                desc: "late jitter adds",
                shape: shape(20, 15, None),
                previous_release_ms: None,
                arrival_ms: 10,
                chunk_bytes: 1,
                jitter_ns: 15_000_000,
                release_ms: 45,
            },
            ReleaseCase {
                desc: "early jitter subtracts, down to arrival at most",
                shape: shape(20, 20, None),
                previous_release_ms: None,
                arrival_ms: 10,
                chunk_bytes: 1,
                jitter_ns: -20_000_000,
                release_ms: 10,
            },
            ReleaseCase {
                desc: "early jitter never overtakes the previous chunk",
                shape: shape(20, 15, None),
                previous_release_ms: Some(44),
                arrival_ms: 11,
                chunk_bytes: 1,
                jitter_ns: -15_000_000,
                release_ms: 44,
            },
            ReleaseCase {
                desc: "bandwidth: 1000 B at 1 MB/s takes 1 ms after ready",
                shape: shape(5, 0, Some(1_000_000)),
                previous_release_ms: None,
                arrival_ms: 0,
                chunk_bytes: 1_000,
                jitter_ns: 0,
                release_ms: 6,
            },
            ReleaseCase {
                desc: "bandwidth: a backlog serialises after the previous chunk",
                shape: shape(5, 0, Some(1_000_000)),
                previous_release_ms: Some(50),
                arrival_ms: 0,
                chunk_bytes: 2_000,
                jitter_ns: 0,
                release_ms: 52,
            },
        ];
        let origin = Instant::now();
        let at = |ms: u64| origin + Duration::from_millis(ms);
        for case in cases {
            let release = release_time(
                case.previous_release_ms.map(at),
                at(case.arrival_ms),
                case.chunk_bytes,
                &case.shape,
                case.jitter_ns,
            );
            assert_eq!(release, at(case.release_ms), "{}", case.desc);
        }
    }

    #[test]
    fn release_times_never_decrease_whatever_the_draws() {
        let seed = 7;
        eprintln!("seed {seed}");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let shape = shape(20, 20, Some(1_000_000));
        let origin = Instant::now();
        let mut previous = None;
        let mut arrival = origin;
        for _ in 0..10_000 {
            arrival += Duration::from_micros(rng.random_range(0..2_000));
            let chunk_bytes = rng.random_range(1..=CHUNK_BYTES_MAX);
            let release = release_time(
                previous,
                arrival,
                chunk_bytes,
                &shape,
                draw_jitter_ns(&mut rng, shape.jitter),
            );
            let floor = previous.unwrap_or(origin) + serialisation_time(chunk_bytes, 1_000_000);
            assert!(release >= floor, "order and serialisation are kept");
            assert!(release >= arrival + shape.delay - shape.jitter);
            previous = Some(release);
        }
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn a_jitter_draw_beyond_the_shape_is_a_bug() {
        release_time(None, Instant::now(), 1, &shape(10, 1, None), 2_000_000);
    }

    #[test]
    fn serialisation_time_rounds_up() {
        let cases = [
            (1_000, 1_000_000, Duration::from_millis(1)),
            (1, 3, Duration::from_nanos(333_333_334)),
            (
                CHUNK_BYTES_MAX,
                BANDWIDTH_BYTES_PER_S_MIN,
                Duration::from_nanos(524_288_000_000),
            ),
            (0, 1_000, Duration::ZERO),
        ];
        for (chunk_bytes, rate, expected) in cases {
            assert_eq!(
                serialisation_time(chunk_bytes, rate),
                expected,
                "{chunk_bytes} B at {rate} B/s"
            );
        }
    }

    #[test]
    fn scaled_numbers_are_exact_or_refused() {
        let cases: [(&str, u128, Result<u128, &str>); 9] = [
            ("1.5", 1_000, Ok(1_500)),
            ("0.001", 1_000, Ok(1)),
            ("0.0001", 1_000, Err("finer than one")),
            ("007", 1, Ok(7)),
            (".5", 1_000, Err("start with a digit")),
            ("5.", 1_000, Err("one `.`")),
            ("1.2.3", 1_000, Err("one `.`")),
            ("1234567890123456789", 1, Err("too many digits")),
            (
                "999999999999999999.999999999999999999",
                1 << 33,
                Err("finer than one"),
            ),
        ];
        for (number, scale, expected) in cases {
            let got = scaled(number, scale, "unit").map_err(|e| e.to_string());
            match expected {
                Ok(value) => assert_eq!(got, Ok(value), "{number}"),
                Err(words) => {
                    let message = got.expect_err(number);
                    assert!(message.contains(words), "{number}: {message}");
                }
            }
        }
    }

    #[test]
    fn shapes_are_validated() {
        let cases = [
            (shape(0, 0, None), None),
            (shape(10_000, 10_000, Some(125)), None),
            (shape(10_001, 0, None), Some("delay 10.001s is over")),
            (shape(10, 11, None), Some("larger than the delay")),
            (shape(10, 0, Some(124)), Some("below the 1 kbit/s floor")),
            (shape(10, 0, Some(0)), Some("below the 1 kbit/s floor")),
            (
                shape(10, 0, Some(BANDWIDTH_BYTES_PER_S_MAX + 1)),
                Some("ceiling"),
            ),
        ];
        for (shape, refusal) in cases {
            match (shape.validate(), refusal) {
                (Ok(()), None) => {}
                (Err(error), Some(words)) => {
                    assert!(error.to_string().contains(words), "{shape}: {error}")
                }
                (got, _) => panic!("{shape}: got {got:?}, expected refusal {refusal:?}"),
            }
        }
    }

    #[test]
    fn shapes_display_their_rates() {
        assert_eq!(
            shape(50, 5, Some(12_500_000)).to_string(),
            "delay 50ms ± 5ms, bandwidth 100 Mbit/s"
        );
        assert_eq!(
            shape(0, 0, None).to_string(),
            "delay 0ns ± 0ns, no bandwidth cap"
        );
        assert_eq!(bandwidth_text(1 << 20), "1048576 B/s");
    }
}
