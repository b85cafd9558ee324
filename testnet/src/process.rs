//! The `weft` processes of a testnet: start, stop, kill, pause, restart, and the pid files
//! (`<node home>/weft.pid`) that let another `weft-testnet` invocation find them.
//!
//! Each node runs in its own process group, so a Ctrl-C at the terminal reaches only
//! `weft-testnet`, which then stops the nodes in order. A pid file is trusted only while
//! `/proc/<pid>/cmdline` still names the node's home, so a reused pid is never signalled.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use thiserror::Error;

use crate::client::NodeClient;
use crate::links::LinksFile;
use crate::manifest::{Manifest, NodeEntry};

/// How long a node has to stop after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(15);

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("{node}: starting {bin}: {problem}")]
    Start {
        node: String,
        bin: PathBuf,
        problem: String,
    },
    #[error("{node}: {problem}")]
    Node { node: String, problem: String },
    #[error("the testnet did not become healthy in {seconds} s: {detail}")]
    Unhealthy { seconds: u64, detail: String },
}

/// How to run a node: the `weft` binary, or this binary in node mode (`weft-testnet node …`).
#[derive(Clone, Debug)]
pub struct Launcher {
    pub program: PathBuf,
    /// Arguments put before `start --home …` (`["node"]` for this binary in node mode).
    pub prefix: Vec<String>,
}

impl Launcher {
    /// The `weft` binary named, or the one beside this executable, or else this executable in
    /// node mode (it links the same node code), so `cargo run --bin weft-testnet` needs no
    /// second build.
    pub fn resolve(weft_bin: Option<&Path>) -> Result<Launcher, String> {
        if let Some(path) = weft_bin {
            if !path.is_file() {
                return Err(format!("--weft-bin {}: no such file", path.display()));
            }
            return Ok(Launcher {
                program: path.to_owned(),
                prefix: Vec::new(),
            });
        }
        let me = std::env::current_exe().map_err(|e| format!("locating this executable: {e}"))?;
        let beside = me.with_file_name("weft");
        if beside.is_file() {
            return Ok(Launcher {
                program: beside,
                prefix: Vec::new(),
            });
        }
        Ok(Launcher {
            program: me,
            prefix: vec!["node".into()],
        })
    }

    /// How the testnet's manifest says its nodes run.
    pub fn of(manifest: &Manifest) -> Launcher {
        Launcher {
            program: manifest.weft_bin.clone(),
            prefix: manifest.weft_prefix.clone(),
        }
    }

    fn command(&self, index: usize, node: &NodeEntry) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(&self.prefix)
            .arg("start")
            .arg("--home")
            .arg(&node.home);
        // A shaped testnet's nodes dial through the relays while they run (`links.rs`).
        let links = node.home.parent().and_then(LinksFile::load_live);
        if let Some(peers) = links.as_ref().and_then(|l| l.peers.get(index)) {
            command.arg("--persistent-peers").arg(peers.join(","));
        }
        command
    }
}

/// The running nodes this process started (others are found by pid file).
pub struct Processes {
    pub manifest: Manifest,
    launcher: Launcher,
    children: Vec<Option<Child>>,
    /// Whether the nodes this starts die with this process (see [`Processes::tie_to_parent`]).
    tied: bool,
}

impl Processes {
    pub fn new(manifest: Manifest, launcher: Launcher) -> Processes {
        let children = manifest.nodes.iter().map(|_| None).collect();
        Processes {
            manifest,
            launcher,
            children,
            tied: false,
        }
    }

    /// Nodes started from now on get SIGTERM when this process dies, however it dies (killed,
    /// or its output pipe closed), so none is left running orphaned. For commands whose life
    /// is the testnet's (`up`, `bench`), not for ones that restart nodes and leave (`chaos`).
    /// Linux ties the signal to the thread that started the node: start them from a thread
    /// that lives as long as the process (the runtime's `block_on` thread).
    pub fn tie_to_parent(&mut self) {
        self.tied = true;
    }

    pub fn len(&self) -> usize {
        self.manifest.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.manifest.nodes.is_empty()
    }

