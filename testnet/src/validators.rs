//! `weft-testnet validator add|remove|set-power`: change a running testnet's validator set the
//! way an operator of a real network would. `add` makes a new node's home (its own keys, the
//! network's genesis), starts it as a full node, waits for it to catch up by block sync, and
//! only then has the testnet's validator authority promote it; `remove` and `set-power` send
//! the authority's update for an existing node. Each waits until the change is in effect (two
//! heights after the block that commits it) and says at which height.

use std::path::Path;
use std::time::{Duration, Instant};

use weft_execution::tx::ValidatorKey;
use weft_execution::{ChainId, Payload, Transaction};
use weft_genesis::read_key_file;
use weft_node::config::Home;
use weft_node::rpc::RpcClient;
use weft_node::rpc::api::TxText;

use crate::ceremony::{self, Member, VALIDATOR_POWER};
use crate::client::NodeClient;
use crate::manifest::{Manifest, NodeEntry, PORT_STRIDE, authority_key, local_config};
use crate::process::{Launcher, Processes, running_pid};

/// How long a new node may take to catch up, and a change to take effect.
const WAIT: Duration = Duration::from_secs(120);

/// What a change did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub node: String,
    pub power: u64,
    /// The height of the block that committed the update.
    pub committed_at: u64,
    /// The first height whose validator set holds the change.
    pub effective_at: u64,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.power == 0 {
            "removed from the validator set".to_owned()
        } else {
            format!("a validator with power {}", self.power)
        };
        write!(
            f,
            "{} is {what}: the update committed at height {} and took effect at height {}",
            self.node, self.committed_at, self.effective_at
        )
    }
}

fn load(home: &Path) -> Result<Manifest, String> {
    Manifest::load(home).map_err(|e| e.to_string())
}

/// A client of the first node that answers, to send the update through.
async fn any_client(manifest: &Manifest, skip: Option<usize>) -> Result<NodeClient, String> {
    for (index, node) in manifest.nodes.iter().enumerate() {
        if Some(index) == skip || running_pid(node).is_none() {
            continue;
        }
        let client = NodeClient::new(node, Duration::from_secs(10));
        if client.height().await.is_ok() {
            return Ok(client);
        }
    }
    Err("no node of the testnet answers (start it with `weft-testnet up`)".into())
}

fn node_index(manifest: &Manifest, name: &str) -> Result<usize, String> {
    manifest
        .nodes
        .iter()
        .position(|n| n.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = manifest.nodes.iter().map(|n| n.name.as_str()).collect();
            format!(
                "no node {name:?} in this testnet (it has {})",
                names.join(", ")
            )
        })
}

fn validator_key(node: &NodeEntry) -> Result<[u8; 32], String> {
    read_key_file(&Home::new(&node.home).validator_key())
        .map(|key| key.public())
        .map_err(|e| e.to_string())
}

