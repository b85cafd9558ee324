//! The simulated world: nodes running the real core, the network between them, the crashes,
//! and the checkers (see the crate docs).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use parking_lot::{Mutex, RwLock};
use weft_consensus::sim::SimRng;
use weft_consensus::{Height, LastSigned, TimeoutParams, VoteType};
use weft_execution::tx::ValidatorKey;
use weft_execution::{ChainId, Payload, Transaction, TxHash};
use weft_genesis::{ConsensusParams, Genesis, SecretKey};
use weft_gossip::{Message, SyncBlock, SyncError};
use weft_node::chain::Chain;
use weft_node::engine::{Byzantine, Command, Core, CoreSetup, Event, NodeLedger, Recovered};
use weft_node::guard::{GuardError, GuardState};
use weft_node::mempool::{Mempool, MempoolConfig};
use weft_node::metrics::NodeMetrics;

use crate::disk::Disk;

const CHAIN_ID: &str = "weft-sim";
/// Virtual wall-clock time at genesis, in ms.
const GENESIS_MS: u64 = 1_700_000_000_000;
/// How often each node is shown its peers' heights (the driver's sync tick).
const PEERS_TICK_MS: u64 = 250;
/// How long an unanswered sync request takes to fail.
const SYNC_TIMEOUT_MS: u64 = 2_000;
/// Largest sync answer.
const SYNC_ANSWER_BYTES_MAX: usize = 8 << 20;
/// Virtual time every node has, once the last crash is over, to reach the target height.
const LIVENESS_WITHIN_MS: u64 = 120_000;
/// Virtual time one run may take in all.
const RUN_MS_MAX: u64 = 600_000;
/// Events one run may take before it is called stuck.
const EVENTS_MAX: u64 = 2_000_000;
/// Funded senders of the scenario's txs.
const SENDERS: usize = 4;

/// A deliberate bug, to show the checkers catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mutant {
    #[default]
    None,
    /// `Persist` leaves the WAL unsynced.
    SkipWalSync,
    /// A restart replays the WAL without the guard's record.
    ReplayWithoutGuard,
}

/// A crash: node `node` stops before carrying out its `at_command`-th command, and comes back
/// `down_ms` later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash {
    pub node: usize,
    pub at_command: u64,
    pub down_ms: u64,
}

/// A validator update the authority sends: node `node`'s key to `power` (0 removes it),
/// submitted to every node `at_ms` after the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimUpdate {
    pub node: usize,
    pub power: u64,
    pub at_ms: u64,
}

/// Everything about one run.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    /// The genesis validators: nodes `0..validators`.
    pub validators: usize,
    /// Full nodes beside them (nodes `validators..validators + standby`), which updates may
    /// make validators.
    pub standby: usize,
    /// The validator set's changes, in the authority's nonce order; each valid against the
    /// schedule the ones before it made, and none giving the faulty validator a third.
    pub updates: Vec<SimUpdate>,
    /// Each validator's voting power.
    pub powers: Vec<u64>,
    /// A validator that never starts (its power under a third, and no byzantine beside it).
    pub silent: Option<usize>,
    pub target_height: u64,
    pub txs: usize,
    /// Largest one-way delay (ms); each message draws one in `1..=max_delay_ms`.
    pub max_delay_ms: u64,
    pub crashes: Vec<Crash>,
    /// Whether a crash may also flip a durable WAL byte.
    pub damage: bool,
    /// Whether nodes see their peers' heights (and so block-sync); without it, a node that
    /// fell behind catches up by gossip alone.
    pub block_sync: bool,
    /// Until this virtual time after the start (ms), the network may drop messages and split.
    pub gst_ms: u64,
    /// Before GST, the share of messages lost, per mille.
    pub drop_per_mille: u32,
    /// Before GST, the nodes on one side of a split (a bit each); 0 for none.
    pub partition: u32,
    /// One validator that lies, and how; `None` for an honest network.
    pub byzantine: Option<(usize, Byzantine)>,
    pub mutant: Mutant,
}

impl Scenario {
    /// The scenario of `seed`: 1 to 7 validators (mostly 4), equal or weighted powers, 4 to 8
    /// heights, up to 24 txs, up to 3 crashes (each at any command), disk damage in a quarter
    /// of the runs, a split or lossy network before GST in 3 in 10, one byzantine or silent
    /// validator (under a third of the power) in some; in 4 in 10, up to 3 validator updates
    /// (joins of full nodes, power changes, removals) during the run, and 6 more heights.
    pub fn from_seed(seed: u64) -> Scenario {
        let mut rng = SimRng::new(seed ^ 0x005E_ED0F_5111);
        let validators = [1, 3, 4, 4, 4, 5, 7][rng.index(7)];
        Scenario::generate(seed, rng, validators)
    }

