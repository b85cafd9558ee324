//! The open-loop load generator: pre-signed txs from the funded load accounts, offered at a
//! fixed rate to every node's RPC whatever the nodes do, each timed from its send to the block
//! that commits it.
//!
//! A [`run`] goes through these steps:
//! 1. **Keys and nonces.** Load accounts `first_account..first_account + accounts` ([`crate::manifest::load_key`]); each
//!    one's committed nonce is read with batched `account` calls from every node (the highest
//!    answer wins), so an earlier run's committed txs never collide with this one's.
//! 2. **Names** (pay-name only). The first `min(accounts, 64)` accounts register `load-0`, …,
//!    and the run waits (at most 30 s) until every registration is in a block; a name an
//!    earlier run registered fails to register again and is paid all the same.
//! 3. **Signing.** Tx `i` is sent by account `i % accounts` with the next nonce in its run, so
//!    each account's nonces are contiguous in send order; its recipient (account, name or work
//!    slot) is drawn from the [`Distribution`] by a ChaCha RNG seeded with [`LoadSpec::seed`].
//!    A bounded run of at most [`PRESIGN_TXS_MAX`] txs is signed (on rayon) before the clock
//!    starts; otherwise a thread signs one second of txs at a time, [`SIGN_AHEAD_SECONDS`]
//!    ahead, so signing never holds up sending.
//! 4. **Sending.** Every [`TICK`] the txs now due (`⌊tps · t⌋` in all) go out, grouped by node,
//!    as JSON-RPC batches of `broadcast_tx_sync` (at most [`BATCH_TXS_MAX`] txs), each batch
//!    in its own task. Account `a`'s txs go to node `a % n`; a node whose batch failed at the
//!    transport level is skipped for [`NODE_DOWN`], one with [`NODE_BATCHES_IN_FLIGHT_MAX`]
//!    batches unanswered (paused, overloaded) is skipped while that lasts, and its accounts go
//!    to the next usable node. A batch without an answer in [`SEND_TIMEOUT`] counts as send
//!    failures and is retried once on the next node. With no node usable, or
//!    [`BATCHES_IN_FLIGHT_MAX`] batches out, the txs due are dropped (see
//!    [`LoadReport::dropped`]). Code 0 is admitted; other codes are counted by code.
//! 5. **Tracking.** One task follows `NewBlock` over a node's WebSocket, switching nodes and
//!    reading missed heights back when its node dies, stalls or falls behind. Latency is the
//!    moment the tracker receives the block minus the moment the tx was first sent.
//! 6. **Rebroadcast.** A tx not committed [`REBROADCAST_AFTER`] after its last send (admitted
//!    by a node that then died, refused for a full mempool or a nonce gap, lost to a failed
//!    send, dropped) is sent again, one node further on each time, at most
//!    [`REBROADCASTS_MAX`] times, so one lost tx does not stall its account's later nonces for
//!    the rest of the run. Txs not committed [`PENDING_TTL`] after their first send are
//!    forgotten; at most [`PENDING_TXS_MAX`] are awaited at once.
//! 7. **Drain.** After the last send, tracking goes on until every tx that a node admitted
//!    (or whose fate is unknown) has committed, or [`DRAIN`] passes.
//!
//! Everything is bounded: batches in flight, the table of txs awaiting commit, the signing
//! look-ahead, the latencies kept (a reservoir), the timeline, the heights read back.

mod ledger;
mod plot;
mod report;
mod sample;
mod send;
mod setup;
mod sign;
mod track;

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use weft_execution::ChainId;

pub use ledger::{PENDING_TTL, PENDING_TXS_MAX, REBROADCAST_AFTER, REBROADCASTS_MAX};
pub use report::{
    COMMITTED_TXS_MAX, LATE_SECONDS_MAX, LATENCY_SAMPLES_MAX, LoadReport, Second, Timeline,
    code_name, percentile,
};
pub use sample::Sampler;
pub use send::{
    BATCH_TXS_MAX, BATCHES_IN_FLIGHT_MAX, NODE_BATCHES_IN_FLIGHT_MAX, NODE_DOWN, SEND_TIMEOUT,
};
pub use setup::NAMES_MAX;
pub use sign::{work_round_ns, work_rounds};

use ledger::{Attempt, Ledger};
use send::Nodes;
use sign::{Body, Draws, Plan, SignedTx, Signer};
use track::Tracker;

use crate::client::NodeClient;
use crate::manifest::Manifest;

