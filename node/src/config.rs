//! `config/config.toml`: the node's settings, with CometBFT-like sections. Every field has a
//! default, so a file may name only what it changes; unknown fields are refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest config file read.
pub const CONFIG_BYTES_MAX: u64 = 1 << 20;
/// Longest timeout a config may set (one hour): past it a value is a typo, and timers would
/// overflow near `u64::MAX`.
pub const TIMEOUT_MS_MAX: u64 = 3_600_000;
/// Most executor threads a config may ask for.
pub const EXECUTION_THREADS_MAX: usize = 1_024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// A name for this node, shown by `status`.
    pub moniker: String,
    /// Log filter (`tracing` syntax); `RUST_LOG` overrides it.
    pub log_level: String,
    pub p2p: P2pConfig,
    pub rpc: RpcConfig,
    pub consensus: ConsensusConfig,
    pub mempool: MempoolSection,
    pub execution: ExecutionConfig,
    pub metrics: MetricsConfig,
    pub storage: StorageConfig,
    pub statesync: StateSyncSection,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// Where peers reach this node, a libp2p multiaddr: `/ip4/0.0.0.0/tcp/26656` (every
    /// interface) for a node of a network across hosts, `/ip4/127.0.0.1/tcp/26656` for a local
    /// one (the default).
    pub listen: String,
    /// Peers to keep connected, each `/ip4/<address>/tcp/<port>/p2p/<peer id>` or
    /// `/dns4/<host name>/tcp/<port>/p2p/<peer id>` (as `weft keys show --host` prints them).
    pub persistent_peers: Vec<String>,
    /// The overlay degree the testnet tool used for this node (informational).
    pub degree: usize,
    /// `semantic` or `plain`.
    pub gossip: String,
    pub max_connections: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    pub laddr: String,
    /// Largest request body; a larger one is answered -32007 (HTTP 413).
    pub max_body_bytes: u32,
    /// Largest response body; a larger one is answered -32008.
    pub max_response_bytes: u32,
    /// Most open TCP connections (HTTP and WebSocket together). A connection over the limit is
    /// answered HTTP 503 and closed at once; the others are served as before.
    pub max_connections: u32,
    /// Most calls in one JSON-RPC batch (a larger batch is answered -32010); 0 disables batches.
    pub max_batch: u32,
    /// How long one method may run before it is answered -32004.
    pub timeout_ms: u64,
    /// How long a connection has to send a complete request head (request line and headers),
    /// counted from when the server starts waiting for it; a keep-alive connection idle that
    /// long is closed too. Bounds slowloris clients that trickle their headers.
    pub header_read_timeout_ms: u64,
    /// How long a request body may take to arrive once its head has: a body still incomplete
    /// then is answered HTTP 408 (-32005) and its connection closed. Bounds clients that
    /// trickle a body.
    pub body_read_timeout_ms: u64,
    /// How long a write to a connection may wait for the client to read before the connection
    /// is closed. Bounds clients that ask and never read the answer.
    pub write_stall_timeout_ms: u64,
    /// How long `broadcast_tx_commit` waits for the tx to commit.
    pub commit_timeout_ms: u64,
    /// Serves the `unsafe_*` methods (`unsafe_set_isolated`: cut the node off from its peers,
    /// for chaos tests), as CometBFT's `rpc.unsafe` does. Off by default; never turn it on
    /// where anyone but the operator can reach the RPC address.
    #[serde(rename = "unsafe")]
    pub unsafe_routes: bool,
}

