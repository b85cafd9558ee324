//! The chain: committed blocks and state in one sled database, block building for proposals,
//! full validation of proposed and synced blocks, and atomic commits.
//!
//! A validated block's outcome is cached by hash, so committing a decided block never executes
//! it twice. Each height is committed in one atomic, flushed sled batch: the state changes,
//! the block, its commit certificate, its tx results and the tx index
//! (`SledStorage::commit_with`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use thiserror::Error;
use weft_consensus::codec::{put_validator_set, read_validator_set};
use weft_consensus::{
    CommitCertificate, Evidence, Height, HeightSets, SignedVote, Validator, ValidatorId,
    ValidatorSet, ValueId, VoteType, change_within_bound,
};
use weft_execution::codec::Reader;
use weft_execution::tx::{Payload, VALIDATOR_COUNT_MAX};
use weft_execution::{
    Account, Address, BlockError, BlockOutcome, ChainId, ExecutorConfig, ParallelExecutor,
    SledStorage, StateKey, StateValue, StateView, Storage, StorageError, Transaction, TxCode,
    TxHash, propose, validate_block, verify_signatures,
};
use weft_genesis::Genesis;
use weft_gossip::verify::verify_votes;
use weft_gossip::{Message, SyncBlock};

use crate::block::{Block, Body, Header, SealedBlock, validators_hash};
use crate::crashpoint;
use crate::light::LightBlock;

/// A proposal's time may run this far ahead of a validator's clock.
pub const CLOCK_DRIFT_MS_MAX: u64 = 10_000;
/// Validated blocks kept for commit (a few per round, a few rounds).
const VALIDATED_MAX: usize = 64;

const AUX_BLOCK: u8 = 0x10;
const AUX_CERTIFICATE: u8 = 0x11;
const AUX_TX: u8 = 0x12;
const AUX_HASH: u8 = 0x13;
const AUX_RESULTS: u8 = 0x14;
const AUX_EVIDENCE: u8 = 0x15;
/// The validator set (with priorities) of a height, written with the block two heights before.
const AUX_VALIDATORS: u8 = 0x16;
/// The lowest height whose block is kept (absent: the initial height).
const AUX_EARLIEST: &[u8] = &[0x17];
/// Evidence of votes more than this many heights below the block that carries it is invalid.
/// Every node keeps the validator sets (and blocks) of at least this many heights, so each can
/// judge any evidence a block may carry; `storage.retain_blocks` may not go below it.
pub const EVIDENCE_AGE_MAX: u64 = 1_000;
/// Heights pruned per commit at most: a lowered `retain_blocks` catches up over several
/// commits instead of stalling one.
const PRUNE_PER_COMMIT_MAX: u64 = 8;
/// No snapshot limits pruning (snapshots are off).
pub const PRUNE_FLOOR_NONE: u64 = u64::MAX;

#[derive(Debug, Error)]
pub enum ChainError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("block {0:?} was never validated")]
    NotValidated(ValueId),
    #[error("invalid block: {0}")]
    Invalid(#[from] Invalid),
}

/// Why a block is not valid.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Invalid {
    #[error("chain id {got} is not {expected}")]
    ChainId { expected: String, got: String },
    #[error("height {got:?} is not the next height {expected:?}")]
    Height { expected: Height, got: Height },
    #[error("previous hash does not match the last block")]
    PrevHash,
    #[error("time {got} ms is not after {after} ms or is too far ahead of {now} ms")]
    Time { got: u64, after: u64, now: u64 },
    #[error("proposer {0:?} is not the expected one")]
    Proposer(ValidatorId),
    #[error("validator set hash does not match")]
    ValidatorsHash,
    #[error("next validator set hash does not match")]
    NextValidatorsHash,
    #[error("validator updates: {0}")]
    ValidatorUpdates(String),
    #[error("{txs} txs or {bytes} bytes is over the block limits")]
    TooLarge { txs: usize, bytes: usize },
    #[error("tx {index} is for another chain")]
    TxChainId { index: usize },
    #[error("tx {index} has a bad signature")]
    TxSignature { index: usize },
    #[error("last commit: {0}")]
    LastCommit(&'static str),
    #[error("evidence {index}: {reason}")]
    Evidence { index: usize, reason: &'static str },
    #[error("execution: {0}")]
    Execution(String),
    #[error("decode: {0}")]
    Decode(String),
}

impl From<BlockError> for Invalid {
    fn from(error: BlockError) -> Self {
        Invalid::Execution(error.to_string())
    }
}

/// Where a committed tx is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TxLocation {
    pub height: Height,
    pub index: u32,
    pub code: u8,
}

/// What a commit did, for events and the mempool.
#[derive(Clone, Debug)]
pub struct Committed {
    pub block: SealedBlock,
    pub outcome: BlockOutcome,
    pub tx_hashes: Vec<TxHash>,
    /// The validator updates the block made (they take effect two heights on).
    pub validator_updates: Vec<Validator>,
    /// The validator sets of this height and the two after it.
    pub sets: HeightSets,
}

#[derive(Clone, Copy, Debug)]
struct Last {
    height: Height,
    hash: ValueId,
    time_ms: u64,
}

struct Validated {
    block: SealedBlock,
    outcome: BlockOutcome,
    /// The set of the height after next, with this block's validator updates applied.
    after_next: ValidatorSet,
}

