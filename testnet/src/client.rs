//! A typed JSON-RPC client for one node: the few reads the testnet tool makes, each error
//! naming the node and the method.

use std::time::Duration;

use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::params::ObjectParams;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use serde_json::Value;
use thiserror::Error;

use crate::manifest::NodeEntry;

#[derive(Debug, Error)]
#[error("{node} {method}: {problem}")]
pub struct ClientError {
    pub node: String,
    pub method: &'static str,
    pub problem: String,
}

/// What `status` and `net_info` say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStatus {
    pub height: u64,
    pub hash: String,
    pub app_hash: String,
    pub catching_up: bool,
    pub peers: usize,
}

/// One committed block, as the invariants need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSummary {
    pub height: u64,
    pub hash: String,
    pub state_root: String,
    /// Each tx's hash, in block order.
    pub txs: Vec<String>,
    /// Evidence items: the accused validator's key.
    pub evidence: Vec<String>,
    /// The keys that signed the previous height's certificate (this block's last commit).
    pub signers: Vec<String>,
}

#[derive(Clone)]
pub struct NodeClient {
    pub name: String,
    client: HttpClient,
}

impl NodeClient {
    pub fn new(node: &NodeEntry, timeout: Duration) -> NodeClient {
        let client = HttpClientBuilder::default()
            .request_timeout(timeout)
            .max_request_size(16 << 20)
            .max_response_size(64 << 20)
            .build(node.rpc_url())
            .expect("a node URL of a checked host is valid");
        NodeClient {
            name: node.name.clone(),
            client,
        }
    }

    pub fn http(&self) -> &HttpClient {
        &self.client
    }

    pub async fn call(
        &self,
        method: &'static str,
        params: ObjectParams,
    ) -> Result<Value, ClientError> {
        let mut result = self.client.request(method, params.clone()).await;
        // Once more on a transport error: the request may have met a keep-alive connection
        // the node was closing as idle (`rpc.header_read_timeout_ms`).
        if let Err(jsonrpsee::core::ClientError::Transport(_)) = &result {
            result = self.client.request(method, params).await;
        }
        result.map_err(|e| self.error(method, e.to_string()))
    }

    fn error(&self, method: &'static str, problem: String) -> ClientError {
        ClientError {
            node: self.name.clone(),
            method,
            problem,
        }
    }

    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        let status = self.call("status", ObjectParams::new()).await?;
        let sync = &status["sync_info"];
        let height = sync["latest_block_height"]
            .as_str()
            .and_then(|h| h.parse().ok())
            .ok_or_else(|| self.error("status", format!("no latest_block_height in {sync}")))?;
        let net = self.call("net_info", ObjectParams::new()).await?;
        Ok(NodeStatus {
            height,
            hash: sync["latest_block_hash"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            app_hash: sync["latest_app_hash"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            catching_up: sync["catching_up"].as_bool().unwrap_or(false),
            peers: net["n_peers"].as_u64().unwrap_or(0) as usize,
        })
    }

    pub async fn height(&self) -> Result<u64, ClientError> {
        let status = self.call("status", ObjectParams::new()).await?;
        status["sync_info"]["latest_block_height"]
            .as_str()
            .and_then(|h| h.parse().ok())
            .ok_or_else(|| self.error("status", "no latest_block_height".into()))
    }

    pub async fn block(&self, height: u64) -> Result<BlockSummary, ClientError> {
        let mut params = ObjectParams::new();
        params
            .insert("height", height)
            .expect("a number serialises");
        let json = self.call("block", params).await?;
        let block = &json["block"];
        let txs = block["data"]["txs"]
            .as_array()
            .ok_or_else(|| self.error("block", format!("block {height} has no data.txs")))?
            .iter()
            .map(|tx| {
                let bytes = tx
                    .as_str()
                    .and_then(|t| hex::decode(t).ok())
                    .unwrap_or_default();
                hex::encode(blake3::hash(&bytes).as_bytes())
            })
            .collect();
        let evidence = block["evidence"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|e| e["validator"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        Ok(BlockSummary {
            height,
            hash: json["block_id"]["hash"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            state_root: block["header"]["state_root"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            txs,
            evidence,
            signers: block["last_commit"]["signatures"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|s| s["validator"].as_str().unwrap_or_default().to_owned())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// An account's committed nonce.
    pub async fn nonce(&self, address_hex: &str) -> Result<u64, ClientError> {
        let mut params = ObjectParams::new();
        params
            .insert("address", address_hex)
            .expect("a string serialises");
        let json = self.call("account", params).await?;
        json["nonce"]
            .as_u64()
            .ok_or_else(|| self.error("account", format!("no nonce in {json}")))
    }

    /// The mempool's size.
    pub async fn mempool_size(&self) -> Result<u64, ClientError> {
        let json = self
            .call("num_unconfirmed_txs", ObjectParams::new())
            .await?;
        Ok(json["n_txs"].as_u64().unwrap_or(0))
    }

    /// The consensus round at the current height.
    pub async fn round(&self) -> Result<u64, ClientError> {
        let json = self.call("consensus_state", ObjectParams::new()).await?;
        Ok(json["round"].as_u64().unwrap_or(0))
    }

    /// Isolates the node from its peers, or heals it (the node's `unsafe_set_isolated` route).
    pub async fn set_isolated(&self, isolated: bool) -> Result<(), ClientError> {
        let mut params = ObjectParams::new();
        params
            .insert("isolated", isolated)
            .expect("a bool serialises");
        self.call("unsafe_set_isolated", params).await.map(|_| ())
    }
}

/// Reads one Prometheus counter family's sum (over all label sets) from a `/metrics` body.
pub fn metric_sum(body: &str, name: &str, label_filter: Option<&str>) -> f64 {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| label_filter.is_none_or(|f| line.contains(f)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `GET /metrics` of one node, bounded in time and size.
pub async fn fetch_metrics(node: &NodeEntry, timeout: Duration) -> Result<String, ClientError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let error = |problem: String| ClientError {
        node: node.name.clone(),
        method: "GET /metrics",
        problem,
    };
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect((node.host.as_str(), node.metrics_port))
            .await
            .map_err(|e| error(e.to_string()))?;
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            node.host
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| error(e.to_string()))?;
        let mut body = Vec::new();
        stream
            .take(16 << 20)
            .read_to_end(&mut body)
            .await
            .map_err(|e| error(e.to_string()))?;
        let text = String::from_utf8_lossy(&body).into_owned();
        let (head, rest) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| error("no HTTP header".into()))?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(error(head.lines().next().unwrap_or_default().to_owned()));
        }
        Ok(rest.to_owned())
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| error(format!("no answer in {timeout:?}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_add_label_sets_and_skip_lookalikes() {
        let body = "# HELP weft_p2p_messages_total x\n\
                    weft_p2p_messages_total{direction=\"received\",kind=\"vote\"} 10\n\
                    weft_p2p_messages_total{direction=\"sent\",kind=\"vote\"} 4\n\
                    weft_p2p_messages_total_other 99\n\
                    weft_height 7\n";
        assert_eq!(metric_sum(body, "weft_p2p_messages_total", None), 14.0);
        assert_eq!(
            metric_sum(
                body,
                "weft_p2p_messages_total",
                Some("direction=\"received\"")
            ),
            10.0
        );
        assert_eq!(metric_sum(body, "weft_height", None), 7.0);
        assert_eq!(metric_sum(body, "missing", None), 0.0);
    }
}
