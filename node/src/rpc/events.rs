//! Events for WebSocket subscribers: the node's events rendered once, in CometBFT's shapes, for
//! every subscriber to filter; and [`EventStream`], a client that subscribes and reads them.
//!
//! | Node event | CometBFT events (`data.type` is `tendermint/event/<Name>`) | Attributes |
//! |---|---|---|
//! | a block commits | `NewBlock`, `NewBlockHeader`, then `Tx` per tx in block order | `block.height`; `tx.hash`, `tx.height` |
//! | consensus enters a height or round | `NewRound` | `round.height`, `round.round` |
//! | this node signs a vote | `Vote` | `vote.height`, `vote.type` |
//!
//! Every event also has `tm.event` (its name), so `tm.event='Tx' AND tx.height>5` selects.

use std::collections::BTreeMap;

use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::api::encoding::{Base64, Int, Time};
use super::api::types::*;
use super::ws::WsEvent;
use super::*;

/// Rendered events waiting per WebSocket connection; one further behind is dropped.
pub const RENDERED_EVENTS_MAX: usize = 256;

/// Starts the task that renders each node event once, and returns where the rendered events
/// go. The task ends with the node's event channel.
pub(super) fn spawn_renderer(ctx: Arc<NodeContext>) -> broadcast::Sender<Arc<Vec<WsEvent>>> {
    let (rendered, _) = broadcast::channel(RENDERED_EVENTS_MAX);
    let out = rendered.clone();
    let mut events = ctx.events.subscribe();
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "the RPC event renderer fell behind");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            if out.receiver_count() == 0 {
                continue;
            }
            let chain = Arc::clone(&ctx.chain);
            let render = tokio::task::spawn_blocking(move || render(&chain.read(), &event)).await;
            match render {
                Ok(Ok(list)) if !list.is_empty() => {
                    let _ = out.send(Arc::new(list));
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::warn!(%error, "an event could not be rendered"),
                Err(error) => tracing::warn!(%error, "the event renderer failed"),
            }
        }
    });
    rendered
}

fn event(
    name: &str,
    value: impl serde::Serialize,
    mut attributes: BTreeMap<String, Vec<String>>,
) -> Result<WsEvent, String> {
    attributes.insert("tm.event".into(), vec![name.to_owned()]);
    Ok(WsEvent {
        type_name: format!("tendermint/event/{name}"),
        value: serde_json::to_value(value).map_err(|e| e.to_string())?,
        attributes,
    })
}

fn attrs(pairs: &[(&str, String)]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), vec![v.clone()]))
        .collect()
}

/// The CometBFT events one node event makes.
fn render(chain: &Chain, node_event: &NodeEvent) -> Result<Vec<WsEvent>, String> {
    match node_event {
        NodeEvent::NewBlock {
            height, txs, block, ..
        } => {
            let result = reads::block_result(chain, block).map_err(|e| format!("{e:?}"))?;
            let Some(full) = result.block.clone() else {
                return Ok(Vec::new());
            };
            let tx_results: Vec<ExecTxResult> = txs
                .iter()
                .map(|(_, code)| convert::exec_result(*code))
                .collect();
            let height_attrs = attrs(&[("block.height", height.0.to_string())]);
            let mut out = vec![
                event(
                    "NewBlock",
                    NewBlockEvent {
                        block: full.clone(),
                        block_id: result.block_id.clone(),
                        result_finalize_block: FinalizeBlockResult {
                            events: Vec::new(),
                            tx_results: tx_results.clone(),
                            validator_updates: reads::validator_updates_of(block),
                            consensus_param_updates: None,
                            app_hash: Base64(block.block.header.state_root.0.to_vec()),
                        },
                    },
                    height_attrs.clone(),
                )?,
                event(
                    "NewBlockHeader",
                    NewBlockHeaderEvent {
                        header: full.header.clone(),
                    },
                    height_attrs,
                )?,
            ];
            for (index, ((hash, _), (tx, result))) in txs
                .iter()
                .zip(block.block.txs.iter().zip(tx_results))
                .enumerate()
            {
                out.push(event(
                    "Tx",
                    TxEvent {
                        tx_result: TxEventResult {
                            height: Int(height.0),
                            index: index as u32,
                            tx: Base64(tx.encode()),
                            result,
                        },
                    },
                    reads::tx_attributes(hash, *height),
                )?);
            }
            Ok(out)
        }
        NodeEvent::NewRound { height, round } => {
            let Ok(Some(set)) = chain.validators_at(*height) else {
                return Ok(Vec::new());
            };
            let proposer = set.proposer(*round);
            Ok(vec![event(
                "NewRound",
                NewRoundEvent {
                    height: Int(height.0),
                    round: round.0,
                    step: "RoundStepNewRound".into(),
                    proposer: RoundProposer {
                        address: convert::address(&proposer),
                        index: set.index_of(&proposer).map(|i| i as i32).unwrap_or(-1),
                    },
                },
                attrs(&[
                    ("round.height", height.0.to_string()),
                    ("round.round", round.0.to_string()),
                ]),
            )?])
        }
        NodeEvent::Vote(vote) => {
            let message = &vote.message;
            let index = chain
                .validators_at(message.height)
                .ok()
                .flatten()
                .and_then(|set| set.index_of(&message.validator))
                .map(|i| i as i32)
                .unwrap_or(-1);
            let kind = match message.vote_type {
                VoteType::Prevote => 1,
                VoteType::Precommit => 2,
            };
            Ok(vec![event(
                "Vote",
                VoteEvent {
                    vote: Vote {
                        kind,
                        height: Int(message.height.0),
                        round: message.round.0,
                        block_id: message.value.map(|v| BlockId::of(v.0)).unwrap_or_default(),
                        timestamp: Time::from_unix_ms(crate::fixture::now_ms()),
                        validator_address: convert::address(&message.validator),
                        validator_index: index,
                        signature: Base64(vote.signature.0.to_vec()),
                    },
                },
                attrs(&[
                    ("vote.height", message.height.0.to_string()),
                    ("vote.type", kind.to_string()),
                ]),
            )?])
        }
    }
}