/// The validator sets around the last committed height `L`: of `L` (none before the first
/// block), of `L + 1` (the height consensus works on), and of `L + 2` (fixed by block `L`'s
/// updates, as CometBFT fixes them: updates in block H take effect at H + 2).
#[derive(Clone)]
struct Sets {
    last: Option<ValidatorSet>,
    current: ValidatorSet,
    current_hash: [u8; 32],
    next: ValidatorSet,
    next_hash: [u8; 32],
}

impl Sets {
    fn new(last: Option<ValidatorSet>, current: ValidatorSet, next: ValidatorSet) -> Sets {
        Sets {
            last,
            current_hash: validators_hash(&current),
            current,
            next_hash: validators_hash(&next),
            next,
        }
    }
}

/// The validator updates a block's execution made: the validator keys it wrote, with their new
/// powers (0 removes).
pub fn validator_updates(outcome: &BlockOutcome) -> Vec<Validator> {
    outcome
        .changes
        .writes
        .iter()
        .filter_map(|(key, value)| match (key, value) {
            (StateKey::Validator(key), StateValue::ValidatorPower(power)) => Some(Validator {
                id: ValidatorId(key.0),
                power: *power,
            }),
            _ => None,
        })
        .collect()
}

/// The set of the height after next, from the next height's set and a block's updates: the
/// next set advanced one height, then the updates applied (CometBFT's order). Refuses updates
/// that move more than a third of the power or that the set cannot take.
fn after_next(next: &ValidatorSet, updates: &[Validator]) -> Result<ValidatorSet, Invalid> {
    let advanced = next.next_height();
    if updates.is_empty() {
        return Ok(advanced);
    }
    let moved = next.power_moved(updates);
    if !change_within_bound(moved, next.total_power()) {
        return Err(Invalid::ValidatorUpdates(format!(
            "they move {moved} of {} voting power; at most a third may move in one height",
            next.total_power()
        )));
    }
    advanced
        .apply_updates(updates)
        .map_err(|error| Invalid::ValidatorUpdates(error.to_string()))
}

pub struct Chain {
    chain_id: ChainId,
    genesis: Genesis,
    sets: Sets,
    storage: SledStorage,
    executor: ParallelExecutor,
    last: Last,
    validated: Mutex<BTreeMap<ValueId, Arc<Validated>>>,
    /// The lowest height whose block is kept.
    earliest: Height,
    /// Blocks kept below the last committed one and it (0: all).
    retain_blocks: u64,
    /// The oldest snapshot kept: no block at or above it is pruned, so a node restored from it
    /// can block-sync the rest ([`PRUNE_FLOOR_NONE`] when snapshots are off).
    prune_floor: Arc<AtomicU64>,
    /// Take a snapshot at heights that are multiples of this (0: never).
    snapshot_interval: u64,
    /// The reader of a snapshot frozen at the last commit, for the node to take.
    snapshot: Option<weft_execution::SnapshotReader>,
}

/// What a restored snapshot's height needs beside the state: its block and certificate
/// (verified against the light client's header) and the validator sets of it and the next.
pub struct RestoredHeight {
    pub block: SealedBlock,
    pub certificate: CommitCertificate,
    pub validators: ValidatorSet,
    pub next_validators: ValidatorSet,
}

fn height_key(prefix: u8, height: Height) -> Vec<u8> {
    let mut key = vec![prefix];
    key.extend_from_slice(&height.0.to_be_bytes());
    key
}

fn hash_key(prefix: u8, hash: &[u8; 32]) -> Vec<u8> {
    let mut key = vec![prefix];
    key.extend_from_slice(hash);
    key
}

/// Checks that `certificate` holds a quorum of valid precommits for (height, value).
pub fn check_certificate(
    chain_id: &str,
    validators: &ValidatorSet,
    certificate: &CommitCertificate,
    height: Height,
    value: ValueId,
) -> Result<(), &'static str> {
    if certificate.height != height || certificate.value != value {
        return Err("certificate is for another height or value");
    }
    let mut seen = std::collections::BTreeSet::new();
    for vote in &certificate.precommits {
        let m = vote.message;
        if m.vote_type != VoteType::Precommit
            || m.height != height
            || m.round != certificate.round
            || m.value != Some(value)
        {
            return Err("a precommit does not match the certificate");
        }
        if !seen.insert(m.validator) {
            return Err("a validator appears twice");
        }
    }
    let verdicts = verify_votes(chain_id, validators, &certificate.precommits);
    if verdicts.iter().any(|v| v.is_err()) {
        return Err("a precommit has a bad signature or an unknown signer");
    }
    let power: u64 = seen.iter().filter_map(|id| validators.power(id)).sum();
    if !validators.is_quorum(power) {
        return Err("precommits hold no quorum");
    }
    Ok(())
}

fn check_evidence(
    chain_id: &str,
    validators: Option<&ValidatorSet>,
    evidence: &Evidence,
    height: Height,
) -> Result<(), &'static str> {
    let Evidence::DuplicateVote { first, second } = evidence else {
        return Err("only duplicate votes are committed as evidence");
    };
    let (a, b) = (first.message, second.message);
    if (a.validator, a.height, a.round, a.vote_type)
        != (b.validator, b.height, b.round, b.vote_type)
        || a.value == b.value
    {
        return Err("the votes do not conflict");
    }
    if a.height >= height {
        return Err("evidence from the future");
    }
    let Some(validators) = validators else {
        return Err("evidence from a height whose validator set is not known here");
    };
    let pair: [SignedVote; 2] = [*first, *second];
    if verify_votes(chain_id, validators, &pair)
        .iter()
        .any(|v| v.is_err())
    {
        return Err("a vote has a bad signature or an unknown signer");
    }
    Ok(())
}

