//! The node's Prometheus metrics (prefix `weft_`, names after CometBFT's) and the `/metrics`
//! endpoint.

use std::net::SocketAddr;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry, TextEncoder,
};

pub struct NodeMetrics {
    pub registry: Registry,
    pub consensus_height: IntGauge,
    pub consensus_rounds: IntGauge,
    pub consensus_block_interval_seconds: Histogram,
    pub consensus_validators: IntGauge,
    pub consensus_validators_power: IntGauge,
    pub consensus_validator_power: IntGauge,
    pub consensus_validator_updates: IntCounter,
    pub consensus_byzantine_validators: IntGauge,
    pub consensus_num_txs: IntCounter,
    pub mempool_size: IntGauge,
    pub execution_seconds: Histogram,
    pub execution_parallel_blocks: IntCounter,
    pub dag_edges: IntGauge,
    pub dag_critical_path: IntGauge,
    pub dag_parallelism: Gauge,
    pub statesync_snapshots_taken: IntCounter,
    pub statesync_chunks_served: IntCounter,
    pub statesync_snapshots_restored: IntCounter,
    pub statesync_chunks_refused: IntCounter,
    pub storage_earliest_height: IntGauge,
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::with_opts(Opts::new(name, help).namespace("weft")).expect("valid metric")
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::with_opts(Opts::new(name, help).namespace("weft")).expect("valid metric")
}

impl NodeMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let metrics = NodeMetrics {
            consensus_height: gauge("consensus_height", "Height of the last committed block."),
            consensus_rounds: gauge("consensus_rounds", "Round of the current height."),
            consensus_block_interval_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "consensus_block_interval_seconds",
                    "Time between this and the last block.",
                )
                .namespace("weft")
                .buckets(vec![
                    0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
                ]),
            )?,
            consensus_validators: gauge("consensus_validators", "Number of validators."),
            consensus_validators_power: gauge(
                "consensus_validators_power",
                "Total voting power of all validators.",
            ),
            consensus_validator_power: gauge(
                "consensus_validator_power",
                "Voting power of this node's validator key (0 when it is not in the set).",
            ),
            consensus_validator_updates: counter(
                "consensus_validator_updates_total",
                "Validator updates committed (each takes effect two heights later).",
            ),
            consensus_byzantine_validators: gauge(
                "consensus_byzantine_validators",
                "Validators named by equivocation evidence seen.",
            ),
            consensus_num_txs: IntCounter::with_opts(
                Opts::new("consensus_total_txs", "Committed txs.").namespace("weft"),
            )?,
            mempool_size: gauge("mempool_size", "Txs in the mempool."),
            execution_seconds: Histogram::with_opts(
                HistogramOpts::new("execution_seconds", "Time to validate and execute a block.")
                    .namespace("weft")
                    .buckets(vec![
                        0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
                    ]),
            )?,
            execution_parallel_blocks: IntCounter::with_opts(
                Opts::new(
                    "execution_parallel_blocks_total",
                    "Blocks executed on the parallel path.",
                )
                .namespace("weft"),
            )?,
            dag_edges: gauge(
                "execution_dag_edges",
                "Edges in the last block's conflict DAG.",
            ),
            dag_critical_path: gauge(
                "execution_dag_critical_path",
                "Longest dependency chain in the last block's DAG.",
            ),
            dag_parallelism: Gauge::with_opts(
                Opts::new(
                    "execution_dag_parallelism",
                    "Work over span of the last block's DAG.",
                )
                .namespace("weft"),
            )?,
            statesync_snapshots_taken: counter(
                "statesync_snapshots_taken_total",
                "State snapshots this node wrote.",
            ),
            statesync_chunks_served: counter(
                "statesync_chunks_served_total",
                "Snapshot chunks served to peers.",
            ),
            statesync_snapshots_restored: counter(
                "statesync_snapshots_restored_total",
                "Snapshots this node restored its state from (state sync).",
            ),
            statesync_chunks_refused: counter(
                "statesync_chunks_refused_total",
                "Snapshot chunks, manifests and light blocks from peers found false and refused.",
            ),
            storage_earliest_height: gauge(
                "storage_earliest_height",
                "Lowest height whose block this node keeps (pruning and state sync raise it).",
            ),
            registry,
        };
        let r = &metrics.registry;
        r.register(Box::new(metrics.consensus_height.clone()))?;
        r.register(Box::new(metrics.consensus_rounds.clone()))?;
        r.register(Box::new(metrics.consensus_block_interval_seconds.clone()))?;
        r.register(Box::new(metrics.consensus_validators.clone()))?;
        r.register(Box::new(metrics.consensus_validators_power.clone()))?;
        r.register(Box::new(metrics.consensus_validator_power.clone()))?;
        r.register(Box::new(metrics.consensus_validator_updates.clone()))?;
        r.register(Box::new(metrics.consensus_byzantine_validators.clone()))?;
        r.register(Box::new(metrics.consensus_num_txs.clone()))?;
        r.register(Box::new(metrics.mempool_size.clone()))?;
        r.register(Box::new(metrics.execution_seconds.clone()))?;
        r.register(Box::new(metrics.execution_parallel_blocks.clone()))?;
        r.register(Box::new(metrics.dag_edges.clone()))?;
        r.register(Box::new(metrics.dag_critical_path.clone()))?;
        r.register(Box::new(metrics.dag_parallelism.clone()))?;
        r.register(Box::new(metrics.statesync_snapshots_taken.clone()))?;
        r.register(Box::new(metrics.statesync_chunks_served.clone()))?;
        r.register(Box::new(metrics.statesync_snapshots_restored.clone()))?;
        r.register(Box::new(metrics.statesync_chunks_refused.clone()))?;
        r.register(Box::new(metrics.storage_earliest_height.clone()))?;
        Ok(metrics)
    }

    /// The text exposition of every registered metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

/// Serves `GET /metrics` until the task is dropped.
pub async fn serve(
    metrics: std::sync::Arc<NodeMetrics>,
    addr: SocketAddr,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move { metrics.render() }
        }),
    );
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }))
}