/// Consensus timings: `None` takes the genesis value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusConfig {
    pub timeout_propose_ms: Option<u64>,
    pub timeout_prevote_ms: Option<u64>,
    pub timeout_precommit_ms: Option<u64>,
    pub timeout_commit_ms: Option<u64>,
    /// Whether to propose blocks with no txs (when false, a proposer waits for txs, up to the
    /// propose timeout).
    pub create_empty_blocks: bool,
    /// Block limits for this node's proposals; `None` takes the genesis limits.
    pub block_max_txs: Option<u64>,
    pub block_max_bytes: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolSection {
    pub size: usize,
    pub max_bytes: usize,
    pub tx_bytes_max: usize,
    pub cache_size: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutionConfig {
    /// Executor threads; 0 takes the machine's cores.
    pub threads: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Prometheus listen address; empty disables the endpoint.
    pub laddr: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The data directory, relative to the home.
    pub data_dir: String,
    /// Blocks kept (with their certificates, results and tx index): the last this many; 0
    /// keeps every block. Never prunes at or above the oldest snapshot kept. At least
    /// [`EVIDENCE_AGE_MAX`](crate::chain::EVIDENCE_AGE_MAX) when set, so every block's evidence
    /// can still be judged.
    pub retain_blocks: u64,
    /// Take a state snapshot at every height that is a multiple of this, for joining nodes to
    /// state-sync from; 0 takes none (CometBFT's `statesync.snapshot_interval`).
    pub snapshot_interval: u64,
    /// Snapshots kept; older ones are removed.
    pub snapshot_keep: usize,
}

/// `[statesync]`: how a new node joins by restoring a peer's snapshot instead of replaying
/// every block (CometBFT's section of the same name).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSyncSection {
    /// State-sync when the chain database is empty (a node that holds blocks starts as usual).
    pub enable: bool,
    /// A height and its block hash (hex) this node trusts, as CometBFT's light client takes
    /// them; 0 and empty trust the genesis validators instead (for a young chain).
    pub trust_height: u64,
    pub trust_hash: String,
    /// How long to ask peers for their snapshots before choosing one.
    pub discovery_time_ms: u64,
    /// Chunk requests in flight at once, spread over the peers that offer the snapshot.
    pub chunk_fetchers: usize,
}

/// Most snapshots a config may keep.
pub const SNAPSHOT_KEEP_MAX: usize = 64;
/// Most chunk requests in flight a config may ask for.
pub const CHUNK_FETCHERS_MAX: usize = 64;

impl Default for StateSyncSection {
    fn default() -> Self {
        StateSyncSection {
            enable: false,
            trust_height: 0,
            trust_hash: String::new(),
            discovery_time_ms: 2_000,
            chunk_fetchers: 4,
        }
    }
}

impl StateSyncSection {
    /// The trust anchor: `None` trusts the genesis.
    pub fn anchor(&self) -> Result<Option<(u64, [u8; 32])>, String> {
        match (self.trust_height, self.trust_hash.as_str()) {
            (0, "") => Ok(None),
            (0, _) | (_, "") => Err(
                "statesync.trust_height and statesync.trust_hash go together (or neither, to \
                 trust the genesis)"
                    .into(),
            ),
            (height, hash) => {
                let hash = hash.strip_prefix("0x").unwrap_or(hash);
                let bytes: [u8; 32] = hex::decode(hash)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| {
                        format!("statesync.trust_hash {hash:?} is not 32 bytes of hex")
                    })?;
                Ok(Some((height, bytes)))
            }
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            moniker: "weft-node".into(),
            log_level: "info".into(),
            p2p: P2pConfig::default(),
            rpc: RpcConfig::default(),
            consensus: ConsensusConfig::default(),
            mempool: MempoolSection::default(),
            execution: ExecutionConfig::default(),
            metrics: MetricsConfig::default(),
            storage: StorageConfig::default(),
            statesync: StateSyncSection::default(),
        }
    }
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            listen: "/ip4/127.0.0.1/tcp/26656".into(),
            persistent_peers: Vec::new(),
            degree: 4,
            gossip: "semantic".into(),
            max_connections: 64,
        }
    }
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            laddr: "127.0.0.1:26657".into(),
            max_body_bytes: 1 << 20,
            max_response_bytes: 16 << 20,
            max_connections: 256,
            max_batch: 64,
            timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            write_stall_timeout_ms: 10_000,
            commit_timeout_ms: 10_000,
            unsafe_routes: false,
        }
    }
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        ConsensusConfig {
            timeout_propose_ms: None,
            timeout_prevote_ms: None,
            timeout_precommit_ms: None,
            timeout_commit_ms: None,
            create_empty_blocks: true,
            block_max_txs: None,
            block_max_bytes: None,
        }
    }
}