    /// A scenario of `seed` with `validators` of equal power and no silent one.
    pub fn with_validators(seed: u64, validators: usize) -> Scenario {
        let rng = SimRng::new(seed ^ 0x005E_ED0F_5111);
        let mut scenario = Scenario::generate(seed, rng, validators);
        scenario.powers = vec![10; validators];
        scenario.silent = None;
        scenario
    }

    fn generate(seed: u64, mut rng: SimRng, validators: usize) -> Scenario {
        let powers: Vec<u64> = if rng.chance(333) {
            (0..validators).map(|_| rng.range(1, 5)).collect()
        } else {
            vec![10; validators]
        };
        let total: u64 = powers.iter().sum();
        // Whether `node` alone holds under a third of the power (so may be faulty).
        let may_fail = |node: usize| powers[node] * 3 < total;
        let crashes: Vec<Crash> = (0..rng.below(4))
            .map(|_| Crash {
                node: rng.index(validators),
                at_command: rng.range(1, 400),
                down_ms: rng.range(0, 3_000),
            })
            .collect();
        let faulty_network = rng.chance(300);
        let lies = [
            Byzantine::ExtraEdge,
            Byzantine::MissingEdge,
            Byzantine::UnderDeclared,
            Byzantine::Equivocate,
        ];
        let byzantine = rng
            .chance(200)
            .then(|| (rng.index(validators), lies[rng.index(lies.len())]))
            .filter(|(node, _)| may_fail(*node));
        let silent = rng
            .chance(100)
            .then(|| rng.index(validators))
            .filter(|node| may_fail(*node) && byzantine.is_none());
        let crashes = crashes
            .into_iter()
            .filter(|c: &Crash| Some(c.node) != silent)
            .collect();
        let faulty = silent.or(byzantine.map(|(node, _)| node));
        let (standby, updates) = if rng.chance(400) {
            let standby = rng.below(3) as usize;
            let updates = generate_updates(&mut rng, &powers, standby, faulty);
            (standby, updates)
        } else {
            (0, Vec::new())
        };
        let extra_heights = if updates.is_empty() { 0 } else { 6 };
        // A full node learns a block whose proposal never left its proposer (a lone validator
        // that crashed between deciding and publishing) only by block sync, as a real node
        // does; without standby nodes a run may go without it, to test gossip's catch-up.
        let block_sync = !rng.chance(250) || standby > 0;
        Scenario {
            seed,
            validators,
            standby,
            updates,
            powers,
            silent,
            target_height: rng.range(4, 8) + extra_heights,
            txs: rng.below(25) as usize,
            max_delay_ms: rng.range(1, 80),
            crashes,
            damage: rng.chance(250),
            block_sync,
            gst_ms: if faulty_network {
                rng.range(500, 5_000)
            } else {
                0
            },
            drop_per_mille: if faulty_network {
                rng.range(0, 300) as u32
            } else {
                0
            },
            partition: if faulty_network && rng.coin() {
                // One or two nodes cut off from the rest.
                let a = rng.index(validators);
                let b = rng.index(validators);
                (1 << a) | if rng.coin() { 1 << b } else { 0 }
            } else {
                0
            },
            byzantine,
            mutant: Mutant::None,
        }
    }

    /// Every node: the genesis validators, then the standby full nodes.
    pub fn nodes(&self) -> usize {
        self.validators + self.standby
    }

    pub fn with_mutant(mut self, mutant: Mutant) -> Scenario {
        self.mutant = mutant;
        self
    }
}

