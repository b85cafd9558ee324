//! The consensus driver: one tokio task that feeds the pure state machine its inputs and runs
//! the effects it returns.
//!
//! - **Persist before you speak.** Every proposal and vote the machine keeps is appended to the
//!   WAL before the machine sees it. A `Persist` effect fsyncs the WAL and then the double-sign
//!   guard, before the signature it precedes; so everything that led to a signature is durable
//!   when the signature leaves the node. (Entries after the last signature may be lost in a
//!   crash; that is as if they never arrived.)
//! - **Restart.** The WAL of the current height is replayed into a fresh machine. Signing
//!   effects the replay repeats are re-broadcast from the signed copies in the WAL; the guard
//!   refuses anything that would conflict.
//! - **Blocks.** A proposal carries its block; the chain validates it (structure, signatures
//!   with the mempool's verdicts reused, DAG, parallel execution, state root) and caches the
//!   outcome, so a decided block is committed without executing it again.
//! - **Sync.** When peers advertise heights beyond the next one, or a height is decided without
//!   its block, the driver fetches blocks with certificates, checks and commits them, and
//!   restarts consensus at the new height.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use tokio::sync::mpsc;
use weft_consensus::{
    CommitCertificate, Effect, Evidence, Height, Input, LastSigned, Machine, Round, SignedProposal,
    SignedVote, TimeoutParams, ValidatorId, ValidatorSet, Validity, WalEntry, replay,
};
use weft_execution::Transaction;
use weft_gossip::verify::{sign_proposal, sign_vote};
use weft_gossip::{GossipEvent, Message};

use crate::block::SealedBlock;
use crate::blocklog::BlockLog;
use crate::chain::{Committed, evidence_id};
use crate::context::{EVIDENCE_KEPT_MAX, NodeContext, NodeEvent};
use crate::crashpoint;
use crate::guard::{GuardError, SignGuard};
use crate::wal::Wal;

/// Proposals for later heights held until their height starts.
const FUTURE_PROPOSALS_MAX: usize = 32;
/// Blocks kept for the current height (one per proposal seen).
const BLOCKS_MAX: usize = 64;
/// Evidence waiting for a block.
const EVIDENCE_POOL_MAX: usize = 64;
/// How often the driver looks at its peers' heights.
const SYNC_TICK: Duration = Duration::from_millis(250);
/// Blocks fetched per sync request.
const SYNC_BATCH: u32 = 32;
/// How long a peer may be one height ahead of us (holding a block we lack) before we fetch
/// it rather than wait for consensus to hand us the decision. Normally peers commit a moment
/// before or after us; a peer that restarted after committing a height we did not cannot
/// replay that height's votes, and without this both sides would wait for ever.
const LAG_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("WAL: {0}")]
    Wal(#[from] crate::wal::WalError),
    #[error(transparent)]
    BlockLog(#[from] crate::blocklog::BlockLogError),
    #[error("sign guard: {0}")]
    Guard(#[from] GuardError),
    #[error("chain: {0}")]
    Chain(#[from] crate::chain::ChainError),
    #[error(
        "it is at height {stored}, but this node's {witness} shows it already reached height \
         {reached}: the database lost committed heights (corrupted, or restored from an older \
         copy). Restore it, or remove it to sync from peers (keep the WAL and the sign guard)"
    )]
    StoreBehind {
        stored: u64,
        reached: u64,
        witness: &'static str,
    },
}

/// The test-only byzantine switch: a validator that lies on purpose.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Byzantine {
    #[default]
    None,
    /// Proposes blocks whose DAG has an extra edge.
    ExtraEdge,
    /// Proposes blocks whose DAG misses an edge.
    MissingEdge,
    /// Proposes blocks whose access sets under-declare a tx's writes.
    UnderDeclared,
    /// Signs two different prevotes in every round.
    Equivocate,
}

