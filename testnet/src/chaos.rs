//! `weft-testnet chaos`: faults under load, then the invariants.
//!
//! Scenarios, each on one target node (default: the last; node 0 keeps the load's commit
//! tracking steady):
//! - `crash-restart`: SIGKILL, then a restart (block sync brings it back);
//! - `pause`: SIGSTOP, then SIGCONT;
//! - `partition`: the node's `unsafe_set_isolated` route cuts it from every peer, then heals;
//! - `byzantine-dag`: a restart with `WEFT_BYZANTINE=extra-edge` (its proposals carry a DAG edge
//!   the access sets do not justify), then an honest restart;
//! - `equivocate`: a restart with `WEFT_BYZANTINE=equivocate` (two prevotes per round), then an
//!   honest restart;
//! - `validator-churn`: the validator authority removes the node from the validator set (it
//!   runs on as a full node), then restores it.
//!
//! Each fault lasts a third of `--duration`; the rest is recovery under load. Then:
//! 1. **agreement**: every node holds the same block hash and state root at every height up
//!    to the lowest node's height;
//! 2. **exactly-once**: every tx the load saw committed appears exactly once in the chain, at
//!    the height it was reported at;
//! 3. **progress**: after each heal the chain grows within 10 s, and the target catches up;
//! 4. **evidence**: after `equivocate`, evidence naming the target is committed;
//! 5. **validator set**: after `validator-churn`, no certificate of the heights the target was
//!    out of the set holds its signature, and it signs again once restored.
//!
//! A violation is printed as `INVARIANT VIOLATED: <name>: <detail>`, and the command fails.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::watch;
use weft_genesis::read_key_file;
use weft_node::config::Home;
use weft_node::rpc::api::encoding::address_of;

use crate::ceremony::VALIDATOR_POWER;
use crate::client::{BlockSummary, NodeClient};
use crate::load::{self, Distribution, Kind, Live, LoadReport, LoadSpec};
use crate::manifest::Manifest;
use crate::process::{Launcher, Processes, wait_healthy};
use crate::validators::{self, Change};

/// The chain must grow within this long of a heal.
pub const PROGRESS_WITHIN: Duration = Duration::from_secs(10);
/// The target must reach the others' height within this long of a heal.
pub const REJOIN_WITHIN: Duration = Duration::from_secs(60);
/// Fewest validators for chaos: one faulty node must leave a quorum.
pub const CHAOS_VALIDATORS_MIN: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    CrashRestart,
    Pause,
    Partition,
    ByzantineDag,
    Equivocate,
    /// The target is removed from the validator set (it runs on as a full node), then
    /// restored: its signatures must be in no certificate of the heights it was out.
    ValidatorChurn,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::CrashRestart,
        Scenario::Pause,
        Scenario::Partition,
        Scenario::ByzantineDag,
        Scenario::Equivocate,
        Scenario::ValidatorChurn,
    ];

    pub fn parse_list(text: &str) -> Result<Vec<Scenario>, String> {
        if text == "all" {
            return Ok(Scenario::ALL.to_vec());
        }
        text.split(',')
            .map(|name| {
                Scenario::ALL
                    .into_iter()
                    .find(|s| s.to_string() == name.trim())
                    .ok_or_else(|| {
                        format!(
                            "--scenario {name:?}: one of crash-restart, pause, partition, \
                             byzantine-dag, equivocate, validator-churn, all"
                        )
                    })
            })
            .collect()
    }

    /// Whether the scenario restarts its target with a test switch (`WEFT_BYZANTINE`), which
    /// only a `weft` built with test hooks reads.
    pub fn needs_test_hooks(self) -> bool {
        matches!(self, Scenario::ByzantineDag | Scenario::Equivocate)
    }
}

