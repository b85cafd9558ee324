//! `weft status` and `weft tx`: clients of the node's typed RPC ([`RpcClient`], CometBFT's
//! shapes); txs are signed here, never on the node.

use jsonrpsee::core::ClientError;

use super::*;
use crate::rpc::RpcClient;
use crate::rpc::api::encoding::Hash;
use crate::rpc::api::types::{BroadcastCommitResult, BroadcastResult, StatusResult};
use crate::rpc::api::{HashParam, TxText};

pub(super) fn block_on_client<T>(
    future: impl Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?
        .block_on(future)
}

/// An RPC client that names its URL and method in every error.
pub(super) struct Rpc {
    url: String,
    client: HttpClient,
}

impl Rpc {
    fn connect(url: &str) -> Result<Rpc, CliError> {
        let client = HttpClientBuilder::default()
            .request_timeout(Duration::from_millis(RPC_REQUEST_TIMEOUT_MS))
            .max_response_size(RPC_RESPONSE_BYTES_MAX)
            .build(url)
            .map_err(|e| CliError::Rpc {
                url: url.to_owned(),
                method: "connect",
                problem: e.to_string(),
            })?;
        Ok(Rpc {
            url: url.to_owned(),
            client,
        })
    }

    fn error(&self, method: &'static str, problem: impl fmt::Display) -> CliError {
        CliError::Rpc {
            url: self.url.clone(),
            method,
            problem: problem.to_string(),
        }
    }

    /// Awaits one call of `method`, naming it and the node's reason in any error.
    async fn ask<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, CliError> {
        call.await.map_err(|e| self.error(method, describe(&e)))
    }
}

/// A failed call in words: for a refusal, its message, code and the reason the node gives in
/// `data` (CometBFT's "Internal error" says nothing without it); otherwise the transport error
/// with its causes.
pub(super) fn describe(error: &ClientError) -> String {
    let ClientError::Call(refusal) = error else {
        return error_chain(error);
    };
    let head = format!("{} ({})", refusal.message(), refusal.code());
    match refusal.data() {
        // The reason is a JSON string; anything else is shown as the JSON it is.
        Some(data) => match serde_json::from_str::<String>(data.get()) {
            Ok(reason) => format!("{head}: {reason}"),
            Err(_) => format!("{head}: {}", data.get()),
        },
        None => head,
    }
}

/// An error with its causes: transport errors hide the useful part ("connection refused")
/// in their sources.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub(super) async fn status(args: &StatusArgs) -> Result<(), CliError> {
    let rpc = Rpc::connect(&args.rpc)?;
    let status = rpc.ask("status", rpc.client.status()).await?;
    if args.json {
        let text = serde_json::to_string_pretty(&status).map_err(|e| rpc.error("status", e))?;
        println!("{text}");
        return Ok(());
    }
    // Peers are a nicety: a node without `net_info` still shows its status.
    let peers = rpc.client.net_info().await.ok().map(|info| info.n_peers.0);
    print!("{}", status_summary(&status, peers));
    Ok(())
}

pub(super) fn status_summary(status: &StatusResult, peers: Option<u64>) -> String {
    let node = &status.node_info;
    let sync = &status.sync_info;
    let peers = peers.map_or_else(|| "?".to_owned(), |n| n.to_string());
    format!(
        "moniker:     {}\nchain id:    {}\nnode id:     {}\nheight:      {}\nblock hash:  {}\n\
         block time:  {}\ncatching up: {}\npeers:       {peers}\n",
        node.moniker,
        node.network,
        node.id,
        sync.latest_block_height,
        sync.latest_block_hash,
        sync.latest_block_time,
        sync.catching_up,
    )
}

/// A tx's fate as the node reported it.
#[derive(Debug, PartialEq)]
pub struct TxOutcome {
    /// Upper-case hex, as the node writes it.
    pub hash: String,
    pub height: Option<u64>,
    /// The mempool check's code and log.
    pub check: (u32, String),
    /// The execution result's code and log; absent for `--async` or when the check failed.
    pub result: Option<(u32, String)>,
}

