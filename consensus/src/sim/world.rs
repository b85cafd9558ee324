//! The simulated world: nodes running machines, a seeded network, virtual time, and the
//! online checkers. Single-threaded; an event queue ordered by (time, sequence number).
//!
//! A node runs its machine's effects as the real node does: it records `Persist` before the
//! signature that follows, signs, gossips, hands its own message back, answers `RequestValue`,
//! schedules timeouts, and logs every input to its WAL before handing it over.
//!
//! Gossip gives Tendermint's assumption about the network: a message an honest node has
//! received (its own included) reaches every other node; before GST it may be dropped or cut off
//! by a partition, and is then retransmitted after GST. Nodes catch up the rest by block sync: a
//! node at a height that an honest node decided gets that decision's commit certificate after
//! `block_sync_delay_ms`.
//!
//! The WAL follows `wal.rs`'s contract. A node logs each input before handing it over, and a
//! StartHeight begins a new log that keeps the already-logged messages for this height and the
//! next ones (the machine holds those and replays them on StartHeight, so a replay must see them
//! too). A message the machine would not take (`Machine::keeps_height`: too many heights ahead,
//! or the future buffer is full) is neither logged nor handed over: a replay at a later height
//! would take it and could then pick it as the round's first proposal, signing a different
//! prevote than before the crash. It is sent again when the node gets there.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, DefaultHasher};

use crate::machine::{Effect, FUTURE_HEIGHTS_MAX, Input, LastSigned, Machine, Validity};
use crate::types::{
    CommitCertificate, Evidence, Height, Proposal, Round, Signature, Signed, SignedProposal,
    SignedVote, Timeout, TimeoutKind, ValidatorId, ValueId, Vote, VoteType,
};
use crate::validators::{Validator, ValidatorSet};
use crate::wal::{WalEntry, replay};

use super::report::{Counts, Decision, EvidenceKind, EvidenceSeen, Report, Violation};
use super::rng::SimRng;
use super::scenario::{Behaviour, Misbehaviour, NodeSpec, Scenario};

/// The chain id in every signature.
pub const CHAIN_ID: &str = "weft-sim";
/// Pending events per ordered pair of nodes; past it the run stops with a violation.
const PENDING_EVENTS_PER_NODE_PAIR: usize = 4_096;
/// Inputs one node may handle for one event (its own messages handed back, values, heights).
const LOCAL_INPUTS_PER_EVENT_MAX: usize = 65_536;
/// Entries in one node's WAL (one height's inputs and the messages it holds for the next two).
const WAL_ENTRIES_MAX: usize = 1 << 20;
/// The run's random stream, apart from the one that generated the scenario.
const RUN_STREAM: u64 = 0x0B5E_55ED_C0FF_EE00;
/// Value variants: a node's own value, a lying proposer's other valid value, its invalid one,
/// and an equivocator's junk.
const VARIANT_OWN: u8 = 0;
const VARIANT_ALTERNATIVE: u8 = 1;
const VARIANT_INVALID: u8 = 2;
const VARIANT_JUNK: u8 = 3;

/// Lookups only, never iterated: a fixed hasher keeps the crate free of OS randomness.
type FixedHashMap<K, V> = HashMap<K, V, BuildHasherDefault<DefaultHasher>>;

fn bit(node: usize) -> u128 {
    1u128 << node
}

/// The nodes of a bit set, lowest first.
fn nodes_in(mut mask: u128) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let node = (mask != 0).then(|| mask.trailing_zeros() as usize)?;
        mask &= mask - 1;
        Some(node)
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Message {
    Vote(SignedVote),
    Proposal(SignedProposal),
}

impl Message {
    fn height(&self) -> Height {
        match self {
            Message::Vote(vote) => vote.message.height,
            Message::Proposal(proposal) => proposal.message.height,
        }
    }
}

/// A message of one height and who has it, as bit sets over nodes.
struct Record {
    message: Message,
    /// A delivery is pending or done.
    sent: u128,
    /// Delivered at least once (an honest node relays on the first).
    seen: u128,
    /// Handed to the node's machine at a height where it keeps it (and so logged in its WAL).
    has: u128,
    /// A retransmission after GST is pending.
    retry: u128,
    /// Some honest node has it, so gossip (and catch-up) carries it.
    pooled: bool,
}

#[derive(Clone, Copy)]
struct ValueInfo {
    valid: bool,
    proposed: bool,
}

/// Everything kept per height; dropped once every node is past the height.
#[derive(Default)]
struct HeightState {
    records: Vec<Record>,
    index: FixedHashMap<Message, u32>,
    values: BTreeMap<ValueId, ValueInfo>,
    proposed: Vec<ValueId>,
    /// The double-sign ledger: what each honest node actually sent.
    signed_votes: BTreeMap<(usize, Round, VoteType), Vote>,
    signed_proposals: BTreeMap<(usize, Round), Proposal>,
    /// The first honest decision, and its certificate for block sync.
    decided: Option<(usize, ValueId)>,
    certificate: Option<CommitCertificate>,
    agreement_reported: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct MessageRef {
    height: Height,
    index: u32,
}

#[derive(Clone, Copy, Debug)]
enum EventKind {
    Deliver {
        to: usize,
        message: MessageRef,
        retry: bool,
    },
    Timeout {
        node: usize,
        incarnation: u32,
        timeout: Timeout,
    },
    BlockSync {
        node: usize,
        height: Height,
    },
    Crash {
        crash: usize,
    },
    /// An armed crash that found no signature to interrupt within its `down_ms`.
    ForceCrash {
        crash: usize,
    },
    Restart {
        node: usize,
    },
    Stabilized,
}

struct Event {
    at_ms: u64,
    seq: u64,
    kind: EventKind,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.seq) == (other.at_ms, other.seq)
    }
}