/// Highest offered rate.
pub const TPS_MAX: u64 = 1_000_000;
/// Longest bounded run.
pub const DURATION_MAX: Duration = Duration::from_secs(86_400);
/// Largest Zipf exponent.
pub const ZIPF_S_MAX: f64 = 10.0;
/// Most µs of work one `work:US` tx may ask for (the protocol caps rounds lower: see
/// [`work_rounds`]).
pub const WORK_MICROS_MAX: u32 = 10_000;
/// Most txs signed before the clock starts; a longer bounded run signs as it goes.
pub const PRESIGN_TXS_MAX: u64 = 2_000_000;
/// Seconds of txs signed ahead when signing as it goes.
pub const SIGN_AHEAD_SECONDS: usize = 2;
/// The send loop's period.
pub const TICK: Duration = Duration::from_millis(10);
/// How often txs that have not committed are looked at for a rebroadcast.
pub const REBROADCAST_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for the last admitted txs to commit after the last send.
pub const DRAIN: Duration = Duration::from_secs(15);
/// Longest wait for the batches in flight after the last send (a send and its retry).
pub const SETTLE_WITHIN: Duration = Duration::from_secs(5);
/// Longest wait for the commit tracker's first subscription.
pub const TRACKER_READY_WITHIN: Duration = Duration::from_secs(15);
/// Timeout of the tracker's HTTP reads (`status`, `block`, `block_results`).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// The window of [`Live::snapshot`]'s rate and latency.
pub const LIVE_WINDOW: Duration = Duration::from_secs(1);
/// Most commits held in that window (above this many tx/s the live rate reads low).
pub const LIVE_WINDOW_TXS_MAX: usize = 250_000;

#[derive(Debug, Error)]
pub enum LoadError {
    /// A bad spec or argument; the text names the value.
    #[error("{0}")]
    Invalid(String),
    #[error("no node answered: {0}")]
    NoNode(String),
    #[error("preparing the load: {0}")]
    Setup(String),
    #[error("drawing the plot: {0}")]
    Plot(String),
    #[error("a load task failed: {0}")]
    Task(String),
}

/// How the key each tx touches besides its sender is drawn (see [`Sampler`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    Uniform,
    /// Zipf with exponent `s` over the keys' ranks (key 0 the most popular).
    Zipf(f64),
    /// This percent (0 to 100) of txs hit key 0; the rest draw uniformly.
    Hot(f64),
}

impl Distribution {
    fn check(&self) -> Result<(), LoadError> {
        match *self {
            Distribution::Zipf(s) if !(s > 0.0 && s <= ZIPF_S_MAX) => {
                Err(LoadError::Invalid(format!(
                    "distribution zipf:{s}: the exponent must be above 0 and at most {ZIPF_S_MAX}"
                )))
            }
            Distribution::Hot(p) if !(0.0..=100.0).contains(&p) => Err(LoadError::Invalid(
                format!("distribution hot:{p}: the percentage must be from 0 to 100"),
            )),
            _ => Ok(()),
        }
    }
}

impl FromStr for Distribution {
    type Err = LoadError;

    fn from_str(text: &str) -> Result<Distribution, LoadError> {
        let bad = |why: &str| LoadError::Invalid(format!("distribution {text:?}: {why}"));
        let number = |value: &str, why: &str| value.parse::<f64>().map_err(|_| bad(why));
        let distribution = match text.split_once(':') {
            None if text == "uniform" => Distribution::Uniform,
            Some(("zipf", s)) => Distribution::Zipf(number(
                s,
                "S in zipf:S must be a number above 0, e.g. zipf:1.1",
            )?),
            Some(("hot", p)) => Distribution::Hot(number(
                p,
                "P in hot:P must be a percentage from 0 to 100, e.g. hot:10",
            )?),
            _ => {
                return Err(bad(
                    "use uniform, zipf:S (S above 0) or hot:P (P from 0 to 100)",
                ));
            }
        };
        distribution.check()?;
        Ok(distribution)
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Distribution::Uniform => write!(f, "uniform"),
            Distribution::Zipf(s) => write!(f, "zipf:{s}"),
            Distribution::Hot(p) => write!(f, "hot:{p}"),
        }
    }
}

/// What the txs do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Pay 1 to the drawn load account.
    Transfer,
    /// Pay 1 to the drawn name `load-K` (registered first).
    PayName,
    /// Hash the drawn work slot for about `micros` µs (see [`work_rounds`]).
    Work { micros: u32 },
}