/// Refuses scenarios that need test switches when the testnet's `weft` (as `version` says)
/// was built without them: such a node would ignore `WEFT_BYZANTINE` and the scenario would
/// test nothing.
pub fn check_test_hooks(scenarios: &[Scenario], launcher: &Launcher) -> Result<(), String> {
    let needing: Vec<String> = scenarios
        .iter()
        .filter(|s| s.needs_test_hooks())
        .map(Scenario::to_string)
        .collect();
    if needing.is_empty() {
        return Ok(());
    }
    let output = std::process::Command::new(&launcher.program)
        .args(&launcher.prefix)
        .arg("version")
        .output()
        .map_err(|e| format!("{} version: {e}", launcher.program.display()))?;
    let version = String::from_utf8_lossy(&output.stdout);
    if version_has_test_hooks(&version) {
        return Ok(());
    }
    Err(format!(
        "{} need a weft built with test hooks, and {} has none (`version` says {:?}). Build one          for testing only with `cargo build --release --features weft-node/test-hooks --bin weft          --bin weft-testnet` and restart the testnet, or choose --scenario          crash-restart,pause,partition",
        needing.join(" and "),
        launcher.program.display(),
        version.lines().nth(1).unwrap_or("").trim()
    ))
}

/// Whether `weft version`'s output says the build has the test switches.
pub fn version_has_test_hooks(version: &str) -> bool {
    version
        .lines()
        .any(|line| line.trim() == weft_node::test_hooks::VERSION_LINE_WITH_HOOKS)
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scenario::CrashRestart => "crash-restart",
            Scenario::Pause => "pause",
            Scenario::Partition => "partition",
            Scenario::ByzantineDag => "byzantine-dag",
            Scenario::Equivocate => "equivocate",
            Scenario::ValidatorChurn => "validator-churn",
        })
    }
}

pub struct ChaosArgs {
    pub home: PathBuf,
    pub scenario: String,
    pub duration: Duration,
    pub tps: u64,
    pub node: Option<usize>,
}

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "INVARIANT VIOLATED: {}: {}", self.invariant, self.detail)
    }
}

/// What a chaos run found.
#[derive(Debug, Default)]
pub struct ChaosReport {
    pub violations: Vec<Violation>,
    /// Per scenario: seconds from heal to the chain's next block, and to the target's rejoin.
    pub heals: Vec<(Scenario, f64, Option<f64>)>,
    pub heights_checked: u64,
    pub txs_checked: usize,
    pub evidence_blocks: Vec<u64>,
    pub load: Option<load::LoadReport>,
}