/// A hash identifying a piece of evidence.
pub fn evidence_id(evidence: &Evidence) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    if let Evidence::DuplicateVote { first, second } = evidence {
        let (x, y) = if first.signature.0 <= second.signature.0 {
            (first, second)
        } else {
            (second, first)
        };
        hasher.update(&Message::Vote(*x).encode());
        hasher.update(&Message::Vote(*y).encode());
    }
    *hasher.finalize().as_bytes()
}

impl Chain {
    /// Opens the chain database under `dir` (creating it at genesis).
    pub fn open(dir: &Path, genesis: Genesis, threads: usize) -> Result<Chain, ChainError> {
        let storage = SledStorage::open(&dir.join("state.db"), &genesis.initial_state())?;
        let executor = ParallelExecutor::new(ExecutorConfig {
            threads,
            ..ExecutorConfig::default()
        })
        .map_err(|e| ChainError::Corrupt(format!("executor pool: {e}")))?;
        let first = genesis.validator_set();
        let mut chain = Chain {
            chain_id: genesis.chain_id(),
            sets: Sets::new(None, first.clone(), first.next_height()),
            storage,
            executor,
            last: Last {
                height: Height(genesis.initial_height - 1),
                hash: ValueId([0; 32]),
                time_ms: genesis.genesis_time_ms(),
            },
            earliest: Height(genesis.initial_height),
            genesis,
            validated: Mutex::new(BTreeMap::new()),
            retain_blocks: 0,
            prune_floor: Arc::new(AtomicU64::new(PRUNE_FLOOR_NONE)),
            snapshot_interval: 0,
            snapshot: None,
        };
        if chain.storage.abandoned_restore() {
            tracing::warn!(
                "the chain database held a snapshot restore cut short; it was reset to genesis"
            );
        }
        chain.load_last()?;
        Ok(chain)
    }

    /// Reads the last committed height, its hash and the sets around it from the store.
    fn load_last(&mut self) -> Result<(), ChainError> {
        let chain = self;
        if let Some(bytes) = chain.storage.aux_get(AUX_EARLIEST)? {
            let bytes: [u8; 8] = bytes
                .try_into()
                .map_err(|_| ChainError::Corrupt("earliest height".into()))?;
            chain.earliest = Height(u64::from_be_bytes(bytes));
        }
        let height = chain.height_of_storage(chain.storage.height());
        if chain.storage.height() > 0 {
            let block = chain
                .block(height)?
                .ok_or_else(|| ChainError::Corrupt(format!("block {height:?} is missing")))?;
            if block.block.header.state_root != chain.storage.root() {
                return Err(ChainError::Corrupt(
                    "the last block's state root is not the stored state's".into(),
                ));
            }
            chain.last = Last {
                height,
                hash: block.hash,
                time_ms: block.block.header.time_ms,
            };
            let set = |h: Height| {
                chain.validators_at(h)?.ok_or_else(|| {
                    ChainError::Corrupt(format!("the validator set of height {h:?} is missing"))
                })
            };
            chain.sets = Sets::new(
                Some(set(height)?),
                set(height.next())?,
                set(height.next().next())?,
            );
        }
        Ok(())
    }

    /// Keeps only the last `retain_blocks` blocks (0: all), never pruning at or above what
    /// `floor` holds (the oldest snapshot kept, or [`PRUNE_FLOOR_NONE`]), and cuts a snapshot
    /// at every multiple of `snapshot_interval` (0: never).
    pub fn set_retention(
        &mut self,
        retain_blocks: u64,
        floor: Arc<AtomicU64>,
        snapshot_interval: u64,
    ) {
        self.retain_blocks = retain_blocks;
        self.prune_floor = floor;
        self.snapshot_interval = snapshot_interval;
    }

    /// Turns the flush after each commit off or on (see [`SledStorage::set_durable`]): only
    /// for building fixture chains.
    pub fn set_durable(&mut self, durable: bool) {
        self.storage.set_durable(durable);
    }

    /// The size of the chain database on disk, in bytes.
    pub fn size_on_disk(&self) -> Result<u64, ChainError> {
        Ok(self.storage.size_on_disk()?)
    }

    /// The lowest height whose block this node keeps (the initial height unless pruned or
    /// restored from a snapshot).
    pub fn earliest_height(&self) -> Height {
        self.earliest
    }

    /// Freezes the state at the last committed height for a snapshot now (tools and tests;
    /// a node takes them at its snapshot interval). `None` while another is being read.
    pub fn begin_snapshot(&self) -> Option<weft_execution::SnapshotReader> {
        self.storage.begin_snapshot()
    }

    /// The snapshot frozen at a commit that was due one, with that commit's height: the
    /// caller cuts it into chunks (on a thread of its own; commits go on meanwhile).
    pub fn take_snapshot(&mut self) -> Option<(Height, weft_execution::SnapshotReader)> {
        let reader = self.snapshot.take()?;
        Some((self.height_of_storage(reader.height()), reader))
    }