impl Default for MempoolSection {
    fn default() -> Self {
        MempoolSection {
            size: 50_000,
            max_bytes: 64 << 20,
            tx_bytes_max: weft_execution::tx::TX_BYTES_MAX,
            cache_size: 100_000,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            laddr: "127.0.0.1:26660".into(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: "data".into(),
            retain_blocks: 0,
            snapshot_interval: 0,
            snapshot_keep: 2,
        }
    }
}

#[derive(Debug, Error)]
#[error("config file {}: {problem}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub problem: String,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |problem: String| ConfigError {
            path: path.to_owned(),
            problem,
        };
        let too_large =
            |len: u64| fail(format!("{len} bytes is over the cap of {CONFIG_BYTES_MAX}"));
        let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        let len = file.metadata().map_err(|e| fail(e.to_string()))?.len();
        if len > CONFIG_BYTES_MAX {
            return Err(too_large(len));
        }
        // Bounded again, in case the file grows between the two reads.
        let mut bytes = Vec::with_capacity(len as usize);
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, CONFIG_BYTES_MAX + 1),
            &mut bytes,
        )
        .map_err(|e| fail(e.to_string()))?;
        if bytes.len() as u64 > CONFIG_BYTES_MAX {
            return Err(too_large(bytes.len() as u64));
        }
        let text = String::from_utf8(bytes).map_err(|e| fail(format!("not UTF-8: {e}")))?;
        let config: Config = toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
        config.validate().map_err(fail)?;
        Ok(config)
    }

    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let text = toml::to_string_pretty(self).map_err(|e| ConfigError {
            path: path.to_owned(),
            problem: e.to_string(),
        })?;
        std::fs::write(path, text).map_err(|e| ConfigError {
            path: path.to_owned(),
            problem: e.to_string(),
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.p2p.gossip.as_str(), "semantic" | "plain") {
            return Err(format!(
                "p2p.gossip is {:?}, not \"semantic\" or \"plain\"",
                self.p2p.gossip
            ));
        }
        self.p2p
            .listen
            .parse::<libp2p::Multiaddr>()
            .map_err(|e| format!("p2p.listen {:?}: {e}", self.p2p.listen))?;
        for peer in &self.p2p.persistent_peers {
            peer.parse::<libp2p::Multiaddr>()
                .map_err(|e| format!("p2p.persistent_peers entry {peer:?}: {e}"))?;
        }
        self.rpc
            .laddr
            .parse::<std::net::SocketAddr>()
            .map_err(|e| format!("rpc.laddr {:?}: {e}", self.rpc.laddr))?;
        if !self.metrics.laddr.is_empty() {
            self.metrics
                .laddr
                .parse::<std::net::SocketAddr>()
                .map_err(|e| format!("metrics.laddr {:?}: {e}", self.metrics.laddr))?;
        }
        if self.mempool.size == 0 || self.mempool.max_bytes == 0 {
            return Err("mempool.size and mempool.max_bytes must be positive".into());
        }
        crate::mempool::MempoolConfig {
            size: self.mempool.size,
            max_bytes: self.mempool.max_bytes,
            tx_bytes_max: self.mempool.tx_bytes_max,
            cache_size: self.mempool.cache_size,
            ..crate::mempool::MempoolConfig::default()
        }
        .validate()
        .map_err(|e| e.to_string())?;
        self.validate_storage()?;
        self.validate_limits()
    }

    fn validate_storage(&self) -> Result<(), String> {
        let storage = &self.storage;
        let age = crate::chain::EVIDENCE_AGE_MAX;
        if storage.retain_blocks != 0 && storage.retain_blocks < age {
            return Err(format!(
                "storage.retain_blocks is {}: 0 (keep every block) or at least {age} (the \
                 evidence age limit)",
                storage.retain_blocks
            ));
        }
        if storage.snapshot_keep == 0 || storage.snapshot_keep > SNAPSHOT_KEEP_MAX {
            return Err(format!(
                "storage.snapshot_keep is {}, not 1 to {SNAPSHOT_KEEP_MAX}",
                storage.snapshot_keep
            ));
        }
        let sync = &self.statesync;
        sync.anchor()?;
        if sync.chunk_fetchers == 0 || sync.chunk_fetchers > CHUNK_FETCHERS_MAX {
            return Err(format!(
                "statesync.chunk_fetchers is {}, not 1 to {CHUNK_FETCHERS_MAX}",
                sync.chunk_fetchers
            ));
        }
        if sync.discovery_time_ms > TIMEOUT_MS_MAX {
            return Err(format!(
                "statesync.discovery_time_ms is {}, over {TIMEOUT_MS_MAX}",
                sync.discovery_time_ms
            ));
        }
        Ok(())
    }

    /// Zero limits and absurd sizes: each is refused with the field it names.
    fn validate_limits(&self) -> Result<(), String> {
        let rpc = &self.rpc;
        let positive = [
            ("rpc.max_body_bytes", u64::from(rpc.max_body_bytes)),
            ("rpc.max_response_bytes", u64::from(rpc.max_response_bytes)),
            ("rpc.max_connections", u64::from(rpc.max_connections)),
            ("p2p.max_connections", u64::from(self.p2p.max_connections)),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(format!("{field} must be positive"));
            }
        }
        let rpc_timeouts = [
            ("rpc.timeout_ms", rpc.timeout_ms),
            ("rpc.commit_timeout_ms", rpc.commit_timeout_ms),
            ("rpc.header_read_timeout_ms", rpc.header_read_timeout_ms),
            ("rpc.body_read_timeout_ms", rpc.body_read_timeout_ms),
            ("rpc.write_stall_timeout_ms", rpc.write_stall_timeout_ms),
        ];
        for (field, ms) in rpc_timeouts {
            if ms == 0 || ms > TIMEOUT_MS_MAX {
                return Err(format!("{field} is {ms}, not 1 to {TIMEOUT_MS_MAX}"));
            }
        }
        let c = &self.consensus;
        let consensus_timeouts = [
            ("consensus.timeout_propose_ms", c.timeout_propose_ms),
            ("consensus.timeout_prevote_ms", c.timeout_prevote_ms),
            ("consensus.timeout_precommit_ms", c.timeout_precommit_ms),
            ("consensus.timeout_commit_ms", c.timeout_commit_ms),
        ];
        for (field, ms) in consensus_timeouts {
            if ms.is_some_and(|ms| ms > TIMEOUT_MS_MAX) {
                return Err(format!("{field} is over {TIMEOUT_MS_MAX}"));
            }
        }
        for (field, value) in [
            ("consensus.block_max_txs", c.block_max_txs),
            ("consensus.block_max_bytes", c.block_max_bytes),
        ] {
            if value == Some(0) {
                return Err(format!(
                    "{field} must be positive (leave it out for the genesis limit)"
                ));
            }
        }
        if self.execution.threads > EXECUTION_THREADS_MAX {
            return Err(format!(
                "execution.threads is {}, over {EXECUTION_THREADS_MAX}",
                self.execution.threads
            ));
        }
        Ok(())
    }

    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.rpc.timeout_ms)
    }
}