pub struct DriverSetup {
    pub key: Option<SigningKey>,
    pub wal_path: std::path::PathBuf,
    pub guard_path: std::path::PathBuf,
    pub params: TimeoutParams,
    pub commit_delay: Duration,
    pub block_max_txs: usize,
    pub block_max_bytes: usize,
    pub byzantine: Byzantine,
    /// When false, a new height starts only once there is something to put in it: txs in the
    /// mempool, evidence, or a peer's proposal for it.
    pub create_empty_blocks: bool,
}

/// How often a node that waits for txs before a height looks again.
const EMPTY_POLL: Duration = Duration::from_millis(10);

pub struct Driver {
    ctx: Arc<NodeContext>,
    key: Option<SigningKey>,
    me: Option<ValidatorId>,
    machine: Machine,
    wal: Wal,
    /// The blocks behind this height's proposals, durable with the WAL.
    block_log: BlockLog,
    /// The entries of the current WAL log, for rotation at the next height.
    log: Vec<WalEntry>,
    guard: SignGuard,
    params: TimeoutParams,
    commit_delay: Duration,
    block_max_txs: usize,
    block_max_bytes: usize,
    byzantine: Byzantine,
    create_empty_blocks: bool,
    /// The validator set (with proposer priorities) of the machine's height.
    validators: ValidatorSet,
    timeouts: Vec<(Instant, weft_consensus::Timeout)>,
    blocks: HashMap<weft_consensus::ValueId, SealedBlock>,
    future_proposals: Vec<(SignedProposal, SealedBlock)>,
    last_commit: Option<CommitCertificate>,
    evidence_pool: Vec<Evidence>,
    start_next_at: Option<Instant>,
    need_sync: bool,
    /// Since when a peer has worked on a height above our next one (so holds a block we lack)
    /// while our height stood still: (our height then, since when).
    lagging_since: Option<(Height, Instant)>,
    replaying: bool,
    queue: VecDeque<Input>,
    last_block_at: Option<Instant>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn input_height(input: &Input) -> Option<Height> {
    WalEntry(input.clone()).height()
}

impl Driver {
    /// Opens the WAL and guard and rebuilds consensus where it stopped.
    pub fn open(ctx: Arc<NodeContext>, setup: DriverSetup) -> Result<Driver, DriverError> {
        let (wal, entries, recovery) = Wal::open(&setup.wal_path)?;
        if recovery.truncated_bytes > 0 {
            tracing::warn!(
                ?recovery,
                "WAL had a damaged tail; truncated at the last good record"
            );
        }
        let guard = SignGuard::open(&setup.guard_path)?;
        let (block_log, logged_blocks) = BlockLog::open(block_log_path(&setup.wal_path))?;
        let me = setup
            .key
            .as_ref()
            .map(|k| ValidatorId(k.verifying_key().to_bytes()));
        let (committed, genesis_set, initial) = {
            let chain = ctx.chain.read();
            (
                chain.height(),
                chain.validators().clone(),
                chain.genesis().initial_height,
            )
        };
        // A node starts height h in its WAL, and a validator signs at h, only once h - 1 is
        // committed and flushed. A WAL or guard further ahead means the store lost heights it
        // had (sled cuts its log at a damaged record without an error); an empty store
        // (removed on purpose, to sync afresh) is the exception.
        let started = entries.iter().find_map(|entry| match &entry.0 {
            Input::StartHeight { height, .. } => Some((height.0, "consensus WAL")),
            _ => None,
        });
        let signed = guard.last().map(|last| match last {
            LastSigned::Vote(vote) => (vote.height.0, "sign guard"),
            LastSigned::Proposal(proposal) => (proposal.height.0, "sign guard"),
        });
        let empty = committed.0 < initial;
        if let Some((reached, witness)) = started.into_iter().chain(signed).max()
            && !empty
            && reached > committed.0 + 1
        {
            return Err(DriverError::StoreBehind {
                stored: committed.0,
                reached,
                witness,
            });
        }
        // The set of the next height: genesis priorities advanced once per committed height.
        let mut validators = genesis_set;
        for _ in initial..=committed.0 {
            validators = validators.next_height();
        }
        let machine = Machine::new(me, validators.clone());
        let last_commit = ctx.chain.read().certificate(committed)?;
        let mut driver = Driver {
            ctx,
            key: setup.key,
            me,
            machine,
            wal,
            block_log,
            log: Vec::new(),
            guard,
            params: setup.params,
            commit_delay: setup.commit_delay,
            block_max_txs: setup.block_max_txs,
            block_max_bytes: setup.block_max_bytes,
            byzantine: setup.byzantine,
            create_empty_blocks: setup.create_empty_blocks,
            validators,
            timeouts: Vec::new(),
            blocks: HashMap::new(),
            future_proposals: Vec::new(),
            last_commit,
            evidence_pool: Vec::new(),
            start_next_at: None,
            need_sync: false,
            lagging_since: None,
            replaying: false,
            queue: VecDeque::new(),
            last_block_at: None,
        };
        let next = committed.next();
        // Blocks proposed before a restart: a value decided from the WAL may need one.
        for block in logged_blocks {
            if block.block.header.height >= next && driver.blocks.len() < BLOCKS_MAX {
                driver.blocks.insert(block.hash, block);
            }
        }
        let resumable = matches!(
            entries.first(),
            Some(WalEntry(Input::StartHeight { height, .. })) if *height == next
        );
        if resumable {
            driver.resume(entries)?;
        } else {
            // The run loop starts it (at once, or once there is work when empty blocks are off).
            driver.start_next_at = Some(Instant::now());
        }
        Ok(driver)
    }

