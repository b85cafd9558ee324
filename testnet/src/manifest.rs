//! The testnet on disk: `<home>/testnet.json` (the manifest) and one `weft` home per node.
//!
//! [`create`] forms the network as its operators would ([`crate::ceremony`]): each home made by
//! `weft init` on its own, one genesis assembled from their public keys (the validators, each
//! node's `config/account-0.json` account, and [`Manifest::load_accounts`] funded load accounts
//! whose keys are derived from their index, so no key files are needed for them; the
//! coordinator's copy is `<home>/genesis.json`), and ports on 127.0.0.1 offset per node
//! from a base port: node `i` listens for p2p on `base + 10·i`, JSON-RPC on `base + 10·i + 1`
//! and metrics on `base + 10·i + 4` (CometBFT's 26656 / 26657 / 26660 for node 0 by default).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use weft_genesis::{ConsensusParams, SecretKey};

use crate::ceremony::{self, GenesisPlan, Member};

/// The manifest's file name under the testnet home.
pub const MANIFEST_FILE: &str = "testnet.json";
/// Largest manifest read.
const MANIFEST_BYTES_MAX: u64 = 1 << 20;
/// Most validators a local testnet may have.
pub const VALIDATORS_MAX: usize = 64;
/// Most funded load accounts.
pub const LOAD_ACCOUNTS_MAX: usize = 100_000;
/// Each load account's starting balance.
pub const LOAD_BALANCE: u64 = 1 << 50;
/// The balance of each node's `config/account-0.json` account.
pub const USER_BALANCE: u64 = 1_000_000_000;
/// Port stride between nodes.
pub const PORT_STRIDE: u16 = 10;

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
    #[error(
        "no testnet at {home}: {file} is missing (run `weft-testnet up --home {home}` first)",
        file = MANIFEST_FILE
    )]
    Missing { home: PathBuf },
    #[error("{0}")]
    Invalid(String),
    #[error("setting up {home}: {problem}")]
    Setup { home: PathBuf, problem: String },
}

/// How the testnet was made; what every subcommand reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub chain_id: String,
    /// The `weft` binary the nodes run.
    pub weft_bin: PathBuf,
    /// Arguments before `start` (`["node"]` when `weft_bin` is `weft-testnet` in node mode).
    #[serde(default)]
    pub weft_prefix: Vec<String>,
    /// Funded load accounts: indices `0..load_accounts` of [`load_key`].
    pub load_accounts: usize,
    pub gossip: String,
    pub degree: usize,
    pub timeouts: String,
    pub nodes: Vec<NodeEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub name: String,
    pub home: PathBuf,
    /// Where its RPC and metrics are reached: 127.0.0.1 for a local testnet, the host's address
    /// for a network on test hosts of their own.
    #[serde(default = "loopback_host")]
    pub host: String,
    pub p2p_port: u16,
    pub rpc_port: u16,
    pub metrics_port: u16,
    pub peer_id: String,
}

fn loopback_host() -> String {
    "127.0.0.1".into()
}

impl NodeEntry {
    pub fn rpc_url(&self) -> String {
        format!("http://{}:{}", self.host, self.rpc_port)
    }

    /// `host:port` of the RPC, where [`weft_node::rpc::EventStream`] connects.
    pub fn rpc_address(&self) -> String {
        format!("{}:{}", self.host, self.rpc_port)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}:{}/metrics", self.host, self.metrics_port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.home.join("node.log")
    }

    pub fn pid_path(&self) -> PathBuf {
        self.home.join("weft.pid")
    }
}

/// The secret key of load account `index`: a pure function of the index, so `load` needs no
/// key files.
pub fn load_key(index: usize) -> SecretKey {
    let seed = blake3::hash(format!("weft-testnet-load-account-{index}").as_bytes());
    SecretKey(*seed.as_bytes())
}

/// The secret key of the testnet's validator authority (whose `ValidatorUpdate` txs change the
/// set): a pure function, like the load keys. Local testnets only; a real network's authority
/// is an operator's own key (`weft genesis set-authority`).
pub fn authority_key() -> SecretKey {
    SecretKey(*blake3::hash(b"weft-testnet-validator-authority").as_bytes())
}

impl Manifest {
    pub fn path(home: &Path) -> PathBuf {
        home.join(MANIFEST_FILE)
    }