pub async fn run_chaos(args: ChaosArgs) -> Result<(), String> {
    let report = chaos(&args).await?;
    if let Some(load) = &report.load {
        println!("{}", load.summary());
    }
    for (scenario, progress, rejoin) in &report.heals {
        println!(
            "{scenario}: chain grew {progress:.1} s after the heal; target rejoined {}",
            rejoin.map_or_else(|| "never".into(), |r| format!("after {r:.1} s"))
        );
    }
    println!(
        "checked {} heights on every node and {} committed txs",
        report.heights_checked, report.txs_checked
    );
    if report.violations.is_empty() {
        println!("all invariants hold");
        Ok(())
    } else {
        for violation in &report.violations {
            println!("{violation}");
        }
        Err(format!(
            "{} invariant violation(s): {}",
            report.violations.len(),
            report
                .violations
                .iter()
                .map(|v| v.invariant)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Runs the scenarios against the testnet at `args.home` (which must be up) and checks the
/// invariants. `Err` is for failures to run at all; broken invariants are in the report.
pub async fn chaos(args: &ChaosArgs) -> Result<ChaosReport, String> {
    let scenarios = Scenario::parse_list(&args.scenario)?;
    let manifest = Manifest::load(&args.home).map_err(|e| e.to_string())?;
    let n = manifest.nodes.len();
    if n < CHAOS_VALIDATORS_MIN {
        return Err(format!(
            "chaos needs at least {CHAOS_VALIDATORS_MIN} validators (one faulty node must leave a quorum); this testnet has {n}"
        ));
    }
    let target = args.node.unwrap_or(n - 1);
    if target >= n {
        return Err(format!(
            "--node {target}: the testnet has nodes 0..{}",
            n - 1
        ));
    }
    if args.duration < Duration::from_secs(3) {
        return Err("--duration must be at least 3 s".into());
    }
    check_test_hooks(&scenarios, &Launcher::of(&manifest))?;
    let mut processes = Processes::new(manifest.clone(), Launcher::of(&manifest));
    let all: Vec<usize> = (0..n).collect();
    let down: Vec<String> = all
        .iter()
        .filter(|&&i| !processes.is_running(i))
        .map(|&i| manifest.nodes[i].name.clone())
        .collect();
    if !down.is_empty() {
        return Err(format!(
            "not running: {} (start the testnet with `weft-testnet up --home {}`)",
            down.join(", "),
            args.home.display()
        ));
    }
    wait_healthy(&manifest, &all, 1, Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    let target_key = read_key_file(&Home::new(&manifest.nodes[target].home).validator_key())
        .map_err(|e| e.to_string())?;
    let target_hex = hex::encode(target_key.public());
    // A certificate names its signers by CometBFT address.
    let target_address = hex::encode_upper(address_of(&target_key.public()).0);
    let clients: Vec<NodeClient> = manifest
        .nodes
        .iter()
        .map(|node| NodeClient::new(node, Duration::from_secs(2)))
        .collect();

    let (stop_tx, stop_rx) = watch::channel(false);
    let load_task = {
        let spec = LoadSpec {
            tps: args.tps,
            duration: None,
            first_account: 0,
            accounts: (manifest.load_accounts / 2).clamp(1, 500),
            distribution: Distribution::Uniform,
            kind: Kind::Transfer,
            seed: 0xc4a05,
        };
        spec.validate(&manifest).map_err(|e| e.to_string())?;
        let manifest = manifest.clone();
        tokio::spawn(async move {
            load::run(&manifest, &spec, Arc::new(Live::default()), stop_rx, false).await
        })
    };

    let mut report = ChaosReport::default();
    let fault_time = args.duration / 3;
    for &scenario in &scenarios {
        println!(
            "== {scenario} on {} for {:.1?}",
            manifest.nodes[target].name, fault_time
        );
        let scenario_end = Instant::now() + args.duration;
        let out = inject(&mut processes, &clients, target, scenario, true).await?;
        tokio::time::sleep(fault_time).await;
        let before = max_height(&clients, target).await;
        let back = inject(&mut processes, &clients, target, scenario, false).await?;
        if let (Some(out), Some(back)) = (out, back) {
            println!("   {out}\n   {back}");
            report
                .violations
                .extend(check_churn(&clients, target, &target_address, &out, &back).await?);
        }
        let healed = Instant::now();
        println!("   healed at height {before}");
        let progress = wait_for(PROGRESS_WITHIN, || async {
            max_height(&clients, target).await > before
        })
        .await;
        let progress_s = healed.elapsed().as_secs_f64();
        if !progress {
            report.violations.push(Violation {
                invariant: "progress",
                detail: format!(
                    "after {scenario}, the chain stayed at height {before} for {PROGRESS_WITHIN:?} after the heal"
                ),
            });
        }
        let rejoined = wait_for(REJOIN_WITHIN, || async {
            clients[target].height().await.unwrap_or(0) >= before
        })
        .await;
        let rejoin_s = rejoined.then(|| healed.elapsed().as_secs_f64());
        if !rejoined {
            report.violations.push(Violation {
                invariant: "progress",
                detail: format!(
                    "after {scenario}, {} did not reach height {before} within {REJOIN_WITHIN:?}",
                    manifest.nodes[target].name
                ),
            });
        }
        report.heals.push((scenario, progress_s, rejoin_s));
        if let Some(rest) = scenario_end.checked_duration_since(Instant::now()) {
            tokio::time::sleep(rest).await;
        }
    }

    let _ = stop_tx.send(true);
    let load_report = load_task
        .await
        .map_err(|e| format!("load task: {e}"))?
        .map_err(|e| format!("load: {e}"))?;

    // Let every node reach a common height before comparing.
    let _ = wait_healthy(&manifest, &all, 1, Duration::from_secs(30)).await;
    let check = check_chain(&clients).await?;
    report.heights_checked = check.heights;
    report.violations.extend(check.violations);
    report.violations.extend(check_exactly_once(
        &load_report.committed_txs,
        &check.tx_heights,
    ));
    report.txs_checked = load_report.committed_txs.len();
    report.evidence_blocks = check
        .evidence
        .iter()
        .filter(|(_, accused)| *accused == target_hex)
        .map(|(height, _)| *height)
        .collect();
    if scenarios.contains(&Scenario::Equivocate) && report.evidence_blocks.is_empty() {
        report.violations.push(Violation {
            invariant: "evidence",
            detail: format!(
                "{} equivocated, but no committed block holds evidence naming it",
                manifest.nodes[target].name
            ),
        });
    }
    report.load = Some(load_report);
    Ok(report)
}

/// No certificate of the heights the target was out of the set holds its signature (a removed
/// validator's votes no longer count), and it signs again once restored.
async fn check_churn(
    clients: &[NodeClient],
    target: usize,
    target_address: &str,
    out: &Change,
    back: &Change,
) -> Result<Vec<Violation>, String> {
    let other = &clients[(target + 1) % clients.len()];
    let mut violations = Vec::new();
    for height in out.effective_at..back.effective_at {
        let block = other.block(height + 1).await.map_err(|e| e.to_string())?;
        if block.signers.iter().any(|s| s == target_address) {
            violations.push(Violation {
                invariant: "validator set",
                detail: format!(
                    "{} was out of the set at height {height}, but its precommit is in that \
                     height's certificate",
                    out.node
                ),
            });
        }
    }
    let signs_again = wait_for(REJOIN_WITHIN, || async {
        let top = other.height().await.unwrap_or(0);
        match other.block(top).await {
            Ok(block) => {
                top > back.effective_at && block.signers.iter().any(|s| s == target_address)
            }
            Err(_) => false,
        }
    })
    .await;
    if !signs_again {
        violations.push(Violation {
            invariant: "validator set",
            detail: format!("{} never signed again after it was restored", back.node),
        });
    }
    Ok(violations)
}

/// Starts (`on`) or ends one fault on node `target`; a validator-set change says what it did.
async fn inject(
    processes: &mut Processes,
    clients: &[NodeClient],
    target: usize,
    scenario: Scenario,
    on: bool,
) -> Result<Option<Change>, String> {
    let client = &clients[target];
    let node = processes.manifest.nodes[target].name.clone();
    if scenario == Scenario::ValidatorChurn {
        let manifest = processes.manifest.clone();
        let key = read_key_file(&Home::new(&manifest.nodes[target].home).validator_key())
            .map_err(|e| e.to_string())?
            .public();
        let other = &clients[(target + 1) % clients.len()];
        let power = if on { 0 } else { VALIDATOR_POWER };
        return validators::update(&manifest, other, &node, key, power)
            .await
            .map(Some)
            .map_err(|e| format!("{scenario} on {node}: {e}"));
    }
    let result = tokio::task::block_in_place(|| -> Result<(), String> {
        let e = |e: crate::process::ProcessError| e.to_string();
        match (scenario, on) {
            (Scenario::CrashRestart, true) => processes.kill(target).map_err(e),
            (Scenario::CrashRestart, false) => processes.start(target, &[]).map(|_| ()).map_err(e),
            (Scenario::Pause, true) => processes
                .signal(target, Signal::SIGSTOP)
                .map(|_| ())
                .map_err(e),
            (Scenario::Pause, false) => processes
                .signal(target, Signal::SIGCONT)
                .map(|_| ())
                .map_err(e),
            (Scenario::ByzantineDag | Scenario::Equivocate, true) => {
                let lie = if scenario == Scenario::Equivocate {
                    "equivocate"
                } else {
                    "extra-edge"
                };
                processes.stop(target).map_err(e)?;
                processes
                    .start(target, &[("WEFT_BYZANTINE", lie)])
                    .map(|_| ())
                    .map_err(e)
            }
            (Scenario::ByzantineDag | Scenario::Equivocate, false) => {
                processes.stop(target).map_err(e)?;
                processes.start(target, &[]).map(|_| ()).map_err(e)
            }
            (Scenario::Partition | Scenario::ValidatorChurn, _) => Ok(()),
        }
    });
    result.map_err(|e| format!("{scenario} on {node}: {e}"))?;
    if scenario == Scenario::Partition {
        client
            .set_isolated(on)
            .await
            .map_err(|e| format!("{scenario} on {node}: {e}"))?;
    }
    Ok(None)
}

/// The highest height among the nodes other than `skip` that answer.
async fn max_height(clients: &[NodeClient], skip: usize) -> u64 {
    let heights = futures::future::join_all(
        clients
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, c)| c.height()),
    )
    .await;
    heights
        .into_iter()
        .filter_map(Result::ok)
        .max()
        .unwrap_or(0)
}

async fn wait_for<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the whole-chain check found.
pub struct ChainCheck {
    pub heights: u64,
    pub violations: Vec<Violation>,
    /// Every tx hash in node 0's chain, with the heights it appears at.
    pub tx_heights: HashMap<String, Vec<u64>>,
    /// (height, accused validator) for each committed evidence item.
    pub evidence: Vec<(u64, String)>,
}

/// Reads every block up to the lowest node's height from every node and compares them.
pub async fn check_chain(clients: &[NodeClient]) -> Result<ChainCheck, String> {
    let mut tops = Vec::new();
    for client in clients {
        tops.push(client.height().await.map_err(|e| e.to_string())?);
    }
    let top = tops.iter().copied().min().unwrap_or(0);
    let mut check = ChainCheck {
        heights: top,
        violations: Vec::new(),
        tx_heights: HashMap::new(),
        evidence: Vec::new(),
    };
    const CONCURRENT: usize = 16;
    let heights: Vec<u64> = (1..=top).collect();
    for chunk in heights.chunks(CONCURRENT) {
        let fetched = futures::future::join_all(chunk.iter().map(|&height| async move {
            let mut blocks = Vec::with_capacity(clients.len());
            for client in clients {
                blocks.push(client.block(height).await);
            }
            (height, blocks)
        }))
        .await;
        for (height, blocks) in fetched {
            let mut reference: Option<&BlockSummary> = None;
            for (client, block) in clients.iter().zip(&blocks) {
                let block = match block {
                    Ok(block) => block,
                    Err(e) => {
                        check.violations.push(Violation {
                            invariant: "agreement",
                            detail: format!("{} has no block {height}: {e}", client.name),
                        });
                        continue;
                    }
                };
                match reference {
                    None => reference = Some(block),
                    Some(first) => {
                        if first.hash != block.hash || first.state_root != block.state_root {
                            check.violations.push(Violation {
                                invariant: "agreement",
                                detail: format!(
                                    "height {height}: {} holds {} (state {}), {} holds {} (state {})",
                                    clients[0].name,
                                    first.hash,
                                    first.state_root,
                                    client.name,
                                    block.hash,
                                    block.state_root
                                ),
                            });
                        }
                    }
                }
            }
            if let Some(block) = reference {
                for tx in &block.txs {
                    check.tx_heights.entry(tx.clone()).or_default().push(height);
                }
                for accused in &block.evidence {
                    check.evidence.push((height, accused.clone()));
                }
            }
        }
        if check.violations.len() > 20 {
            break;
        }
    }
    Ok(check)
}

/// The invariants every fault run checks once the load has ended and the nodes met: every
/// node holds the same blocks (agreement), every tx the load saw commit is in the chain once,
/// at the height reported (exactly-once), and every tx a node acknowledged committed (none
/// lost). Returns the heights compared and what was violated.
pub async fn check_invariants(
    clients: &[NodeClient],
    load: &LoadReport,
) -> Result<(u64, Vec<Violation>), String> {
    let check = check_chain(clients).await?;
    let mut violations = check.violations;
    violations.extend(check_exactly_once(&load.committed_txs, &check.tx_heights));
    if load.uncommitted > 0 {
        violations.push(Violation {
            invariant: "no acknowledged tx lost",
            detail: format!(
                "{} txs a node admitted never committed (of {} admitted)",
                load.uncommitted, load.admitted
            ),
        });
    }
    Ok((check.heights, violations))
}

/// Every tx reported committed appears exactly once, at the height it was reported at; no tx
/// appears twice anywhere.
pub fn check_exactly_once(
    committed: &[(String, u64)],
    tx_heights: &HashMap<String, Vec<u64>>,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (hash, height) in committed {
        match tx_heights.get(hash).map(Vec::as_slice) {
            Some([at]) if at == height => {}
            Some([at]) => violations.push(Violation {
                invariant: "exactly-once",
                detail: format!("tx {hash} was reported at height {height} but is at {at}"),
            }),
            Some(heights) if heights.len() > 1 => violations.push(Violation {
                invariant: "exactly-once",
                detail: format!("tx {hash} appears at heights {heights:?}"),
            }),
            _ => violations.push(Violation {
                invariant: "exactly-once",
                detail: format!(
                    "tx {hash} was reported committed at height {height} but is not in the chain"
                ),
            }),
        }
        if violations.len() > 20 {
            return violations;
        }
    }
    for (hash, heights) in tx_heights {
        if heights.len() > 1 && !committed.iter().any(|(h, _)| h == hash) {
            violations.push(Violation {
                invariant: "exactly-once",
                detail: format!("tx {hash} appears at heights {heights:?}"),
            });
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse_by_name_list_and_all() {
        assert_eq!(Scenario::parse_list("all").unwrap(), Scenario::ALL.to_vec());
        assert_eq!(
            Scenario::parse_list("pause,equivocate").unwrap(),
            vec![Scenario::Pause, Scenario::Equivocate]
        );
        for s in Scenario::ALL {
            assert_eq!(Scenario::parse_list(&s.to_string()).unwrap(), vec![s]);
        }
        let error = Scenario::parse_list("meteor").unwrap_err();
        assert!(error.contains("\"meteor\""), "{error}");
    }

    /// A stand-in `weft` whose `version` prints `second_line`.
    fn weft_saying(second_line: &str) -> Launcher {
        Launcher {
            program: "/bin/sh".into(),
            prefix: vec![
                "-c".into(),
                format!("test \"$1\" = version && echo 'weft 0.1.0' && echo '{second_line}'"),
                "weft".into(),
            ],
        }
    }

    #[test]
    fn byzantine_scenarios_need_a_weft_with_test_hooks() {
        let with = weft_saying(weft_node::test_hooks::VERSION_LINE_WITH_HOOKS);
        let without = weft_saying("test hooks: none");
        let honest = [Scenario::CrashRestart, Scenario::Pause, Scenario::Partition];
        let nowhere = Launcher {
            program: "/nonexistent/weft".into(),
            prefix: Vec::new(),
        };
        // Honest scenarios never ask.
        check_test_hooks(&honest, &nowhere).unwrap();
        check_test_hooks(&Scenario::ALL, &with).unwrap();
        for scenario in [Scenario::ByzantineDag, Scenario::Equivocate] {
            let error = check_test_hooks(&[Scenario::Pause, scenario], &without).unwrap_err();
            assert!(error.contains(&scenario.to_string()), "{error}");
            assert!(error.contains("test hooks: none"), "{error}");
            assert!(error.contains("--features weft-node/test-hooks"), "{error}");
        }
        let error = check_test_hooks(&Scenario::ALL, &nowhere).unwrap_err();
        assert!(error.contains("/nonexistent/weft"), "{error}");
    }

    #[test]
    fn exactly_once_names_missing_moved_and_duplicated_txs() {
        let chain: HashMap<String, Vec<u64>> = [
            ("a".to_owned(), vec![3]),
            ("b".to_owned(), vec![4, 9]),
            ("c".to_owned(), vec![5]),
            ("d".to_owned(), vec![6, 7]),
        ]
        .into_iter()
        .collect();
        let committed = vec![
            ("a".to_owned(), 3),
            ("b".to_owned(), 4),
            ("c".to_owned(), 6),
            ("e".to_owned(), 8),
        ];
        let violations = check_exactly_once(&committed, &chain);
        let details: Vec<&str> = violations.iter().map(|v| v.detail.as_str()).collect();
        assert_eq!(violations.len(), 4, "{details:?}");
        assert!(violations.iter().all(|v| v.invariant == "exactly-once"));
        assert!(details[0].contains("tx b appears at heights [4, 9]"));
        assert!(details[1].contains("reported at height 6 but is at 5"));
        assert!(details[2].contains("tx e was reported committed"));
        assert!(details[3].contains("tx d appears at heights [6, 7]"));
        let clean: HashMap<String, Vec<u64>> = [("a".to_owned(), vec![3])].into_iter().collect();
        assert!(check_exactly_once(&committed[..1], &clean).is_empty());
    }
}
