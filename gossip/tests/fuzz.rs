//! Fuzz harnesses for gossip's decoders of peer bytes: consensus messages of every kind
//! (status, proposal with its block, vote, vote bundle, commit certificate) and frame headers,
//! tx batches from gossipsub, block-sync requests and responses, and state-sync snapshot
//! requests and responses.
//!
//! `tests/it/wire.rs` already round-trips every message kind and feeds `Message::decode` short
//! random and singly-mutated bytes; this binary adds what that cannot: the allocation bound
//! (the probe is this binary's global allocator), tx batches, sync and snapshot messages, bundles and
//! certificates with hundreds of signers, multi-byte mutations that splice hostile counts and
//! lengths into valid encodings, inputs at the caps, and a regression corpus.
//!
//! For every input each decoder must never panic, allocate within a bound linear in the input,
//! and be canonical (accepted bytes re-encode to themselves; decode(encode(x)) == x).
//! `WEFT_FUZZ_CASES=<n>` sets every harness's case count for a long run (docs/fuzzing.md).

// A test unwraps: a panic is how it fails (production code may not; see Cargo.toml).
#![allow(clippy::unwrap_used)]

use std::fmt::Debug;
use std::mem::size_of;
use std::path::Path;

use proptest::prelude::*;
use weft_consensus::{
    CommitCertificate, Height, Proposal, Round, Signature, Signed, SignedVote, ValidatorId,
    ValueId, Vote, VoteType,
};
use weft_execution::codec::put_varint;
use weft_execution::fuzzing::{Bound, checked, config, corpus_files, mutate, mutation};
use weft_execution::probe::{self, AllocProbe};
use weft_execution::tx::TX_BYTES_MAX;
use weft_gossip::net::snapshot::{SNAPSHOT_RESPONSE_BYTES_MAX, SNAPSHOTS_LISTED_MAX};
use weft_gossip::net::sync::{SYNC_BLOCKS_MAX, SYNC_RESPONSE_BYTES_MAX};
use weft_gossip::net::txs::{TX_BATCH_BYTES_MAX, decode_batch, encode_batch};
use weft_gossip::wire::SIGNERS_MAX;
use weft_gossip::{
    BLOCK_BYTES_MAX, FRAME_BYTES_MAX, Message, SnapshotInfo, SnapshotRequest, SnapshotResponse,
    SyncBlock, VoteBundle, frame_len,
    net::{SyncRequest, SyncResponse},
};

#[path = "it/values.rs"]
mod values;

use values::{signers, value, vote_type};

#[global_allocator]
static PROBE: AllocProbe = AllocProbe;

// ---------------------------------------------------------------------------------------------
// Allocation bounds for `fuzzing::checked`.

/// Bytes of one (validator, signature) pair on the wire.
const SIGNER_BYTES: usize = 32 + 64;

/// A message holds at most: a proposal's block, copied once into an `Arc<[u8]>` (1 byte per
/// byte plus its counts); a bundle's signers, 96 bytes in memory per 96 on the wire (reserved
/// once from the count, capped by the bytes that remain); a certificate's signers, decoded as
/// that same list and then rebuilt as `SignedVote`s, so 96 + `size_of::<SignedVote>()` bytes
/// per 96 on the wire. Rounded up, plus one byte per byte of slack.
fn message_bound() -> Bound {
    let per_signer = SIGNER_BYTES + size_of::<SignedVote>();
    Bound {
        total_per_byte: per_signer.div_ceil(SIGNER_BYTES) + 1,
        largest_per_byte: size_of::<SignedVote>().div_ceil(SIGNER_BYTES) + 1,
        fixed: 256,
    }
}

/// A batch entry is at least one byte (an empty tx's zero length) and becomes a 24-byte
/// `Vec<u8>` header. The list is reserved once, for at most one entry per remaining byte, and
/// never regrows (24 bytes per byte); each tx's own bytes are copied once (1 per byte).
/// (Before the fix this harness prompted, the list was reserved for one entry per two bytes
/// and a batch of empty txs regrew it twice: 84 bytes per byte.)
const BATCH_BOUND: Bound = Bound {
    total_per_byte: 26,
    largest_per_byte: 24,
    fixed: 64,
};

