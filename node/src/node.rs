//! Starting and stopping a node: opens the home, builds every part, runs until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use thiserror::Error;
use tokio::sync::{broadcast, watch};
use weft_consensus::{Height, SignedProposal, ValidatorId, ValueId};
use weft_genesis::{Genesis, SecretKey, read_key_file};
use weft_gossip::net::keypair_from_secret;
use weft_gossip::{
    GossipConfig, GossipMode, Hooks, SnapshotRequest, SnapshotResponse, SyncBlock, TxVerdict,
};

use crate::block::SealedBlock;
use crate::chain::{Chain, PRUNE_FLOOR_NONE};
use crate::config::{Config, Home};
use crate::context::{ConsensusStatus, EVENTS_MAX, NodeContext, NodeInfo};
use crate::driver::{Driver, DriverError, DriverSetup};
use crate::engine::{Byzantine, CoreError, CoreSetup};
use crate::mempool::{AdmitError, Mempool, MempoolConfig};
use crate::metrics::NodeMetrics;
use crate::snapshots::SnapshotStore;
use crate::statesync::{StateSyncConfig, Trust};

/// How long state sync may take before the node gives up with an error.
const STATE_SYNC_DEADLINE: Duration = Duration::from_secs(600);

#[derive(Debug, Error)]
pub enum NodeError {
    #[error("{0}")]
    Setup(String),
    #[error("consensus stopped: {0}")]
    Driver(#[from] crate::driver::DriverError),
}

fn setup(error: impl std::fmt::Display) -> NodeError {
    NodeError::Setup(error.to_string())
}

/// The byzantine switch, read from `WEFT_BYZANTINE` in a build with test hooks only
/// (`extra-edge`, `missing-edge`, `under-declared`, `equivocate`).
fn byzantine_switch() -> Result<Byzantine, NodeError> {
    match crate::test_hooks::var("WEFT_BYZANTINE") {
        None => Ok(Byzantine::None),
        Some(value) => {
            let value = value.to_string_lossy().into_owned();
            serde_json::from_value(serde_json::Value::String(value.clone()))
                .map_err(|_| setup(format!("WEFT_BYZANTINE={value:?} is not a known lie")))
        }
    }
}

fn verdict(result: &Result<weft_execution::TxHash, AdmitError>) -> TxVerdict {
    match result {
        Ok(_) => TxVerdict::Accept,
        Err(
            AdmitError::Malformed(_)
            | AdmitError::TooLarge { .. }
            | AdmitError::BadSignature(_)
            | AdmitError::WrongChainId { .. },
        ) => TxVerdict::Reject,
        Err(_) => TxVerdict::Ignore,
    }
}

/// Runs the node in `home` with `config` until `shutdown` completes, then stops cleanly:
/// consensus stops and syncs its WAL, the listeners close, and the database is flushed.
pub async fn run(
    home: &Home,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    crate::test_hooks::warn_at_start();
    crate::crashpoint::arm_from_env().map_err(setup)?;
    let genesis = Genesis::load(&home.genesis()).map_err(setup)?;
    let node_key = read_key_file(&home.node_key()).map_err(setup)?;
    let validator_key = if home.validator_key().exists() {
        Some(read_key_file(&home.validator_key()).map_err(setup)?)
    } else {
        None
    };
    let data = home.data(&config);
    std::fs::create_dir_all(&data).map_err(|e| setup(format!("{}: {e}", data.display())))?;
    let threads = match config.execution.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let chain_dir = data.join("chain");
    let database_error =
        |e: &dyn std::fmt::Display| setup(format!("chain database {}: {e}", chain_dir.display()));
    let mut chain =
        Chain::open(&chain_dir, genesis.clone(), threads).map_err(|e| database_error(&e))?;
    chain.verify_integrity().map_err(|e| database_error(&e))?;
    let storage = &config.storage;
    let snapshots = if storage.snapshot_interval > 0 {
        Some(Arc::new(
            SnapshotStore::open(&data.join("snapshots"), storage.snapshot_keep, true)
                .map_err(setup)?,
        ))
    } else {
        None
    };
    let floor = snapshots.as_ref().map_or_else(
        || Arc::new(std::sync::atomic::AtomicU64::new(PRUNE_FLOOR_NONE)),
        |store| store.floor(),
    );
    chain.set_retention(storage.retain_blocks, floor, storage.snapshot_interval);
    let fresh = chain.height().0 + 1 == genesis.initial_height;
    let state_sync = config.statesync.enable && fresh;
    if config.statesync.enable && !fresh {
        tracing::info!(
            height = chain.height().0,
            "state sync is on but the chain database holds blocks: starting from them"
        );
    }
    let chain_id = chain.chain_id().clone();
    let height_sets = chain.height_sets();
    let chain = Arc::new(RwLock::new(chain));
    let mempool_config = MempoolConfig {
        size: config.mempool.size,
        max_bytes: config.mempool.max_bytes,
        tx_bytes_max: config.mempool.tx_bytes_max,
        cache_size: config.mempool.cache_size,
        ..MempoolConfig::default()
    };
    mempool_config.validate().map_err(setup)?;
    let mempool = Arc::new(Mutex::new(Mempool::new(mempool_config, chain_id.clone())));
    let metrics = Arc::new(NodeMetrics::new().map_err(setup)?);
    metrics
        .consensus_validators
        .set(chain.read().current_validators().len() as i64);
    metrics.consensus_height.set(chain.read().height().0 as i64);

    // Gossip, with the node's hooks: tx admission, the block store, the proposal-block binding.
    let mut gossip_config = GossipConfig::new(
        keypair_from_secret(&node_key),
        chain_id.as_str(),
        chain.read().current_validators().clone(),
    );
    gossip_config.validators = height_sets;
    gossip_config.genesis_hash = genesis.hash();
    gossip_config.listen = config.p2p.listen.parse().map_err(setup)?;
    gossip_config.static_peers = config
        .p2p
        .persistent_peers
        .iter()
        .map(|p| p.parse().map_err(setup))
        .collect::<Result<_, _>>()?;
    gossip_config.mode = match config.p2p.gossip.as_str() {
        "plain" => GossipMode::Plain,
        _ => GossipMode::Semantic,
    };
    gossip_config.limits.connections_max = config.p2p.max_connections;
    let hooks = {
        let (chain_t, mempool_t, metrics_t) = (chain.clone(), mempool.clone(), metrics.clone());
        let chain_b = chain.clone();
        let (chain_s, store_s, metrics_s) = (chain.clone(), snapshots.clone(), metrics.clone());
        Hooks {
            snapshots: Arc::new(move |request: &SnapshotRequest| -> SnapshotResponse {
                let answer = crate::snapshots::serve(&chain_s, store_s.as_deref(), request);
                if let SnapshotResponse::Chunk(Some(_)) = &answer {
                    metrics_s.statesync_chunks_served.inc();
                }
                answer
            }),
            txs: Arc::new(move |txs: &[Vec<u8>]| {
                let chain = chain_t.read();
                let mut mempool = mempool_t.lock();
                let verdicts = mempool.check_batch(txs, chain.state());
                metrics_t.mempool_size.set(mempool.len() as i64);
                verdicts.iter().map(verdict).collect()
            }),
            blocks: Arc::new(
                move |from: Height, count: u32, max: usize| -> Vec<SyncBlock> {
                    chain_b.read().sync_blocks(from, count, max)
                },
            ),
            block_check: Arc::new(|proposal: &SignedProposal, bytes: &[u8]| {
                match SealedBlock::decode(Arc::from(bytes)) {
                    Ok(block) => {
                        let p = proposal.message;
                        block.hash == p.value
                            && block.block.header.height == p.height
                            && block.block.header.proposer == p.proposer
                    }
                    Err(_) => false,
                }
            }),
        }
    };
    let (gossip, events) = weft_gossip::spawn(gossip_config, hooks)
        .await
        .map_err(setup)?;
    gossip
        .metrics()
        .register(&metrics.registry)
        .map_err(setup)?;

    if state_sync {
        let trust = match config.statesync.anchor().map_err(setup)? {
            None => Trust::Genesis,
            Some((height, hash)) => Trust::Anchor {
                height: Height(height),
                hash: ValueId(hash),
            },
        };
        let sync_config = StateSyncConfig {
            trust,
            discovery: Duration::from_millis(config.statesync.discovery_time_ms),
            fetchers: config.statesync.chunk_fetchers,
            deadline: STATE_SYNC_DEADLINE,
        };
        tracing::info!(?trust, "state sync: looking for snapshots");
        let restored = crate::statesync::run(&gossip, chain.clone(), &sync_config, &metrics)
            .await
            .map_err(|e| setup(format!("state sync: {e}")))?;
        tracing::info!(
            height = restored.height.0,
            chunks = restored.chunks,
            charged = restored.charged.len(),
            seconds = restored.elapsed.as_secs_f64(),
            "state sync done: block-syncing the rest"
        );
        metrics.consensus_height.set(restored.height.0 as i64);
    }
    metrics
        .storage_earliest_height
        .set(chain.read().earliest_height().0 as i64);

    let info = NodeInfo {
        moniker: config.moniker.clone(),
        chain_id: chain_id.as_str().to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        peer_id: gossip.peer_id().to_string(),
        validator: validator_key.as_ref().map(|k| hex::encode(k.public())),
        p2p_addrs: gossip
            .listen_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect(),
        rpc_addr: config.rpc.laddr.clone(),
    };
    let (events_tx, _) = broadcast::channel(EVENTS_MAX);
    let ctx = Arc::new(NodeContext {
        config: config.clone(),
        info,
        chain: chain.clone(),
        mempool,
        gossip: gossip.clone(),
        events: events_tx,
        consensus: Arc::new(Mutex::new(ConsensusStatus::default())),
        evidence: Arc::new(Mutex::new(Vec::new())),
        metrics: metrics.clone(),
        snapshots,
    });

    // Consensus, with the validator set of the height it starts at (after any state sync).
    let validators = chain.read().current_validators().clone();
    let params = {
        let mut params = genesis.timeout_params();
        let c = &config.consensus;
        if let Some(ms) = c.timeout_propose_ms {
            params.propose_ms = ms;
        }
        if let Some(ms) = c.timeout_prevote_ms {
            params.prevote_ms = ms;
        }
        if let Some(ms) = c.timeout_precommit_ms {
            params.precommit_ms = ms;
        }
        params
    };
    let commit_delay = Duration::from_millis(
        config
            .consensus
            .timeout_commit_ms
            .unwrap_or(genesis.consensus.timeout_commit_ms),
    );
    let block_max_txs = config
        .consensus
        .block_max_txs
        .unwrap_or(genesis.consensus.block_max_txs)
        .min(genesis.consensus.block_max_txs) as usize;
    let block_max_bytes = config
        .consensus
        .block_max_bytes
        .unwrap_or(genesis.consensus.block_max_bytes)
        .min(genesis.consensus.block_max_bytes) as usize;
    let driver = Driver::open(
        ctx.clone(),
        DriverSetup {
            wal_path: data.join("cs.wal"),
            guard_path: data.join("last_signed"),
            core: CoreSetup {
                key: validator_key.as_ref().map(SecretKey::signing_key),
                chain_id: ctx.info.chain_id.clone(),
                params,
                commit_delay,
                // Room for the header and last commit beside the txs.
                block_max_txs,
                block_max_bytes: block_max_bytes.saturating_sub(64 * 1024),
                byzantine: byzantine_switch()?,
                create_empty_blocks: config.consensus.create_empty_blocks,
            },
        },
    )
    .map_err(|e| match e {
        DriverError::Core(e @ CoreError::StoreBehind { .. }) => database_error(&e),
        e => NodeError::Driver(e),
    })?;
    match &validator_key {
        Some(key) if validators.power(&ValidatorId(key.public())).is_some() => {
            tracing::info!(validator = %hex::encode(key.public()), "running as a validator");
        }
        Some(key) => tracing::info!(
            key = %hex::encode(key.public()),
            "this node's validator key is not in the validator set: running as a full node \
             (it follows the chain and serves RPC, and signs only from the height a validator \
             update puts its key in the set)"
        ),
        None => tracing::info!("no validator key: running as a full node"),
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut driver_task = tokio::spawn(driver.run(events, stop_rx));

    // Operator interfaces.
    let (rpc, rpc_addr) = crate::rpc::serve(ctx.clone()).await.map_err(setup)?;
    let metrics_task = if config.metrics.laddr.is_empty() {
        None
    } else {
        let addr = config.metrics.laddr.parse().map_err(setup)?;
        Some(
            crate::metrics::serve(metrics.clone(), addr)
                .await
                .map_err(|e| setup(format!("metrics {addr}: {e}")))?,
        )
    };
    tracing::info!(
        peer_id = %gossip.peer_id(),
        p2p = ?gossip.listen_addrs(),
        rpc = %rpc_addr,
        height = ?chain.read().height(),
        "node started"
    );

    let outcome = tokio::select! {
        () = shutdown => None,
        result = &mut driver_task => Some(result),
    };
    let _ = stop_tx.send(true);
    let result = match outcome {
        Some(result) => result,
        None => driver_task.await,
    };
    let _ = rpc.stop();
    rpc.stopped().await;
    if let Some(task) = metrics_task {
        task.abort();
    }
    gossip.shutdown().await;
    chain
        .read()
        .state()
        .flush()
        .map_err(|e| setup(format!("flushing the database: {e}")))?;
    tracing::info!("node stopped");
    match result {
        Ok(outcome) => outcome.map_err(NodeError::from),
        Err(join) => Err(setup(format!("consensus task failed: {join}"))),
    }
}
