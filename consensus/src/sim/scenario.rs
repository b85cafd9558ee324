//! What a run simulates: validators and their power, nodes and their behaviour, the network,
//! timeouts, crashes. Everything is explicit data; [`Scenario::from_seed`] and
//! [`Scenario::generate`] derive it from a seed, so a seed alone reproduces a run.

use std::fmt;

use thiserror::Error;

use crate::types::{TimeoutKind, TimeoutParams, VotingPower};
use crate::validators::TOTAL_VOTING_POWER_MAX;

use super::rng::SimRng;

/// Node indices are bits of a `u128` in the simulator's per-message bookkeeping.
pub const NODES_MAX: usize = 128;
/// Validator counts [`Scenario::from_seed`] draws from.
pub const SEED_VALIDATOR_COUNTS: [usize; 3] = [4, 7, 10];
/// The virtual-time cap of generated scenarios. Runs that expect liveness end earlier, at their
/// liveness deadline.
const GENERATED_TIME_LIMIT_MS: u64 = 600_000;
/// The stream of the seed that generation draws from; runs draw from another.
const GENERATION_STREAM: u64 = 0x5EED_0F5C_E4A2_1005;

/// What a node does with the machine it runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Behaviour {
    /// Runs the machine and every effect faithfully.
    Honest,
    /// Runs nothing and sends nothing.
    Silent,
    /// Runs the machine, and misbehaves in the chosen ways.
    Byzantine(Misbehaviour),
}

/// The ways a byzantine node misbehaves; they combine.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Misbehaviour {
    /// For each vote it signs, also signs a different one (another value or nil) and sends
    /// each peer one of the two.
    pub equivocate: bool,
    /// When it proposes, sends each peer one of: its proposal, one for another valid value,
    /// one for an invalid value, one with another POL round.
    pub lie_when_proposing: bool,
    /// Forgets its lock before every proposal it handles.
    pub amnesia: bool,
}

/// One simulated node. Two nodes with the same `validator` are twins: they share a key, each
/// runs its own machine, and both count as byzantine.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NodeSpec {
    /// Index into [`Scenario::powers`].
    pub validator: usize,
    pub behaviour: Behaviour,
}

/// Before `until_ms` (at most GST), messages between nodes in different groups are dropped.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Partition {
    pub from_ms: u64,
    pub until_ms: u64,
    /// The group of each node, by node index.
    pub group_of_node: Vec<u8>,
}

/// The network. Before GST messages can be dropped, partitioned and delayed up to
/// `delay_max_before_gst_ms`; a message an honest node gossips that is lost then is delivered
/// again after GST (the gossip layer's retransmission). From GST on, every message between
/// honest nodes arrives within `delta_ms` (Δ).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NetworkParams {
    pub delay_min_ms: u64,
    pub delay_max_before_gst_ms: u64,
    pub delta_ms: u64,
    pub gst_ms: u64,
    /// Before GST, the chance a message is dropped.
    pub drop_per_mille: u32,
    /// The chance a message is delivered twice.
    pub duplicate_per_mille: u32,
    pub partitions: Vec<Partition>,
}

/// An honest node crashes at `at_ms` and restarts from its WAL `down_ms` after it crashed.
/// With `effects_before_crash: Some(k)`, the crash is armed at `at_ms` instead: it strikes in
/// the middle of the next batch of effects that signs something, `k` effects after the batch's
/// first Persist (k = 1: persisted, not yet signed), or at `at_ms + down_ms` if no such batch
/// comes first. Either way the node is back up by [`Crash::latest_restart_ms`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Crash {
    pub node: usize,
    pub at_ms: u64,
    pub down_ms: u64,
    pub effects_before_crash: Option<u32>,
}

impl Crash {
    pub fn latest_restart_ms(&self) -> u64 {
        let armed_ms = if self.effects_before_crash.is_some() {
            self.down_ms
        } else {
            0
        };
        self.at_ms
            .saturating_add(armed_ms)
            .saturating_add(self.down_ms)
    }
}

