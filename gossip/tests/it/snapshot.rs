//! State-sync snapshots: the codec's round trips and refusals, and the protocol between real
//! loopback nodes (answers byte for byte, answers of another kind charged, in-flight bounds,
//! the node's own charges and the ban they lead to).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use proptest::prelude::*;
use weft_execution::DecodeError;
use weft_gossip::cluster::Cluster;
use weft_gossip::net::snapshot::{
    SNAPSHOT_REQUEST_BYTES_MAX, SNAPSHOT_RESPONSE_BYTES_MAX, SNAPSHOTS_LISTED_MAX,
};
use weft_gossip::score::Offence;
use weft_gossip::{
    GossipMode, Hooks, SnapshotInfo, SnapshotRequest, SnapshotResponse, SyncError, generate,
};

const DEADLINE: Duration = Duration::from_secs(30);
const CHAIN: &str = "weft-snapshot-test";

// ---------------------------------------------------------------------------------------------
// The codec.

fn request() -> impl Strategy<Value = SnapshotRequest> {
    prop_oneof![
        Just(SnapshotRequest::List),
        any::<u64>().prop_map(|height| SnapshotRequest::Manifest { height }),
        (any::<u64>(), any::<u32>())
            .prop_map(|(height, index)| SnapshotRequest::Chunk { height, index }),
        any::<u64>().prop_map(|height| SnapshotRequest::LightBlock { height }),
    ]
}

fn info() -> impl Strategy<Value = SnapshotInfo> {
    (any::<u64>(), any::<u32>(), any::<[u8; 32]>()).prop_map(|(height, chunks, hash)| {
        SnapshotInfo {
            height,
            chunks,
            manifest_hash: hash,
        }
    })
}

fn response() -> impl Strategy<Value = SnapshotResponse> {
    // Lengths across the varint's one- and two-byte forms.
    let opaque = || prop::option::of(prop::collection::vec(any::<u8>(), 0..300));
    prop_oneof![
        prop::collection::vec(info(), 0..=SNAPSHOTS_LISTED_MAX).prop_map(SnapshotResponse::List),
        opaque().prop_map(SnapshotResponse::Manifest),
        opaque().prop_map(SnapshotResponse::Chunk),
        opaque().prop_map(SnapshotResponse::LightBlock),
    ]
}

proptest! {
    #[test]
    fn every_snapshot_request_round_trips_byte_for_byte(request in request()) {
        let bytes = request.encode();
        prop_assert!(bytes.len() <= SNAPSHOT_REQUEST_BYTES_MAX);
        prop_assert_eq!(SnapshotRequest::decode(&bytes), Ok(request));
        prop_assert!(SnapshotResponse::empty(&request).answers(&request));
    }

    #[test]
    fn every_snapshot_response_round_trips_byte_for_byte(response in response()) {
        let bytes = response.encode();
        prop_assert_eq!(bytes.len(), response.encoded_len());
        prop_assert!(response.fits());
        let decoded = SnapshotResponse::decode(&bytes).unwrap();
        prop_assert_eq!(decoded.encode(), bytes);
        prop_assert_eq!(decoded, response);
    }
}

#[test]
fn a_response_answers_exactly_its_own_kind_of_request() {
    let requests = [
        SnapshotRequest::List,
        SnapshotRequest::Manifest { height: 1 },
        SnapshotRequest::Chunk {
            height: 1,
            index: 0,
        },
        SnapshotRequest::LightBlock { height: 1 },
    ];
    for (i, asked) in requests.iter().enumerate() {
        for (j, other) in requests.iter().enumerate() {
            let response = SnapshotResponse::empty(other);
            assert_eq!(
                response.answers(asked),
                i == j,
                "{response:?} for {asked:?}"
            );
        }
    }
}

fn list_of(count: usize) -> Vec<u8> {
    SnapshotResponse::List(vec![
        SnapshotInfo {
            height: 7,
            chunks: 3,
            manifest_hash: [9; 32],
        };
        count
    ])
    .encode()
}

