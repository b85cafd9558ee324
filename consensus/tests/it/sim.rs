//! The simulator: every seed keeps agreement, validity, no double sign and liveness; beyond f
//! the checkers catch a violation; crashes, lying proposers and equivocators do what they
//! should.
//!
//! A failing seed prints itself and its scenario. To replay one seed:
//!
//! ```text
//! WEFT_SIM_SEED=<n> cargo test -p weft-consensus --test it sim::replay_one_seed -- --nocapture
//! ```
//!
//! which runs `Scenario::from_seed(n)` alone, prints its scenario and report, and fails on any
//! violation. Without the variable that test runs a small fixed table of seeds.

use std::thread;

use weft_consensus::sim::{
    Behaviour, Crash, EvidenceKind, FaultMix, Misbehaviour, Report, SEED_VALIDATOR_COUNTS,
    Scenario, Violation, run,
};

/// Seeds of the seed test: `Scenario::from_seed` walks N ∈ {4, 7, 10} × every fault mix
/// round-robin, so this is 150 seeds of each combination.
const SEEDS: u64 = 4_050;
/// The seed test splits its seeds over this many threads (the CI machine has 2 cores).
const SEED_THREADS: u64 = 2;
/// How many failing seeds the seed test prints in full (it lists them all).
const FAILURES_SHOWN: usize = 5;
/// The fixed table `replay_one_seed` runs without `WEFT_SIM_SEED`.
const REPLAY_TABLE: [u64; 6] = [0, 1, 2, 26, 1_000, 4_049];

/// Runs `scenario` and returns its report, or a description of what went wrong that names the
/// seed and the scenario.
fn check(scenario: &Scenario) -> Result<Report, String> {
    let report = run(scenario);
    if report.is_clean() {
        return Ok(report);
    }
    let violations: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
    Err(format!(
        "{scenario}\n  violations: {violations:#?}\n  replay: WEFT_SIM_SEED={} \
         cargo test -p weft-consensus --test it sim::replay_one_seed -- --nocapture\n  \
         scenario: {scenario:?}",
        scenario.seed
    ))
}

