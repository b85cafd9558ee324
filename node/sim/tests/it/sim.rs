use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use weft_sim::{Mutant, Report, Scenario, Violation, run};

/// Seeds `seeds_hold_every_invariant` runs unless `WEFT_SIM_SEEDS` says otherwise.
const SEEDS_DEFAULT: u64 = 2_000;

fn seeds_from_env() -> u64 {
    match std::env::var("WEFT_SIM_SEEDS") {
        Ok(n) => n.trim().parse().expect("WEFT_SIM_SEEDS is a count"),
        Err(_) => SEEDS_DEFAULT,
    }
}

/// Runs `scenarios` on every core, returning the reports of the runs `keep` picks.
fn run_all(
    count: u64,
    scenario: impl Fn(u64) -> Scenario + Sync,
    keep: impl Fn(&Report) -> bool + Sync,
) -> Vec<(Scenario, Report)> {
    let next = AtomicU64::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let kept = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= count {
                        break;
                    }
                    let scenario = scenario(seed);
                    let report = run(&scenario);
                    if keep(&report) {
                        kept.lock().unwrap().push((scenario, report));
                    }
                }
            });
        }
    });
    let mut kept = kept.into_inner().unwrap();
    kept.sort_by_key(|(s, _)| s.seed);
    kept
}

fn replay_hint(scenario: &Scenario, report: &Report) -> String {
    format!(
        "{scenario}\n  violations: {:#?}\n  replay: WEFT_SIM_SEED={} cargo test -p weft-sim --test it replay_one_seed -- --nocapture",
        report.violations, scenario.seed
    )
}

#[test]
fn seeds_hold_every_invariant() {
    let count = seeds_from_env();
    let started = Instant::now();
    let crashes = AtomicU64::new(0);
    let updates = AtomicU64::new(0);
    let failed = run_all(count, Scenario::from_seed, |report| {
        crashes.fetch_add(report.crashes as u64, Ordering::Relaxed);
        updates.fetch_add(report.validator_updates as u64, Ordering::Relaxed);
        !report.violations.is_empty()
    });
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{count} seeds in {seconds:.2} s ({:.1} seeds/s), {} crashes, {} validator updates \
         committed",
        count as f64 / seconds,
        crashes.load(Ordering::Relaxed),
        updates.load(Ordering::Relaxed)
    );
    for (scenario, report) in &failed {
        println!("FAILED {scenario}\n  {:?}", report.violations);
    }
    if let Some((scenario, report)) = failed.first() {
        panic!(
            "{} of {count} seeds broke an invariant; the first:\n{}",
            failed.len(),
            replay_hint(scenario, report)
        );
    }
    assert!(
        crashes.load(Ordering::Relaxed) > 0,
        "no seed crashed a node"
    );
    assert!(
        count < 100 || updates.load(Ordering::Relaxed) > 0,
        "no seed changed the validator set"
    );
}

#[test]
fn replay_one_seed() {
    let seeds: Vec<u64> = match std::env::var("WEFT_SIM_SEED") {
        Ok(seed) => vec![seed.trim().parse().expect("WEFT_SIM_SEED is a u64")],
        Err(_) => vec![0, 1, 2, 3],
    };
    for seed in seeds {
        let scenario = Scenario::from_seed(seed);
        let report = run(&scenario);
        if std::env::var("WEFT_SIM_SEED").is_ok() {
            println!("{scenario}\n{report:#?}");
        }
        assert!(
            report.violations.is_empty(),
            "{}",
            replay_hint(&scenario, &report)
        );
        assert!(report.height >= scenario.target_height, "{report:?}");
        // The seed alone fixes the run, to the last command.
        let again = run(&scenario);
        assert_eq!(
            (
                again.commands,
                again.crashes,
                again.virtual_ms,
                again.height
            ),
            (
                report.commands,
                report.crashes,
                report.virtual_ms,
                report.height
            ),
            "seed {seed} is not reproducible"
        );
    }
}

/// The first seed (of `seeds`) on which `mutant` breaks something `caught` names.
fn first_caught(
    mutant: Mutant,
    seeds: u64,
    scenario: impl Fn(u64) -> Scenario + Sync,
    caught: impl Fn(&Violation) -> bool + Sync,
) -> Option<(Scenario, Report)> {
    let hits = run_all(
        seeds,
        |seed| scenario(seed).with_mutant(mutant),
        |report| report.violations.iter().any(&caught),
    );
    hits.into_iter().next()
}

/// A `Persist` that leaves the WAL unsynced is caught: a node speaks with its WAL not durable.
#[test]
fn a_persist_without_the_wal_fsync_is_caught() {
    let started = Instant::now();
    let hit = first_caught(Mutant::SkipWalSync, 16, Scenario::from_seed, |v| {
        matches!(v, Violation::SpokeBeforePersist { .. })
    });
    let (scenario, report) = hit.expect("no seed caught a Persist without the WAL fsync");
    println!(
        "skip-WAL-fsync mutant caught on seed {} in {:.2} s: {:?}",
        scenario.seed,
        started.elapsed().as_secs_f64(),
        report.violations.first()
    );
}