/// Bytes a peer might send, and the refusal each must meet.
#[test]
fn hostile_snapshot_bytes_are_refused() {
    let chunk = SnapshotResponse::Chunk(Some(b"chunk".to_vec())).encode();
    let request = SnapshotRequest::Chunk {
        height: 5,
        index: 2,
    }
    .encode();
    let requests: [(&str, Vec<u8>, DecodeError); 5] = [
        (
            "empty",
            vec![],
            DecodeError::UnexpectedEnd {
                what: "snapshot request kind",
            },
        ),
        (
            "unknown kind",
            vec![4],
            DecodeError::UnknownTag {
                what: "snapshot request kind",
                tag: 4,
            },
        ),
        (
            "trailing byte",
            [&request[..], &[0]].concat(),
            DecodeError::TrailingBytes { count: 1 },
        ),
        (
            "cut short",
            request[..request.len() - 1].to_vec(),
            DecodeError::UnexpectedEnd {
                what: "chunk index",
            },
        ),
        (
            "over the cap",
            vec![0; SNAPSHOT_REQUEST_BYTES_MAX + 1],
            DecodeError::TooLarge {
                len: SNAPSHOT_REQUEST_BYTES_MAX + 1,
                cap: SNAPSHOT_REQUEST_BYTES_MAX,
            },
        ),
    ];
    for (name, bytes, expected) in requests {
        assert_eq!(SnapshotRequest::decode(&bytes), Err(expected), "{name}");
    }

    let responses: [(&str, Vec<u8>, DecodeError); 7] = [
        (
            "unknown kind",
            vec![4, 0],
            DecodeError::UnknownTag {
                what: "snapshot response kind",
                tag: 4,
            },
        ),
        (
            "answer flag 2",
            vec![2, 2],
            DecodeError::UnknownTag {
                what: "snapshot answer flag",
                tag: 2,
            },
        ),
        (
            "trailing byte",
            [&chunk[..], &[0]].concat(),
            DecodeError::TrailingBytes { count: 1 },
        ),
        (
            "length past the end",
            vec![1, 1, 10, 1, 2, 3],
            DecodeError::UnexpectedEnd { what: "manifest" },
        ),
        (
            "list longer than the max",
            list_of(SNAPSHOTS_LISTED_MAX + 1),
            DecodeError::OverLimit {
                what: "snapshots listed",
                value: SNAPSHOTS_LISTED_MAX as u64 + 1,
                limit: SNAPSHOTS_LISTED_MAX as u64,
            },
        ),
        (
            "list count without its entries",
            vec![0, SNAPSHOTS_LISTED_MAX as u8],
            DecodeError::UnexpectedEnd {
                what: "snapshot height",
            },
        ),
        (
            "over the cap",
            vec![0; SNAPSHOT_RESPONSE_BYTES_MAX + 1],
            DecodeError::TooLarge {
                len: SNAPSHOT_RESPONSE_BYTES_MAX + 1,
                cap: SNAPSHOT_RESPONSE_BYTES_MAX,
            },
        ),
    ];
    for (name, bytes, expected) in responses {
        assert_eq!(SnapshotResponse::decode(&bytes), Err(expected), "{name}");
    }
    // A full list is taken.
    assert!(SnapshotResponse::decode(&list_of(SNAPSHOTS_LISTED_MAX)).is_ok());
}