/// The fault mixes the seed test covers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultMix {
    /// A good network from the start.
    Honest,
    /// Drops, duplicates, heavy delays and partitions before GST.
    Network,
    /// Network faults, and honest nodes that crash and restart from their WAL.
    CrashRestart,
    /// Network faults, and byzantine validators that say nothing.
    Silent,
    Equivocate,
    LyingProposer,
    Amnesia,
    /// Network faults, and byzantine validators whose key two nodes hold, each in its own
    /// partition until GST.
    Twins,
    /// A random behaviour per byzantine validator, crashes and network faults together.
    Mixed,
}

impl FaultMix {
    pub const ALL: [FaultMix; 9] = [
        FaultMix::Honest,
        FaultMix::Network,
        FaultMix::CrashRestart,
        FaultMix::Silent,
        FaultMix::Equivocate,
        FaultMix::LyingProposer,
        FaultMix::Amnesia,
        FaultMix::Twins,
        FaultMix::Mixed,
    ];

    fn has_byzantine(self) -> bool {
        !matches!(
            self,
            FaultMix::Honest | FaultMix::Network | FaultMix::CrashRestart
        )
    }

    fn has_crashes(self) -> bool {
        matches!(self, FaultMix::CrashRestart | FaultMix::Mixed)
    }
}

/// A complete description of one run.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Scenario {
    pub seed: u64,
    /// The mix it was generated from; informative only.
    pub mix: Option<FaultMix>,
    /// One entry per validator key.
    pub powers: Vec<VotingPower>,
    pub nodes: Vec<NodeSpec>,
    pub network: NetworkParams,
    pub timeouts: TimeoutParams,
    pub crashes: Vec<Crash>,
    /// The run ends when every honest node decided heights 1..=target_heights.
    pub target_heights: u64,
    /// How long a node at a height some honest node decided waits before it fetches that
    /// decision's certificate (block sync).
    pub block_sync_delay_ms: u64,
    /// A cap on virtual time.
    pub time_limit_ms: u64,
    /// Sign and verify (fake, blake3-keyed) signatures; the bench turns this off.
    pub sign_messages: bool,
}

#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum ScenarioError {
    #[error("{0} nodes; between 1 and {NODES_MAX} are supported")]
    NodeCount(usize),
    #[error("node {node} names validator {validator}, but there are {validators}")]
    UnknownValidator {
        node: usize,
        validator: usize,
        validators: usize,
    },
    #[error("validator powers must be positive and total at most {TOTAL_VOTING_POWER_MAX}")]
    Powers,
    #[error("network: {0}")]
    Network(&'static str),
    #[error("crash {0} is not of an honest node, overlaps another, or restarts past the limit")]
    Crash(usize),
    #[error("target_heights must be positive")]
    Heights,
}

impl Scenario {
    /// The scenario of one seed of the seed test: the validator count and the fault mix are
    /// taken from the seed too (round-robin, so consecutive seeds cover every combination).
    pub fn from_seed(seed: u64) -> Scenario {
        let counts = SEED_VALIDATOR_COUNTS.len() as u64;
        let validators = SEED_VALIDATOR_COUNTS[(seed % counts) as usize];
        let mixes = FaultMix::ALL.len() as u64;
        let mix = FaultMix::ALL[((seed / counts) % mixes) as usize];
        Scenario::generate(seed, validators, mix)
    }

    /// A scenario of `validators` validators with `mix`, whose byzantine power stays below a
    /// third of the total.
    pub fn generate(seed: u64, validators: usize, mix: FaultMix) -> Scenario {
        generate(seed, validators, mix, None)
    }