    pub fn load(home: &Path) -> Result<Manifest, ManifestError> {
        let path = Manifest::path(home);
        let file = |problem: String| ManifestError::File {
            path: path.clone(),
            problem,
        };
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ManifestError::Missing {
                    home: home.to_owned(),
                });
            }
            Err(e) => return Err(file(e.to_string())),
        };
        if meta.len() > MANIFEST_BYTES_MAX {
            return Err(file(format!(
                "{} bytes, over the {MANIFEST_BYTES_MAX}-byte limit",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| file(e.to_string()))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| file(e.to_string()))?;
        manifest.validate().map_err(file)?;
        Ok(manifest)
    }

    pub fn save(&self, home: &Path) -> Result<(), ManifestError> {
        let path = Manifest::path(home);
        let text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        let temp = path.with_extension("json.tmp");
        std::fs::write(&temp, text)
            .and_then(|()| std::fs::rename(&temp, &path))
            .map_err(|e| ManifestError::File {
                path,
                problem: e.to_string(),
            })
    }

    fn validate(&self) -> Result<(), String> {
        if self.nodes.is_empty() || self.nodes.len() > VALIDATORS_MAX {
            return Err(format!(
                "{} nodes; a testnet has 1 to {VALIDATORS_MAX}",
                self.nodes.len()
            ));
        }
        if self.load_accounts > LOAD_ACCOUNTS_MAX {
            return Err(format!(
                "{} load accounts, over {LOAD_ACCOUNTS_MAX}",
                self.load_accounts
            ));
        }
        Ok(())
    }
}

/// What `up` asks for.
#[derive(Clone, Debug)]
pub struct Layout {
    pub validators: usize,
    pub chain_id: String,
    pub load_accounts: usize,
    /// `semantic` or `plain`.
    pub gossip: String,
    pub degree: usize,
    /// `fast` or `default`.
    pub timeouts: String,
    pub base_port: u16,
    pub weft_bin: PathBuf,
    pub weft_prefix: Vec<String>,
    /// Executor threads per node (0: the machine's cores).
    pub threads: usize,
}

impl Layout {
    pub fn validate(&self) -> Result<(), ManifestError> {
        let bad = |problem: String| Err(ManifestError::Invalid(problem));
        if self.validators == 0 || self.validators > VALIDATORS_MAX {
            return bad(format!(
                "--validators {}: a testnet has 1 to {VALIDATORS_MAX}",
                self.validators
            ));
        }
        if self.load_accounts == 0 || self.load_accounts > LOAD_ACCOUNTS_MAX {
            return bad(format!(
                "{} load accounts: 1 to {LOAD_ACCOUNTS_MAX}",
                self.load_accounts
            ));
        }
        if !matches!(self.gossip.as_str(), "semantic" | "plain") {
            return bad(format!("--gossip {:?}: semantic or plain", self.gossip));
        }
        if !matches!(self.timeouts.as_str(), "fast" | "default") {
            return bad(format!("--timeouts {:?}: fast or default", self.timeouts));
        }
        if self.degree == 0 {
            return bad("--degree 0: a node needs at least one peer".into());
        }
        let top = u32::from(self.base_port)
            + u32::from(PORT_STRIDE) * u32::try_from(self.validators).expect("bounded above");
        if self.base_port < 1024 || top > u32::from(u16::MAX) {
            return bad(format!(
                "--base-port {}: the ports of {} nodes must lie in 1024..=65535",
                self.base_port, self.validators
            ));
        }
        Ok(())
    }

    fn ports(&self, index: usize) -> (u16, u16, u16) {
        let base = self.base_port + PORT_STRIDE * u16::try_from(index).expect("validated");
        (base, base + 1, base + 4)
    }
}

