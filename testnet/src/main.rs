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
    /// Write a network for real hosts: a home per node (its own keys only), the genesis made
    /// from their public keys, a docker-compose.yml with its FROM-scratch image, systemd units,
    /// a Prometheus config and a README.
    Generate(GenerateCli),
    /// Change a running testnet's validator set through its validator authority: add a node
    /// (started as a full node, promoted once it caught up), remove one, or set a power.
    Validator {
        #[command(subcommand)]
        command: ValidatorCli,
    },
    /// Run a `weft` node from this binary (`weft-testnet node start --home DIR`); used when no
    /// `weft` binary sits beside this one.
    #[command(hide = true)]
    Node {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Relay TCP from `--listen` to `--to` through a shaped link (delay, jitter, bandwidth),
    /// a userspace stand-in for netem, until SIGINT or SIGTERM.
    #[command(hide = true)]
    Relay {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        to: std::net::SocketAddr,
        /// One-way delay each way, e.g. `50ms`.
        #[arg(long, default_value = "0", value_parser = weft_testnet::shaper::parse_duration)]
        latency: Duration,
        /// Uniform jitter around the delay, at most the delay, e.g. `5ms`.
        #[arg(long, default_value = "0", value_parser = weft_testnet::shaper::parse_duration)]
        jitter: Duration,
        /// Bandwidth cap each way, e.g. `100mbit` or `2MB/s`; none by default.
        #[arg(long, value_parser = weft_testnet::shaper::parse_bandwidth)]
        bandwidth: Option<u64>,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum ValidatorCli {
    /// Start a new node as a full node, wait until it caught up, then make it a validator.
    Add {
        #[command(flatten)]
        home: HomeArg,
        /// Its voting power (default: the testnet's validators').
        #[arg(long)]
        power: Option<u64>,
    },
    /// Remove a node from the validator set; it runs on as a full node.
    Remove {
        #[command(flatten)]
        home: HomeArg,
        /// The node's name (`node3`).
        #[arg(long)]
        node: String,
    },
    /// Set a validator's voting power.
    SetPower {
        #[command(flatten)]
        home: HomeArg,
        #[arg(long)]
        node: String,
        #[arg(long)]
        power: u64,
    },
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
    #[command(flatten)]
    shape: ShapeCli,
}

/// WAN conditions on every link, through the userspace link shaper.
#[derive(Args)]
struct ShapeCli {
    /// One-way delay on every link, e.g. `50ms`.
    #[arg(long, value_parser = weft_testnet::shaper::parse_duration)]
    latency: Option<Duration>,
    /// Uniform jitter around the delay (at most the delay), e.g. `5ms`.
    #[arg(long, requires = "latency", value_parser = weft_testnet::shaper::parse_duration)]
    jitter: Option<Duration>,
    /// Bandwidth cap each way on every link, e.g. `100mbit`.
    #[arg(long, value_parser = weft_testnet::shaper::parse_bandwidth)]
    bandwidth: Option<u64>,
}

impl ShapeCli {
    fn shape(&self) -> Option<weft_testnet::shaper::LinkShape> {
        (self.latency.is_some() || self.bandwidth.is_some()).then(|| {
            weft_testnet::shaper::LinkShape {
                delay: self.latency.unwrap_or_default(),
                jitter: self.jitter.unwrap_or_default(),
                bandwidth_bytes_per_s: self.bandwidth,
            }
        })
    }
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
    #[command(flatten)]
    shape: ShapeCli,
    /// With --latency: measure a loopback testnet first, in the same run.
    #[arg(long)]
    compare_loopback: bool,
    /// A fixed rate measured before the climb (p50/p99 at a load both can carry); 0 skips it.
    #[arg(long, default_value_t = 1_000)]
    probe_tps: u64,
}

#[derive(Args)]
struct GenerateCli {
    /// Hosts, comma-separated names or addresses, as the other nodes will dial them.
    #[arg(long, value_delimiter = ',', required_unless_present = "hosts_file")]
    hosts: Vec<String>,
    /// A file of hosts, one per line (`#` comments).
    #[arg(long, conflicts_with = "hosts")]
    hosts_file: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    validators_per_host: usize,
    /// The folder to write (must not exist, or be empty).
    #[arg(long, default_value = "./network")]
    out: PathBuf,
    #[arg(long, default_value = "weft-1")]
    chain_id: String,
    /// The first node's p2p port on each host; further validators on a host add 10 each.
    #[arg(long, default_value_t = 26_656)]
    p2p_port: u16,
    #[arg(long, default_value_t = 26_657)]
    rpc_port: u16,
    #[arg(long, default_value_t = 26_660)]
    metrics_port: u16,
    /// Where RPC listens: `loopback` (default), `host` (the node's own address) or an IP.
    #[arg(long, default_value = "loopback")]
    rpc_bind: weft_testnet::generate::Bind,
    /// Where metrics listen: `loopback` (default), `host` or an IP.
    #[arg(long, default_value = "loopback")]
    metrics_bind: weft_testnet::generate::Bind,
    /// `default` (CometBFT's timeouts) or `fast` (local networks).
    #[arg(long, default_value = "default")]
    timeouts: String,
    /// Funded load accounts in genesis (their keys derive from their index, as `up`'s).
    #[arg(long, default_value_t = 0)]
    load_accounts: usize,
    /// Compose publishes node k's RPC on 127.0.0.1:<base + 10·k>.
    #[arg(long, default_value_t = 26_657)]
    compose_rpc_base: u16,
    /// The binary to put in the image (default: the `weft` beside this binary, else this one,
    /// which runs as `weft` under that name).
    #[arg(long)]
    weft_bin: Option<PathBuf>,
    /// The image tag Compose builds.
    #[arg(long, default_value = "weft:local")]
    image: String,
    /// Strip debug sections from the image's binary.
    #[arg(long)]
    strip_debug: bool,
    /// Stage no binary for the image (systemd hosts only); the Dockerfile is still written.
    #[arg(long)]
    no_image: bool,
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
    // Called as `weft` (the image of `generate` may hold this binary under that name), it is
    // the node's CLI.
    let called = std::env::args_os().next().map(PathBuf::from);
    if called.as_deref().and_then(|p| p.file_name()) == Some("weft".as_ref()) {
        use clap::Parser as _;
        return match weft_node::cli::run(weft_node::cli::Cli::parse()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        };
    }
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
                shape: up.shape.shape(),
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
                shape: bench.shape.shape(),
                compare_loopback: bench.compare_loopback,
                probe_tps: bench.probe_tps,
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
        Command::Generate(generate) => run_generate(generate),
        Command::Validator { command } => runtime().and_then(|rt| {
            let change = rt.block_on(async {
                match command {
                    ValidatorCli::Add { home, power } => {
                        weft_testnet::validators::add(&home.home, power).await
                    }
                    ValidatorCli::Remove { home, node } => {
                        weft_testnet::validators::set_power(&home.home, &node, 0).await
                    }
                    ValidatorCli::SetPower { home, node, power } => {
                        weft_testnet::validators::set_power(&home.home, &node, power).await
                    }
                }
            })?;
            println!("{change}");
            Ok(())
        }),
        Command::Relay {
            listen,
            to,
            latency,
            jitter,
            bandwidth,
        } => runtime().and_then(|rt| {
            let shape = weft_testnet::shaper::LinkShape {
                delay: latency,
                jitter,
                bandwidth_bytes_per_s: bandwidth,
            };
            rt.block_on(weft_testnet::shaper::run_relay(listen, to, shape))
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

fn run_generate(cli: GenerateCli) -> Result<(), String> {
    let hosts = match &cli.hosts_file {
        Some(path) => weft_testnet::generate::read_hosts_file(path)?,
        None => cli.hosts,
    };
    let args = weft_testnet::generate::GenerateArgs {
        out: cli.out,
        hosts,
        validators_per_host: cli.validators_per_host,
        chain_id: cli.chain_id,
        p2p_port: cli.p2p_port,
        rpc_port: cli.rpc_port,
        metrics_port: cli.metrics_port,
        rpc_bind: cli.rpc_bind,
        metrics_bind: cli.metrics_bind,
        timeouts: cli.timeouts,
        load_accounts: cli.load_accounts,
        compose_rpc_base: cli.compose_rpc_base,
        weft_bin: cli.weft_bin,
        image: cli.image,
        strip_debug: cli.strip_debug,
        no_image: cli.no_image,
    };
    let network = weft_testnet::generate::generate(&args)?;
    println!(
        "wrote network {} ({} nodes, genesis {}) to {}",
        network.chain_id,
        network.nodes.len(),
        network.genesis_hash,
        args.out.display()
    );
    for node in &network.nodes {
        println!(
            "  {}: host {} p2p {} RPC {} metrics {}",
            node.name, node.host, node.p2p_port, node.rpc_port, node.metrics_port
        );
    }
    if !nix::unistd::geteuid().is_root() {
        println!(
            "the containers run as uid {uid}: `sudo chown -R {uid}:{uid} {}/nodes` before \
             `docker-compose up` (see its README.md)",
            args.out.display(),
            uid = weft_testnet::deploy::SERVICE_UID
        );
    }
    println!("see {}/README.md to deploy it", args.out.display());
    Ok(())
}