    /// The records pruning removes for the heights from the earliest kept up to (not
    /// including) `until`, at most [`PRUNE_PER_COMMIT_MAX`] of them, and the new earliest.
    fn prune_records(&self, committing: Height) -> Result<(Vec<Vec<u8>>, Height), ChainError> {
        let mut remove = Vec::new();
        if self.retain_blocks == 0 {
            return Ok((remove, self.earliest));
        }
        let keep_from = (committing.0 + 1).saturating_sub(self.retain_blocks);
        let until = keep_from
            .min(self.prune_floor.load(Ordering::Acquire))
            .min(committing.0)
            .min(self.earliest.0 + PRUNE_PER_COMMIT_MAX);
        let mut earliest = self.earliest;
        while earliest.0 < until {
            let h = earliest;
            if let Some(block) = self.block(h)? {
                remove.push(hash_key(AUX_HASH, &block.hash.0));
                for tx in &block.block.txs {
                    remove.push(hash_key(AUX_TX, &tx.hash().0));
                }
            }
            for prefix in [AUX_BLOCK, AUX_CERTIFICATE, AUX_RESULTS, AUX_VALIDATORS] {
                remove.push(height_key(prefix, h));
            }
            earliest = h.next();
        }
        Ok((remove, earliest))
    }

    /// The light block of `height`: its header, its commit certificate and the validator sets
    /// of it and the next height; `None` where this node does not keep them.
    pub fn light_block(&self, height: Height) -> Result<Option<LightBlock>, ChainError> {
        let (Some(block), Some(certificate), Some(validators), Some(next_validators)) = (
            self.block(height)?,
            self.certificate(height)?,
            self.validators_at(height)?,
            self.validators_at(height.next())?,
        ) else {
            return Ok(None);
        };
        Ok(Some(LightBlock {
            header: block.block.header.clone(),
            certificate,
            validators,
            next_validators,
        }))
    }

    /// Empties the store for a snapshot restore; chunks follow through
    /// [`Chain::restore_chunk`]. A store cut off before [`Chain::finish_restore`] opens at
    /// genesis again.
    pub fn begin_restore(&mut self) -> Result<(), ChainError> {
        self.validated.lock().clear();
        Ok(self.storage.begin_restore()?)
    }

    pub fn restore_chunk(&mut self, pairs: &[(StateKey, StateValue)]) -> Result<(), ChainError> {
        let reached = crashpoint::begin(crashpoint::Write::RestoreChunk);
        self.storage.restore_chunk(pairs)?;
        reached.end();
        Ok(())
    }

    /// Ends a restore at the snapshot's height: checks the restored pairs against `lattice`
    /// (whose root the header holds), stores the height's block, certificate and validator
    /// sets, and the set of the height after next, derived from the restored state (which
    /// holds every update up to this height), and makes this height the last committed one
    /// and the earliest kept.
    pub fn finish_restore(
        &mut self,
        lattice: &weft_execution::LtHash,
        restored: RestoredHeight,
    ) -> Result<(), ChainError> {
        let header = &restored.block.block.header;
        let height = header.height;
        if lattice.root() != header.state_root {
            return Err(ChainError::Corrupt(
                "the restored state is not the header's state root".into(),
            ));
        }
        let mut updates = Vec::new();
        for (key, value) in self.storage.pairs_of_kind(StateKey::VALIDATOR_KIND)? {
            if let (StateKey::Validator(key), StateValue::ValidatorPower(power)) = (key, value) {
                let id = ValidatorId(key.0);
                if restored.next_validators.power(&id).unwrap_or(0) != power {
                    updates.push(Validator { id, power });
                }
            }
        }
        let after_next = after_next(&restored.next_validators, &updates)?;
        let set_bytes = |set: &ValidatorSet| {
            let mut out = Vec::new();
            put_validator_set(&mut out, set);
            out
        };
        let aux = vec![
            (height_key(AUX_BLOCK, height), restored.block.bytes.to_vec()),
            (
                height_key(AUX_CERTIFICATE, height),
                Message::Commit(restored.certificate.clone()).encode(),
            ),
            (
                hash_key(AUX_HASH, &restored.block.hash.0),
                height.0.to_be_bytes().to_vec(),
            ),
            (
                height_key(AUX_VALIDATORS, height),
                set_bytes(&restored.validators),
            ),
            (
                height_key(AUX_VALIDATORS, height.next()),
                set_bytes(&restored.next_validators),
            ),
            (
                height_key(AUX_VALIDATORS, height.next().next()),
                set_bytes(&after_next),
            ),
            (AUX_EARLIEST.to_vec(), height.0.to_be_bytes().to_vec()),
        ];
        let storage_height = height.0 + 1 - self.genesis.initial_height;
        self.storage.finish_restore(storage_height, lattice, &aux)?;
        self.load_last()?;
        Ok(())
    }

    /// The validator set (with its proposer priorities) of `height`: stored with the block two
    /// heights before, or the genesis's for the first two heights. `None` for a height above
    /// the last committed one + 2, or below the initial height.
    pub fn validators_at(&self, height: Height) -> Result<Option<ValidatorSet>, ChainError> {
        let initial = self.genesis.initial_height;
        if height.0 < initial {
            return Ok(None);
        }
        if height.0 <= initial + 1 {
            let first = self.genesis.validator_set();
            return Ok(Some(if height.0 == initial {
                first
            } else {
                first.next_height()
            }));
        }
        match self.storage.aux_get(&height_key(AUX_VALIDATORS, height))? {
            None => Ok(None),
            Some(bytes) => {
                let mut reader = Reader::new(&bytes);
                let set = read_validator_set(&mut reader, VALIDATOR_COUNT_MAX)
                    .and_then(|set| reader.finish().map(|()| set))
                    .map_err(|e| ChainError::Corrupt(format!("validators of {height:?}: {e}")))?;
                Ok(Some(set))
            }
        }
    }

