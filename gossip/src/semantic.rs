//! The gossip router: what a node relays to each peer, in `plain` or `semantic` mode. Pure
//! logic, no IO: the transport calls it with verified messages and drains each peer's queue.
//!
//! - `plain` relays every message once to every peer but the one it came from, with duplicate
//!   suppression only.
//! - `semantic` applies DESIGN §6 at dequeue time, per peer:
//!   - **filter**: do not send a vote this peer sent us or that we sent it; do not send votes for
//!     heights the peer has passed (peers advertise their height and round); once we hold a
//!     quorum for (type, height, round, value), send that quorum to the peer once, as one
//!     bundle, instead of the votes one by one;
//!   - **aggregate**: votes waiting for the same peer with the same (type, height, round,
//!     value) go out as one bundle.
//!
//! Decisions are taken only on messages the caller has verified. An equivocation (same
//! validator, type, height and round, another value) is never filtered as a duplicate: the key
//! of a vote includes its value.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use weft_consensus::{Height, Round, SignedVote, ValidatorId, ValidatorSet, ValueId, VoteType};

use crate::wire::{Message, VoteBundle};

/// Messages waiting for one peer; past it the oldest are dropped (the peer is too slow).
pub const PEER_QUEUE_MAX: usize = 8_192;
/// Heights of state kept below the highest seen: older votes are forgotten.
pub const HEIGHTS_KEPT: u64 = 2;
/// Most votes handled per (height, validator): an honest one signs 2 per round, so this allows
/// 256 rounds; a byzantine one cannot grow the router's state past it.
pub const VOTES_PER_SIGNER_HEIGHT_MAX: u32 = 512;
/// Most distinct proposals handled per height (an equivocating proposer signs any number).
pub const PROPOSALS_PER_HEIGHT_MAX: usize = 256;
/// Proposals per height kept whole (with their blocks) for peers that connect later.
pub const PROPOSALS_HELD_PER_HEIGHT: usize = 4;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GossipMode {
    Plain,
    Semantic,
}

/// A vote's semantic identity: same key, same vote.
type VoteKey = (Height, Round, VoteType, ValidatorId, Option<ValueId>);
/// What a quorum is about.
type Topic = (Height, Round, VoteType, Option<ValueId>);

fn key(vote: &SignedVote) -> VoteKey {
    let m = vote.message;
    (m.height, m.round, m.vote_type, m.validator, m.value)
}

fn topic(vote: &SignedVote) -> Topic {
    let m = vote.message;
    (m.height, m.round, m.vote_type, m.value)
}

/// Counters for metrics and the benchmark.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RouterCounters {
    pub duplicates_received: u64,
    pub votes_filtered: u64,
    pub bundles_sent: u64,
    pub votes_in_bundles: u64,
    pub queue_overflows: u64,
}

#[derive(Clone, Debug, Default)]
struct Peer {
    queue: VecDeque<Message>,
    /// Votes this peer sent us, or that we sent it.
    known: BTreeSet<VoteKey>,
    /// Quorums already sent to this peer as one bundle.
    quorums_sent: BTreeSet<Topic>,
    position: (Height, Round),
    /// The peer left; the slot waits for reuse.
    vacant: bool,
}

/// One node's gossip router.
#[derive(Clone, Debug)]
pub struct Router {
    mode: GossipMode,
    validators: ValidatorSet,
    peers: Vec<Peer>,
    /// Votes handled (delivered and relayed), by topic.
    votes: BTreeMap<Topic, BTreeMap<ValidatorId, SignedVote>>,
    /// Votes handled per (height, validator), for the per-signer bound.
    per_signer: BTreeMap<(Height, ValidatorId), u32>,
    /// Proposals already handled, by height.
    proposals: BTreeMap<Height, BTreeSet<[u8; 32]>>,
    /// The latest proposals of each kept height, for peers that connect later.
    held_proposals: BTreeMap<Height, VecDeque<Message>>,
    highest: Height,
    pub counters: RouterCounters,
}

