//! `config/config.toml`: the node's settings, with CometBFT-like sections. Every field has a
//! default, so a file may name only what it changes; unknown fields are refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest config file read.
pub const CONFIG_BYTES_MAX: u64 = 1 << 20;

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
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// A libp2p multiaddr on loopback, e.g. `/ip4/127.0.0.1/tcp/26656`.
    pub listen: String,
    /// Peers to keep connected, each `/ip4/…/tcp/…/p2p/<peer id>`.
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
    pub max_body_bytes: u32,
    pub max_response_bytes: u32,
    pub max_connections: u32,
    pub max_batch: u32,
    pub timeout_ms: u64,
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
        let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        if meta.len() > CONFIG_BYTES_MAX {
            return Err(fail(format!(
                "{} bytes is over the cap of {CONFIG_BYTES_MAX}",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
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
        if self.rpc.max_body_bytes == 0 || self.rpc.max_connections == 0 {
            return Err("rpc limits must be positive".into());
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