impl Eq for Event {}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Event {
    /// Reversed: the binary heap pops the earliest (time, sequence number).
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_ms, other.seq).cmp(&(self.at_ms, self.seq))
    }
}

struct Node {
    spec: NodeSpec,
    honest: bool,
    id: ValidatorId,
    machine: Option<Machine>,
    crashed: bool,
    /// Bumped at each crash: timers of an earlier life do not fire.
    incarnation: u32,
    /// Durable across crashes: the WAL and the double-sign guard's last record.
    wal: Vec<WalEntry>,
    persisted: Option<LastSigned>,
    local: VecDeque<Input>,
    /// The height of the last StartHeight in its WAL.
    height: Height,
    /// The highest height it has queued a StartHeight for.
    started: Height,
    decided: BTreeMap<Height, ValueId>,
    /// An armed crash: (effects after the batch's first Persist, index in the scenario).
    crash_armed: Option<(u32, usize)>,
}

impl Node {
    fn misbehaviour(&self) -> Misbehaviour {
        match self.spec.behaviour {
            Behaviour::Byzantine(acts) => acts,
            _ => Misbehaviour::default(),
        }
    }
}

pub(crate) struct Sim<'a> {
    scenario: &'a Scenario,
    rng: SimRng,
    now_ms: u64,
    seq: u64,
    queue: BinaryHeap<Event>,
    pending_max: usize,
    nodes: Vec<Node>,
    secrets: Vec<[u8; 32]>,
    validator_of: BTreeMap<ValidatorId, usize>,
    sets: Vec<ValidatorSet>,
    heights: BTreeMap<Height, HeightState>,
    /// Every node is at or above this height: nothing below it is kept.
    pruned_below: Height,
    /// Nodes that run a machine (not silent), and those crashed now.
    receivers: u128,
    crashed: u128,
    honest_total: usize,
    honest_done: usize,
    liveness_expected: bool,
    deadline_ms: Option<u64>,
    end_ms: u64,
    stopped: bool,
    decisions: Vec<Decision>,
    evidence: BTreeSet<EvidenceSeen>,
    violations: Vec<Violation>,
    counts: Counts,
}

fn validator_id(seed: u64, index: usize) -> ValidatorId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"weft-sim/validator");
    hasher.update(&seed.to_le_bytes());
    hasher.update(&(index as u64).to_le_bytes());
    ValidatorId(*hasher.finalize().as_bytes())
}

impl<'a> Sim<'a> {
    pub(crate) fn new(scenario: &'a Scenario) -> Self {
        let ids: Vec<ValidatorId> = (0..scenario.powers.len())
            .map(|index| validator_id(scenario.seed, index))
            .collect();
        let secrets = ids
            .iter()
            .map(|id| *blake3::keyed_hash(&id.0, b"weft-sim/secret").as_bytes())
            .collect();
        let set = ValidatorSet::new(
            ids.iter()
                .zip(&scenario.powers)
                .map(|(&id, &power)| Validator { id, power }),
        )
        .expect("a validated scenario has a valid set");
        let nodes: Vec<Node> = scenario
            .nodes
            .iter()
            .enumerate()
            .map(|(index, spec)| Node {
                spec: *spec,
                honest: scenario.is_honest(index),
                id: ids[spec.validator],
                machine: None,
                crashed: false,
                incarnation: 0,
                wal: Vec::new(),
                persisted: None,
                local: VecDeque::new(),
                height: Height(0),
                started: Height(0),
                decided: BTreeMap::new(),
                crash_armed: None,
            })
            .collect();
        let receivers = (0..nodes.len())
            .filter(|&n| nodes[n].spec.behaviour != Behaviour::Silent)
            .fold(0, |mask, n| mask | bit(n));
        let honest_total = nodes.iter().filter(|n| n.honest).count();
        Sim {
            scenario,
            rng: SimRng::new(scenario.seed ^ RUN_STREAM),
            now_ms: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            pending_max: PENDING_EVENTS_PER_NODE_PAIR * nodes.len() * nodes.len(),
            nodes,
            secrets,
            validator_of: ids.iter().enumerate().map(|(i, id)| (*id, i)).collect(),
            sets: vec![set],
            heights: BTreeMap::new(),
            pruned_below: Height(0),
            receivers,
            crashed: 0,
            honest_total,
            honest_done: 0,
            liveness_expected: scenario.expects_liveness(),
            deadline_ms: None,
            end_ms: scenario.time_limit_ms,
            stopped: false,
            decisions: Vec::new(),
            evidence: BTreeSet::new(),
            violations: Vec::new(),
            counts: Counts::default(),
        }
    }

    pub(crate) fn run(mut self) -> Report {
        self.start();
        while !self.stopped && self.honest_done < self.honest_total {
            let Some(event) = self.queue.pop() else {
                break;
            };
            if event.at_ms > self.end_ms {
                break;
            }
            self.now_ms = event.at_ms;
            self.counts.events += 1;
            self.handle_event(event.kind);
            if self.queue.len() > self.pending_max {
                self.stop(Violation::LimitExceeded {
                    what: "pending events",
                });
            }
        }
        self.finish()
    }