impl Kind {
    fn check(&self) -> Result<(), LoadError> {
        match *self {
            Kind::Work { micros } if micros > WORK_MICROS_MAX => Err(LoadError::Invalid(format!(
                "kind work:{micros}: at most {WORK_MICROS_MAX} µs per tx"
            ))),
            _ => Ok(()),
        }
    }
}

impl FromStr for Kind {
    type Err = LoadError;

    fn from_str(text: &str) -> Result<Kind, LoadError> {
        let kind = match text.split_once(':') {
            None if text == "transfer" => Kind::Transfer,
            None if text == "pay-name" => Kind::PayName,
            Some(("work", micros)) => Kind::Work {
                micros: micros.parse().map_err(|_| {
                    LoadError::Invalid(format!(
                        "kind {text:?}: US in work:US must be a whole number of µs, e.g. work:50"
                    ))
                })?,
            },
            _ => {
                return Err(LoadError::Invalid(format!(
                    "kind {text:?}: use transfer, pay-name or work:US (µs of work per tx)"
                )));
            }
        };
        kind.check()?;
        Ok(kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Transfer => write!(f, "transfer"),
            Kind::PayName => write!(f, "pay-name"),
            Kind::Work { micros } => write!(f, "work:{micros}"),
        }
    }
}

/// What to offer.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadSpec {
    /// Offered txs per second.
    pub tps: u64,
    /// `None`: until `stop` turns true.
    pub duration: Option<Duration>,
    /// The first sending account: loads that run at once use disjoint ranges.
    pub first_account: usize,
    /// Sending accounts: load accounts `first_account..first_account + accounts`.
    pub accounts: usize,
    pub distribution: Distribution,
    pub kind: Kind,
    pub seed: u64,
}

impl LoadSpec {
    pub fn validate(&self, manifest: &Manifest) -> Result<(), LoadError> {
        let bad = |problem: String| Err(LoadError::Invalid(problem));
        if self.tps == 0 || self.tps > TPS_MAX {
            return bad(format!("--tps {}: 1 to {TPS_MAX} tx/s", self.tps));
        }
        if self.accounts == 0
            || self.first_account.saturating_add(self.accounts) > manifest.load_accounts
        {
            return bad(format!(
                "--accounts {} from account {}: the testnet funds load accounts 0..{}",
                self.accounts, self.first_account, manifest.load_accounts
            ));
        }
        if let Some(duration) = self.duration
            && (duration.is_zero() || duration > DURATION_MAX)
        {
            return bad(format!(
                "--duration {duration:?}: above 0 and at most {} s (a day)",
                DURATION_MAX.as_secs()
            ));
        }
        if self.total_txs() == Some(0) {
            return bad(format!(
                "--tps {} for {:?} is less than one tx",
                self.tps,
                self.duration.unwrap_or_default()
            ));
        }
        if manifest.nodes.is_empty() {
            return bad("the testnet has no nodes".into());
        }
        self.distribution.check()?;
        self.kind.check()
    }

    /// Txs a bounded run sends: `tps · duration`, rounded down.
    pub fn total_txs(&self) -> Option<u64> {
        self.duration
            .map(|d| (u128::from(self.tps) * d.as_micros() / 1_000_000) as u64)
    }
}

/// Txs due `elapsed` after the clock started: `⌊tps · elapsed⌋`, at most `total`.
pub fn due_txs(tps: u64, elapsed: Duration, total: Option<u64>) -> u64 {
    let due = (u128::from(tps) * elapsed.as_micros() / 1_000_000) as u64;
    total.map_or(due, |total| due.min(total))
}

/// Counters shared with whoever watches a run (`up`'s status line), updated as it goes.
/// Cumulative over every run that shares it.
#[derive(Debug, Default)]
pub struct Live {
    sent: AtomicU64,
    admitted: AtomicU64,
    rejected: AtomicU64,
    committed: AtomicU64,
    send_failures: AtomicU64,
    dropped: AtomicU64,
    /// (when seen, latency ms) of the commits of the last [`LIVE_WINDOW`].
    window: Mutex<VecDeque<(Instant, f64)>>,
}

/// A reading of [`Live`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveSnapshot {
    pub sent: u64,
    pub admitted: u64,
    pub rejected: u64,
    pub committed: u64,
    pub send_failures: u64,
    pub dropped: u64,
    /// Our txs seen committed over the last [`LIVE_WINDOW`], per second.
    pub committed_tps: f64,
    /// Median latency of those txs; `None` when none committed in the window.
    pub p50_ms: Option<f64>,
}

