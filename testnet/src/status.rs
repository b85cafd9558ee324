//! `weft-testnet status`: one row per node, and the block hash each holds at the highest
//! height all reachable nodes share (the same hash in every row means they agree).

use std::fmt::Write as _;
use std::time::Duration;

use crate::client::{NodeClient, NodeStatus};
use crate::manifest::Manifest;
use crate::process::running_pid;

/// One node's row.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub pid: Option<i32>,
    pub status: Result<NodeStatus, String>,
    /// The block hash at the shared height, when the node answered.
    pub shared_hash: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Table {
    /// The highest height every reachable node holds.
    pub shared_height: Option<u64>,
    pub rows: Vec<Row>,
}

impl Table {
    /// Whether every reachable node holds the same block at the shared height.
    pub fn agree(&self) -> bool {
        let mut hashes = self.rows.iter().filter_map(|r| r.shared_hash.as_ref());
        let Some(first) = hashes.next() else {
            return true;
        };
        hashes.all(|h| h == first)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let shared = self
            .shared_height
            .map_or_else(|| "-".to_owned(), |h| h.to_string());
        let _ = writeln!(
            out,
            "{:<8} {:>8} {:>8} {:<18} {:>5} {:>11}",
            "node",
            "pid",
            "height",
            format!("hash@{shared}"),
            "peers",
            "catching_up"
        );
        for row in &self.rows {
            let pid = row.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
            match &row.status {
                Ok(status) => {
                    let hash = row
                        .shared_hash
                        .as_deref()
                        .map_or_else(|| "-".to_owned(), |h| h[..h.len().min(16)].to_owned());
                    let _ = writeln!(
                        out,
                        "{:<8} {:>8} {:>8} {:<18} {:>5} {:>11}",
                        row.name, pid, status.height, hash, status.peers, status.catching_up
                    );
                }
                Err(error) => {
                    let _ = writeln!(out, "{:<8} {:>8} unreachable: {error}", row.name, pid);
                }
            }
        }
        let verdict = if self.agree() {
            "all reachable nodes agree at the shared height"
        } else {
            "NODES DISAGREE at the shared height"
        };
        let _ = writeln!(out, "{verdict}");
        out
    }
}

/// Reads every node's status, then each one's block at the shared height.
pub async fn collect(manifest: &Manifest) -> Table {
    let clients: Vec<NodeClient> = manifest
        .nodes
        .iter()
        .map(|n| NodeClient::new(n, Duration::from_secs(2)))
        .collect();
    let statuses =
        futures::future::join_all(clients.iter().map(|c| async { c.status().await })).await;
    let shared_height = statuses
        .iter()
        .filter_map(|s| s.as_ref().ok().map(|s| s.height))
        .min()
        .filter(|&h| h > 0);
    let hashes = futures::future::join_all(clients.iter().zip(&statuses).map(
        |(client, status)| async move {
            match (status, shared_height) {
                (Ok(_), Some(height)) => client.block(height).await.ok().map(|b| b.hash),
                _ => None,
            }
        },
    ))
    .await;
    let rows = manifest
        .nodes
        .iter()
        .zip(statuses)
        .zip(hashes)
        .map(|((node, status), shared_hash)| Row {
            name: node.name.clone(),
            pid: running_pid(node),
            status: status.map_err(|e| e.problem),
            shared_hash,
        })
        .collect();
    Table {
        shared_height,
        rows,
    }
}
