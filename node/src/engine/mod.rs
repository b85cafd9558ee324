//! The node core, sans IO: every consensus-side rule of the node, as `on(event, now) ->
//! commands`. It feeds the pure state machine of `weft-consensus` its inputs and turns the
//! effects it returns into [`Command`]s for a shell to carry out in order: the tokio driver
//! (`driver.rs`) in a node, a simulated disk and network in a simulator. Time is passed in,
//! never read; the core does no IO beyond the [`Ledger`] it is given.
//!
//! - **Persist before you speak.** Every proposal and vote the machine keeps is appended to the
//!   WAL ([`Command::WalAppend`]) before the machine sees it, and the blocks behind proposals
//!   beside them ([`Command::LogBlock`]). A machine `Persist` effect becomes
//!   [`Command::Persist`]: the shell makes the WAL durable (one fdatasync), then the guard, before any command after it; the signature it precedes comes
//!   after it. So everything that led to a signature is durable when the signature leaves the
//!   node. (Entries after the last signature may be lost in a crash; that is as if they never
//!   arrived.)
//! - **The guard.** The core holds the guard's rule ([`GuardState`]) and checks every message
//!   right before signing it; a conflicting one is refused and logged, never signed.
//! - **Restart.** [`Core::open`] replays the WAL of the current height into a fresh machine.
//!   Signing effects the replay repeats are re-broadcast from the signed copies in the WAL; the
//!   guard refuses anything that would conflict. A WAL or guard ahead of the chain means the
//!   store lost heights: [`CoreError::StoreBehind`].
//! - **Blocks.** A proposal carries its block; the ledger validates it (structure, signatures
//!   with the mempool's verdicts reused, DAG, parallel execution, state root) and caches the
//!   outcome, so a decided block is committed without executing it again.
//! - **Sync.** When peers advertise heights beyond the next one ([`Event::Peers`]), or a height
//!   is decided without its block, the core asks a peer for blocks with certificates
//!   ([`Command::RequestBlocks`]), checks and commits what comes back ([`Event::Fetched`]), and
//!   restarts consensus at the new height. Consensus goes on while the request is out, and a
//!   peer whose request failed is not asked again for a while.
//! - **Evidence.** Equivocations the machine proves are pooled for the next block this node
//!   proposes and reported ([`Command::Evidence`]).

pub mod ledger;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use libp2p::PeerId;
use weft_consensus::{
    CommitCertificate, Effect, Evidence, Height, Input, LastSigned, Machine, Round, SignedProposal,
    SignedVote, Timeout, TimeoutParams, ValidatorId, ValidatorSet, Validity, ValueId, Vote,
    WalEntry, replay,
};
use weft_gossip::verify::{sign_proposal, sign_vote};
use weft_gossip::{Message, SyncBlock, SyncError};

use crate::block::SealedBlock;
use crate::chain::{ChainError, Committed, evidence_id};
use crate::guard::{GuardError, GuardState};
pub use ledger::{BlockRequest, Ledger, NodeLedger};

/// Proposals for later heights held until their height starts.
const FUTURE_PROPOSALS_MAX: usize = 32;
/// Blocks kept for the current height (one per proposal seen).
pub const BLOCKS_MAX: usize = 64;
/// Evidence waiting for a block.
const EVIDENCE_POOL_MAX: usize = 64;
/// Blocks fetched per sync request.
const SYNC_BATCH: u32 = 32;
/// How long a peer may be one height ahead of us (holding a block we lack) before we fetch
/// it rather than wait for consensus to hand us the decision. Normally peers commit a moment
/// before or after us; a peer that restarted after committing a height we did not cannot
/// replay that height's votes, and without this both sides would wait for ever.
const LAG_GRACE_MS: u64 = 1_000;
/// How long a peer whose sync request failed is not asked again. A peer that went silent
/// without closing its connection (a host cut off) keeps its last advertised height; were it
/// asked again at once, every request would wait out the sync timeout.
const SYNC_PEER_BACKOFF_MS: u64 = 30_000;
/// How often a node that waits for txs before a height looks again.
const EMPTY_POLL_MS: u64 = 10;

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

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
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