#[test]
fn every_seed_keeps_agreement_validity_no_double_sign_and_liveness() {
    let workers: Vec<_> = (0..SEED_THREADS)
        .map(|worker| {
            thread::spawn(move || {
                let mut failures = Vec::new();
                let mut live = 0u64;
                for seed in (worker..SEEDS).step_by(SEED_THREADS as usize) {
                    let scenario = Scenario::from_seed(seed);
                    match check(&scenario) {
                        Ok(report) => live += u64::from(report.liveness_checked),
                        Err(failure) => failures.push((seed, failure)),
                    }
                }
                (failures, live)
            })
        })
        .collect();
    let mut failures: Vec<(u64, String)> = Vec::new();
    let mut live = 0;
    for worker in workers {
        let (more, checked) = worker.join().expect("a seed worker panicked");
        failures.extend(more);
        live += checked;
    }
    failures.sort_by_key(|(seed, _)| *seed);
    assert!(
        failures.is_empty(),
        "{} of {SEEDS} seeds failed: {:?}\nthe first ones:\n{}",
        failures.len(),
        failures.iter().map(|(seed, _)| seed).collect::<Vec<_>>(),
        failures
            .iter()
            .take(FAILURES_SHOWN)
            .map(|(_, failure)| failure.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    // Every generated scenario keeps byzantine power within f, so each checks liveness.
    assert_eq!(live, SEEDS, "seeds that checked liveness");
}

#[test]
fn the_seeds_cover_every_size_and_fault_mix() {
    let combinations = (SEED_VALIDATOR_COUNTS.len() * FaultMix::ALL.len()) as u64;
    assert!(SEEDS >= 2_000 && SEEDS.is_multiple_of(combinations));
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..combinations * 8 {
        let scenario = Scenario::from_seed(seed);
        let mix = scenario.mix.expect("generated");
        seen.insert((scenario.powers.len(), format!("{mix:?}")));
        assert!(scenario.expects_liveness(), "{scenario}");
        let twins = scenario.nodes.len() > scenario.powers.len();
        let byzantine = scenario.byzantine_power() > 0;
        let faulty_network = scenario.network.gst_ms > 0;
        let weighted = scenario.powers.iter().any(|&p| p > 1);
        let expected = match mix {
            FaultMix::Honest => !byzantine && !faulty_network && scenario.crashes.is_empty(),
            FaultMix::Network => !byzantine && faulty_network && scenario.crashes.is_empty(),
            FaultMix::CrashRestart => !byzantine && !scenario.crashes.is_empty(),
            FaultMix::Twins => faulty_network && (twins || weighted),
            FaultMix::Mixed => !scenario.crashes.is_empty(),
            // Weighted powers can leave no validator light enough to be byzantine within f.
            _ => byzantine || weighted,
        };
        assert!(expected, "{scenario}");
    }
    assert_eq!(seen.len() as u64, combinations);
}

#[test]
fn replay_one_seed() {
    let seeds: Vec<u64> = match std::env::var("WEFT_SIM_SEED") {
        Ok(seed) => vec![seed.trim().parse().expect("WEFT_SIM_SEED is a u64")],
        Err(_) => REPLAY_TABLE.to_vec(),
    };
    for seed in seeds {
        let scenario = Scenario::from_seed(seed);
        let report = run(&scenario);
        if std::env::var("WEFT_SIM_SEED").is_ok() {
            println!("{scenario:#?}\n{report:#?}");
        }
        if let Err(failure) = check(&scenario) {
            panic!("{failure}");
        }
        // The seed alone fixes the run, to the last count.
        assert_eq!(run(&scenario), report, "seed {seed} is not reproducible");
        assert!(
            report.counts.heights_decided_min >= 1,
            "seed {seed}: {report:?}"
        );
    }
}

/// Beyond f the checkers are not vacuous: two of four keys held by twins, each twin in its own
/// partition until GST, split the honest nodes' decisions on some seed.
#[test]
fn beyond_f_the_checkers_find_a_violation() {
    let mut caught = Vec::new();
    for seed in 0..64 {
        let scenario = Scenario::generate_with_byzantine(seed, 4, FaultMix::Twins, 2);
        assert!(scenario.byzantine_power() * 3 >= scenario.total_power());
        let report = run(&scenario);
        assert!(!report.liveness_checked, "{scenario}");
        let unsafe_run = report.violations.iter().any(|v| {
            matches!(
                v,
                Violation::Agreement { .. }
                    | Violation::Validity { .. }
                    | Violation::DoubleSignVote { .. }
                    | Violation::DoubleSignProposal { .. }
            )
        });
        if unsafe_run {
            caught.push(seed);
        }
    }
    assert!(!caught.is_empty(), "no seed broke safety with 2 of 4 twins");
}

/// Where the crash test's crashes strike: between events, or in a batch that signs, before
/// its Persist, between Persist and signature (most of them), or just after the signature.
const CRASH_POINTS: [Option<u32>; 5] = [None, Some(1), Some(1), Some(0), Some(2)];

/// Crashes at many points of a run, some between a Persist and the signature it guards:
/// the node never signs anything conflicting, and rejoins to decide every height.
#[test]
fn a_crash_mid_height_never_double_signs_and_the_node_rejoins() {
    let mut restarted_then_decided = 0;
    let mut between_persist_and_sign = 0;
    for seed in 0..8u64 {
        let mut base = Scenario::generate(seed, 4, FaultMix::Honest);
        base.target_heights = 4;
        let clean = check(&base).unwrap_or_else(|failure| panic!("{failure}"));
        let node = (seed % 4) as usize;
        let last_ms = clean.end_ms;
        for step in 1..=12u64 {
            let mut scenario = base.clone();
            let at_ms = last_ms * step / 16 + 1;
            scenario.crashes = vec![Crash {
                node,
                at_ms,
                down_ms: 5 + step * 7,
                effects_before_crash: CRASH_POINTS[(step % 5) as usize],
            }];
            let report = check(&scenario).unwrap_or_else(|failure| panic!("{failure}"));
            assert_eq!(report.counts.crashes, 1, "{scenario}");
            assert_eq!(report.counts.restarts, 1, "{scenario}");
            between_persist_and_sign += report.counts.crashes_between_persist_and_sign;
            let decided: Vec<_> = report.decisions.iter().filter(|d| d.node == node).collect();
            assert_eq!(decided.len() as u64, scenario.target_heights, "{scenario}");
            let restarted_by_ms = scenario.crashes[0].latest_restart_ms();
            if decided.iter().any(|d| d.at_ms > restarted_by_ms) {
                restarted_then_decided += 1;
            }
        }
    }
    assert!(
        restarted_then_decided >= 48,
        "only {restarted_then_decided} runs decided after the restart"
    );
    assert!(
        between_persist_and_sign >= 16,
        "only {between_persist_and_sign} crashes fell between a Persist and its signature"
    );
}

fn with_byzantine(seed: u64, byzantine: Misbehaviour) -> Scenario {
    let mut scenario = Scenario::generate(seed, 4, FaultMix::Honest);
    scenario.target_heights = 4;
    scenario.nodes[1].behaviour = Behaviour::Byzantine(byzantine);
    scenario
}

#[test]
fn a_lying_proposer_leaves_duplicate_proposal_evidence_at_honest_nodes() {
    let liar = Misbehaviour {
        lie_when_proposing: true,
        ..Misbehaviour::default()
    };
    let mut with_evidence = 0;
    for seed in 0..10 {
        let scenario = with_byzantine(seed, liar);
        let report = check(&scenario).unwrap_or_else(|failure| panic!("{failure}"));
        let witnesses: Vec<usize> = report
            .saw_evidence(EvidenceKind::DuplicateProposal, 1)
            .collect();
        assert!(witnesses.iter().all(|&n| scenario.is_honest(n)));
        if !witnesses.is_empty() {
            with_evidence += 1;
        }
        assert_eq!(
            report.saw_evidence(EvidenceKind::DuplicateVote, 1).count(),
            0
        );
    }
    assert!(
        with_evidence >= 7,
        "{with_evidence} of 10 runs had evidence"
    );
}

#[test]
fn an_equivocator_leaves_duplicate_vote_evidence_at_honest_nodes() {
    let equivocator = Misbehaviour {
        equivocate: true,
        ..Misbehaviour::default()
    };
    for seed in 0..10 {
        let scenario = with_byzantine(seed, equivocator);
        let report = check(&scenario).unwrap_or_else(|failure| panic!("{failure}"));
        let witnesses: Vec<usize> = report
            .saw_evidence(EvidenceKind::DuplicateVote, 1)
            .collect();
        assert!(!witnesses.is_empty(), "{scenario}: no evidence");
        assert!(witnesses.iter().all(|&n| scenario.is_honest(n)));
        // Only the equivocator is ever accused.
        assert!(
            report.evidence.iter().all(|e| e.validator == 1),
            "{report:?}"
        );
    }
}