/// A request is two fixed-width integers: nothing to allocate.
const NOTHING: Bound = Bound {
    total_per_byte: 0,
    largest_per_byte: 0,
    fixed: 0,
};

/// A response holds at most `SYNC_BLOCKS_MAX` `SyncBlock`s (reserved from the count, capped),
/// each block's bytes copied once, and each certificate as a message holds it.
fn response_bound() -> Bound {
    let message = message_bound();
    Bound {
        total_per_byte: message.total_per_byte + 1,
        largest_per_byte: message.largest_per_byte + 1,
        fixed: SYNC_BLOCKS_MAX as usize * size_of::<SyncBlock>() + message.fixed,
    }
}

/// A snapshot response holds at most `SNAPSHOTS_LISTED_MAX` `SnapshotInfo`s (reserved from
/// the count, capped by the bytes that remain), or one answer's bytes, copied once.
const SNAPSHOT_RESPONSE_BOUND: Bound = Bound {
    total_per_byte: 1,
    largest_per_byte: 1,
    fixed: SNAPSHOTS_LISTED_MAX * size_of::<SnapshotInfo>(),
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Message,
    TxBatch,
    SyncRequest,
    SyncResponse,
    SnapshotRequest,
    SnapshotResponse,
}

const TARGETS: [Target; 6] = [
    Target::Message,
    Target::TxBatch,
    Target::SyncRequest,
    Target::SyncResponse,
    Target::SnapshotRequest,
    Target::SnapshotResponse,
];

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Message => "message",
            Target::TxBatch => "tx_batch",
            Target::SyncRequest => "sync_request",
            Target::SyncResponse => "sync_response",
            Target::SnapshotRequest => "snapshot_request",
            Target::SnapshotResponse => "snapshot_response",
        }
    }

    /// Runs every check on `bytes`; returns whether they decoded.
    fn run(self, bytes: &[u8]) -> bool {
        let name = self.name();
        match self {
            Target::Message => {
                check_frame_header(bytes);
                checked(
                    name,
                    bytes,
                    message_bound(),
                    Message::decode,
                    Message::encode,
                )
                .inspect(check_message)
                .is_some()
            }
            Target::TxBatch => checked(name, bytes, BATCH_BOUND, decode_batch, |txs| {
                encode_batch(txs)
            })
            .inspect(|txs| assert!(txs.iter().all(|tx| tx.len() <= TX_BYTES_MAX)))
            .is_some(),
            Target::SyncRequest => checked(
                name,
                bytes,
                NOTHING,
                SyncRequest::decode,
                SyncRequest::encode,
            )
            .inspect(|request| {
                // The range check is total on any decoded request.
                let _ = request.check();
            })
            .is_some(),
            Target::SyncResponse => checked(
                name,
                bytes,
                response_bound(),
                SyncResponse::decode,
                SyncResponse::encode,
            )
            .inspect(|response| {
                assert!(response.blocks.len() <= SYNC_BLOCKS_MAX as usize);
                // The shape check and the server-side trim are total on any decoded response.
                for from in [0, 1, u64::MAX] {
                    let request = SyncRequest {
                        from: Height(from),
                        count: SYNC_BLOCKS_MAX,
                    };
                    let _ = response.check(request);
                    let trimmed = response.clone().trimmed(request);
                    assert!(trimmed.blocks.len() <= response.blocks.len());
                }
            })
            .is_some(),
            Target::SnapshotRequest => checked(
                name,
                bytes,
                NOTHING,
                SnapshotRequest::decode,
                SnapshotRequest::encode,
            )
            .inspect(|request| assert!(SnapshotResponse::empty(request).answers(request)))
            .is_some(),
            Target::SnapshotResponse => checked(
                name,
                bytes,
                SNAPSHOT_RESPONSE_BOUND,
                SnapshotResponse::decode,
                SnapshotResponse::encode,
            )
            .inspect(|response| {
                // What a requester accepts, a server would send: the two sides agree on caps.
                assert!(response.fits());
                assert_eq!(response.encoded_len(), bytes.len());
            })
            .is_some(),
        }
    }
}

