//! `up`, `down`, `status` and `load`: the everyday commands.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::client::{NodeClient, fetch_metrics, metric_sum};
use crate::links;
use crate::load::{self, Distribution, Kind, Live, LoadReport, LoadSpec};
use crate::manifest::{self, Layout, Manifest};
use crate::process::{Launcher, Processes, wait_healthy};
use crate::shaper::LinkShape;
use crate::status;

/// How long `up` waits for every node to commit its first block.
pub const HEALTHY_WITHIN: Duration = Duration::from_secs(90);

pub struct UpArgs {
    pub validators: usize,
    pub home: PathBuf,
    pub load: u64,
    pub gossip: String,
    pub degree: usize,
    pub timeouts: String,
    pub weft_bin: Option<PathBuf>,
    pub base_port: u16,
    pub accounts: usize,
    pub threads: Option<usize>,
    pub duration: Option<Duration>,
    /// WAN conditions on every link (`--latency`, `--jitter`, `--bandwidth`); `None` for
    /// plain loopback.
    pub shape: Option<LinkShape>,
}

/// Prints a line, ignoring a closed stdout (`up | tee log` after Ctrl-C): `up` must go on to
/// stop its nodes rather than die on the write.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// How many load accounts `up`'s own load uses: the top of the range, at most 1,000.
pub fn up_load_accounts(load_accounts: usize) -> usize {
    (load_accounts / 2).clamp(1, 1_000)
}

/// Executor threads per node when not told: the machine's cores shared among the validators.
pub fn default_threads(validators: usize) -> usize {
    crate::process::nodes_share(validators)
}

/// Reuses the testnet at `home` when there is one (its nodes keep their data), else writes a
/// fresh one.
pub fn open_or_create(args: &UpArgs, launcher: &Launcher) -> Result<Manifest, String> {
    match Manifest::load(&args.home) {
        Ok(manifest) => {
            if manifest.nodes.len() != args.validators {
                return Err(format!(
                    "{} holds a testnet of {} validators, not {}; remove the directory to start over",
                    args.home.display(),
                    manifest.nodes.len(),
                    args.validators
                ));
            }
            say!(
                "reusing the testnet at {} ({} validators, its chain data kept)",
                args.home.display(),
                manifest.nodes.len()
            );
            Ok(manifest)
        }
        Err(manifest::ManifestError::Missing { .. }) => {
            let layout = Layout {
                validators: args.validators,
                chain_id: "weft-testnet".into(),
                load_accounts: args.accounts,
                gossip: args.gossip.clone(),
                degree: args.degree,
                timeouts: args.timeouts.clone(),
                base_port: args.base_port,
                weft_bin: launcher.program.clone(),
                weft_prefix: launcher.prefix.clone(),
                threads: args
                    .threads
                    .unwrap_or_else(|| default_threads(args.validators)),
            };
            let manifest = manifest::create(&args.home, &layout).map_err(|e| e.to_string())?;
            say!(
                "wrote a testnet of {} validators to {}",
                args.validators,
                args.home.display()
            );
            Ok(manifest)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// SIGINT and SIGTERM, caught from `up`'s first step: a Ctrl-C that arrives while the nodes
/// start (or just after `up` has said they commit) stops them like any other, rather than
/// killing `up` by the default action.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<Self, String> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())
                .map_err(|e| format!("SIGINT handler: {e}"))?,
            terminate: signal(SignalKind::terminate())
                .map_err(|e| format!("SIGTERM handler: {e}"))?,
        })
    }

    /// Resolves at the next SIGINT or SIGTERM (one delivered earlier counts).
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

