//! Misbehaviour scores: what each peer's bad messages cost it, and temporary bans.
//!
//! Malformed messages, bad signatures, unknown validators, oversized frames, excess streams,
//! far-future or flooded votes, stalled reading and false snapshots (which only the node can
//! find, and charges through `GossipHandle::charge`) each add a penalty; past
//! [`BAN_THRESHOLD`] the peer is banned for [`BAN_MS`]. Time is handed in, so this stays pure
//! and testable. The table is bounded: peers beyond [`SCORED_PEERS_MAX`] evict the lowest
//! score.

use std::collections::BTreeMap;

/// Penalty points per offence.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Offence {
    Malformed,
    BadSignature,
    UnknownValidator,
    OversizedFrame,
    /// More inbound streams than the limit.
    ExcessStreams,
    /// Votes or proposals for heights beyond both our window and the peer's own.
    FarFuture,
    /// More votes for one (height, signer) than any honest router relays.
    VoteFlood,
    /// Accepted no byte of our consensus stream for `Limits::write_stall_max`.
    SlowReader,
    /// A snapshot manifest, chunk or light block the node found false.
    BadSnapshot,
}

impl Offence {
    pub fn penalty(self) -> u32 {
        match self {
            Offence::Malformed => 20,
            Offence::BadSignature => 25,
            Offence::UnknownValidator => 10,
            Offence::OversizedFrame => 50,
            Offence::ExcessStreams => 10,
            Offence::FarFuture => 10,
            Offence::VoteFlood => 10,
            // An honest peer whose node stalls can trip this; it takes four stalls to ban.
            Offence::SlowReader => 25,
            // Only the node can judge it, and an honest peer never sends one: it takes two to ban.
            Offence::BadSnapshot => 50,
        }
    }
}

/// Points at which a peer is banned.
pub const BAN_THRESHOLD: u32 = 100;
/// How long a ban lasts.
pub const BAN_MS: u64 = 60_000;
/// Most peers tracked at once.
pub const SCORED_PEERS_MAX: usize = 1_024;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct Entry {
    points: u32,
    banned_until_ms: Option<u64>,
}

/// Scores keyed by a peer id of the caller's choosing.
#[derive(Clone, Debug, Default)]
pub struct Scores<P: Ord + Clone> {
    entries: BTreeMap<P, Entry>,
}

/// What a penalty led to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Tolerated {
        points: u32,
    },
    /// Disconnect the peer and refuse it until the given time.
    Banned {
        until_ms: u64,
    },
}

impl<P: Ord + Clone> Scores<P> {
    pub fn new() -> Self {
        Scores {
            entries: BTreeMap::new(),
        }
    }

    /// Charges `peer` for `offence` at `now_ms`.
    pub fn penalise(&mut self, peer: &P, offence: Offence, now_ms: u64) -> Verdict {
        if !self.entries.contains_key(peer) && self.entries.len() >= SCORED_PEERS_MAX {
            self.evict_lowest();
        }
        let entry = self.entries.entry(peer.clone()).or_default();
        if let Some(until_ms) = entry.banned_until_ms.filter(|until| *until > now_ms) {
            return Verdict::Banned { until_ms };
        }
        entry.points = entry.points.saturating_add(offence.penalty());
        if entry.points >= BAN_THRESHOLD {
            let until_ms = now_ms.saturating_add(BAN_MS);
            *entry = Entry {
                points: 0,
                banned_until_ms: Some(until_ms),
            };
            return Verdict::Banned { until_ms };
        }
        Verdict::Tolerated {
            points: entry.points,
        }
    }

    /// Whether `peer` is banned at `now_ms`.
    pub fn is_banned(&self, peer: &P, now_ms: u64) -> bool {
        self.entries
            .get(peer)
            .and_then(|entry| entry.banned_until_ms)
            .is_some_and(|until| until > now_ms)
    }

    pub fn points(&self, peer: &P) -> u32 {
        self.entries.get(peer).map_or(0, |entry| entry.points)
    }

    fn evict_lowest(&mut self) {
        let lowest = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.banned_until_ms.is_none())
            .min_by_key(|(_, entry)| entry.points)
            .map(|(peer, _)| peer.clone());
        if let Some(peer) = lowest.or_else(|| self.entries.keys().next().cloned()) {
            self.entries.remove(&peer);
        }
    }
}