impl Live {
    pub fn snapshot(&self) -> LiveSnapshot {
        let mut latencies: Vec<f64> = {
            let mut window = self.window.lock();
            prune(&mut window, Instant::now());
            window.iter().map(|(_, latency)| *latency).collect()
        };
        latencies.sort_by(f64::total_cmp);
        LiveSnapshot {
            sent: self.sent.load(Relaxed),
            admitted: self.admitted.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            committed: self.committed.load(Relaxed),
            send_failures: self.send_failures.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            committed_tps: latencies.len() as f64 / LIVE_WINDOW.as_secs_f64(),
            p50_ms: (!latencies.is_empty()).then(|| percentile(&latencies, 0.5)),
        }
    }

    fn record_commits(&self, latencies_ms: &[f64]) {
        self.committed.fetch_add(latencies_ms.len() as u64, Relaxed);
        let now = Instant::now();
        let mut window = self.window.lock();
        window.extend(latencies_ms.iter().map(|latency| (now, *latency)));
        prune(&mut window, now);
        let excess = window.len().saturating_sub(LIVE_WINDOW_TXS_MAX);
        window.drain(..excess);
    }
}

fn prune(window: &mut VecDeque<(Instant, f64)>, now: Instant) {
    while window
        .front()
        .is_some_and(|(at, _)| now.duration_since(*at) > LIVE_WINDOW)
    {
        window.pop_front();
    }
}

