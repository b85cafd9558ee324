//! A client for one node: the generated [`RpcClient`] over HTTP, each call retried once on a
//! transport error, each error naming the node and the method; and the few summaries of its
//! answers the testnet tool reads.

use std::future::Future;
use std::time::Duration;

use jsonrpsee::core::ClientError as RpcError;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use thiserror::Error;
use weft_node::rpc::api::encoding::Int;
use weft_node::rpc::api::types::{
    BLOCK_ID_FLAG_COMMIT, Block, BlockResult, BlockResultsResult, StatusResult,
};
use weft_node::rpc::api::{HashParam, PER_PAGE_MAX};
use weft_node::rpc::{RpcClient, UnsafeRpcClient};

use crate::manifest::NodeEntry;

/// Largest request body sent to a node.
const REQUEST_BYTES_MAX: u32 = 16 << 20;
/// Largest response body read from a node.
const RESPONSE_BYTES_MAX: u32 = 64 << 20;
/// Most pages of `validators` read for one set (100 validators a page).
const VALIDATOR_PAGES_MAX: u64 = 100;

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
    /// Upper-case hex, as the RPC writes it.
    pub hash: String,
    pub app_hash: String,
    pub catching_up: bool,
    pub peers: usize,
}

/// One committed block, as the invariants need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSummary {
    pub height: u64,
    /// The block hash and state root, upper-case hex.
    pub hash: String,
    pub state_root: String,
    /// Each tx's hash (blake3 of its bytes), lower-case hex, in block order.
    pub txs: Vec<String>,
    /// Evidence items: the accused validator's public key, lower-case hex.
    pub evidence: Vec<String>,
    /// The CometBFT addresses (upper-case hex) of the validators that signed the previous
    /// height's certificate (this block's last commit).
    pub signers: Vec<String>,
}

/// Why a JSON-RPC call failed, in words: for an error object, its message and the reason the
/// node put in `data` (where Weft says what went wrong).
pub fn describe(error: &RpcError) -> String {
    match error {
        RpcError::Call(object) => match object.data() {
            Some(data) => {
                let reason = serde_json::from_str::<String>(data.get())
                    .unwrap_or_else(|_| data.get().to_owned());
                format!("{} ({}): {reason}", object.message(), object.code())
            }
            None => format!("{} ({})", object.message(), object.code()),
        },
        other => other.to_string(),
    }
}