impl Router {
    pub fn new(mode: GossipMode, validators: ValidatorSet, peers: usize) -> Self {
        Router {
            mode,
            validators,
            peers: vec![Peer::default(); peers],
            votes: BTreeMap::new(),
            per_signer: BTreeMap::new(),
            proposals: BTreeMap::new(),
            held_proposals: BTreeMap::new(),
            highest: Height(0),
            counters: RouterCounters::default(),
        }
    }

    /// Adds a peer slot; returns its index. Slots of departed peers are reused. The new peer's
    /// queue starts with what the router holds for the kept heights (votes, and the latest
    /// proposals), so a peer that connects late or reconnects catches up on the heights in
    /// progress: consensus assumes every message between correct nodes is eventually
    /// delivered.
    pub fn add_peer(&mut self) -> usize {
        let index = match self.peers.iter().position(|p| p.vacant) {
            Some(index) => {
                self.peers[index] = Peer::default();
                index
            }
            None => {
                self.peers.push(Peer::default());
                self.peers.len() - 1
            }
        };
        let held: Vec<Message> = self
            .held_proposals
            .values()
            .flatten()
            .cloned()
            .chain(
                self.votes
                    .values()
                    .flat_map(|votes| votes.values().map(|v| Message::Vote(*v))),
            )
            .collect();
        let queue = &mut self.peers[index].queue;
        for message in held.into_iter().take(PEER_QUEUE_MAX) {
            queue.push_back(message);
        }
        index
    }

    /// Forgets a departed peer: its queue and everything known about it. The slot is reused by
    /// the next [`Router::add_peer`].
    pub fn remove_peer(&mut self, peer: usize) {
        self.peers[peer] = Peer {
            vacant: true,
            ..Peer::default()
        };
    }

    /// Everything the router holds for heights ≥ `from`: the latest proposals, then the votes.
    /// A node whose consensus restarted (after block sync) takes these back, since they were
    /// delivered to the state it dropped.
    pub fn held(&self, from: Height) -> Vec<Message> {
        self.held_proposals
            .range(from..)
            .flat_map(|(_, proposals)| proposals.iter().cloned())
            .chain(
                self.votes
                    .range((from, Round(0), VoteType::Prevote, None)..)
                    .flat_map(|(_, votes)| votes.values().map(|v| Message::Vote(*v))),
            )
            .collect()
    }