/// Offers `spec`'s load to `manifest`'s nodes until its duration ends or `stop` turns true,
/// then waits for the admitted txs to commit (at most [`DRAIN`]) and reports. `live` is
/// updated as it goes; `progress` shows a bar on stderr (and the signing time), otherwise
/// nothing is printed. Nodes may die, stall or fall behind meanwhile: that shows in the
/// report, not as an error. `Err` only when the load cannot start (bad spec, no node
/// answers, names not registered).
pub async fn run(
    manifest: &Manifest,
    spec: &LoadSpec,
    live: Arc<Live>,
    mut stop: watch::Receiver<bool>,
    progress: bool,
) -> Result<LoadReport, LoadError> {
    spec.validate(manifest)?;
    let chain_id = ChainId::new(&manifest.chain_id)
        .map_err(|e| LoadError::Invalid(format!("chain id {:?}: {e}", manifest.chain_id)))?;
    let nodes = Arc::new(Nodes::new(manifest)?);
    let (first, accounts) = (spec.first_account, spec.accounts);
    let signer = blocking(move || Signer::load_accounts(chain_id, first, accounts)).await?;
    let (plan, work_rounds) = prepare(&nodes, spec, signer).await?;
    let total = spec.total_txs();
    let (source, sign_s) = Source::start(plan, total, spec.tps, spec.seed).await?;
    if progress && let Some(total) = total.filter(|_| sign_s > 0.0) {
        eprintln!("signed {total} txs in {sign_s:.2} s");
    }

    let ledger = Arc::new(Ledger::new(live, spec.seed));
    let clients = manifest
        .nodes
        .iter()
        .map(|node| NodeClient::new(node, QUERY_TIMEOUT))
        .collect();
    let (done_tx, done_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = oneshot::channel();
    let tracker = Tracker::new(manifest, clients, Arc::clone(&ledger));
    let tracker = tokio::spawn(tracker.run(ready_tx, done_rx));
    if !matches!(
        tokio::time::timeout(TRACKER_READY_WITHIN, ready_rx).await,
        Ok(Ok(()))
    ) {
        let _ = done_tx.send(true);
        let problem = match tracker.await {
            Ok(tracker) => tracker.last_problem.unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        return Err(LoadError::NoNode(format!(
            "no node's block subscription came up within {TRACKER_READY_WITHIN:?} ({problem})"
        )));
    }

    let bar = Progress::new(progress, total);
    ledger.start_clock();
    send_phase(&nodes, &ledger, source, spec, &mut stop, &bar).await;
    let send_end_us = ledger.now_us();
    nodes.settle(SETTLE_WITHIN).await;
    drain(&nodes, &ledger, &bar).await;
    let _ = done_tx.send(true);
    let tracker = tracker
        .await
        .map_err(|e| LoadError::Task(format!("commit tracker: {e}")))?;
    bar.finish();
    Ok(assemble(
        &ledger,
        tracker.missed_heights,
        send_end_us,
        sign_s,
        work_rounds,
    ))
}

/// Runs CPU work (key derivation, signing, calibration) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LoadError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| LoadError::Task(e.to_string()))
}

/// Nonces, names and the kind's body: everything but the signatures.
async fn prepare(
    nodes: &Nodes,
    spec: &LoadSpec,
    signer: Signer,
) -> Result<(Plan, Option<u32>), LoadError> {
    let mut nonces = setup::fetch_nonces(nodes, &signer.addresses).await?;
    let (body, keys, work_rounds) = match spec.kind {
        Kind::Transfer => (Body::Transfer, spec.accounts, None),
        Kind::PayName => {
            let names = setup::register_names(nodes, &signer, &nonces).await?;
            // A registration that failed in its block did not use its nonce.
            nonces = setup::fetch_nonces(nodes, &signer.addresses).await?;
            let keys = names.len();
            (Body::PayName(names), keys, None)
        }
        Kind::Work { micros } => {
            let rounds = blocking(move || work_rounds(micros)).await?;
            (Body::Work { rounds }, spec.accounts, Some(rounds))
        }
    };
    let sampler = Sampler::new(&spec.distribution, keys)?;
    let plan = Plan {
        signer,
        nonces,
        body,
        sampler,
    };
    Ok((plan, work_rounds))
}

/// Where the send loop takes its txs from.
enum Source {
    /// All signed beforehand.
    Ready(std::vec::IntoIter<SignedTx>),
    /// One second at a time from the signing thread.
    Streamed {
        chunks: mpsc::Receiver<Vec<SignedTx>>,
        buffer: VecDeque<SignedTx>,
    },
}

impl Source {
    /// Signs everything now (a bounded run of at most [`PRESIGN_TXS_MAX`] txs; the seconds it
    /// took are returned) or starts the signing thread.
    async fn start(
        plan: Plan,
        total: Option<u64>,
        tps: u64,
        seed: u64,
    ) -> Result<(Source, f64), LoadError> {
        if let Some(total) = total.filter(|&t| t <= PRESIGN_TXS_MAX) {
            let start = Instant::now();
            let txs = blocking(move || plan.sign_next(&mut Draws::new(seed), total)).await?;
            return Ok((
                Source::Ready(txs.into_iter()),
                start.elapsed().as_secs_f64(),
            ));
        }
        let (sender, chunks) = mpsc::channel(SIGN_AHEAD_SECONDS);
        std::thread::Builder::new()
            .name("load-signer".into())
            .spawn(move || {
                let mut draws = Draws::new(seed);
                let mut signed = 0;
                loop {
                    let count = total.map_or(tps, |total| tps.min(total - signed));
                    if count == 0 {
                        return;
                    }
                    // Stops when the send loop has gone.
                    if sender
                        .blocking_send(plan.sign_next(&mut draws, count))
                        .is_err()
                    {
                        return;
                    }
                    signed += count;
                }
            })
            .map_err(|e| LoadError::Setup(format!("starting the signing thread: {e}")))?;
        let buffer = VecDeque::new();
        Ok((Source::Streamed { chunks, buffer }, 0.0))
    }

    /// Up to `count` txs: fewer when the signing thread is behind.
    fn take(&mut self, count: u64) -> Vec<SignedTx> {
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        match self {
            Source::Ready(txs) => txs.by_ref().take(count).collect(),
            Source::Streamed { chunks, buffer } => {
                while buffer.len() < count {
                    match chunks.try_recv() {
                        Ok(chunk) => buffer.extend(chunk),
                        Err(_) => break,
                    }
                }
                let available = buffer.len().min(count);
                buffer.drain(..available).collect()
            }
        }
    }
}

/// The open loop: every [`TICK`], whatever is due goes out, without waiting for answers.
async fn send_phase(
    nodes: &Arc<Nodes>,
    ledger: &Arc<Ledger>,
    mut source: Source,
    spec: &LoadSpec,
    stop: &mut watch::Receiver<bool>,
    bar: &Progress,
) {
    let total = spec.total_txs();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop_open = true;
    let mut scheduled = 0u64;
    let mut last_rebroadcast = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = stop.changed(), if stop_open => stop_open = changed.is_ok(),
        }
        if *stop.borrow() {
            return;
        }
        let elapsed = Duration::from_micros(ledger.now_us());
        let due = due_txs(spec.tps, elapsed, total);
        if due > scheduled {
            let txs = source.take(due - scheduled);
            scheduled += txs.len() as u64;
            let txs = txs.into_iter().map(|tx| (tx, 0)).collect();
            nodes.dispatch(ledger, txs, Attempt::First);
        }
        if last_rebroadcast.elapsed() >= REBROADCAST_EVERY {
            nodes.dispatch(ledger, ledger.take_stale(), Attempt::Rebroadcast);
            last_rebroadcast = Instant::now();
        }
        bar.update(ledger, None);
        if total.is_some_and(|total| scheduled >= total) {
            return;
        }
    }
}