pub async fn run_up(args: UpArgs) -> Result<(), String> {
    let mut signals = StopSignals::install()?;
    let launcher = Launcher::resolve(args.weft_bin.as_deref())?;
    let manifest = open_or_create(&args, &launcher)?;
    // A reused testnet runs the binary named now, or the one it was made with.
    let launcher = if args.weft_bin.is_some() {
        launcher
    } else {
        Launcher::of(&manifest)
    };
    let shaped = match args.shape {
        Some(shape) => {
            let shaped = links::start(&manifest, &args.home, shape)?;
            say!(
                "links shaped ({shape}): {} relays, each node dials its peers through them",
                shaped.links.len()
            );
            Some(shaped)
        }
        None => None,
    };
    let mut processes = Processes::new(manifest.clone(), launcher.clone());
    processes.tie_to_parent();
    if let Err(e) = processes.start_all() {
        let _ = processes.stop_all();
        return Err(e.to_string());
    }
    say!(
        "starting {} nodes ({}{}); logs under {}/node<i>/node.log",
        manifest.nodes.len(),
        launcher.program.display(),
        if launcher.prefix.is_empty() {
            ""
        } else {
            " node"
        },
        args.home.display()
    );
    let all: Vec<usize> = (0..manifest.nodes.len()).collect();
    let healthy = tokio::select! {
        healthy = wait_healthy(&manifest, &all, 1, HEALTHY_WITHIN) => healthy.map_err(|e| e.to_string()),
        () = signals.recv() => Err("stopped before every node committed".to_string()),
    };
    if let Err(e) = healthy {
        say!("stopping the nodes");
        let _ = tokio::task::block_in_place(|| processes.stop_all());
        if let Some(shaped) = shaped {
            shaped.close().await;
        }
        return Err(e);
    }
    say!("all {} nodes are committing", manifest.nodes.len());
    for node in &manifest.nodes {
        say!(
            "  {}: RPC {}  metrics {}",
            node.name,
            node.rpc_url(),
            node.metrics_url()
        );
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let live = Arc::new(Live::default());
    let load_task = (args.load > 0).then(|| {
        // The upper half of the load accounts, so `load` and `chaos` (from account 0) may
        // run beside it.
        let accounts = up_load_accounts(manifest.load_accounts);
        let spec = LoadSpec {
            tps: args.load,
            duration: None,
            first_account: manifest.load_accounts - accounts,
            accounts,
            distribution: Distribution::Uniform,
            kind: Kind::Transfer,
            seed: 1,
        };
        let (manifest, live) = (manifest.clone(), Arc::clone(&live));
        say!("loading at {} tx/s (transfers, uniform)", args.load);
        tokio::spawn(async move { load::run(&manifest, &spec, live, stop_rx, false).await })
    });
    say!("Ctrl-C stops every node");
    let outcome = watch_until_stopped(
        &manifest,
        &mut processes,
        &live,
        &mut signals,
        args.duration,
    )
    .await;
    let _ = stop_tx.send(true);
    if let Some(task) = load_task {
        say!("stopping the load (its admitted txs get a few seconds to commit)");
        match task.await {
            Ok(Ok(report)) => say!("{}", report.summary()),
            Ok(Err(e)) => eprintln!("load: {e}"),
            Err(e) => eprintln!("load task: {e}"),
        }
    }
    say!("stopping the nodes");
    let stopped = tokio::task::block_in_place(|| processes.stop_all()).map_err(|e| e.to_string());
    if let Some(shaped) = shaped {
        shaped.close().await;
    }
    stopped?;
    say!(
        "stopped; `weft-testnet up --home {}` resumes the chain",
        args.home.display()
    );
    outcome
}

/// Prints one status line a second until Ctrl-C, SIGTERM or `duration`.
async fn watch_until_stopped(
    manifest: &Manifest,
    processes: &mut Processes,
    live: &Live,
    signals: &mut StopSignals,
    duration: Option<Duration>,
) -> Result<(), String> {
    // The long-lived streams from `up`'s start: a fresh `ctrl_c()` each turn would miss a
    // signal delivered while the status line is being fetched.
    let until = duration.map(|d| Instant::now() + d);
    let clients: Vec<NodeClient> = manifest
        .nodes
        .iter()
        .map(|n| NodeClient::new(n, Duration::from_millis(800)))
        .collect();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_total: Option<(f64, Instant)> = None;
    loop {
        tokio::select! {
            () = signals.recv() => return Ok(()),
            _ = tick.tick() => {}
        }
        if until.is_some_and(|u| Instant::now() >= u) {
            return Ok(());
        }
        // Nodes killed by `chaos` are this process's children: collect them.
        processes.reap();
        let line = tokio::select! {
            () = signals.recv() => return Ok(()),
            line = status_line(manifest, &clients, live, &mut last_total) => line,
        };
        say!("{line}");
    }
}

async fn status_line(
    manifest: &Manifest,
    clients: &[NodeClient],
    live: &Live,
    last_total: &mut Option<(f64, Instant)>,
) -> String {
    let heights = futures::future::join_all(clients.iter().map(|c| c.height())).await;
    let up = heights.iter().filter(|h| h.is_ok()).count();
    let height = heights
        .iter()
        .filter_map(|h| h.as_ref().ok())
        .max()
        .copied();
    let reachable = heights.iter().position(|h| h.is_ok());
    let (round, mempool) = match reachable {
        Some(i) => (
            clients[i].round().await.ok(),
            clients[i].mempool_size().await.ok(),
        ),
        None => (None, None),
    };
    // Committed tx/s from the first reachable node's counter (all txs, not only ours).
    let mut tps = None;
    if let Some(i) = reachable
        && let Ok(body) = fetch_metrics(&manifest.nodes[i], Duration::from_millis(800)).await
    {
        let total = metric_sum(&body, "weft_consensus_total_txs", None);
        let now = Instant::now();
        if let Some((before, at)) = *last_total
            && total >= before
        {
            tps = Some((total - before) / now.duration_since(at).as_secs_f64());
        }
        *last_total = Some((total, now));
    }
    let snapshot = live.snapshot();
    let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    format!(
        "height {:>6}  round {:>2}  committed {:>7} tx/s  mempool {:>6}  p50 {:>6}  nodes up {}/{}",
        show(height.map(|h| h.to_string())),
        show(round.map(|r| r.to_string())),
        show(tps.map(|t| format!("{t:.0}"))),
        show(mempool.map(|m| m.to_string())),
        show(snapshot.p50_ms.map(|p| format!("{p:.0}ms"))),
        up,
        clients.len()
    )
}

pub fn run_down(home: &Path) -> Result<(), String> {
    let manifest = Manifest::load(home).map_err(|e| e.to_string())?;
    let launcher = Launcher::of(&manifest);
    let mut processes = Processes::new(manifest.clone(), launcher);
    let running: Vec<usize> = (0..processes.len())
        .filter(|&i| processes.is_running(i))
        .collect();
    processes.stop_all().map_err(|e| e.to_string())?;
    println!(
        "stopped {} of {} nodes (the others were not running)",
        running.len(),
        manifest.nodes.len()
    );
    Ok(())
}

pub async fn run_status(home: &Path) -> Result<(), String> {
    let manifest = Manifest::load(home).map_err(|e| e.to_string())?;
    let table = status::collect(&manifest).await;
    print!("{}", table.render());
    if table.agree() {
        Ok(())
    } else {
        Err("nodes disagree on the block at the shared height".into())
    }
}

pub struct LoadArgs {
    pub home: PathBuf,
    pub tps: u64,
    pub duration: Duration,
    pub first_account: usize,
    pub accounts: usize,
    pub distribution: Distribution,
    pub kind: Kind,
    pub out: Option<PathBuf>,
    pub seed: u64,
    pub json: bool,
    pub progress: bool,
}

pub async fn run_load(args: LoadArgs) -> Result<LoadReport, String> {
    let manifest = Manifest::load(&args.home).map_err(|e| e.to_string())?;
    let spec = LoadSpec {
        tps: args.tps,
        duration: Some(args.duration),
        first_account: args.first_account,
        accounts: args.accounts,
        distribution: args.distribution,
        kind: args.kind,
        seed: args.seed,
    };
    spec.validate(&manifest).map_err(|e| e.to_string())?;
    let (_stop_tx, stop_rx) = watch::channel(false);
    let report = load::run(
        &manifest,
        &spec,
        Arc::new(Live::default()),
        stop_rx,
        args.progress,
    )
    .await
    .map_err(|e| e.to_string())?;
    println!("{}", report.summary());
    let prefix = args.out.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        args.home.join(format!("load-{secs}"))
    });
    let (csv, svg) = (prefix.with_extension("csv"), prefix.with_extension("svg"));
    report
        .write_csv(&csv)
        .map_err(|e| format!("{}: {e}", csv.display()))?;
    report
        .write_plot(&svg)
        .map_err(|e| format!("{}: {e}", svg.display()))?;
    println!("wrote {} and {}", csv.display(), svg.display());
    if args.json {
        println!("{}", report_json(&report));
    }
    Ok(report)
}

/// The summary as one JSON object.
pub fn report_json(report: &LoadReport) -> serde_json::Value {
    serde_json::json!({
        "sent": report.sent,
        "admitted": report.admitted,
        "committed": report.committed,
        "failed_in_block": report.failed_in_block,
        "rejected": report.rejected,
        "send_failures": report.send_failures,
        "offered_tps": report.offered_tps,
        "committed_tps": report.committed_tps,
        "p50_ms": report.p50_ms,
        "p90_ms": report.p90_ms,
        "p99_ms": report.p99_ms,
        "max_ms": report.max_ms,
    })
}