/// Up to 3 updates, each valid when it executes (the schedule the earlier ones made: no unknown
/// removal, no empty set, no no-op, at most a third of the scheduled power moved) and keeping
/// the faulty node under a third of the power: so every one commits with code 0.
fn generate_updates(
    rng: &mut SimRng,
    genesis_powers: &[u64],
    standby: usize,
    faulty: Option<usize>,
) -> Vec<SimUpdate> {
    let mut powers: Vec<u64> = genesis_powers.to_vec();
    powers.extend(std::iter::repeat_n(0, standby));
    let mut updates = Vec::new();
    for k in 0..rng.range(1, 4) {
        let node = rng.index(powers.len());
        if Some(node) == faulty {
            continue;
        }
        let old = powers[node];
        let power = match rng.below(3) {
            0 => 0,
            1 => old + rng.range(1, 4),
            _ => rng.range(1, 11),
        };
        let total: u64 = powers.iter().sum();
        let members = powers.iter().filter(|p| **p > 0).count();
        let invalid = power == old
            || (old == 0 && power == 0)
            || (power == 0 && members <= 1)
            || old.abs_diff(power) * 3 > total;
        let mut next = powers.clone();
        next[node] = power;
        let next_total: u64 = next.iter().sum();
        let faulty_power = faulty.map_or(0, |f| next[f]);
        if invalid || faulty_power * 3 >= next_total {
            continue;
        }
        powers = next;
        updates.push(SimUpdate {
            node,
            power,
            at_ms: 300 + 500 * k + rng.below(400),
        });
    }
    updates
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: {} validators (powers {:?}, silent {:?}) and {} standby, updates {:?}, to height {}, {} txs, delay ≤ {} ms, crashes {:?}, damage {}, block sync {}, GST {} ms (drops {}‰, split {:#b}), byzantine {:?}, mutant {:?}",
            self.seed,
            self.validators,
            self.powers,
            self.silent,
            self.standby,
            self.updates,
            self.target_height,
            self.txs,
            self.max_delay_ms,
            self.crashes,
            self.damage,
            self.block_sync,
            self.gst_ms,
            self.drop_per_mille,
            self.partition,
            self.byzantine,
            self.mutant
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    Agreement {
        height: u64,
        node: usize,
    },
    /// A committed block that was never proposed.
    Validity {
        height: u64,
        node: usize,
    },
    /// An honest node committed a block whose access sets under-declare a write.
    LieCommitted {
        height: u64,
        node: usize,
    },
    StateRoot {
        height: u64,
        node: usize,
    },
    DoubleSign {
        validator: usize,
        detail: String,
    },
    SpokeBeforePersist {
        node: usize,
        detail: String,
    },
    HeightLost {
        node: usize,
        before: u64,
        after: u64,
    },
    TxLost {
        node: usize,
        height: u64,
    },
    Liveness {
        node: usize,
        height: u64,
    },
    /// A node stopped on an error.
    Node {
        node: usize,
        error: String,
    },
    Stuck {
        events: u64,
    },
    Panic(String),
    /// A validator update valid against its schedule did not commit with code 0.
    UpdateRefused {
        height: u64,
        node: usize,
        code: u8,
    },
}

/// What a run did and what it broke.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub violations: Vec<Violation>,
    /// The lowest final height among the nodes.
    pub height: u64,
    pub commands: u64,
    pub crashes: usize,
    pub committed_txs: usize,
    pub virtual_ms: u64,
    /// Equivocation evidence honest nodes reported.
    pub evidence: usize,
    /// Messages the network lost before GST.
    pub dropped: u64,
    /// Proposals an under-declaring liar made of blocks with txs (each a lie).
    pub lies_proposed: usize,
    /// The scenario's validator updates that committed.
    pub validator_updates: usize,
}

enum Ev {
    Message(Message),
    Tick,
    Peers,
    Fetched {
        peer: PeerId,
        answer: Result<Vec<SyncBlock>, SyncError>,
    },
    Restart,
    Submit(Arc<Vec<u8>>),
}

struct Node {
    key: SecretKey,
    peer: PeerId,
    dir: tempfile::TempDir,
    core: Option<Core<NodeLedger>>,
    chain: Option<Arc<RwLock<Chain>>>,
    mempool: Option<Arc<Mutex<Mempool>>>,
    disk: Disk,
    /// Commands carried out, over every life.
    commands: u64,
    advertised: Height,
    seen: HashSet<[u8; 32]>,
    tick_at: Option<u64>,
    highest_committed: u64,
    /// Stopped for good on an error.
    failed: bool,
}

impl Node {
    fn up(&self) -> bool {
        self.core.is_some()
    }
}

struct World<'a> {
    scenario: &'a Scenario,
    rng: SimRng,
    genesis: Genesis,
    nodes: Vec<Node>,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    pending: HashMap<u64, (usize, Ev)>,
    /// Every consensus message published, by height, for gossip's catch-up.
    published: BTreeMap<u64, Vec<([u8; 32], usize, Message)>>,
    /// The values proposed, for validity.
    proposed: HashSet<[u8; 32]>,
    /// The values of blocks an under-declaring liar proposed with txs in them.
    lies: HashSet<[u8; 32]>,
    crashes_left: Vec<Crash>,
    last_restart: u64,
    // Checkers' state.
    committed: BTreeMap<u64, [u8; 32]>,
    roots: BTreeMap<u64, [u8; 32]>,
    signed: HashMap<(usize, u64, u32, u8), LastSigned>,
    acked: HashMap<TxHash, u64>,
    /// The scenario's validator updates, each to commit with code 0.
    update_txs: HashSet<TxHash>,
    report: Report,
}

fn message_id(message: &Message) -> [u8; 32] {
    *blake3::hash(&message.encode()).as_bytes()
}

