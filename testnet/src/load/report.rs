//! What a load run measured: the [`Recorder`] that the sender and the commit tracker feed while
//! it runs, and the [`LoadReport`] it becomes (summary text, CSV, SVG plot).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::Path;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::LoadError;

/// Most seconds a timeline holds (a day and its drain); later seconds are not bucketed.
pub const TIMELINE_SECONDS_MAX: u64 = 86_400 + 3_600;
/// Most latencies kept for the run's percentiles. Beyond this a uniform reservoir sample of
/// this size stands for all of them (the maximum stays exact).
pub const LATENCY_SAMPLES_MAX: usize = 4_000_000;
/// Most `(hash, height)` pairs a report lists; later commits are counted, not listed.
pub const COMMITTED_TXS_MAX: usize = 2_000_000;

/// One second of the run, counted from the first send.
#[derive(Clone, Debug, PartialEq)]
pub struct Second {
    /// Seconds since the first send: this row covers `[t, t + 1)`.
    pub t: u64,
    /// Txs first sent in this second.
    pub sent: u64,
    /// Our txs whose block the tracker saw in this second.
    pub committed: u64,
    /// Latency of the txs committed in this second; NaN when none committed.
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The outcome of [`super::run`].
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Txs sent once each on schedule (retries and rebroadcasts not counted again).
    pub sent: u64,
    /// Txs a node answered with code 0 (on the first send or its retry on another node).
    pub admitted: u64,
    /// Our txs seen in a committed block, whatever their result code.
    pub committed: u64,
    /// Committed with a non-zero result code (e.g. a name that was already registered).
    pub failed_in_block: u64,
    /// Txs a node refused at admission, by `broadcast_tx_sync` code (the mempool's codes:
    /// 5 nonce too low, 6 nonce gap, 7 mempool full, 8 already known, …).
    pub rejected: BTreeMap<u32, u64>,
    /// Failed send attempts, counted per tx and attempt: no answer within the send timeout,
    /// connection refused, or an entry the node answered with a JSON-RPC error.
    pub send_failures: u64,
    /// Txs not sent when due, so not in `sent`: every node had its limit of batches in flight,
    /// or the global limit was reached, or the table of txs awaiting commit was full. Unless
    /// the table was full they go out later as rebroadcasts (so their accounts' later nonces
    /// are not stuck), and one that commits counts in `committed`, timed from when it was due.
    pub dropped: u64,
    /// Txs sent again because they had not committed within the rebroadcast delay (dropped
    /// txs included).
    pub rebroadcasts: u64,
    /// Txs admitted (or known to a node) that the tracker never saw commit.
    pub uncommitted: u64,
    /// Heights the tracker could not read on any node; commits in them were missed.
    pub missed_heights: u64,
    /// `sent` over the seconds from the first send to the last.
    pub offered_tps: f64,
    /// `committed` over the seconds from the first send to the last commit seen (or, when
    /// nothing committed, to the end of the send phase).
    pub committed_tps: f64,
    /// Latency percentiles (nearest rank) over committed txs: the moment the tracker received
    /// the block minus the moment the tx was first handed to the RPC client. NaN when nothing
    /// committed.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Seconds from the first send to the end of commit tracking.
    pub elapsed_s: f64,
    /// Seconds spent signing before the clock started (0 when signing ran alongside).
    pub sign_s: f64,
    /// Blake3 rounds per work tx, for `work:US` loads.
    pub work_rounds: Option<u32>,
    pub timeline: Vec<Second>,
    /// Each committed tx's hash (hex) and height, at most [`COMMITTED_TXS_MAX`], in commit order.
    pub committed_txs: Vec<(String, u64)>,
}