    /// Replays the WAL of the current height.
    fn resume(&mut self, entries: Vec<WalEntry>) -> Result<(), DriverError> {
        let (machine, effects) = replay(self.me, self.validators.clone(), entries.clone());
        tracing::info!(height = ?machine.height(), round = ?machine.round(), entries = entries.len(), "resumed from the WAL");
        self.machine = machine;
        self.log = entries;
        self.replaying = true;
        for effect in effects {
            self.run_effect(effect)?;
        }
        self.replaying = false;
        self.drain_queue()?;
        self.ctx
            .gossip
            .advertise(self.machine.height(), self.machine.round());
        Ok(())
    }

    /// Begins consensus at `height`: a new WAL log with the entries kept for it.
    fn start_height(&mut self, height: Height) -> Result<(), DriverError> {
        let start = Input::StartHeight {
            height,
            validators: self.validators.clone(),
            params: self.params,
        };
        let mut log = vec![WalEntry(start.clone())];
        log.extend(
            self.log
                .iter()
                .filter(|e| {
                    !matches!(e.0, Input::StartHeight { .. })
                        && e.height().is_some_and(|h| h >= height)
                })
                .cloned(),
        );
        self.wal.start_height(&log)?;
        self.log = log;
        self.timeouts.clear();
        self.blocks.retain(|_, b| b.block.header.height >= height);
        if let Err(error) = self.block_log.reset(self.blocks.values()) {
            tracing::warn!(%error, "could not rotate the proposal-block log");
        }
        let effects = self.machine.handle(start);
        for effect in effects {
            self.run_effect(effect)?;
        }
        self.drain_queue()?;
        self.ctx.gossip.advertise(height, Round(0));
        self.update_status();
        // Proposals that arrived early.
        let early: Vec<_> = std::mem::take(&mut self.future_proposals);
        for (proposal, block) in early {
            self.on_proposal(proposal, block)?;
        }
        Ok(())
    }

    fn update_status(&self) {
        let mut status = self.ctx.consensus.lock();
        status.height = self.machine.height();
        status.round = self.machine.round();
        status.catching_up = self.need_sync;
        self.ctx
            .metrics
            .consensus_rounds
            .set(i64::from(self.machine.round().0));
    }

    /// Hands an input to the machine (after the WAL, where the contract asks) and runs what it
    /// returns, and everything that follows from that.
    fn feed(&mut self, input: Input) -> Result<(), DriverError> {
        self.queue.push_back(input);
        self.drain_queue()
    }