fn message_height(message: &Message) -> Option<u64> {
    match message {
        Message::Vote(vote) => Some(vote.message.height.0),
        Message::Proposal { proposal, .. } => Some(proposal.message.height.0),
        _ => None,
    }
}

/// Simulates `scenario` and checks it. A panic (a broken invariant inside the node, or in
/// the simulator) comes back as a violation.
pub fn run(scenario: &Scenario) -> Report {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut world = World::new(scenario);
        world.run();
        world.report
    }));
    outcome.unwrap_or_else(|payload| Report {
        seed: scenario.seed,
        violations: vec![Violation::Panic(weft_consensus::sim::panic_message(
            payload.as_ref(),
        ))],
        ..Report::default()
    })
}

impl<'a> World<'a> {
    fn new(scenario: &'a Scenario) -> World<'a> {
        let mut rng = SimRng::new(scenario.seed);
        let mut secret = || {
            let mut bytes = [0u8; 32];
            for chunk in bytes.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            SecretKey(bytes)
        };
        let keys: Vec<SecretKey> = (0..scenario.nodes()).map(|_| secret()).collect();
        let senders: Vec<SecretKey> = (0..SENDERS).map(|_| secret()).collect();
        let authority = secret();
        let mut genesis = Genesis::new(
            CHAIN_ID,
            GENESIS_MS,
            keys.iter()
                .take(scenario.validators)
                .enumerate()
                .map(|(i, k)| (format!("v{i}"), k.public(), scenario.powers[i]))
                .collect(),
            senders.iter().map(|k| (k.public(), 1_000_000)).collect(),
            ConsensusParams::default(),
        )
        .expect("the simulator's genesis is valid");
        genesis
            .set_authority(&hex::encode(authority.public()))
            .expect("a valid authority");
        let nodes = keys
            .into_iter()
            .map(|key| Node {
                peer: PeerId::from(weft_gossip::net::keypair_from_secret(&key).public()),
                key,
                dir: scratch_dir(),
                core: None,
                chain: None,
                mempool: None,
                disk: Disk::default(),
                commands: 0,
                advertised: Height(0),
                seen: HashSet::new(),
                tick_at: None,
                highest_committed: 0,
                failed: false,
            })
            .collect();
        let mut world = World {
            scenario,
            rng: SimRng::new(scenario.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            genesis,
            nodes,
            now: GENESIS_MS + 1_000,
            seq: 0,
            queue: BinaryHeap::new(),
            pending: HashMap::new(),
            published: BTreeMap::new(),
            proposed: HashSet::new(),
            lies: HashSet::new(),
            crashes_left: scenario.crashes.clone(),
            last_restart: 0,
            committed: BTreeMap::new(),
            roots: BTreeMap::new(),
            signed: HashMap::new(),
            acked: HashMap::new(),
            update_txs: HashSet::new(),
            report: Report {
                seed: scenario.seed,
                ..Report::default()
            },
        };
        // The txs: transfers from the senders in nonce order, spread over the first seconds.
        let chain_id = ChainId::new(CHAIN_ID).expect("a valid chain id");
        let mut nonces = [0u64; SENDERS];
        for i in 0..scenario.txs {
            let from = world.rng.index(SENDERS);
            let to = world.rng.index(SENDERS);
            let tx = Transaction::sign(
                chain_id.clone(),
                &senders[from].signing_key(),
                nonces[from],
                Payload::Transfer {
                    to: weft_execution::Address(senders[to].public()),
                    amount: 1 + world.rng.below(100),
                },
            );
            nonces[from] += 1;
            let at = world.now + 100 * i as u64 + world.rng.below(100);
            for node in 0..world.nodes.len() {
                world.schedule(at, node, Ev::Submit(Arc::new(tx.encode())));
            }
        }
        // The validator updates, from the authority in nonce order.
        for (nonce, update) in scenario.updates.iter().enumerate() {
            let key = &world.nodes[update.node].key;
            let tx = Transaction::sign(
                chain_id.clone(),
                &authority.signing_key(),
                nonce as u64,
                Payload::ValidatorUpdate {
                    validator: ValidatorKey::new(key.public()).expect("a real public key"),
                    power: update.power,
                },
            );
            world.update_txs.insert(tx.hash());
            let at = world.now + update.at_ms;
            for node in 0..world.nodes.len() {
                world.schedule(at, node, Ev::Submit(Arc::new(tx.encode())));
            }
        }
        world
    }

    fn schedule(&mut self, at: u64, node: usize, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.pending.insert(self.seq, (node, ev));
    }

    /// Whether a message from `from` reaches `to`: always after GST; before it, not across
    /// the split, and not when the network drops it.
    fn link(&mut self, from: usize, to: usize) -> bool {
        if self.now >= GENESIS_MS + 1_000 + self.scenario.gst_ms {
            return true;
        }
        let side = |n: usize| self.scenario.partition & (1 << n) != 0;
        if side(from) != side(to) || self.rng.chance(self.scenario.drop_per_mille) {
            self.report.dropped += 1;
            return false;
        }
        true
    }

    fn delay(&mut self) -> u64 {
        self.rng.range(1, self.scenario.max_delay_ms)
    }

    fn run(&mut self) {
        for node in 0..self.nodes.len() {
            if Some(node) == self.scenario.silent {
                continue;
            }
            self.start(node);
            self.schedule(self.now + PEERS_TICK_MS, node, Ev::Peers);
        }
        let mut events = 0u64;
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            let Some((node, ev)) = self.pending.remove(&seq) else {
                continue;
            };
            self.now = self.now.max(at);
            events += 1;
            if events > EVENTS_MAX {
                self.report.violations.push(Violation::Stuck { events });
                break;
            }
            self.handle(node, ev);
            if self.done() {
                break;
            }
            let stable = self.crashes_left.is_empty()
                && self
                    .nodes
                    .iter()
                    .enumerate()
                    .all(|(i, n)| n.up() || n.failed || Some(i) == self.scenario.silent);
            let stable_since = self
                .last_restart
                .max(GENESIS_MS + 1_000 + self.scenario.gst_ms);
            if (stable && self.now > stable_since + LIVENESS_WITHIN_MS)
                || self.now > GENESIS_MS + RUN_MS_MAX
            {
                break;
            }
        }
        self.finish();
    }

    /// Every node up and at the target height.
    fn done(&self) -> bool {
        self.crashes_left.is_empty()
            && self.nodes.iter().enumerate().all(|(i, n)| {
                n.failed
                    || self.is_byzantine(i)
                    || Some(i) == self.scenario.silent
                    || n.chain
                        .as_ref()
                        .is_some_and(|c| c.read().height().0 >= self.scenario.target_height)
            })
    }

    fn handle(&mut self, node: usize, ev: Ev) {
        match ev {
            Ev::Restart => {
                self.last_restart = self.now;
                self.start(node);
            }
            Ev::Peers => {
                // The tick goes on while a node is down, as the driver's would after a restart.
                self.schedule(self.now + PEERS_TICK_MS, node, Ev::Peers);
                if self.nodes[node].up() {
                    self.peers(node);
                }
            }
            _ if !self.nodes[node].up() => {}
            Ev::Message(message) => {
                // As the router does: a message is passed up once. One the core would drop as
                // too far ahead is not marked, so the catch-up of a later height hands it over
                // again (the node's block sync makes up for such losses too).
                let id = message_id(&message);
                let takes = message_height(&message).is_none_or(|h| {
                    self.nodes[node]
                        .core
                        .as_ref()
                        .is_some_and(|c| c.keeps_height(Height(h)))
                });
                if !self.nodes[node].seen.contains(&id) {
                    if takes {
                        self.nodes[node].seen.insert(id);
                    }
                    self.step(node, Event::Message(message));
                }
            }
            Ev::Tick => {
                if self.nodes[node].tick_at.is_some_and(|at| at <= self.now) {
                    self.nodes[node].tick_at = None;
                    self.step(node, Event::Tick);
                }
            }
            Ev::Fetched { peer, answer } => self.step(node, Event::Fetched { peer, answer }),
            Ev::Submit(tx) => {
                let (Some(chain), Some(mempool)) =
                    (&self.nodes[node].chain, &self.nodes[node].mempool)
                else {
                    return;
                };
                let chain = chain.read();
                let _ = mempool.lock().check(&tx, chain.state());
            }
        }
    }

    /// Shows `node` its peers' heights, and hands it, as gossip's catch-up would, what peers
    /// hold of its height.
    fn peers(&mut self, node: usize) {
        if self.scenario.block_sync {
            let peers: Vec<(PeerId, Height)> = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(j, n)| *j != node && n.up())
                .map(|(_, n)| (n.peer, n.advertised))
                .collect();
            self.step(node, Event::Peers(peers));
        }
        let height = self.nodes[node].advertised.0;
        self.catch_up(node, height, height);
    }

