//! Pruning: with `storage.retain_blocks`, the database stops growing with the chain, the node
//! keeps serving recent blocks and answers old heights with CometBFT's error, and a lagging
//! node still block-syncs from pruned peers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use weft_consensus::Height;
use weft_execution::{Address, ChainId, Payload, Transaction};
use weft_genesis::{ConsensusParams, Genesis};
use weft_node::fixture::dir_size;
use weft_node::rpc::RpcClient;
use weft_node::rpc::api::encoding::Int;

use crate::support::{DEADLINE, grow_chain, internal_error, network_at};

const CHAIN: &str = "weft-pruning";
const RETAIN: u64 = 1_000;

/// Transfers among `senders` funded accounts, `per_block` a height, nonces in order.
struct Transfers {
    chain_id: ChainId,
    keys: Vec<SigningKey>,
    nonces: HashMap<usize, u64>,
    per_block: usize,
    next: usize,
}

impl Transfers {
    fn new(chain: &str, senders: usize, per_block: usize) -> Transfers {
        Transfers {
            chain_id: ChainId::new(chain).unwrap(),
            keys: (0..senders)
                .map(|i| SigningKey::from_bytes(&[i as u8 + 100; 32]))
                .collect(),
            nonces: HashMap::new(),
            per_block,
            next: 0,
        }
    }

    fn accounts(&self) -> Vec<([u8; 32], u64)> {
        self.keys
            .iter()
            .map(|k| (k.verifying_key().to_bytes(), 1 << 40))
            .collect()
    }

    fn block(&mut self, _: Height) -> Vec<Transaction> {
        (0..self.per_block)
            .map(|_| {
                let from = self.next % self.keys.len();
                self.next += 1;
                let nonce = self.nonces.entry(from).or_insert(0);
                *nonce += 1;
                let to = self.keys[(from + 1) % self.keys.len()]
                    .verifying_key()
                    .to_bytes();
                Transaction::sign(
                    self.chain_id.clone(),
                    &self.keys[from],
                    *nonce - 1,
                    Payload::Transfer {
                        to: Address(to),
                        amount: 1,
                    },
                )
            })
            .collect()
    }
}