/// Why an [`EventStream`] failed.
#[derive(Debug, Error)]
pub enum EventStreamError {
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the node refused the subscription: {0}")]
    Refused(String),
    #[error("the node sent something that is not an event: {0}")]
    Malformed(String),
    #[error("the subscription was cancelled: {0}")]
    Cancelled(String),
    #[error("the connection closed")]
    Closed,
}

/// A client of CometBFT's WebSocket subscriptions: connects to `ws://<rpc>/websocket`,
/// subscribes to one query, and yields its events. Weft's tools use it where they wait for
/// blocks or txs.
pub struct EventStream {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl EventStream {
    /// Connects to the node whose RPC listens at `rpc` (`host:port`) and subscribes to `query`
    /// (`tm.event='NewBlock'`, …). Returns once the node has accepted the subscription.
    pub async fn subscribe(rpc: &str, query: &str) -> Result<EventStream, EventStreamError> {
        let url = format!("ws://{rpc}/websocket");
        let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
        let request = json!({
            "jsonrpc": "2.0",
            "id": "weft-subscribe",
            "method": "subscribe",
            "params": {"query": query},
        });
        socket.send(WsMessage::text(request.to_string())).await?;
        loop {
            let Some(message) = socket.next().await else {
                return Err(EventStreamError::Closed);
            };
            let WsMessage::Text(text) = message? else {
                continue;
            };
            let reply: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| EventStreamError::Malformed(e.to_string()))?;
            if reply["id"] != json!("weft-subscribe") {
                continue;
            }
            if let Some(error) = reply.get("error") {
                return Err(EventStreamError::Refused(error.to_string()));
            }
            return Ok(EventStream { socket });
        }
    }

    /// The next event.
    pub async fn next(&mut self) -> Result<EventEnvelope, EventStreamError> {
        loop {
            let Some(message) = self.socket.next().await else {
                return Err(EventStreamError::Closed);
            };
            let text = match message? {
                WsMessage::Text(text) => text,
                WsMessage::Close(_) => return Err(EventStreamError::Closed),
                _ => continue,
            };
            let reply: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| EventStreamError::Malformed(e.to_string()))?;
            if let Some(error) = reply.get("error") {
                return Err(EventStreamError::Cancelled(error.to_string()));
            }
            return serde_json::from_value(reply["result"].clone())
                .map_err(|e| EventStreamError::Malformed(e.to_string()));
        }
    }

    /// The next `NewBlock` event's block (skipping other kinds).
    pub async fn next_block(&mut self) -> Result<NewBlockEvent, EventStreamError> {
        loop {
            let envelope = self.next().await?;
            if envelope.data.kind == "tendermint/event/NewBlock" {
                return serde_json::from_value(envelope.data.value)
                    .map_err(|e| EventStreamError::Malformed(e.to_string()));
            }
        }
    }

    /// The next `Tx` event (skipping other kinds).
    pub async fn next_tx(&mut self) -> Result<TxEventResult, EventStreamError> {
        loop {
            let envelope = self.next().await?;
            if envelope.data.kind == "tendermint/event/Tx" {
                let event: TxEvent = serde_json::from_value(envelope.data.value)
                    .map_err(|e| EventStreamError::Malformed(e.to_string()))?;
                return Ok(event.tx_result);
            }
        }
    }
}
