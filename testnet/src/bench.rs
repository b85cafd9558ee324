//! `weft-testnet bench`: a fresh testnet, measured empty, then loaded at rising rates until it
//! saturates; then torn down, and the executor's parallel speedup measured on the idle machine.
//!
//! - `empty_heights_per_s`: node 0's height growth over [`EMPTY_PHASE`] with no load.
//! - `gossip_msgs_per_node_per_height`: consensus-plane messages received
//!   (`weft_p2p_messages_total{direction="received"}`, summed over the nodes) per node per height,
//!   over the same empty phase (tx batches are gossipsub's, not counted there).
//! - The saturation point is the highest offered rate at which at least
//!   [`COMMITTED_SHARE_MIN`] of the txs sent commit and p99 latency stays under the bound.
//!   Rates rise by `rate_step` from `start_tps`; the first rate that fails ends the climb.
//! - `exec_speedup`: serial over parallel execution time (median of 5) of a 10,000-tx block of
//!   work txs (about 10 µs each) on all this machine's cores, measured after the nodes stopped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;
use weft_execution::workload::{Workload, work_rounds};
use weft_execution::{
    Executor, ExecutorConfig, ParallelExecutor, SerialExecutor, propose, verify_block,
};

use crate::client::{NodeClient, fetch_metrics, metric_sum};
use crate::links;
use crate::load::{self, Distribution, Kind, Live, LoadReport, LoadSpec};
use crate::manifest::{self, Layout};
use crate::process::{Launcher, Processes, wait_healthy};
use crate::shaper::LinkShape;
use crate::up::default_threads;

/// Per-tx work of the executor-speedup block, µs.
pub const EXEC_WORK_US: u32 = 10;

/// Length of the no-load measurement.
pub const EMPTY_PHASE: Duration = Duration::from_secs(5);
/// Share of sent txs that must commit at a sustainable rate.
pub const COMMITTED_SHARE_MIN: f64 = 0.95;

pub struct BenchArgs {
    pub validators: usize,
    pub json: bool,
    pub step: Duration,
    pub start_tps: u64,
    pub rate_step: u64,
    pub max_tps: u64,
    pub p99_bound_ms: u64,
    pub weft_bin: Option<PathBuf>,
    pub base_port: u16,
    pub home: Option<PathBuf>,
    /// WAN conditions on every link (the link shaper); `None` for loopback.
    pub shape: Option<LinkShape>,
    /// With a shape: measure a loopback testnet first, in the same run, for comparison.
    pub compare_loopback: bool,
    /// A fixed rate measured before the climb (its latency at a load every run can carry);
    /// 0 skips it.
    pub probe_tps: u64,
}

/// One rate's outcome.
#[derive(Clone, Debug)]
pub struct Step {
    pub offered_tps: u64,
    pub report: LoadReport,
    pub sustained: bool,
}

/// What one testnet measured.
struct Measured {
    shape: Option<LinkShape>,
    empty_heights_per_s: f64,
    msgs: f64,
    probe: Option<Step>,
    steps: Vec<Step>,
}

impl Measured {
    fn label(&self) -> String {
        self.shape
            .map_or_else(|| "loopback".to_owned(), |shape| shape.to_string())
    }

    fn best(&self) -> Option<&Step> {
        self.steps
            .iter()
            .filter(|s| s.sustained)
            .max_by_key(|s| s.offered_tps)
    }