impl TxOutcome {
    /// From `broadcast_tx_commit`'s result. The node leaves `tx_result` empty (code 0) when
    /// the check refused the tx, so it counts only after a passed check. `local_hash` stands
    /// in when the reply carries no hash.
    pub fn committed(reply: BroadcastCommitResult, local_hash: [u8; 32]) -> TxOutcome {
        let check = (reply.check_tx.code, reply.check_tx.log);
        let result = (check.0 == 0).then_some((reply.tx_result.code, reply.tx_result.log));
        TxOutcome {
            hash: hash_text(reply.hash, local_hash),
            height: Some(reply.height.0).filter(|h| *h > 0),
            check,
            result,
        }
    }

    /// From `broadcast_tx_sync`'s result: the check only.
    pub fn checked(reply: BroadcastResult, local_hash: [u8; 32]) -> TxOutcome {
        TxOutcome {
            hash: hash_text(reply.hash, local_hash),
            height: None,
            check: (reply.code, reply.log),
            result: None,
        }
    }

    /// An error naming the stage that failed, if one did.
    pub fn check(&self) -> Result<(), CliError> {
        let stages = [
            ("check_tx", Some(&self.check)),
            ("tx_result", self.result.as_ref()),
        ];
        for (stage, outcome) in stages {
            if let Some((code, log)) = outcome.filter(|(code, _)| *code != 0) {
                return Err(CliError::TxFailed {
                    hash: self.hash.clone(),
                    stage,
                    code: *code,
                    log: log.clone(),
                });
            }
        }
        Ok(())
    }
}

fn hash_text(hash: Hash, local_hash: [u8; 32]) -> String {
    hex::encode_upper(hash.0.unwrap_or(local_hash))
}

impl fmt::Display for TxOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "hash:      {}", self.hash)?;
        if let Some(height) = self.height {
            writeln!(f, "height:    {height}")?;
        }
        writeln!(f, "check_tx:  code {} {}", self.check.0, self.check.1)?;
        if let Some((code, log)) = &self.result {
            writeln!(f, "tx_result: code {code} {log}")?;
        }
        Ok(())
    }
}

pub(super) async fn tx(command: &TxCommand) -> Result<TxOutcome, CliError> {
    let (common, payload) = match command {
        TxCommand::Transfer { common, to, amount } => (
            common,
            Payload::Transfer {
                to: *to,
                amount: *amount,
            },
        ),
        TxCommand::RegisterName { common, name } => (common, Payload::RegisterName { name: *name }),
        TxCommand::PayName {
            common,
            name,
            amount,
        } => (
            common,
            Payload::PayName {
                name: *name,
                amount: *amount,
            },
        ),
        TxCommand::ValidatorUpdate {
            common,
            pubkey,
            power,
        } => (
            common,
            Payload::ValidatorUpdate {
                validator: *pubkey,
                power: *power,
            },
        ),
    };
    let key = read_key_file(&common.key)?;
    let rpc = Rpc::connect(&common.rpc)?;
    let chain_id = match &common.chain_id {
        Some(id) => id.clone(),
        None => remote_chain_id(&rpc).await?,
    };
    let account = rpc
        .ask("account", rpc.client.account(HashParam(key.public())))
        .await?;
    let tx = Transaction::sign(chain_id, &key.signing_key(), account.nonce.0, payload);
    let (bytes, local_hash) = (TxText::from(tx.encode()), tx.hash().0);
    if common.no_wait {
        let reply = rpc
            .ask("broadcast_tx_sync", rpc.client.broadcast_tx_sync(bytes))
            .await?;
        return Ok(TxOutcome::checked(reply, local_hash));
    }
    let reply = rpc
        .ask("broadcast_tx_commit", rpc.client.broadcast_tx_commit(bytes))
        .await?;
    Ok(TxOutcome::committed(reply, local_hash))
}

pub(super) async fn remote_chain_id(rpc: &Rpc) -> Result<ChainId, CliError> {
    let status = rpc.ask("status", rpc.client.status()).await?;
    let network = status.node_info.network;
    ChainId::new(&network).map_err(|e| {
        rpc.error(
            "status",
            format!("chain id {network:?}: {e}; pass --chain-id"),
        )
    })
}
