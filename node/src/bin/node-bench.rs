//! node-bench: a local network of `weft` validators under an open-loop load of transfers.
//!
//! ```text
//! cargo build --release -p weft-node --bins
//! ./target/release/node-bench --json [--validators 4] [--tps 5000] [--duration 60]
//! ```
//!
//! Phase 1 measures heights per second with no load and no commit delay. Phase 2 offers
//! pre-signed transfers at a fixed rate (each account's txs go to one node, in nonce order, in
//! JSON-RPC batches of `broadcast_tx_async`), times each tx from submission to the `NewBlock`
//! event that holds it (an `EventStream` on node 0's `/websocket`), and reports committed tx/s
//! and latency percentiles. The last line with `--json` is one object.
//!
//! All validators and the load generator share this machine's cores; each validator gets
//! `--threads` executor and signature threads (default 1) and `--runtime-threads` tokio workers
//! (default 1).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::params::{BatchRequestBuilder, ObjectParams};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use parking_lot::Mutex;
use serde_json::{Value, json};
use weft_execution::{Address, ChainId, Payload, Transaction};
use weft_genesis::{ConsensusParams, Genesis, SecretKey, read_key_file};
use weft_node::cli::{InitArgs, init};
use weft_node::config::{Config, Home};
use weft_node::rpc::api::TxText;
use weft_node::rpc::api::types::BroadcastResult;
use weft_node::rpc::{EventStream, RpcClient};

const CHAIN: &str = "weft-bench";

#[derive(Parser, Debug)]
#[command(about = "Committed tx/s and latency of a local weft network")]
struct Args {
    #[arg(long)]
    json: bool,
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Offered load, txs per second.
    #[arg(long, default_value_t = 5_000)]
    tps: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Sending accounts.
    #[arg(long, default_value_t = 2_000)]
    accounts: usize,
    /// Seconds of the no-load phase.
    #[arg(long, default_value_t = 10)]
    empty_seconds: u64,
    /// The `weft` binary (default: beside this one).
    #[arg(long)]
    weft_bin: Option<PathBuf>,
    /// Executor and signature threads per node (0: the machine's cores). The validators share
    /// this machine's cores, so one each avoids oversubscribing them.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Tokio worker threads per node (`TOKIO_WORKER_THREADS`; 0: one per core).
    #[arg(long, default_value_t = 1)]
    runtime_threads: usize,
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
    rpc: u16,
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

fn setup(
    dir: &Path,
    n: usize,
    accounts: &[SecretKey],
    threads: usize,
) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    let mut p2p = Vec::new();
    for i in 0..n {
        let home = dir.join(format!("node{i}"));
        init(&InitArgs {
            accounts: 1,
            p2p_listen: Some("/ip4/127.0.0.1/tcp/0".into()),
            ..InitArgs::joining(&home, &format!("node{i}"))
        })
        .map_err(|e| e.to_string())?;
        nodes.push(Node {
            home: Home::new(home),
            rpc: free_port(),
            child: None,
        });
        p2p.push(free_port());
    }
    let validators = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let key = read_key_file(&node.home.validator_key()).map_err(|e| e.to_string())?;
            Ok((format!("validator-{i}"), key.public(), 10))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut params = ConsensusParams::fast();
    params.timeout_commit_ms = 0;
    let genesis = Genesis::new(
        CHAIN,
        1_000,
        validators,
        accounts.iter().map(|k| (k.public(), 1 << 40)).collect(),
        params,
    )
    .map_err(|e| e.to_string())?;
    let peer_addrs: Vec<String> = nodes
        .iter()
        .zip(&p2p)
        .map(|(node, port)| {
            let key = read_key_file(&node.home.node_key()).expect("written by init");
            let peer = weft_gossip::net::keypair_from_secret(&key)
                .public()
                .to_peer_id();
            format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}")
        })
        .collect();
    for (i, node) in nodes.iter().enumerate() {
        genesis
            .save(&node.home.genesis())
            .map_err(|e| e.to_string())?;
        let mut config = Config::load(&node.home.config()).map_err(|e| e.to_string())?;
        config.p2p.listen = format!("/ip4/127.0.0.1/tcp/{}", p2p[i]);
        config.p2p.persistent_peers = peer_addrs[i + 1..].to_vec();
        config.rpc.laddr = format!("127.0.0.1:{}", node.rpc);
        config.rpc.max_batch = 1_000;
        config.rpc.max_body_bytes = 8 << 20;
        config.metrics.laddr = String::new();
        config.log_level = "warn".into();
        config.mempool.size = 200_000;
        config.execution.threads = threads;
        config
            .save(&node.home.config())
            .map_err(|e| e.to_string())?;
    }
    Ok(nodes)
}