/// A frame header is refused exactly when it announces more than the cap.
fn check_frame_header(bytes: &[u8]) {
    if let Some(header) = bytes.get(..4) {
        let header: [u8; 4] = header.try_into().expect("four bytes");
        let announced = u32::from_le_bytes(header) as usize;
        assert_eq!(frame_len(header).is_ok(), announced <= FRAME_BYTES_MAX);
    }
}

/// What any decoded message promises its users: bundles and certificates have signers,
/// strictly ascending, and a bundle's votes are its signers.
fn check_message(message: &Message) {
    match message {
        Message::Bundle(bundle) => {
            assert!(!bundle.signers.is_empty());
            assert!(bundle.signers.windows(2).all(|w| w[0].0 < w[1].0));
            assert_eq!(bundle.votes().count(), bundle.signers.len());
        }
        Message::Commit(certificate) => {
            assert!(!certificate.precommits.is_empty());
            let ids: Vec<_> = certificate
                .precommits
                .iter()
                .map(|v| v.message.validator)
                .collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
        }
        Message::Proposal { block, .. } => assert!(block.len() <= BLOCK_BYTES_MAX),
        Message::Status { .. } | Message::Vote(_) => {}
    }
}

fn varint(value: u32) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, value);
    out
}

// ---------------------------------------------------------------------------------------------
// Mutations of valid encodings.

/// Fields a hostile peer would write into a count or length: the caps, one past them, maximal,
/// non-minimal and unterminated varints, and the widest fixed integers.
fn hostile_fields() -> Vec<Vec<u8>> {
    vec![
        varint(u32::MAX),
        varint(SIGNERS_MAX),
        varint(SIGNERS_MAX + 1),
        varint(BLOCK_BYTES_MAX as u32),
        varint(BLOCK_BYTES_MAX as u32 + 1),
        varint(TX_BATCH_BYTES_MAX as u32),
        varint(TX_BYTES_MAX as u32 + 1),
        varint(SYNC_BLOCKS_MAX),
        varint(SYNC_BLOCKS_MAX + 1),
        varint(SYNC_RESPONSE_BYTES_MAX as u32),
        varint(SNAPSHOTS_LISTED_MAX as u32),
        varint(SNAPSHOTS_LISTED_MAX as u32 + 1),
        varint(SNAPSHOT_RESPONSE_BYTES_MAX as u32),
        vec![0x80, 0x00],
        vec![0x80, 0x80, 0x80, 0x80, 0x80],
        u32::MAX.to_le_bytes().to_vec(),
        u64::MAX.to_le_bytes().to_vec(),
        vec![0],
        vec![2],
        vec![0xff],
    ]
}

// ---------------------------------------------------------------------------------------------
// Strategies for valid values.

fn certificate(signers_max: usize) -> impl Strategy<Value = CommitCertificate> {
    (any::<u64>(), any::<u32>(), value(), signers(signers_max)).prop_map(
        |(height, round, value, signers)| CommitCertificate {
            height: Height(height),
            round: Round(round),
            value,
            precommits: signers
                .into_iter()
                .map(|(validator, signature)| Signed {
                    message: Vote {
                        vote_type: VoteType::Precommit,
                        height: Height(height),
                        round: Round(round),
                        value: Some(value),
                        validator,
                    },
                    signature,
                })
                .collect(),
        },
    )
}

