//! gossip-bench: semantic gossip against plain gossip, on the same seeded overlay, over real
//! libp2p connections on loopback in one process.
//!
//! ```text
//! cargo run --release -p weft-gossip --bin gossip-bench -- --json [--reps 3] [--heights-scale 1]
//! ```
//!
//! Each node runs a Tendermint-shaped driver: per height, the proposer publishes a proposal
//! (with an empty block: this measures consensus traffic, not block transfer);
//! every node prevotes once it holds the proposal, precommits once it holds a quorum of
//! prevotes, and moves to the next height (advertising it) once it holds a quorum of
//! precommits. Every vote is signed by its validator and verified by every receiver.
//!
//! Per row: messages and bytes each node received per height (everything on the consensus
//! protocol, status messages included), the plain-gossip bound 2·n·k, the share of votes the
//! filter dropped, the share of sent votes that travelled inside bundles, and heights per
//! second of wall time until every node finished. The last line, with `--json`, is
//! `{"rows":[...]}`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use weft_consensus::{Height, Round, ValidatorId, ValueId, VoteType};
use weft_gossip::cluster::Cluster;
use weft_gossip::overlay::max_faulty;
use weft_gossip::{GossipEvent, GossipHandle, GossipMode, Message, generate};

const NODE_COUNTS: [usize; 4] = [4, 10, 16, 32];
const DEGREE: usize = 4;
const SEED: u64 = 42;
const CHAIN: &str = "weft-gossip-bench";
const DEADLINE: Duration = Duration::from_secs(120);

#[derive(Parser, Debug)]
#[command(about = "Semantic vs plain gossip over loopback libp2p")]
struct Args {
    /// End with one JSON line of the results.
    #[arg(long)]
    json: bool,
    /// Runs per (nodes, mode); rows report the median run by heights/s.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Multiplies the heights each run decides (4 nodes: 200, 10: 100, 16: 60, 32: 30).
    #[arg(long, default_value_t = 1.0)]
    heights_scale: f64,
    /// Only these node counts (comma-separated).
    #[arg(long, value_delimiter = ',')]
    nodes: Option<Vec<usize>>,
}

fn heights_for(nodes: usize, scale: f64) -> u64 {
    let base = match nodes {
        0..=4 => 200.0,
        5..=10 => 100.0,
        11..=16 => 60.0,
        _ => 30.0,
    };
    ((base * scale) as u64).max(5)
}

fn value_of(height: Height) -> ValueId {
    ValueId(*blake3::hash(&height.0.to_le_bytes()).as_bytes())
}

/// What one node holds of each height.
#[derive(Default)]
struct Tally {
    proposal: bool,
    prevotes: BTreeSet<ValidatorId>,
    precommits: BTreeSet<ValidatorId>,
}