/// Sends the authority's update setting `key` (node `name`'s) to `power` through `client`, and
/// waits until it is in effect.
pub async fn update(
    manifest: &Manifest,
    client: &NodeClient,
    name: &str,
    key: [u8; 32],
    power: u64,
) -> Result<Change, String> {
    let authority = authority_key();
    let nonce = client
        .nonce(authority.public())
        .await
        .map_err(|e| e.to_string())?;
    let chain_id = ChainId::new(&manifest.chain_id).map_err(|e| e.to_string())?;
    let validator = ValidatorKey::new(key).map_err(|e| e.to_string())?;
    let tx = Transaction::sign(
        chain_id,
        &authority.signing_key(),
        nonce,
        Payload::ValidatorUpdate { validator, power },
    );
    let tx = TxText::from(tx.encode());
    let result = client
        .call("broadcast_tx_commit", |c| c.broadcast_tx_commit(tx.clone()))
        .await
        .map_err(|e| e.to_string())?;
    // A tx the mempool refused has an empty (code 0) `tx_result`: both verdicts count.
    let refusal = if result.check_tx.code != 0 {
        Some((result.check_tx.code, &result.check_tx.log))
    } else if result.tx_result.code != 0 {
        Some((result.tx_result.code, &result.tx_result.log))
    } else {
        None
    };
    if let Some((code, log)) = refusal {
        return Err(format!(
            "the validator update for {name} was refused: code {code} ({log})"
        ));
    }
    let committed_at = result.height.0;
    let effective_at = committed_at + 2;
    let deadline = Instant::now() + WAIT;
    loop {
        if client.height().await.unwrap_or(0) >= effective_at
            && client
                .power_at(effective_at, key)
                .await
                .map_err(|e| e.to_string())?
                == power
        {
            return Ok(Change {
                node: name.to_owned(),
                power,
                committed_at,
                effective_at,
            });
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the update for {name} committed at height {committed_at}, but height \
                 {effective_at} did not show it within {WAIT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Adds a node to the running testnet at `home` as a full node, waits until it has caught up,
/// then promotes it to a validator of `power`.
pub async fn add(home: &Path, power: Option<u64>) -> Result<Change, String> {
    let mut manifest = load(home)?;
    let power = power.unwrap_or(VALIDATOR_POWER);
    let index = manifest.nodes.len();
    let name = format!("node{index}");
    let base = manifest
        .nodes
        .first()
        .ok_or("the testnet has no node")?
        .p2p_port;
    let port = u32::from(base) + u32::from(PORT_STRIDE) * index as u32;
    let port = u16::try_from(port + 4).map_err(|_| "no free ports left above the testnet's")?;
    let p2p_port = port - 4;
    let client = any_client(&manifest, None).await?;
    let member = Member {
        name: name.clone(),
        home: manifest
            .nodes
            .first()
            .and_then(|n| n.home.parent())
            .ok_or("the testnet's nodes have no parent directory")?
            .join(&name),
        host: "127.0.0.1".into(),
        p2p_port,
        accounts: 0,
        validator: false,
    };
    let genesis = home.join("genesis.json");
    let card = ceremony::join(&member, &genesis)?;
    let entry = NodeEntry {
        name: name.clone(),
        home: member.home.clone(),
        host: "127.0.0.1".into(),
        p2p_port,
        rpc_port: p2p_port + 1,
        metrics_port: p2p_port + 4,
        peer_id: card.peer_id.clone().unwrap_or_default(),
    };
    let peers: Vec<String> = manifest
        .nodes
        .iter()
        .map(|n| format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", n.p2p_port, n.peer_id))
        .collect();
    let threads = crate::up::default_threads(manifest.nodes.len() + 1);
    ceremony::configure(&entry.home, |config| {
        local_config(
            config,
            &entry,
            peers,
            &manifest.gossip,
            manifest.degree,
            threads,
        );
    })?;
    manifest.nodes.push(entry.clone());
    manifest.save(home).map_err(|e| e.to_string())?;
    let mut processes = Processes::new(manifest.clone(), Launcher::of(&manifest));
    processes
        .start(index, &[])
        .map_err(|e| format!("starting {name}: {e}"))?;
    println!("{name} started as a full node; waiting for it to catch up");
    let new = NodeClient::new(&entry, Duration::from_secs(5));
    let deadline = Instant::now() + WAIT;
    loop {
        let top = client.height().await.map_err(|e| e.to_string())?;
        if let Ok(status) = new.status().await
            && !status.catching_up
            && status.height + 2 >= top
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{name} did not catch up within {WAIT:?}; see {}",
                entry.log_path().display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("{name} caught up; promoting it");
    let key = validator_key(&entry)?;
    update(&manifest, &client, &name, key, power).await
}

/// Sets node `name`'s voting power (0 removes it from the set; its node runs on as a full
/// node).
pub async fn set_power(home: &Path, name: &str, power: u64) -> Result<Change, String> {
    let manifest = load(home)?;
    let index = node_index(&manifest, name)?;
    let key = validator_key(&manifest.nodes[index])?;
    let client = any_client(&manifest, Some(index)).await?;
    update(&manifest, &client, name, key, power).await
}