/// The value at quantile `q` (0 to 1) of an ascending slice, by nearest rank: the smallest
/// value with at least `q · n` values at or below it. NaN for an empty slice.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Per-second counts and latency percentiles, fed as the run goes.
///
/// Commits mostly arrive in time order, but blocks read back after a tracker switch are
/// timed in the past. So the latencies of the last [`LATE_SECONDS_MAX`] seconds stay open, and
/// a second's percentiles are taken once a commit that much later arrives (or at the end). A
/// commit older than that is counted in its second but left out of that second's percentiles
/// (it still counts in the run's).
#[derive(Debug, Default)]
pub struct Timeline {
    sent: Vec<u64>,
    committed: Vec<u64>,
    /// (p50, p99) per closed second.
    latency: BTreeMap<u64, (f64, f64)>,
    open: BTreeMap<u64, Vec<f64>>,
    /// Seconds below this are closed.
    closed_below: u64,
}

/// Seconds a timeline keeps open for late commits.
pub const LATE_SECONDS_MAX: u64 = 30;

impl Timeline {
    pub fn sent(&mut self, t_s: u64, count: u64) {
        if let Some(slot) = slot(&mut self.sent, t_s) {
            *slot += count;
        }
    }

    pub fn committed(&mut self, t_s: u64, latency_ms: f64) {
        let Some(slot) = slot(&mut self.committed, t_s) else {
            return;
        };
        *slot += 1;
        if t_s >= self.closed_below {
            self.open.entry(t_s).or_default().push(latency_ms);
        }
        self.close_below(t_s.saturating_sub(LATE_SECONDS_MAX));
    }

    fn close_below(&mut self, t_s: u64) {
        self.closed_below = self.closed_below.max(t_s);
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() >= self.closed_below {
                break;
            }
            let (t, mut latencies) = entry.remove_entry();
            latencies.sort_by(f64::total_cmp);
            let pair = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
            self.latency.insert(t, pair);
        }
    }

    /// One row per second from 0 to the last second with a send or a commit.
    pub fn finish(mut self) -> Vec<Second> {
        self.close_below(u64::MAX);
        let seconds = self.sent.len().max(self.committed.len());
        (0..seconds)
            .map(|i| {
                let t = i as u64;
                let (p50_ms, p99_ms) = self
                    .latency
                    .get(&t)
                    .copied()
                    .unwrap_or((f64::NAN, f64::NAN));
                Second {
                    t,
                    sent: self.sent.get(i).copied().unwrap_or(0),
                    committed: self.committed.get(i).copied().unwrap_or(0),
                    p50_ms,
                    p99_ms,
                }
            })
            .collect()
    }
}

/// The counter for second `t`, growing the vector up to [`TIMELINE_SECONDS_MAX`].
fn slot(seconds: &mut Vec<u64>, t: u64) -> Option<&mut u64> {
    if t >= TIMELINE_SECONDS_MAX {
        return None;
    }
    let index = t as usize;
    if seconds.len() <= index {
        seconds.resize(index + 1, 0);
    }
    seconds.get_mut(index)
}

/// Every latency up to [`LATENCY_SAMPLES_MAX`], then a uniform reservoir sample (Algorithm R,
/// seeded) of that size; the maximum is exact.
#[derive(Debug)]
pub struct Latencies {
    samples: Vec<f64>,
    seen: u64,
    max_ms: f64,
    cap: usize,
    rng: ChaCha8Rng,
}