    fn drain_queue(&mut self) -> Result<(), DriverError> {
        while let Some(input) = self.queue.pop_front() {
            let keep = match &input {
                Input::Proposal { .. } | Input::Vote(_) => {
                    input_height(&input).is_some_and(|h| self.machine.keeps_height(h))
                }
                Input::StartHeight { .. } => false,
                _ => true,
            };
            if !keep && !matches!(input, Input::StartHeight { .. }) {
                continue;
            }
            let entry = WalEntry(input.clone());
            self.wal.append(&entry)?;
            self.log.push(entry);
            for effect in self.machine.handle(input) {
                self.run_effect(effect)?;
            }
        }
        self.update_status();
        Ok(())
    }

    fn run_effect(&mut self, effect: Effect) -> Result<(), DriverError> {
        match effect {
            Effect::Persist(record) => {
                self.wal.sync()?;
                if let Err(error) = self.block_log.sync() {
                    tracing::warn!(%error, "could not sync the proposal-block log");
                }
                match self.guard.persist(&record) {
                    Ok(()) => {}
                    Err(GuardError::Regression(_)) if self.replaying => {}
                    Err(error) => return Err(error.into()),
                }
            }
            Effect::SignVote(vote) => {
                let Some(key) = &self.key else { return Ok(()) };
                let signed = match self.guard.check_vote(&vote) {
                    Ok(()) => sign_vote(key, self.ctx.info.chain_id.as_str(), vote),
                    Err(GuardError::Regression(_)) if self.replaying => {
                        match self.signed_copy(&vote) {
                            Some(signed) => signed,
                            None => return Ok(()),
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, ?vote, "refused to sign");
                        return Ok(());
                    }
                };
                crashpoint::audit_signature(|| {
                    format!(
                        "vote {} {} {:?} {}",
                        vote.height.0,
                        vote.round.0,
                        vote.vote_type,
                        vote.value.map_or("nil".into(), |v| hex::encode(v.0))
                    )
                });
                self.ctx.gossip.publish(Message::Vote(signed));
                if self.byzantine == Byzantine::Equivocate
                    && vote.vote_type == weft_consensus::VoteType::Prevote
                    && !self.replaying
                {
                    let mut other = vote;
                    other.value = Some(weft_consensus::ValueId([0xEE; 32]));
                    let forged = sign_vote(key, self.ctx.info.chain_id.as_str(), other);
                    self.ctx.gossip.publish(Message::Vote(forged));
                }
                self.queue.push_back(Input::Vote(signed));
            }
            Effect::SignProposal(proposal) => {
                let Some(key) = &self.key else { return Ok(()) };
                let Some(block) = self.blocks.get(&proposal.value).cloned() else {
                    tracing::warn!(
                        ?proposal,
                        "no block for our own proposal (lost in a restart); not proposing"
                    );
                    return Ok(());
                };
                match self.guard.check_proposal(&proposal) {
                    Ok(()) => {}
                    Err(GuardError::Regression(_)) if self.replaying => {}
                    Err(error) => {
                        tracing::error!(%error, ?proposal, "refused to sign");
                        return Ok(());
                    }
                }
                let signed = sign_proposal(key, self.ctx.info.chain_id.as_str(), proposal);
                crashpoint::audit_signature(|| {
                    format!(
                        "proposal {} {} {}",
                        proposal.height.0,
                        proposal.round.0,
                        hex::encode(proposal.value.0)
                    )
                });
                self.ctx.gossip.publish(Message::Proposal {
                    proposal: signed,
                    block: block.bytes.clone(),
                });
                // A lying proposer's own machine takes its block as valid, as a real liar would.
                self.queue.push_back(Input::Proposal {
                    proposal: signed,
                    validity: Validity::Valid,
                });
            }
            Effect::ScheduleTimeout {
                timeout,
                duration_ms,
            } => {
                self.timeouts
                    .push((Instant::now() + Duration::from_millis(duration_ms), timeout));
            }
            Effect::RequestValue { height, round, .. } => {
                if self.replaying {
                    // The WAL holds the value proposed before the crash, if any; a new one is
                    // asked for once replay is over.
                    return Ok(());
                }
                let block = self.build_block()?;
                let value = block.hash;
                self.log_block(&block);
                self.blocks.insert(value, block);
                self.queue.push_back(Input::ProposeValue {
                    height,
                    round,
                    value,
                });
            }
            // During replay this is a height decided before the crash but not committed: the
            // block is gone with the process, so it comes back through sync.
            Effect::Decide { certificate, .. } => self.decide(certificate)?,
            Effect::Evidence(evidence) => self.on_evidence(evidence),
        }
        Ok(())
    }