    /// As [`Scenario::generate`], with exactly `byzantine` byzantine validators of equal power,
    /// whether or not that stays within f: for showing that the checkers catch what breaks.
    pub fn generate_with_byzantine(
        seed: u64,
        validators: usize,
        mix: FaultMix,
        byzantine: usize,
    ) -> Scenario {
        generate(seed, validators, mix, Some(byzantine))
    }

    /// No faults, a quick network, no signatures: what the bench measures.
    pub fn fault_free(seed: u64, validators: usize, target_heights: u64) -> Scenario {
        let delta_ms = 10;
        Scenario {
            seed,
            mix: Some(FaultMix::Honest),
            powers: vec![1; validators],
            nodes: (0..validators)
                .map(|validator| NodeSpec {
                    validator,
                    behaviour: Behaviour::Honest,
                })
                .collect(),
            network: NetworkParams {
                delay_min_ms: 1,
                delay_max_before_gst_ms: delta_ms,
                delta_ms,
                gst_ms: 0,
                drop_per_mille: 0,
                duplicate_per_mille: 0,
                partitions: Vec::new(),
            },
            timeouts: timeouts_scaled(delta_ms),
            crashes: Vec::new(),
            target_heights,
            block_sync_delay_ms: 10 * delta_ms,
            time_limit_ms: u64::MAX / 4,
            sign_messages: false,
        }
    }

    pub fn validate(&self) -> Result<(), ScenarioError> {
        let count = self.nodes.len();
        if count == 0 || count > NODES_MAX {
            return Err(ScenarioError::NodeCount(count));
        }
        for (node, spec) in self.nodes.iter().enumerate() {
            if spec.validator >= self.powers.len() {
                return Err(ScenarioError::UnknownValidator {
                    node,
                    validator: spec.validator,
                    validators: self.powers.len(),
                });
            }
        }
        let total = self
            .powers
            .iter()
            .try_fold(0u64, |sum, &power| sum.checked_add(power));
        if self.powers.contains(&0) || total.is_none_or(|t| t > TOTAL_VOTING_POWER_MAX) {
            return Err(ScenarioError::Powers);
        }
        self.validate_network()?;
        self.validate_crashes()?;
        if self.target_heights == 0 {
            return Err(ScenarioError::Heights);
        }
        Ok(())
    }

    fn validate_network(&self) -> Result<(), ScenarioError> {
        let network = &self.network;
        if network.delay_min_ms == 0 {
            return Err(ScenarioError::Network("delay_min_ms must be at least 1"));
        }
        if network.delay_min_ms > network.delta_ms
            || network.delta_ms > network.delay_max_before_gst_ms
        {
            return Err(ScenarioError::Network(
                "need delay_min_ms <= delta_ms <= delay_max_before_gst_ms",
            ));
        }
        if network.drop_per_mille > 1_000 || network.duplicate_per_mille > 1_000 {
            return Err(ScenarioError::Network("a chance above 1000 per mille"));
        }
        for partition in &network.partitions {
            if partition.until_ms > network.gst_ms || partition.from_ms > partition.until_ms {
                return Err(ScenarioError::Network("a partition must heal by GST"));
            }
            if partition.group_of_node.len() != self.nodes.len() {
                return Err(ScenarioError::Network("a partition must name every node"));
            }
        }
        Ok(())
    }

    fn validate_crashes(&self) -> Result<(), ScenarioError> {
        for (index, crash) in self.crashes.iter().enumerate() {
            let honest = self.is_honest(crash.node);
            let overlaps = self.crashes[..index].iter().any(|earlier| {
                earlier.node == crash.node && crash.at_ms <= earlier.latest_restart_ms()
            });
            let late = crash.latest_restart_ms() >= self.time_limit_ms;
            if !honest || overlaps || crash.at_ms == 0 || late {
                return Err(ScenarioError::Crash(index));
            }
        }
        Ok(())
    }