impl Latencies {
    pub fn new(cap: usize, seed: u64) -> Latencies {
        assert!(cap > 0, "a reservoir holds at least one sample");
        Latencies {
            samples: Vec::new(),
            seen: 0,
            max_ms: f64::NAN,
            cap,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    pub fn push(&mut self, latency_ms: f64) {
        self.seen += 1;
        self.max_ms = if self.max_ms.is_nan() {
            latency_ms
        } else {
            self.max_ms.max(latency_ms)
        };
        if self.samples.len() < self.cap {
            self.samples.push(latency_ms);
            return;
        }
        let index = self.rng.random_range(0..self.seen);
        if let Some(slot) = self.samples.get_mut(index as usize) {
            *slot = latency_ms;
        }
    }

    /// (p50, p90, p99, max), NaN when empty.
    pub fn summary(mut self) -> (f64, f64, f64, f64) {
        self.samples.sort_by(f64::total_cmp);
        let s = &self.samples;
        (
            percentile(s, 0.5),
            percentile(s, 0.9),
            percentile(s, 0.99),
            self.max_ms,
        )
    }
}

/// The part of the report the tracker fills: commits, their latencies and heights.
#[derive(Debug)]
pub struct Recorder {
    pub timeline: Timeline,
    pub latencies: Latencies,
    pub committed: u64,
    pub failed_in_block: u64,
    pub committed_txs: Vec<(String, u64)>,
    /// Microseconds since the run's start of the last commit seen.
    pub last_commit_us: Option<u64>,
}

impl Recorder {
    pub fn new(seed: u64) -> Recorder {
        Recorder {
            timeline: Timeline::default(),
            latencies: Latencies::new(LATENCY_SAMPLES_MAX, seed),
            committed: 0,
            failed_in_block: 0,
            committed_txs: Vec::new(),
            last_commit_us: None,
        }
    }

    /// One of our txs committed at `now_us` (since the start), first sent at `sent_us`.
    pub fn commit(
        &mut self,
        hash: &[u8; 32],
        height: u64,
        code: u32,
        sent_us: u64,
        now_us: u64,
    ) -> f64 {
        let latency_ms = now_us.saturating_sub(sent_us) as f64 / 1_000.0;
        self.committed += 1;
        if code != 0 {
            self.failed_in_block += 1;
        }
        self.timeline.committed(now_us / 1_000_000, latency_ms);
        self.latencies.push(latency_ms);
        if self.committed_txs.len() < COMMITTED_TXS_MAX {
            self.committed_txs.push((hex::encode(hash), height));
        }
        self.last_commit_us = Some(self.last_commit_us.map_or(now_us, |t| t.max(now_us)));
        latency_ms
    }
}

fn ms(value: f64) -> String {
    if value.is_nan() {
        "-".into()
    } else {
        format!("{value:.0}")
    }
}

impl LoadReport {
    /// A few lines for people: counts, rates, latencies.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "sent {} txs in {:.1} s: {:.0} tx/s offered{}",
            self.sent,
            if self.offered_tps > 0.0 {
                self.sent as f64 / self.offered_tps
            } else {
                0.0
            },
            self.offered_tps,
            if self.sign_s > 0.0 {
                format!(" (signed beforehand in {:.2} s)", self.sign_s)
            } else {
                String::new()
            }
        );
        let rejected: u64 = self.rejected.values().sum();
        let by_code: Vec<String> = self
            .rejected
            .iter()
            .map(|(code, count)| format!("{count} × code {code} ({})", code_name(*code)))
            .collect();
        let _ = writeln!(
            out,
            "admitted {}; rejected {}{}",
            self.admitted,
            rejected,
            if by_code.is_empty() {
                String::new()
            } else {
                format!(": {}", by_code.join(", "))
            }
        );
        let _ = writeln!(
            out,
            "send failures {}; dropped {}; rebroadcast {}",
            self.send_failures, self.dropped, self.rebroadcasts
        );
        let _ = writeln!(
            out,
            "committed {} ({} failed in block, {} admitted but not seen committed{}): {:.0} tx/s",
            self.committed,
            self.failed_in_block,
            self.uncommitted,
            if self.missed_heights > 0 {
                format!(", {} heights unreadable", self.missed_heights)
            } else {
                String::new()
            },
            self.committed_tps
        );
        let _ = write!(
            out,
            "latency ms: p50 {}  p90 {}  p99 {}  max {}",
            ms(self.p50_ms),
            ms(self.p90_ms),
            ms(self.p99_ms),
            ms(self.max_ms)
        );
        if let Some(rounds) = self.work_rounds {
            let _ = write!(out, "\nwork txs: {rounds} blake3 rounds each");
        }
        out
    }

