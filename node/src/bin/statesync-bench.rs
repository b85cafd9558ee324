//! statesync-bench: how long a new node takes to be in consensus on a long chain, by state
//! sync against block sync from genesis, measured in one run.
//!
//! ```text
//! cargo build --release -p weft-node --bins
//! ./target/release/statesync-bench --json [--heights 20000,100000] [--accounts 100000]
//! ```
//!
//! For each chain length: four validators share a genesis with `--accounts` funded accounts;
//! the chain is built offline by their keys (`weft_node::fixture`, the real build and commit
//! path) and copied to each; they start, go on deciding heights and take snapshots every
//! `--snapshot-interval` heights. Once the first snapshot is written, a new full node joins by
//! state sync (trusting the genesis validators), and after it another by block sync from
//! genesis. Each is timed from its start until it is in consensus: not `catching_up`, and
//! within two heights of the validators' height at that moment (which keeps rising: the
//! validators decide heights as fast as they can meanwhile). The last line with `--json` is
//! one object.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use ed25519_dalek::SigningKey;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use serde_json::{Value, json};
use weft_genesis::{ConsensusParams, Genesis, read_key_file};
use weft_node::cli::{InitArgs, init};
use weft_node::config::{Config, Home};
use weft_node::fixture::{copy_dir, dir_size, now_ms};
use weft_node::rpc::RpcClient;

const CHAIN: &str = "weft-statesync-bench";

