//! consensus-bench: how many heights the consensus core decides per second of wall time, in
//! the deterministic simulator with no faults and no signatures (so the figure is the state
//! machine, the vote keeper and the simulator's bookkeeping, not cryptography).
//!
//! ```text
//! cargo run --release -p weft-consensus --bin consensus-bench -- --json [--heights 200]
//! ```
//!
//! Prints a table; with `--json`, then one line `{"rows":[{"validators":N,"heights_per_s":X},…]}`.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use serde_json::json;
use weft_consensus::sim::{Report, Scenario, run};

/// The validator counts measured.
const VALIDATOR_COUNTS: [usize; 4] = [4, 7, 10, 100];
/// The seed of every run (the fault-free network still draws its delays from it).
const SEED: u64 = 1;

#[derive(Parser, Debug)]
#[command(about = "Simulated consensus heights decided per second of wall time")]
struct Args {
    /// End with one JSON line of the results.
    #[arg(long)]
    json: bool,
    /// Heights each run decides.
    #[arg(long, default_value_t = 200)]
    heights: u64,
}

struct Row {
    validators: usize,
    heights: u64,
    wall_ms: f64,
    heights_per_s: f64,
    report: Report,
}

fn measure(validators: usize, heights: u64) -> Result<Row, String> {
    let scenario = Scenario::fault_free(SEED, validators, heights);
    let started = Instant::now();
    let report = run(&scenario);
    let wall_s = started.elapsed().as_secs_f64();
    if !report.is_clean() || report.counts.heights_decided_min != heights {
        return Err(format!(
            "{validators} validators: decided {} of {heights} heights, violations {:?}",
            report.counts.heights_decided_min, report.violations
        ));
    }
    Ok(Row {
        validators,
        heights,
        wall_ms: wall_s * 1e3,
        heights_per_s: heights as f64 / wall_s.max(1e-9),
        report,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.heights == 0 {
        eprintln!("--heights must be positive");
        return ExitCode::FAILURE;
    }
    println!(
        "{:>10} {:>8} {:>10} {:>12} {:>14} {:>12} {:>10}",
        "validators", "heights", "wall ms", "heights/s", "deliveries/h", "rounds/h", "sim ms/h"
    );
    let mut rows = Vec::new();
    for validators in VALIDATOR_COUNTS {
        let row = match measure(validators, args.heights) {
            Ok(row) => row,
            Err(error) => {
                eprintln!("consensus-bench: {error}");
                return ExitCode::FAILURE;
            }
        };
        let counts = &row.report.counts;
        let per_height = |x: u64| x as f64 / row.heights as f64;
        println!(
            "{:>10} {:>8} {:>10.1} {:>12.1} {:>14.0} {:>12.2} {:>10.1}",
            row.validators,
            row.heights,
            row.wall_ms,
            row.heights_per_s,
            per_height(counts.messages_delivered),
            per_height(counts.rounds_total),
            per_height(row.report.end_ms),
        );
        rows.push(row);
    }
    if args.json {
        let rows: Vec<_> = rows
            .iter()
            .map(|row| {
                json!({
                    "validators": row.validators,
                    "heights_per_s": (row.heights_per_s * 10.0).round() / 10.0,
                })
            })
            .collect();
        println!("{}", json!({ "rows": rows }));
    }
    ExitCode::SUCCESS
}