/// One node's Tendermint-shaped driver. Stops deciding after `heights`, but keeps draining its
/// events (so relays through it never stall) until `stop` fires.
#[allow(clippy::too_many_arguments)]
async fn drive(
    cluster: std::sync::Arc<ClusterInfo>,
    me: usize,
    handle: GossipHandle,
    mut events: mpsc::Receiver<GossipEvent>,
    heights: u64,
    done: mpsc::Sender<usize>,
    mut stop: watch::Receiver<bool>,
) {
    let id = cluster.ids[me];
    let quorum = cluster.quorum;
    let mut height = Height(1);
    let mut tallies: BTreeMap<Height, Tally> = BTreeMap::new();
    let mut prevoted = false;
    let mut precommitted = false;
    let mut finished = false;
    handle.advertise(height, Round(0));
    loop {
        // Act on what this height holds, until nothing changes.
        while !finished {
            let proposer = cluster.ids[(height.0 as usize) % cluster.ids.len()];
            let tally = tallies.entry(height).or_default();
            if proposer == id && !tally.proposal {
                tally.proposal = true;
                let proposal = cluster.sign_proposal(me, height, value_of(height));
                handle.publish(Message::Proposal {
                    proposal,
                    block: Arc::from(&[][..]),
                });
                continue;
            }
            if tally.proposal && !prevoted {
                prevoted = true;
                tally.prevotes.insert(id);
                let vote = cluster.sign_vote(me, VoteType::Prevote, height, value_of(height));
                handle.publish(Message::Vote(vote));
                continue;
            }
            if tally.prevotes.len() >= quorum && !precommitted {
                precommitted = true;
                tally.precommits.insert(id);
                let vote = cluster.sign_vote(me, VoteType::Precommit, height, value_of(height));
                handle.publish(Message::Vote(vote));
                continue;
            }
            if tally.precommits.len() >= quorum {
                tallies.remove(&height);
                if height.0 == heights {
                    finished = true;
                    let _ = done.send(me).await;
                    break;
                }
                height = height.next();
                prevoted = false;
                precommitted = false;
                handle.advertise(height, Round(0));
                continue;
            }
            break;
        }
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { return };
                let GossipEvent::Consensus { message, .. } = event else { continue };
                match message {
                    Message::Proposal { proposal: p, .. } if p.message.height >= height => {
                        tallies.entry(p.message.height).or_default().proposal = true;
                    }
                    Message::Vote(v) if v.message.height >= height => {
                        let tally = tallies.entry(v.message.height).or_default();
                        match v.message.vote_type {
                            VoteType::Prevote => tally.prevotes.insert(v.message.validator),
                            VoteType::Precommit => tally.precommits.insert(v.message.validator),
                        };
                    }
                    _ => {}
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// The signing side of the cluster, shared with the drivers.
struct ClusterInfo {
    ids: Vec<ValidatorId>,
    keys: Vec<ed25519_dalek::SigningKey>,
    quorum: usize,
}

impl ClusterInfo {
    fn sign_vote(
        &self,
        me: usize,
        vote_type: VoteType,
        height: Height,
        value: ValueId,
    ) -> weft_consensus::SignedVote {
        let vote = weft_consensus::Vote {
            vote_type,
            height,
            round: Round(0),
            value: Some(value),
            validator: self.ids[me],
        };
        weft_gossip::cluster::sign_vote(&self.keys[me], CHAIN, vote)
    }

    fn sign_proposal(
        &self,
        me: usize,
        height: Height,
        value: ValueId,
    ) -> weft_consensus::SignedProposal {
        let proposal = weft_consensus::Proposal {
            height,
            round: Round(0),
            value,
            pol_round: None,
            proposer: self.ids[me],
        };
        weft_gossip::cluster::sign_proposal(&self.keys[me], CHAIN, proposal)
    }
}

#[derive(Clone, Debug)]
struct Run {
    nodes: usize,
    degree: usize,
    mode: GossipMode,
    heights: u64,
    msgs_per_node_per_height: f64,
    bytes_per_node_per_height: f64,
    filtered_share: f64,
    aggregated_share: f64,
    heights_per_s: f64,
}

fn received(handle: &GossipHandle) -> (u64, u64) {
    let metrics = handle.metrics();
    let kinds = [
        "status",
        "proposal",
        "prevote",
        "precommit",
        "bundle",
        "commit",
    ];
    kinds.iter().fold((0, 0), |(m, b), kind| {
        (
            m + metrics
                .messages
                .with_label_values(&["received", kind])
                .get(),
            b + metrics.bytes.with_label_values(&["received", kind]).get(),
        )
    })
}

fn votes_sent(handle: &GossipHandle) -> u64 {
    let metrics = handle.metrics();
    metrics
        .messages
        .with_label_values(&["sent", "prevote"])
        .get()
        + metrics
            .messages
            .with_label_values(&["sent", "precommit"])
            .get()
}

async fn run_once(nodes: usize, mode: GossipMode, heights: u64) -> Result<Run, String> {
    let degree = DEGREE.min(nodes - 1);
    // f + 1 neighbours for the largest f the degree allows: at a sparse degree the paper's
    // f = ⌊(n − 1)/3⌋ cannot hold, so the bench takes the largest f that yields an overlay.
    let overlay = (0..=max_faulty(nodes).min(degree - 1))
        .rev()
        .find_map(|faulty| generate(nodes, degree, faulty, SEED).ok())
        .ok_or_else(|| format!("no overlay for {nodes} nodes at degree {degree}"))?;
    let mut cluster = Cluster::start(overlay, mode, CHAIN, |_, _| {})
        .await
        .map_err(|e| e.to_string())?;
    cluster.wait_connected(DEADLINE).await?;
    let info = std::sync::Arc::new(ClusterInfo {
        ids: cluster.members.iter().map(|m| m.id).collect(),
        keys: cluster.members.iter().map(|m| m.key.clone()).collect(),
        quorum: nodes * 2 / 3 + 1,
    });
    let receivers = cluster.take_events();
    let (done_tx, mut done_rx) = mpsc::channel(nodes);
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let mut drivers = Vec::new();
    for (me, events) in receivers.into_iter().enumerate() {
        drivers.push(tokio::spawn(drive(
            info.clone(),
            me,
            cluster.members[me].handle.clone(),
            events,
            heights,
            done_tx.clone(),
            stop_rx.clone(),
        )));
    }
    let mut finished = 0;
    while finished < nodes {
        match tokio::time::timeout_at((started + DEADLINE).into(), done_rx.recv()).await {
            Ok(Some(_)) => finished += 1,
            _ => return Err(format!("{nodes} nodes, {mode:?}: only {finished} finished")),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Let trailing relays land so that every run is counted in full.
    let handles: Vec<GossipHandle> = cluster.members.iter().map(|m| m.handle.clone()).collect();
    let total = |handles: &[GossipHandle]| -> u64 { handles.iter().map(|h| received(h).0).sum() };
    let mut last = total(&handles);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = total(&handles);
        if now == last {
            break;
        }
        last = now;
    }
    let _ = stop_tx.send(true);
    for driver in drivers {
        let _ = driver.await;
    }
    let (messages, bytes) = handles.iter().fold((0u64, 0u64), |(m, b), h| {
        let (hm, hb) = received(h);
        (m + hm, b + hb)
    });
    let (mut filtered, mut bundled, mut single) = (0u64, 0u64, 0u64);
    for handle in &handles {
        let counters = handle.counters();
        filtered += counters.votes_filtered;
        bundled += counters.votes_in_bundles;
        single += votes_sent(handle);
    }
    cluster.shutdown().await;
    let per = (nodes as u64 * heights) as f64;
    let went_out = (bundled + single) as f64;
    Ok(Run {
        nodes,
        degree,
        mode,
        heights,
        msgs_per_node_per_height: messages as f64 / per,
        bytes_per_node_per_height: bytes as f64 / per,
        filtered_share: filtered as f64 / (filtered as f64 + went_out).max(1.0),
        aggregated_share: bundled as f64 / went_out.max(1.0),
        heights_per_s: heights as f64 / elapsed,
    })
}

fn mode_name(mode: GossipMode) -> &'static str {
    match mode {
        GossipMode::Plain => "plain",
        GossipMode::Semantic => "semantic",
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.reps == 0 || args.heights_scale <= 0.0 {
        eprintln!("gossip-bench: --reps and --heights-scale must be positive");
        return ExitCode::FAILURE;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let counts = args.nodes.clone().unwrap_or(NODE_COUNTS.to_vec());
    println!(
        "gossip-bench: {cores} cores, overlay degree {DEGREE}, seed {SEED}, {} reps (median by heights/s)",
        args.reps
    );
    println!(
        "{:>5} {:>6} {:>8} {:>7} {:>10} {:>12} {:>8} {:>9} {:>10} {:>10}",
        "nodes",
        "degree",
        "mode",
        "heights",
        "msgs/n/h",
        "bytes/n/h",
        "2nk",
        "filtered",
        "aggregated",
        "heights/s"
    );
    let mut rows = Vec::new();
    for &nodes in &counts {
        if nodes < 2 {
            eprintln!("gossip-bench: {nodes} nodes is too few");
            return ExitCode::FAILURE;
        }
        let heights = heights_for(nodes, args.heights_scale);
        // Interleave the modes, so that drift in the machine's load hits both alike.
        let mut runs: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
        for _ in 0..args.reps {
            for mode in [GossipMode::Plain, GossipMode::Semantic] {
                match runtime.block_on(run_once(nodes, mode, heights)) {
                    Ok(run) => runs.entry(mode_name(mode)).or_default().push(run),
                    Err(error) => {
                        eprintln!("gossip-bench: {error}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
        for mode in [GossipMode::Plain, GossipMode::Semantic] {
            let mut runs = runs.remove(mode_name(mode)).expect("every mode ran");
            runs.sort_by(|a, b| a.heights_per_s.total_cmp(&b.heights_per_s));
            let run = runs[runs.len() / 2].clone();
            let bound = 2 * run.nodes * run.degree;
            println!(
                "{:>5} {:>6} {:>8} {:>7} {:>10.1} {:>12.0} {:>8} {:>8.1}% {:>9.1}% {:>10.1}",
                run.nodes,
                run.degree,
                mode_name(run.mode),
                run.heights,
                run.msgs_per_node_per_height,
                run.bytes_per_node_per_height,
                bound,
                run.filtered_share * 100.0,
                run.aggregated_share * 100.0,
                run.heights_per_s
            );
            rows.push((run, bound));
        }
    }
    for &nodes in &counts {
        let find = |mode| {
            rows.iter()
                .find(|(r, _)| r.nodes == nodes && r.mode == mode)
        };
        if let (Some((plain, _)), Some((semantic, _))) =
            (find(GossipMode::Plain), find(GossipMode::Semantic))
        {
            println!(
                "n={nodes}: semantic receives {:.1}% fewer messages per node per height; heights/s ratio semantic/plain {:.2}",
                (1.0 - semantic.msgs_per_node_per_height / plain.msgs_per_node_per_height) * 100.0,
                semantic.heights_per_s / plain.heights_per_s
            );
        }
    }
    if args.json {
        let rows: Vec<_> = rows
            .iter()
            .map(|(run, bound)| {
                json!({
                    "nodes": run.nodes,
                    "degree": run.degree,
                    "mode": mode_name(run.mode),
                    "msgs_per_node_per_height": run.msgs_per_node_per_height,
                    "bytes_per_node_per_height": run.bytes_per_node_per_height,
                    "bound_2nk": bound,
                    "filtered_share": run.filtered_share,
                    "aggregated_share": run.aggregated_share,
                    "heights_per_s": run.heights_per_s,
                })
            })
            .collect();
        println!("{}", json!({ "rows": rows }));
    }
    ExitCode::SUCCESS
}