    /// Delivers to `node`, after a delay, the published messages of heights `from..=to` it
    /// has not seen.
    fn catch_up(&mut self, node: usize, from: u64, to: u64) {
        if from > to {
            return;
        }
        let unseen: Vec<(usize, Message)> = self
            .published
            .range(from..=to)
            .flat_map(|(_, messages)| messages.iter())
            .filter(|(id, _, _)| !self.nodes[node].seen.contains(id))
            .map(|(_, sender, m)| (*sender, m.clone()))
            .collect();
        for (sender, message) in unseen {
            if self.link(sender, node) {
                let at = self.now + self.delay();
                self.schedule(at, node, Ev::Message(message));
            }
        }
    }

    /// Opens a node (first start or restart) from its database and disk.
    fn start(&mut self, index: usize) {
        let scenario = self.scenario;
        let node = &mut self.nodes[index];
        let chain = match open_chain(node.dir.path(), &self.genesis) {
            Ok(chain) => chain,
            Err(error) => {
                node.failed = true;
                self.report.violations.push(Violation::Node {
                    node: index,
                    error: format!("opening the chain: {error}"),
                });
                return;
            }
        };
        let height = chain.height().0;
        if height < node.highest_committed {
            self.report.violations.push(Violation::HeightLost {
                node: index,
                before: node.highest_committed,
                after: height,
            });
        }
        let chain = Arc::new(RwLock::new(chain));
        let mempool = Arc::new(Mutex::new(Mempool::new(
            MempoolConfig::default(),
            ChainId::new(CHAIN_ID).expect("a valid chain id"),
        )));
        let ledger = NodeLedger {
            chain: chain.clone(),
            mempool: mempool.clone(),
            metrics: Arc::new(NodeMetrics::new().expect("fresh metrics register")),
        };
        let setup = CoreSetup {
            key: Some(node.key.signing_key()),
            chain_id: CHAIN_ID.into(),
            params: TimeoutParams::default(),
            commit_delay: Duration::from_millis(10),
            block_max_txs: 100,
            block_max_bytes: 1 << 20,
            byzantine: match scenario.byzantine {
                Some((liar, kind)) if liar == index => kind,
                _ => Byzantine::None,
            },
            create_empty_blocks: true,
        };
        let mut recovered: Recovered = node.disk.recover();
        if scenario.mutant == Mutant::ReplayWithoutGuard {
            recovered.last_signed = None;
        }
        node.seen.clear();
        node.tick_at = None;
        match Core::open(ledger, setup, recovered, self.now) {
            Ok((core, commands)) => {
                node.core = Some(core);
                node.chain = Some(chain);
                node.mempool = Some(mempool);
                self.carry_out(index, commands);
                self.reschedule_tick(index);
            }
            Err(error) => {
                node.failed = true;
                self.report.violations.push(Violation::Node {
                    node: index,
                    error: error.to_string(),
                });
            }
        }
    }