    /// The validator set of the height consensus works on (the last committed one + 1).
    pub fn current_validators(&self) -> &ValidatorSet {
        &self.sets.current
    }

    /// The validator set of the height after the one consensus works on.
    pub fn next_validators(&self) -> &ValidatorSet {
        &self.sets.next
    }

    /// The sets of the heights gossip keeps (from [`weft_gossip::semantic::HEIGHTS_KEPT`] below
    /// the last committed height) to the two after it, for checks that must use the set of a
    /// message's own height (gossip's). A height older than these is neither trusted nor
    /// blamed there.
    pub fn height_sets(&self) -> HeightSets {
        let last = self.last.height;
        let next = last.next();
        let below = weft_gossip::semantic::HEIGHTS_KEPT;
        let older = (last.0.saturating_sub(below)..last.0).filter_map(|h| {
            self.validators_at(Height(h))
                .ok()
                .flatten()
                .map(|set| (Height(h), set))
        });
        let entries = older
            .chain(self.sets.last.iter().map(|set| (last, set.clone())))
            .chain([
                (next, self.sets.current.clone()),
                (next.next(), self.sets.next.clone()),
            ]);
        HeightSets::new(entries).expect("ascending heights")
    }

    fn height_of_storage(&self, storage_height: u64) -> Height {
        Height(self.genesis.initial_height - 1 + storage_height)
    }

    pub fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The last committed height (initial height − 1 before the first block).
    pub fn height(&self) -> Height {
        self.last.height
    }

    pub fn last_hash(&self) -> ValueId {
        self.last.hash
    }

    pub fn last_time_ms(&self) -> u64 {
        self.last.time_ms
    }

    pub fn state(&self) -> &SledStorage {
        &self.storage
    }

    pub fn state_root(&self) -> [u8; 32] {
        self.storage.root().0
    }

    pub fn account(&self, address: &Address) -> Result<Account, ChainError> {
        Ok(match self.storage.get(&StateKey::Account(*address))? {
            Some(StateValue::Account(account)) => account,
            _ => Account::default(),
        })
    }

    /// Builds this node's proposal for the next height from `txs` (executed in order, recording
    /// access sets), and caches its outcome.
    pub fn build(
        &self,
        proposer: ValidatorId,
        txs: Vec<Transaction>,
        last_commit: Option<CommitCertificate>,
        evidence: Vec<Evidence>,
        now_ms: u64,
    ) -> Result<SealedBlock, ChainError> {
        let txs = one_validator_update(txs);
        let proposal = propose(&self.storage, &txs)?;
        let updates = validator_updates(&proposal.outcome);
        let after_next = after_next(&self.sets.next, &updates)?;
        let header = Header {
            chain_id: self.chain_id.clone(),
            height: self.last.height.next(),
            time_ms: now_ms.max(self.last.time_ms + 1),
            prev_hash: self.last.hash.0,
            proposer,
            tx_root: [0; 32],
            dag_root: [0; 32],
            state_root: proposal.outcome.state_root,
            last_commit_hash: [0; 32],
            validators_hash: self.sets.current_hash,
            next_validators_hash: self.sets.next_hash,
            evidence_hash: [0; 32],
        };
        let block = SealedBlock::new(Block::seal(
            header,
            Body {
                txs,
                access: proposal.access,
                dag: proposal.dag,
                last_commit,
                evidence,
            },
        ));
        self.remember(block.clone(), proposal.outcome, after_next);
        Ok(block)
    }

    fn remember(&self, block: SealedBlock, outcome: BlockOutcome, after_next: ValidatorSet) {
        let mut validated = self.validated.lock();
        if validated.len() >= VALIDATED_MAX {
            let oldest = *validated.keys().next().expect("non-empty");
            validated.remove(&oldest);
        }
        validated.insert(
            block.hash,
            Arc::new(Validated {
                block,
                outcome,
                after_next,
            }),
        );
    }

    /// Whether a block with this hash has been validated (or built) and awaits commit.
    pub fn is_validated(&self, hash: &ValueId) -> bool {
        self.validated.lock().contains_key(hash)
    }