    /// Honest: behaves honestly and holds a key no other node holds.
    pub fn is_honest(&self, node: usize) -> bool {
        let Some(spec) = self.nodes.get(node) else {
            return false;
        };
        spec.behaviour == Behaviour::Honest
            && self
                .nodes
                .iter()
                .filter(|other| other.validator == spec.validator)
                .count()
                == 1
    }

    /// A validator is byzantine when a node holding its key is not honest, or no node holds it.
    pub fn byzantine_validators(&self) -> Vec<usize> {
        (0..self.powers.len())
            .filter(|&validator| {
                let holders: Vec<usize> = (0..self.nodes.len())
                    .filter(|&node| self.nodes[node].validator == validator)
                    .collect();
                holders.is_empty() || holders.iter().any(|&node| !self.is_honest(node))
            })
            .collect()
    }

    pub fn byzantine_power(&self) -> VotingPower {
        self.byzantine_validators()
            .iter()
            .map(|&v| self.powers[v])
            .sum()
    }

    pub fn total_power(&self) -> VotingPower {
        self.powers.iter().sum()
    }

    /// Byzantine power is below a third of the total, and after GST the timeouts grow past
    /// the network's bound: Tendermint then promises liveness, and the run checks it.
    pub fn expects_liveness(&self) -> bool {
        let byzantine_below_third =
            u128::from(self.byzantine_power()) * 3 < u128::from(self.total_power());
        byzantine_below_third && self.rounds_until_timeouts_cover_delta().is_some()
    }

    /// How many rounds until every timeout is at least 4Δ, or `None` if it never gets there.
    pub fn rounds_until_timeouts_cover_delta(&self) -> Option<u64> {
        let needed_ms = 4 * self.network.delta_ms;
        let mut rounds = 0;
        for kind in [
            TimeoutKind::Propose,
            TimeoutKind::Prevote,
            TimeoutKind::Precommit,
        ] {
            let base = self.timeouts.duration_ms(kind, crate::types::Round(0));
            let per_round = self.timeouts.duration_ms(kind, crate::types::Round(1)) - base;
            let missing = needed_ms.saturating_sub(base);
            if missing > 0 {
                if per_round == 0 {
                    return None;
                }
                rounds = rounds.max(missing.div_ceil(per_round));
            }
        }
        Some(rounds)
    }

    /// When nothing is left to stabilise: GST, and every crashed node back up.
    pub fn stable_from_ms(&self) -> u64 {
        self.crashes
            .iter()
            .map(Crash::latest_restart_ms)
            .fold(self.network.gst_ms, u64::max)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} ({:?}): {} validators, {} nodes, byzantine power {}/{}, GST {} ms, \
             {} crashes, {} heights",
            self.seed,
            self.mix,
            self.powers.len(),
            self.nodes.len(),
            self.byzantine_power(),
            self.total_power(),
            self.network.gst_ms,
            self.crashes.len(),
            self.target_heights
        )
    }
}

/// Timeouts that comfortably cover a network bound of `delta_ms` from round 0.
fn timeouts_scaled(delta_ms: u64) -> TimeoutParams {
    TimeoutParams {
        propose_ms: 6 * delta_ms,
        propose_delta_ms: delta_ms,
        prevote_ms: 4 * delta_ms,
        prevote_delta_ms: delta_ms,
        precommit_ms: 4 * delta_ms,
        precommit_delta_ms: delta_ms,
    }
}

/// Timeouts drawn around Δ: some start below it, and only their per-round growth takes them
/// past it after GST.
fn random_timeouts(rng: &mut SimRng, delta_ms: u64) -> TimeoutParams {
    let mut draw = |low: u64, high: u64| rng.range(low, high);
    TimeoutParams {
        propose_ms: draw(delta_ms / 2, 4 * delta_ms),
        propose_delta_ms: draw(delta_ms / 4, delta_ms),
        prevote_ms: draw(delta_ms / 2, 3 * delta_ms),
        prevote_delta_ms: draw(delta_ms / 4, delta_ms),
        precommit_ms: draw(delta_ms / 2, 3 * delta_ms),
        precommit_delta_ms: draw(delta_ms / 4, delta_ms),
    }
}