/// Two chains grow side by side with txs in every block, one keeping every block and one
/// the last 1,000: the pruned database stops growing once the window is full, while the
/// other grows with the chain.
#[test]
fn a_pruned_database_stays_bounded_as_the_chain_grows() {
    const ROUNDS: u64 = 5;
    const HEIGHTS: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let validators: Vec<SigningKey> = (1..=4u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect();
    let mut transfers = Transfers::new(CHAIN, 64, 8);
    let genesis = Genesis::new(
        CHAIN,
        weft_node::fixture::now_ms() - 10 * 24 * 3_600_000,
        validators
            .iter()
            .enumerate()
            .map(|(i, k)| (format!("v{i}"), k.verifying_key().to_bytes(), 10))
            .collect(),
        transfers.accounts(),
        ConsensusParams::fast(),
    )
    .unwrap();
    let mut kept_sizes = Vec::new();
    let mut pruned_sizes = Vec::new();
    let (kept, pruned) = (dir.path().join("kept"), dir.path().join("pruned"));
    for _ in 0..ROUNDS {
        // The same blocks on both: the nonces restart from the same point.
        let saved = (transfers.nonces.clone(), transfers.next);
        weft_node::fixture::grow(&kept, genesis.clone(), &validators, HEIGHTS, |h| {
            transfers.block(h)
        })
        .unwrap();
        kept_sizes.push(dir_size(&kept));
        (transfers.nonces, transfers.next) = saved;
        weft_node::fixture::grow_pruned(
            &pruned,
            genesis.clone(),
            &validators,
            HEIGHTS,
            RETAIN,
            |h| transfers.block(h),
        )
        .unwrap();
        pruned_sizes.push(dir_size(&pruned));
    }
    println!(
        "database bytes every {HEIGHTS} heights: kept {kept_sizes:?}, pruned {pruned_sizes:?}"
    );
    let chain = weft_node::chain::Chain::open(&pruned, genesis.clone(), 1).unwrap();
    let top = chain.height();
    assert_eq!(top, Height(ROUNDS * HEIGHTS));
    assert_eq!(chain.earliest_height(), Height(top.0 + 1 - RETAIN));
    assert!(chain.block(Height(top.0 - RETAIN)).unwrap().is_none());
    assert!(chain.block(chain.earliest_height()).unwrap().is_some());
    let unpruned = weft_node::chain::Chain::open(&kept, genesis, 1).unwrap();
    assert_eq!(chain.state_root(), unpruned.state_root());
    // Once the window is full, the pruned database stops growing; the other does not.
    let (second, last) = (pruned_sizes[1], pruned_sizes[ROUNDS as usize - 1]);
    assert!(
        last <= second * 3 / 2,
        "the pruned database grew from {second} to {last} bytes"
    );
    assert!(
        kept_sizes[ROUNDS as usize - 1] > 2 * last,
        "kept {kept_sizes:?}, pruned {pruned_sizes:?}"
    );
}

/// Validators that keep 1,000 blocks serve recent ones, answer pruned heights with
/// CometBFT's error, and a node 1,000 heights behind still catches up by block sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruned_validators_serve_recent_blocks_and_a_lagging_node_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let genesis_time = weft_node::fixture::now_ms() - 10 * 24 * 3_600_000;
    let mut nodes = network_at(dir.path(), 4, CHAIN, Some(genesis_time));
    let (n1, n2, n3) = (&nodes[1], &nodes[2], &nodes[3]);
    grow_chain(&nodes, &[n1, n2, n3], 2_500, |_| Vec::new());
    // Nodes 0 to 2 go on without node 3.
    let top = grow_chain(&nodes, &[n1, n2], 1_000, |_| Vec::new());
    for node in &mut nodes {
        node.configure(|config| config.storage.retain_blocks = RETAIN);
    }
    for node in &mut nodes[..3] {
        node.start();
    }
    nodes[3].start();
    // While it block-syncs, once it knows it is behind, `status` says it is catching up
    // until it is near the others (not between two batches of blocks).
    let until = Instant::now() + DEADLINE;
    let mut seen_catching_up = false;
    loop {
        let (Ok(status), Some(network)) =
            (nodes[3].client().status().await, nodes[0].height().await)
        else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let height = status.sync_info.latest_block_height.0;
        let catching_up = status.sync_info.catching_up;
        if height + 100 >= network {
            break;
        }
        if seen_catching_up {
            assert!(
                catching_up,
                "node 3 says it caught up at {height}, {network} being decided"
            );
        }
        seen_catching_up |= catching_up;
        assert!(Instant::now() < until, "node 3 did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen_catching_up, "node 3 never said it was catching up");
    let until = Instant::now() + DEADLINE;
    let latest = loop {
        let (earliest, latest) = match nodes[0].client().status().await {
            Ok(status) => (
                status.sync_info.earliest_block_height.0,
                status.sync_info.latest_block_height.0,
            ),
            Err(_) => (0, 0),
        };
        if earliest > top - RETAIN && earliest + RETAIN > latest {
            break latest;
        }
        assert!(
            Instant::now() < until,
            "node 0 did not prune: earliest {earliest}, latest {latest}\n{}",
            nodes[0].log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = internal_error(nodes[0].client().block(Some(Int(1))).await);
    assert!(
        reason.starts_with("height 1 is not available, lowest height is"),
        "{reason}"
    );
    // The same through GET, CometBFT's URI form.
    let answer = nodes[0].get("/block?height=1").await;
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    assert!(
        answer["error"]["data"]
            .as_str()
            .is_some_and(|d| d.starts_with("height 1 is not available, lowest height is")),
        "{answer}"
    );
    let recent = nodes[0].block(latest - 10).await.block.unwrap();
    assert_eq!(recent.header.height.0, latest - 10, "{recent:?}");
    // The lagging node caught up from the pruned peers and votes with them.
    let network = nodes[0].height().await.unwrap();
    nodes[3].wait_height(network + 5).await;
    for node in &nodes {
        node.wait_height(network + 10).await;
    }
}