    fn json(&self) -> serde_json::Value {
        let best = self.best();
        let shape = self.shape.unwrap_or_default();
        json!({
            "latency_ms": shape.delay.as_secs_f64() * 1e3,
            "jitter_ms": shape.jitter.as_secs_f64() * 1e3,
            "bandwidth_bytes_per_s": shape.bandwidth_bytes_per_s,
            "saturation_offered_tps": best.map(|s| s.offered_tps),
            "committed_tps": best.map(|s| s.report.committed_tps),
            "p50_ms": best.map(|s| s.report.p50_ms),
            "p99_ms": best.map(|s| s.report.p99_ms),
            "empty_heights_per_s": self.empty_heights_per_s,
            "gossip_msgs_per_node_per_height": self.msgs,
            "probe_tps": self.probe.as_ref().map(|p| p.offered_tps),
            "probe_committed_tps": self.probe.as_ref().map(|p| p.report.committed_tps),
            "probe_p50_ms": self.probe.as_ref().map(|p| p.report.p50_ms),
            "probe_p99_ms": self.probe.as_ref().map(|p| p.report.p99_ms),
        })
    }
}

pub async fn run_bench(args: BenchArgs) -> Result<(), String> {
    if args.start_tps == 0 || args.rate_step == 0 || args.max_tps < args.start_tps {
        return Err("rates: need 0 < --start-tps <= --max-tps and --rate-step > 0".into());
    }
    let shapes = match args.shape {
        Some(shape) if args.compare_loopback => vec![None, Some(shape)],
        shape => vec![shape],
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut runs = Vec::new();
    for (i, shape) in shapes.into_iter().enumerate() {
        let home = match (&args.home, i) {
            (Some(home), 0) => Some(home.clone()),
            (Some(home), i) => Some(home.with_extension(i.to_string())),
            (None, _) => None,
        };
        runs.push(measure(&args, shape, home, cores).await?);
    }
    eprintln!("nodes stopped; measuring the executor's speedup on {cores} cores");
    let exec_speedup = tokio::task::spawn_blocking(move || exec_speedup(cores))
        .await
        .map_err(|e| format!("executor measurement: {e}"))??;
    for run in &runs {
        print_run(run, &args);
    }
    println!("exec speedup {exec_speedup:.2}x on {cores} cores");
    let last = runs.last().expect("at least one run");
    let mut result = last.json();
    result["validators"] = json!(args.validators);
    result["cores"] = json!(cores);
    result["exec_speedup"] = json!(exec_speedup);
    if runs.len() > 1 {
        result["loopback"] = runs[0].json();
    }
    if args.json {
        println!("{result}");
    }
    Ok(())
}

/// A fresh testnet (its links shaped when asked): empty phase, the probe, the climb.
async fn measure(
    args: &BenchArgs,
    shape: Option<LinkShape>,
    home: Option<PathBuf>,
    cores: usize,
) -> Result<Measured, String> {
    let temp = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let home = home.unwrap_or_else(|| temp.path().join("testnet"));
    let launcher = Launcher::resolve(args.weft_bin.as_deref())?;
    let accounts = 4_000;
    let manifest = manifest::create(
        &home,
        &Layout {
            validators: args.validators,
            chain_id: "weft-bench".into(),
            load_accounts: accounts,
            gossip: "semantic".into(),
            degree: 3,
            timeouts: "fast".into(),
            base_port: args.base_port,
            weft_bin: launcher.program.clone(),
            weft_prefix: launcher.prefix.clone(),
            threads: default_threads(args.validators),
        },
    )
    .map_err(|e| e.to_string())?;
    let shaped = match shape {
        Some(shape) => Some(links::start(&manifest, &home, shape)?),
        None => None,
    };
    eprintln!(
        "bench: {} validators on {cores} cores, links {}, testnet at {}",
        args.validators,
        shape.map_or_else(|| "loopback".to_owned(), |s| s.to_string()),
        home.display()
    );
    let mut processes = Processes::new(manifest.clone(), launcher);
    processes.tie_to_parent();
    let measured = async {
        processes.start_all().map_err(|e| e.to_string())?;
        let all: Vec<usize> = (0..manifest.nodes.len()).collect();
        wait_healthy(&manifest, &all, 3, Duration::from_secs(90))
            .await
            .map_err(|e| e.to_string())?;
        let (empty_heights_per_s, msgs) = empty_phase(&manifest).await?;
        eprintln!(
            "empty: {empty_heights_per_s:.1} heights/s, {msgs:.1} consensus msgs received per node per height"
        );
        let probe = match args.probe_tps {
            0 => None,
            tps => Some(load_step(&manifest, args, accounts, tps, u64::MAX).await?),
        };
        let steps = climb(&manifest, args, accounts).await?;
        Ok::<_, String>(Measured {
            shape,
            empty_heights_per_s,
            msgs,
            probe,
            steps,
        })
    }
    .await;
    let stopped = tokio::task::block_in_place(|| processes.stop_all()).map_err(|e| e.to_string());
    if let Some(shaped) = shaped {
        shaped.close().await;
    }
    stopped?;
    drop(temp);
    measured
}

fn print_run(run: &Measured, args: &BenchArgs) {
    println!("links: {}", run.label());
    println!(
        "{:>8} {:>8} {:>9} {:>8} {:>10} {:>8} {:>8} {:>9}",
        "offered", "sent", "committed", "share", "commit/s", "p50 ms", "p99 ms", "sustained"
    );
    for step in run.probe.iter().chain(&run.steps) {
        let r = &step.report;
        println!(
            "{:>8} {:>8} {:>9} {:>7.1}% {:>10.0} {:>8.0} {:>8.0} {:>9}",
            step.offered_tps,
            r.sent,
            r.committed,
            share(r) * 100.0,
            r.committed_tps,
            r.p50_ms,
            r.p99_ms,
            if step.sustained { "yes" } else { "no" }
        );
    }
    match run.best() {
        Some(step) => println!(
            "saturation: {} tx/s offered, {:.0} committed tx/s, p50 {:.0} ms, p99 {:.0} ms",
            step.offered_tps, step.report.committed_tps, step.report.p50_ms, step.report.p99_ms
        ),
        None => println!(
            "no rate from {} tx/s up was sustained (≥ {:.0}% committed, p99 < {} ms)",
            args.start_tps,
            COMMITTED_SHARE_MIN * 100.0,
            args.p99_bound_ms
        ),
    }
    println!(
        "empty heights/s {:.1}; gossip msgs/node/height {:.1}",
        run.empty_heights_per_s, run.msgs
    );
}

fn share(report: &LoadReport) -> f64 {
    if report.sent == 0 {
        0.0
    } else {
        report.committed as f64 / report.sent as f64
    }
}

/// Heights per second and consensus messages received per node per height, with no load.
async fn empty_phase(manifest: &manifest::Manifest) -> Result<(f64, f64), String> {
    let node0 = NodeClient::new(&manifest.nodes[0], Duration::from_secs(2));
    let received = || async {
        let mut total = 0.0;
        for node in &manifest.nodes {
            let body = fetch_metrics(node, Duration::from_secs(2))
                .await
                .map_err(|e| e.to_string())?;
            total += metric_sum(
                &body,
                "weft_p2p_messages_total",
                Some("direction=\"received\""),
            );
        }
        Ok::<f64, String>(total)
    };
    let (h0, m0, t0) = (
        node0.height().await.map_err(|e| e.to_string())?,
        received().await?,
        Instant::now(),
    );
    tokio::time::sleep(EMPTY_PHASE).await;
    let (h1, m1) = (
        node0.height().await.map_err(|e| e.to_string())?,
        received().await?,
    );
    let heights = h1.saturating_sub(h0);
    if heights == 0 {
        return Err(format!(
            "no block committed in {EMPTY_PHASE:?} without load"
        ));
    }
    let per_s = heights as f64 / t0.elapsed().as_secs_f64();
    let msgs = (m1 - m0) / manifest.nodes.len() as f64 / heights as f64;
    Ok((per_s, msgs))
}

/// Loads at rising rates until one is not sustained.
async fn climb(
    manifest: &manifest::Manifest,
    args: &BenchArgs,
    accounts: usize,
) -> Result<Vec<Step>, String> {
    let node0 = NodeClient::new(&manifest.nodes[0], Duration::from_secs(2));
    let mut steps = Vec::new();
    let mut rate = args.start_tps;
    let mut seed = 1;
    while rate <= args.max_tps {
        let step = load_step(manifest, args, accounts, rate, seed).await?;
        seed += 1;
        let sustained = step.sustained;
        steps.push(step);
        if !sustained {
            break;
        }
        // The next rate starts from an empty mempool.
        let deadline = Instant::now() + Duration::from_secs(30);
        while node0.mempool_size().await.unwrap_or(0) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        rate += args.rate_step;
    }
    Ok(steps)
}

/// `rate` tx/s for one step, judged against the saturation criteria.
async fn load_step(
    manifest: &manifest::Manifest,
    args: &BenchArgs,
    accounts: usize,
    rate: u64,
    seed: u64,
) -> Result<Step, String> {
    let spec = LoadSpec {
        tps: rate,
        duration: Some(args.step),
        first_account: 0,
        accounts,
        distribution: Distribution::Uniform,
        kind: Kind::Transfer,
        seed,
    };
    let (_stop, stop_rx) = watch::channel(false);
    eprintln!("offering {rate} tx/s for {:?}", args.step);
    let report = load::run(manifest, &spec, Arc::new(Live::default()), stop_rx, false)
        .await
        .map_err(|e| e.to_string())?;
    let sustained =
        share(&report) >= COMMITTED_SHARE_MIN && report.p99_ms < args.p99_bound_ms as f64;
    eprintln!(
        "  committed {} of {} ({:.0} tx/s), p50 {:.0} ms, p99 {:.0} ms: {}",
        report.committed,
        report.sent,
        report.committed_tps,
        report.p50_ms,
        report.p99_ms,
        if sustained {
            "sustained"
        } else {
            "not sustained"
        }
    );
    Ok(Step {
        offered_tps: rate,
        report,
        sustained,
    })
}

/// Serial over parallel execution time (median of 5) of a 10,000-tx block of work txs, each
/// about [`EXEC_WORK_US`] µs over 2 slots drawn uniformly from a million: contract-like txs
/// that rarely conflict. (Plain transfers cost under 1 µs each; the executor runs such blocks
/// serially, as scheduling them would cost more than it saves, so their speedup is 1.)
pub fn exec_speedup(threads: usize) -> Result<f64, String> {
    const TXS: usize = 10_000;
    const RUNS: usize = 5;
    let rounds = work_rounds(EXEC_WORK_US);
    let workload = Workload::Work {
        accounts: 100_000,
        rounds: rounds.max(1),
        slots_per_tx: 2,
        slot_space: 1_000_000,
    };
    let block = workload.generate(TXS, 7);
    let proposal = propose(&block.genesis, &block.txs).map_err(|e| e.to_string())?;
    let verified = verify_block(&block.txs, &proposal.access, &proposal.dag)
        .map_err(|e| format!("the generated block's DAG: {e}"))?;
    let parallel = ParallelExecutor::new(ExecutorConfig {
        threads,
        ..ExecutorConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let (mut serial_times, mut parallel_times) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let start = Instant::now();
        let serial_outcome = SerialExecutor
            .execute(&block.genesis, &verified)
            .map_err(|e| e.to_string())?;
        serial_times.push(start.elapsed());
        let start = Instant::now();
        let parallel_outcome = parallel
            .execute(&block.genesis, &verified)
            .map_err(|e| e.to_string())?;
        parallel_times.push(start.elapsed());
        if serial_outcome.state_root != parallel_outcome.state_root {
            return Err("serial and parallel execution disagree on the state root".into());
        }
    }
    serial_times.sort_unstable();
    parallel_times.sort_unstable();
    Ok(serial_times[RUNS / 2].as_secs_f64() / parallel_times[RUNS / 2].as_secs_f64())
}