#[test]
fn the_largest_chunk_that_fits_is_exactly_at_the_cap() {
    // A tag, a flag and a 4-byte length varint (8 MiB needs 24 bits) before the bytes.
    let largest = SNAPSHOT_RESPONSE_BYTES_MAX - 1 - 1 - 4;
    let at_cap = SnapshotResponse::Chunk(Some(vec![7; largest]));
    assert!(at_cap.fits());
    let bytes = at_cap.encode();
    assert_eq!(bytes.len(), SNAPSHOT_RESPONSE_BYTES_MAX);
    assert_eq!(SnapshotResponse::decode(&bytes).unwrap(), at_cap);
    assert!(!SnapshotResponse::Chunk(Some(vec![7; largest + 1])).fits());
    assert!(
        !SnapshotResponse::List(vec![
            SnapshotInfo {
                height: 1,
                chunks: 1,
                manifest_hash: [0; 32]
            };
            SNAPSHOTS_LISTED_MAX + 1
        ])
        .fits()
    );
}

// ---------------------------------------------------------------------------------------------
// Real loopback nodes.

/// Waits for `done` to hold, failing with `what` at the deadline.
async fn wait_for(mut done: impl FnMut() -> bool, what: &str) {
    let until = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two connected nodes; node 1 serves snapshots through `serve`, node 0 asks.
async fn pair(
    serve: impl Fn(&SnapshotRequest) -> SnapshotResponse + Clone + Send + Sync + 'static,
) -> Cluster {
    let overlay = generate(2, 1, 0, 0).unwrap();
    let cluster = Cluster::start_with_hooks(
        overlay,
        GossipMode::Semantic,
        CHAIN,
        |_, config| config.limits.sync_in_flight_max = 1,
        |i| match i {
            1 => Hooks {
                snapshots: Arc::new(serve.clone()),
                ..Hooks::default()
            },
            _ => Hooks::default(),
        },
    )
    .await
    .unwrap();
    cluster.wait_connected(DEADLINE).await.unwrap();
    cluster
}

const SNAPSHOT: SnapshotInfo = SnapshotInfo {
    height: 1_000,
    chunks: 2,
    manifest_hash: [0x4d; 32],
};

/// A store holding one snapshot, at height 1,000, of two chunks.
fn store(request: &SnapshotRequest) -> SnapshotResponse {
    match *request {
        SnapshotRequest::List => SnapshotResponse::List(vec![SNAPSHOT]),
        SnapshotRequest::Manifest { height: 1_000 } => {
            SnapshotResponse::Manifest(Some(b"manifest of 1000".to_vec()))
        }
        SnapshotRequest::Chunk {
            height: 1_000,
            index,
        } if index < SNAPSHOT.chunks => {
            SnapshotResponse::Chunk(Some(vec![index as u8; 70_000 + index as usize]))
        }
        SnapshotRequest::LightBlock { height: 1_000 } => {
            SnapshotResponse::LightBlock(Some(b"header, certificate, sets".to_vec()))
        }
        // A node answering something bigger than the wire takes.
        SnapshotRequest::Chunk {
            height: 2_000,
            index: 0,
        } => SnapshotResponse::Chunk(Some(vec![0; SNAPSHOT_RESPONSE_BYTES_MAX])),
        other => SnapshotResponse::empty(&other),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_served_over_loopback_byte_for_byte() {
    let cluster = pair(store).await;
    let client = cluster.members[0].handle.clone();
    let server = cluster.members[1].handle.clone();
    let cases = [
        (SnapshotRequest::List, store(&SnapshotRequest::List)),
        (
            SnapshotRequest::Manifest { height: 1_000 },
            SnapshotResponse::Manifest(Some(b"manifest of 1000".to_vec())),
        ),
        (
            SnapshotRequest::Chunk {
                height: 1_000,
                index: 1,
            },
            SnapshotResponse::Chunk(Some(vec![1; 70_001])),
        ),
        (
            SnapshotRequest::LightBlock { height: 1_000 },
            SnapshotResponse::LightBlock(Some(b"header, certificate, sets".to_vec())),
        ),
        // What the store lacks.
        (
            SnapshotRequest::Manifest { height: 999 },
            SnapshotResponse::Manifest(None),
        ),
        (
            SnapshotRequest::Chunk {
                height: 1_000,
                index: 2,
            },
            SnapshotResponse::Chunk(None),
        ),
        (
            SnapshotRequest::LightBlock { height: 1 },
            SnapshotResponse::LightBlock(None),
        ),
        // Over the cap: the server sends the empty answer instead.
        (
            SnapshotRequest::Chunk {
                height: 2_000,
                index: 0,
            },
            SnapshotResponse::Chunk(None),
        ),
    ];
    for (request, expected) in &cases {
        let answer = client.request_snapshot(server.peer_id(), *request).await;
        assert_eq!(answer.as_ref(), Ok(expected), "{request:?}");
    }
    assert_eq!(client.score(&server.peer_id()), 0);
    let served = |kind: &str| {
        server
            .metrics()
            .snapshots_served
            .with_label_values(&[kind])
            .get()
    };
    assert_eq!(
        [
            served("list"),
            served("manifest"),
            served("chunk"),
            served("light_block")
        ],
        [1, 2, 3, 2]
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_of_another_kind_is_refused_and_charges_the_server() {
    // A list for every request.
    let cluster = pair(|_: &SnapshotRequest| SnapshotResponse::List(vec![SNAPSHOT])).await;
    let client = cluster.members[0].handle.clone();
    let server = cluster.members[1].handle.peer_id();
    let answer = client
        .request_snapshot(
            server,
            SnapshotRequest::Chunk {
                height: 1_000,
                index: 0,
            },
        )
        .await;
    assert!(
        matches!(answer, Err(SyncError::BadResponse(_))),
        "{answer:?}"
    );
    assert_eq!(client.score(&server), Offence::Malformed.penalty());
    // The kind it does answer is taken.
    assert_eq!(
        client.request_snapshot(server, SnapshotRequest::List).await,
        Ok(SnapshotResponse::List(vec![SNAPSHOT]))
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_requests_past_the_in_flight_bound_are_refused_as_busy() {
    // The server's hook holds every answer until the gate opens (its sender is dropped).
    let entered = Arc::new(AtomicBool::new(false));
    let (open, gate) = std::sync::mpsc::sync_channel::<()>(0);
    let gate = Arc::new(Mutex::new(gate));
    let serve = {
        let entered = entered.clone();
        move |request: &SnapshotRequest| {
            entered.store(true, Ordering::Release);
            let _ = gate.lock().recv();
            store(request)
        }
    };
    let cluster = pair(serve).await;
    let client = cluster.members[0].handle.clone();
    let server = cluster.members[1].handle.peer_id();
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.request_snapshot(server, SnapshotRequest::List).await }
    });
    wait_for(
        || entered.load(Ordering::Acquire),
        "the first request to reach the hook",
    )
    .await;
    // The client's one slot is taken by the first request.
    assert_eq!(
        client
            .request_snapshot(server, SnapshotRequest::Manifest { height: 1_000 })
            .await,
        Err(SyncError::Busy)
    );
    drop(open);
    assert_eq!(
        first.await.unwrap(),
        Ok(SnapshotResponse::List(vec![SNAPSHOT]))
    );
    // The slot is free again.
    assert_eq!(
        client
            .request_snapshot(server, SnapshotRequest::Manifest { height: 1_000 })
            .await,
        Ok(SnapshotResponse::Manifest(Some(
            b"manifest of 1000".to_vec()
        )))
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_false_snapshots_charged_by_the_node_ban_the_peer() {
    let cluster = pair(store).await;
    let client = cluster.members[0].handle.clone();
    let server = cluster.members[1].handle.peer_id();
    client.charge(&server, Offence::BadSnapshot);
    assert_eq!(client.score(&server), Offence::BadSnapshot.penalty());
    assert!(!client.is_banned(&server));
    client.charge(&server, Offence::BadSnapshot);
    assert!(client.is_banned(&server));
    // The ban disconnects it.
    wait_for(
        || client.peers().is_empty(),
        "the banned peer to be disconnected",
    )
    .await;
    cluster.shutdown().await;
}
