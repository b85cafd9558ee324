//! The run's shared books: every tx sent and not yet seen committed (the pending table), the
//! counters, and the [`Recorder`]. The send loop registers txs before they leave, batch tasks
//! record the nodes' answers, the tracker records commits.
//!
//! Lock order: `pending` before `recorder`; neither is held across an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Live;
use super::report::Recorder;
use super::sign::SignedTx;

/// Most txs awaiting commit; a batch that would overflow the table is dropped, not sent.
pub const PENDING_TXS_MAX: usize = 1_000_000;
/// A tx not seen committed this long after its last send is sent again (to another node).
pub const REBROADCAST_AFTER: Duration = Duration::from_secs(5);
/// Most times one tx is sent again.
pub const REBROADCASTS_MAX: u8 = 3;
/// Most txs sent again per rebroadcast pass.
pub const REBROADCAST_TXS_MAX: usize = 20_000;
/// A tx not seen committed this long after its first send is forgotten.
pub const PENDING_TTL: Duration = Duration::from_secs(60);

/// Admission codes after which a tx may still commit, so it stays pending: 0 admitted,
/// 6 nonce gap (its predecessor may arrive), 7 mempool full, 8 already known, 10 state
/// unavailable. Every other code (malformed, bad signature, wrong chain, nonce too low or
/// taken) means this tx will not commit.
pub fn may_still_commit(code: u32) -> bool {
    matches!(code, 0 | 6 | 7 | 8 | 10)
}

/// One node's verdict on one tx of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `broadcast_tx_sync`'s `code`.
    Code(u32),
    /// A JSON-RPC error object, or a result without a code.
    Error,
}

/// Why a batch went out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// On schedule (or its retry on the next node after a transport failure).
    First,
    /// Again, because it had not committed within [`REBROADCAST_AFTER`].
    Rebroadcast,
}

struct Pending {
    /// First send, µs since the clock started.
    sent_us: u64,
    last_us: u64,
    account: u32,
    tries: u8,
    /// A node said code 0 or 8 for it.
    admitted: bool,
    /// The last answer was a code other than 0 or 8 (one after which it may still commit).
    refused: bool,
    /// Counted in `sent`: false for a tx dropped at its first send until a rebroadcast sends it,
    /// so that every tx counted committed was counted sent.
    counted_sent: bool,
    bytes: Arc<[u8]>,
}

pub struct Ledger {
    base: Instant,
    /// µs from `base` to the start of the clock; `u64::MAX` until it starts.
    origin_us: AtomicU64,
    /// The wall clock (ms since the Unix epoch) when the clock started.
    origin_wall_ms: AtomicU64,
    pending: Mutex<HashMap<[u8; 32], Pending>>,
    pub recorder: Mutex<Recorder>,
    pub live: Arc<Live>,
    pub sent: AtomicU64,
    pub admitted: AtomicU64,
    pub send_failures: AtomicU64,
    pub dropped: AtomicU64,
    pub rebroadcasts: AtomicU64,
    /// Admitted txs forgotten after [`PENDING_TTL`].
    pub expired_admitted: AtomicU64,
    pub rejected: Mutex<BTreeMap<u32, u64>>,
    pub first_send_us: AtomicU64,
    pub last_send_us: AtomicU64,
}

impl Ledger {
    pub fn new(live: Arc<Live>, seed: u64) -> Ledger {
        Ledger {
            base: Instant::now(),
            origin_us: AtomicU64::new(u64::MAX),
            origin_wall_ms: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            recorder: Mutex::new(Recorder::new(seed)),
            live,
            sent: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
            send_failures: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rebroadcasts: AtomicU64::new(0),
            expired_admitted: AtomicU64::new(0),
            rejected: Mutex::new(BTreeMap::new()),
            first_send_us: AtomicU64::new(u64::MAX),
            last_send_us: AtomicU64::new(0),
        }
    }

    /// Starts the run's clock: [`Ledger::now_us`] counts from here.
    pub fn start_clock(&self) {
        let origin = self.base.elapsed().as_micros() as u64;
        self.origin_us.store(origin, Relaxed);
        self.origin_wall_ms.store(wall_ms(), Relaxed);
    }