    /// Starts node `index` with extra environment (e.g. `WEFT_BYZANTINE`), appending its
    /// output to `<home>/node.log`. Refuses if it is already running.
    pub fn start(&mut self, index: usize, env: &[(&str, &str)]) -> Result<u32, ProcessError> {
        let node = &self.manifest.nodes[index];
        if let Some(pid) = running_pid(node) {
            return Err(ProcessError::Node {
                node: node.name.clone(),
                problem: format!("already running as pid {pid}"),
            });
        }
        let start_error = |problem: String| ProcessError::Start {
            node: node.name.clone(),
            bin: self.launcher.program.clone(),
            problem,
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log_path())
            .map_err(|e| start_error(format!("{}: {e}", node.log_path().display())))?;
        let err = log.try_clone().map_err(|e| start_error(e.to_string()))?;
        let mut command = self.launcher.command(index, node);
        if self.tied {
            let parent = nix::unistd::getpid();
            // SAFETY: between fork and exec only async-signal-safe calls: prctl and getppid.
            // (One of the two places in the workspace allowed unsafe code.)
            #[allow(unsafe_code)]
            unsafe {
                command.pre_exec(move || {
                    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
                    // The parent may have died before the line above took effect.
                    if nix::unistd::getppid() != parent {
                        return Err(std::io::Error::other(
                            "the parent died before the node started",
                        ));
                    }
                    Ok(())
                });
            }
        }
        // The nodes share this machine's cores: each gets its share of tokio workers and of
        // rayon's global pool (the mempool's signature checks), unless the caller's
        // environment says otherwise. (On 2 cores, 4 nodes with 2 workers each spent a fifth
        // of their time switching; see ADR 0010's measurements.)
        let share = nodes_share(self.len()).to_string();
        for var in ["TOKIO_WORKER_THREADS", "RAYON_NUM_THREADS"] {
            if std::env::var_os(var).is_none() {
                command.env(var, &share);
            }
        }
        command
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0);
        let child = command.spawn().map_err(|e| start_error(e.to_string()))?;
        let pid = child.id();
        std::fs::write(node.pid_path(), format!("{pid}\n"))
            .map_err(|e| start_error(format!("{}: {e}", node.pid_path().display())))?;
        self.children[index] = Some(child);
        Ok(pid)
    }

    pub fn start_all(&mut self) -> Result<(), ProcessError> {
        for index in 0..self.len() {
            if running_pid(&self.manifest.nodes[index]).is_none() {
                self.start(index, &[])?;
            }
        }
        Ok(())
    }

    /// Sends `signal` to node `index`; false when it is not running.
    pub fn signal(&mut self, index: usize, signal: Signal) -> Result<bool, ProcessError> {
        self.reap();
        let node = &self.manifest.nodes[index];
        let Some(pid) = running_pid(node) else {
            return Ok(false);
        };
        kill(Pid::from_raw(pid), signal).map_err(|e| ProcessError::Node {
            node: node.name.clone(),
            problem: format!("{signal} to pid {pid}: {e}"),
        })?;
        Ok(true)
    }

    /// SIGKILLs node `index` and waits until it is gone.
    pub fn kill(&mut self, index: usize) -> Result<(), ProcessError> {
        if self.signal(index, Signal::SIGKILL)? {
            self.wait_gone(index, Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]. A paused node is continued first, or it
    /// could not act on the SIGTERM.
    pub fn stop(&mut self, index: usize) -> Result<(), ProcessError> {
        if !self.signal(index, Signal::SIGTERM)? {
            return Ok(());
        }
        let _ = self.signal(index, Signal::SIGCONT);
        if self.wait_gone(index, STOP_GRACE).is_err() {
            self.kill(index)?;
        }
        Ok(())
    }

    pub fn stop_all(&mut self) -> Result<(), ProcessError> {
        for index in 0..self.len() {
            let _ = self.signal(index, Signal::SIGTERM);
            let _ = self.signal(index, Signal::SIGCONT);
        }
        let mut first_error = None;
        for index in 0..self.len() {
            if let Err(e) = self.stop(index) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Waits for nodes this process started, so none is left a zombie.
    pub fn reap(&mut self) {
        for (index, slot) in self.children.iter_mut().enumerate() {
            if let Some(child) = slot
                && matches!(child.try_wait(), Ok(Some(_)))
            {
                // `chaos` may have restarted the node since: its pid file is not ours to remove.
                let path = self.manifest.nodes[index].pid_path();
                let ours = std::fs::read_to_string(&path)
                    .is_ok_and(|text| text.trim() == child.id().to_string());
                if ours {
                    let _ = std::fs::remove_file(&path);
                }
                *slot = None;
            }
        }
    }

    pub fn is_running(&mut self, index: usize) -> bool {
        self.reap();
        running_pid(&self.manifest.nodes[index]).is_some()
    }

    fn wait_gone(&mut self, index: usize, limit: Duration) -> Result<(), ProcessError> {
        let deadline = Instant::now() + limit;
        while self.is_running(index) {
            if Instant::now() > deadline {
                return Err(ProcessError::Node {
                    node: self.manifest.nodes[index].name.clone(),
                    problem: format!("still running {limit:?} after the signal"),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.reap();
    }
}

/// Threads per node when `nodes` share this machine: its cores divided among them, at least 1.
pub fn nodes_share(nodes: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores / nodes.max(1)).max(1)
}

/// The pid of node's process when its pid file names a live process running that node.
pub fn running_pid(node: &NodeEntry) -> Option<i32> {
    let text = std::fs::read_to_string(node.pid_path()).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let home = node.home.to_string_lossy();
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let names_home = args.iter().any(|arg| *arg == home.as_bytes());
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the parenthesised command name; a zombie has finished.
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
    (names_home && state != "Z").then_some(pid)
}

/// Waits until every node in `nodes` answers `status` at height ≥ `min_height`.
pub async fn wait_healthy(
    manifest: &Manifest,
    nodes: &[usize],
    min_height: u64,
    limit: Duration,
) -> Result<(), ProcessError> {
    let deadline = Instant::now() + limit;
    let clients: Vec<NodeClient> = manifest
        .nodes
        .iter()
        .map(|n| NodeClient::new(n, Duration::from_secs(2)))
        .collect();
    loop {
        let mut lagging = Vec::new();
        for &index in nodes {
            match clients[index].height().await {
                Ok(height) if height >= min_height => {}
                Ok(height) => lagging.push(format!("{} at height {height}", clients[index].name)),
                Err(e) => lagging.push(e.to_string()),
            }
        }
        if lagging.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(ProcessError::Unhealthy {
                seconds: limit.as_secs(),
                detail: lagging.join("; "),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