    fn start(&mut self) {
        for (index, crash) in self.scenario.crashes.iter().enumerate() {
            self.schedule(crash.at_ms, EventKind::Crash { crash: index });
        }
        if self.liveness_expected {
            self.schedule(self.scenario.stable_from_ms(), EventKind::Stabilized);
        }
        for node in nodes_in(self.receivers) {
            let set = self.validator_set(Height(1));
            self.nodes[node].machine = Some(Machine::new(Some(self.nodes[node].id), set));
            self.queue_start_height(node, Height(1));
            self.process(node);
        }
    }

    fn stop(&mut self, violation: Violation) {
        self.violations.push(violation);
        self.stopped = true;
    }

    fn schedule(&mut self, at_ms: u64, kind: EventKind) {
        self.seq += 1;
        self.queue.push(Event {
            at_ms,
            seq: self.seq,
            kind,
        });
    }

    fn validator_set(&mut self, height: Height) -> ValidatorSet {
        let wanted = height.0.max(1) as usize;
        while self.sets.len() < wanted {
            let next = self.sets[self.sets.len() - 1].next_height();
            self.sets.push(next);
        }
        self.sets[wanted - 1].clone()
    }

    fn handle_event(&mut self, kind: EventKind) {
        match kind {
            EventKind::Deliver { to, message, retry } => self.on_deliver(to, message, retry),
            EventKind::Timeout {
                node,
                incarnation,
                timeout,
            } => {
                let current = &self.nodes[node];
                if current.incarnation == incarnation && current.machine.is_some() {
                    self.counts.timeouts_fired += 1;
                    self.nodes[node]
                        .local
                        .push_back(Input::TimeoutElapsed(timeout));
                    self.process(node);
                }
            }
            EventKind::BlockSync { node, height } => self.on_block_sync(node, height),
            EventKind::Crash { crash: index } => {
                let crash = self.scenario.crashes[index];
                if self.nodes[crash.node].crashed {
                    return;
                }
                match crash.effects_before_crash {
                    Some(effects) => {
                        self.nodes[crash.node].crash_armed = Some((effects, index));
                        let at_ms = crash.at_ms + crash.down_ms;
                        self.schedule(at_ms, EventKind::ForceCrash { crash: index });
                    }
                    None => self.crash_now(crash.node, index),
                }
            }
            EventKind::ForceCrash { crash } => {
                let node = self.scenario.crashes[crash].node;
                if self.nodes[node]
                    .crash_armed
                    .is_some_and(|(_, armed)| armed == crash)
                {
                    self.crash_now(node, crash);
                }
            }
            EventKind::Restart { node } => self.restart(node),
            EventKind::Stabilized => self.on_stabilized(),
        }
    }

    // ---- Running a node ------------------------------------------------------------------

    /// Hands the node's queued inputs to its machine, logging each first, and runs the effects.
    fn process(&mut self, node: usize) {
        let mut handled = 0;
        while let Some(input) = self.nodes[node].local.pop_front() {
            handled += 1;
            if handled > LOCAL_INPUTS_PER_EVENT_MAX {
                return self.stop(Violation::LimitExceeded {
                    what: "inputs per event",
                });
            }
            let started = match &input {
                Input::StartHeight { height, .. } => Some(*height),
                _ => None,
            };
            if !self.log(node, &input) {
                return;
            }
            let amnesia = self.nodes[node].misbehaviour().amnesia;
            let Some(machine) = self.nodes[node].machine.as_mut() else {
                return;
            };
            if amnesia && matches!(input, Input::Proposal { .. }) {
                machine.forget_lock();
            }
            let effects = machine.handle(input);
            self.run_effects(node, effects);
            if let Some(height) = started
                && self.nodes[node].machine.is_some()
            {
                self.after_start_height(node, height);
            }
        }
    }

    /// Appends to the WAL; a StartHeight begins a new height's log, keeping the messages held
    /// for it and later heights. Returns false if the WAL outgrew its bound.
    fn log(&mut self, node: usize, input: &Input) -> bool {
        let state = &mut self.nodes[node];
        if let Input::StartHeight { height, .. } = input {
            let height = *height;
            state.wal.retain(|entry| {
                !matches!(entry.0, Input::StartHeight { .. })
                    && entry.height().is_some_and(|h| h >= height)
            });
            state.wal.insert(0, WalEntry(input.clone()));
            state.height = height;
        } else {
            state.wal.push(WalEntry(input.clone()));
        }
        if state.wal.len() > WAL_ENTRIES_MAX {
            self.stop(Violation::LimitExceeded {
                what: "WAL entries",
            });
            return false;
        }
        true
    }

    /// Where an armed crash interrupts this batch: `after` effects past its first Persist.
    fn crash_point(&self, node: usize, effects: &[Effect]) -> Option<(usize, usize)> {
        let (after, crash) = self.nodes[node].crash_armed?;
        let persist = effects
            .iter()
            .position(|e| matches!(e, Effect::Persist(_)))?;
        Some(((persist + after as usize).min(effects.len()), crash))
    }