    /// Fully validates a block for the next height: header, limits, last commit, evidence,
    /// signatures (skipping those `verified` says were checked already), the DAG, parallel
    /// execution and the state root. Caches the outcome for commit.
    pub fn validate(
        &self,
        block: &SealedBlock,
        expected_proposer: Option<ValidatorId>,
        now_ms: u64,
        verified: &dyn Fn(&TxHash) -> bool,
    ) -> Result<(), Invalid> {
        if self.is_validated(&block.hash) {
            return Ok(());
        }
        let b = &block.block;
        let h = &b.header;
        if h.chain_id != self.chain_id {
            return Err(Invalid::ChainId {
                expected: self.chain_id.as_str().to_owned(),
                got: h.chain_id.as_str().to_owned(),
            });
        }
        let next = self.last.height.next();
        if h.height != next {
            return Err(Invalid::Height {
                expected: next,
                got: h.height,
            });
        }
        if h.prev_hash != self.last.hash.0 {
            return Err(Invalid::PrevHash);
        }
        if h.time_ms <= self.last.time_ms || h.time_ms > now_ms.saturating_add(CLOCK_DRIFT_MS_MAX) {
            return Err(Invalid::Time {
                got: h.time_ms,
                after: self.last.time_ms,
                now: now_ms,
            });
        }
        if expected_proposer.is_some_and(|p| p != h.proposer) {
            return Err(Invalid::Proposer(h.proposer));
        }
        if h.validators_hash != self.sets.current_hash {
            return Err(Invalid::ValidatorsHash);
        }
        if h.next_validators_hash != self.sets.next_hash {
            return Err(Invalid::NextValidatorsHash);
        }
        let updates = b
            .txs
            .iter()
            .filter(|tx| matches!(tx.payload, Payload::ValidatorUpdate { .. }))
            .count();
        if updates > 1 {
            return Err(Invalid::ValidatorUpdates(format!(
                "{updates} validator update txs; a block carries at most one"
            )));
        }
        let params = &self.genesis.consensus;
        if b.txs.len() as u64 > params.block_max_txs
            || block.bytes.len() as u64 > params.block_max_bytes
        {
            return Err(Invalid::TooLarge {
                txs: b.txs.len(),
                bytes: block.bytes.len(),
            });
        }
        let chain = self.chain_id.as_str();
        match (&b.last_commit, h.height.0 > self.genesis.initial_height) {
            (None, false) => {}
            (Some(certificate), true) => {
                let last = self
                    .sets
                    .last
                    .as_ref()
                    .ok_or(Invalid::LastCommit("no validator set for the last height"))?;
                check_certificate(chain, last, certificate, self.last.height, self.last.hash)
                    .map_err(Invalid::LastCommit)?;
            }
            (None, true) => return Err(Invalid::LastCommit("missing")),
            (Some(_), false) => return Err(Invalid::LastCommit("the initial height has none")),
        }
        for (index, evidence) in b.evidence.iter().enumerate() {
            if evidence_height(evidence)
                .is_some_and(|at| at.0.saturating_add(EVIDENCE_AGE_MAX) < h.height.0)
            {
                return Err(Invalid::Evidence {
                    index,
                    reason: "older than the evidence age limit",
                });
            }
            let set = evidence_height(evidence)
                .filter(|height| *height < h.height)
                .and_then(|height| self.validators_at(height).ok().flatten());
            check_evidence(chain, set.as_ref(), evidence, h.height)
                .map_err(|reason| Invalid::Evidence { index, reason })?;
            if self.evidence_committed(evidence).unwrap_or(false) {
                return Err(Invalid::Evidence {
                    index,
                    reason: "already committed",
                });
            }
        }
        if let Some(index) = b.txs.iter().position(|tx| tx.chain_id != self.chain_id) {
            return Err(Invalid::TxChainId { index });
        }
        let unchecked: Vec<usize> = (0..b.txs.len())
            .filter(|&i| !verified(&b.txs[i].hash()))
            .collect();
        if !unchecked.is_empty() {
            let txs: Vec<Transaction> = unchecked.iter().map(|&i| b.txs[i].clone()).collect();
            let verdicts = self.executor.install(|| verify_signatures(&txs));
            if let Some(position) = verdicts.iter().position(|v| v.is_err()) {
                return Err(Invalid::TxSignature {
                    index: unchecked[position],
                });
            }
        }
        let outcome = validate_block(
            &self.executor,
            &self.storage,
            &b.txs,
            &b.access,
            &b.dag,
            h.state_root,
        )?;
        let after_next = after_next(&self.sets.next, &validator_updates(&outcome))?;
        self.remember(block.clone(), outcome, after_next);
        Ok(())
    }

    fn evidence_committed(&self, evidence: &Evidence) -> Result<bool, ChainError> {
        Ok(self
            .storage
            .aux_get(&hash_key(AUX_EVIDENCE, &evidence_id(evidence)))?
            .is_some())
    }

    /// Commits a validated block decided by `certificate`, atomically.
    pub fn commit(&mut self, certificate: &CommitCertificate) -> Result<Committed, ChainError> {
        self.commit_as(certificate, crashpoint::Write::CommitBatch)
    }