/// How the core is set up: keys and consensus parameters.
pub struct CoreSetup {
    pub key: Option<SigningKey>,
    pub chain_id: String,
    pub params: TimeoutParams,
    pub commit_delay: Duration,
    pub block_max_txs: usize,
    pub block_max_bytes: usize,
    pub byzantine: Byzantine,
    /// When false, a new height starts only once there is something to put in it: txs in the
    /// mempool, evidence, or a peer's proposal for it.
    pub create_empty_blocks: bool,
}

/// What the node's durable files held at start.
#[derive(Default)]
pub struct Recovered {
    /// The WAL's entries (the current height's log).
    pub entries: Vec<WalEntry>,
    /// The guard's last signed record.
    pub last_signed: Option<LastSigned>,
    /// The blocks the WAL held beside its entries.
    pub blocks: Vec<SealedBlock>,
}

/// What happens to the core.
#[derive(Debug)]
pub enum Event {
    /// A consensus message from gossip (verified there).
    Message(Message),
    /// Time passed: timeouts and the next height may be due (see [`Core::next_deadline`]).
    Tick,
    /// The connected peers and the heights they advertise, for block sync.
    Peers(Vec<(PeerId, Height)>),
    /// The answer to the [`Command::RequestBlocks`] sent to `peer`.
    Fetched {
        peer: PeerId,
        answer: Result<Vec<SyncBlock>, SyncError>,
    },
}

/// What the core asks its shell to do, in order. A failed durable write stops the node.
#[derive(Debug)]
pub enum Command {
    /// Appends an entry to the WAL (durable at the next [`Command::Persist`]).
    WalAppend(WalEntry),
    /// Starts a new WAL log holding exactly these entries and, beside them, the blocks still
    /// wanted, durably (a new height).
    WalRotate {
        entries: Vec<WalEntry>,
        blocks: Vec<SealedBlock>,
    },
    /// Appends a proposal's block to the WAL, beside the entries (durable at the next
    /// `Persist`). A failure costs only the restart case it exists for: log it and go on.
    LogBlock(SealedBlock),
    /// Makes the WAL (entries and blocks) durable, then the guard's record, if any, before any
    /// later command: one fdatasync, and one more for a new guard record.
    Persist(Option<LastSigned>),
    /// Sends a message this node made to every peer.
    Publish(Message),
    /// A signature was made (the test-only signature audit's line).
    Signed(String),
    /// Advertises this node's position to peers.
    Advertise(Height, Round),
    /// Asks `peer` for blocks; the answer comes back as [`Event::Fetched`].
    RequestBlocks {
        peer: PeerId,
        from: Height,
        count: u32,
    },
    /// Hands back, as [`Event::Message`]s, what gossip holds for heights from this one on:
    /// after a sync, it went to the machine that was dropped.
    Redeliver(Height),
    /// Where consensus stands, for status and metrics.
    Status {
        height: Height,
        round: Round,
        catching_up: bool,
    },
    /// A block was committed (decided here or synced), for metrics, status and events.
    Committed(Box<Committed>),
    /// An equivocation was proven.
    Evidence(Evidence),
}

