//! `weft status` and `weft tx`: clients over JSON-RPC, reading replies as plain JSON; txs are
//! signed here, never on the node.

use super::*;

pub(super) fn block_on_client<T>(
    future: impl Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?
        .block_on(future)
}

/// A JSON-RPC client that names its URL and method in every error.
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

    async fn call(
        &self,
        method: &'static str,
        params: &[(&str, Value)],
    ) -> Result<Value, CliError> {
        let mut object = ObjectParams::new();
        for (name, value) in params {
            object
                .insert(name, value)
                .map_err(|e| self.error(method, e))?;
        }
        self.client
            .request(method, object)
            .await
            .map_err(|e| self.error(method, error_chain(&e)))
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

/// Reads a number the server may send as a JSON number or, CometBFT style, as a string.
pub(super) fn json_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

pub(super) fn json_text(value: &Value) -> String {
    match value {
        Value::Null => "?".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) async fn status(args: &StatusArgs) -> Result<(), CliError> {
    let rpc = Rpc::connect(&args.rpc)?;
    let status = rpc.call("status", &[]).await?;
    if args.json {
        let text = serde_json::to_string_pretty(&status).map_err(|e| rpc.error("status", e))?;
        println!("{text}");
        return Ok(());
    }
    // Peers are a nicety: a node without `net_info` still shows its status.
    let peers = rpc
        .call("net_info", &[])
        .await
        .ok()
        .and_then(|info| json_u64(&info["n_peers"]));
    print!("{}", status_summary(&status, peers));
    Ok(())
}

pub(super) fn status_summary(status: &Value, peers: Option<u64>) -> String {
    let node = &status["node_info"];
    let sync = &status["sync_info"];
    let peers = peers.map_or_else(|| "?".to_owned(), |n| n.to_string());
    format!(
        "moniker:     {}\nchain id:    {}\nnode id:     {}\nheight:      {}\nblock hash:  {}\n\
         block time:  {}\ncatching up: {}\npeers:       {peers}\n",
        json_text(&node["moniker"]),
        json_text(&node["network"]),
        json_text(&node["id"]),
        json_text(&sync["latest_block_height"]),
        json_text(&sync["latest_block_hash"]),
        json_text(&sync["latest_block_time_ms"]),
        json_text(&sync["catching_up"]),
    )
}

/// A tx's fate as the node reported it.
#[derive(Debug, PartialEq)]
pub struct TxOutcome {
    pub hash: String,
    pub height: Option<u64>,
    /// The mempool check's code and log.
    pub check: (u64, String),
    /// The execution result's code and log; absent for `--async` or when the check failed.
    pub result: Option<(u64, String)>,
}

impl TxOutcome {
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

pub(super) fn code_and_log(value: &Value) -> Option<(u64, String)> {
    let code = json_u64(&value["code"])?;
    let log = value["log"].as_str().unwrap_or_default().to_owned();
    Some((code, log))
}

/// Reads a `broadcast_tx_commit` (`commit`) or `broadcast_tx_sync` result; `local_hash` stands
/// in when the reply carries none.
pub(super) fn parse_tx_reply(
    reply: &Value,
    commit: bool,
    local_hash: &str,
) -> Result<TxOutcome, String> {
    let hash = reply["hash"].as_str().unwrap_or(local_hash).to_owned();
    let (check, result) = if commit {
        let check = code_and_log(&reply["check_tx"]).ok_or("the reply has no check_tx.code")?;
        (check, code_and_log(&reply["tx_result"]))
    } else {
        (code_and_log(reply).ok_or("the reply has no code")?, None)
    };
    if commit && check.0 == 0 && result.is_none() {
        return Err("the reply has check_tx code 0 but no tx_result.code".into());
    }
    let height = json_u64(&reply["height"]).filter(|h| *h > 0);
    Ok(TxOutcome {
        hash,
        height,
        check,
        result,
    })
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
    let address = hex::encode(key.public());
    let account = rpc
        .call("account", &[("address", Value::String(address.clone()))])
        .await?;
    let nonce = json_u64(&account["nonce"])
        .ok_or_else(|| rpc.error("account", format!("no nonce for {address}: {account}")))?;

    let tx = Transaction::sign(chain_id, &key.signing_key(), nonce, payload);
    let local_hash = hex::encode(tx.hash().0);
    let method = if common.no_wait {
        "broadcast_tx_sync"
    } else {
        "broadcast_tx_commit"
    };
    let reply = rpc
        .call(method, &[("tx", Value::String(hex::encode(tx.encode())))])
        .await?;
    parse_tx_reply(&reply, !common.no_wait, &local_hash).map_err(|e| rpc.error(method, e))
}

pub(super) async fn remote_chain_id(rpc: &Rpc) -> Result<ChainId, CliError> {
    let status = rpc.call("status", &[]).await?;
    let network = status["node_info"]["network"].as_str().ok_or_else(|| {
        rpc.error(
            "status",
            "the reply has no node_info.network; pass --chain-id",
        )
    })?;
    ChainId::new(network).map_err(|e| rpc.error("status", format!("chain id {network:?}: {e}")))
}