/// After the last send: track until no admitted (or unanswered) tx awaits its commit, or
/// [`DRAIN`] passes; rebroadcasts go on meanwhile.
async fn drain(nodes: &Arc<Nodes>, ledger: &Arc<Ledger>, bar: &Progress) {
    const POLL: Duration = Duration::from_millis(100);
    let deadline = Instant::now() + DRAIN;
    let mut last_rebroadcast = Instant::now();
    loop {
        let awaited = ledger.awaited();
        bar.update(ledger, Some(awaited));
        if awaited == 0 || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(POLL).await;
        if last_rebroadcast.elapsed() >= REBROADCAST_EVERY {
            nodes.dispatch(ledger, ledger.take_stale(), Attempt::Rebroadcast);
            last_rebroadcast = Instant::now();
        }
    }
}

/// The report, from the ledger's books. Rates are over wall-clock spans measured from the
/// first send (see [`LoadReport`]'s fields).
fn assemble(
    ledger: &Ledger,
    missed_heights: u64,
    send_end_us: u64,
    sign_s: f64,
    work_rounds: Option<u32>,
) -> LoadReport {
    let end_us = ledger.now_us();
    let recorder = std::mem::replace(&mut *ledger.recorder.lock(), report::Recorder::new(0));
    let sent = ledger.sent.load(Relaxed);
    let first_send_us = match ledger.first_send_us.load(Relaxed) {
        u64::MAX => 0,
        first => first,
    };
    let seconds = |until_us: u64| until_us.saturating_sub(first_send_us) as f64 / 1e6;
    let rate = |count: u64, span_s: f64| {
        if count == 0 || span_s <= 0.0 {
            0.0
        } else {
            count as f64 / span_s
        }
    };
    let (p50_ms, p90_ms, p99_ms, max_ms) = recorder.latencies.summary();
    let commit_end_us = recorder.last_commit_us.unwrap_or(send_end_us);
    LoadReport {
        sent,
        admitted: ledger.admitted.load(Relaxed),
        committed: recorder.committed,
        failed_in_block: recorder.failed_in_block,
        rejected: ledger.rejected.lock().clone(),
        send_failures: ledger.send_failures.load(Relaxed),
        dropped: ledger.dropped.load(Relaxed),
        rebroadcasts: ledger.rebroadcasts.load(Relaxed),
        uncommitted: ledger.uncommitted(),
        missed_heights,
        offered_tps: rate(sent, seconds(send_end_us)),
        committed_tps: rate(recorder.committed, seconds(commit_end_us)),
        p50_ms,
        p90_ms,
        p99_ms,
        max_ms,
        elapsed_s: seconds(end_us),
        sign_s,
        work_rounds,
        timeline: recorder.timeline.finish(),
        committed_txs: recorder.committed_txs,
    }
}

/// The progress bar on stderr, or nothing.
struct Progress {
    bar: Option<ProgressBar>,
    last_message: Mutex<Option<Instant>>,
}

impl Progress {
    const MESSAGE_EVERY: Duration = Duration::from_millis(100);