    fn run_effects(&mut self, node: usize, effects: Vec<Effect>) {
        let crash_point = self.crash_point(node, &effects);
        for (index, effect) in effects.into_iter().enumerate() {
            if let Some((point, crash)) = crash_point
                && index == point
            {
                if matches!(effect, Effect::SignVote(_) | Effect::SignProposal(_)) {
                    self.counts.crashes_between_persist_and_sign += 1;
                }
                return self.crash_now(node, crash);
            }
            match effect {
                Effect::Persist(record) => self.nodes[node].persisted = Some(record),
                Effect::SignVote(vote) => self.sign_vote(node, vote),
                Effect::SignProposal(proposal) => self.sign_proposal(node, proposal),
                Effect::ScheduleTimeout {
                    timeout,
                    duration_ms,
                } => {
                    let incarnation = self.nodes[node].incarnation;
                    let at_ms = self.now_ms.saturating_add(duration_ms);
                    let kind = EventKind::Timeout {
                        node,
                        incarnation,
                        timeout,
                    };
                    self.schedule(at_ms, kind);
                }
                Effect::RequestValue { height, round, .. } => {
                    let value = self.new_value(node, height, round, VARIANT_OWN);
                    let input = Input::ProposeValue {
                        height,
                        round,
                        value,
                    };
                    self.nodes[node].local.push_back(input);
                }
                Effect::Decide { value, certificate } => self.decide(node, value, certificate),
                Effect::Evidence(evidence) => self.note_evidence(node, &evidence),
            }
        }
        if let Some((_, crash)) = crash_point {
            self.crash_now(node, crash);
        }
    }

    fn queue_start_height(&mut self, node: usize, height: Height) {
        if self.nodes[node].started >= height {
            return;
        }
        self.nodes[node].started = height;
        let input = Input::StartHeight {
            height,
            validators: self.validator_set(height),
            params: self.scenario.timeouts,
        };
        self.nodes[node].local.push_back(input);
    }

    fn after_start_height(&mut self, node: usize, height: Height) {
        self.catch_up_messages(node, height);
        self.schedule_block_sync(node, height);
        self.prune();
    }

    // ---- Crashes ---------------------------------------------------------------------------

    /// Loses the machine, its queued inputs and its timers; the WAL and the last Persist
    /// record survive. It restarts `down_ms` later.
    fn crash_now(&mut self, node: usize, crash: usize) {
        let state = &mut self.nodes[node];
        state.machine = None;
        state.crashed = true;
        state.local.clear();
        state.crash_armed = None;
        state.incarnation += 1;
        self.crashed |= bit(node);
        self.counts.crashes += 1;
        let restart_ms = self.now_ms + self.scenario.crashes[crash].down_ms;
        self.schedule(restart_ms, EventKind::Restart { node });
    }

    /// Rebuilds the machine from the WAL, re-runs the replay's effects (its signatures repeat
    /// what it signed; its timeouts are scheduled again), and catches up what it missed.
    fn restart(&mut self, node: usize) {
        if !self.nodes[node].crashed {
            return;
        }
        self.counts.restarts += 1;
        self.crashed &= !bit(node);
        let set = self.validator_set(Height(1));
        let state = &mut self.nodes[node];
        state.crashed = false;
        state.started = state.height;
        let entries = state.wal.clone();
        let (machine, effects) = replay(Some(state.id), set, entries);
        state.machine = Some(machine);
        self.run_effects(node, effects);
        if self.nodes[node].height == Height(0) {
            self.queue_start_height(node, Height(1));
        }
        self.process(node);
        let Some(height) = self.nodes[node].machine.as_ref().map(Machine::height) else {
            return;
        };
        for ahead in 0..=FUTURE_HEIGHTS_MAX {
            self.catch_up_messages(node, Height(height.0 + ahead));
        }
        self.schedule_block_sync(node, height);
    }

    // ---- Signing and sending ---------------------------------------------------------------

    fn signature(&self, validator: usize, sign_bytes: &[u8]) -> Signature {
        let mut out = [0u8; 64];
        if self.scenario.sign_messages {
            let mut hasher = blake3::Hasher::new_keyed(&self.secrets[validator]);
            hasher.update(sign_bytes);
            hasher.finalize_xof().fill(&mut out);
        }
        Signature(out)
    }

    /// Signs with the node's own key: the only key it holds.
    fn sign_as<T: Copy>(&self, node: usize, message: T, bytes: Vec<u8>) -> Signed<T> {
        Signed {
            message,
            signature: self.signature(self.nodes[node].spec.validator, &bytes),
        }
    }

    fn verify(&self, message: &Message) -> bool {
        if !self.scenario.sign_messages {
            return true;
        }
        let (id, bytes, signature) = match message {
            Message::Vote(v) => (
                v.message.validator,
                v.message.sign_bytes(CHAIN_ID),
                v.signature,
            ),
            Message::Proposal(p) => (
                p.message.proposer,
                p.message.sign_bytes(CHAIN_ID),
                p.signature,
            ),
        };
        self.validator_of
            .get(&id)
            .is_some_and(|&validator| self.signature(validator, &bytes) == signature)
    }

    fn check_persisted(&mut self, node: usize, record: LastSigned) {
        if self.nodes[node].persisted != Some(record) {
            self.violations.push(Violation::SignedWithoutPersist {
                node,
                what: format!("{record:?}"),
            });
        }
    }

    fn sign_vote(&mut self, node: usize, vote: Vote) {
        assert_eq!(
            vote.validator, self.nodes[node].id,
            "a node signs as itself"
        );
        self.check_persisted(node, LastSigned::Vote(vote));
        self.counts.votes_signed += 1;
        if self.nodes[node].honest {
            self.ledger_vote(node, vote);
        }
        let signed = self.sign_as(node, vote, vote.sign_bytes(CHAIN_ID));
        if self.nodes[node].misbehaviour().equivocate {
            self.equivocate(node, signed);
        } else {
            self.publish(node, Message::Vote(signed));
        }
        self.nodes[node].local.push_back(Input::Vote(signed));
    }

