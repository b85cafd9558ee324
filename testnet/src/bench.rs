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
use crate::load::{self, Distribution, Kind, Live, LoadReport, LoadSpec};
use crate::manifest::{self, Layout};
use crate::process::{Launcher, Processes, wait_healthy};
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
}

/// One rate's outcome.
#[derive(Clone, Debug)]
pub struct Step {
    pub offered_tps: u64,
    pub report: LoadReport,
    pub sustained: bool,
}

pub async fn run_bench(args: BenchArgs) -> Result<(), String> {
    if args.start_tps == 0 || args.rate_step == 0 || args.max_tps < args.start_tps {
        return Err("rates: need 0 < --start-tps <= --max-tps and --rate-step > 0".into());
    }
    let temp = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let home = args
        .home
        .clone()
        .unwrap_or_else(|| temp.path().join("testnet"));
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
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    eprintln!(
        "bench: {} validators on {cores} cores, testnet at {}",
        args.validators,
        home.display()
    );
    let mut processes = Processes::new(manifest.clone(), launcher);
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
        let steps = climb(&manifest, &args, accounts).await?;
        Ok::<_, String>((empty_heights_per_s, msgs, steps))
    }
    .await;
    tokio::task::block_in_place(|| processes.stop_all()).map_err(|e| e.to_string())?;
    let (empty_heights_per_s, msgs, steps) = measured?;
    eprintln!("nodes stopped; measuring the executor's speedup on {cores} cores");
    let exec_speedup = tokio::task::spawn_blocking(move || exec_speedup(cores))
        .await
        .map_err(|e| format!("executor measurement: {e}"))??;

    println!(
        "{:>8} {:>8} {:>9} {:>8} {:>10} {:>8} {:>8} {:>9}",
        "offered", "sent", "committed", "share", "commit/s", "p50 ms", "p99 ms", "sustained"
    );
    for step in &steps {
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
    let best = steps
        .iter()
        .filter(|s| s.sustained)
        .max_by_key(|s| s.offered_tps);
    match best {
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
        "empty heights/s {empty_heights_per_s:.1}; gossip msgs/node/height {msgs:.1}; exec speedup {exec_speedup:.2}x on {cores} cores"
    );
    let result = json!({
        "validators": args.validators,
        "cores": cores,
        "saturation_offered_tps": best.map(|s| s.offered_tps),
        "committed_tps": best.map(|s| s.report.committed_tps),
        "p50_ms": best.map(|s| s.report.p50_ms),
        "p99_ms": best.map(|s| s.report.p99_ms),
        "empty_heights_per_s": empty_heights_per_s,
        "gossip_msgs_per_node_per_height": msgs,
        "exec_speedup": exec_speedup,
    });
    if args.json {
        println!("{result}");
    }
    drop(temp);
    Ok(())
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
        let spec = LoadSpec {
            tps: rate,
            duration: Some(args.step),
            first_account: 0,
            accounts,
            distribution: Distribution::Uniform,
            kind: Kind::Transfer,
            seed,
        };
        seed += 1;
        let (_stop, stop_rx) = watch::channel(false);
        eprintln!("offering {rate} tx/s for {:?}", args.step);
        let report = load::run(manifest, &spec, Arc::new(Live::default()), stop_rx, false)
            .await
            .map_err(|e| e.to_string())?;
        let sustained =
            share(&report) >= COMMITTED_SHARE_MIN && report.p99_ms < args.p99_bound_ms as f64;
        eprintln!(
            "  committed {} of {} ({:.0} tx/s), p99 {:.0} ms: {}",
            report.committed,
            report.sent,
            report.committed_tps,
            report.p99_ms,
            if sustained {
                "sustained"
            } else {
                "not sustained"
            }
        );
        steps.push(Step {
            offered_tps: rate,
            report,
            sustained,
        });
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
