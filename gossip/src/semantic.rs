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
//!
//! Once the node has advertised its height, the router keeps the heights from
//! [`HEIGHTS_KEPT`] below it to [`FUTURE_HEIGHTS_MAX`] above it. A peer's vote or proposal
//! beyond that window is refused, so a signer cannot make the router forget the height in
//! progress by signing for a far one; [`Routed`] says when the sender is to blame.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use weft_consensus::{
    Height, HeightSets, Round, SignedVote, ValidatorId, ValidatorSet, ValueId, VoteType,
};

use crate::wire::{Message, VoteBundle};

/// Messages waiting for one peer; past it the oldest are dropped (the peer is too slow).
pub const PEER_QUEUE_MAX: usize = 8_192;
/// Bytes waiting for one peer (blocks counted whole); past it the oldest are dropped.
pub const PEER_QUEUE_BYTES_MAX: usize = 64 << 20;
/// Heights of state kept below the highest seen (and below the node's own height, once it
/// advertised one): older votes are forgotten.
pub const HEIGHTS_KEPT: u64 = 2;
/// Heights above the node's advertised height whose votes and proposals from peers are kept;
/// beyond it they are refused. Consensus buffers 2 heights ahead and the node syncs when peers
/// advertise more than 2 ahead, so 4 covers both with a margin.
pub const FUTURE_HEIGHTS_MAX: u64 = 4;
/// Most votes handled per (height, validator): an honest one signs 2 per round, so this allows
/// 256 rounds; a byzantine one cannot grow the router's state past it.
pub const VOTES_PER_SIGNER_HEIGHT_MAX: u32 = 512;
/// Most distinct proposals handled per height (an equivocating proposer signs any number).
pub const PROPOSALS_PER_HEIGHT_MAX: usize = 256;
/// Proposals per height kept whole (with their blocks) for peers that connect later.
pub const PROPOSALS_HELD_PER_HEIGHT: usize = 4;

/// What became of a peer's message: what is new for the node, and how many of its votes or
/// proposals no honest router would have sent (the transport charges the peer for these).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routed {
    pub fresh: Vec<Message>,
    /// Votes or proposals beyond both this node's window and the window of the height the
    /// peer advertised: an honest peer relays only what its own window holds.
    pub far_future: u32,
    /// Votes past [`VOTES_PER_SIGNER_HEIGHT_MAX`] that this peer sent for one (height, signer):
    /// an honest router relays no more than it keeps.
    pub flooded: u32,
}

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
    /// Bytes of `queue`, as [`queued_bytes`] counts them.
    queue_bytes: usize,
    /// Votes this peer sent per (height, signer), not counting repeats of ones it is known to
    /// hold; bounded by the kept heights and the validator set.
    sent_per_signer: BTreeMap<(Height, ValidatorId), u32>,
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
    /// The validator set of each height, for quorum counts.
    validators: HeightSets,
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
    /// The height the node last advertised; `None` until it does (no window then).
    own_height: Option<Height>,
    queue_max: usize,
    queue_bytes_max: usize,
    pub counters: RouterCounters,
}

/// Bytes a queued message stands for: the block whole, a bound for the rest.
fn queued_bytes(message: &Message) -> usize {
    const SIGNED_VOTE_BYTES: usize = 160;
    match message {
        Message::Proposal { block, .. } => 256 + block.len(),
        Message::Bundle(bundle) => 64 + 96 * bundle.signers.len(),
        Message::Commit(certificate) => 64 + SIGNED_VOTE_BYTES * certificate.precommits.len(),
        Message::Vote(_) => SIGNED_VOTE_BYTES,
        Message::Status { .. } => 32,
    }
}

impl Router {
    pub fn new(mode: GossipMode, validators: ValidatorSet, peers: usize) -> Self {
        Router {
            mode,
            validators: HeightSets::single(validators),
            peers: vec![Peer::default(); peers],
            votes: BTreeMap::new(),
            per_signer: BTreeMap::new(),
            proposals: BTreeMap::new(),
            held_proposals: BTreeMap::new(),
            highest: Height(0),
            own_height: None,
            queue_max: PEER_QUEUE_MAX,
            queue_bytes_max: PEER_QUEUE_BYTES_MAX,
            counters: RouterCounters::default(),
        }
    }