    fn sign_proposal(&mut self, node: usize, proposal: Proposal) {
        assert_eq!(
            proposal.proposer, self.nodes[node].id,
            "a node signs as itself"
        );
        self.check_persisted(node, LastSigned::Proposal(proposal));
        self.counts.proposals_signed += 1;
        if self.nodes[node].honest {
            self.ledger_proposal(node, proposal);
        }
        let signed = self.sign_as(node, proposal, proposal.sign_bytes(CHAIN_ID));
        if self.nodes[node].misbehaviour().lie_when_proposing {
            self.lie(node, signed);
        } else {
            self.publish(node, Message::Proposal(signed));
        }
        let validity = self.validity(&proposal);
        let input = Input::Proposal {
            proposal: signed,
            validity,
        };
        self.nodes[node].local.push_back(input);
    }

    /// Registers a message the node itself holds and gossips it to every other node.
    fn publish(&mut self, node: usize, message: Message) {
        let Some(reference) = self.register_own(node, message) else {
            return;
        };
        let honest = self.nodes[node].honest;
        self.gossip(node, reference, honest);
    }

    fn register_own(&mut self, node: usize, message: Message) -> Option<MessageRef> {
        let honest = self.nodes[node].honest;
        let reference = self.register(message)?;
        let record = self.record_mut(reference)?;
        record.sent |= bit(node);
        record.seen |= bit(node);
        record.has |= bit(node);
        record.pooled |= honest;
        Some(reference)
    }

    /// Each peer gets either the real vote or a conflicting one.
    fn equivocate(&mut self, node: usize, real: SignedVote) {
        let other = Vote {
            value: self.conflicting_value(node, &real.message),
            ..real.message
        };
        self.counts.votes_signed += 1;
        let other = self.sign_as(node, other, other.sign_bytes(CHAIN_ID));
        let real = self.register_own(node, Message::Vote(real));
        let other = self.register(Message::Vote(other));
        let (Some(real), Some(other)) = (real, other) else {
            return;
        };
        for to in nodes_in(self.receivers & !self.crashed & !bit(node)) {
            let message = if self.rng.coin() { real } else { other };
            self.transmit(node, to, message, false);
        }
    }

    fn conflicting_value(&mut self, node: usize, vote: &Vote) -> Option<ValueId> {
        let junk = self.new_value(node, vote.height, vote.round, VARIANT_JUNK);
        let mut candidates: Vec<Option<ValueId>> = vec![Some(junk)];
        if vote.value.is_some() {
            candidates.push(None);
        }
        if let Some(state) = self.heights.get(&vote.height) {
            let proposed = state.proposed.iter().filter(|v| Some(**v) != vote.value);
            candidates.extend(proposed.map(|v| Some(*v)));
        }
        candidates[self.rng.index(candidates.len())]
    }

    /// Each peer gets one of: the real proposal, one for another valid value, one for an
    /// invalid value, one for the same value with another POL round.
    fn lie(&mut self, node: usize, real: SignedProposal) {
        let proposal = real.message;
        let mut others = Vec::with_capacity(3);
        for variant in [VARIANT_ALTERNATIVE, VARIANT_INVALID] {
            let value = self.new_value(node, proposal.height, proposal.round, variant);
            others.push(Proposal { value, ..proposal });
        }
        if proposal.round.0 > 0 {
            // The same value, justified by a polka round that may well have none.
            let pol_round = Some(Round(self.rng.below(u64::from(proposal.round.0)) as u32));
            if pol_round != proposal.pol_round {
                others.push(Proposal {
                    pol_round,
                    ..proposal
                });
            }
        }
        let mut variants = Vec::with_capacity(1 + others.len());
        variants.extend(self.register_own(node, Message::Proposal(real)));
        for other in others {
            self.counts.proposals_signed += 1;
            let signed = self.sign_as(node, other, other.sign_bytes(CHAIN_ID));
            variants.extend(self.register(Message::Proposal(signed)));
        }
        if variants.is_empty() {
            return;
        }
        for to in nodes_in(self.receivers & !self.crashed & !bit(node)) {
            let message = variants[self.rng.index(variants.len())];
            self.transmit(node, to, message, false);
        }
    }

    /// Sends to every running node that neither has the message nor has it on the way.
    /// `reliable`: an honest node's gossip, retransmitted after GST if lost before it.
    fn gossip(&mut self, from: usize, reference: MessageRef, reliable: bool) {
        let Some(record) = self.record(reference) else {
            return;
        };
        let targets = self.receivers & !self.crashed & !(record.sent | record.has | bit(from));
        for to in nodes_in(targets) {
            self.transmit(from, to, reference, reliable);
        }
    }

    fn partitioned(&self, from: usize, to: usize) -> bool {
        self.scenario.network.partitions.iter().any(|p| {
            (p.from_ms..p.until_ms).contains(&self.now_ms)
                && p.group_of_node[from] != p.group_of_node[to]
        })
    }

    /// When a message sent now arrives: before GST anywhere up to the heavy bound (but by
    /// GST + Δ), after GST within Δ.
    fn arrival_ms(&mut self) -> u64 {
        let network = &self.scenario.network;
        let (min, gst, delta) = (network.delay_min_ms, network.gst_ms, network.delta_ms);
        if self.now_ms < gst {
            let delay = self.rng.range(min, network.delay_max_before_gst_ms);
            (self.now_ms + delay).min(gst + delta)
        } else {
            self.now_ms + self.rng.range(min, delta)
        }
    }