fn generate(seed: u64, validators: usize, mix: FaultMix, byzantine: Option<usize>) -> Scenario {
    assert!(
        (1..NODES_MAX / 2).contains(&validators),
        "{validators} validators"
    );
    let mut rng = SimRng::new(seed ^ GENERATION_STREAM);
    let delta_ms = rng.range(10, 40);
    let weighted = byzantine.is_none() && mix != FaultMix::Honest && rng.chance(250);
    let powers: Vec<VotingPower> = if weighted {
        (0..validators).map(|_| rng.range(1, 5)).collect()
    } else {
        vec![1; validators]
    };
    let byzantine_set = match byzantine {
        Some(count) => pick_exactly(&mut rng, validators, count),
        None if mix.has_byzantine() => pick_below_third(&mut rng, &powers),
        None => Vec::new(),
    };
    let mut nodes: Vec<NodeSpec> = (0..validators)
        .map(|validator| NodeSpec {
            validator,
            behaviour: Behaviour::Honest,
        })
        .collect();
    for &validator in &byzantine_set {
        make_byzantine(&mut rng, &mut nodes, validator, mix);
    }
    let network = random_network(&mut rng, &nodes, delta_ms, mix);
    let mut scenario = Scenario {
        seed,
        mix: Some(mix),
        powers,
        nodes,
        network,
        timeouts: random_timeouts(&mut rng, delta_ms),
        crashes: Vec::new(),
        target_heights: rng.range(3, 6),
        block_sync_delay_ms: rng.range(2 * delta_ms, 10 * delta_ms),
        time_limit_ms: GENERATED_TIME_LIMIT_MS,
        sign_messages: true,
    };
    if mix.has_crashes() {
        scenario.crashes = random_crashes(&mut rng, &scenario);
    }
    scenario
}

fn pick_exactly(rng: &mut SimRng, validators: usize, count: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..validators).collect();
    rng.shuffle(&mut all);
    all.truncate(count.min(validators));
    all.sort_unstable();
    all
}

/// A random set of at least one and at most f validators (by power) when one fits.
fn pick_below_third(rng: &mut SimRng, powers: &[VotingPower]) -> Vec<usize> {
    let total: u64 = powers.iter().sum();
    let mut order: Vec<usize> = (0..powers.len()).collect();
    rng.shuffle(&mut order);
    let wanted = rng.range(1, powers.len() as u64) as usize;
    let mut chosen = Vec::new();
    let mut power = 0;
    for validator in order {
        if chosen.len() < wanted && (power + powers[validator]) * 3 < total {
            power += powers[validator];
            chosen.push(validator);
        }
    }
    chosen.sort_unstable();
    chosen
}

fn make_byzantine(rng: &mut SimRng, nodes: &mut Vec<NodeSpec>, validator: usize, mix: FaultMix) {
    let acts = |equivocate, lie_when_proposing, amnesia| {
        Behaviour::Byzantine(Misbehaviour {
            equivocate,
            lie_when_proposing,
            amnesia,
        })
    };
    let behaviour = match mix {
        FaultMix::Silent => Behaviour::Silent,
        FaultMix::Equivocate => acts(true, false, false),
        FaultMix::LyingProposer => acts(false, true, false),
        FaultMix::Amnesia => acts(false, false, true),
        FaultMix::Twins => Behaviour::Honest,
        _ => match rng.below(5) {
            0 => Behaviour::Silent,
            1 => Behaviour::Honest, // a twin, below
            _ => loop {
                let (e, l, a) = (rng.coin(), rng.coin(), rng.coin());
                if e || l || a {
                    break acts(e, l, a);
                }
            },
        },
    };
    nodes[validator].behaviour = behaviour;
    if behaviour == Behaviour::Honest {
        nodes.push(NodeSpec {
            validator,
            behaviour: Behaviour::Honest,
        });
    }
}