    fn step(&mut self, index: usize, event: Event) {
        let now = self.now;
        let Some(core) = self.nodes[index].core.as_mut() else {
            return;
        };
        match core.on(event, now) {
            Ok(commands) => self.carry_out(index, commands),
            Err(error) => {
                self.report.violations.push(Violation::Node {
                    node: index,
                    error: error.to_string(),
                });
                self.crashes_left.retain(|c| c.node != index);
                let node = &mut self.nodes[index];
                node.failed = true;
                node.core = None;
                node.chain = None;
                node.mempool = None;
            }
        }
        self.reschedule_tick(index);
    }

    fn reschedule_tick(&mut self, index: usize) {
        let Some(deadline) = self.nodes[index]
            .core
            .as_ref()
            .and_then(|c| c.next_deadline())
        else {
            return;
        };
        let at = deadline.max(self.now);
        if self.nodes[index].tick_at.is_none_or(|t| at < t) {
            self.nodes[index].tick_at = Some(at);
            self.schedule(at, index, Ev::Tick);
        }
    }

    /// Carries out a node's commands in order; a crash point stops it before one.
    fn carry_out(&mut self, index: usize, commands: Vec<Command>) {
        // A proposal counts as made once its core signed it, sent or not: a validator with the
        // power to decide alone commits its own block in the same step, and may crash before
        // the proposal leaves (peers then sync the block).
        for command in &commands {
            if let Command::Publish(Message::Proposal { proposal, .. }) = command {
                self.proposed.insert(proposal.message.value.0);
            }
        }
        for command in commands {
            let number = self.nodes[index].commands + 1;
            if let Some(at) = self
                .crashes_left
                .iter()
                .position(|c| c.node == index && c.at_command <= number)
            {
                let crash = self.crashes_left.remove(at);
                self.crash(index, crash.down_ms);
                return;
            }
            self.nodes[index].commands = number;
            self.report.commands += 1;
            self.command(index, command);
        }
    }