/// A restart that replays the WAL without the guard's record double-signs once a damaged WAL
/// record has cut the WAL short: the guard is what stands between the two.
#[test]
fn a_replay_without_the_guard_is_caught() {
    let damaged = |seed: u64| {
        let mut scenario = Scenario::from_seed(seed);
        scenario.damage = true;
        scenario
    };
    let started = Instant::now();
    let hit = first_caught(Mutant::ReplayWithoutGuard, 400, damaged, |v| {
        matches!(v, Violation::DoubleSign { .. })
    });
    let (scenario, report) = hit.expect("no seed caught a replay without the guard");
    println!(
        "replay-without-guard mutant caught on seed {} in {:.2} s: {:?}",
        scenario.seed,
        started.elapsed().as_secs_f64(),
        report.violations.first()
    );
    // The same seeds with the guard hold.
    let report = run(&damaged(scenario.seed));
    assert!(
        report.violations.is_empty(),
        "{}",
        replay_hint(&damaged(scenario.seed), &report)
    );
}

/// One validator of four lies: an equivocator is reported by the honest nodes, a proposer of
/// lying DAGs never gets a block committed, and either way the honest nodes agree and go on.
#[test]
fn a_byzantine_validator_is_reported_or_refused_and_the_chain_goes_on() {
    use weft_node::engine::Byzantine;
    for kind in [
        Byzantine::Equivocate,
        Byzantine::ExtraEdge,
        Byzantine::MissingEdge,
        Byzantine::UnderDeclared,
    ] {
        let runs = run_all(
            12,
            |seed| {
                let mut scenario = Scenario::with_validators(seed, 4);
                scenario.byzantine = Some(((seed % 4) as usize, kind));
                scenario.txs = scenario.txs.max(12);
                scenario.target_height = scenario.target_height.max(6);
                scenario
            },
            |_| true,
        );
        for (scenario, report) in &runs {
            assert!(
                report.violations.is_empty(),
                "{}",
                replay_hint(scenario, report)
            );
        }
        let reported = runs.iter().filter(|(_, r)| r.evidence > 0).count();
        if kind == Byzantine::Equivocate {
            assert!(
                reported * 2 >= runs.len(),
                "evidence in only {reported} of {} runs",
                runs.len()
            );
        }
        let lies: usize = runs.iter().map(|(_, r)| r.lies_proposed).sum();
        if kind == Byzantine::UnderDeclared {
            assert!(lies > 0, "the liar never proposed a block with txs");
        }
        println!(
            "{kind:?}: {} runs hold; evidence reported in {reported}; lying blocks proposed {lies}, none committed",
            runs.len()
        );
    }
}

/// The seeds exercise what they claim: split and lossy networks, byzantine validators, no
/// block sync, damaged disks.
#[test]
fn the_seeds_cover_every_kind_of_fault() {
    let scenarios: Vec<Scenario> = (0..400).map(Scenario::from_seed).collect();
    assert!(scenarios.iter().any(|s| s.partition != 0 && s.gst_ms > 0));
    assert!(scenarios.iter().any(|s| s.drop_per_mille > 0));
    assert!(scenarios.iter().any(|s| s.byzantine.is_some()));
    assert!(scenarios.iter().any(|s| !s.block_sync));
    assert!(scenarios.iter().any(|s| s.damage && !s.crashes.is_empty()));
    assert!(scenarios.iter().any(|s| s.crashes.len() >= 2));
    assert!(scenarios.iter().any(|s| s.silent.is_some()));
    assert!(
        scenarios
            .iter()
            .any(|s| s.powers.windows(2).any(|w| w[0] != w[1]))
    );
    for count in [1, 3, 4, 5, 7] {
        assert!(scenarios.iter().any(|s| s.validators == count), "{count}");
    }
    // Validator updates of every kind, also beside crashes, a split and a byzantine validator:
    // a full node joins, a validator leaves, a power changes.
    let updates = || scenarios.iter().filter(|s| !s.updates.is_empty());
    assert!(updates().any(|s| {
        s.updates
            .iter()
            .any(|u| u.node >= s.validators && u.power > 0)
    }));
    assert!(updates().any(|s| s.updates.iter().any(|u| u.power == 0)));
    assert!(updates().any(|s| {
        s.updates
            .iter()
            .any(|u| u.node < s.validators && u.power > 0)
    }));
    assert!(updates().any(|s| !s.crashes.is_empty()));
    assert!(updates().any(|s| s.partition != 0));
    assert!(updates().any(|s| s.byzantine.is_some()));
    // A faulty validator holds under a third of the power.
    for s in &scenarios {
        let total: u64 = s.powers.iter().sum();
        for faulty in s.byzantine.map(|(n, _)| n).into_iter().chain(s.silent) {
            assert!(s.powers[faulty] * 3 < total, "{s}");
        }
    }
}