/// Every kind; bundles and certificates with up to 300 signers, blocks up to 4 KiB.
fn message() -> impl Strategy<Value = Message> {
    let signers_max = 300;
    prop_oneof![
        (any::<u64>(), any::<u32>()).prop_map(|(h, r)| Message::Status {
            height: Height(h),
            round: Round(r)
        }),
        (
            any::<u64>(),
            any::<u32>(),
            value(),
            prop::option::of(any::<u32>()),
            any::<[u8; 32]>(),
            any::<[u8; 64]>(),
            prop::collection::vec(any::<u8>(), 0..4096),
        )
            .prop_map(|(h, r, v, pol, proposer, signature, block)| {
                Message::Proposal {
                    proposal: Signed {
                        message: Proposal {
                            height: Height(h),
                            round: Round(r),
                            value: v,
                            pol_round: pol.map(Round),
                            proposer: ValidatorId(proposer),
                        },
                        signature: Signature(signature),
                    },
                    block: block.into(),
                }
            }),
        (
            vote_type(),
            any::<u64>(),
            any::<u32>(),
            prop::option::of(value()),
            any::<[u8; 32]>(),
            any::<[u8; 64]>(),
        )
            .prop_map(|(t, h, r, v, validator, signature)| Message::Vote(Signed {
                message: Vote {
                    vote_type: t,
                    height: Height(h),
                    round: Round(r),
                    value: v,
                    validator: ValidatorId(validator),
                },
                signature: Signature(signature),
            })),
        (
            vote_type(),
            any::<u64>(),
            any::<u32>(),
            prop::option::of(value()),
            signers(signers_max)
        )
            .prop_map(
                |(vote_type, h, r, value, signers)| Message::Bundle(VoteBundle {
                    vote_type,
                    height: Height(h),
                    round: Round(r),
                    value,
                    signers,
                })
            ),
        certificate(signers_max).prop_map(Message::Commit),
    ]
}

/// Tx batches: real-sized random txs, empty ones, and txs at the size cap.
fn batch() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let tx = prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 100..200),
        1 => Just(Vec::new()),
        1 => prop::collection::vec(any::<u8>(), TX_BYTES_MAX..=TX_BYTES_MAX),
    ];
    prop::collection::vec(tx, 0..120)
}

fn sync_request() -> impl Strategy<Value = SyncRequest> {
    (any::<u64>(), any::<u32>()).prop_map(|(from, count)| SyncRequest {
        from: Height(from),
        count,
    })
}

fn sync_response() -> impl Strategy<Value = SyncResponse> {
    let block = (
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..2048),
        certificate(40),
    )
        .prop_map(|(height, block, certificate)| SyncBlock {
            height: Height(height),
            block,
            certificate,
        });
    prop::collection::vec(block, 0..=8).prop_map(|blocks| SyncResponse { blocks })
}

fn snapshot_request() -> impl Strategy<Value = SnapshotRequest> {
    prop_oneof![
        Just(SnapshotRequest::List),
        any::<u64>().prop_map(|height| SnapshotRequest::Manifest { height }),
        (any::<u64>(), any::<u32>())
            .prop_map(|(height, index)| SnapshotRequest::Chunk { height, index }),
        any::<u64>().prop_map(|height| SnapshotRequest::LightBlock { height }),
    ]
}

fn snapshot_response() -> impl Strategy<Value = SnapshotResponse> {
    let info = (any::<u64>(), any::<u32>(), any::<[u8; 32]>()).prop_map(
        |(height, chunks, manifest_hash)| SnapshotInfo {
            height,
            chunks,
            manifest_hash,
        },
    );
    let opaque = || prop::option::of(prop::collection::vec(any::<u8>(), 0..4096));
    prop_oneof![
        prop::collection::vec(info, 0..=SNAPSHOTS_LISTED_MAX).prop_map(SnapshotResponse::List),
        opaque().prop_map(SnapshotResponse::Manifest),
        opaque().prop_map(SnapshotResponse::Chunk),
        opaque().prop_map(SnapshotResponse::LightBlock),
    ]
}

/// A valid encoding of some target.
fn encoding() -> impl Strategy<Value = (Target, Vec<u8>)> {
    prop_oneof![
        3 => message().prop_map(|m| (Target::Message, m.encode())),
        1 => batch().prop_map(|txs| (Target::TxBatch, encode_batch(&txs))),
        1 => sync_request().prop_map(|r| (Target::SyncRequest, r.encode())),
        1 => sync_response().prop_map(|r| (Target::SyncResponse, r.encode())),
        1 => snapshot_request().prop_map(|r| (Target::SnapshotRequest, r.encode())),
        1 => snapshot_response().prop_map(|r| (Target::SnapshotResponse, r.encode())),
    ]
}