    fn crash(&mut self, index: usize, down_ms: u64) {
        let damage = self.scenario.damage;
        let node = &mut self.nodes[index];
        node.core = None;
        node.chain = None;
        node.mempool = None;
        node.tick_at = None;
        node.disk.crash(&mut self.rng, damage);
        self.report.crashes += 1;
        self.schedule(self.now + down_ms, index, Ev::Restart);
    }

    fn command(&mut self, index: usize, command: Command) {
        let mutant = self.scenario.mutant;
        let node = &mut self.nodes[index];
        match command {
            Command::WalAppend(entry) => node.disk.wal_append(&entry),
            Command::WalRotate { entries, blocks } => node.disk.wal_rotate(&entries, &blocks),
            Command::LogBlock(block) => node.disk.log_block(&block),
            Command::Persist(record) => {
                if mutant != Mutant::SkipWalSync {
                    node.disk.wal_sync();
                }
                if let Some(record) = record {
                    node.disk.guard_persist(record);
                }
            }
            Command::Publish(message) => self.publish(index, message),
            Command::Evidence(_) => {
                if !self.is_byzantine(index) {
                    self.report.evidence += 1;
                }
            }
            Command::Signed(_) | Command::Status { .. } => {}
            Command::Advertise(height, _) => {
                node.advertised = height;
                self.catch_up(index, height.0, height.0);
            }
            Command::RequestBlocks { peer, from, count } => {
                let target = self.nodes.iter().position(|n| n.peer == peer);
                let reachable = target.is_some_and(|j| self.link(j, index));
                let answer = target
                    .filter(|_| reachable)
                    .and_then(|j| self.nodes[j].chain.as_ref())
                    .map(|chain| chain.read().sync_blocks(from, count, SYNC_ANSWER_BYTES_MAX));
                let (at, answer) = match answer {
                    Some(blocks) => (self.now + 2 * self.delay(), Ok(blocks)),
                    None => (
                        self.now + SYNC_TIMEOUT_MS,
                        Err(SyncError::Failed("the peer is down".into())),
                    ),
                };
                self.schedule(at, index, Ev::Fetched { peer, answer });
            }
            Command::Redeliver(height) => {
                // Gossip hands back everything it holds from that height on, whether or not
                // it passed it up before: the machine that took it was dropped.
                let held: Vec<Message> = self
                    .published
                    .range(height.0..)
                    .flat_map(|(_, messages)| messages.iter().map(|(_, _, m)| m.clone()))
                    .collect();
                let node = &mut self.nodes[index];
                for message in &held {
                    node.seen.remove(&message_id(message));
                }
                for message in held {
                    self.schedule(self.now, index, Ev::Message(message));
                }
            }
            Command::Committed(committed) => self.on_committed(index, &committed),
        }
    }

    fn publish(&mut self, index: usize, message: Message) {
        // Gossip carries a certificate and hands it to consensus as its votes.
        if let Message::Commit(certificate) = message {
            for vote in certificate.precommits {
                self.relay(index, Message::Vote(vote));
            }
            return;
        }
        self.check_signature(index, &message);
        self.relay(index, message);
    }

    /// Sends a message to every other node and keeps it for gossip's catch-up.
    fn relay(&mut self, index: usize, message: Message) {
        let Some(height) = message_height(&message) else {
            return;
        };
        let id = message_id(&message);
        self.nodes[index].seen.insert(id);
        if let Message::Proposal { proposal, block } = &message {
            self.proposed.insert(proposal.message.value.0);
            let under_declares = self.scenario.byzantine == Some((index, Byzantine::UnderDeclared));
            if under_declares
                && weft_node::block::SealedBlock::decode(block.clone())
                    .is_ok_and(|b| !b.block.txs.is_empty())
                && self.lies.insert(proposal.message.value.0)
            {
                self.report.lies_proposed += 1;
            }
        }
        self.published
            .entry(height)
            .or_default()
            .push((id, index, message.clone()));
        for to in 0..self.nodes.len() {
            if to != index && self.nodes[to].up() && self.link(index, to) {
                let at = self.now + self.delay();
                self.schedule(at, to, Ev::Message(message.clone()));
            }
        }
    }

    fn is_byzantine(&self, index: usize) -> bool {
        self.scenario
            .byzantine
            .is_some_and(|(liar, _)| liar == index)
    }