    fn signed_copy(&self, vote: &weft_consensus::Vote) -> Option<SignedVote> {
        self.log.iter().find_map(|entry| match &entry.0 {
            Input::Vote(signed) if signed.message == *vote => Some(*signed),
            _ => None,
        })
    }

    fn build_block(&mut self) -> Result<SealedBlock, DriverError> {
        let me = self.me.expect("only validators are asked for values");
        let txs: Vec<Transaction> = {
            let chain = self.ctx.chain.read();
            let mempool = self.ctx.mempool.lock();
            mempool
                .reap(self.block_max_txs, self.block_max_bytes, chain.state())
                .into_iter()
                .map(|tx| (*tx).clone())
                .collect()
        };
        let evidence: Vec<Evidence> = self.evidence_pool.clone();
        let block = tokio::task::block_in_place(|| {
            self.ctx
                .chain
                .read()
                .build(me, txs, self.last_commit.clone(), evidence, now_ms())
        })?;
        Ok(match self.byzantine {
            Byzantine::None | Byzantine::Equivocate => block,
            kind => {
                let lying = crate::byzantine::lie(block, kind);
                tracing::info!(height = ?lying.block.header.height, txs = lying.block.txs.len(), hash = ?lying.hash, ?kind, "byzantine: proposing a lying block");
                lying
            }
        })
    }

    fn on_evidence(&mut self, evidence: Evidence) {
        let id = evidence_id(&evidence);
        if self.evidence_pool.iter().any(|e| evidence_id(e) == id) {
            return;
        }
        tracing::warn!(validator = ?evidence.validator(), "equivocation evidence");
        if self.evidence_pool.len() < EVIDENCE_POOL_MAX {
            self.evidence_pool.push(evidence.clone());
        }
        let mut kept = self.ctx.evidence.lock();
        if kept.len() >= EVIDENCE_KEPT_MAX {
            kept.remove(0);
        }
        kept.push(evidence);
        let named: std::collections::BTreeSet<_> = kept.iter().map(|e| e.validator()).collect();
        self.ctx
            .metrics
            .consensus_byzantine_validators
            .set(named.len() as i64);
    }

    fn decide(&mut self, certificate: CommitCertificate) -> Result<(), DriverError> {
        let committed = {
            let mut chain = self.ctx.chain.write();
            if chain.height() >= certificate.height {
                return Ok(());
            }
            let mut result = chain.commit(&certificate);
            if matches!(result, Err(crate::chain::ChainError::NotValidated(_)))
                && let Some(block) = self.blocks.get(&certificate.value)
            {
                // Held but not validated in this process: a block from the proposal-block log
                // after a restart. Validate it now (the chain caches the outcome), then commit.
                let mempool = self.ctx.mempool.lock();
                let proposer = block.block.header.proposer;
                let verdict = tokio::task::block_in_place(|| {
                    chain.validate(block, Some(proposer), now_ms(), &|hash| {
                        mempool.signature_verified(hash)
                    })
                });
                match verdict {
                    Ok(()) => result = chain.commit(&certificate),
                    Err(invalid) => {
                        tracing::error!(height = ?certificate.height, %invalid, "a decided block from the proposal-block log does not validate");
                    }
                }
            }
            match result {
                Ok(committed) => committed,
                Err(crate::chain::ChainError::NotValidated(_)) => {
                    tracing::info!(height = ?certificate.height, "decided a block we do not hold; syncing it");
                    self.need_sync = true;
                    return Ok(());
                }
                Err(error) => return Err(error.into()),
            }
        };
        self.after_commit(&committed, certificate);
        self.start_next_at = Some(Instant::now() + self.commit_delay);
        Ok(())
    }