    /// A wall-clock time (a block header's `time_ms`) on the run's clock, at most now.
    pub fn us_at_wall_ms(&self, time_ms: u64) -> u64 {
        let since_ms = time_ms.saturating_sub(self.origin_wall_ms.load(Relaxed));
        since_ms.saturating_mul(1_000).min(self.now_us())
    }

    /// µs since the clock started (0 before).
    pub fn now_us(&self) -> u64 {
        let origin = self.origin_us.load(Relaxed);
        (self.base.elapsed().as_micros() as u64).saturating_sub(origin)
    }

    #[cfg(test)]
    pub fn pending_len(&self) -> usize {
        self.pending.lock().len()
    }

    /// Enters txs about to be sent for the first time. False (and the txs counted as dropped)
    /// when they do not fit in the pending table.
    pub fn register(&self, txs: &[SignedTx]) -> bool {
        let now_us = self.now_us();
        if !self.enter(txs, now_us, false) {
            self.count_dropped(txs.len());
            return false;
        }
        let count = txs.len() as u64;
        self.recorder
            .lock()
            .timeline
            .sent(now_us / 1_000_000, count);
        self.sent.fetch_add(count, Relaxed);
        self.live.sent.fetch_add(count, Relaxed);
        self.first_send_us.fetch_min(now_us, Relaxed);
        self.last_send_us.fetch_max(now_us, Relaxed);
        true
    }

    /// Txs due now that cannot be sent (no node usable, no batch permit). They are counted as
    /// dropped but still entered, when there is room, as if refused: a later rebroadcast
    /// sends them, so the nonces after theirs are not stuck for the rest of the run, and a
    /// commit is timed from now, when they were due.
    pub fn drop_txs(&self, txs: &[SignedTx]) {
        self.count_dropped(txs.len());
        self.enter(txs, self.now_us(), true);
    }

    /// Txs a rebroadcast is about to send. One dropped at its first send is counted sent now,
    /// and no longer dropped: `sent` and `committed` then count the same txs, and a step's
    /// committed share cannot pass 100%.
    pub fn resending(&self, txs: &[SignedTx]) {
        let mut first_sends = 0u64;
        {
            let mut pending = self.pending.lock();
            for tx in txs {
                if let Some(entry) = pending.get_mut(&tx.hash)
                    && !entry.counted_sent
                {
                    entry.counted_sent = true;
                    first_sends += 1;
                }
            }
        }
        if first_sends == 0 {
            return;
        }
        let now_us = self.now_us();
        self.recorder
            .lock()
            .timeline
            .sent(now_us / 1_000_000, first_sends);
        self.sent.fetch_add(first_sends, Relaxed);
        self.live.sent.fetch_add(first_sends, Relaxed);
        self.dropped.fetch_sub(first_sends, Relaxed);
        self.live.dropped.fetch_sub(first_sends, Relaxed);
    }

    fn count_dropped(&self, count: usize) {
        self.dropped.fetch_add(count as u64, Relaxed);
        self.live.dropped.fetch_add(count as u64, Relaxed);
    }

    /// Puts txs in the pending table, all or none.
    fn enter(&self, txs: &[SignedTx], now_us: u64, refused: bool) -> bool {
        let mut pending = self.pending.lock();
        if pending.len() + txs.len() > PENDING_TXS_MAX {
            return false;
        }
        for tx in txs {
            pending.insert(
                tx.hash,
                Pending {
                    sent_us: now_us,
                    last_us: now_us,
                    account: tx.account,
                    tries: 0,
                    admitted: false,
                    refused,
                    counted_sent: !refused,
                    bytes: Arc::clone(&tx.bytes),
                },
            );
        }
        true
    }

    /// A batch got no answer (refused connection, timeout, a bad response).
    pub fn send_failed(&self, count: usize) {
        self.send_failures.fetch_add(count as u64, Relaxed);
        self.live.send_failures.fetch_add(count as u64, Relaxed);
    }