    /// `write` names the commit for the test-only crash points: decided here, or synced.
    fn commit_as(
        &mut self,
        certificate: &CommitCertificate,
        write: crashpoint::Write,
    ) -> Result<Committed, ChainError> {
        let validated = self
            .validated
            .lock()
            .get(&certificate.value)
            .cloned()
            .ok_or(ChainError::NotValidated(certificate.value))?;
        let block = &validated.block;
        let height = block.block.header.height;
        let mut aux: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(4 + block.block.txs.len());
        aux.push((height_key(AUX_BLOCK, height), block.bytes.to_vec()));
        aux.push((
            height_key(AUX_CERTIFICATE, height),
            Message::Commit(certificate.clone()).encode(),
        ));
        aux.push((
            hash_key(AUX_HASH, &block.hash.0),
            height.0.to_be_bytes().to_vec(),
        ));
        let codes: Vec<u8> = validated
            .outcome
            .results
            .iter()
            .map(|r| r.code as u8)
            .collect();
        aux.push((height_key(AUX_RESULTS, height), codes.clone()));
        let mut tx_hashes = Vec::with_capacity(block.block.txs.len());
        for (index, tx) in block.block.txs.iter().enumerate() {
            let hash = tx.hash();
            let mut location = height.0.to_be_bytes().to_vec();
            location.extend_from_slice(&(index as u32).to_be_bytes());
            location.push(codes[index]);
            aux.push((hash_key(AUX_TX, &hash.0), location));
            tx_hashes.push(hash);
        }
        for evidence in &block.block.evidence {
            aux.push((
                hash_key(AUX_EVIDENCE, &evidence_id(evidence)),
                height.0.to_be_bytes().to_vec(),
            ));
        }
        let mut after_next = Vec::new();
        put_validator_set(&mut after_next, &validated.after_next);
        aux.push((height_key(AUX_VALIDATORS, height.next().next()), after_next));
        let (remove, earliest) = self.prune_records(height)?;
        if earliest != self.earliest {
            aux.push((AUX_EARLIEST.to_vec(), earliest.0.to_be_bytes().to_vec()));
        }
        let storage_height = self.storage.height() + 1;
        let reached = crashpoint::begin(write);
        self.storage
            .commit_pruning(storage_height, &validated.outcome.changes, &aux, &remove)?;
        reached.end();
        self.earliest = earliest;
        if self.snapshot_interval > 0 && height.0 % self.snapshot_interval == 0 {
            // One nobody took (no driver in this process) would keep the store frozen.
            self.snapshot = None;
            self.snapshot = self.storage.begin_snapshot();
            if self.snapshot.is_none() {
                tracing::warn!(
                    ?height,
                    "snapshot skipped: the last one is still being written"
                );
            }
        }
        self.last = Last {
            height,
            hash: block.hash,
            time_ms: block.block.header.time_ms,
        };
        let sets = std::mem::replace(
            &mut self.sets,
            Sets::new(
                None,
                validated.after_next.clone(),
                validated.after_next.clone(),
            ),
        );
        self.sets = Sets::new(Some(sets.current), sets.next, validated.after_next.clone());
        self.validated
            .lock()
            .retain(|_, v| v.block.block.header.height > height);
        Ok(Committed {
            block: block.clone(),
            outcome: validated.outcome.clone(),
            tx_hashes,
            validator_updates: validator_updates(&validated.outcome),
            sets: self.height_sets(),
        })
    }

    /// Checks and commits a block obtained by block sync.
    pub fn apply_synced(
        &mut self,
        synced: &SyncBlock,
        now_ms: u64,
    ) -> Result<Committed, ChainError> {
        let block = SealedBlock::decode(Arc::from(synced.block.as_slice()))
            .map_err(|e| Invalid::Decode(e.to_string()))?;
        check_certificate(
            self.chain_id.as_str(),
            &self.sets.current,
            &synced.certificate,
            synced.height,
            block.hash,
        )
        .map_err(Invalid::LastCommit)?;
        self.validate(&block, None, now_ms, &|_| false)?;
        self.commit_as(&synced.certificate, crashpoint::Write::SyncStore)
    }

    pub fn block(&self, height: Height) -> Result<Option<SealedBlock>, ChainError> {
        match self.storage.aux_get(&height_key(AUX_BLOCK, height))? {
            None => Ok(None),
            Some(bytes) => SealedBlock::decode(Arc::from(bytes))
                .map(Some)
                .map_err(|e| ChainError::Corrupt(format!("block {height:?}: {e}"))),
        }
    }

    pub fn certificate(&self, height: Height) -> Result<Option<CommitCertificate>, ChainError> {
        match self.storage.aux_get(&height_key(AUX_CERTIFICATE, height))? {
            None => Ok(None),
            Some(bytes) => match Message::decode(&bytes) {
                Ok(Message::Commit(certificate)) => Ok(Some(certificate)),
                _ => Err(ChainError::Corrupt(format!("certificate {height:?}"))),
            },
        }
    }

    pub fn results(&self, height: Height) -> Result<Option<Vec<u8>>, ChainError> {
        Ok(self.storage.aux_get(&height_key(AUX_RESULTS, height))?)
    }

    pub fn height_of(&self, hash: &ValueId) -> Result<Option<Height>, ChainError> {
        Ok(self
            .storage
            .aux_get(&hash_key(AUX_HASH, &hash.0))?
            .and_then(|bytes| {
                bytes
                    .try_into()
                    .ok()
                    .map(|b: [u8; 8]| Height(u64::from_be_bytes(b)))
            }))
    }

    pub fn tx(&self, hash: &TxHash) -> Result<Option<TxLocation>, ChainError> {
        let Some(bytes) = self.storage.aux_get(&hash_key(AUX_TX, &hash.0))? else {
            return Ok(None);
        };
        if bytes.len() != 13 {
            return Err(ChainError::Corrupt("tx index entry".into()));
        }
        Ok(Some(TxLocation {
            height: Height(u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"))),
            index: u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes")),
            code: bytes[12],
        }))
    }

    /// Blocks with certificates from `from` on, for block sync: at most `count` and about
    /// `max_bytes`.
    pub fn sync_blocks(&self, from: Height, count: u32, max_bytes: usize) -> Vec<SyncBlock> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for height in from.0..from.0.saturating_add(u64::from(count)) {
            let (Ok(Some(block)), Ok(Some(certificate))) = (
                self.storage.aux_get(&height_key(AUX_BLOCK, Height(height))),
                self.certificate(Height(height)),
            ) else {
                break;
            };
            bytes += block.len();
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(SyncBlock {
                height: Height(height),
                block,
                certificate,
            });
        }
        out
    }

    /// Verifies the stored state against its root (startup check).
    pub fn verify_integrity(&self) -> Result<(), ChainError> {
        Ok(self.storage.verify_integrity()?)
    }
}

