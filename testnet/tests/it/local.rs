//! The testnet tool end to end, as a user runs it: `up` in the background, `status`, `load`,
//! `chaos --scenario all`, `validator add` and `validator remove`, then Ctrl-C (SIGINT) to
//! `up`, which stops every node it started (`down` the one added). And `up`
//! whose output pipe closes, or that is killed outright, leaves no node running. Real
//! processes on 127.0.0.1.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use weft_testnet::manifest::Manifest;
use weft_testnet::process::running_pid;

use crate::support::{TESTNET, network_lock};

const VALIDATORS: usize = 4;

/// A base port whose node ports (p2p, RPC, metrics for each node) are all free now.
fn free_base() -> u16 {
    let seed = std::process::id() as u64 * 7919 + Instant::now().elapsed().as_nanos() as u64;
    for attempt in 0..200u64 {
        let base = 20_000 + ((seed + attempt * 613) % 3_000) as u16 * 10;
        let free = (0..VALIDATORS as u16).all(|i| {
            [0, 1, 4]
                .iter()
                .all(|offset| TcpListener::bind(("127.0.0.1", base + 10 * i + offset)).is_ok())
        });
        if free {
            return base;
        }
    }
    panic!("no free port range");
}

fn testnet(args: &[&str], home: &Path) -> Output {
    let output = Command::new(TESTNET)
        .args(args)
        .arg("--home")
        .arg(home)
        .output()
        .expect("weft-testnet runs");
    eprintln!(
        "weft-testnet {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Stops `up` (and so the nodes) even when an assertion fails.
struct Up(Option<Child>);

/// Stops every node of the testnet at the path (`down`), also those `up` did not start, even
/// when an assertion fails.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(TESTNET)
            .args(["down", "--home"])
            .arg(&self.0)
            .output();
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn up_status_load_chaos_and_a_clean_stop() {
    let _one_network = network_lock();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("testnet");
    let base = free_base().to_string();
    let log = std::fs::File::create(dir.path().join("up.log")).unwrap();
    let child = Command::new(TESTNET)
        .args([
            "up",
            "--validators",
            "4",
            "--load",
            "200",
            "--accounts",
            "600",
        ])
        .args(["--base-port", &base, "--threads", "1", "--home"])
        .arg(&home)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _down = Down(home.clone());
    let mut up = Up(Some(child));

    // Up is healthy once it says so (every node committed a block).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
        if text.contains("all 4 nodes are committing") {
            break;
        }
        let exited = up.0.as_mut().unwrap().try_wait().unwrap();
        assert!(exited.is_none(), "up exited early:\n{text}");
        assert!(
            Instant::now() < deadline,
            "up never became healthy:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let manifest = Manifest::load(&home).unwrap();
    assert_eq!(manifest.nodes.len(), VALIDATORS);
    for node in &manifest.nodes {
        assert!(running_pid(node).is_some(), "{} has no live pid", node.name);
        assert!(
            node.log_path().exists(),
            "{}'s log is under its home",
            node.name
        );
    }

    let status = testnet(&["status"], &home);
    assert!(status.status.success());
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(table.contains("all reachable nodes agree"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.starts_with("node")).count(),
        1 + VALIDATORS
    );

    let out = dir.path().join("load");
    let load = Command::new(TESTNET)
        .args([
            "load",
            "--tps",
            "300",
            "--duration",
            "5",
            "--accounts",
            "300",
            "--json",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--home")
        .arg(&home)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&load.stdout);
    eprintln!("load:\n{stdout}{}", String::from_utf8_lossy(&load.stderr));
    assert!(load.status.success());
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap()).expect("the last line is JSON");
    assert_eq!(summary["sent"], 1_500);
    assert!(summary["committed"].as_u64().unwrap() >= 1_400, "{summary}");
    assert!(out.with_extension("csv").exists());
    let svg = std::fs::read_to_string(out.with_extension("svg")).unwrap();
    assert!(svg.contains("<svg"));

    let chaos = testnet(
        &[
            "chaos",
            "--scenario",
            "all",
            "--duration",
            "6",
            "--tps",
            "200",
        ],
        &home,
    );
    let text = String::from_utf8_lossy(&chaos.stdout);
    assert!(chaos.status.success(), "chaos failed:\n{text}");
    assert!(text.contains("all invariants hold"), "{text}");
    for scenario in [
        "crash-restart",
        "pause",
        "partition",
        "byzantine-dag",
        "equivocate",
        "validator-churn",
    ] {
        assert!(text.contains(&format!("== {scenario}")), "{scenario} ran");
    }

    // The validator set changes while it runs: a fifth node joins (a full node first, promoted
    // once it caught up), and an original validator leaves.
    let added = testnet(&["validator", "add"], &home);
    let text = String::from_utf8_lossy(&added.stdout);
    let errors = String::from_utf8_lossy(&added.stderr);
    assert!(
        added.status.success(),
        "validator add failed:\n{text}{errors}"
    );
    assert!(
        text.contains("node4 is a validator with power 10"),
        "{text}"
    );
    let removed = testnet(&["validator", "remove", "--node", "node1"], &home);
    let text = String::from_utf8_lossy(&removed.stdout);
    let errors = String::from_utf8_lossy(&removed.stderr);
    assert!(
        removed.status.success(),
        "validator remove failed:\n{text}{errors}"
    );
    assert!(
        text.contains("node1 is removed from the validator set"),
        "{text}"
    );
    let status = testnet(&["status"], &home);
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(table.contains("all reachable nodes agree"), "{table}");
    let grown = Manifest::load(&home).unwrap();
    assert_eq!(grown.nodes.len(), VALIDATORS + 1);

    // Ctrl-C to `up` stops every node cleanly.
    let mut child = up.0.take().unwrap();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() >= deadline {
            let text = std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
            panic!("up did not stop within 60 s of SIGINT:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(dir.path().join("up.log")).unwrap();
    assert!(exit.success(), "up failed:\n{text}");
    for node in &manifest.nodes {
        assert!(running_pid(node).is_none(), "{} still runs", node.name);
    }
    assert!(text.contains("stopped;"), "{text}");
    // The added node is not `up`'s child: `down` stops it.
    assert!(testnet(&["down"], &home).status.success());
    for node in &grown.nodes {
        assert!(running_pid(node).is_none(), "{} still runs", node.name);
    }
}

#[test]
fn commands_on_a_missing_testnet_say_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("none");
    for command in ["status", "down", "load", "chaos"] {
        let output = testnet(&[command], &home);
        assert!(!output.status.success(), "{command} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("weft-testnet up"), "{command}: {stderr}");
    }
}

/// Starts `up` for a small testnet at `home` with its output on a pipe; returns once it says
/// its nodes commit, with the pipe's read end.
fn up_on_a_pipe(home: &Path, base: &str) -> (Child, std::process::ChildStdout) {
    use std::io::Read;
    let mut child = Command::new(TESTNET)
        .args(["up", "--validators", "2", "--load", "0", "--accounts", "10"])
        .args(["--threads", "1", "--base-port", base, "--home"])
        .arg(home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    // `up` prints a line a second once healthy, so this read never waits long for ever.
    while !String::from_utf8_lossy(&seen).contains("nodes are committing") {
        let read = stdout.read(&mut buffer).unwrap();
        assert!(
            read > 0,
            "up ended early:\n{}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buffer[..read]);
    }
    (child, stdout)
}

fn wait_nodes_gone(manifest: &Manifest, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while manifest.nodes.iter().any(|n| running_pid(n).is_some()) {
        assert!(Instant::now() < deadline, "{what}: nodes still run");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn up_leaves_no_node_running_when_its_pipe_closes_or_it_is_killed() {
    let _one_network = network_lock();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("testnet");
    let base = free_base().to_string();

    // `up | tee log`, then Ctrl-C: the pipe closes before `up` has said it stops.
    let (mut up, stdout) = up_on_a_pipe(&home, &base);
    let manifest = Manifest::load(&home).unwrap();
    drop(stdout);
    kill(Pid::from_raw(up.id() as i32), Signal::SIGINT).unwrap();
    let exit = up.wait().unwrap();
    assert!(
        exit.success(),
        "up failed once its output pipe closed: {exit}"
    );
    wait_nodes_gone(&manifest, "after SIGINT with a closed pipe");

    // Killed outright: no handler runs, yet its nodes follow it.
    let (mut up, _stdout) = up_on_a_pipe(&home, &base);
    let pids: Vec<i32> = manifest.nodes.iter().filter_map(running_pid).collect();
    assert_eq!(pids.len(), 2, "both nodes run");
    up.kill().unwrap();
    up.wait().unwrap();
    wait_nodes_gone(&manifest, "after SIGKILL to up");
}