/// Writes a fresh testnet under `home` (which must not hold one) and returns its manifest.
pub fn create(home: &Path, layout: &Layout) -> Result<Manifest, ManifestError> {
    layout.validate()?;
    let setup = |problem: String| ManifestError::Setup {
        home: home.to_owned(),
        problem,
    };
    if Manifest::path(home).exists() {
        return Err(setup(format!(
            "{} exists already; use it, or remove the directory first",
            Manifest::path(home).display()
        )));
    }
    std::fs::create_dir_all(home).map_err(|e| setup(e.to_string()))?;
    let home = std::fs::canonicalize(home).map_err(|e| setup(e.to_string()))?;
    let members: Vec<Member> = (0..layout.validators)
        .map(|i| Member {
            name: format!("node{i}"),
            home: home.join(format!("node{i}")),
            host: "127.0.0.1".into(),
            p2p_port: layout.ports(i).0,
            // `config/account-0.json`, funded, for `weft tx` by hand.
            accounts: 1,
            validator: true,
        })
        .collect();
    let params = match layout.timeouts.as_str() {
        "fast" => ConsensusParams::fast(),
        _ => ConsensusParams::default(),
    };
    let plan = GenesisPlan {
        chain_id: &layout.chain_id,
        genesis_time_ms: now_ms(),
        params,
        account_balance: USER_BALANCE,
        extra_accounts: (0..layout.load_accounts)
            .map(|i| (load_key(i).public(), LOAD_BALANCE))
            .collect(),
        authority: Some(authority_key().public()),
    };
    let formed = ceremony::form(&members, &plan, &home.join("genesis.json")).map_err(setup)?;
    let nodes: Vec<NodeEntry> = members
        .iter()
        .zip(&formed.cards)
        .enumerate()
        .map(|(i, (member, card))| {
            let (p2p_port, rpc_port, metrics_port) = layout.ports(i);
            NodeEntry {
                name: member.name.clone(),
                home: member.home.clone(),
                host: loopback_host(),
                p2p_port,
                rpc_port,
                metrics_port,
                peer_id: card.peer_id.clone().unwrap_or_default(),
            }
        })
        .collect();
    let overlay = overlay(layout.validators, layout.degree);
    for (i, node) in nodes.iter().enumerate() {
        let peers: Vec<String> = overlay[i]
            .iter()
            .filter_map(|&j| formed.cards[j].persistent_peer.clone())
            .collect();
        ceremony::configure(&node.home, |config| {
            local_config(
                config,
                node,
                peers,
                &layout.gossip,
                layout.degree,
                layout.threads,
            );
        })
        .map_err(setup)?;
    }
    let manifest = Manifest {
        chain_id: layout.chain_id.clone(),
        weft_bin: layout.weft_bin.clone(),
        weft_prefix: layout.weft_prefix.clone(),
        load_accounts: layout.load_accounts,
        gossip: layout.gossip.clone(),
        degree: layout.degree,
        timeouts: layout.timeouts.clone(),
        nodes,
    };
    manifest.save(&home)?;
    Ok(manifest)
}

/// A local node's config: loopback ports, its peers, the testnet's gossip settings, and
/// limits for load.
pub fn local_config(
    config: &mut weft_node::config::Config,
    node: &NodeEntry,
    peers: Vec<String>,
    gossip: &str,
    degree: usize,
    threads: usize,
) {
    config.p2p.listen = format!("/ip4/127.0.0.1/tcp/{}", node.p2p_port);
    config.p2p.persistent_peers = peers;
    config.p2p.degree = degree;
    config.p2p.gossip = gossip.to_owned();
    config.rpc.laddr = format!("127.0.0.1:{}", node.rpc_port);
    config.rpc.max_batch = 1_000;
    config.rpc.max_body_bytes = 8 << 20;
    config.rpc.unsafe_routes = true;
    config.metrics.laddr = format!("127.0.0.1:{}", node.metrics_port);
    config.mempool.size = config.mempool.size.max(100_000);
    config.execution.threads = threads;
    config.log_level = "info".into();
}