    /// A node's answers to a batch, in the batch's order.
    pub fn answered(&self, txs: &[SignedTx], answers: &[Answer], attempt: Attempt) {
        let (mut admitted, mut failures) = (0u64, 0usize);
        let mut rejected: BTreeMap<u32, u64> = BTreeMap::new();
        {
            let mut pending = self.pending.lock();
            for (tx, answer) in txs.iter().zip(answers) {
                match (*answer, attempt) {
                    (Answer::Error, Attempt::First) => failures += 1,
                    (Answer::Error, Attempt::Rebroadcast) => {}
                    (Answer::Code(code), _) => {
                        if attempt == Attempt::First {
                            if code == 0 {
                                admitted += 1;
                            } else {
                                *rejected.entry(code).or_default() += 1;
                            }
                        }
                        if !may_still_commit(code) {
                            pending.remove(&tx.hash);
                        } else if let Some(entry) = pending.get_mut(&tx.hash) {
                            let known = code == 0 || code == 8;
                            entry.admitted |= known;
                            entry.refused = !known;
                        }
                    }
                }
            }
        }
        self.admitted.fetch_add(admitted, Relaxed);
        self.live.admitted.fetch_add(admitted, Relaxed);
        let rejected_count: u64 = rejected.values().sum();
        self.live.rejected.fetch_add(rejected_count, Relaxed);
        if rejected_count > 0 {
            let mut total = self.rejected.lock();
            for (code, count) in rejected {
                *total.entry(code).or_default() += count;
            }
        }
        if failures > 0 {
            self.send_failed(failures);
        }
    }

    /// Txs of ours in a committed block: (hash, result code), seen at `now_us`.
    pub fn committed(&self, height: u64, txs: &[([u8; 32], u32)], now_us: u64) {
        let mut latencies = Vec::new();
        {
            let mut pending = self.pending.lock();
            let mut recorder = self.recorder.lock();
            for (hash, code) in txs {
                if let Some(entry) = pending.remove(hash) {
                    latencies.push(recorder.commit(hash, height, *code, entry.sent_us, now_us));
                }
            }
        }
        if !latencies.is_empty() {
            self.live.record_commits(&latencies);
        }
    }

    /// Txs due to be sent again (marked as sent now), oldest first, with their try number;
    /// forgets txs older than [`PENDING_TTL`].
    pub fn take_stale(&self) -> Vec<(SignedTx, u8)> {
        let now_us = self.now_us();
        let after_us = REBROADCAST_AFTER.as_micros() as u64;
        let ttl_us = PENDING_TTL.as_micros() as u64;
        let mut due = Vec::new();
        let mut expired_admitted = 0;
        self.pending.lock().retain(|hash, entry| {
            if now_us.saturating_sub(entry.sent_us) > ttl_us {
                expired_admitted += u64::from(entry.admitted);
                return false;
            }
            let stale = now_us.saturating_sub(entry.last_us) >= after_us;
            if stale && entry.tries < REBROADCASTS_MAX && due.len() < REBROADCAST_TXS_MAX {
                entry.tries += 1;
                entry.last_us = now_us;
                let tx = SignedTx {
                    account: entry.account,
                    hash: *hash,
                    bytes: Arc::clone(&entry.bytes),
                };
                due.push((entry.sent_us, tx, entry.tries));
            }
            true
        });
        self.expired_admitted.fetch_add(expired_admitted, Relaxed);
        self.rebroadcasts.fetch_add(due.len() as u64, Relaxed);
        due.sort_by_key(|(sent_us, tx, _)| (*sent_us, tx.account));
        due.into_iter().map(|(_, tx, tries)| (tx, tries)).collect()
    }

    /// Pending txs that no node refused at their last answer: admitted, or of unknown fate.
    pub fn awaited(&self) -> usize {
        self.pending.lock().values().filter(|p| !p.refused).count()
    }