/// The paths of a home directory (DESIGN §7).
#[derive(Clone, Debug)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }
    pub fn config(&self) -> PathBuf {
        self.config_dir().join("config.toml")
    }
    pub fn genesis(&self) -> PathBuf {
        self.config_dir().join("genesis.json")
    }
    pub fn validator_key(&self) -> PathBuf {
        self.config_dir().join("validator_key.json")
    }
    pub fn node_key(&self) -> PathBuf {
        self.config_dir().join("node_key.json")
    }
    pub fn data(&self, config: &Config) -> PathBuf {
        self.root.join(&config.storage.data_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_config_loads_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let mut config = Config::default();
        config.rpc.unsafe_routes = true;
        config.p2p.persistent_peers = vec!["/ip4/127.0.0.1/tcp/1".into()];
        config.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), config);
    }

    #[test]
    fn unsafe_routes_are_off_unless_rpc_unsafe_is_set() {
        let parse = |text: &str| toml::from_str::<Config>(text).map(|c| c.rpc.unsafe_routes);
        assert!(!Config::default().rpc.unsafe_routes);
        assert!(!parse("").unwrap());
        assert!(parse("[rpc]\nunsafe = true\n").unwrap());
        assert!(parse("[rpc]\nunsafe_routes = true\n").is_err());
        let saved = toml::to_string_pretty(&Config::default()).unwrap();
        assert!(saved.contains("unsafe = false"), "{saved}");
    }
}