/// Whom each node dials: a ring plus chords, so every node has about `degree` links and the
/// graph is connected. Node `i` dials `i + 1`, then `i + n/2`, and so on; each link is listed
/// on the lower-numbered side only (libp2p connections are two-way).
pub fn overlay(n: usize, degree: usize) -> Vec<Vec<usize>> {
    let mut links = vec![std::collections::BTreeSet::new(); n];
    if n < 2 {
        return vec![Vec::new(); n];
    }
    let degree = degree.min(n - 1);
    // Offsets 1, then spread over the ring; each offset adds two links to every node.
    let mut offsets = vec![1];
    let wanted = degree.div_ceil(2).max(1);
    for k in 1..wanted {
        let offset = 1 + k * (n / 2) / wanted.max(1);
        if !offsets.contains(&offset) && offset < n {
            offsets.push(offset);
        }
    }
    for i in 0..n {
        for &offset in &offsets {
            let j = (i + offset) % n;
            if i != j {
                let (a, b) = (i.min(j), i.max(j));
                links[a].insert(b);
            }
        }
    }
    links
        .into_iter()
        .map(|set| set.into_iter().collect())
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use weft_genesis::Genesis;
    use weft_node::config::Home;

    use super::*;

    fn connected(n: usize, links: &[Vec<usize>]) -> bool {
        let mut seen = vec![false; n];
        let mut stack = vec![0];
        seen[0] = true;
        while let Some(i) = stack.pop() {
            for j in 0..n {
                let linked = links[i].contains(&j) || links[j].contains(&i);
                if linked && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        seen.into_iter().all(|s| s)
    }

    #[test]
    fn overlays_are_connected_and_near_their_degree() {
        for n in 1..=20 {
            for degree in 1..=6 {
                let links = overlay(n, degree);
                assert_eq!(links.len(), n);
                assert!(connected(n, &links), "n {n} degree {degree}");
                for (i, peers) in links.iter().enumerate() {
                    assert!(peers.iter().all(|&j| j > i && j < n), "lower side only");
                }
                let mut degrees = vec![0; n];
                for (i, peers) in links.iter().enumerate() {
                    for &j in peers {
                        degrees[i] += 1;
                        degrees[j] += 1;
                    }
                }
                let most = degrees.iter().copied().max().unwrap_or(0);
                assert!(
                    most <= (degree.min(n.saturating_sub(1)) + 1).max(2),
                    "n {n} degree {degree}: {degrees:?}"
                );
            }
        }
    }

    #[test]
    fn load_keys_are_stable_and_distinct() {
        assert_eq!(load_key(3).0, load_key(3).0);
        assert_ne!(load_key(3).0, load_key(4).0);
    }

    #[test]
    fn layouts_are_checked() {
        let good = Layout {
            validators: 4,
            chain_id: "weft-testnet".into(),
            load_accounts: 100,
            gossip: "semantic".into(),
            degree: 3,
            timeouts: "fast".into(),
            base_port: 26656,
            weft_bin: "weft".into(),
            weft_prefix: Vec::new(),
            threads: 0,
        };
        assert!(good.validate().is_ok());
        let cases: [(&str, Layout); 5] = [
            (
                "--validators 0",
                Layout {
                    validators: 0,
                    ..good.clone()
                },
            ),
            (
                "--gossip",
                Layout {
                    gossip: "loud".into(),
                    ..good.clone()
                },
            ),
            (
                "--timeouts",
                Layout {
                    timeouts: "slow".into(),
                    ..good.clone()
                },
            ),
            (
                "--degree 0",
                Layout {
                    degree: 0,
                    ..good.clone()
                },
            ),
            (
                "--base-port 65530",
                Layout {
                    base_port: 65530,
                    ..good.clone()
                },
            ),
        ];
        for (expected, layout) in cases {
            let error = layout.validate().unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn a_created_testnet_reads_back_and_refuses_a_second_create() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout {
            validators: 3,
            chain_id: "weft-testnet".into(),
            load_accounts: 10,
            gossip: "semantic".into(),
            degree: 2,
            timeouts: "fast".into(),
            base_port: 30000,
            weft_bin: "weft".into(),
            weft_prefix: Vec::new(),
            threads: 1,
        };
        let home = dir.path().join("net");
        let manifest = create(&home, &layout).unwrap();
        assert_eq!(Manifest::load(&home).unwrap(), manifest);
        assert_eq!(manifest.nodes[1].rpc_port, 30011);
        assert_eq!(manifest.nodes[2].p2p_port, 30020);
        let genesis = Genesis::load(&Home::new(&manifest.nodes[0].home).genesis()).unwrap();
        assert_eq!(genesis.validators.len(), 3);
        assert_eq!(
            genesis.accounts.len(),
            3 + 10,
            "each node's account, then the load's"
        );
        let error = create(&home, &layout).unwrap_err().to_string();
        assert!(error.contains("exists already"), "{error}");
        let missing = Manifest::load(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("weft-testnet up"), "{missing}");
    }
}