#[derive(Parser, Debug)]
#[command(about = "Time for a new node to join a long chain: state sync against block sync")]
struct Args {
    #[arg(long)]
    json: bool,
    /// Chain lengths to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "20000,100000")]
    heights: Vec<u64>,
    /// Funded accounts in the genesis (the state a snapshot carries).
    #[arg(long, default_value_t = 100_000)]
    accounts: u32,
    #[arg(long, default_value_t = 100)]
    snapshot_interval: u64,
    /// Give up on one join after this many seconds.
    #[arg(long, default_value_t = 1_800)]
    join_timeout: u64,
    /// The `weft` binary (default: beside this one).
    #[arg(long)]
    weft_bin: Option<PathBuf>,
    /// Keep the homes (and logs) here instead of a temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

struct Node {
    home: Home,
    rpc: HttpClient,
    p2p: String,
    child: Option<Child>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Node {
    fn new(dir: &Path, name: &str) -> Result<Node, String> {
        let root = dir.join(name);
        init(&InitArgs {
            p2p_listen: Some("/ip4/127.0.0.1/tcp/0".into()),
            ..InitArgs::joining(&root, name)
        })
        .map_err(|e| e.to_string())?;
        let home = Home::new(root);
        let (rpc_port, p2p_port) = (free_port(), free_port());
        let key = read_key_file(&home.node_key()).map_err(|e| e.to_string())?;
        let peer = weft_gossip::net::keypair_from_secret(&key)
            .public()
            .to_peer_id();
        let mut config = Config::load(&home.config()).map_err(|e| e.to_string())?;
        config.p2p.listen = format!("/ip4/127.0.0.1/tcp/{p2p_port}");
        config.rpc.laddr = format!("127.0.0.1:{rpc_port}");
        config.metrics.laddr = String::new();
        config.log_level = "info".into();
        config.execution.threads = 1;
        config.save(&home.config()).map_err(|e| e.to_string())?;
        Ok(Node {
            home,
            rpc: HttpClientBuilder::default()
                .request_timeout(Duration::from_secs(30))
                .build(format!("http://127.0.0.1:{rpc_port}"))
                .map_err(|e| e.to_string())?,
            p2p: format!("/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{peer}"),
            child: None,
        })
    }

    fn configure(&self, edit: impl FnOnce(&mut Config)) -> Result<(), String> {
        let mut config = Config::load(&self.home.config()).map_err(|e| e.to_string())?;
        edit(&mut config);
        config.save(&self.home.config()).map_err(|e| e.to_string())
    }

    fn start(&mut self, weft: &Path) -> Result<(), String> {
        let log =
            std::fs::File::create(self.home.root.join("node.log")).map_err(|e| e.to_string())?;
        let child = Command::new(weft)
            .args(["start", "--home"])
            .arg(&self.home.root)
            .env("TOKIO_WORKER_THREADS", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", weft.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Height and whether the node says it is catching up.
    async fn status(&self) -> Option<(u64, bool)> {
        let sync = self.rpc.status().await.ok()?.sync_info;
        Some((sync.latest_block_height.0, sync.catching_up))
    }

    fn chain_dir(&self) -> PathBuf {
        self.home.root.join("data").join("chain")
    }
}

/// Starts `joiner` and times it until it is in consensus with `validators`.
async fn join(
    joiner: &mut Node,
    validators: &[Node],
    weft: &Path,
    timeout: Duration,
) -> Result<(f64, u64), String> {
    let started = Instant::now();
    joiner.start(weft)?;
    loop {
        // In consensus: not catching up, and within two heights of the validators now.
        let tip = validators[0].status().await.map_or(u64::MAX, |(h, _)| h);
        if let Some((height, catching_up)) = joiner.status().await
            && !catching_up
            && height + 2 >= tip
        {
            return Ok((started.elapsed().as_secs_f64(), height));
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "{} did not join within {timeout:?}",
                joiner.home.root.display()
            ));
        }
        if let Some(child) = joiner.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            return Err(format!(
                "{} exited with {status}; see its node.log",
                joiner.home.root.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn measure(args: &Args, dir: &Path, heights: u64, weft: &Path) -> Result<Value, String> {
    let dir = dir.join(format!("chain-{heights}"));
    let mut validators = (0..4)
        .map(|i| Node::new(&dir, &format!("validator{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let keys: Vec<SigningKey> = validators
        .iter()
        .map(|node| {
            read_key_file(&node.home.validator_key())
                .map(|k| k.signing_key())
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let accounts = (0..args.accounts)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&i.to_be_bytes());
            (
                SigningKey::from_bytes(&seed).verifying_key().to_bytes(),
                1_000_000,
            )
        })
        .collect();
    let mut params = ConsensusParams::fast();
    params.timeout_commit_ms = 0;
    // The built blocks are 10 ms apart and must all lie in the past.
    let genesis_time = now_ms() - heights * weft_node::fixture::BLOCK_INTERVAL_MS - 600_000;
    let genesis = Genesis::new(
        CHAIN,
        genesis_time,
        keys.iter()
            .enumerate()
            .map(|(i, k)| (format!("validator-{i}"), k.verifying_key().to_bytes(), 10))
            .collect(),
        accounts,
        params,
    )
    .map_err(|e| e.to_string())?;
    let built = Instant::now();
    std::fs::create_dir_all(validators[0].chain_dir()).map_err(|e| e.to_string())?;
    weft_node::fixture::grow(
        &validators[0].chain_dir(),
        genesis.clone(),
        &keys,
        heights,
        |_| Vec::new(),
    )
    .map_err(|e| e.to_string())?;
    for node in &validators[1..] {
        copy_dir(&validators[0].chain_dir(), &node.chain_dir()).map_err(|e| e.to_string())?;
    }
    let build_s = built.elapsed().as_secs_f64();
    let peers: Vec<String> = validators.iter().map(|node| node.p2p.clone()).collect();
    for (i, node) in validators.iter_mut().enumerate() {
        genesis
            .save(&node.home.genesis())
            .map_err(|e| e.to_string())?;
        node.configure(|config| {
            config.p2p.persistent_peers = peers[i + 1..].to_vec();
            config.storage.snapshot_interval = args.snapshot_interval;
        })?;
        node.start(weft)?;
    }
    let first = (heights / args.snapshot_interval + 1) * args.snapshot_interval;
    let manifest = |node: &Node| {
        node.home
            .root
            .join("data/snapshots")
            .join(first.to_string())
            .join("manifest")
    };
    let until = Instant::now() + Duration::from_secs(600);
    while !validators.iter().all(|node| manifest(node).exists()) {
        if Instant::now() > until {
            return Err(format!("no snapshot at height {first} within 10 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let chunks = std::fs::read_dir(manifest(&validators[0]).parent().unwrap_or(&dir))
        .map(|d| d.count().saturating_sub(1))
        .unwrap_or(0);
    let timeout = Duration::from_secs(args.join_timeout);
    let joiner = |name: &str, state_sync: bool| -> Result<Node, String> {
        let node = Node::new(&dir, name)?;
        genesis
            .save(&node.home.genesis())
            .map_err(|e| e.to_string())?;
        node.configure(|config| {
            config.p2p.persistent_peers = peers.clone();
            config.statesync.enable = state_sync;
            config.statesync.discovery_time_ms = 1_000;
        })?;
        Ok(node)
    };
    let mut state_synced = joiner("state-sync", true)?;
    let (state_sync_s, state_sync_height) =
        join(&mut state_synced, &validators, weft, timeout).await?;
    let mut block_synced = joiner("block-sync", false)?;
    let (block_sync_s, block_sync_height) =
        join(&mut block_synced, &validators, weft, timeout).await?;
    let result = json!({
        "heights": heights,
        "accounts": args.accounts,
        "build_s": build_s,
        "snapshot_height": first,
        "snapshot_chunks": chunks,
        "state_sync_s": state_sync_s,
        "state_sync_joined_at": state_sync_height,
        "block_sync_s": block_sync_s,
        "block_sync_joined_at": block_sync_height,
        "speedup": block_sync_s / state_sync_s,
        "validator_db_bytes": dir_size(&validators[0].chain_dir()),
        "state_synced_db_bytes": dir_size(&state_synced.chain_dir()),
        "block_synced_db_bytes": dir_size(&block_synced.chain_dir()),
    });
    println!(
        "{heights} heights, {} accounts: state sync {state_sync_s:.1} s, block sync from genesis \
         {block_sync_s:.1} s ({:.0}x); snapshot {first} in {chunks} chunks",
        args.accounts,
        block_sync_s / state_sync_s
    );
    Ok(result)
}

async fn run(args: Args) -> Result<Value, String> {
    let weft = match &args.weft_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("weft"),
    };
    let temp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().map_err(|e| e.to_string())?;
            temp.path().to_owned()
        }
    };
    let mut runs = Vec::new();
    for &heights in &args.heights {
        runs.push(measure(&args, &dir, heights, &weft).await?);
    }
    Ok(json!({
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "runs": runs,
    }))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let json_out = args.json;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(result) => {
            if json_out {
                println!("{result}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("statesync-bench: {error}");
            ExitCode::FAILURE
        }
    }
}
