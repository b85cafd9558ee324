//! The consensus driver: the tokio shell around the node core ([`crate::engine`]). It turns
//! gossip, timers and block-sync answers into core events, and the core's commands into
//! fsyncs, gossip, sync requests, status, metrics and RPC events, in the order given. It holds
//! no protocol decision: those are the core's.
//!
//! The core's calls into the chain (validation, execution, commit) block, so each event is
//! handled under `block_in_place`. A durable write that fails stops the node.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};
use weft_gossip::{GossipEvent, Message, SyncBlock, SyncError};

use crate::context::{EVIDENCE_KEPT_MAX, NodeContext, NodeEvent};
use crate::crashpoint;
use crate::engine::{Command, Core, CoreError, CoreSetup, Event, NodeLedger, Recovered};
use crate::guard::{GuardError, SignGuard};
use crate::wal::Wal;

pub use crate::engine::Byzantine;

/// How often the driver shows the core its peers' heights.
const SYNC_TICK: Duration = Duration::from_millis(250);

/// A block-sync request in flight. It runs beside consensus: the driver goes on voting while
/// the answer is awaited, so an unresponsive peer costs only that peer's blocks.
struct Fetch {
    peer: PeerId,
    answer: oneshot::Receiver<Result<Vec<SyncBlock>, SyncError>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("WAL: {0}")]
    Wal(#[from] crate::wal::WalError),
    #[error("sign guard: {0}")]
    Guard(#[from] GuardError),
    #[error(transparent)]
    Core(#[from] CoreError),
}

pub struct DriverSetup {
    pub wal_path: std::path::PathBuf,
    pub guard_path: std::path::PathBuf,
    pub core: CoreSetup,
}

/// The core's clock: wall-clock milliseconds at start, advanced by a monotonic clock, so
/// timers never jump and block times stay near the wall clock.
struct Clock {
    wall_ms: u64,
    started: Instant,
}

impl Clock {
    fn new() -> Clock {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Clock {
            wall_ms,
            started: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.wall_ms + self.started.elapsed().as_millis() as u64
    }

    fn instant(&self, at_ms: u64) -> Instant {
        self.started + Duration::from_millis(at_ms.saturating_sub(self.wall_ms))
    }
}

pub struct Driver {
    ctx: Arc<NodeContext>,
    core: Core<NodeLedger>,
    clock: Clock,
    /// The WAL, with the blocks behind this height's proposals beside its entries.
    wal: Wal,
    guard: SignGuard,
    fetch: Option<Fetch>,
    /// Events the commands gave back (messages gossip held), handled before the next one
    /// from outside.
    pending: VecDeque<Event>,
    last_block_at: Option<Instant>,
}

impl Driver {
    /// Opens the WAL (entries and blocks) and the guard, and rebuilds consensus where it
    /// stopped.
    pub fn open(ctx: Arc<NodeContext>, setup: DriverSetup) -> Result<Driver, DriverError> {
        let (mut wal, entries, recovery) = Wal::open(&setup.wal_path)?;
        if recovery.truncated_bytes > 0 {
            tracing::warn!(
                ?recovery,
                "WAL had a damaged tail; truncated at the last good record"
            );
        }
        let blocks = wal.take_blocks();
        // Blocks lived in a file of their own (`<wal>.blocks`) before they moved into the WAL;
        // such a file holds only this height's blocks, which peers still hold.
        let old_blocks = old_block_log_path(&setup.wal_path);
        if old_blocks.exists() {
            tracing::info!(path = %old_blocks.display(), "removing the old proposal-block log (blocks now live in the WAL)");
            crate::records::remove_if_present(&old_blocks).map_err(|source| {
                crate::wal::WalError::Io {
                    path: old_blocks,
                    source,
                }
            })?;
        }
        let guard = SignGuard::open(&setup.guard_path)?;
        let ledger = NodeLedger {
            chain: ctx.chain.clone(),
            mempool: ctx.mempool.clone(),
            metrics: ctx.metrics.clone(),
        };
        let recovered = Recovered {
            entries,
            last_signed: guard.last().copied(),
            blocks,
        };
        let clock = Clock::new();
        let (core, commands) =
            tokio::task::block_in_place(|| Core::open(ledger, setup.core, recovered, clock.now()))?;
        let mut driver = Driver {
            ctx,
            core,
            clock,
            wal,
            guard,
            fetch: None,
            pending: VecDeque::new(),
            last_block_at: None,
        };
        driver.execute(commands)?;
        Ok(driver)
    }

    /// Hands `event` to the core, carries out what it returns, then the events those commands
    /// gave back.
    fn step(&mut self, event: Event) -> Result<(), DriverError> {
        self.pending.push_back(event);
        while let Some(event) = self.pending.pop_front() {
            let now = self.clock.now();
            let commands = tokio::task::block_in_place(|| self.core.on(event, now))?;
            self.execute(commands)?;
        }
        Ok(())
    }

    fn execute(&mut self, commands: Vec<Command>) -> Result<(), DriverError> {
        for command in commands {
            self.carry_out(command)?;
        }
        Ok(())
    }

    fn carry_out(&mut self, command: Command) -> Result<(), DriverError> {
        match command {
            Command::WalAppend(entry) => self.wal.append(&entry)?,
            Command::WalRotate { entries, blocks } => {
                self.wal.start_height_with(&entries, &blocks)?;
            }
            Command::LogBlock(block) => {
                if let Err(error) = self.wal.append_block(&block) {
                    tracing::warn!(%error, height = ?block.block.header.height, "could not log a proposal's block");
                }
            }
            Command::Persist(record) => {
                self.wal.sync()?;
                if let Some(record) = record {
                    self.guard.persist(&record)?;
                }
            }
            Command::Publish(message) => {
                if let Message::Vote(vote) = &message {
                    let _ = self.ctx.events.send(NodeEvent::Vote(*vote));
                }
                self.ctx.gossip.publish(message);
            }
            Command::Signed(line) => crashpoint::audit_signature(|| line),
            Command::Advertise(height, round) => self.ctx.gossip.advertise(height, round),
            Command::RequestBlocks { peer, from, count } => {
                let (reply, answer) = oneshot::channel();
                let gossip = self.ctx.gossip.clone();
                tokio::spawn(async move {
                    let _ = reply.send(gossip.request_blocks(peer, from, count).await);
                });
                self.fetch = Some(Fetch { peer, answer });
            }
            Command::Redeliver(height) => {
                let held = self.ctx.gossip.held(height);
                self.pending.extend(held.into_iter().map(Event::Message));
            }
            Command::Status {
                height,
                round,
                catching_up,
            } => {
                let moved = {
                    let mut status = self.ctx.consensus.lock();
                    let moved = (status.height, status.round) != (height, round);
                    status.height = height;
                    status.round = round;
                    status.catching_up = catching_up;
                    moved
                };
                self.ctx.metrics.consensus_rounds.set(i64::from(round.0));
                if moved && !catching_up {
                    let _ = self.ctx.events.send(NodeEvent::NewRound { height, round });
                }
            }
            Command::Committed(committed) => self.on_committed(&committed),
            Command::Evidence(evidence) => {
                let mut kept = self.ctx.evidence.lock();
                if kept.len() >= EVIDENCE_KEPT_MAX {
                    kept.remove(0);
                }
                kept.push(evidence);
                let named: std::collections::BTreeSet<_> =
                    kept.iter().map(|e| e.validator()).collect();
                self.ctx
                    .metrics
                    .consensus_byzantine_validators
                    .set(named.len() as i64);
            }
        }
        Ok(())
    }

    /// Metrics, status and subscribers' events for a committed block.
    /// Cuts the snapshot frozen at this commit, if the height was due one, on a blocking
    /// thread: consensus goes on while it is written.
    fn take_snapshot(&self) {
        let (reader, earliest) = {
            let mut chain = self.ctx.chain.write();
            (chain.take_snapshot(), chain.earliest_height())
        };
        self.ctx
            .metrics
            .storage_earliest_height
            .set(earliest.0 as i64);
        let (Some((height, reader)), Some(store)) = (reader, self.ctx.snapshots.clone()) else {
            return;
        };
        let metrics = self.ctx.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            match store.write(height.0, reader) {
                Ok(chunks) => {
                    metrics.statesync_snapshots_taken.inc();
                    tracing::info!(
                        height = height.0,
                        chunks,
                        ms = started.elapsed().as_millis() as u64,
                        "snapshot written"
                    );
                }
                Err(error) => tracing::warn!(height = height.0, %error, "snapshot not written"),
            }
        });
    }

    fn on_committed(&mut self, committed: &crate::chain::Committed) {
        let block = &committed.block.block;
        let height = block.header.height;
        let metrics = &self.ctx.metrics;
        metrics.consensus_height.set(height.0 as i64);
        self.take_snapshot();
        // Gossip checks each message against the set of its own height.
        if self.ctx.gossip.validators() != committed.sets {
            self.ctx.gossip.set_validators(committed.sets.clone());
        }
        if let Some(current) = committed.sets.at(height.next()) {
            metrics.consensus_validators.set(current.len() as i64);
            metrics
                .consensus_validators_power
                .set(current.total_power() as i64);
            let mine = self
                .ctx
                .info
                .validator
                .as_deref()
                .and_then(|hex| hex::decode(hex).ok())
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .and_then(|key| current.power(&weft_consensus::ValidatorId(key)));
            metrics
                .consensus_validator_power
                .set(mine.unwrap_or(0) as i64);
        }
        if !committed.validator_updates.is_empty() {
            metrics
                .consensus_validator_updates
                .inc_by(committed.validator_updates.len() as u64);
            for update in &committed.validator_updates {
                tracing::info!(
                    height = height.0,
                    validator = %hex::encode(update.id.0),
                    power = update.power,
                    effective = height.0 + 2,
                    "validator update committed"
                );
            }
        }
        metrics.consensus_num_txs.inc_by(block.txs.len() as u64);
        let stats = committed.outcome.stats;
        metrics.dag_edges.set(stats.edges as i64);
        metrics.dag_critical_path.set(stats.critical_path as i64);
        if committed.outcome.ran_parallel {
            metrics.execution_parallel_blocks.inc();
        }
        if let Some(at) = self.last_block_at {
            metrics
                .consensus_block_interval_seconds
                .observe(at.elapsed().as_secs_f64());
        }
        self.last_block_at = Some(Instant::now());
        self.ctx.consensus.lock().last_block_time_ms = block.header.time_ms;
        let txs: Vec<_> = committed
            .tx_hashes
            .iter()
            .zip(&committed.outcome.results)
            .map(|(hash, result)| (*hash, result.code as u8))
            .collect();
        let _ = self.ctx.events.send(NodeEvent::NewBlock {
            height,
            hash: committed.block.hash.0,
            time_ms: block.header.time_ms,
            txs: Arc::new(txs),
            block: committed.block.clone(),
        });
    }

    /// Runs until `events` closes or `shutdown` fires.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<GossipEvent>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), DriverError> {
        let mut sync_tick = tokio::time::interval(SYNC_TICK);
        sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.core.next_deadline().map(|at| self.clock.instant(at));
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let event = tokio::select! {
                event = events.recv() => match event {
                    Some(GossipEvent::Consensus { message, .. }) => Event::Message(message),
                    Some(_) => continue,
                    None => break,
                },
                _ = sleep => Event::Tick,
                _ = sync_tick.tick() => Event::Peers(
                    self.ctx.gossip.peers().into_iter().map(|p| (p.peer, p.height)).collect(),
                ),
                answer = fetched(&mut self.fetch) => {
                    let peer = self.fetch.take().map(|f| f.peer).expect("awaited above");
                    Event::Fetched { peer, answer }
                }
                _ = shutdown.changed() => break,
            };
            self.step(event)?;
        }
        self.wal.sync()?;
        Ok(())
    }
}

/// The answer to the sync request in flight; pending while there is none. A request whose
/// task ended without answering counts as failed.
async fn fetched(fetch: &mut Option<Fetch>) -> Result<Vec<SyncBlock>, SyncError> {
    match fetch {
        Some(fetch) => (&mut fetch.answer).await.unwrap_or(Err(SyncError::Closed)),
        None => std::future::pending().await,
    }
}

/// Where the proposal-block log sat beside the WAL, before blocks moved into it.
fn old_block_log_path(wal: &std::path::Path) -> std::path::PathBuf {
    let mut name = wal.as_os_str().to_owned();
    name.push(".blocks");
    std::path::PathBuf::from(name)
}
