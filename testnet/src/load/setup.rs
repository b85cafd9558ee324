//! Before the clock starts: the senders' committed nonces, and the names a pay-name load pays.

use std::time::{Duration, Instant};

use futures::future::join_all;
use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::params::{BatchRequestBuilder, ObjectParams};
use weft_execution::{Address, Name, Payload};
use weft_node::rpc::api::HashParam;
use weft_node::rpc::api::types::{AccountResult, TxResult};

use super::LoadError;
use super::ledger::Answer;
use super::report::code_name;
use super::send::Nodes;
use super::sign::{SignedTx, Signer};

/// Most names a pay-name load registers (`load-0`, `load-1`, …), one per sending account.
pub const NAMES_MAX: usize = 64;
/// How long the registrations may take to commit.
pub const REGISTER_WITHIN: Duration = Duration::from_secs(30);
/// Between two looks for the registrations.
const REGISTER_POLL: Duration = Duration::from_millis(200);
/// `account` batches in flight while nonces are read.
const NONCE_BATCHES_IN_FLIGHT: usize = 8;

/// Each address's committed nonce: the highest that any answering node reports, so that a
/// node a few heights behind cannot hand out a nonce already used.
pub async fn fetch_nonces(nodes: &Nodes, addresses: &[Address]) -> Result<Vec<u64>, LoadError> {
    let mut nonces = Vec::with_capacity(addresses.len());
    let batch = nodes.batch_max;
    for group in addresses.chunks(batch * NONCE_BATCHES_IN_FLIGHT) {
        let chunks = join_all(group.chunks(batch).map(|chunk| nonces_of(nodes, chunk))).await;
        for chunk in chunks {
            nonces.extend(chunk?);
        }
    }
    Ok(nonces)
}

async fn nonces_of(nodes: &Nodes, addresses: &[Address]) -> Result<Vec<u64>, LoadError> {
    let answers = join_all((0..nodes.len()).map(|node| async move {
        let mut batch = BatchRequestBuilder::new();
        for address in addresses {
            let mut params = ObjectParams::new();
            params
                .insert("address", HashParam(address.0))
                .map_err(|e| e.to_string())?;
            batch.insert("account", params).map_err(|e| e.to_string())?;
        }
        let responses = nodes
            .client(node)
            .batch_request::<AccountResult>(batch)
            .await
            .map_err(|e| format!("{}: {e}", nodes.name(node)))?;
        Ok::<_, String>(
            responses
                .into_iter()
                .map(|entry| entry.ok().map(|account| account.nonce.0))
                .collect::<Vec<_>>(),
        )
    }))
    .await;
    let mut best: Vec<Option<u64>> = vec![None; addresses.len()];
    let mut problems = Vec::new();
    for answer in answers {
        match answer {
            Ok(nonces) => {
                for (best, nonce) in best.iter_mut().zip(nonces) {
                    *best = (*best).max(nonce);
                }
            }
            Err(problem) => problems.push(problem),
        }
    }
    best.iter()
        .zip(addresses)
        .map(|(nonce, address)| {
            nonce.ok_or_else(|| {
                LoadError::NoNode(format!(
                    "no node told the nonce of load account {}{}",
                    hex::encode(address.0),
                    if problems.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", problems.join("; "))
                    }
                ))
            })
        })
        .collect()
}

/// Registers `load-0` … `load-{k-1}` from the first `k` accounts (k = min(accounts,
/// [`NAMES_MAX`])) and waits until every registration is in a block. A name registered by an
/// earlier run fails in its block (`name_taken`) and keeps its owner, which is just as good
/// to pay; such a failed registration does not use its nonce, so read nonces again afterwards.
pub async fn register_names(
    nodes: &Nodes,
    signer: &Signer,
    nonces: &[u64],
) -> Result<Vec<Name>, LoadError> {
    let count = signer.accounts().min(NAMES_MAX);
    let names: Vec<Name> = (0..count)
        .map(|i| Name::new(&format!("load-{i}")).expect("load-N is a valid name"))
        .collect();
    let txs: Vec<SignedTx> = (0..count)
        .map(|i| signer.sign(i, nonces[i], Payload::RegisterName { name: names[i] }))
        .collect();
    let mut problems = Vec::new();
    let mut answered = None;
    for node in 0..nodes.len() {
        match nodes.send(node, &txs).await {
            Ok(answers) => {
                answered = Some((node, answers));
                break;
            }
            Err(problem) => problems.push(format!("{}: {problem}", nodes.name(node))),
        }
    }
    let (node, answers) = answered.ok_or_else(|| LoadError::NoNode(problems.join("; ")))?;
    for (name, answer) in names.iter().zip(&answers) {
        match answer {
            Answer::Code(0 | 8) => {}
            Answer::Code(code) => {
                return Err(LoadError::Setup(format!(
                    "registering the name {}: {} refused it with code {code} ({})",
                    name.as_str(),
                    nodes.name(node),
                    code_name(*code)
                )));
            }
            Answer::Error => {
                return Err(LoadError::Setup(format!(
                    "registering the name {}: {} answered with an error",
                    name.as_str(),
                    nodes.name(node)
                )));
            }
        }
    }
    wait_committed(nodes, node, &txs, REGISTER_WITHIN).await?;
    Ok(names)
}

/// Polls `tx` for each hash, on `first` then on each node in turn, until all are found.
async fn wait_committed(
    nodes: &Nodes,
    first: usize,
    txs: &[SignedTx],
    within: Duration,
) -> Result<(), LoadError> {
    let deadline = Instant::now() + within;
    let mut waiting: Vec<&SignedTx> = txs.iter().collect();
    let mut node = first;
    loop {
        let mut batch = BatchRequestBuilder::new();
        for tx in &waiting {
            let mut params = ObjectParams::new();
            params
                .insert("hash", HashParam(tx.hash))
                .map_err(|e| LoadError::Setup(e.to_string()))?;
            batch
                .insert("tx", params)
                .map_err(|e| LoadError::Setup(e.to_string()))?;
        }
        if let Ok(responses) = nodes.client(node).batch_request::<TxResult>(batch).await {
            let found: Vec<bool> = responses.into_iter().map(|entry| entry.is_ok()).collect();
            let mut index = 0;
            waiting.retain(|_| {
                index += 1;
                !found.get(index - 1).copied().unwrap_or(false)
            });
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LoadError::Setup(format!(
                "{} of {} name registrations did not commit within {within:?}",
                waiting.len(),
                txs.len()
            )));
        }
        tokio::time::sleep(REGISTER_POLL).await;
        node = (node + 1) % nodes.len();
    }
}