    /// After GST (or now, if later), within Δ: retransmissions and catch-up.
    fn arrival_after_gst_ms(&mut self) -> u64 {
        let network = &self.scenario.network;
        let (min, delta) = (network.delay_min_ms, network.delta_ms);
        self.now_ms.max(network.gst_ms) + self.rng.range(min, delta)
    }

    fn transmit(&mut self, from: usize, to: usize, reference: MessageRef, reliable: bool) {
        let network = &self.scenario.network;
        let before_gst = self.now_ms < network.gst_ms;
        let (drop, duplicate) = (network.drop_per_mille, network.duplicate_per_mille);
        let lost = before_gst && (self.partitioned(from, to) || self.rng.chance(drop));
        let at_ms = if lost {
            self.arrival_after_gst_ms()
        } else {
            self.arrival_ms()
        };
        let twice_at_ms = self.rng.chance(duplicate).then(|| self.arrival_ms());
        let Some(record) = self.record_mut(reference) else {
            return;
        };
        if lost {
            let retry = reliable && record.retry & bit(to) == 0;
            record.retry |= if retry { bit(to) } else { 0 };
            self.counts.messages_dropped += 1;
            if retry {
                self.deliver_at(at_ms, to, reference, true);
            }
            return;
        }
        record.sent |= bit(to);
        self.counts.messages_sent += 1;
        self.deliver_at(at_ms, to, reference, false);
        if let Some(twice_at_ms) = twice_at_ms {
            self.counts.messages_duplicated += 1;
            self.deliver_at(twice_at_ms, to, reference, false);
        }
    }

    fn deliver_at(&mut self, at_ms: u64, to: usize, message: MessageRef, retry: bool) {
        self.schedule(at_ms, EventKind::Deliver { to, message, retry });
    }

    // ---- Receiving -------------------------------------------------------------------------

    fn on_deliver(&mut self, to: usize, reference: MessageRef, retry: bool) {
        // Past heights are handed over (the machine ignores them, live and on replay alike);
        // later ones only if the machine takes them, as the WAL contract requires.
        let machine_keeps = self.nodes[to].machine.as_ref().map(|machine| {
            reference.height <= machine.height() || machine.keeps_height(reference.height)
        });
        let (crashed, honest) = (self.nodes[to].crashed, self.nodes[to].honest);
        let Some(record) = self.record_mut(reference) else {
            return; // every node is past its height
        };
        if retry {
            record.retry &= !bit(to);
            if (record.sent | record.has) & bit(to) != 0 {
                return; // it got there another way
            }
            record.sent |= bit(to);
        }
        if crashed {
            record.sent &= !bit(to);
            self.counts.messages_lost_to_crashes += 1;
            return;
        }
        let Some(keeps) = machine_keeps else {
            return;
        };
        let first = record.seen & bit(to) == 0;
        record.seen |= bit(to);
        if keeps {
            record.has |= bit(to);
        } else {
            // Too far ahead for the machine to hold: send it again when the node gets there.
            record.sent &= !bit(to);
        }
        record.pooled |= honest;
        let message = record.message;
        self.counts.messages_delivered += 1;
        if retry {
            self.counts.messages_retransmitted += 1;
        }
        if honest && first {
            self.gossip(to, reference, true);
        }
        // Neither logged nor handed over: the machine would drop it, and a WAL entry for it
        // would be held, not dropped, by a replay at a later height (see the module docs).
        if !keeps || !self.verify(&message) {
            return;
        }
        let input = match message {
            Message::Vote(vote) => Input::Vote(vote),
            Message::Proposal(proposal) => Input::Proposal {
                proposal,
                validity: self.validity(&proposal.message),
            },
        };
        self.nodes[to].local.push_back(input);
        self.process(to);
    }

    /// Resends the messages of `height` that honest nodes have and `node` lost (to a crash,
    /// or because it was too far behind to keep them).
    fn catch_up_messages(&mut self, node: usize, height: Height) {
        let Some(state) = self.heights.get(&height) else {
            return;
        };
        let missing: Vec<u32> = (0..state.records.len() as u32)
            .filter(|&i| {
                let record = &state.records[i as usize];
                record.pooled && (record.sent | record.has) & bit(node) == 0
            })
            .collect();
        for index in missing {
            let reference = MessageRef { height, index };
            let at_ms = self.arrival_after_gst_ms();
            if let Some(record) = self.record_mut(reference) {
                record.sent |= bit(node);
            }
            self.counts.messages_sent += 1;
            self.deliver_at(at_ms, node, reference, false);
        }
    }

    fn schedule_block_sync(&mut self, node: usize, height: Height) {
        let decided = self
            .heights
            .get(&height)
            .is_some_and(|s| s.certificate.is_some());
        if decided {
            let at_ms =
                self.now_ms.max(self.scenario.network.gst_ms) + self.scenario.block_sync_delay_ms;
            self.schedule(at_ms, EventKind::BlockSync { node, height });
        }
    }

    fn on_block_sync(&mut self, node: usize, height: Height) {
        let Some(machine) = self.nodes[node].machine.as_ref() else {
            return;
        };
        if machine.height() != height || machine.decided().is_some() {
            return;
        }
        let Some(certificate) = self
            .heights
            .get(&height)
            .and_then(|s| s.certificate.clone())
        else {
            return;
        };
        self.counts.block_syncs += 1;
        self.nodes[node].local.push_back(Input::Commit(certificate));
        self.process(node);
    }

