//! The mempool: admission, proposal reaping and post-commit cleanup of pending transactions.
//!
//! Pure and synchronous: it is handed bytes and a [`StateView`] and returns verdicts; it holds no
//! tasks, locks or clocks. Signatures are checked with [`verify_signatures`] on the caller's
//! current rayon pool, so a caller on an async runtime runs [`Mempool::check_batch`] on a
//! blocking thread (or inside `ParallelExecutor::install` to pick the pool).
//!
//! Admission runs cheapest first: size cap, decode, chain id, dedupe by hash (the pool and a
//! bounded cache of recent verdicts), nonce, capacity, then signatures, batched across every
//! survivor of a batch. Nonce rule, with `account` the sender's committed nonce and `next` the end
//! of the contiguous run of its pending nonces starting at `account`:
//! `account <= nonce < next + nonce_gap_max`, and no other pending tx may hold the same
//! (sender, nonce). A full mempool rejects; it never evicts.
//!
//! Admission codes ([`AdmitError::code`]), stable, for RPC results and gossip verdicts:
//!
//! | code | verdict | meaning |
//! |---:|---|---|
//! | 0 | admitted | (not an error) |
//! | 1 | [`AdmitError::Malformed`] | the bytes do not decode as a canonical transaction |
//! | 2 | [`AdmitError::TooLarge`] | over `tx_bytes_max`, checked before decoding |
//! | 3 | [`AdmitError::BadSignature`] | bad, weak-key or non-canonical signature |
//! | 4 | [`AdmitError::WrongChainId`] | signed for another chain |
//! | 5 | [`AdmitError::NonceTooLow`] | below the sender's committed nonce |
//! | 6 | [`AdmitError::NonceGapTooLarge`] | `nonce_gap_max` or more past the sender's next nonce |
//! | 7 | [`AdmitError::Full`] | the pool is at its count or byte limit |
//! | 8 | [`AdmitError::AlreadyKnown`] | pending, or recently admitted |
//! | 9 | [`AdmitError::NonceTaken`] | another pending tx holds this sender and nonce |
//! | 10 | [`AdmitError::StateUnavailable`] | the sender's account could not be read |
//! | 11 | [`AdmitError::NotValidatorAuthority`] | a validator update not from the genesis's authority |
//!
//! Bounds: pending txs by count (`size`) and bytes (`max_bytes`), each tx by `tx_bytes_max`,
//! the verdict cache by `cache_size` (FIFO), and a sender's pending nonces by the gap rule.
//! Every index is keyed (by hash, by sender and nonce, by arrival); nothing scans the pool per
//! admitted tx. Stale txs can only appear for senders of committed txs, so [`Mempool::update`]
//! takes the committed txs themselves, not only their hashes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use thiserror::Error;
use weft_execution::tx::TX_BYTES_MAX;
use weft_execution::{
    Account, Address, ChainId, Payload, SignatureError, StateKey, StateValue, StateView,
    StorageError, Transaction, TxHash, verify_signatures,
};

/// Default most pending txs.
pub const MEMPOOL_SIZE_DEFAULT: usize = 50_000;
/// Default most pending bytes (sum of encoded txs).
pub const MEMPOOL_MAX_BYTES_DEFAULT: usize = 64 * 1024 * 1024;
/// Default number of recent verdicts kept for dedupe.
pub const MEMPOOL_CACHE_SIZE_DEFAULT: usize = 100_000;
/// Default distance a nonce may run ahead of the sender's next nonce.
pub const NONCE_GAP_MAX_DEFAULT: u64 = 64;

/// The mempool's limits (the `[mempool]` config section maps onto it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Most pending txs.
    pub size: usize,
    /// Most pending bytes, summed over encoded txs.
    pub max_bytes: usize,
    /// Largest encoded tx admitted; at most the codec's `TX_BYTES_MAX`.
    pub tx_bytes_max: usize,
    /// Recent verdicts kept (admitted, signature good or bad); 0 disables the cache.
    pub cache_size: usize,
    /// A nonce is admitted only below `next + nonce_gap_max`; at least 1.
    pub nonce_gap_max: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            size: MEMPOOL_SIZE_DEFAULT,
            max_bytes: MEMPOOL_MAX_BYTES_DEFAULT,
            tx_bytes_max: TX_BYTES_MAX,
            cache_size: MEMPOOL_CACHE_SIZE_DEFAULT,
            nonce_gap_max: NONCE_GAP_MAX_DEFAULT,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("mempool.{field} {reason}")]
pub struct MempoolConfigError {
    pub field: &'static str,
    pub reason: &'static str,
}

impl MempoolConfig {
    /// Checks what a config file could get wrong; [`Mempool::new`] asserts it.
    pub fn validate(&self) -> Result<(), MempoolConfigError> {
        let invalid = |field, reason| Err(MempoolConfigError { field, reason });
        if self.size == 0 {
            return invalid("size", "must be at least 1");
        }
        if self.tx_bytes_max == 0 || self.tx_bytes_max > TX_BYTES_MAX {
            return invalid(
                "tx_bytes_max",
                "must be 1 to the codec's TX_BYTES_MAX (512)",
            );
        }
        if self.max_bytes < self.tx_bytes_max {
            return invalid("max_bytes", "must be at least tx_bytes_max");
        }
        if self.nonce_gap_max == 0 {
            return invalid("nonce_gap_max", "must be at least 1");
        }
        Ok(())
    }
}

/// Why a tx was not admitted. See the module docs for the codes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AdmitError {
    #[error("malformed transaction: {0}")]
    Malformed(String),
    #[error("transaction is {len} bytes, over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("bad signature: {0}")]
    BadSignature(SignatureError),
    #[error("chain id {got:?} is not this chain's {expected:?}")]
    WrongChainId { expected: String, got: String },
    #[error("nonce {got} is below the account's nonce {account}")]
    NonceTooLow { account: u64, got: u64 },
    #[error("nonce {got} is too far ahead of the sender's next nonce {next}")]
    NonceGapTooLarge { next: u64, got: u64 },
    #[error("mempool is full ({count} txs, {bytes} bytes)")]
    Full { count: usize, bytes: usize },
    #[error("transaction is already known")]
    AlreadyKnown,
    #[error("another pending transaction of this sender has this nonce")]
    NonceTaken,
    #[error("sender's account could not be read: {0}")]
    StateUnavailable(String),
    #[error("a validator update must come from the validator authority, and this sender is not it")]
    NotValidatorAuthority,
}