fn random_network(
    rng: &mut SimRng,
    nodes: &[NodeSpec],
    delta_ms: u64,
    mix: FaultMix,
) -> NetworkParams {
    if mix == FaultMix::Honest {
        return NetworkParams {
            delay_min_ms: 1,
            delay_max_before_gst_ms: delta_ms,
            delta_ms,
            gst_ms: 0,
            drop_per_mille: 0,
            duplicate_per_mille: rng.range(0, 50) as u32,
            partitions: Vec::new(),
        };
    }
    let gst_ms = rng.range(100, 1_500);
    let mut partitions = Vec::new();
    let twins = twin_copies(nodes);
    if !twins.is_empty() {
        // Every twin pair split across the two sides until GST, and the honest nodes dealt
        // out evenly between them: the split that comes closest to two quorums.
        let mut others: Vec<usize> = (0..nodes.len())
            .filter(|&node| nodes_sharing(nodes, node) == 1)
            .collect();
        rng.shuffle(&mut others);
        let first_side = rng.below(2) as usize;
        let group_of_node = (0..nodes.len())
            .map(
                |node| match others.iter().position(|&other| other == node) {
                    Some(dealt) => ((dealt + first_side) % 2) as u8,
                    None if twins.iter().any(|&(_, copy)| copy == node) => 1,
                    None => 0,
                },
            )
            .collect();
        partitions.push(Partition {
            from_ms: 0,
            until_ms: gst_ms,
            group_of_node,
        });
    } else {
        for _ in 0..rng.below(3) {
            let from_ms = rng.range(0, gst_ms);
            let until_ms = rng.range(from_ms, gst_ms);
            let groups = rng.range(2, 3);
            let group_of_node = nodes.iter().map(|_| rng.below(groups) as u8).collect();
            partitions.push(Partition {
                from_ms,
                until_ms,
                group_of_node,
            });
        }
    }
    NetworkParams {
        delay_min_ms: 1,
        delay_max_before_gst_ms: rng.range(delta_ms, 8 * delta_ms),
        delta_ms,
        gst_ms,
        drop_per_mille: rng.range(0, 300) as u32,
        duplicate_per_mille: rng.range(0, 100) as u32,
        partitions,
    }
}

fn nodes_sharing(nodes: &[NodeSpec], node: usize) -> usize {
    nodes
        .iter()
        .filter(|other| other.validator == nodes[node].validator)
        .count()
}

/// (first holder, later holder) of every shared key.
fn twin_copies(nodes: &[NodeSpec]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for (later, spec) in nodes.iter().enumerate() {
        if let Some(first) = nodes[..later]
            .iter()
            .position(|n| n.validator == spec.validator)
        {
            pairs.push((first, later));
        }
    }
    pairs
}

/// Crashes of a few honest nodes (any number of them may be down at once before GST), each
/// up again by shortly after GST.
fn random_crashes(rng: &mut SimRng, scenario: &Scenario) -> Vec<Crash> {
    let mut honest: Vec<usize> = (0..scenario.nodes.len())
        .filter(|&node| scenario.is_honest(node))
        .collect();
    rng.shuffle(&mut honest);
    let victims = rng.range(1, honest.len().min(3) as u64) as usize;
    let latest_ms = scenario.network.gst_ms + 300;
    let mut crashes = Vec::new();
    for &node in &honest[..victims] {
        let mut at_ms = rng.range(1, latest_ms);
        for _ in 0..rng.range(1, 2) {
            let down_ms = rng.range(5, 400);
            let effects_before_crash = rng.coin().then(|| rng.range(0, 3) as u32);
            let crash = Crash {
                node,
                at_ms,
                down_ms,
                effects_before_crash,
            };
            crashes.push(crash);
            at_ms = crash.latest_restart_ms() + rng.range(1, 300);
        }
    }
    crashes
}