    // ---- Values, decisions, evidence -------------------------------------------------------

    /// The value `node` would propose at (height, round), or one of its byzantine variants.
    fn new_value(&mut self, node: usize, height: Height, round: Round, variant: u8) -> ValueId {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"weft-sim/value");
        hasher.update(&self.scenario.seed.to_le_bytes());
        hasher.update(&height.0.to_le_bytes());
        hasher.update(&round.0.to_le_bytes());
        hasher.update(&(self.nodes[node].spec.validator as u64).to_le_bytes());
        hasher.update(&(node as u64).to_le_bytes());
        hasher.update(&[variant]);
        let value = ValueId(*hasher.finalize().as_bytes());
        if variant != VARIANT_JUNK {
            let valid = variant != VARIANT_INVALID;
            let state = self.heights.entry(height).or_default();
            state.values.entry(value).or_insert(ValueInfo {
                valid,
                proposed: false,
            });
        }
        value
    }

    /// The application's verdict: valid only if it made the value and made it valid.
    fn validity(&self, proposal: &Proposal) -> Validity {
        let valid = self
            .heights
            .get(&proposal.height)
            .and_then(|s| s.values.get(&proposal.value))
            .is_some_and(|info| info.valid);
        if valid {
            Validity::Valid
        } else {
            Validity::Invalid
        }
    }

    fn decide(&mut self, node: usize, value: ValueId, certificate: CommitCertificate) {
        let height = certificate.height;
        match self.nodes[node].decided.get(&height) {
            Some(&first) if first != value => {
                let second = value;
                let violation = Violation::DecidedTwice {
                    node,
                    height,
                    first,
                    second,
                };
                return self.violations.push(violation);
            }
            Some(_) => {}
            None => self.first_decision(node, value, certificate),
        }
        if height.0 < self.scenario.target_heights {
            self.queue_start_height(node, height.next());
        }
    }

    fn first_decision(&mut self, node: usize, value: ValueId, certificate: CommitCertificate) {
        let height = certificate.height;
        let honest = self.nodes[node].honest;
        self.nodes[node].decided.insert(height, value);
        self.decisions.push(Decision {
            node,
            honest,
            height,
            round: certificate.round,
            value,
            at_ms: self.now_ms,
        });
        if !honest {
            return;
        }
        if self.nodes[node].decided.len() as u64 == self.scenario.target_heights {
            self.honest_done += 1;
        }
        self.check_validity(node, height, value);
        self.check_agreement(node, value, certificate);
    }

    fn check_validity(&mut self, node: usize, height: Height, value: ValueId) {
        let info = self
            .heights
            .get(&height)
            .and_then(|s| s.values.get(&value).copied());
        let why = match info {
            Some(ValueInfo {
                valid: true,
                proposed: true,
            }) => return,
            Some(ValueInfo { valid: false, .. }) => "is invalid",
            _ => "nobody proposed",
        };
        self.violations.push(Violation::Validity {
            node,
            height,
            value,
            why,
        });
    }

    /// The first honest decision of a height fixes it; every later one must match it.
    fn check_agreement(&mut self, node: usize, value: ValueId, certificate: CommitCertificate) {
        let height = certificate.height;
        let round = certificate.round;
        let state = self.heights.entry(height).or_default();
        match state.decided {
            None => {
                state.decided = Some((node, value));
                state.certificate = Some(certificate);
                self.counts.decision_round_max = self.counts.decision_round_max.max(round.0);
                self.counts.rounds_total += u64::from(round.0) + 1;
                self.block_sync_others(node, height);
            }
            Some((first_node, first)) if first != value && !state.agreement_reported => {
                state.agreement_reported = true;
                let decisions = vec![(first_node, first), (node, value)];
                self.violations
                    .push(Violation::Agreement { height, decisions });
            }
            Some(_) => {}
        }
    }

    fn block_sync_others(&mut self, decided_by: usize, height: Height) {
        let others: Vec<usize> = nodes_in(self.receivers & !self.crashed & !bit(decided_by))
            .filter(|&n| self.nodes[n].height == height)
            .collect();
        for node in others {
            self.schedule_block_sync(node, height);
        }
    }

    fn note_evidence(&mut self, node: usize, evidence: &Evidence) {
        if !self.nodes[node].honest {
            return;
        }
        let (kind, round) = match evidence {
            Evidence::DuplicateVote { first, .. } => {
                (EvidenceKind::DuplicateVote, first.message.round)
            }
            Evidence::DuplicateProposal { first, .. } => {
                (EvidenceKind::DuplicateProposal, first.message.round)
            }
        };
        let Some(&validator) = self.validator_of.get(&evidence.validator()) else {
            return;
        };
        self.evidence.insert(EvidenceSeen {
            node,
            kind,
            validator,
            height: evidence.height(),
            round,
        });
    }

    // ---- The double-sign ledger ------------------------------------------------------------

    fn ledger_vote(&mut self, node: usize, vote: Vote) {
        let state = self.heights.entry(vote.height).or_default();
        let first = *state
            .signed_votes
            .entry((node, vote.round, vote.vote_type))
            .or_insert(vote);
        if first != vote {
            self.violations.push(Violation::DoubleSignVote {
                node,
                first: Box::new(first),
                second: Box::new(vote),
            });
        }
    }

    fn ledger_proposal(&mut self, node: usize, proposal: Proposal) {
        let state = self.heights.entry(proposal.height).or_default();
        let first = *state
            .signed_proposals
            .entry((node, proposal.round))
            .or_insert(proposal);
        if first != proposal {
            self.violations.push(Violation::DoubleSignProposal {
                node,
                first: Box::new(first),
                second: Box::new(proposal),
            });
        }
    }

    // ---- Message records -------------------------------------------------------------------

    /// The record of `message`, made on first sight; `None` for a height every node is past.
    fn register(&mut self, message: Message) -> Option<MessageRef> {
        let height = message.height();
        if height < self.pruned_below {
            return None;
        }
        let state = self.heights.entry(height).or_default();
        if let Some(&index) = state.index.get(&message) {
            return Some(MessageRef { height, index });
        }
        let index = state.records.len() as u32;
        state.records.push(Record {
            message,
            sent: 0,
            seen: 0,
            has: 0,
            retry: 0,
            pooled: false,
        });
        state.index.insert(message, index);
        if let Message::Proposal(proposal) = message {
            let value = proposal.message.value;
            let info = state.values.entry(value).or_insert(ValueInfo {
                valid: false,
                proposed: false,
            });
            if !info.proposed {
                info.proposed = true;
                state.proposed.push(value);
            }
        }
        Some(MessageRef { height, index })
    }

    fn record(&self, reference: MessageRef) -> Option<&Record> {
        let state = self.heights.get(&reference.height)?;
        state.records.get(reference.index as usize)
    }

    fn record_mut(&mut self, reference: MessageRef) -> Option<&mut Record> {
        let state = self.heights.get_mut(&reference.height)?;
        state.records.get_mut(reference.index as usize)
    }

    /// Drops the heights every running or crashed node is past.
    fn prune(&mut self) {
        let lowest = nodes_in(self.receivers)
            .map(|n| self.nodes[n].height)
            .min()
            .unwrap_or_default();
        self.pruned_below = self.pruned_below.max(lowest);
        while self
            .heights
            .first_key_value()
            .is_some_and(|(h, _)| *h < lowest)
        {
            self.heights.pop_first();
        }
    }

    // ---- Liveness and the report -----------------------------------------------------------

    /// At the stable time: from the highest round an honest node is in, each remaining height
    /// gets enough rounds for the timeouts to outgrow Δ and for every validator to propose
    /// once more, plus a block sync.
    fn on_stabilized(&mut self) {
        let Some(grow) = self.scenario.rounds_until_timeouts_cover_delta() else {
            return;
        };
        let round_now = nodes_in(self.receivers)
            .filter(|&n| self.nodes[n].honest)
            .filter_map(|n| self.nodes[n].machine.as_ref().map(|m| m.round().0))
            .max()
            .unwrap_or(0);
        let per_height = grow + self.scenario.powers.len() as u64 + 3;
        let first_ms = self.rounds_ms(u64::from(round_now) + per_height);
        let sync_ms = self.scenario.block_sync_delay_ms + 2 * self.scenario.network.delta_ms;
        let each_ms = self.rounds_ms(per_height).saturating_add(sync_ms);
        let heights = self.scenario.target_heights;
        let deadline = self
            .now_ms
            .saturating_add(first_ms)
            .saturating_add(each_ms.saturating_mul(heights));
        self.deadline_ms = Some(deadline);
        self.end_ms = self.end_ms.min(deadline);
    }

    /// The longest rounds 0..=`rounds` can take: every timeout, plus Δ for each step's
    /// messages.
    fn rounds_ms(&self, rounds: u64) -> u64 {
        let timeouts = &self.scenario.timeouts;
        let delta = self.scenario.network.delta_ms;
        (0..=rounds.min(u64::from(u32::MAX)))
            .map(|r| {
                let round = Round(r as u32);
                [
                    TimeoutKind::Propose,
                    TimeoutKind::Prevote,
                    TimeoutKind::Precommit,
                ]
                .iter()
                .map(|&kind| timeouts.duration_ms(kind, round))
                .fold(3 * delta, u64::saturating_add)
            })
            .fold(0, u64::saturating_add)
    }

    fn finish(mut self) -> Report {
        let target = self.scenario.target_heights;
        let honest: Vec<usize> = (0..self.nodes.len())
            .filter(|&n| self.nodes[n].honest)
            .collect();
        if self.liveness_expected && !self.stopped {
            let deadline_ms = self.deadline_ms.unwrap_or(self.end_ms);
            for &node in &honest {
                let decided = self.nodes[node].decided.len() as u64;
                if decided < target {
                    self.violations.push(Violation::Liveness {
                        node,
                        decided,
                        target,
                        stable_ms: self.scenario.stable_from_ms(),
                        deadline_ms,
                    });
                }
            }
        }
        let decided = |n: &usize| self.nodes[*n].decided.len() as u64;
        self.counts.heights_decided_min = honest.iter().map(decided).min().unwrap_or(0);
        self.counts.heights_decided_max = honest.iter().map(decided).max().unwrap_or(0);
        Report {
            seed: self.scenario.seed,
            decisions: self.decisions,
            evidence: self.evidence.into_iter().collect(),
            counts: self.counts,
            violations: self.violations,
            liveness_checked: self.liveness_expected,
            liveness_deadline_ms: self.deadline_ms,
            end_ms: self.now_ms,
        }
    }
}
