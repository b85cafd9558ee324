//! A deterministic multi-node simulator for the consensus core: test support, public so that
//! the bench binary can use it.
//!
//! A [`Scenario`] says everything about a run: the validators and their power, which nodes
//! hold which keys and how they behave (honest, silent, equivocating, lying when proposing,
//! forgetting their lock, or twins sharing a key), the network (delays, drops, duplicates,
//! partitions that heal at GST, the bound Δ after it), the timeouts, and the crashes. [`run`]
//! simulates it in virtual time, single-threaded, drawing every random choice from the
//! scenario's seed, so a seed reproduces a run exactly. It never reads a clock, does IO, or
//! prints.
//!
//! The checkers run on every run and report [`Violation`]s in the [`Report`]:
//! - **agreement**: no two honest nodes decide different values at one height;
//! - **validity**: every value an honest node decides was proposed and is valid;
//! - **no double sign**: no honest node sends two different votes for one (height, round,
//!   type) or two different proposals for one (height, round), across crashes too; and every
//!   signature follows the `Persist` of what it signs;
//! - **liveness**: when byzantine power is below a third and the timeouts outgrow Δ, every
//!   honest node decides every target height within a bounded number of rounds after the run
//!   stabilises (GST, every crashed node back up).
//!
//! Nodes are honest when they behave honestly and hold a key no other node holds; twins
//! count as byzantine.
//!
//! The network gives what Tendermint assumes (see `world`): an honest node's gossip reaches
//! every node, retransmitted after GST if lost before it, and a node that falls behind fetches
//! decided heights' commit certificates (block sync). Signatures are fake but unforgeable in
//! the simulation: a blake3 keyed hash under a per-validator secret, and a node only ever signs
//! with its own.
//!
//! Modules: `scenario` (what a run is, and its generation from a seed), `world` (the nodes,
//! network, WAL, crashes, byzantine acts and online checks), `report` (what comes back), `rng`
//! (xoshiro256**).
//!
//! To replay one seed of the seed test, see `tests/it/sim.rs`: `Scenario::from_seed(seed)`
//! rebuilds the scenario and [`run`] reproduces the run exactly.

mod report;
mod rng;
mod scenario;
mod world;

use std::panic::{AssertUnwindSafe, catch_unwind};

pub use report::{Counts, Decision, EvidenceKind, EvidenceSeen, Report, Violation};
pub use rng::SimRng;
pub use scenario::{
    Behaviour, Crash, FaultMix, Misbehaviour, NODES_MAX, NetworkParams, NodeSpec, Partition,
    SEED_VALIDATOR_COUNTS, Scenario, ScenarioError,
};
pub use world::CHAIN_ID;

/// Simulates `scenario` and checks it. A scenario that does not validate, or a machine that
/// stops itself on a broken invariant (a panic), comes back as a violation.
pub fn run(scenario: &Scenario) -> Report {
    if let Err(error) = scenario.validate() {
        return Report {
            seed: scenario.seed,
            violations: vec![Violation::Scenario(error)],
            ..Report::default()
        };
    }
    match catch_unwind(AssertUnwindSafe(|| world::Sim::new(scenario).run())) {
        Ok(report) => report,
        Err(payload) => Report {
            seed: scenario.seed,
            violations: vec![Violation::Panic(panic_message(payload.as_ref()))],
            ..Report::default()
        },
    }
}

/// The message a caught panic carried (for simulators that report a panic as a violation).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".to_string())
}
