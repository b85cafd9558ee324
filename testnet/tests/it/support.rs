//! What the network tests share: running `weft-testnet`, test hosts of their own (network
//! namespaces joined by veth pairs to a bridge, all made and removed here), the nodes started
//! on them, and the invariant checks under load.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use weft_testnet::chaos::{Violation, check_invariants};
use weft_testnet::client::NodeClient;
use weft_testnet::generate::GeneratedNetwork;
use weft_testnet::load::{self, Distribution, Kind, Live, LoadReport, LoadSpec};
use weft_testnet::manifest::Manifest;

pub const TESTNET: &str = env!("CARGO_BIN_EXE_weft-testnet");
/// Every wait for a network ends by then, or the test fails naming what it waited for.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// One multi-node network at a time in this binary: two on a 2-core machine starve each
/// other's timeouts.
static NETWORKS: Mutex<()> = Mutex::new(());

pub fn network_lock() -> MutexGuard<'static, ()> {
    NETWORKS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs a command to completion, printing what it said; `Err` names it when it fails.
pub fn run(command: &mut Command) -> Result<Output, String> {
    let shown = format!("{command:?}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{shown}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!("{shown} failed ({}):\n{text}", output.status))
    }
}

/// `weft-testnet generate --out <out> <args>`, and the network it wrote.
pub fn generate(out: &Path, args: &[&str]) -> GeneratedNetwork {
    let output = run(Command::new(TESTNET)
        .arg("generate")
        .arg("--out")
        .arg(out)
        .args(args))
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    GeneratedNetwork::load(out).unwrap()
}