    fn new(enabled: bool, total: Option<u64>) -> Progress {
        let bar = enabled.then(|| match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:32}] {pos}/{len} sent  {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise}  {pos} sent  {msg}")
                    .expect("a valid template"),
            ),
        });
        Progress {
            bar,
            last_message: Mutex::new(None),
        }
    }

    /// `awaited`: during the drain, txs still awaited.
    fn update(&self, ledger: &Ledger, awaited: Option<usize>) {
        let Some(bar) = &self.bar else {
            return;
        };
        bar.set_position(ledger.sent.load(Relaxed));
        let mut last = self.last_message.lock();
        if last.is_some_and(|at| at.elapsed() < Self::MESSAGE_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let live = ledger.live.snapshot();
        let p50 = live.p50_ms.map_or("-".into(), |p| format!("{p:.0}"));
        let mut message = format!(
            "committed {}  {:.0} tx/s  p50 {p50} ms",
            ledger.recorder.lock().committed,
            live.committed_tps
        );
        if let Some(awaited) = awaited {
            message.push_str(&format!("  draining: {awaited} awaited"));
        }
        bar.set_message(message);
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_parse_and_print_back() {
        let good = [
            ("uniform", Distribution::Uniform),
            ("zipf:1.1", Distribution::Zipf(1.1)),
            ("zipf:0.5", Distribution::Zipf(0.5)),
            ("zipf:10", Distribution::Zipf(10.0)),
            ("hot:10", Distribution::Hot(10.0)),
            ("hot:0", Distribution::Hot(0.0)),
            ("hot:100", Distribution::Hot(100.0)),
            ("hot:2.5", Distribution::Hot(2.5)),
        ];
        for (text, want) in good {
            let got: Distribution = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string().parse::<Distribution>().unwrap(), want);
        }
        assert_eq!(Distribution::Zipf(1.1).to_string(), "zipf:1.1");
    }

    #[test]
    fn bad_distributions_name_the_value() {
        let bad = [
            ("", "use uniform, zipf:S"),
            ("Uniform", "\"Uniform\": use uniform"),
            ("zipf", "\"zipf\": use uniform"),
            ("zipf:", "S in zipf:S must be a number"),
            ("zipf:abc", "\"zipf:abc\": S in zipf:S"),
            ("zipf:0", "zipf:0: the exponent must be above 0"),
            ("zipf:-1", "zipf:-1: the exponent"),
            ("zipf:11", "at most 10"),
            ("zipf:NaN", "zipf:NaN"),
            ("hot:101", "hot:101: the percentage must be from 0 to 100"),
            ("hot:-1", "hot:-1"),
            ("hot:x", "\"hot:x\": P in hot:P"),
            ("hot:inf", "hot:inf"),
            ("cold:5", "\"cold:5\": use uniform"),
        ];
        for (text, want) in bad {
            let error = text.parse::<Distribution>().unwrap_err().to_string();
            assert!(error.contains(want), "{text:?}: {error}");
        }
    }

    #[test]
    fn kinds_parse_and_print_back() {
        let good = [
            ("transfer", Kind::Transfer),
            ("pay-name", Kind::PayName),
            ("work:50", Kind::Work { micros: 50 }),
            ("work:0", Kind::Work { micros: 0 }),
            ("work:10000", Kind::Work { micros: 10_000 }),
        ];
        for (text, want) in good {
            let got: Kind = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), text);
        }
        let bad = [
            ("", "use transfer, pay-name or work:US"),
            ("pay_name", "\"pay_name\": use transfer"),
            ("work", "\"work\": use transfer"),
            ("work:", "US in work:US must be a whole number"),
            ("work:-5", "\"work:-5\""),
            ("work:1.5", "\"work:1.5\""),
            ("work:10001", "work:10001: at most 10000 µs"),
            ("transfer:1", "\"transfer:1\""),
        ];
        for (text, want) in bad {
            let error = text.parse::<Kind>().unwrap_err().to_string();
            assert!(error.contains(want), "{text:?}: {error}");
        }
    }

    fn manifest(load_accounts: usize, nodes: usize) -> Manifest {
        manifest_on(load_accounts, nodes, 40_001)
    }

    /// Through JSON, so that fields the manifest gains with defaults need no change here.
    fn manifest_on(load_accounts: usize, nodes: usize, rpc_port: u16) -> Manifest {
        let nodes: Vec<serde_json::Value> = (0..nodes)
            .map(|i| {
                serde_json::json!({
                    "name": format!("node{i}"),
                    "home": format!("/nonexistent/node{i}"),
                    "p2p_port": 40_000,
                    "rpc_port": rpc_port,
                    "metrics_port": 40_004,
                    "peer_id": "",
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "chain_id": "weft-test",
            "weft_bin": "weft",
            "load_accounts": load_accounts,
            "gossip": "semantic",
            "degree": 2,
            "timeouts": "fast",
            "nodes": nodes,
        }))
        .unwrap()
    }

    #[test]
    fn specs_are_checked_against_the_testnet() {
        let good = LoadSpec {
            tps: 500,
            duration: Some(Duration::from_secs(5)),
            first_account: 0,
            accounts: 100,
            distribution: Distribution::Uniform,
            kind: Kind::Transfer,
            seed: 1,
        };
        let testnet = manifest(100, 4);
        assert!(good.validate(&testnet).is_ok());
        assert!(
            LoadSpec {
                duration: None,
                ..good.clone()
            }
            .validate(&testnet)
            .is_ok()
        );
        let cases = [
            (
                LoadSpec {
                    tps: 0,
                    ..good.clone()
                },
                "--tps 0: 1 to 1000000",
            ),
            (
                LoadSpec {
                    tps: TPS_MAX + 1,
                    ..good.clone()
                },
                "--tps 1000001",
            ),
            (
                LoadSpec {
                    accounts: 0,
                    ..good.clone()
                },
                "--accounts 0",
            ),
            (
                LoadSpec {
                    accounts: 101,
                    ..good.clone()
                },
                "--accounts 101 from account 0: the testnet funds load accounts 0..100",
            ),
            (
                LoadSpec {
                    first_account: 50,
                    accounts: 51,
                    ..good.clone()
                },
                "--accounts 51 from account 50",
            ),
            (
                LoadSpec {
                    duration: Some(Duration::ZERO),
                    ..good.clone()
                },
                "--duration 0ns",
            ),
            (
                LoadSpec {
                    duration: Some(DURATION_MAX + Duration::from_secs(1)),
                    ..good.clone()
                },
                "at most 86400 s",
            ),
            (
                LoadSpec {
                    tps: 1,
                    duration: Some(Duration::from_millis(500)),
                    ..good.clone()
                },
                "less than one tx",
            ),
            (
                LoadSpec {
                    distribution: Distribution::Hot(200.0),
                    ..good.clone()
                },
                "hot:200",
            ),
            (
                LoadSpec {
                    distribution: Distribution::Zipf(0.0),
                    ..good.clone()
                },
                "zipf:0",
            ),
            (
                LoadSpec {
                    kind: Kind::Work { micros: 20_000 },
                    ..good.clone()
                },
                "work:20000",
            ),
        ];
        for (spec, want) in cases {
            let error = spec.validate(&testnet).unwrap_err().to_string();
            assert!(error.contains(want), "{spec:?}: {error}");
        }
        let error = good.validate(&manifest(100, 0)).unwrap_err().to_string();
        assert!(error.contains("no nodes"), "{error}");
    }

    #[test]
    fn the_schedule_is_tps_times_elapsed_capped_at_the_total() {
        let ms = Duration::from_millis;
        let cases = [
            (500, ms(0), None, 0),
            (500, ms(10), None, 5),
            (500, ms(15), None, 7),
            (500, ms(1_000), Some(2_500), 500),
            (500, ms(6_000), Some(2_500), 2_500),
            (1, ms(999), None, 0),
            (TPS_MAX, Duration::from_secs(86_400), None, 86_400_000_000),
        ];
        for (tps, elapsed, total, want) in cases {
            assert_eq!(
                due_txs(tps, elapsed, total),
                want,
                "{tps} tx/s after {elapsed:?}"
            );
        }
        let spec = LoadSpec {
            tps: 333,
            duration: Some(ms(1_500)),
            first_account: 0,
            accounts: 1,
            distribution: Distribution::Uniform,
            kind: Kind::Transfer,
            seed: 0,
        };
        assert_eq!(spec.total_txs(), Some(499));
    }

    #[test]
    fn live_snapshots_window_the_last_second() {
        let live = Live::default();
        assert_eq!(live.snapshot().p50_ms, None);
        live.record_commits(&[10.0, 30.0, 20.0]);
        live.sent.fetch_add(5, Relaxed);
        let snapshot = live.snapshot();
        assert_eq!((snapshot.sent, snapshot.committed), (5, 3));
        assert_eq!(snapshot.p50_ms, Some(20.0));
        assert_eq!(snapshot.committed_tps, 3.0);
        for (at, _) in live.window.lock().iter_mut() {
            *at -= Duration::from_secs(2);
        }
        let later = live.snapshot();
        assert_eq!(later.committed, 3, "the counters stay");
        assert_eq!(later.committed_tps, 0.0, "the old commits left the window");
    }

    #[tokio::test]
    async fn a_testnet_with_no_live_node_is_an_error_not_a_hang() {
        // A port that nothing listens on: a connection is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap()
            .port();
        let testnet = manifest_on(10, 2, port);
        let spec = LoadSpec {
            tps: 10,
            duration: Some(Duration::from_secs(1)),
            first_account: 0,
            accounts: 10,
            distribution: Distribution::Uniform,
            kind: Kind::Transfer,
            seed: 1,
        };
        let (_stop, stop_rx) = watch::channel(false);
        let error = run(&testnet, &spec, Arc::new(Live::default()), stop_rx, false)
            .await
            .unwrap_err();
        assert!(matches!(error, LoadError::NoNode(_)), "{error}");
    }
}