    /// `t_s,sent,committed,p50_ms,p99_ms`, one row per second; an empty field where no tx
    /// committed that second.
    pub fn write_csv(&self, path: &Path) -> io::Result<()> {
        let mut file = io::BufWriter::new(std::fs::File::create(path)?);
        file.write_all(csv(&self.timeline).as_bytes())?;
        file.flush()
    }

    /// An SVG of two panels over the run's seconds: sent and committed tx/s above, p50 and
    /// p99 latency below.
    pub fn write_plot(&self, path: &Path) -> Result<(), LoadError> {
        super::plot::write_svg(&self.timeline, path)
    }
}

/// The CSV text of a timeline.
pub fn csv(timeline: &[Second]) -> String {
    let field = |v: f64| {
        if v.is_nan() {
            String::new()
        } else {
            format!("{v:.1}")
        }
    };
    let mut out = String::from("t_s,sent,committed,p50_ms,p99_ms\n");
    for s in timeline {
        let _ = writeln!(
            out,
            "{},{},{},{},{}",
            s.t,
            s.sent,
            s.committed,
            field(s.p50_ms),
            field(s.p99_ms)
        );
    }
    out
}

/// The mempool's name for a `broadcast_tx_*` code (see `weft_node::mempool`).
pub fn code_name(code: u32) -> &'static str {
    match code {
        1 => "malformed",
        2 => "too large",
        3 => "bad signature",
        4 => "wrong chain",
        5 => "nonce too low",
        6 => "nonce gap",
        7 => "mempool full",
        8 => "already known",
        9 => "nonce taken",
        10 => "state unavailable",
        11 => "not the validator authority",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        let cases: [(&[f64], f64, f64); 10] = [
            (&ten, 0.5, 5.0),
            (&ten, 0.9, 9.0),
            (&ten, 0.99, 10.0),
            (&ten, 1.0, 10.0),
            (&ten, 0.0, 1.0),
            (&hundred, 0.5, 50.0),
            (&hundred, 0.99, 99.0),
            (&hundred, 0.991, 100.0),
            (&[7.0], 0.5, 7.0),
            (&[1.0, 2.0], 0.5, 1.0),
        ];
        for (sorted, q, want) in cases {
            assert_eq!(
                percentile(sorted, q),
                want,
                "q {q} of {} values",
                sorted.len()
            );
        }
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn the_reservoir_is_exact_below_its_cap_and_keeps_the_max_above_it() {
        let mut exact = Latencies::new(100, 1);
        for v in (1..=100).rev() {
            exact.push(f64::from(v));
        }
        assert_eq!(exact.summary(), (50.0, 90.0, 99.0, 100.0));
        let mut sampled = Latencies::new(1_000, 1);
        for v in 0..100_000 {
            sampled.push(f64::from(v % 1_000));
        }
        sampled.push(5_000.0);
        let (p50, _, _, max) = sampled.summary();
        assert_eq!(max, 5_000.0);
        assert!(
            (400.0..600.0).contains(&p50),
            "p50 {p50} of a uniform 0..1000"
        );
        let empty = Latencies::new(10, 1).summary();
        assert!(empty.0.is_nan() && empty.3.is_nan());
    }

    #[test]
    fn timeline_buckets_by_second_with_per_second_percentiles() {
        let mut timeline = Timeline::default();
        timeline.sent(0, 100);
        timeline.sent(0, 50);
        timeline.sent(2, 10);
        for latency in [10.0, 20.0, 30.0] {
            timeline.committed(1, latency);
        }
        timeline.committed(3, 400.0);
        // Late (a block read back): still within the open window, so second 1's.
        timeline.committed(1, 1_000.0);
        // Far later: closes seconds 1 and 3; a commit in second 1 now counts, unmeasured.
        timeline.committed(3 + LATE_SECONDS_MAX + 1, 5.0);
        timeline.committed(1, 2_000.0);
        timeline.sent(TIMELINE_SECONDS_MAX, 5);
        let rows = timeline.finish();
        assert_eq!(rows.len() as u64, 3 + LATE_SECONDS_MAX + 2);
        let counts: Vec<(u64, u64, u64)> = rows[..4]
            .iter()
            .map(|s| (s.t, s.sent, s.committed))
            .collect();
        assert_eq!(counts, [(0, 150, 0), (1, 0, 5), (2, 10, 0), (3, 0, 1)]);
        assert!(rows[0].p50_ms.is_nan() && rows[2].p99_ms.is_nan());
        assert_eq!((rows[1].p50_ms, rows[1].p99_ms), (20.0, 1_000.0));
        assert_eq!((rows[3].p50_ms, rows[3].p99_ms), (400.0, 400.0));
        assert_eq!(rows.last().unwrap().p50_ms, 5.0);
        assert!(Timeline::default().finish().is_empty());
    }

    #[test]
    fn the_recorder_counts_failures_and_lists_commits() {
        let mut recorder = Recorder::new(1);
        assert_eq!(recorder.commit(&[1; 32], 5, 0, 1_000, 251_000), 250.0);
        recorder.commit(&[2; 32], 6, 4, 2_000_000, 2_500_000);
        assert_eq!((recorder.committed, recorder.failed_in_block), (2, 1));
        assert_eq!(recorder.committed_txs[0], ("01".repeat(32), 5));
        assert_eq!(recorder.last_commit_us, Some(2_500_000));
        let rows = recorder.timeline.finish();
        assert_eq!(
            rows.iter().map(|s| s.committed).collect::<Vec<_>>(),
            [1, 0, 1]
        );
    }

    fn sample_report() -> LoadReport {
        LoadReport {
            sent: 3,
            admitted: 2,
            committed: 2,
            rejected: BTreeMap::from([(6, 1)]),
            offered_tps: 3.0,
            committed_tps: 2.0,
            p50_ms: 120.0,
            p90_ms: 130.0,
            p99_ms: 130.0,
            max_ms: 130.0,
            timeline: vec![
                Second {
                    t: 0,
                    sent: 3,
                    committed: 0,
                    p50_ms: f64::NAN,
                    p99_ms: f64::NAN,
                },
                Second {
                    t: 1,
                    sent: 0,
                    committed: 2,
                    p50_ms: 120.0,
                    p99_ms: 130.25,
                },
            ],
            ..LoadReport::default()
        }
    }

    #[test]
    fn csv_has_a_header_and_one_row_per_second() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("load.csv");
        sample_report().write_csv(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "t_s,sent,committed,p50_ms,p99_ms\n0,3,0,,\n1,0,2,120.0,130.2\n"
        );
    }

    #[test]
    fn the_plot_is_an_svg_even_for_an_empty_run() {
        let dir = tempfile::tempdir().unwrap();
        for (name, report) in [
            ("full.svg", sample_report()),
            ("empty.svg", LoadReport::default()),
        ] {
            let path = dir.path().join(name);
            report.write_plot(&path).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains("<svg"), "{name}");
            assert!(
                text.contains("committed") && text.contains("p99"),
                "{name}: legend"
            );
        }
    }

    #[test]
    fn the_summary_names_rejections_and_latencies() {
        let text = sample_report().summary();
        for want in [
            "sent 3 txs",
            "rejected 1: 1 × code 6 (nonce gap)",
            "committed 2",
            "2 tx/s",
            "p50 120",
            "max 130",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        let nothing_committed = LoadReport {
            p50_ms: f64::NAN,
            max_ms: f64::NAN,
            ..LoadReport::default()
        };
        let text = nothing_committed.summary();
        assert!(text.contains("p50 -") && text.contains("max -"), "{text}");
    }
}