    /// No double sign, and persist before speak (of honest nodes).
    fn check_signature(&mut self, index: usize, message: &Message) {
        if self.is_byzantine(index) {
            return;
        }
        let (record, key) = match message {
            Message::Vote(vote) => {
                let v = vote.message;
                let kind = match v.vote_type {
                    VoteType::Prevote => 1,
                    VoteType::Precommit => 2,
                };
                (LastSigned::Vote(v), (index, v.height.0, v.round.0, kind))
            }
            Message::Proposal { proposal, .. } => {
                let p = proposal.message;
                (LastSigned::Proposal(p), (index, p.height.0, p.round.0, 0))
            }
            _ => return,
        };
        if let Some(before) = self.signed.get(&key)
            && *before != record
        {
            self.report.violations.push(Violation::DoubleSign {
                validator: index,
                detail: format!("{before:?} then {record:?}"),
            });
        }
        self.signed.insert(key, record);
        let disk = &self.nodes[index].disk;
        let guard = disk.guard();
        let guarded = match GuardState::new(guard).check(&record) {
            Ok(()) => guard == Some(record),
            Err(GuardError::Regression(_)) => true,
            Err(_) => false,
        };
        if !disk.wal_synced() || !guarded {
            self.report.violations.push(Violation::SpokeBeforePersist {
                node: index,
                detail: format!(
                    "{record:?} with the WAL {} and the guard at {guard:?}",
                    if disk.wal_synced() {
                        "durable"
                    } else {
                        "not durable"
                    }
                ),
            });
        }
    }

    fn on_committed(&mut self, index: usize, committed: &weft_node::chain::Committed) {
        let height = committed.block.block.header.height.0;
        let hash = committed.block.hash.0;
        if self.is_byzantine(index) {
            return;
        }
        if !self.proposed.contains(&hash) {
            self.report.violations.push(Violation::Validity {
                height,
                node: index,
            });
        }
        if self.lies.contains(&hash) {
            self.report.violations.push(Violation::LieCommitted {
                height,
                node: index,
            });
        }
        match self.committed.get(&height) {
            Some(other) if *other != hash => self.report.violations.push(Violation::Agreement {
                height,
                node: index,
            }),
            Some(_) => {}
            None => {
                self.committed.insert(height, hash);
            }
        }
        let node = &mut self.nodes[index];
        node.highest_committed = node.highest_committed.max(height);
        if let Some(chain) = &node.chain {
            let chain = chain.read();
            if chain.height().0 == height {
                let root = chain.state_root();
                match self.roots.get(&height) {
                    Some(other) if *other != root => {
                        self.report.violations.push(Violation::StateRoot {
                            height,
                            node: index,
                        })
                    }
                    Some(_) => {}
                    None => {
                        self.roots.insert(height, root);
                    }
                }
            }
        }
        for (hash, result) in committed.tx_hashes.iter().zip(&committed.outcome.results) {
            self.acked.insert(*hash, height);
            if self.update_txs.contains(hash) && result.code != weft_execution::TxCode::Ok {
                self.report.violations.push(Violation::UpdateRefused {
                    height,
                    node: index,
                    code: result.code as u8,
                });
            }
        }
    }

    fn finish(&mut self) {
        self.report.virtual_ms = self.now - GENESIS_MS;
        self.report.committed_txs = self.acked.len();
        self.report.validator_updates = self
            .update_txs
            .iter()
            .filter(|hash| self.acked.contains_key(hash))
            .count();
        let target = self.scenario.target_height;
        let mut lowest = u64::MAX;
        for (index, node) in self.nodes.iter().enumerate() {
            if node.failed || self.is_byzantine(index) || Some(index) == self.scenario.silent {
                continue;
            }
            let Some(chain) = &node.chain else {
                self.report.violations.push(Violation::Liveness {
                    node: index,
                    height: 0,
                });
                continue;
            };
            let chain = chain.read();
            let height = chain.height().0;
            lowest = lowest.min(height);
            if height < target {
                self.report.violations.push(Violation::Liveness {
                    node: index,
                    height,
                });
            }
            for (hash, at) in &self.acked {
                if *at <= height
                    && !matches!(chain.tx(hash), Ok(Some(location)) if location.height.0 == *at)
                {
                    self.report.violations.push(Violation::TxLost {
                        node: index,
                        height: *at,
                    });
                }
            }
        }
        self.report.height = if lowest == u64::MAX { 0 } else { lowest };
    }
}

/// Opens a node's chain. sled releases its database's file lock from a background thread
/// shortly after the last handle of a crashed node drops; a reopen waits for that, up to a
/// deadline.
fn open_chain(
    dir: &std::path::Path,
    genesis: &Genesis,
) -> Result<Chain, weft_node::chain::ChainError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Chain::open(dir, genesis.clone(), 1) {
            Err(error)
                if error.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::yield_now();
            }
            result => return result,
        }
    }
}

/// A directory for one node's database: in memory (`/dev/shm`) where there is one, so that
/// the chain's flushes cost no disk.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix("weft-sim-").tempdir_in(shm);
    match builder {
        Ok(dir) => dir,
        Err(_) => tempfile::tempdir().expect("a temporary directory"),
    }
}