/// Each generated home holds its own keys and no other node's: no secret of one home appears
/// in any file of another, in the coordinator's genesis, or in the cards.
pub fn assert_each_home_holds_only_its_own_secrets(out: &Path, network: &GeneratedNetwork) {
    let secret_of = |path: PathBuf| -> String {
        let text = std::fs::read_to_string(&path).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value["secret"].as_str().unwrap().to_owned()
    };
    let mut secrets = Vec::new();
    for node in &network.nodes {
        let config = out.join(&node.home).join("config");
        for file in ["validator_key.json", "node_key.json", "account-0.json"] {
            secrets.push((node.name.clone(), secret_of(config.join(file))));
        }
    }
    let mut files = vec![out.join("genesis.json"), out.join("network.json")];
    for entry in walk(out) {
        files.push(entry);
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (owner, secret) in &secrets {
            let in_its_home = file.starts_with(out.join("nodes").join(owner));
            assert!(
                in_its_home || !text.contains(secret.as_str()),
                "{}'s secret is in {}",
                owner,
                file.display()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.ends_with("rootfs") {
            continue;
        }
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Private test hosts: one network namespace per host, each with a veth pair whose other end
/// sits on a bridge, addresses in a private /24 that exists only here. The bridge lives in a
/// namespace of its own (a switch), so the machine's firewall (Docker's FORWARD policy, with
/// bridged traffic sent through iptables) never sees traffic between hosts; one more veth pair
/// joins this namespace to the switch, so the test reaches every host. Everything is removed
/// on drop, also when a test fails.
pub struct TestHosts {
    tag: String,
    switch: String,
    uplink: String,
    pub addresses: Vec<Ipv4Addr>,
    namespaces: Vec<String>,
    host_ends: Vec<String>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    run(Command::new("ip").args(args)).map(|_| ())
}

/// The bridge's name inside the switch namespace.
const BRIDGE: &str = "br0";

impl TestHosts {
    /// Makes `n` hosts, or says why it cannot (not root, no `ip`, no namespaces).
    pub fn create(n: usize) -> Result<TestHosts, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("network namespaces need root".into());
        }
        let tag = format!("{}", std::process::id() % 100_000);
        let routes = run(Command::new("ip").args(["-4", "route"]))
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .map_err(|e| format!("`ip` is not usable: {e}"))?;
        let third = (0..250u32)
            .map(|k| (std::process::id() + k) % 250)
            .find(|x| !routes.contains(&format!("10.213.{x}.")))
            .ok_or("no free 10.213.x.0/24")?;
        let mut hosts = TestHosts {
            switch: format!("wsw{tag}"),
            uplink: format!("wu{tag}"),
            addresses: (1..=n as u8)
                .map(|i| Ipv4Addr::new(10, 213, third as u8, i))
                .collect(),
            namespaces: (0..n).map(|i| format!("wn{tag}-{i}")).collect(),
            host_ends: (0..n).map(|i| format!("wh{tag}-{i}")).collect(),
            tag,
        };
        hosts.build(third as u8)?;
        Ok(hosts)
    }

    fn build(&mut self, third: u8) -> Result<(), String> {
        let switch = self.switch.clone();
        ip(&["netns", "add", &switch])?;
        ip(&["-n", &switch, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", BRIDGE, "up"])?;
        // This namespace's own port on the switch.
        let port = format!("wq{}", self.tag);
        ip(&[
            "link",
            "add",
            &self.uplink,
            "type",
            "veth",
            "peer",
            "name",
            &port,
        ])?;
        ip(&["link", "set", &port, "netns", &switch])?;
        ip(&["-n", &switch, "link", "set", &port, "master", BRIDGE, "up"])?;
        let gateway = format!("10.213.{third}.254/24");
        ip(&["addr", "add", &gateway, "dev", &self.uplink])?;
        ip(&["link", "set", &self.uplink, "up"])?;
        for i in 0..self.namespaces.len() {
            let (ns, host_end) = (&self.namespaces[i], &self.host_ends[i]);
            let inner = format!("wp{}-{i}", self.tag);
            ip(&["netns", "add", ns])?;
            ip(&[
                "link", "add", host_end, "type", "veth", "peer", "name", &inner,
            ])?;
            ip(&["link", "set", &inner, "netns", ns])?;
            ip(&["link", "set", host_end, "netns", &switch])?;
            ip(&[
                "-n", &switch, "link", "set", host_end, "master", BRIDGE, "up",
            ])?;
            let address = format!("{}/24", self.addresses[i]);
            ip(&["-n", ns, "addr", "add", &address, "dev", &inner])?;
            ip(&["-n", ns, "link", "set", &inner, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    pub fn list(&self) -> String {
        self.addresses
            .iter()
            .map(Ipv4Addr::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `program args…` inside host `i`'s namespace.
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.namespaces[i], program]);
        command
    }

    /// Takes host `i`'s link down at the switch: it can reach no one, and no one it.
    pub fn cut(&self, i: usize) {
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &self.host_ends[i],
            "down",
        ])
        .unwrap();
    }

    pub fn heal(&self, i: usize) {
        ip(&["-n", &self.switch, "link", "set", &self.host_ends[i], "up"]).unwrap();
    }
}

impl Drop for TestHosts {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            // Anything still running in it goes first, or the namespace lingers.
            if let Ok(output) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            let _ = ip(&["netns", "del", ns]);
        }
        // Deleting the switch takes the bridge and every veth end in it, and so their peers.
        let _ = ip(&["netns", "del", &self.switch]);
        let _ = ip(&["link", "del", &self.uplink]);
    }
}

/// Node processes a test started; killed on drop.
#[derive(Default)]
pub struct Nodes {
    children: Vec<(String, PathBuf, Child)>,
}

impl Nodes {
    /// Starts `command`, its output appended to `<home>/node.log`.
    pub fn start(&mut self, name: &str, home: &Path, mut command: Command) {
        let log_path = home.join("node.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let child = command
            .env("TOKIO_WORKER_THREADS", "1")
            .env("RAYON_NUM_THREADS", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.children.push((name.to_owned(), log_path, child));
    }

    /// The last lines of every node's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for (name, path, _) in &self.children {
            let log = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            text.push_str(&format!("--- {name}\n"));
            text.push_str(&lines[lines.len().saturating_sub(15)..].join("\n"));
            text.push('\n');
        }
        text
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, _, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn clients(manifest: &Manifest) -> Vec<NodeClient> {
    manifest
        .nodes
        .iter()
        .map(|n| NodeClient::new(n, Duration::from_secs(2)))
        .collect()
}

/// The highest height among `nodes` that answer.
pub async fn top(clients: &[NodeClient], nodes: &[usize]) -> u64 {
    let mut best = 0;
    for &i in nodes {
        best = best.max(clients[i].height().await.unwrap_or(0));
    }
    best
}

/// Waits until every node in `nodes` answers at height ≥ `height`.
pub async fn wait_all_at(clients: &[NodeClient], nodes: &[usize], height: u64, what: &str) {
    let until = Instant::now() + DEADLINE;
    loop {
        let mut lagging = Vec::new();
        for &i in nodes {
            match clients[i].height().await {
                Ok(h) if h >= height => {}
                Ok(h) => {
                    let round = clients[i]
                        .round()
                        .await
                        .map_or("?".into(), |r| r.to_string());
                    lagging.push(format!("{} at {h} round {round}", clients[i].name));
                }
                Err(e) => lagging.push(e.to_string()),
            }
        }
        if lagging.is_empty() {
            return;
        }
        assert!(
            Instant::now() < until,
            "{what}: not all at height {height} within {DEADLINE:?}: {}",
            lagging.join("; ")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A load running in the background: stop it, await its report, watch it live.
pub struct RunningLoad {
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<Result<LoadReport, String>>,
    pub live: Arc<Live>,
}

impl RunningLoad {
    /// Waits until `more` txs beyond `from` have committed.
    pub async fn wait_committed(&self, from: u64, more: u64, what: &str) {
        let until = Instant::now() + DEADLINE;
        while self.live.snapshot().committed < from + more {
            assert!(
                Instant::now() < until,
                "{what}: {more} more txs did not commit within {DEADLINE:?} ({:?})",
                self.live.snapshot()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn finish(self) -> LoadReport {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap()
    }

    /// Stops the load, lets every node reach the same height, and checks the invariants:
    /// (the load's report, heights compared, violations).
    pub async fn finish_and_check(
        self,
        clients: &[NodeClient],
    ) -> (LoadReport, u64, Vec<Violation>) {
        let report = self.finish().await;
        eprintln!("{}", report.summary());
        let all: Vec<usize> = (0..clients.len()).collect();
        let reached = top(clients, &all).await;
        wait_all_at(clients, &all, reached, "the end").await;
        let (heights, violations) = check_invariants(clients, &report).await.unwrap();
        (report, heights, violations)
    }
}

/// How much a fault must let the others do before it is healed: heights, and the load's txs.
pub const FAULT_HEIGHTS_MIN: u64 = 20;
pub const FAULT_COMMITS_MIN: u64 = 150;

/// Open-loop transfers at `tps` until told to stop.
pub fn start_load(manifest: &Manifest, tps: u64) -> RunningLoad {
    let spec = LoadSpec {
        tps,
        duration: None,
        first_account: 0,
        accounts: manifest.load_accounts.min(300),
        distribution: Distribution::Uniform,
        kind: Kind::Transfer,
        seed: 0x405,
    };
    spec.validate(manifest).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let manifest = manifest.clone();
    let live = Arc::new(Live::default());
    let shared = Arc::clone(&live);
    let task = tokio::spawn(async move {
        load::run(&manifest, &spec, shared, stop_rx, false)
            .await
            .map_err(|e| e.to_string())
    });
    RunningLoad { stop, task, live }
}

/// One fault on node `target`: the others keep committing, and the load with them, while it
/// lasts; once healed, the target catches up with them.
pub async fn fault_and_heal(
    clients: &[NodeClient],
    load: &RunningLoad,
    target: usize,
    what: &str,
    inject: impl FnOnce(),
    heal: impl FnOnce(),
) {
    let others: Vec<usize> = (0..clients.len()).filter(|&i| i != target).collect();
    inject();
    let during = top(clients, &others).await;
    let committed = load.live.snapshot().committed;
    let progress = format!("progress during {what}");
    wait_all_at(clients, &others, during + FAULT_HEIGHTS_MIN, &progress).await;
    load.wait_committed(committed, FAULT_COMMITS_MIN, &progress)
        .await;
    heal();
    let healed = top(clients, &others).await;
    wait_all_at(clients, &[target], healed, &format!("rejoin after {what}")).await;
    eprintln!("{what}: the others went on past {during}; the target rejoined at {healed}");
}

/// Runs a network test's body on `runtime` and judges what it returns: every invariant holds
/// and something committed. On any failure (a violation, or a panic inside) the nodes' logs
/// are printed first. Returns the load's report and the heights compared.
pub fn run_and_judge(
    runtime: &tokio::runtime::Runtime,
    logs: impl Fn() -> String,
    body: impl std::future::Future<Output = (LoadReport, u64, Vec<Violation>)>,
) -> (LoadReport, u64) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(body)));
    let (report, heights, violations) = match outcome {
        Ok(outcome) => outcome,
        Err(panic) => {
            eprintln!("the nodes' logs:\n{}", logs());
            std::panic::resume_unwind(panic)
        }
    };
    assert!(violations.is_empty(), "{violations:?}\n{}", logs());
    assert!(report.committed > 0, "nothing committed:\n{}", logs());
    (report, heights)
}