/// The height of the votes a piece of evidence holds.
fn evidence_height(evidence: &Evidence) -> Option<Height> {
    match evidence {
        Evidence::DuplicateVote { first, .. } => Some(first.message.height),
        Evidence::DuplicateProposal { first, .. } => Some(first.message.height),
    }
}

/// `txs` with at most one validator update: the first. A later one waits in the mempool for a
/// later block, and so does every later tx of its sender (whose nonces follow it).
fn one_validator_update(txs: Vec<Transaction>) -> Vec<Transaction> {
    let mut seen = false;
    let mut deferred: Vec<Address> = Vec::new();
    txs.into_iter()
        .filter(|tx| {
            if deferred.contains(&tx.sender) {
                return false;
            }
            if matches!(tx.payload, Payload::ValidatorUpdate { .. }) {
                if seen {
                    deferred.push(tx.sender);
                    return false;
                }
                seen = true;
            }
            true
        })
        .collect()
}

/// The code a committed tx got, as a name for RPC.
pub fn code_name(code: u8) -> &'static str {
    match code {
        c if c == TxCode::Ok as u8 => "ok",
        c if c == TxCode::BadNonce as u8 => "bad_nonce",
        c if c == TxCode::InsufficientFunds as u8 => "insufficient_funds",
        c if c == TxCode::UnknownName as u8 => "unknown_name",
        c if c == TxCode::NameTaken as u8 => "name_taken",
        c if c == TxCode::BalanceOverflow as u8 => "balance_overflow",
        c if c == TxCode::NotAuthority as u8 => "not_validator_authority",
        c if c == TxCode::UnknownValidator as u8 => "unknown_validator",
        c if c == TxCode::EmptyValidatorSet as u8 => "empty_validator_set",
        c if c == TxCode::ValidatorLimit as u8 => "validator_limit",
        c if c == TxCode::PowerChangeTooLarge as u8 => "power_change_too_large",
        c if c == TxCode::ValidatorUnchanged as u8 => "validator_unchanged",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use weft_execution::tx::ValidatorKey;

    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn id(seed: u8) -> ValidatorId {
        ValidatorId(key(seed).verifying_key().to_bytes())
    }

    fn set(powers: &[(u8, u64)]) -> ValidatorSet {
        ValidatorSet::new(powers.iter().map(|&(seed, power)| Validator {
            id: id(seed),
            power,
        }))
        .unwrap()
    }

    fn tx(seed: u8, nonce: u64, update: Option<(u8, u64)>) -> Transaction {
        let chain = ChainId::new("weft-test").unwrap();
        let payload = match update {
            Some((validator, power)) => Payload::ValidatorUpdate {
                validator: ValidatorKey::new(id(validator).0).unwrap(),
                power,
            },
            None => Payload::Transfer {
                to: Address([9; 32]),
                amount: 1,
            },
        };
        Transaction::sign(chain, &key(seed), nonce, payload)
    }

    /// A proposal carries the first validator update; a second waits, with every later tx of
    /// its sender (whose nonces follow it), and other senders' txs are untouched.
    #[test]
    fn a_block_takes_one_validator_update_and_defers_the_rest_in_nonce_order() {
        let txs = vec![
            tx(1, 0, Some((5, 10))),
            tx(2, 0, None),
            tx(1, 1, Some((6, 10))),
            tx(1, 2, None),
            tx(2, 1, None),
        ];
        let kept = one_validator_update(txs.clone());
        assert_eq!(kept, vec![txs[0].clone(), txs[1].clone(), txs[4].clone()]);
    }

    /// The set of the height after next: the next set advanced a height, then the updates
    /// applied; refused past a third of the power moved, or for a change the set cannot take.
    #[test]
    fn the_set_after_next_follows_the_updates_within_the_bound() {
        let next = set(&[(1, 10), (2, 10), (3, 10), (4, 10)]);
        assert_eq!(after_next(&next, &[]).unwrap(), next.next_height());
        let joined = after_next(
            &next,
            &[Validator {
                id: id(5),
                power: 10,
            }],
        )
        .unwrap();
        assert_eq!(joined.len(), 5);
        assert_eq!(joined.power(&id(5)), Some(10));
        let too_much = after_next(
            &next,
            &[Validator {
                id: id(5),
                power: 14,
            }],
        );
        assert!(
            matches!(&too_much, Err(Invalid::ValidatorUpdates(m)) if m.contains("at most a third")),
            "{too_much:?}"
        );
        let unknown = after_next(
            &next,
            &[Validator {
                id: id(9),
                power: 0,
            }],
        );
        assert!(
            matches!(unknown, Err(Invalid::ValidatorUpdates(_))),
            "{unknown:?}"
        );
    }

    /// The header's validator hashes commit to the members and powers, not to the priorities
    /// (which advance every height).
    #[test]
    fn validator_hashes_commit_to_members_and_powers_only() {
        let genesis = set(&[(1, 10), (2, 10), (3, 10)]);
        assert_eq!(
            validators_hash(&genesis),
            validators_hash(&genesis.next_height())
        );
        let changed = genesis
            .apply_updates(&[Validator {
                id: id(2),
                power: 11,
            }])
            .unwrap();
        assert_ne!(validators_hash(&genesis), validators_hash(&changed));
        let joined = genesis
            .apply_updates(&[Validator {
                id: id(4),
                power: 1,
            }])
            .unwrap();
        assert_ne!(validators_hash(&genesis), validators_hash(&joined));
    }
}
