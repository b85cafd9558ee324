//! WebSocket subscriptions: `subscribe` and the event forwarder.

use super::*;

pub(super) async fn subscribe(
    params: Params<'static>,
    pending: PendingSubscriptionSink,
    state: Arc<RpcState>,
) -> jsonrpsee::core::SubscriptionResult {
    let query = parse_params::<QueryParams>(params.as_str())
        .and_then(|p| parse_query(&p.query).map_err(invalid_params));
    let query = match query {
        Ok(query) => query,
        Err(e) => {
            pending.reject(e).await;
            return Ok(());
        }
    };
    let events = state.ctx.events.subscribe();
    let sink = pending.accept().await?;
    forward_events(sink, events, query).await
}

/// Sends each event to the subscriber until it leaves, falls behind, or the node stops.
pub(super) async fn forward_events(
    sink: SubscriptionSink,
    mut events: broadcast::Receiver<NodeEvent>,
    query: Query,
) -> jsonrpsee::core::SubscriptionResult {
    loop {
        let event = tokio::select! {
            _ = sink.closed() => return Ok(()),
            event = events.recv() => event,
        };
        match event {
            Ok(event) => {
                for notification in event_notifications(&event, query) {
                    let message = serde_json::value::to_raw_value(&notification)?;
                    if sink.send(SubscriptionMessage::from(message)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            Err(RecvError::Lagged(missed)) => {
                return Err(format!(
                    "subscriber fell behind and missed {missed} events (at most {EVENTS_MAX} \
                     wait); resubscribe and read the gap with `block`"
                )
                .into());
            }
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}