pub struct Core<L: Ledger> {
    ledger: L,
    key: Option<SigningKey>,
    chain_id: String,
    me: Option<ValidatorId>,
    machine: Machine,
    /// The entries of the current WAL log, for rotation at the next height.
    log: Vec<WalEntry>,
    guard: GuardState,
    params: TimeoutParams,
    commit_delay_ms: u64,
    block_max_txs: usize,
    block_max_bytes: usize,
    byzantine: Byzantine,
    create_empty_blocks: bool,
    /// The validator set (with proposer priorities) of the machine's height.
    validators: ValidatorSet,
    timeouts: Vec<(u64, Timeout)>,
    blocks: HashMap<ValueId, SealedBlock>,
    future_proposals: Vec<(SignedProposal, SealedBlock)>,
    last_commit: Option<CommitCertificate>,
    evidence_pool: Vec<Evidence>,
    start_next_at: Option<u64>,
    /// A decision whose block this node does not hold (decided in a replay after a crash
    /// lost it): committed when its block arrives, by gossip or by sync.
    undelivered: Option<CommitCertificate>,
    need_sync: bool,
    /// The highest height a peer advertised in the last look at the peers.
    best_advertised: Height,
    /// Since when a peer has worked on a height above our next one (so holds a block we lack)
    /// while our height stood still: (our height then, since when).
    lagging_since: Option<(Height, u64)>,
    /// The peer a sync request is out to.
    fetching: Option<PeerId>,
    /// Peers whose last sync request failed, and until when they are not asked (at most one
    /// entry per connected peer; expired entries are dropped at each look at the peers).
    sync_backoff: HashMap<PeerId, u64>,
    replaying: bool,
    queue: VecDeque<Input>,
    /// The time of the event being handled.
    now: u64,
    out: Vec<Command>,
}

fn input_height(input: &Input) -> Option<Height> {
    WalEntry(input.clone()).height()
}

impl<L: Ledger> Core<L> {
    /// Rebuilds consensus where it stopped, from what the durable files held, at time `now`
    /// (ms). Returns the commands the replay gives (re-broadcasts, a new WAL log).
    pub fn open(
        ledger: L,
        setup: CoreSetup,
        recovered: Recovered,
        now: u64,
    ) -> Result<(Core<L>, Vec<Command>), CoreError> {
        let me = setup
            .key
            .as_ref()
            .map(|k| ValidatorId(k.verifying_key().to_bytes()));
        let committed = ledger.height();
        let initial = ledger.initial_height();
        // A node starts height h in its WAL, and a validator signs at h, only once h - 1 is
        // committed and flushed. A WAL or guard further ahead means the store lost heights it
        // had (sled cuts its log at a damaged record without an error); an empty store
        // (removed on purpose, to sync afresh) is the exception.
        let started = recovered.entries.iter().find_map(|entry| match &entry.0 {
            Input::StartHeight { height, .. } => Some((height.0, "consensus WAL")),
            _ => None,
        });
        let signed = recovered.last_signed.map(|last| match last {
            LastSigned::Vote(vote) => (vote.height.0, "sign guard"),
            LastSigned::Proposal(proposal) => (proposal.height.0, "sign guard"),
        });
        let empty = committed.0 < initial;
        if let Some((reached, witness)) = started.into_iter().chain(signed).max()
            && !empty
            && reached > committed.0 + 1
        {
            return Err(CoreError::StoreBehind {
                stored: committed.0,
                reached,
                witness,
            });
        }
        let validators = ledger.next_height_validators();
        let machine = Machine::new(me, validators.clone());
        let last_commit = ledger.certificate(committed)?;
        let mut core = Core {
            ledger,
            key: setup.key,
            chain_id: setup.chain_id,
            me,
            machine,
            log: Vec::new(),
            guard: GuardState::new(recovered.last_signed),
            params: setup.params,
            commit_delay_ms: setup.commit_delay.as_millis() as u64,
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
            undelivered: None,
            need_sync: false,
            best_advertised: Height(0),
            lagging_since: None,
            fetching: None,
            sync_backoff: HashMap::new(),
            replaying: false,
            queue: VecDeque::new(),
            now,
            out: Vec::new(),
        };
        let next = committed.next();
        // Blocks proposed before a restart: a value decided from the WAL may need one.
        for block in recovered.blocks {
            if block.block.header.height >= next && core.blocks.len() < BLOCKS_MAX {
                core.blocks.insert(block.hash, block);
            }
        }
        let resumable = matches!(
            recovered.entries.first(),
            Some(WalEntry(Input::StartHeight { height, .. })) if *height == next
        );
        if resumable {
            core.resume(recovered.entries)?;
        } else {
            // The certificate of the last height committed here: the commit is durable before
            // this node's own precommit has left it, so a crash between the two would leave
            // peers that waited on that precommit without it. Gossip hands them its votes.
            if let Some(certificate) = &core.last_commit {
                core.out
                    .push(Command::Publish(Message::Commit(certificate.clone())));
            }
            // The next tick starts it (at once, or once there is work when empty blocks are
            // off).
            core.start_next_at = Some(now);
        }
        let commands = std::mem::take(&mut core.out);
        Ok((core, commands))
    }