/// The node's height. Tried three times: a request can meet a keep-alive connection the
/// server is closing as idle (`rpc.header_read_timeout_ms`, 10 s like CometBFT's).
async fn height(client: &HttpClient) -> Option<u64> {
    for _ in 0..3 {
        if let Ok(status) = client.status().await {
            return Some(status.sync_info.latest_block_height.0);
        }
    }
    None
}

/// A pre-signed transfer and the node it goes to.
struct SignedTx {
    node: usize,
    hash: [u8; 32],
    bytes: Vec<u8>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn run(args: Args) -> Result<Value, String> {
    let weft = match &args.weft_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("weft"),
    };
    let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_owned());
    let accounts: Vec<SecretKey> = (0..args.accounts)
        .map(|i| {
            let seed = blake3::hash(format!("weft-bench-account-{i}").as_bytes());
            SecretKey(*seed.as_bytes())
        })
        .collect();
    let mut nodes = setup(&dir, args.validators, &accounts, args.threads)?;
    for node in &mut nodes {
        let log =
            std::fs::File::create(node.home.root.join("node.log")).map_err(|e| e.to_string())?;
        let mut command = Command::new(&weft);
        command
            .args(["start", "--home"])
            .arg(&node.home.root)
            // The mempool's batched signature checks run on rayon's global pool.
            .env("RAYON_NUM_THREADS", args.threads.max(1).to_string())
            .stdout(Stdio::null())
            .stderr(log);
        if args.runtime_threads > 0 {
            command.env("TOKIO_WORKER_THREADS", args.runtime_threads.to_string());
        }
        node.child = Some(
            command
                .spawn()
                .map_err(|e| format!("{}: {e}", weft.display()))?,
        );
    }
    let clients: Vec<_> = nodes
        .iter()
        .map(|n| {
            HttpClientBuilder::default()
                .max_request_size(16 << 20)
                .request_timeout(Duration::from_secs(30))
                .build(format!("http://127.0.0.1:{}", n.rpc))
                .expect("client")
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(60);
    while height(&clients[0]).await.unwrap_or(0) < 3 {
        if Instant::now() > until {
            return Err("the network did not reach height 3 in 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Phase 1: empty heights per second.
    let unreachable = || "node 0 does not answer status".to_string();
    let h0 = height(&clients[0]).await.ok_or_else(unreachable)?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.empty_seconds)).await;
    let h1 = height(&clients[0]).await.ok_or_else(unreachable)?;
    let empty_heights_per_s = (h1 - h0) as f64 / t0.elapsed().as_secs_f64();
    eprintln!(
        "empty: {empty_heights_per_s:.1} heights/s over {} heights",
        h1 - h0
    );

    // Phase 2: pre-signed transfers, account a's txs in nonce order, to node a % n.
    let total = (args.tps * args.duration) as usize;
    let per_account = total.div_ceil(args.accounts);
    let chain_id = ChainId::new(CHAIN).map_err(|e| e.to_string())?;
    eprintln!("signing {total} txs");
    let mut txs: Vec<SignedTx> = Vec::with_capacity(total);
    'sign: for nonce in 0..per_account as u64 {
        for (a, key) in accounts.iter().enumerate() {
            if txs.len() == total {
                break 'sign;
            }
            let to = Address(accounts[(a + 1) % accounts.len()].public());
            let tx = Transaction::sign(
                chain_id.clone(),
                &key.signing_key(),
                nonce,
                Payload::Transfer { to, amount: 1 },
            );
            txs.push(SignedTx {
                node: a % nodes.len(),
                hash: tx.hash().0,
                bytes: tx.encode(),
            });
        }
    }
    let submitted: Arc<Mutex<HashMap<[u8; 32], Instant>>> =
        Arc::new(Mutex::new(HashMap::with_capacity(total)));
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let mut blocks = EventStream::subscribe(
        &format!("127.0.0.1:{}", nodes[0].rpc),
        "tm.event='NewBlock'",
    )
    .await
    .map_err(|e| e.to_string())?;
    let (sub, lat) = (submitted.clone(), latencies.clone());
    let (stop_watching, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        let mut last_commit = Instant::now();
        loop {
            let event = tokio::select! {
                event = blocks.next_block() => event,
                _ = &mut stopped => break,
            };
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    eprintln!("the NewBlock subscription ended: {error}");
                    break;
                }
            };
            let now = Instant::now();
            let mut sub = sub.lock();
            let mut lat = lat.lock();
            for tx in &event.block.data.txs {
                // Weft's tx hash: blake3 of the tx's bytes.
                if let Some(at) = sub.remove(blake3::hash(&tx.0).as_bytes()) {
                    lat.push(now.duration_since(at).as_secs_f64());
                    last_commit = now;
                }
            }
        }
        last_commit
    });
    let tick = Duration::from_millis(20);
    let per_tick = ((args.tps as f64) * tick.as_secs_f64()).ceil() as usize;
    let start = Instant::now();
    let mut rejected: HashMap<u32, u64> = HashMap::new();
    let mut sent = 0usize;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut in_flight = Vec::new();
    while sent < total {
        interval.tick().await;
        let chunk = &txs[sent..(sent + per_tick).min(total)];
        sent += chunk.len();
        let mut by_node: Vec<Vec<&SignedTx>> = vec![Vec::new(); nodes.len()];
        for tx in chunk {
            by_node[tx.node].push(tx);
        }
        let now = Instant::now();
        {
            let mut sub = submitted.lock();
            for tx in chunk {
                sub.insert(tx.hash, now);
            }
        }
        for (node, batch) in by_node.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            // The typed client has no batches: the same method and params, by hand.
            let mut builder = BatchRequestBuilder::new();
            for tx in &batch {
                let mut params = ObjectParams::new();
                params
                    .insert("tx", TxText::from(tx.bytes.clone()))
                    .map_err(|e| e.to_string())?;
                builder
                    .insert("broadcast_tx_async", params)
                    .map_err(|e| e.to_string())?;
            }
            let client = clients[node].clone();
            in_flight.push(tokio::spawn(async move {
                client
                    .batch_request::<BroadcastResult>(builder)
                    .await
                    .map(|r| {
                        r.into_iter()
                            .filter_map(|r| r.ok())
                            .map(|result| result.code)
                            .filter(|c| *c != 0)
                            .collect::<Vec<_>>()
                    })
            }));
        }
    }
    let offered_s = start.elapsed().as_secs_f64();
    for task in in_flight {
        if let Ok(Ok(codes)) = task.await {
            for code in codes {
                *rejected.entry(code).or_default() += 1;
            }
        }
    }
    // Let the tail commit.
    let drain_until = Instant::now() + Duration::from_secs(15);
    while !submitted.lock().is_empty() && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_watching.send(());
    let last_commit = watcher.await.unwrap_or_else(|_| Instant::now());
    let mut lat = latencies.lock().clone();
    lat.sort_by(f64::total_cmp);
    let committed = lat.len();
    let window = last_commit
        .duration_since(start)
        .as_secs_f64()
        .max(offered_s);
    let result = json!({
        "validators": args.validators,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "offered_tps": args.tps,
        "offered_seconds": offered_s,
        "sent": total,
        "committed": committed,
        "committed_tps": committed as f64 / window,
        "p50_ms": percentile(&lat, 0.50) * 1e3,
        "p90_ms": percentile(&lat, 0.90) * 1e3,
        "p99_ms": percentile(&lat, 0.99) * 1e3,
        "max_ms": lat.last().copied().unwrap_or(f64::NAN) * 1e3,
        "rejected": rejected.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "empty_heights_per_s": empty_heights_per_s,
    });
    for node in &mut nodes {
        if let Some(mut child) = node.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
    Ok(result)
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
            println!(
                "committed {} of {} txs: {:.0} tx/s; latency p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms; empty heights/s {:.1}",
                result["committed"],
                result["sent"],
                result["committed_tps"].as_f64().unwrap_or(0.0),
                result["p50_ms"].as_f64().unwrap_or(f64::NAN),
                result["p90_ms"].as_f64().unwrap_or(f64::NAN),
                result["p99_ms"].as_f64().unwrap_or(f64::NAN),
                result["max_ms"].as_f64().unwrap_or(f64::NAN),
                result["empty_heights_per_s"].as_f64().unwrap_or(0.0)
            );
            if json_out {
                println!("{result}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("node-bench: {error}");
            ExitCode::FAILURE
        }
    }
}
