//! Real `weft` processes on loopback: homes, genesis for N validators, start/kill/restart, and
//! the node's typed RPC client (`weft_node::rpc::RpcClient`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jsonrpsee::core::ClientError;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use weft_execution::{ChainId, Payload, Transaction};
use weft_genesis::{ConsensusParams, Genesis, SecretKey, read_key_file};
use weft_node::config::{Config, Home};
use weft_node::rpc::api::encoding::Int;
use weft_node::rpc::api::types::{BlockResult, BroadcastCommitResult};
use weft_node::rpc::{INTERNAL_ERROR_CODE, RpcClient};

pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct TestNode {
    pub home: Home,
    pub rpc_port: u16,
    pub p2p_port: u16,
    pub child: Option<Child>,
    pub env: Vec<(String, String)>,
}

impl TestNode {
    /// `weft init` into `dir`, then loopback ports and short timings.
    pub fn init(dir: &Path, chain_id: &str, moniker: &str) -> TestNode {
        let status = Command::new(WEFT)
            .args(["init", "--single-validator", "--accounts", "4", "--home"])
            .arg(dir)
            .args(["--chain-id", chain_id, "--moniker", moniker])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "weft init failed");
        let node = TestNode {
            home: Home::new(dir),
            rpc_port: free_port(),
            p2p_port: free_port(),
            child: None,
            env: Vec::new(),
        };
        node.configure(|config| {
            config.p2p.listen = format!("/ip4/127.0.0.1/tcp/{}", node.p2p_port);
            config.rpc.laddr = format!("127.0.0.1:{}", node.rpc_port);
            config.metrics.laddr = format!("127.0.0.1:{}", free_port());
            config.log_level = "info".into();
            config.execution.threads = 2;
        });
        node
    }

    pub fn configure(&self, edit: impl FnOnce(&mut Config)) {
        let mut config = Config::load(&self.home.config()).unwrap();
        edit(&mut config);
        config.save(&self.home.config()).unwrap();
    }

    pub fn validator_key(&self) -> SecretKey {
        read_key_file(&self.home.validator_key()).unwrap()
    }

    pub fn peer_addr(&self) -> String {
        let key = read_key_file(&self.home.node_key()).unwrap();
        let peer = weft_gossip::net::keypair_from_secret(&key)
            .public()
            .to_peer_id();
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", self.p2p_port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.home.root.join("node.log")
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(WEFT)
            .args(["start", "--home"])
            .arg(&self.home.root)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL, no cleanup.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM without waiting (to stop several nodes at the same moment).
    pub fn term(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The node's RPC: call the methods of [`RpcClient`] on it.
    pub fn client(&self) -> HttpClient {
        HttpClientBuilder::default()
            .request_timeout(Duration::from_secs(30))
            .build(format!("http://127.0.0.1:{}", self.rpc_port))
            .unwrap()
    }

    /// `host:port` of the RPC, as [`weft_node::rpc::EventStream::subscribe`] takes it.
    pub fn rpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.rpc_port)
    }

    pub async fn height(&self) -> Option<u64> {
        let status = self.client().status().await.ok()?;
        Some(status.sync_info.latest_block_height.0)
    }

    /// The block at `height`, which the node must hold.
    pub async fn block(&self, height: u64) -> BlockResult {
        self.client()
            .block(Some(Int(height)))
            .await
            .unwrap_or_else(|e| panic!("block {height}: {e}"))
    }

    /// The hash of the block at `height`, which the node must hold.
    pub async fn block_hash(&self, height: u64) -> [u8; 32] {
        self.block(height)
            .await
            .block_id
            .hash
            .require("block_id.hash")
            .unwrap()
    }

    /// `GET target` (CometBFT's URI form) on a fresh connection: the JSON body.
    pub async fn get(&self, target: &str) -> serde_json::Value {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.rpc_port))
                .await
                .expect("connect to RPC");
            let request =
                format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.expect("send");
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.expect("read");
            response
        };
        let response = tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .unwrap_or_else(|_| panic!("GET {target} did not end"));
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {target}: {e}: {body}"))
    }

    /// Waits until RPC answers `status`.
    pub async fn wait_rpc(&self) {
        let until = Instant::now() + DEADLINE;
        while self.client().status().await.is_err() {
            assert!(
                Instant::now() < until,
                "RPC never answered; log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_height(&self, height: u64) {
        let until = Instant::now() + DEADLINE;
        loop {
            if self.height().await.is_some_and(|h| h >= height) {
                return;
            }
            assert!(
                Instant::now() < until,
                "node {} did not reach height {height}; log:\n{}",
                self.home.root.display(),
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `n` validator homes under `dir` sharing one genesis (power 10 each, the accounts of node 0's
/// home funded), each dialling the nodes above it, with fast timeouts.
pub fn network(dir: &Path, n: usize, chain_id: &str) -> Vec<TestNode> {
    network_at(dir, n, chain_id, None)
}

/// [`network`] with the genesis time given (for chains built offline, whose blocks must not
/// lie in the future), or the first home's.
pub fn network_at(
    dir: &Path,
    n: usize,
    chain_id: &str,
    genesis_time_ms: Option<u64>,
) -> Vec<TestNode> {
    let nodes: Vec<TestNode> = (0..n)
        .map(|i| TestNode::init(&dir.join(format!("node{i}")), chain_id, &format!("node{i}")))
        .collect();
    let first = Genesis::load(&nodes[0].home.genesis()).unwrap();
    let validators = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| (format!("validator-{i}"), node.validator_key().public(), 10))
        .collect();
    let accounts = first
        .accounts
        .iter()
        .map(|a| (a.address().unwrap().0, a.balance))
        .collect();
    let genesis = Genesis::new(
        chain_id,
        genesis_time_ms.unwrap_or(first.genesis_time_ms()),
        validators,
        accounts,
        ConsensusParams::fast(),
    )
    .unwrap();
    for (i, node) in nodes.iter().enumerate() {
        genesis.save(&node.home.genesis()).unwrap();
        let peers: Vec<String> = nodes[i + 1..].iter().map(|p| p.peer_addr()).collect();
        node.configure(|config| config.p2p.persistent_peers = peers);
    }
    nodes
}

/// A full node's home under `dir` with the network's genesis, dialling `peers`.
pub fn full_node(dir: &Path, chain_id: &str, network: &[TestNode]) -> TestNode {
    let node = TestNode::init(dir, chain_id, "full");
    std::fs::copy(network[0].home.genesis(), node.home.genesis()).unwrap();
    let peers: Vec<String> = network.iter().map(TestNode::peer_addr).collect();
    node.configure(|config| config.p2p.persistent_peers = peers);
    node
}

/// Builds `heights` blocks offline onto node 0's chain (the validators' keys sign them) and
/// copies the database to every other node in `to`. Returns the last height.
pub fn grow_chain(
    nodes: &[TestNode],
    to: &[&TestNode],
    heights: u64,
    txs: impl FnMut(weft_consensus::Height) -> Vec<Transaction>,
) -> u64 {
    let genesis = Genesis::load(&nodes[0].home.genesis()).unwrap();
    let keys: Vec<_> = nodes
        .iter()
        .map(|node| node.validator_key().signing_key())
        .collect();
    let chain_dir = |node: &TestNode| node.home.root.join("data").join("chain");
    std::fs::create_dir_all(chain_dir(&nodes[0])).unwrap();
    let top =
        weft_node::fixture::grow(&chain_dir(&nodes[0]), genesis, &keys, heights, txs).unwrap();
    for node in to {
        let _ = std::fs::remove_dir_all(chain_dir(node));
        weft_node::fixture::copy_dir(&chain_dir(&nodes[0]), &chain_dir(node)).unwrap();
    }
    top.0
}

/// The reason CometBFT gives in `data` for a call refused with -32603 "Internal error"; panics
/// on a result or any other failure.
pub fn internal_error<T: std::fmt::Debug>(result: Result<T, ClientError>) -> String {
    let error = match result {
        Err(ClientError::Call(error)) => error,
        other => panic!("expected an Internal error, got {other:?}"),
    };
    assert_eq!(
        (error.code(), error.message()),
        (INTERNAL_ERROR_CODE, "Internal error"),
        "{error}"
    );
    let data = error.data().unwrap_or_else(|| panic!("no reason: {error}"));
    serde_json::from_str(data.get())
        .unwrap_or_else(|e| panic!("data is not a string ({e}): {error}"))
}

/// The tx of `result` was admitted and executed without error. The node leaves `tx_result`
/// empty (code 0) when the check refused the tx, so both codes count.
pub fn committed_ok(result: &BroadcastCommitResult) -> bool {
    result.check_tx.code == 0 && result.tx_result.code == 0 && result.height.0 > 0
}

/// The funded account keys `weft init` wrote into a home.
pub fn account_keys(home: &Home) -> Vec<SecretKey> {
    let mut keys = Vec::new();
    for i in 0.. {
        let path = home.config_dir().join(format!("account-{i}.json"));
        if !path.exists() {
            break;
        }
        keys.push(read_key_file(&path).unwrap());
    }
    keys
}

/// A signed transfer's bytes (`.into()` makes the `tx` param).
pub fn transfer(
    chain_id: &str,
    from: &SecretKey,
    nonce: u64,
    to: [u8; 32],
    amount: u64,
) -> Vec<u8> {
    let tx = Transaction::sign(
        ChainId::new(chain_id).unwrap(),
        &from.signing_key(),
        nonce,
        Payload::Transfer {
            to: weft_execution::Address(to),
            amount,
        },
    );
    tx.encode()
}