    /// Handles one event at time `now` (ms, never earlier than the last one's) and returns
    /// what to do, in order.
    pub fn on(&mut self, event: Event, now: u64) -> Result<Vec<Command>, CoreError> {
        self.now = self.now.max(now);
        let handled = match event {
            Event::Message(message) => self.on_message(message),
            Event::Tick => self.on_tick(),
            Event::Peers(peers) => {
                self.sync(&peers);
                Ok(())
            }
            Event::Fetched { peer, answer } => self.on_fetched(peer, answer),
        };
        let commands = std::mem::take(&mut self.out);
        handled.map(|()| commands)
    }

    /// When the core next wants an [`Event::Tick`] (ms), if ever.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timeouts
            .iter()
            .map(|(at, _)| *at)
            .chain(self.start_next_at)
            .min()
    }

    /// The height consensus works on.
    pub fn height(&self) -> Height {
        self.machine.height()
    }

    /// Whether a consensus message of `height` would be taken now (this height, or a later
    /// one within the machine's bound); one too far ahead is dropped, for gossip to hand over
    /// again later or for block sync to make up.
    pub fn keeps_height(&self, height: Height) -> bool {
        self.machine.keeps_height(height)
    }

    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    /// Replays the WAL of the current height.
    fn resume(&mut self, entries: Vec<WalEntry>) -> Result<(), CoreError> {
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
        self.out.push(Command::Advertise(
            self.machine.height(),
            self.machine.round(),
        ));
        Ok(())
    }

    /// Begins consensus at `height`: a new WAL log with the entries kept for it.
    fn start_height(&mut self, height: Height) -> Result<(), CoreError> {
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
        self.log = log.clone();
        self.timeouts.clear();
        self.blocks.retain(|_, b| b.block.header.height >= height);
        // In a fixed order (height, hash), so a replayed or simulated run writes the same bytes.
        let mut kept: Vec<SealedBlock> = self.blocks.values().cloned().collect();
        kept.sort_by_key(|b| (b.block.header.height, b.hash.0));
        self.out.push(Command::WalRotate {
            entries: log,
            blocks: kept,
        });
        let effects = self.machine.handle(start);
        for effect in effects {
            self.run_effect(effect)?;
        }
        self.drain_queue()?;
        self.out.push(Command::Advertise(height, Round(0)));
        self.push_status();
        // Proposals that arrived early.
        let early: Vec<_> = std::mem::take(&mut self.future_proposals);
        for (proposal, block) in early {
            self.on_proposal(proposal, block)?;
        }
        Ok(())
    }

    fn push_status(&mut self) {
        self.out.push(Command::Status {
            height: self.machine.height(),
            round: self.machine.round(),
            catching_up: self.need_sync,
        });
    }

    /// Hands an input to the machine (after the WAL, where the contract asks) and runs what it
    /// returns, and everything that follows from that.
    fn feed(&mut self, input: Input) -> Result<(), CoreError> {
        self.queue.push_back(input);
        self.drain_queue()
    }

    fn drain_queue(&mut self) -> Result<(), CoreError> {
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
            self.out.push(Command::WalAppend(entry.clone()));
            self.log.push(entry);
            for effect in self.machine.handle(input) {
                self.run_effect(effect)?;
            }
        }
        self.push_status();
        Ok(())
    }

    fn run_effect(&mut self, effect: Effect) -> Result<(), CoreError> {
        match effect {
            Effect::Persist(record) => match self.guard.advance(&record) {
                Ok(_) => self.out.push(Command::Persist(Some(record))),
                // A replay re-derives records older than the guard's: the WAL is made durable,
                // the guard keeps its later record.
                Err(GuardError::Regression(_)) if self.replaying => {
                    self.out.push(Command::Persist(None));
                }
                // The WAL lost what led to the guard's record (a damaged record cut it short):
                // the machine re-derived a message that conflicts with one signed before. The
                // signing check that follows refuses it, and the node goes on, silent at that
                // step, as CometBFT's signer refuses and consensus continues.
                Err(error) => {
                    tracing::error!(%error, "the sign guard refuses this record; it will not be signed");
                    self.out.push(Command::Persist(None));
                }
            },
            Effect::SignVote(vote) => self.sign_vote(vote),
            Effect::SignProposal(proposal) => self.sign_proposal(proposal),
            Effect::ScheduleTimeout {
                timeout,
                duration_ms,
            } => {
                self.timeouts.push((self.now + duration_ms, timeout));
            }
            Effect::RequestValue { height, round, .. } => {
                if self.replaying {
                    // The WAL holds the value proposed before the crash, if any; a new one is
                    // asked for once replay is over.
                    return Ok(());
                }
                let block = self.build_block()?;
                let value = block.hash;
                self.out.push(Command::LogBlock(block.clone()));
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

    fn sign_vote(&mut self, vote: Vote) {
        let Some(key) = &self.key else { return };
        let signed = match self.guard.check_vote(&vote) {
            Ok(()) => sign_vote(key, &self.chain_id, vote),
            Err(GuardError::Regression(_)) if self.replaying => match self.signed_copy(&vote) {
                Some(signed) => signed,
                None => return,
            },
            Err(error) => {
                tracing::error!(%error, ?vote, "refused to sign");
                return;
            }
        };
        self.out.push(Command::Signed(format!(
            "vote {} {} {:?} {}",
            vote.height.0,
            vote.round.0,
            vote.vote_type,
            vote.value.map_or("nil".into(), |v| hex::encode(v.0))
        )));
        self.out.push(Command::Publish(Message::Vote(signed)));
        if self.byzantine == Byzantine::Equivocate
            && vote.vote_type == weft_consensus::VoteType::Prevote
            && !self.replaying
        {
            let mut other = vote;
            other.value = Some(ValueId([0xEE; 32]));
            let forged = sign_vote(key, &self.chain_id, other);
            self.out.push(Command::Publish(Message::Vote(forged)));
        }
        self.queue.push_back(Input::Vote(signed));
    }

    fn sign_proposal(&mut self, proposal: weft_consensus::Proposal) {
        let Some(key) = &self.key else { return };
        let Some(block) = self.blocks.get(&proposal.value) else {
            tracing::warn!(
                ?proposal,
                "no block for our own proposal (lost in a restart); not proposing"
            );
            return;
        };
        match self.guard.check_proposal(&proposal) {
            Ok(()) => {}
            Err(GuardError::Regression(_)) if self.replaying => {}
            Err(error) => {
                tracing::error!(%error, ?proposal, "refused to sign");
                return;
            }
        }
        let signed = sign_proposal(key, &self.chain_id, proposal);
        let bytes = block.bytes.clone();
        self.out.push(Command::Signed(format!(
            "proposal {} {} {}",
            proposal.height.0,
            proposal.round.0,
            hex::encode(proposal.value.0)
        )));
        self.out.push(Command::Publish(Message::Proposal {
            proposal: signed,
            block: bytes,
        }));
        // A lying proposer's own machine takes its block as valid, as a real liar would.
        self.queue.push_back(Input::Proposal {
            proposal: signed,
            validity: Validity::Valid,
        });
    }

    fn signed_copy(&self, vote: &Vote) -> Option<SignedVote> {
        self.log.iter().find_map(|entry| match &entry.0 {
            Input::Vote(signed) if signed.message == *vote => Some(*signed),
            _ => None,
        })
    }

    fn build_block(&mut self) -> Result<SealedBlock, CoreError> {
        let proposer = self.me.expect("only validators are asked for values");
        // Evidence of an equivocation at this very height waits for the next block: a block
        // may only prove what happened below it, and a proposal carrying it would be refused
        // by every validator, round after round, and stall the height.
        let height = self.machine.height();
        let evidence = self
            .evidence_pool
            .iter()
            .filter(|e| e.height() < height)
            .cloned()
            .collect();
        let request = BlockRequest {
            proposer,
            max_txs: self.block_max_txs,
            max_bytes: self.block_max_bytes,
            last_commit: self.last_commit.clone(),
            evidence,
        };
        let block = self.ledger.build(request, self.now)?;
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
        self.out.push(Command::Evidence(evidence));
    }

    fn decide(&mut self, certificate: CommitCertificate) -> Result<(), CoreError> {
        if self.ledger.height() >= certificate.height {
            return Ok(());
        }
        let mut result = self.ledger.commit(&certificate);
        if matches!(result, Err(ChainError::NotValidated(_)))
            && let Some(block) = self.blocks.get(&certificate.value)
        {
            // Held but not validated in this process: a block from the WAL
            // after a restart. Validate it now (the ledger caches the outcome), then commit.
            let proposer = block.block.header.proposer;
            match self.ledger.validate(block, Some(proposer), self.now) {
                Ok(()) => result = self.ledger.commit(&certificate),
                Err(invalid) => {
                    tracing::error!(height = ?certificate.height, %invalid, "a decided block from the WAL does not validate");
                }
            }
        }
        let committed = match result {
            Ok(committed) => committed,
            Err(ChainError::NotValidated(_)) => {
                tracing::info!(height = ?certificate.height, "decided a block we do not hold; waiting for it from gossip or sync");
                self.need_sync = true;
                self.undelivered = Some(certificate);
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        self.after_commit(committed, certificate);
        // Decided here, block in hand: not catching up (the next look at the peers says again
        // if it still is).
        self.need_sync = false;
        self.start_next_at = Some(self.now + self.commit_delay_ms);
        Ok(())
    }

    /// Everything that follows a commit, whether decided here or synced.
    fn after_commit(&mut self, committed: Committed, certificate: CommitCertificate) {
        let included: Vec<[u8; 32]> = committed
            .block
            .block
            .evidence
            .iter()
            .map(evidence_id)
            .collect();
        self.evidence_pool
            .retain(|e| !included.contains(&evidence_id(e)));
        self.last_commit = Some(certificate);
        self.undelivered = None;
        self.validators = self.ledger.next_height_validators();
        self.out.push(Command::Committed(Box::new(committed)));
    }

    fn on_proposal(
        &mut self,
        proposal: SignedProposal,
        block: SealedBlock,
    ) -> Result<(), CoreError> {
        let height = proposal.message.height;
        let current = self.machine.height();
        if let Some(certificate) = self
            .undelivered
            .take_if(|c| c.height == height && c.value == block.hash)
        {
            // The block of a decision made without it: validated like any proposal's, then
            // committed. (Its certificate already proves a quorum decided it.)
            match self
                .ledger
                .validate(&block, Some(proposal.message.proposer), self.now)
            {
                Ok(()) => {
                    self.blocks.insert(block.hash, block);
                    return self.decide(certificate);
                }
                Err(invalid) => {
                    tracing::error!(?height, %invalid, "the block of a decided value does not validate");
                    self.undelivered = Some(certificate);
                    return Ok(());
                }
            }
        }
        if height < current || (height == current && self.machine.decided().is_some()) {
            return Ok(());
        }
        if height > current || self.start_next_at.is_some() {
            if self.future_proposals.len() < FUTURE_PROPOSALS_MAX && height.0 <= current.0 + 2 {
                self.future_proposals.push((proposal, block));
            }
            return Ok(());
        }
        let validity = match self
            .ledger
            .validate(&block, Some(proposal.message.proposer), self.now)
        {
            Ok(()) => Validity::Valid,
            Err(invalid) => {
                tracing::warn!(?height, proposer = ?proposal.message.proposer, %invalid, "invalid proposed block");
                Validity::Invalid
            }
        };
        if self.blocks.len() < BLOCKS_MAX && !self.blocks.contains_key(&block.hash) {
            if validity == Validity::Valid {
                self.out.push(Command::LogBlock(block.clone()));
            }
            self.blocks.insert(block.hash, block);
        }
        self.feed(Input::Proposal { proposal, validity })
    }

    fn on_message(&mut self, message: Message) -> Result<(), CoreError> {
        match message {
            Message::Vote(vote) => self.feed(Input::Vote(vote)),
            Message::Proposal { proposal, block } => match SealedBlock::decode(block) {
                Ok(block) => self.on_proposal(proposal, block),
                Err(_) => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn on_tick(&mut self) -> Result<(), CoreError> {
        let now = self.now;
        if self.start_next_at.is_some_and(|at| at <= now) {
            if self.create_empty_blocks || self.has_work() {
                self.start_next_at = None;
                let next = self.ledger.height().next();
                self.start_height(next)?;
            } else {
                self.start_next_at = Some(now + EMPTY_POLL_MS);
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
        self.ledger.has_pending_txs()
            || !self.evidence_pool.is_empty()
            || !self.future_proposals.is_empty()
    }

    /// Asks a peer for blocks when peers are ahead: the most advanced peer that has not
    /// failed us lately. The answer comes back as [`Event::Fetched`].
    fn sync(&mut self, peers: &[(PeerId, Height)]) {
        self.best_advertised = peers.iter().map(|(_, h)| *h).max().unwrap_or(Height(0));
        if self.fetching.is_some() {
            return;
        }
        let now = self.now;
        self.sync_backoff.retain(|_, until| *until > now);
        let ours = self.ledger.height();
        let Some(&(peer, best)) = peers
            .iter()
            .filter(|(peer, _)| !self.sync_backoff.contains_key(peer))
            .max_by_key(|(_, height)| *height)
        else {
            return;
        };
        // A peer working on height h holds every block below h.
        let holds_more = best.0 > ours.0 + 1;
        let lagging = match (holds_more, self.lagging_since) {
            (false, _) => {
                self.lagging_since = None;
                false
            }
            (true, Some((at, since))) if at == ours => now.saturating_sub(since) >= LAG_GRACE_MS,
            (true, _) => {
                self.lagging_since = Some((ours, now));
                false
            }
        };
        let behind = best.0 > ours.0 + 2 || (self.need_sync && holds_more) || lagging;
        if !behind {
            return;
        }
        self.need_sync = true;
        self.push_status();
        let count = (best.0 - ours.0 - 1).min(u64::from(SYNC_BATCH)) as u32;
        self.fetching = Some(peer);
        self.out.push(Command::RequestBlocks {
            peer,
            from: ours.next(),
            count,
        });
    }

    /// Commits the blocks a sync request brought (those above the height consensus reached
    /// meanwhile), then restarts consensus above them.
    fn on_fetched(
        &mut self,
        peer: PeerId,
        answer: Result<Vec<SyncBlock>, SyncError>,
    ) -> Result<(), CoreError> {
        if self.fetching == Some(peer) {
            self.fetching = None;
        }
        let blocks = match answer {
            Ok(blocks) => blocks,
            Err(error) => {
                tracing::info!(%error, %peer, "sync request failed; asking other peers for a while");
                self.sync_backoff
                    .insert(peer, self.now + SYNC_PEER_BACKOFF_MS);
                return Ok(());
            }
        };
        let ours = self.ledger.height();
        let mut applied = 0;
        for synced in blocks.iter().filter(|b| b.height > ours) {
            match self.ledger.apply_synced(synced, self.now) {
                Ok(committed) => {
                    self.after_commit(committed, synced.certificate.clone());
                    applied += 1;
                }
                Err(error) => {
                    tracing::warn!(%error, height = ?synced.height, "synced block refused");
                    break;
                }
            }
        }
        if applied > 0 {
            let height = self.ledger.height();
            tracing::info!(?height, applied, "synced");
            // Still catching up while a peer is further on than one batch brought us (so
            // `status` does not say caught up between batches).
            self.need_sync = self.best_advertised.0 > height.0 + 2;
            self.start_next_at = None;
            self.machine = Machine::new(self.me, self.validators.clone());
            self.log.clear();
            self.start_height(height.next())?;
            self.out.push(Command::Redeliver(height.next()));
        }
        Ok(())
    }
}