/// A tx's hash as the load and the invariants key it: blake3 of its bytes.
pub fn tx_hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
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
            .max_request_size(REQUEST_BYTES_MAX)
            .max_response_size(RESPONSE_BYTES_MAX)
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

    /// One typed call (`request` on the generated client), retried once on a transport error:
    /// the request may have met a keep-alive connection the node was closing as idle
    /// (`rpc.header_read_timeout_ms`).
    pub async fn call<'a, T, F, Fut>(
        &'a self,
        method: &'static str,
        request: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(&'a HttpClient) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let mut result = request(&self.client).await;
        if let Err(RpcError::Transport(_)) = &result {
            result = request(&self.client).await;
        }
        result.map_err(|e| self.error(method, describe(&e)))
    }

    fn error(&self, method: &'static str, problem: String) -> ClientError {
        ClientError {
            node: self.name.clone(),
            method,
            problem,
        }
    }

    pub async fn health(&self) -> Result<(), ClientError> {
        self.call("health", |c| c.health()).await.map(|_| ())
    }

    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        let StatusResult { sync_info, .. } = self.call("status", |c| c.status()).await?;
        let net = self.call("net_info", |c| c.net_info()).await?;
        Ok(NodeStatus {
            height: sync_info.latest_block_height.0,
            hash: sync_info.latest_block_hash.to_string(),
            app_hash: hex::encode_upper(&sync_info.latest_app_hash.0),
            catching_up: sync_info.catching_up,
            peers: usize::try_from(net.n_peers.0).unwrap_or(usize::MAX),
        })
    }

    pub async fn height(&self) -> Result<u64, ClientError> {
        let status = self.call("status", |c| c.status()).await?;
        Ok(status.sync_info.latest_block_height.0)
    }

    /// The block at `height`; an error when the node does not hold it.
    pub async fn full_block(&self, height: u64) -> Result<(BlockResult, Block), ClientError> {
        let mut result = self.call("block", |c| c.block(Some(Int(height)))).await?;
        let block = result
            .block
            .take()
            .ok_or_else(|| self.error("block", format!("no block at height {height}")))?;
        Ok((result, block))
    }

    pub async fn block_results(&self, height: u64) -> Result<BlockResultsResult, ClientError> {
        self.call("block_results", |c| c.block_results(Some(Int(height))))
            .await
    }

    pub async fn block(&self, height: u64) -> Result<BlockSummary, ClientError> {
        let (result, block) = self.full_block(height).await?;
        Ok(BlockSummary {
            height,
            hash: result.block_id.hash.to_string(),
            state_root: hex::encode_upper(&block.header.app_hash.0),
            txs: block
                .data
                .txs
                .iter()
                .map(|tx| hex::encode(tx_hash(&tx.0)))
                .collect(),
            evidence: block
                .evidence
                .weft
                .iter()
                .map(|item| hex::encode(&item.validator_pub_key.0))
                .collect(),
            signers: block
                .last_commit
                .iter()
                .flat_map(|commit| &commit.signatures)
                .filter(|signature| signature.block_id_flag == BLOCK_ID_FLAG_COMMIT)
                .map(|signature| hex::encode_upper(&signature.validator_address.0))
                .collect(),
        })
    }

    /// The voting power of the validator with public key `key` in the set of `height` (0 when
    /// it is not in it).
    pub async fn power_at(&self, height: u64, key: [u8; 32]) -> Result<u64, ClientError> {
        let mut seen = 0;
        for page in 1..=VALIDATOR_PAGES_MAX {
            let answer = self
                .call("validators", |c| {
                    c.validators(Some(Int(height)), Some(Int(page)), Some(Int(PER_PAGE_MAX)))
                })
                .await?;
            let found = answer
                .validators
                .iter()
                .find(|v| v.pub_key.ed25519_bytes() == Ok(key));
            if let Some(validator) = found {
                return Ok(validator.voting_power.0);
            }
            seen += answer.validators.len() as u64;
            if answer.validators.is_empty() || seen >= answer.total.0 {
                return Ok(0);
            }
        }
        Err(self.error(
            "validators",
            format!("the set of height {height} has more than {VALIDATOR_PAGES_MAX} pages"),
        ))
    }

    /// An account's committed nonce.
    pub async fn nonce(&self, address: [u8; 32]) -> Result<u64, ClientError> {
        let account = self
            .call("account", |c| c.account(HashParam(address)))
            .await?;
        Ok(account.nonce.0)
    }

    /// The mempool's size.
    pub async fn mempool_size(&self) -> Result<u64, ClientError> {
        let answer = self
            .call("num_unconfirmed_txs", |c| c.num_unconfirmed_txs())
            .await?;
        Ok(answer.total.0)
    }

    /// The consensus round at the current height.
    pub async fn round(&self) -> Result<u32, ClientError> {
        let answer = self
            .call("consensus_state", |c| c.consensus_state())
            .await?;
        Ok(answer.round_state.round)
    }

    /// Isolates the node from its peers, or heals it (the node's `unsafe_set_isolated` route).
    pub async fn set_isolated(&self, isolated: bool) -> Result<(), ClientError> {
        self.call("unsafe_set_isolated", |c| c.unsafe_set_isolated(isolated))
            .await
            .map(|_| ())
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
    use jsonrpsee::types::ErrorObject;

    #[test]
    fn call_errors_read_as_message_code_and_the_nodes_reason() {
        let reason = "height 9 is not committed yet";
        let error = RpcError::Call(ErrorObject::owned(-32603, "Internal error", Some(reason)));
        assert_eq!(
            describe(&error),
            "Internal error (-32603): height 9 is not committed yet"
        );
        let bare = RpcError::Call(ErrorObject::owned(-32601, "Method not found", None::<()>));
        assert_eq!(describe(&bare), "Method not found (-32601)");
    }

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