impl AdmitError {
    /// The stable code of this verdict; 0 is reserved for success.
    pub fn code(&self) -> u32 {
        match self {
            AdmitError::Malformed(_) => 1,
            AdmitError::TooLarge { .. } => 2,
            AdmitError::BadSignature(_) => 3,
            AdmitError::WrongChainId { .. } => 4,
            AdmitError::NonceTooLow { .. } => 5,
            AdmitError::NonceGapTooLarge { .. } => 6,
            AdmitError::Full { .. } => 7,
            AdmitError::AlreadyKnown => 8,
            AdmitError::NonceTaken => 9,
            AdmitError::StateUnavailable(_) => 10,
            AdmitError::NotValidatorAuthority => 11,
        }
    }
}

/// Pending transactions, indexed by hash, by (sender, nonce) and by arrival.
pub struct Mempool {
    config: MempoolConfig,
    chain_id: ChainId,
    txs: HashMap<TxHash, Pending>,
    senders: BTreeMap<Address, SenderQueue>,
    arrivals: BTreeMap<u64, TxHash>,
    arrival_next: u64,
    bytes: usize,
    seen: SeenCache,
}

struct Pending {
    tx: Arc<Transaction>,
    bytes: usize,
    arrival: u64,
}

/// One sender's pending txs by nonce, and the same nonces as maximal runs.
#[derive(Default)]
struct SenderQueue {
    by_nonce: BTreeMap<u64, TxHash>,
    runs: NonceRuns,
}

/// A tx that passed every check but its signature, waiting for the batch's verification.
struct Candidate {
    slot: usize,
    hash: TxHash,
    tx: Transaction,
    bytes: usize,
    /// The cached verdict, when this exact tx was verified before.
    signature: Option<Result<(), SignatureError>>,
}

/// What the first pass of a batch has let through so far.
#[derive(Default)]
struct Batch {
    candidates: Vec<Candidate>,
    hashes: HashSet<TxHash>,
    bytes: usize,
    /// Candidates' nonces per sender: later txs of the batch may extend their runs.
    planned: BTreeMap<Address, NonceRuns>,
    account_nonces: BTreeMap<Address, u64>,
}

impl Mempool {
    pub fn new(config: MempoolConfig, chain_id: ChainId) -> Self {
        if let Err(error) = config.validate() {
            panic!("invalid mempool config: {error}");
        }
        Mempool {
            config,
            chain_id,
            txs: HashMap::new(),
            senders: BTreeMap::new(),
            arrivals: BTreeMap::new(),
            arrival_next: 0,
            bytes: 0,
            seen: SeenCache::new(config.cache_size),
        }
    }

    pub fn config(&self) -> &MempoolConfig {
        &self.config
    }

    /// Admits what it can of `txs`, in order. Every check but the signature runs per tx; the
    /// signatures of all survivors are then verified as one batch, and the survivors re-checked
    /// (nonce, capacity) as they are inserted, so a bad signature never takes a nonce or a slot.
    /// The first pass does reserve room for the batch's survivors, so a full pool verifies no
    /// signatures; a tx refused for room that a forged batch-mate held may simply be resent.
    /// Returns one verdict per input, in order.
    pub fn check_batch<B: AsRef<[u8]>>(
        &mut self,
        txs: &[B],
        state: &dyn StateView,
    ) -> Vec<Result<TxHash, AdmitError>> {
        let mut batch = Batch::default();
        let mut verdicts = Vec::with_capacity(txs.len());
        for (slot, raw) in txs.iter().enumerate() {
            let verdict = self.screen(slot, raw.as_ref(), state, &mut batch);
            verdicts.push(verdict);
        }
        let Batch {
            candidates,
            account_nonces,
            ..
        } = batch;
        for (candidate, signature) in verify_candidates(candidates) {
            let account = account_nonces[&candidate.tx.sender];
            let slot = candidate.slot;
            verdicts[slot] = self.admit(candidate, signature, account);
        }
        verdicts
    }

    /// Admits one tx; see [`Mempool::check_batch`].
    pub fn check(&mut self, tx: &[u8], state: &dyn StateView) -> Result<TxHash, AdmitError> {
        let mut verdicts = self.check_batch(&[tx], state);
        assert_eq!(verdicts.len(), 1, "one verdict per tx");
        verdicts.remove(0)
    }

    /// The verdict [`Mempool::check`] would give `tx` now, signature included, without admitting
    /// it (RPC's `check_tx`). Returns the tx's hash when it would be admitted.
    pub fn check_only(&self, tx: &[u8], state: &dyn StateView) -> Result<TxHash, AdmitError> {
        let mut batch = Batch::default();
        let hash = self.screen(0, tx, state, &mut batch)?;
        for (_, signature) in verify_candidates(batch.candidates) {
            signature.map_err(AdmitError::BadSignature)?;
        }
        Ok(hash)
    }

    /// The first pass over one tx: everything but the signature. A survivor joins `batch` and
    /// gets a provisional `Ok`, replaced once its signature is known.
    fn screen(
        &self,
        slot: usize,
        raw: &[u8],
        state: &dyn StateView,
        batch: &mut Batch,
    ) -> Result<TxHash, AdmitError> {
        let max = self.config.tx_bytes_max;
        if raw.len() > max {
            return Err(AdmitError::TooLarge {
                len: raw.len(),
                max,
            });
        }
        let tx =
            Transaction::decode(raw).map_err(|error| AdmitError::Malformed(error.to_string()))?;
        if tx.chain_id != self.chain_id {
            return Err(AdmitError::WrongChainId {
                expected: self.chain_id.as_str().to_owned(),
                got: tx.chain_id.as_str().to_owned(),
            });
        }
        if matches!(tx.payload, Payload::ValidatorUpdate { .. }) {
            let authority = state
                .get(&StateKey::ValidatorAuthority)
                .map_err(|error| AdmitError::StateUnavailable(error.to_string()))?;
            if authority != Some(StateValue::Authority(tx.sender)) {
                return Err(AdmitError::NotValidatorAuthority);
            }
        }
        // The encoding is canonical, so the input bytes are the tx's encoding.
        let hash = TxHash(*blake3::hash(raw).as_bytes());
        debug_assert_eq!(hash, tx.hash());
        let signature = self.dedupe(&hash, batch)?;
        let account = match batch.account_nonces.get(&tx.sender) {
            Some(nonce) => *nonce,
            None => {
                let nonce = account_nonce(state, &tx.sender)
                    .map_err(|error| AdmitError::StateUnavailable(error.to_string()))?;
                batch.account_nonces.insert(tx.sender, nonce);
                nonce
            }
        };
        self.check_nonce(&tx, account, batch.planned.get(&tx.sender))?;
        self.check_room(batch.candidates.len() + 1, batch.bytes + raw.len())?;
        batch.planned.entry(tx.sender).or_default().insert(tx.nonce);
        batch.hashes.insert(hash);
        batch.bytes += raw.len();
        batch.candidates.push(Candidate {
            slot,
            hash,
            tx,
            bytes: raw.len(),
            signature,
        });
        Ok(hash)
    }

