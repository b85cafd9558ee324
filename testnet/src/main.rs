//! `weft-testnet`: one command to a running, loaded, observable local network of `weft`
//! validators on 127.0.0.1. The work is in the library (`weft_testnet`); this file parses the
//! command line and turns errors into a message and a non-zero exit.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use weft_testnet::bench::{BenchArgs, run_bench};
use weft_testnet::chaos::{ChaosArgs, run_chaos};
use weft_testnet::load::{Distribution, Kind};
use weft_testnet::up::{LoadArgs, UpArgs, run_down, run_load, run_status, run_up};

#[derive(Parser)]
#[command(
    name = "weft-testnet",
    version,
    about = "Local Weft testnets: up, load, chaos, bench"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write (or reuse) a testnet, start its validators, load them, and show live status
    /// until Ctrl-C, which stops every node cleanly.
    Up(UpCli),
    /// Stop every node of the testnet.
    Down(HomeArg),
    /// One row per node: height, the hash at the shared height, peers, catching up.
    Status(HomeArg),
    /// An open-loop load against the running testnet, with a summary, CSV and plot.
    Load(LoadCli),
    /// Start a testnet, load it at rising rates to find saturation, report, tear down.
    Bench(BenchCli),
    /// Inject faults under load and check the invariants; non-zero exit names a violation.
    Chaos(ChaosCli),
    /// Run a `weft` node from this binary (`weft-testnet node start --home DIR`); used when no
    /// `weft` binary sits beside this one.
    #[command(hide = true)]
    Node {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print the version.
    Version,
}

#[derive(Args)]
struct HomeArg {
    /// The testnet's directory.
    #[arg(long, default_value = "./testnet")]
    home: PathBuf,
}

#[derive(Args)]
struct UpCli {
    #[arg(long, default_value_t = 4)]
    validators: usize,
    #[arg(long, default_value = "./testnet")]
    home: PathBuf,
    /// Offered load in tx/s while up; 0 for none.
    #[arg(long, default_value_t = 1_000)]
    load: u64,
    /// `semantic` or `plain`.
    #[arg(long, default_value = "semantic")]
    gossip: String,
    /// Overlay degree: how many peers each node keeps.
    #[arg(long, default_value_t = 3)]
    degree: usize,
    /// `fast` (local: 400 ms propose, 200 ms votes, no commit delay) or `default` (CometBFT's).
    #[arg(long, default_value = "fast")]
    timeouts: String,
    /// The `weft` binary (default: the one beside this binary, else this binary in node mode).
    #[arg(long)]
    weft_bin: Option<PathBuf>,
    /// Node 0's p2p port; node i uses base + 10·i (p2p), + 1 (RPC), + 4 (metrics).
    #[arg(long, default_value_t = 26_656)]
    base_port: u16,
    /// Funded load accounts in genesis.
    #[arg(long, default_value_t = 2_000)]
    accounts: usize,
    /// Executor threads per node (0: the machine's cores; default: cores / validators).
    #[arg(long)]
    threads: Option<usize>,
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long)]
    duration: Option<u64>,
}

#[derive(Args)]
struct LoadCli {
    #[arg(long, default_value = "./testnet")]
    home: PathBuf,
    #[arg(long, default_value_t = 1_000)]
    tps: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Sending accounts.
    #[arg(long, default_value_t = 1_000)]
    accounts: usize,
    /// The first sending account. `up`'s own load uses the upper half of the funded load
    /// accounts, so keep `first + accounts` within the lower half while it runs.
    #[arg(long, default_value_t = 0)]
    first_account: usize,
    /// `uniform`, `zipf:S` or `hot:P` (P% of txs hit one hot key).
    #[arg(long, default_value = "uniform")]
    distribution: Distribution,
    /// `transfer`, `pay-name` or `work:US` (each tx works about US µs).
    #[arg(long, default_value = "transfer")]
    kind: Kind,
    /// Where the CSV and SVG go (default: `<home>/load-<unix time>.{csv,svg}`).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the summary as one JSON line last.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchCli {
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Print the machine-readable JSON line last.
    #[arg(long)]
    json: bool,
    /// Seconds per rate step.
    #[arg(long, default_value_t = 20)]
    step_seconds: u64,
    /// The first offered rate, tx/s; each step adds `--rate-step`.
    #[arg(long, default_value_t = 2_000)]
    start_tps: u64,
    #[arg(long, default_value_t = 1_000)]
    rate_step: u64,
    /// The highest rate tried.
    #[arg(long, default_value_t = 12_000)]
    max_tps: u64,
    /// Saturation: p99 must stay under this many ms.
    #[arg(long, default_value_t = 2_000)]
    p99_bound_ms: u64,
    #[arg(long)]
    weft_bin: Option<PathBuf>,
    #[arg(long, default_value_t = 36_656)]
    base_port: u16,
    /// Keep the testnet's files here (default: a temporary directory).
    #[arg(long)]
    home: Option<PathBuf>,
}

#[derive(Args)]
struct ChaosCli {
    #[arg(long, default_value = "./testnet")]
    home: PathBuf,
    /// `crash-restart`, `pause`, `partition`, `byzantine-dag`, `equivocate` or `all`.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Seconds of each scenario (fault plus recovery).
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Offered load during the faults, tx/s.
    #[arg(long, default_value_t = 500)]
    tps: u64,
    /// Which node takes the faults (default: the last).
    #[arg(long)]
    node: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version => {
            println!("weft-testnet {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Node { args } => {
            use clap::Parser as _;
            let argv = std::iter::once("weft".to_owned()).chain(args);
            weft_node::cli::run(weft_node::cli::Cli::parse_from(argv)).map_err(|e| e.to_string())
        }
        Command::Up(up) => runtime().and_then(|rt| {
            rt.block_on(run_up(UpArgs {
                validators: up.validators,
                home: up.home,
                load: up.load,
                gossip: up.gossip,
                degree: up.degree,
                timeouts: up.timeouts,
                weft_bin: up.weft_bin,
                base_port: up.base_port,
                accounts: up.accounts,
                threads: up.threads,
                duration: up.duration.map(Duration::from_secs),
            }))
        }),
        Command::Down(HomeArg { home }) => run_down(&home),
        Command::Status(HomeArg { home }) => {
            runtime().and_then(|rt| rt.block_on(run_status(&home)))
        }
        Command::Load(load) => runtime().and_then(|rt| {
            rt.block_on(run_load(LoadArgs {
                home: load.home,
                tps: load.tps,
                duration: Duration::from_secs(load.duration),
                accounts: load.accounts,
                first_account: load.first_account,
                distribution: load.distribution,
                kind: load.kind,
                out: load.out,
                seed: load.seed,
                json: load.json,
                progress: true,
            }))
            .map(|_| ())
        }),
        Command::Bench(bench) => runtime().and_then(|rt| {
            rt.block_on(run_bench(BenchArgs {
                validators: bench.validators,
                json: bench.json,
                step: Duration::from_secs(bench.step_seconds),
                start_tps: bench.start_tps,
                rate_step: bench.rate_step,
                max_tps: bench.max_tps,
                p99_bound_ms: bench.p99_bound_ms,
                weft_bin: bench.weft_bin,
                base_port: bench.base_port,
                home: bench.home,
            }))
        }),
        Command::Chaos(chaos) => runtime().and_then(|rt| {
            rt.block_on(run_chaos(ChaosArgs {
                home: chaos.home,
                scenario: chaos.scenario,
                duration: Duration::from_secs(chaos.duration),
                tps: chaos.tps,
                node: chaos.node,
            }))
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))
}