    /// Bounds each peer's queue to `messages` and `bytes` (at least one message each); past
    /// either, the oldest are dropped. Defaults: [`PEER_QUEUE_MAX`], [`PEER_QUEUE_BYTES_MAX`].
    pub fn set_queue_max(&mut self, messages: usize, bytes: usize) {
        self.queue_max = messages.max(1);
        self.queue_bytes_max = bytes;
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
        for message in held {
            self.push(index, message);
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
    pub fn set_validators(&mut self, validators: HeightSets) {
        self.validators = validators;
    }

    pub fn validators(&self) -> &HeightSets {
        &self.validators
    }

    /// Queues this node's own (height, round) for every peer, replacing an older one still
    /// queued. The height also anchors the window of kept heights.
    pub fn advertise(&mut self, height: Height, round: Round) {
        if self.own_height != Some(height) {
            self.own_height = Some(height);
            self.prune();
        }
        for peer in 0..self.peers.len() {
            if !self.peers[peer].vacant {
                self.advertise_one(peer, height, round);
            }
        }
    }

    /// Queues this node's (height, round) for one peer, replacing an older one still queued.
    pub fn advertise_one(&mut self, peer: usize, height: Height, round: Round) {
        let state = &mut self.peers[peer];
        let before = state.queue.len();
        state.queue.retain(|m| !matches!(m, Message::Status { .. }));
        let status = Message::Status { height, round };
        state.queue_bytes -= (before - state.queue.len()) * queued_bytes(&status);
        state.queue_bytes += queued_bytes(&status);
        state.queue.push_front(status);
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
        let before = self.peers[peer].position.0;
        self.peers[peer].position = self.peers[peer].position.max((height, round));
        // A peer that jumps past the window its last height gave it (it came back from block
        // sync) dropped what we sent it for the heights beyond that window, and those may be
        // the votes of the round its validators are waiting in: send it again what we hold of
        // its new height. Rare (a sync of more than the window), and bounded by what is held.
        if height.0 > before.0.saturating_add(FUTURE_HEIGHTS_MAX) {
            // What we sent it of that height is not what it holds: forget it, so the drain's
            // rules (known votes, quorums sent once) let the copies through.
            let state = &mut self.peers[peer];
            state.known.retain(|k| k.0 != height);
            state.quorums_sent.retain(|t| t.0 != height);
            let held: Vec<Message> = self
                .held_proposals
                .get(&height)
                .into_iter()
                .flatten()
                .cloned()
                .chain(
                    self.votes
                        .range((height, Round(0), VoteType::Prevote, None)..)
                        .take_while(|(topic, _)| topic.0 == height)
                        .flat_map(|(_, votes)| votes.values().map(|v| Message::Vote(*v))),
                )
                .collect();
            for message in held {
                self.push(peer, message);
            }
        }
    }

    /// A message this node created: relay it to every peer.
    pub fn publish(&mut self, message: Message) -> Vec<Message> {
        self.handle(None, message).fresh
    }

    /// A verified message from `peer`. Returns what is new for local consensus (bundles and
    /// certificates come back as their votes); relays it to the other peers.
    pub fn on_verified(&mut self, peer: usize, message: Message) -> Vec<Message> {
        self.handle(Some(peer), message).fresh
    }

    /// [`Router::on_verified`], also counting what the peer is to blame for.
    pub fn on_verified_checked(&mut self, peer: usize, message: Message) -> Routed {
        self.handle(Some(peer), message)
    }

    /// Whether a peer's message for `height` lies past the window: beyond this node's
    /// ceiling; and, if so, whether also beyond the one the peer's own advertised height gives.
    fn beyond_window(&self, from: Option<usize>, height: Height) -> (bool, bool) {
        let (Some(peer), Some(own)) = (from, self.own_height) else {
            return (false, false);
        };
        let ceiling = |h: Height| h.0.saturating_add(FUTURE_HEIGHTS_MAX);
        let beyond_ours = height.0 > ceiling(own);
        (
            beyond_ours,
            beyond_ours && height.0 > ceiling(self.peers[peer].position.0),
        )
    }

    fn handle(&mut self, from: Option<usize>, message: Message) -> Routed {
        let votes: Vec<SignedVote> = match &message {
            Message::Vote(vote) => vec![*vote],
            Message::Bundle(bundle) => bundle.votes().collect(),
            Message::Commit(certificate) => certificate.precommits.clone(),
            Message::Status { .. } | Message::Proposal { .. } => {
                return self.handle_other(from, message);
            }
        };
        let mut routed = Routed::default();
        let mut fresh = Vec::new();
        for vote in votes {
            let (beyond, blamed) = self.beyond_window(from, vote.message.height);
            if beyond {
                routed.far_future += u32::from(blamed);
                continue;
            }
            if let Some(peer) = from
                && self.count_sent(peer, &vote)
            {
                routed.flooded += 1;
            }
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
        routed.fresh = fresh.into_iter().map(Message::Vote).collect();
        routed
    }

    /// Counts a vote from `peer` that it is not known to hold for its (height, signer); true if
    /// that puts the peer past the per-signer bound. Stale votes are not counted, so the record
    /// stays within the kept heights.
    fn count_sent(&mut self, peer: usize, vote: &SignedVote) -> bool {
        let height = vote.message.height;
        if height < self.floor() || self.peers[peer].known.contains(&key(vote)) {
            return false;
        }
        let sent = self.peers[peer]
            .sent_per_signer
            .entry((height, vote.message.validator))
            .or_insert(0);
        *sent = sent.saturating_add(1);
        *sent > VOTES_PER_SIGNER_HEIGHT_MAX
    }

    fn handle_other(&mut self, from: Option<usize>, message: Message) -> Routed {
        let Message::Proposal { proposal, .. } = &message else {
            if let (Message::Status { height, round }, Some(peer)) = (&message, from) {
                self.on_status(peer, *height, *round);
            }
            return Routed::default();
        };
        let height = proposal.message.height;
        let (beyond, blamed) = self.beyond_window(from, height);
        if beyond {
            return Routed {
                far_future: u32::from(blamed),
                ..Routed::default()
            };
        }
        if height < self.floor() {
            return Routed::default();
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
            return Routed::default();
        }
        let held = self.held_proposals.entry(height).or_default();
        if held.len() >= PROPOSALS_HELD_PER_HEIGHT {
            held.pop_front();
        }
        held.push_back(message.clone());
        self.enqueue_except(from, message.clone());
        Routed {
            fresh: vec![message],
            ..Routed::default()
        }
    }

    /// The lowest height kept: [`HEIGHTS_KEPT`] below the highest seen, or below the node's
    /// own height if that is lower (so a signer running ahead cannot push the height in
    /// progress out).
    fn floor(&self) -> Height {
        let top = self
            .own_height
            .map_or(self.highest, |own| own.min(self.highest));
        Height(top.0.saturating_sub(HEIGHTS_KEPT))
    }

    /// Moves the window of kept heights up to `height`, forgetting what falls below it.
    fn raise_highest(&mut self, height: Height) {
        if height <= self.highest {
            return;
        }
        self.highest = height;
        self.prune();
    }

    /// Forgets everything below the floor.
    fn prune(&mut self) {
        let floor = self.floor();
        self.votes.retain(|topic, _| topic.0 >= floor);
        self.per_signer.retain(|(h, _), _| *h >= floor);
        self.proposals.retain(|h, _| *h >= floor);
        self.held_proposals.retain(|h, _| *h >= floor);
        for peer in &mut self.peers {
            peer.known.retain(|key| key.0 >= floor);
            peer.quorums_sent.retain(|topic| topic.0 >= floor);
            peer.sent_per_signer.retain(|(h, _), _| *h >= floor);
        }
    }

    /// Records a vote; false if the same vote was handled before, or if it is too old or its
    /// signer is over its bound.
    fn handle_vote(&mut self, vote: SignedVote) -> bool {
        let height = vote.message.height;
        if height < self.floor() {
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
        for index in 0..self.peers.len() {
            if Some(index) == from || self.peers[index].vacant {
                continue;
            }
            self.push(index, message.clone());
        }
    }

    /// Queues a message for one peer, dropping the oldest while either bound is exceeded.
    fn push(&mut self, index: usize, message: Message) {
        let bytes = queued_bytes(&message);
        let peer = &mut self.peers[index];
        while !peer.queue.is_empty()
            && (peer.queue.len() >= self.queue_max
                || peer.queue_bytes + bytes > self.queue_bytes_max)
        {
            if let Some(dropped) = peer.queue.pop_front() {
                peer.queue_bytes -= queued_bytes(&dropped);
            }
            self.counters.queue_overflows += 1;
        }
        peer.queue_bytes += bytes;
        peer.queue.push_back(message);
    }

    fn quorum(&self, topic: &Topic) -> Option<Vec<SignedVote>> {
        let votes = self.votes.get(topic)?;
        let validators = self.validators.at(topic.0)?;
        let power: u64 = votes
            .keys()
            .filter_map(|validator| validators.power(validator))
            .sum();
        validators
            .is_quorum(power)
            .then(|| votes.values().copied().collect())
    }

    /// What to send `peer` now: its queue, after the mode's rules.
    pub fn drain(&mut self, peer: usize) -> Vec<Message> {
        let queue = std::mem::take(&mut self.peers[peer].queue);
        self.peers[peer].queue_bytes = 0;
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

    /// Bytes waiting for `peer`, blocks counted whole.
    pub fn queued_bytes(&self, peer: usize) -> usize {
        self.peers[peer].queue_bytes
    }
}