    /// Rejects a tx that is pending, earlier in this batch, or recently admitted; returns a
    /// cached signature verdict when there is one.
    fn dedupe(
        &self,
        hash: &TxHash,
        batch: &Batch,
    ) -> Result<Option<Result<(), SignatureError>>, AdmitError> {
        if self.txs.contains_key(hash) || batch.hashes.contains(hash) {
            return Err(AdmitError::AlreadyKnown);
        }
        match self.seen.get(hash) {
            None => Ok(None),
            Some(Seen::Admitted) => Err(AdmitError::AlreadyKnown),
            Some(Seen::SignatureValid) => Ok(Some(Ok(()))),
            Some(Seen::SignatureInvalid(error)) => Err(AdmitError::BadSignature(error)),
        }
    }

    /// The nonce rule against the pool plus, in a batch's first pass, the batch's candidates.
    fn check_nonce(
        &self,
        tx: &Transaction,
        account: u64,
        planned: Option<&NonceRuns>,
    ) -> Result<(), AdmitError> {
        if tx.nonce < account {
            return Err(AdmitError::NonceTooLow {
                account,
                got: tx.nonce,
            });
        }
        let queue = self.senders.get(&tx.sender);
        if queue.is_some_and(|queue| queue.by_nonce.contains_key(&tx.nonce)) {
            return Err(AdmitError::NonceTaken);
        }
        let next = run_end(account, queue.map(|queue| &queue.runs), planned);
        if u128::from(tx.nonce) >= next + u128::from(self.config.nonce_gap_max) {
            return Err(AdmitError::NonceGapTooLarge {
                next: u64::try_from(next).expect("next is at most the tx's nonce here"),
                got: tx.nonce,
            });
        }
        Ok(())
    }

    /// Whether `count` more txs of `bytes` in all still fit.
    fn check_room(&self, count: usize, bytes: usize) -> Result<(), AdmitError> {
        if self.txs.len() + count > self.config.size || self.bytes + bytes > self.config.max_bytes {
            return Err(AdmitError::Full {
                count: self.txs.len(),
                bytes: self.bytes,
            });
        }
        Ok(())
    }

    /// The second pass over one candidate, now that its signature is known.
    fn admit(
        &mut self,
        candidate: Candidate,
        signature: Result<(), SignatureError>,
        account: u64,
    ) -> Result<TxHash, AdmitError> {
        let Candidate {
            hash, tx, bytes, ..
        } = candidate;
        if let Err(error) = signature {
            self.seen.record(hash, Seen::SignatureInvalid(error));
            return Err(AdmitError::BadSignature(error));
        }
        self.seen.record(hash, Seen::SignatureValid);
        // Earlier candidates may have failed their signatures or taken this nonce.
        self.check_nonce(&tx, account, None)?;
        self.check_room(1, bytes)?;
        self.insert(hash, tx, bytes);
        self.seen.record(hash, Seen::Admitted);
        Ok(hash)
    }

    fn insert(&mut self, hash: TxHash, tx: Transaction, bytes: usize) {
        let arrival = self.arrival_next;
        self.arrival_next += 1;
        let queue = self.senders.entry(tx.sender).or_default();
        assert!(
            queue.by_nonce.insert(tx.nonce, hash).is_none(),
            "nonce taken"
        );
        assert!(queue.runs.insert(tx.nonce), "runs out of step with nonces");
        assert!(self.arrivals.insert(arrival, hash).is_none());
        let pending = Pending {
            tx: Arc::new(tx),
            bytes,
            arrival,
        };
        assert!(
            self.txs.insert(hash, pending).is_none(),
            "tx already pending"
        );
        self.bytes += bytes;
        assert!(self.txs.len() <= self.config.size && self.bytes <= self.config.max_bytes);
    }

    fn remove(&mut self, hash: &TxHash) -> Option<Pending> {
        let pending = self.txs.remove(hash)?;
        let sender = pending.tx.sender;
        let queue = self
            .senders
            .get_mut(&sender)
            .expect("a pending tx has a queue");
        assert_eq!(queue.by_nonce.remove(&pending.tx.nonce), Some(*hash));
        queue.runs.remove(pending.tx.nonce);
        if queue.by_nonce.is_empty() {
            self.senders.remove(&sender);
        }
        assert_eq!(self.arrivals.remove(&pending.arrival), Some(*hash));
        self.bytes -= pending.bytes;
        Some(pending)
    }

    /// Txs for a proposal, at most `max_txs` of at most `max_bytes` encoded bytes in all: per
    /// sender only the contiguous nonce run from its account nonce, in nonce order; across
    /// senders in order of readiness, i.e. a tx is placed at its own arrival or at its
    /// predecessor's place, whichever is later. Stops at the first tx that does not fit. A
    /// sender whose account cannot be read is left out.
    pub fn reap(
        &self,
        max_txs: usize,
        max_bytes: usize,
        state: &dyn StateView,
    ) -> Vec<Arc<Transaction>> {
        let mut reaped = Vec::with_capacity(max_txs.min(self.txs.len()));
        let mut bytes = 0usize;
        // Per sender: the nonce it may place next; `None` once it can place no more.
        let mut next_nonce: HashMap<Address, Option<u64>> = HashMap::new();
        for (&arrival, hash) in &self.arrivals {
            if reaped.len() >= max_txs {
                break;
            }
            let mut current = &self.txs[hash];
            let sender = current.tx.sender;
            let next = *next_nonce
                .entry(sender)
                .or_insert_with(|| account_nonce(state, &sender).ok());
            if next != Some(current.tx.nonce) {
                continue;
            }
            // Ready now, and so are its successors that arrived earlier and were passed over.
            let queue = &self.senders[&sender];
            let mut nonce = current.tx.nonce;
            let following = loop {
                if bytes + current.bytes > max_bytes {
                    return reaped;
                }
                bytes += current.bytes;
                reaped.push(Arc::clone(&current.tx));
                if reaped.len() >= max_txs {
                    return reaped;
                }
                let Some(following) = nonce.checked_add(1) else {
                    break None;
                };
                nonce = following;
                match queue.by_nonce.get(&nonce).map(|hash| &self.txs[hash]) {
                    Some(successor) if successor.arrival < arrival => current = successor,
                    _ => break Some(nonce),
                }
            };
            next_nonce.insert(sender, following);
        }
        reaped
    }