    /// Everything that follows a commit, whether decided here or synced.
    fn after_commit(&mut self, committed: &Committed, certificate: CommitCertificate) {
        let block = &committed.block.block;
        let height = block.header.height;
        {
            let chain = self.ctx.chain.read();
            let mut mempool = self.ctx.mempool.lock();
            mempool.update(&block.txs, chain.state());
            self.ctx.metrics.mempool_size.set(mempool.len() as i64);
        }
        let included: Vec<[u8; 32]> = block.evidence.iter().map(evidence_id).collect();
        self.evidence_pool
            .retain(|e| !included.contains(&evidence_id(e)));
        self.last_commit = Some(certificate);
        self.validators = self.validators.next_height();
        let metrics = &self.ctx.metrics;
        metrics.consensus_height.set(height.0 as i64);
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
        {
            let mut status = self.ctx.consensus.lock();
            status.last_block_time_ms = block.header.time_ms;
        }
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
        });
    }

    fn on_proposal(
        &mut self,
        proposal: SignedProposal,
        block: SealedBlock,
    ) -> Result<(), DriverError> {
        let height = proposal.message.height;
        let current = self.machine.height();
        if height < current || (height == current && self.machine.decided().is_some()) {
            return Ok(());
        }
        if height > current || self.start_next_at.is_some() {
            if self.future_proposals.len() < FUTURE_PROPOSALS_MAX && height.0 <= current.0 + 2 {
                self.future_proposals.push((proposal, block));
            }
            return Ok(());
        }
        let validity = {
            let chain = self.ctx.chain.read();
            let mut mempool = self.ctx.mempool.lock();
            let started = Instant::now();
            let verdict = tokio::task::block_in_place(|| {
                chain.validate(&block, Some(proposal.message.proposer), now_ms(), &|hash| {
                    mempool.signature_verified(hash)
                })
            });
            if verdict.is_ok() {
                // The proposer's fresh txs reach us by gossip after its block does; their
                // signatures are now known good.
                mempool.note_signatures_valid(block.block.txs.iter().map(|tx| tx.hash()));
            }
            self.ctx
                .metrics
                .execution_seconds
                .observe(started.elapsed().as_secs_f64());
            match verdict {
                Ok(()) => Validity::Valid,
                Err(invalid) => {
                    tracing::warn!(?height, proposer = ?proposal.message.proposer, %invalid, "invalid proposed block");
                    Validity::Invalid
                }
            }
        };
        if self.blocks.len() < BLOCKS_MAX && !self.blocks.contains_key(&block.hash) {
            if validity == Validity::Valid {
                self.log_block(&block);
            }
            self.blocks.insert(block.hash, block);
        }
        self.feed(Input::Proposal { proposal, validity })
    }

    /// Appends a block to the proposal-block log (durable at the next `Persist`). A failure
    /// costs only the restart case the log exists for, so it is logged, not fatal.
    fn log_block(&mut self, block: &SealedBlock) {
        if let Err(error) = self.block_log.append(block) {
            tracing::warn!(%error, height = ?block.block.header.height, "could not log a proposal's block");
        }
    }

    fn on_message(&mut self, message: Message) -> Result<(), DriverError> {
        match message {
            Message::Vote(vote) => self.feed(Input::Vote(vote)),
            Message::Proposal { proposal, block } => match SealedBlock::decode(block) {
                Ok(block) => self.on_proposal(proposal, block),
                Err(_) => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn on_timeout_due(&mut self) -> Result<(), DriverError> {
        let now = Instant::now();
        if self.start_next_at.is_some_and(|at| at <= now) {
            if self.create_empty_blocks || self.has_work() {
                self.start_next_at = None;
                let next = self.ctx.chain.read().height().next();
                self.start_height(next)?;
            } else {
                self.start_next_at = Some(now + EMPTY_POLL);
            }
        }
        let (due, rest): (Vec<_>, Vec<_>) = self.timeouts.drain(..).partition(|(at, _)| *at <= now);
        self.timeouts = rest;
        for (_, timeout) in due {
            self.feed(Input::TimeoutElapsed(timeout))?;
        }
        Ok(())
    }

    /// Whether a height would have something in it.
    fn has_work(&self) -> bool {
        !self.ctx.mempool.lock().is_empty()
            || !self.evidence_pool.is_empty()
            || !self.future_proposals.is_empty()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.timeouts
            .iter()
            .map(|(at, _)| *at)
            .chain(self.start_next_at)
            .min()
    }

    /// Fetches and commits blocks when peers are ahead, then restarts consensus above them.
    async fn sync(&mut self) -> Result<(), DriverError> {
        let ours = self.ctx.chain.read().height();
        let peers = self.ctx.gossip.peers();
        let Some(best) = peers.iter().max_by_key(|p| p.height) else {
            return Ok(());
        };
        // A peer working on height h holds every block below h.
        let holds_more = best.height.0 > ours.0 + 1;
        let lagging = match (holds_more, self.lagging_since) {
            (false, _) => {
                self.lagging_since = None;
                false
            }
            (true, Some((at, since))) if at == ours => since.elapsed() >= LAG_GRACE,
            (true, _) => {
                self.lagging_since = Some((ours, Instant::now()));
                false
            }
        };
        let behind = best.height.0 > ours.0 + 2 || (self.need_sync && holds_more) || lagging;
        if !behind {
            return Ok(());
        }
        self.need_sync = true;
        self.update_status();
        let count = (best.height.0 - ours.0 - 1).min(u64::from(SYNC_BATCH)) as u32;
        let blocks = match self
            .ctx
            .gossip
            .request_blocks(best.peer, ours.next(), count)
            .await
        {
            Ok(blocks) => blocks,
            Err(error) => {
                tracing::debug!(%error, peer = %best.peer, "sync request failed");
                return Ok(());
            }
        };
        let mut applied = 0;
        for synced in blocks {
            let result = tokio::task::block_in_place(|| {
                self.ctx.chain.write().apply_synced(&synced, now_ms())
            });
            match result {
                Ok(committed) => {
                    self.after_commit(&committed, synced.certificate.clone());
                    applied += 1;
                }
                Err(error) => {
                    tracing::warn!(%error, height = ?synced.height, "synced block refused");
                    break;
                }
            }
        }
        if applied > 0 {
            let height = self.ctx.chain.read().height();
            tracing::info!(?height, applied, "synced");
            self.need_sync = false;
            self.start_next_at = None;
            self.machine = Machine::new(self.me, self.validators.clone());
            self.log.clear();
            self.start_height(height.next())?;
            // What gossip delivered for these heights went to the machine just dropped.
            for message in self.ctx.gossip.held(height.next()) {
                self.on_message(message)?;
            }
        }
        Ok(())
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
            let deadline = self.next_deadline();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    if let GossipEvent::Consensus { message, .. } = event {
                        self.on_message(message)?;
                    }
                }
                _ = sleep => self.on_timeout_due()?,
                _ = sync_tick.tick() => self.sync().await?,
                _ = shutdown.changed() => break,
            }
        }
        self.wal.sync()?;
        if let Err(error) = self.block_log.sync() {
            tracing::warn!(%error, "could not sync the proposal-block log");
        }
        Ok(())
    }
}

/// The proposal-block log sits beside the WAL: `<wal>.blocks`.
pub fn block_log_path(wal: &std::path::Path) -> std::path::PathBuf {
    let mut name = wal.as_os_str().to_owned();
    name.push(".blocks");
    std::path::PathBuf::from(name)
}