// ---------------------------------------------------------------------------------------------
// The harnesses.

proptest! {
    #![proptest_config(config(2048, 1))]

    #[test]
    fn random_bytes_never_panic_stay_bounded_and_are_canonical(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        for target in TARGETS {
            target.run(&bytes);
        }
    }

    /// Random bytes behind a valid message kind and vote head, so decoding gets past the tag.
    #[test]
    fn random_bodies_of_each_kind_never_panic(
        kind in 0u8..6,
        head in prop::collection::vec(prop_oneof![Just(0u8), Just(1u8), any::<u8>()], 0..48),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let bytes = [&[kind][..], &head, &body].concat();
        Target::Message.run(&bytes);
    }
}

proptest! {
    #![proptest_config(config(1024, 1))]

    #[test]
    fn mutated_encodings_never_panic_stay_bounded_and_are_canonical(
        (target, bytes) in encoding(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        prop_assert!(target.run(&bytes), "the unmutated {:?} encoding decodes", target);
        target.run(&mutate(bytes, &mutations, &hostile_fields()));
    }

    #[test]
    fn generated_values_round_trip_within_bounds(
        message in message(),
        txs in batch(),
        request in sync_request(),
        response in sync_response(),
        snapshot_request in snapshot_request(),
        snapshot_response in snapshot_response(),
    ) {
        let decoded = checked("message", &message.encode(), message_bound(), Message::decode, Message::encode);
        prop_assert_eq!(decoded, Some(message));
        let decoded = checked("tx_batch", &encode_batch(&txs), BATCH_BOUND, decode_batch, |t| encode_batch(t));
        prop_assert_eq!(decoded, Some(txs));
        let decoded = checked("sync_request", &request.encode(), NOTHING, SyncRequest::decode, SyncRequest::encode);
        prop_assert_eq!(decoded, Some(request));
        let decoded = checked("sync_response", &response.encode(), response_bound(), SyncResponse::decode, SyncResponse::encode);
        prop_assert_eq!(decoded, Some(response));
        let decoded = checked("snapshot_request", &snapshot_request.encode(), NOTHING, SnapshotRequest::decode, SnapshotRequest::encode);
        prop_assert_eq!(decoded, Some(snapshot_request));
        let decoded = checked("snapshot_response", &snapshot_response.encode(), SNAPSHOT_RESPONSE_BOUND, SnapshotResponse::decode, SnapshotResponse::encode);
        prop_assert_eq!(decoded, Some(snapshot_response));
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs at the caps: too large for the corpus, built here.

/// The worst inputs for the allocation bound, each at its cap: a certificate with
/// `SIGNERS_MAX` signers, a batch of `TX_BATCH_BYTES_MAX` bytes of empty txs, a proposal with a
/// block of `BLOCK_BYTES_MAX`, a response of `SYNC_BLOCKS_MAX` blocks, a snapshot chunk of
/// `SNAPSHOT_RESPONSE_BYTES_MAX` bytes on the wire and a list of `SNAPSHOTS_LISTED_MAX`. Each
/// decodes within its bound and round-trips; one signer, block, snapshot or byte more is
/// refused.
#[test]
fn inputs_at_the_caps_decode_within_bounds() {
    let signers: Vec<_> = (0..SIGNERS_MAX)
        .map(|i| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            (ValidatorId(id), Signature([1; 64]))
        })
        .collect();
    let certificate = |signers: &[(ValidatorId, Signature)]| CommitCertificate {
        height: Height(9),
        round: Round(0),
        value: ValueId([4; 32]),
        precommits: signers
            .iter()
            .map(|&(validator, signature)| Signed {
                message: Vote {
                    vote_type: VoteType::Precommit,
                    height: Height(9),
                    round: Round(0),
                    value: Some(ValueId([4; 32])),
                    validator,
                },
                signature,
            })
            .collect(),
    };
    let full = Message::Commit(certificate(&signers)).encode();
    assert!(
        Target::Message.run(&full),
        "a certificate at the cap decodes"
    );
    let mut over = signers.clone();
    let mut id = [0xff; 32];
    id[0] = 0xfe;
    over.push((ValidatorId(id), Signature([1; 64])));
    assert!(!Target::Message.run(&Message::Commit(certificate(&over)).encode()));

    // An empty tx costs one byte on the wire and a 24-byte `Vec` in memory: the batch that
    // allocates the most per byte.
    let count = TX_BATCH_BYTES_MAX as u32 - 3;
    let mut empties = varint(count);
    empties.resize(TX_BATCH_BYTES_MAX, 0);
    assert!(Target::TxBatch.run(&empties), "a batch at the cap decodes");
    empties.push(0);
    assert!(!Target::TxBatch.run(&empties));

    let proposal = Message::Proposal {
        proposal: Signed {
            message: Proposal {
                height: Height(1),
                round: Round(0),
                value: ValueId([1; 32]),
                pol_round: None,
                proposer: ValidatorId([2; 32]),
            },
            signature: Signature([3; 64]),
        },
        block: vec![7u8; BLOCK_BYTES_MAX].into(),
    };
    let bytes = proposal.encode();
    assert!(Target::Message.run(&bytes), "a block at the cap decodes");

    let blocks = (0..SYNC_BLOCKS_MAX as usize + 1)
        .map(|i| SyncBlock {
            height: Height(i as u64),
            block: vec![i as u8; 1000],
            certificate: certificate(&signers[..4]),
        })
        .collect::<Vec<_>>();
    let at_cap = SyncResponse {
        blocks: blocks[..SYNC_BLOCKS_MAX as usize].to_vec(),
    };
    assert!(Target::SyncResponse.run(&at_cap.encode()));
    assert!(!Target::SyncResponse.run(&SyncResponse { blocks }.encode()));

    // A tag, a flag and the 4-byte length varint of 8 MiB - 6 before the chunk's bytes.
    let largest = SNAPSHOT_RESPONSE_BYTES_MAX - 6;
    let chunk = SnapshotResponse::Chunk(Some(vec![5; largest])).encode();
    assert_eq!(chunk.len(), SNAPSHOT_RESPONSE_BYTES_MAX);
    assert!(
        Target::SnapshotResponse.run(&chunk),
        "a chunk at the cap decodes"
    );
    let over = SnapshotResponse::Chunk(Some(vec![5; largest + 1])).encode();
    assert!(!Target::SnapshotResponse.run(&over));
    let info = SnapshotInfo {
        height: 3,
        chunks: 9,
        manifest_hash: [6; 32],
    };
    let list = SnapshotResponse::List(vec![info; SNAPSHOTS_LISTED_MAX]).encode();
    assert!(Target::SnapshotResponse.run(&list), "a full list decodes");
    let list = SnapshotResponse::List(vec![info; SNAPSHOTS_LISTED_MAX + 1]).encode();
    assert!(!Target::SnapshotResponse.run(&list));
}

// ---------------------------------------------------------------------------------------------
// The regression corpus.

/// Replays every file under `tests/corpus/<target>/`: each must pass the same checks as a
/// proptest case. The seeds are hand-made edge cases (maximal length prefixes, counts past the
/// caps, trailing bytes, empty input); failures found by proptest are saved here too.
#[test]
fn the_corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut replayed = 0;
    for target in TARGETS {
        let dir = root.join(target.name());
        for file in corpus_files(&dir) {
            let bytes = std::fs::read(&file).expect("corpus file");
            println!("{}", file.display());
            target.run(&bytes);
            replayed += 1;
        }
    }
    println!("replayed {replayed} corpus files");
}

/// The probe is this binary's allocator and sees allocations: otherwise every bound above
/// would hold vacuously.
#[test]
fn the_probe_is_installed() {
    assert!(probe::installed());
    let (buffer, footprint) = probe::measure(|| Vec::<u8>::with_capacity(4096));
    assert!(footprint.largest_bytes >= 4096 && footprint.within(0, 0, 4096 + 64));
    drop(buffer);
}