    /// After a commit: removes the committed txs, then every pending tx of their senders whose
    /// nonce is now below the account's nonce. Only a sender's own txs move its nonce, so no
    /// other sender can have gone stale. A sender whose account cannot be read keeps its txs
    /// until a later update; `reap` and `check` never rely on them meanwhile.
    pub fn update(&mut self, committed: &[Transaction], state: &dyn StateView) {
        let mut senders = BTreeSet::new();
        for tx in committed {
            self.remove(&tx.hash());
            senders.insert(tx.sender);
        }
        for sender in senders {
            let Some(queue) = self.senders.get(&sender) else {
                continue;
            };
            let Ok(account) = account_nonce(state, &sender) else {
                continue;
            };
            let stale: Vec<TxHash> = queue.by_nonce.range(..account).map(|(_, h)| *h).collect();
            for hash in &stale {
                self.remove(hash);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Pending bytes, summed over encoded txs.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, hash: &TxHash) -> bool {
        self.txs.contains_key(hash)
    }

    pub fn get(&self, hash: &TxHash) -> Option<Arc<Transaction>> {
        self.txs.get(hash).map(|pending| Arc::clone(&pending.tx))
    }

    /// Whether this exact tx passed the mempool's signature check (it is pending, or its verdict
    /// is still cached). The hash covers the signature, so block validation may skip it.
    pub fn signature_verified(&self, hash: &TxHash) -> bool {
        self.txs.contains_key(hash)
            || matches!(
                self.seen.get(hash),
                Some(Seen::Admitted | Seen::SignatureValid)
            )
    }

    /// Records that these txs' signatures verified elsewhere (in a proposed block that
    /// validated), so that their gossiped copies are admitted without a second check. A hash
    /// with a verdict already keeps it.
    pub fn note_signatures_valid(&mut self, hashes: impl IntoIterator<Item = TxHash>) {
        for hash in hashes {
            if !self.txs.contains_key(&hash) && self.seen.get(&hash).is_none() {
                self.seen.record(hash, Seen::SignatureValid);
            }
        }
    }

    /// Up to `limit` pending txs in arrival order, for `unconfirmed_txs`.
    pub fn pending(&self, limit: usize) -> Vec<Arc<Transaction>> {
        self.arrivals
            .values()
            .take(limit)
            .map(|hash| Arc::clone(&self.txs[hash].tx))
            .collect()
    }

    /// Checks that every index agrees with the others and with the bounds.
    #[cfg(test)]
    fn assert_invariants(&self) {
        assert!(self.txs.len() <= self.config.size);
        assert!(self.bytes <= self.config.max_bytes);
        assert_eq!(self.arrivals.len(), self.txs.len());
        assert_eq!(
            self.bytes,
            self.txs
                .values()
                .map(|pending| pending.bytes)
                .sum::<usize>()
        );
        let mut queued = 0;
        for (sender, queue) in &self.senders {
            assert!(!queue.by_nonce.is_empty());
            let mut runs = NonceRuns::default();
            for (nonce, hash) in &queue.by_nonce {
                let pending = &self.txs[hash];
                assert_eq!((pending.tx.sender, pending.tx.nonce), (*sender, *nonce));
                assert_eq!(self.arrivals[&pending.arrival], *hash);
                assert!(runs.insert(*nonce));
            }
            assert_eq!(runs.0, queue.runs.0);
            queued += queue.by_nonce.len();
        }
        assert_eq!(queued, self.txs.len());
        assert!(self.seen.order.len() <= self.config.cache_size);
        assert_eq!(self.seen.order.len(), self.seen.verdicts.len());
    }
}

/// Verifies the candidates that have no cached verdict, as one batch.
fn verify_candidates(
    candidates: Vec<Candidate>,
) -> impl Iterator<Item = (Candidate, Result<(), SignatureError>)> {
    let unverified: Vec<Transaction> = candidates
        .iter()
        .filter(|candidate| candidate.signature.is_none())
        .map(|candidate| candidate.tx.clone())
        .collect();
    let verdicts = verify_signatures(&unverified);
    assert_eq!(verdicts.len(), unverified.len(), "one verdict per tx");
    let mut verdicts = verdicts.into_iter();
    candidates.into_iter().map(move |candidate| {
        let signature = candidate
            .signature
            .unwrap_or_else(|| verdicts.next().expect("one verdict per unverified tx"));
        (candidate, signature)
    })
}

/// The sender's committed nonce; a missing account has nonce 0.
fn account_nonce(state: &dyn StateView, sender: &Address) -> Result<u64, StorageError> {
    match state.get(&StateKey::Account(*sender))? {
        None => Ok(0),
        Some(StateValue::Account(Account { nonce, .. })) => Ok(nonce),
        Some(other) => Err(StorageError::Corrupt(format!(
            "account key holds {other:?}"
        ))),
    }
}

/// The end (exclusive) of the contiguous run from `start` over the union of two nonce sets.
/// `u128` so that a run through `u64::MAX` has an end.
fn run_end(start: u64, pool: Option<&NonceRuns>, planned: Option<&NonceRuns>) -> u128 {
    let extend =
        |runs: Option<&NonceRuns>, from: u128| runs.map_or(from, |runs| runs.end_from(from));
    let mut end = u128::from(start);
    loop {
        // Each turn jumps over one whole run of either set, so this ends.
        let extended = extend(planned, extend(pool, end));
        if extended == end {
            return end;
        }
        end = extended;
    }
}

/// A set of nonces as maximal runs: first nonce → last nonce, inclusive. Finding where a run
/// ends is one lookup, whatever its length.
#[derive(Default, Debug, Clone)]
struct NonceRuns(BTreeMap<u64, u64>);

impl NonceRuns {
    /// Adds `nonce`; false if it was there already.
    fn insert(&mut self, nonce: u64) -> bool {
        if self.run_containing(nonce).is_some() {
            return false;
        }
        let left = nonce
            .checked_sub(1)
            .and_then(|previous| self.run_containing(previous));
        let right = nonce
            .checked_add(1)
            .and_then(|following| self.0.get(&following).map(|last| (following, *last)));
        let first = left.map_or(nonce, |(first, _)| first);
        let last = right.map_or(nonce, |(following, last)| {
            self.0.remove(&following);
            last
        });
        self.0.insert(first, last);
        true
    }

    /// Removes `nonce`, which must be present.
    fn remove(&mut self, nonce: u64) {
        let (first, last) = self
            .run_containing(nonce)
            .expect("removing a nonce that is not pending");
        self.0.remove(&first);
        if first < nonce {
            self.0.insert(first, nonce - 1);
        }
        if nonce < last {
            self.0.insert(nonce + 1, last);
        }
    }

    fn run_containing(&self, nonce: u64) -> Option<(u64, u64)> {
        let (first, last) = self.0.range(..=nonce).next_back()?;
        (*last >= nonce).then_some((*first, *last))
    }

    /// One past the run that holds `from`, or `from` when no run does.
    fn end_from(&self, from: u128) -> u128 {
        let Ok(nonce) = u64::try_from(from) else {
            return from;
        };
        self.run_containing(nonce)
            .map_or(from, |(_, last)| u128::from(last) + 1)
    }
}

/// A cached verdict about one exact tx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// Admitted once: a resubmission is a duplicate.
    Admitted,
    /// Its signature verified, but it was not admitted (nonce or room).
    SignatureValid,
    SignatureInvalid(SignatureError),
}

/// Recent verdicts by hash, oldest dropped first.
struct SeenCache {
    capacity: usize,
    order: VecDeque<TxHash>,
    verdicts: HashMap<TxHash, Seen>,
}

impl SeenCache {
    fn new(capacity: usize) -> Self {
        SeenCache {
            capacity,
            order: VecDeque::new(),
            verdicts: HashMap::new(),
        }
    }