    /// Admitted txs not seen committed: those still pending plus those forgotten.
    pub fn uncommitted(&self) -> u64 {
        let pending = self.pending.lock().values().filter(|p| p.admitted).count() as u64;
        pending + self.expired_admitted.load(Relaxed)
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(n: u8) -> SignedTx {
        SignedTx {
            account: u32::from(n),
            hash: [n; 32],
            bytes: Arc::from(vec![n; 4]),
        }
    }

    #[test]
    fn a_dropped_tx_counts_as_sent_once_a_rebroadcast_sends_it() {
        // Overload: a step's first sends find no batch permit and are dropped; rebroadcasts
        // send them later and they commit. Committed must stay within sent (it once read
        // 73,605 committed of 66,693 sent).
        let ledger = Ledger::new(Arc::new(Live::default()), 1);
        ledger.start_clock();
        let sent: Vec<SignedTx> = (0..3).map(tx).collect();
        let dropped: Vec<SignedTx> = (10..14).map(tx).collect();
        assert!(ledger.register(&sent));
        ledger.drop_txs(&dropped);
        assert_eq!(ledger.sent.load(Relaxed), 3);
        assert_eq!(ledger.dropped.load(Relaxed), 4);
        // Two of the dropped go out; a second resend of the same counts nothing more.
        ledger.resending(&dropped[..2]);
        ledger.resending(&dropped[..2]);
        ledger.resending(&sent);
        assert_eq!(ledger.sent.load(Relaxed), 5);
        assert_eq!(ledger.dropped.load(Relaxed), 2);
        assert_eq!(ledger.live.sent.load(Relaxed), 5);
        let in_block: Vec<([u8; 32], u32)> = sent
            .iter()
            .chain(&dropped[..2])
            .map(|tx| (tx.hash, 0))
            .collect();
        ledger.committed(4, &in_block, 1_000);
        let committed = ledger.recorder.lock().committed;
        assert_eq!(committed, 5);
        assert!(committed <= ledger.sent.load(Relaxed));
        assert_eq!(
            ledger.sent.load(Relaxed) + ledger.dropped.load(Relaxed),
            7,
            "sent and dropped add up to what was due"
        );
    }

    #[test]
    fn answers_count_once_and_keep_only_txs_that_may_commit() {
        let ledger = Ledger::new(Arc::new(Live::default()), 1);
        ledger.start_clock();
        let txs: Vec<SignedTx> = (0..5).map(tx).collect();
        assert!(ledger.register(&txs));
        let answers = [
            Answer::Code(0),
            Answer::Code(5),
            Answer::Code(7),
            Answer::Error,
            Answer::Code(8),
        ];
        ledger.answered(&txs, &answers, Attempt::First);
        assert_eq!(ledger.admitted.load(Relaxed), 1);
        assert_eq!(
            *ledger.rejected.lock(),
            BTreeMap::from([(5, 1), (7, 1), (8, 1)])
        );
        assert_eq!(ledger.send_failures.load(Relaxed), 1);
        assert_eq!(ledger.pending_len(), 4, "nonce too low is final");
        assert_eq!(
            ledger.uncommitted(),
            2,
            "code 0 and code 8 count as admitted"
        );
        assert_eq!(
            ledger.awaited(),
            3,
            "codes 0 and 8, and the error of unknown fate"
        );
        // A rebroadcast's answers change no counters.
        ledger.answered(&txs[2..3], &[Answer::Code(0)], Attempt::Rebroadcast);
        assert_eq!(ledger.admitted.load(Relaxed), 1);
        assert_eq!((ledger.uncommitted(), ledger.awaited()), (3, 4));
        ledger.committed(9, &[([0; 32], 0), ([2; 32], 3), ([77; 32], 0)], 2_000_000);
        let recorder = ledger.recorder.lock();
        assert_eq!((recorder.committed, recorder.failed_in_block), (2, 1));
        assert_eq!(ledger.live.snapshot().committed, 2);
    }

    #[test]
    fn a_full_table_drops_the_batch() {
        let ledger = Ledger::new(Arc::new(Live::default()), 1);
        let many: Vec<SignedTx> = (0..=PENDING_TXS_MAX)
            .map(|i| SignedTx {
                account: 0,
                hash: *blake3::hash(&i.to_le_bytes()).as_bytes(),
                bytes: Arc::from(Vec::new()),
            })
            .collect();
        assert!(!ledger.register(&many));
        assert_eq!(ledger.dropped.load(Relaxed), many.len() as u64);
        assert_eq!((ledger.pending_len(), ledger.sent.load(Relaxed)), (0, 0));
        ledger.drop_txs(&many[..10]);
        assert_eq!(ledger.dropped.load(Relaxed), many.len() as u64 + 10);
        assert_eq!(ledger.pending_len(), 10, "kept for a rebroadcast");
        assert_eq!((ledger.awaited(), ledger.sent.load(Relaxed)), (0, 0));
    }
}