    /// Replaces the validator set (at a height where it changes).
    pub fn set_validators(&mut self, validators: ValidatorSet) {
        self.validators = validators;
    }

    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }

    /// Queues this node's own (height, round) for every peer, replacing an older one still
    /// queued.
    pub fn advertise(&mut self, height: Height, round: Round) {
        for peer in 0..self.peers.len() {
            if !self.peers[peer].vacant {
                self.advertise_one(peer, height, round);
            }
        }
    }

    /// Queues this node's (height, round) for one peer, replacing an older one still queued.
    pub fn advertise_one(&mut self, peer: usize, height: Height, round: Round) {
        let queue = &mut self.peers[peer].queue;
        queue.retain(|m| !matches!(m, Message::Status { .. }));
        queue.push_front(Message::Status { height, round });
    }

    /// The position a peer advertised.
    pub fn position(&self, peer: usize) -> (Height, Round) {
        self.peers[peer].position
    }

    /// Whether the router holds this vote with this very signature: such a copy was verified
    /// when it first arrived, so a receiver need not check it again.
    pub fn holds(&self, vote: &SignedVote) -> bool {
        self.votes
            .get(&topic(vote))
            .and_then(|votes| votes.get(&vote.message.validator))
            .is_some_and(|held| held.signature == vote.signature)
    }

    /// A peer advertised its consensus position.
    pub fn on_status(&mut self, peer: usize, height: Height, round: Round) {
        self.peers[peer].position = self.peers[peer].position.max((height, round));
    }

    /// A message this node created: relay it to every peer.
    pub fn publish(&mut self, message: Message) -> Vec<Message> {
        self.handle(None, message)
    }

    /// A verified message from `peer`. Returns what is new for local consensus (bundles and
    /// certificates come back as their votes); relays it to the other peers.
    pub fn on_verified(&mut self, peer: usize, message: Message) -> Vec<Message> {
        self.handle(Some(peer), message)
    }

    fn handle(&mut self, from: Option<usize>, message: Message) -> Vec<Message> {
        let votes: Vec<SignedVote> = match &message {
            Message::Vote(vote) => vec![*vote],
            Message::Bundle(bundle) => bundle.votes().collect(),
            Message::Commit(certificate) => certificate.precommits.clone(),
            Message::Status { .. } | Message::Proposal { .. } => {
                return self.handle_other(from, message);
            }
        };
        let mut fresh = Vec::new();
        for vote in votes {
            let new = self.handle_vote(vote);
            // The peer has this vote; remember it only for votes the router keeps, so that a
            // flooding signer cannot grow the peer's record either.
            if let Some(peer) = from
                && (new || self.is_handled(&vote))
            {
                self.peers[peer].known.insert(key(&vote));
            }
            if new {
                fresh.push(vote);
            } else {
                self.counters.duplicates_received += 1;
            }
        }
        let relay = match self.mode {
            // Plain relays what it got, as it got it, if any of it was new.
            GossipMode::Plain if !fresh.is_empty() => vec![message],
            GossipMode::Plain => Vec::new(),
            // Semantic relays the new votes; dequeue decides how they travel.
            GossipMode::Semantic => fresh.iter().map(|v| Message::Vote(*v)).collect(),
        };
        for message in relay {
            self.enqueue_except(from, message);
        }
        fresh.into_iter().map(Message::Vote).collect()
    }

    fn handle_other(&mut self, from: Option<usize>, message: Message) -> Vec<Message> {
        let Message::Proposal { proposal, .. } = &message else {
            if let (Message::Status { height, round }, Some(peer)) = (&message, from) {
                self.on_status(peer, *height, *round);
            }
            return Vec::new();
        };
        let height = proposal.message.height;
        if height.0 + HEIGHTS_KEPT < self.highest.0 {
            return Vec::new();
        }
        self.raise_highest(height);
        let seen = self.proposals.entry(height).or_default();
        // The block is bound to the signed value (checked before the router), so the signed
        // proposal alone identifies the message.
        let mut id = blake3::Hasher::new();
        id.update(&proposal.message.sign_bytes(""));
        id.update(&proposal.signature.0);
        let id = *id.finalize().as_bytes();
        if seen.len() >= PROPOSALS_PER_HEIGHT_MAX || !seen.insert(id) {
            self.counters.duplicates_received += 1;
            return Vec::new();
        }
        let held = self.held_proposals.entry(height).or_default();
        if held.len() >= PROPOSALS_HELD_PER_HEIGHT {
            held.pop_front();
        }
        held.push_back(message.clone());
        self.enqueue_except(from, message.clone());
        vec![message]
    }

    /// Moves the window of kept heights up to `height`, forgetting what falls below it.
    fn raise_highest(&mut self, height: Height) {
        if height <= self.highest {
            return;
        }
        self.highest = height;
        let floor = Height(height.0.saturating_sub(HEIGHTS_KEPT));
        self.votes.retain(|topic, _| topic.0 >= floor);
        self.per_signer.retain(|(h, _), _| *h >= floor);
        self.proposals.retain(|h, _| *h >= floor);
        self.held_proposals.retain(|h, _| *h >= floor);
        for peer in &mut self.peers {
            peer.known.retain(|key| key.0 >= floor);
            peer.quorums_sent.retain(|topic| topic.0 >= floor);
        }
    }

    /// Records a vote; false if the same vote was handled before, or if it is too old or its
    /// signer is over its bound.
    fn handle_vote(&mut self, vote: SignedVote) -> bool {
        let height = vote.message.height;
        if height.0 + HEIGHTS_KEPT < self.highest.0 {
            return false;
        }
        self.raise_highest(height);
        let topic = topic(&vote);
        let validator = vote.message.validator;
        if self
            .votes
            .get(&topic)
            .is_some_and(|votes| votes.contains_key(&validator))
        {
            return false;
        }
        // Checked before any entry is made, so an over-bound signer adds nothing at all.
        let signed = self.per_signer.entry((height, validator)).or_insert(0);
        if *signed >= VOTES_PER_SIGNER_HEIGHT_MAX {
            return false;
        }
        *signed += 1;
        self.votes.entry(topic).or_default().insert(validator, vote);
        true
    }

    fn is_handled(&self, vote: &SignedVote) -> bool {
        self.votes
            .get(&topic(vote))
            .is_some_and(|votes| votes.contains_key(&vote.message.validator))
    }

    fn enqueue_except(&mut self, from: Option<usize>, message: Message) {
        for (index, peer) in self.peers.iter_mut().enumerate() {
            if Some(index) == from || peer.vacant {
                continue;
            }
            if peer.queue.len() >= PEER_QUEUE_MAX {
                peer.queue.pop_front();
                self.counters.queue_overflows += 1;
            }
            peer.queue.push_back(message.clone());
        }
    }

    fn quorum(&self, topic: &Topic) -> Option<Vec<SignedVote>> {
        let votes = self.votes.get(topic)?;
        let power: u64 = votes
            .keys()
            .filter_map(|validator| self.validators.power(validator))
            .sum();
        self.validators
            .is_quorum(power)
            .then(|| votes.values().copied().collect())
    }

    /// What to send `peer` now: its queue, after the mode's rules.
    pub fn drain(&mut self, peer: usize) -> Vec<Message> {
        let queue = std::mem::take(&mut self.peers[peer].queue);
        if self.mode == GossipMode::Plain {
            return queue.into();
        }
        let mut out = Vec::new();
        let mut groups: BTreeMap<Topic, Vec<SignedVote>> = BTreeMap::new();
        for message in queue {
            let Message::Vote(vote) = message else {
                out.push(message);
                continue;
            };
            let state = &self.peers[peer];
            if state.known.contains(&key(&vote)) || vote.message.height < state.position.0 {
                self.counters.votes_filtered += 1;
                continue;
            }
            groups.entry(topic(&vote)).or_default().push(vote);
        }
        for (topic, votes) in groups {
            let (votes, as_quorum) = match self.quorum(&topic) {
                // One bundle of the quorum, once, replaces the votes one by one.
                Some(_) if self.peers[peer].quorums_sent.contains(&topic) => {
                    self.counters.votes_filtered += votes.len() as u64;
                    continue;
                }
                Some(quorum) => {
                    self.counters.votes_filtered += votes.len() as u64;
                    (quorum, true)
                }
                None => (votes, false),
            };
            let state = &mut self.peers[peer];
            if as_quorum {
                state.quorums_sent.insert(topic);
            }
            let votes: Vec<SignedVote> = votes
                .into_iter()
                .filter(|vote| state.known.insert(key(vote)))
                .collect();
            if votes.is_empty() {
                continue;
            }
            if votes.len() > 1 {
                self.counters.bundles_sent += 1;
                self.counters.votes_in_bundles += votes.len() as u64;
            }
            let bundle = VoteBundle::from_votes(&votes).expect("one topic, at least one vote");
            out.push(if votes.len() == 1 {
                Message::Vote(votes[0])
            } else {
                Message::Bundle(bundle)
            });
        }
        out
    }

    pub fn queued(&self, peer: usize) -> usize {
        self.peers[peer].queue.len()
    }
}