    fn get(&self, hash: &TxHash) -> Option<Seen> {
        self.verdicts.get(hash).copied()
    }

    fn record(&mut self, hash: TxHash, seen: Seen) {
        if self.capacity == 0 {
            return;
        }
        if let Some(verdict) = self.verdicts.get_mut(&hash) {
            *verdict = seen;
            return;
        }
        if self.order.len() == self.capacity {
            let oldest = self.order.pop_front().expect("a full cache is not empty");
            self.verdicts.remove(&oldest);
        }
        self.order.push_back(hash);
        self.verdicts.insert(hash, seen);
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;
    use weft_execution::{LtHash, MemoryState};

    use super::*;

    const RECIPIENT: Address = Address([0xee; 32]);

    fn chain() -> ChainId {
        ChainId::new("weft-test").unwrap()
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn address(seed: u8) -> Address {
        Address::from(&key(seed))
    }

    /// A signed transfer; `amount` tells apart txs with the same sender and nonce.
    fn transfer(seed: u8, nonce: u64, amount: u64) -> Transaction {
        let payload = Payload::Transfer {
            to: RECIPIENT,
            amount,
        };
        Transaction::sign(chain(), &key(seed), nonce, payload)
    }

    fn tx(seed: u8, nonce: u64) -> Transaction {
        transfer(seed, nonce, 1)
    }

    fn state(nonces: &[(u8, u64)]) -> MemoryState {
        MemoryState::from_pairs(nonces.iter().map(|(seed, nonce)| {
            let account = Account {
                balance: 1_000,
                nonce: *nonce,
            };
            (
                StateKey::Account(address(*seed)),
                StateValue::Account(account),
            )
        }))
    }

    fn set_nonce(state: &mut MemoryState, seed: u8, nonce: u64) {
        let account = Account {
            balance: 1_000,
            nonce,
        };
        state.insert(
            StateKey::Account(address(seed)),
            StateValue::Account(account),
        );
    }

    fn pool(config: MempoolConfig) -> Mempool {
        Mempool::new(config, chain())
    }

    /// Only the genesis's validator authority may send a validator update; anyone else's is
    /// refused at the door, with code 11.
    #[test]
    fn validator_updates_come_only_from_the_authority() {
        let mut state = state(&[(1, 0), (2, 0)]);
        let update = |seed: u8| {
            let payload = Payload::ValidatorUpdate {
                validator: weft_execution::tx::ValidatorKey::new(address(7).0).unwrap(),
                power: 5,
            };
            Transaction::sign(chain(), &key(seed), 0, payload)
        };
        let mut pool = pool(MempoolConfig::default());
        let refused = pool.check(&update(2).encode(), &state).unwrap_err();
        assert_eq!(refused, AdmitError::NotValidatorAuthority);
        assert_eq!(refused.code(), 11);
        state.insert(
            StateKey::ValidatorAuthority,
            StateValue::Authority(address(1)),
        );
        assert_eq!(
            pool.check(&update(2).encode(), &state).unwrap_err(),
            AdmitError::NotValidatorAuthority
        );
        pool.check(&update(1).encode(), &state)
            .expect("the authority's update is admitted");
    }

    fn admit_all(pool: &mut Mempool, txs: &[Transaction], state: &dyn StateView) {
        for tx in txs {
            pool.check(&tx.encode(), state).expect("admitted");
        }
    }

    /// (sender seed, nonce) of each tx, to compare orders.
    fn ids(txs: &[Arc<Transaction>]) -> Vec<(u8, u64)> {
        let seeds: Vec<(Address, u8)> = (0..=9).map(|seed| (address(seed), seed)).collect();
        txs.iter()
            .map(|tx| {
                let seed = seeds.iter().find(|(a, _)| *a == tx.sender).unwrap().1;
                (seed, tx.nonce)
            })
            .collect()
    }

    struct BrokenState(LtHash);

    impl StateView for BrokenState {
        fn get(&self, _: &StateKey) -> Result<Option<StateValue>, StorageError> {
            Err(StorageError::Io("disk gone".into()))
        }
        fn lattice(&self) -> &LtHash {
            &self.0
        }
    }

    /// One admission scenario: a config, committed nonces, txs admitted first, then the tx.
    struct Scenario {
        name: &'static str,
        config: MempoolConfig,
        nonces: &'static [(u8, u64)],
        before: Vec<Transaction>,
        tx: Vec<u8>,
    }

    fn check(scenario: Scenario, expected_code: u32) {
        let state = state(scenario.nonces);
        let mut pool = pool(scenario.config);
        admit_all(&mut pool, &scenario.before, &state);
        let verdict = pool.check(&scenario.tx, &state);
        let code = verdict.as_ref().map_or_else(AdmitError::code, |_| 0);
        assert_eq!(code, expected_code, "{}: {verdict:?}", scenario.name);
        pool.assert_invariants();
    }

    fn scenario(name: &'static str, tx: Vec<u8>) -> Scenario {
        Scenario {
            name,
            config: MempoolConfig::default(),
            nonces: &[],
            before: Vec::new(),
            tx,
        }
    }

    #[test]
    fn every_admission_verdict_has_its_code() {
        let bad_signature = {
            let mut tx = tx(1, 0);
            tx.signature[40] ^= 1;
            tx.encode()
        };
        let weak_key = {
            let mut tx = tx(1, 0);
            tx.sender = Address({
                let mut identity = [0; 32];
                identity[0] = 1;
                identity
            });
            tx.encode()
        };
        let other_chain = Transaction::sign(ChainId::new("other").unwrap(), &key(1), 0, {
            Payload::Transfer {
                to: RECIPIENT,
                amount: 1,
            }
        });
        let one_tx = MempoolConfig {
            size: 1,
            ..MempoolConfig::default()
        };
        check(scenario("admitted", tx(1, 0).encode()), 0);
        check(scenario("malformed", vec![0xff; 20]), 1);
        check(
            scenario("trailing byte", [tx(1, 0).encode(), vec![0]].concat()),
            1,
        );
        check(scenario("too large", vec![0; TX_BYTES_MAX + 1]), 2);
        check(scenario("bad signature", bad_signature), 3);
        check(scenario("weak key", weak_key), 3);
        check(scenario("wrong chain id", other_chain.encode()), 4);
        check(
            Scenario {
                nonces: &[(1, 5)],
                ..scenario("nonce too low", tx(1, 4).encode())
            },
            5,
        );
        check(scenario("nonce gap too large", tx(1, 64).encode()), 6);
        check(scenario("nonce at the gap's edge", tx(1, 63).encode()), 0);
        check(
            Scenario {
                config: one_tx,
                before: vec![tx(1, 0)],
                ..scenario("full", tx(2, 0).encode())
            },
            7,
        );
        check(
            Scenario {
                before: vec![tx(1, 0)],
                ..scenario("already known", tx(1, 0).encode())
            },
            8,
        );
        check(
            Scenario {
                before: vec![tx(1, 0)],
                ..scenario("nonce taken", transfer(1, 0, 2).encode())
            },
            9,
        );
        let mut pool = pool(MempoolConfig::default());
        let broken = BrokenState(LtHash::identity());
        let verdict = pool.check(&tx(1, 0).encode(), &broken);
        assert_eq!(verdict.unwrap_err().code(), 10);
    }

    #[test]
    fn verdicts_carry_what_was_wrong() {
        let state = state(&[(1, 5)]);
        let mut pool = pool(MempoolConfig {
            tx_bytes_max: 100,
            ..MempoolConfig::default()
        });
        assert_eq!(
            pool.check(&[0; 101], &state),
            Err(AdmitError::TooLarge { len: 101, max: 100 })
        );
        let mut pool = self::pool(MempoolConfig::default());
        assert_eq!(
            pool.check(&tx(1, 3).encode(), &state),
            Err(AdmitError::NonceTooLow { account: 5, got: 3 })
        );
        admit_all(&mut pool, &[tx(1, 5), tx(1, 6)], &state);
        assert_eq!(
            pool.check(&tx(1, 71).encode(), &state),
            Err(AdmitError::NonceGapTooLarge { next: 7, got: 71 })
        );
        let Err(AdmitError::Malformed(message)) = pool.check(&[0xff; 20], &state) else {
            panic!("expected Malformed");
        };
        assert!(message.contains("chain id"), "{message}");
    }

    #[test]
    fn gap_counts_from_the_end_of_the_pending_run() {
        let state = state(&[]);
        let mut pool = pool(MempoolConfig {
            nonce_gap_max: 2,
            ..MempoolConfig::default()
        });
        // Pending 0, 1, 3: the run from 0 ends at 2, so 2 and 3 are in reach and 4 is not.
        admit_all(&mut pool, &[tx(1, 0), tx(1, 1), tx(1, 3)], &state);
        assert_eq!(
            pool.check(&tx(1, 4).encode(), &state),
            Err(AdmitError::NonceGapTooLarge { next: 2, got: 4 })
        );
        // Filling 2 joins the runs: the next nonce becomes 4.
        admit_all(&mut pool, &[tx(1, 2), tx(1, 4), tx(1, 5)], &state);
        assert_eq!(pool.len(), 6);
        pool.assert_invariants();
    }

    #[test]
    fn batch_verdicts_come_in_order_with_one_bad_signature() {
        let state = state(&[]);
        let mut pool = pool(MempoolConfig::default());
        let mut bad = tx(3, 0);
        bad.signature[0] ^= 1;
        let txs = [
            tx(1, 0),
            tx(2, 0),
            bad.clone(),
            tx(4, 0),
            tx(1, 1),
            tx(5, 0),
        ];
        let raw: Vec<Vec<u8>> = txs.iter().map(Transaction::encode).collect();
        let verdicts = pool.check_batch(&raw, &state);
        let codes: Vec<u32> = verdicts
            .iter()
            .map(|verdict| verdict.as_ref().map_or_else(AdmitError::code, |_| 0))
            .collect();
        assert_eq!(codes, [0, 0, 3, 0, 0, 0]);
        for (tx, verdict) in txs.iter().zip(&verdicts) {
            if let Ok(hash) = verdict {
                assert_eq!(*hash, tx.hash());
                assert!(pool.contains(hash));
            }
        }
        assert!(!pool.contains(&bad.hash()));
        assert_eq!(pool.len(), 5);
        pool.assert_invariants();
    }

    #[test]
    fn a_bad_signature_holds_no_nonce_in_its_batch() {
        let state = state(&[]);
        let mut pool = pool(MempoolConfig {
            nonce_gap_max: 1,
            ..MempoolConfig::default()
        });
        let mut forged = tx(1, 0);
        forged.signature[0] ^= 1;
        // The forged nonce 0 does not extend the run, so nonce 1 falls out of the gap; the
        // honest nonce 0 after it still gets in.
        let raw = [forged.encode(), tx(1, 1).encode(), tx(1, 0).encode()];
        let codes: Vec<u32> = pool
            .check_batch(&raw, &state)
            .iter()
            .map(|verdict| verdict.as_ref().map_or_else(AdmitError::code, |_| 0))
            .collect();
        assert_eq!(codes, [3, 6, 0]);
    }

    #[test]
    fn duplicates_are_rejected_in_a_batch_across_calls_and_from_the_cache() {
        let state = state(&[]);
        let mut pool = pool(MempoolConfig::default());
        let raw = tx(1, 0).encode();
        let verdicts = pool.check_batch(&[raw.clone(), raw.clone()], &state);
        assert!(verdicts[0].is_ok());
        assert_eq!(verdicts[1], Err(AdmitError::AlreadyKnown));
        assert_eq!(pool.check(&raw, &state), Err(AdmitError::AlreadyKnown));
        // Committed and gone from the pool, it is still known.
        let mut state = state;
        set_nonce(&mut state, 1, 1);
        pool.update(&[tx(1, 0)], &state);
        assert!(pool.is_empty());
        assert_eq!(pool.check(&raw, &state), Err(AdmitError::AlreadyKnown));
        // A bad signature is remembered as such.
        let mut bad = tx(2, 0);
        bad.signature[0] ^= 1;
        let error = pool.check(&bad.encode(), &state).unwrap_err();
        assert_eq!(pool.check(&bad.encode(), &state).unwrap_err(), error);
        assert_eq!(error.code(), 3);
    }

    #[test]
    fn the_cache_forgets_the_oldest_first() {
        let state = state(&[]);
        let mut pool = pool(MempoolConfig {
            cache_size: 2,
            ..MempoolConfig::default()
        });
        admit_all(&mut pool, &[tx(1, 0), tx(2, 0), tx(3, 0)], &state);
        pool.update(&[tx(1, 0), tx(2, 0), tx(3, 0)], &state);
        // Nonces did not move (as if all three failed), so only the cache stops a resubmission.
        assert!(pool.check(&tx(1, 0).encode(), &state).is_ok());
        assert_eq!(
            pool.check(&tx(3, 0).encode(), &state),
            Err(AdmitError::AlreadyKnown)
        );
        pool.assert_invariants();
    }

    #[test]
    fn capacity_by_count() {
        let state = state(&[]);
        let mut pool = pool(MempoolConfig {
            size: 3,
            ..MempoolConfig::default()
        });
        let raw: Vec<Vec<u8>> = (1..=5).map(|seed| tx(seed, 0).encode()).collect();
        let verdicts = pool.check_batch(&raw, &state);
        assert!(verdicts[..3].iter().all(Result::is_ok));
        let bytes = 3 * raw[0].len();
        let full = Err(AdmitError::Full { count: 0, bytes: 0 });
        // Refused in the first pass, before the three were inserted: no eviction, no signature.
        assert_eq!(verdicts[3..], [full.clone(), full]);
        assert_eq!((pool.len(), pool.bytes()), (3, bytes));
        assert_eq!(
            pool.check(&raw[4], &state),
            Err(AdmitError::Full { count: 3, bytes })
        );
    }

    #[test]
    fn capacity_by_bytes() {
        let state = state(&[]);
        let len = tx(1, 0).encode().len();
        let mut pool = pool(MempoolConfig {
            max_bytes: 2 * len + len / 2,
            tx_bytes_max: len,
            ..MempoolConfig::default()
        });
        admit_all(&mut pool, &[tx(1, 0), tx(2, 0)], &state);
        assert_eq!(
            pool.check(&tx(3, 0).encode(), &state),
            Err(AdmitError::Full {
                count: 2,
                bytes: 2 * len
            })
        );
        pool.update(&[tx(1, 0)], &state);
        assert!(pool.check(&tx(3, 0).encode(), &state).is_ok());
        assert_eq!(pool.bytes(), 2 * len);
    }

    #[test]
    fn reap_orders_each_sender_by_nonce_from_its_account_nonce() {
        let state = state(&[(2, 10)]);
        let mut pool = pool(MempoolConfig::default());
        let arrivals = [
            tx(1, 2),
            tx(2, 10),
            tx(1, 0),
            tx(3, 1), // account nonce 0, nonce 0 missing: never reaped
            tx(1, 1),
            tx(2, 12), // 11 missing: not contiguous
            tx(1, 4),  // 3 missing
        ];
        admit_all(&mut pool, &arrivals, &state);
        // 1's nonce 0 releases nothing (1 arrives later); nonce 1 releases the earlier 2.
        let all = pool.reap(usize::MAX, usize::MAX, &state);
        assert_eq!(ids(&all), [(2, 10), (1, 0), (1, 1), (1, 2)]);
        let two = pool.reap(2, usize::MAX, &state);
        assert_eq!(ids(&two), [(2, 10), (1, 0)]);
        let len = tx(1, 0).encode().len();
        let by_bytes = pool.reap(usize::MAX, 3 * len + len - 1, &state);
        assert_eq!(ids(&by_bytes), [(2, 10), (1, 0), (1, 1)]);
        assert!(pool.reap(0, usize::MAX, &state).is_empty());
        assert!(pool.reap(usize::MAX, len - 1, &state).is_empty());
    }

    #[test]
    fn reap_keeps_arrival_order_across_senders() {
        let state = state(&[]);
        let mut pool = pool(MempoolConfig::default());
        let arrivals = [tx(3, 0), tx(1, 0), tx(2, 0), tx(3, 1), tx(1, 1)];
        admit_all(&mut pool, &arrivals, &state);
        let reaped = pool.reap(usize::MAX, usize::MAX, &state);
        assert_eq!(ids(&reaped), [(3, 0), (1, 0), (2, 0), (3, 1), (1, 1)]);
        assert_eq!(ids(&pool.pending(3)), [(3, 0), (1, 0), (2, 0)]);
        let broken = BrokenState(LtHash::identity());
        assert!(pool.reap(usize::MAX, usize::MAX, &broken).is_empty());
    }

    #[test]
    fn update_removes_committed_and_stale_and_keeps_future_nonces() {
        let mut state = state(&[]);
        let mut pool = pool(MempoolConfig::default());
        admit_all(
            &mut pool,
            &[tx(1, 0), tx(1, 1), tx(1, 2), tx(1, 5), tx(2, 0), tx(3, 0)],
            &state,
        );
        // Block: 1's nonce 0 from us, and a nonce 1 we never saw; 2's tx failed (nonce kept).
        let foreign = transfer(1, 1, 99);
        set_nonce(&mut state, 1, 2);
        pool.update(&[tx(1, 0), foreign, tx(2, 0)], &state);
        assert!(!pool.contains(&tx(1, 0).hash()));
        assert!(
            !pool.contains(&tx(1, 1).hash()),
            "stale: below the account nonce"
        );
        assert!(!pool.contains(&tx(2, 0).hash()));
        assert!(pool.contains(&tx(1, 2).hash()));
        assert!(pool.contains(&tx(1, 5).hash()));
        assert!(pool.contains(&tx(3, 0).hash()));
        assert_eq!(pool.len(), 3);
        pool.assert_invariants();
        let reaped = pool.reap(usize::MAX, usize::MAX, &state);
        assert_eq!(ids(&reaped), [(1, 2), (3, 0)]);
    }

    #[test]
    fn signature_verdicts_are_reusable() {
        let state = state(&[]);
        let mut pool = pool(MempoolConfig::default());
        let good = tx(1, 0);
        let taken = transfer(1, 0, 2);
        let mut bad = tx(2, 0);
        bad.signature[0] ^= 1;
        let raw = [good.encode(), taken.encode(), bad.encode()];
        let verdicts = pool.check_batch(&raw, &state);
        assert_eq!(verdicts[1], Err(AdmitError::NonceTaken));
        assert!(pool.signature_verified(&good.hash()));
        // Lost the nonce to `good`, but its signature passed.
        assert!(pool.signature_verified(&taken.hash()));
        assert!(!pool.signature_verified(&bad.hash()));
        assert!(!pool.signature_verified(&tx(3, 0).hash()));
        assert_eq!(pool.get(&good.hash()).as_deref(), Some(&good));
    }

    #[test]
    fn signatures_noted_valid_are_not_checked_again_and_earlier_verdicts_stand() {
        let state = state(&[]);
        let mut pool = pool(MempoolConfig::default());
        // A forged signature, noted valid (as a validated block would), passes admission:
        // proof that the note, not a second check, decided it.
        let mut noted = tx(1, 0);
        noted.signature[0] ^= 1;
        let mut refused = tx(2, 0);
        refused.signature[0] ^= 1;
        assert!(matches!(
            pool.check(&refused.encode(), &state),
            Err(AdmitError::BadSignature(_))
        ));
        pool.note_signatures_valid([noted.hash(), refused.hash()]);
        assert!(pool.signature_verified(&noted.hash()));
        assert_eq!(pool.check(&noted.encode(), &state), Ok(noted.hash()));
        assert!(!pool.signature_verified(&refused.hash()));
        assert!(matches!(
            pool.check(&refused.encode(), &state),
            Err(AdmitError::BadSignature(_))
        ));
        // A pending tx keeps its Admitted verdict: a resend is still a duplicate.
        pool.note_signatures_valid([noted.hash()]);
        assert_eq!(
            pool.check(&noted.encode(), &state),
            Err(AdmitError::AlreadyKnown)
        );
    }

    #[test]
    fn invalid_configs_are_named() {
        let bad = [
            (
                "size",
                MempoolConfig {
                    size: 0,
                    ..MempoolConfig::default()
                },
            ),
            (
                "tx_bytes_max",
                MempoolConfig {
                    tx_bytes_max: TX_BYTES_MAX + 1,
                    ..MempoolConfig::default()
                },
            ),
            (
                "max_bytes",
                MempoolConfig {
                    max_bytes: 10,
                    ..MempoolConfig::default()
                },
            ),
            (
                "nonce_gap_max",
                MempoolConfig {
                    nonce_gap_max: 0,
                    ..MempoolConfig::default()
                },
            ),
        ];
        for (field, config) in bad {
            assert_eq!(config.validate().unwrap_err().field, field);
        }
        assert_eq!(MempoolConfig::default().validate(), Ok(()));
    }

    #[test]
    fn nonce_runs_merge_and_split() {
        let mut runs = NonceRuns::default();
        for nonce in [5, 7, 6, 1, u64::MAX, u64::MAX - 1] {
            assert!(runs.insert(nonce));
        }
        assert!(!runs.insert(6));
        let pairs: Vec<(u64, u64)> = runs.0.iter().map(|(a, b)| (*a, *b)).collect();
        assert_eq!(pairs, [(1, 1), (5, 7), (u64::MAX - 1, u64::MAX)]);
        assert_eq!(runs.end_from(5), 8);
        assert_eq!(runs.end_from(4), 4);
        assert_eq!(
            runs.end_from(u128::from(u64::MAX)),
            u128::from(u64::MAX) + 1
        );
        runs.remove(6);
        let pairs: Vec<(u64, u64)> = runs.0.iter().map(|(a, b)| (*a, *b)).collect();
        assert_eq!(pairs, [(1, 1), (5, 5), (7, 7), (u64::MAX - 1, u64::MAX)]);
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Submit a batch of (sender, nonce, amount) transfers.
        Admit(Vec<(u8, u64, u64)>),
        Garbage(Vec<u8>),
        /// Commit up to this many reaped txs; all succeed, or all fail (no nonce moves).
        Commit {
            max_txs: usize,
            succeed: bool,
        },
        /// A block of txs we never saw moves a sender's nonce forward.
        Foreign {
            sender: u8,
            by: u64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => prop::collection::vec((1u8..=3, 0u64..10, 0u64..3), 1..5).prop_map(Op::Admit),
            1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Op::Garbage),
            2 => (0usize..6, any::<bool>())
                .prop_map(|(max_txs, succeed)| Op::Commit { max_txs, succeed }),
            1 => (1u8..=3, 1u64..4).prop_map(|(sender, by)| Op::Foreign { sender, by }),
        ]
    }

    fn config() -> impl Strategy<Value = MempoolConfig> {
        (1usize..10, 155usize..2_000, 0usize..6, 1u64..4).prop_map(
            |(size, max_bytes, cache_size, nonce_gap_max)| MempoolConfig {
                size,
                max_bytes,
                tx_bytes_max: 155,
                cache_size,
                nonce_gap_max,
            },
        )
    }

    fn nonce_of(state: &MemoryState, seed: u8) -> u64 {
        account_nonce(state, &address(seed)).unwrap()
    }

    /// Per sender, a reap yields consecutive nonces from the account nonce, within its limits.
    fn assert_reap_law(pool: &Mempool, state: &MemoryState, max_txs: usize, max_bytes: usize) {
        let reaped = pool.reap(max_txs, max_bytes, state);
        assert!(reaped.len() <= max_txs);
        assert!(reaped.iter().map(|tx| tx.encode().len()).sum::<usize>() <= max_bytes);
        let mut expected: BTreeMap<u8, u64> = BTreeMap::new();
        for (seed, nonce) in ids(&reaped) {
            let next = expected
                .entry(seed)
                .or_insert_with(|| nonce_of(state, seed));
            assert_eq!(nonce, *next, "sender {seed}");
            *next += 1;
        }
    }

    fn apply(pool: &mut Mempool, state: &mut MemoryState, op: &Op) {
        match op {
            Op::Admit(txs) => {
                let raw: Vec<Vec<u8>> = txs
                    .iter()
                    .map(|(seed, nonce, amount)| transfer(*seed, *nonce, *amount).encode())
                    .collect();
                assert_eq!(pool.check_batch(&raw, state).len(), raw.len());
            }
            Op::Garbage(bytes) => {
                assert!(pool.check(bytes, state).is_err());
            }
            Op::Commit { max_txs, succeed } => {
                let block: Vec<Transaction> = pool
                    .reap(*max_txs, usize::MAX, state)
                    .iter()
                    .map(|tx| Transaction::clone(tx))
                    .collect();
                if *succeed {
                    for tx in &block {
                        let seed = ids(&[Arc::new(tx.clone())])[0].0;
                        set_nonce(state, seed, tx.nonce + 1);
                    }
                }
                pool.update(&block, state);
            }
            Op::Foreign { sender, by } => {
                let start = nonce_of(state, *sender);
                let block: Vec<Transaction> = (start..start + by)
                    .map(|nonce| transfer(*sender, nonce, 7))
                    .collect();
                set_nonce(state, *sender, start + by);
                pool.update(&block, state);
            }
        }
    }

    proptest! {
        #[test]
        fn random_admissions_and_updates_keep_every_bound(
            config in config(),
            ops in prop::collection::vec(op(), 1..30),
        ) {
            let mut state = state(&[]);
            let mut pool = pool(config);
            for op in &ops {
                apply(&mut pool, &mut state, op);
                pool.assert_invariants();
                assert_reap_law(&pool, &state, usize::MAX, usize::MAX);
                assert_reap_law(&pool, &state, 2, 400);
                for (hash, pending) in &pool.txs {
                    let seed = ids(&[Arc::clone(&pending.tx)])[0].0;
                    prop_assert!(pending.tx.nonce >= nonce_of(&state, seed), "{hash:?} is stale");
                }
            }
        }
    }
}
