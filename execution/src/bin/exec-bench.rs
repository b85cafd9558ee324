//! exec-bench: serial vs parallel execution, DAG verification and signature throughput.
//!
//! For each workload it generates a seeded 10k-tx block, lets the proposer path build its access
//! sets and DAG, and times DAG derive+verify (decode the shipped DAG, re-derive it from the access
//! sets, compare). Then it times the serial reference executor against the parallel executor,
//! back to back, for each (workload, thread count) pair, going round-robin over the pairs run
//! after run so that a stretch of machine noise does not sink one row.
//!
//! Both executors start from the same verified block and produce the state root, so the figures
//! include the commitment update. Medians are reported. With `--json` the last line is one JSON
//! object: `{"rows":[...]}`.

use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;
use weft_execution::workload::{GeneratedBlock, Workload, work_round_ns, work_rounds};
use weft_execution::{
    ConflictDag, Executor, ExecutorConfig, ParallelExecutor, Proposal, SerialExecutor, propose,
    verify_block, verify_signatures,
};

#[derive(Parser)]
#[command(about = "Benchmark Weft's serial and parallel executors")]
struct Args {
    /// Print the machine-readable JSON line last.
    #[arg(long)]
    json: bool,
    /// Transactions per block.
    #[arg(long, default_value_t = 10_000)]
    txs: usize,
    /// Timed runs per measurement; medians are reported.
    #[arg(long, default_value_t = 9)]
    runs: usize,
    /// Parallel thread counts, comma-separated (default: this machine's cores).
    #[arg(long, value_delimiter = ',')]
    threads: Vec<usize>,
    /// Only these workloads, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Seed for block generation.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[derive(Serialize)]
struct ExecRow {
    workload: String,
    txs: usize,
    threads: usize,
    serial_tps: u64,
    parallel_tps: u64,
    speedup: f64,
    dag_edges: u32,
    critical_path: u32,
    dag_derive_verify_ms: f64,
    serial_ms: f64,
    parallel_ms: f64,
    parallelism: f64,
    ran_parallel: bool,
    dag_bytes: usize,
    access_bytes: usize,
}

#[derive(Serialize)]
struct SignatureRow {
    workload: &'static str,
    txs: usize,
    threads: usize,
    sig_per_s: u64,
    sig_per_s_one_thread: u64,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Row {
    Exec(ExecRow),
    Signatures(SignatureRow),
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

fn per_second(count: usize, duration: Duration) -> u64 {
    (count as f64 / duration.as_secs_f64()) as u64
}

fn workloads() -> Vec<(String, Workload)> {
    let work = |us: u32| Workload::Work {
        accounts: 100_000,
        rounds: work_rounds(us),
        slots_per_tx: 2,
        slot_space: 1_000_000,
    };
    vec![
        ("uniform".into(), Workload::Uniform { accounts: 100_000 }),
        (
            "zipf".into(),
            Workload::Zipf {
                accounts: 10_000,
                s: 1.0,
            },
        ),
        (
            "hot10".into(),
            Workload::Hot {
                accounts: 100_000,
                hot_percent: 10,
            },
        ),
        ("chain".into(), Workload::Chain { accounts: 10_000 }),
        (
            "pay_name".into(),
            Workload::PayName {
                accounts: 100_000,
                names: 10_000,
            },
        ),
        ("work_0us".into(), work(0)),
        ("work_10us".into(), work(10)),
        ("work_100us".into(), work(100)),
    ]
}

/// A workload's block, ready to execute, with its DAG verification timed.
struct Prepared {
    name: String,
    block: GeneratedBlock,
    proposal: Proposal,
    dag_bytes: usize,
    access_bytes: usize,
    dag_derive_verify: Duration,
}

fn prepare(name: &str, workload: &Workload, args: &Args) -> Prepared {
    let block = workload.generate(args.txs, args.seed);
    let proposal = propose(&block.genesis, &block.txs).expect("memory state cannot fail");
    let dag_bytes = proposal.dag.encode();
    let mut verify_samples = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let start = Instant::now();
        let dag = ConflictDag::decode(&dag_bytes, block.txs.len()).expect("honest DAG decodes");
        let verified = verify_block(&block.txs, &proposal.access, &dag).expect("honest DAG");
        std::hint::black_box(verified.stats());
        verify_samples.push(start.elapsed());
    }
    Prepared {
        name: name.to_owned(),
        access_bytes: proposal.access.encode().len(),
        dag_bytes: dag_bytes.len(),
        dag_derive_verify: median(verify_samples),
        block,
        proposal,
    }
}

/// Serial then parallel execution of one prepared block, each checked against the proposer.
fn time_pair(prepared: &Prepared, executor: &ParallelExecutor) -> (Duration, Duration, bool) {
    let (block, proposal) = (&prepared.block, &prepared.proposal);
    let verified = verify_block(&block.txs, &proposal.access, &proposal.dag).expect("honest DAG");
    let start = Instant::now();
    let serial = SerialExecutor
        .execute(&block.genesis, &verified)
        .expect("valid");
    let serial_time = start.elapsed();
    let start = Instant::now();
    let parallel = executor.execute(&block.genesis, &verified).expect("valid");
    let parallel_time = start.elapsed();
    for outcome in [&serial, &parallel] {
        assert_eq!(
            outcome.state_root, proposal.outcome.state_root,
            "{}",
            prepared.name
        );
        assert_eq!(
            outcome.results, proposal.outcome.results,
            "{}",
            prepared.name
        );
    }
    (serial_time, parallel_time, parallel.ran_parallel)
}

/// Times every (workload, thread count) pair. Runs go round-robin over the pairs, so a stretch of
/// machine noise spreads over all of them instead of sinking one row.
fn bench_execution(
    prepared: &[Prepared],
    executors: &[ParallelExecutor],
    runs: usize,
) -> Vec<ExecRow> {
    let pairs: Vec<(&Prepared, &ParallelExecutor)> = prepared
        .iter()
        .flat_map(|p| executors.iter().map(move |e| (p, e)))
        .collect();
    let mut samples = vec![(Vec::new(), Vec::new(), false); pairs.len()];
    // One untimed round first: it faults in memory and wakes the pools' threads.
    for run in 0..=runs {
        for (index, (prepared, executor)) in pairs.iter().enumerate() {
            let (serial, parallel, ran_parallel) = time_pair(prepared, executor);
            if run > 0 {
                samples[index].0.push(serial);
                samples[index].1.push(parallel);
                samples[index].2 = ran_parallel;
            }
        }
    }
    pairs
        .iter()
        .zip(samples)
        .map(|((prepared, executor), (serial, parallel, ran_parallel))| {
            let (serial, parallel) = (median(serial), median(parallel));
            let txs = prepared.block.txs.len();
            let stats = prepared.proposal.outcome.stats;
            ExecRow {
                workload: prepared.name.clone(),
                txs,
                threads: executor.config().threads,
                serial_tps: per_second(txs, serial),
                parallel_tps: per_second(txs, parallel),
                speedup: (serial.as_secs_f64() / parallel.as_secs_f64() * 100.0).round() / 100.0,
                dag_edges: stats.edges,
                critical_path: stats.critical_path,
                dag_derive_verify_ms: ms(prepared.dag_derive_verify),
                serial_ms: ms(serial),
                parallel_ms: ms(parallel),
                parallelism: (stats.parallelism() * 10.0).round() / 10.0,
                ran_parallel,
                dag_bytes: prepared.dag_bytes,
                access_bytes: prepared.access_bytes,
            }
        })
        .collect()
}

fn bench_signatures(args: &Args, executor: &ParallelExecutor) -> SignatureRow {
    let block = Workload::Uniform { accounts: 100_000 }.generate(args.txs, args.seed);
    let single = ParallelExecutor::new(ExecutorConfig {
        threads: 1,
        ..ExecutorConfig::default()
    })
    .expect("pool builds");
    let (mut many, mut one) = (Vec::new(), Vec::new());
    for _ in 0..args.runs.min(5) {
        let start = Instant::now();
        let verdicts = executor.install(|| verify_signatures(&block.txs));
        many.push(start.elapsed());
        assert!(verdicts.iter().all(Result::is_ok));
        let start = Instant::now();
        std::hint::black_box(single.install(|| verify_signatures(&block.txs)));
        one.push(start.elapsed());
    }
    SignatureRow {
        workload: "signatures",
        txs: block.txs.len(),
        threads: executor.config().threads,
        sig_per_s: per_second(block.txs.len(), median(many)),
        sig_per_s_one_thread: per_second(block.txs.len(), median(one)),
    }
}

fn print_table(rows: &[Row], cores: usize, round_ns: f64) {
    println!("exec-bench on {cores} cores; one work round = {round_ns:.1} ns");
    println!(
        "{:<11} {:>6} {:>3} {:>11} {:>11} {:>7} {:>6} {:>6} {:>7} {:>9}",
        "workload",
        "txs",
        "thr",
        "serial tx/s",
        "par tx/s",
        "speedup",
        "edges",
        "crit",
        "w/span",
        "dag ms"
    );
    for row in rows {
        match row {
            Row::Exec(r) => println!(
                "{:<11} {:>6} {:>3} {:>11} {:>11} {:>6.2}x {:>6} {:>6} {:>7.1} {:>9.3}{}",
                r.workload,
                r.txs,
                r.threads,
                r.serial_tps,
                r.parallel_tps,
                r.speedup,
                r.dag_edges,
                r.critical_path,
                r.parallelism,
                r.dag_derive_verify_ms,
                match (r.threads, r.ran_parallel) {
                    (1, _) => "  (the serial executor)",
                    (_, true) => "",
                    (_, false) => "  (txs in order, root in parallel)",
                }
            ),
            Row::Signatures(r) => println!(
                "{:<11} {:>6} {:>3} {:>11} sig/s ({} sig/s on 1 thread)",
                r.workload, r.txs, r.threads, r.sig_per_s, r.sig_per_s_one_thread
            ),
        }
    }
}

fn main() {
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if args.threads.is_empty() {
        vec![cores]
    } else {
        args.threads.clone()
    };
    let executors: Vec<ParallelExecutor> = threads
        .iter()
        .map(|&threads| {
            ParallelExecutor::new(ExecutorConfig {
                threads,
                ..ExecutorConfig::default()
            })
            .expect("pool builds")
        })
        .collect();
    let prepared: Vec<Prepared> = workloads()
        .into_iter()
        .filter(|(name, _)| args.workloads.is_empty() || args.workloads.contains(name))
        .map(|(name, workload)| {
            eprintln!("preparing {name} ...");
            prepare(&name, &workload, &args)
        })
        .collect();
    eprintln!("timing {} runs ...", args.runs);
    let mut rows: Vec<Row> = bench_execution(&prepared, &executors, args.runs)
        .into_iter()
        .map(Row::Exec)
        .collect();
    drop(prepared);
    if args.workloads.is_empty() || args.workloads.iter().any(|w| w == "signatures") {
        eprintln!("running signatures ...");
        let widest = executors.last().expect("at least one thread count");
        rows.push(Row::Signatures(bench_signatures(&args, widest)));
    }
    print_table(&rows, cores, work_round_ns());
    if args.json {
        let json = serde_json::json!({ "cores": cores, "rows": rows });
        println!("{json}");
    }
}
