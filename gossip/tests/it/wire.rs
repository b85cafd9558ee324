//! The wire format: canonical round trips, bundles, and hostile bytes.

use proptest::prelude::*;
use weft_consensus::{
    CommitCertificate, Height, Proposal, Round, Signature, Signed, ValidatorId, ValueId, Vote,
    VoteType,
};
use weft_execution::DecodeError;
use weft_gossip::wire::SIGNERS_MAX;
use weft_gossip::{FRAME_BYTES_MAX, Message, VoteBundle, WireError, frame_len};

#[path = "values.rs"]
mod values;

use values::{signers, value, vote_type};

/// Bundles and certificates in these tests have 1 to 19 signers.
const SIGNERS_TESTED_MAX: usize = 19;

fn message() -> impl Strategy<Value = Message> {
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
            prop::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(h, r, v, pol, proposer, block)| Message::Proposal {
                proposal: Signed {
                    message: Proposal {
                        height: Height(h),
                        round: Round(r),
                        value: v,
                        pol_round: pol.map(Round),
                        proposer: ValidatorId(proposer),
                    },
                    signature: Signature([7; 64]),
                },
                block: block.into(),
            }),
        (
            vote_type(),
            any::<u64>(),
            any::<u32>(),
            prop::option::of(value()),
            any::<[u8; 32]>()
        )
            .prop_map(|(t, h, r, v, validator)| Message::Vote(Signed {
                message: Vote {
                    vote_type: t,
                    height: Height(h),
                    round: Round(r),
                    value: v,
                    validator: ValidatorId(validator),
                },
                signature: Signature([3; 64]),
            })),
        (
            vote_type(),
            any::<u64>(),
            any::<u32>(),
            prop::option::of(value()),
            signers(SIGNERS_TESTED_MAX)
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
        (
            any::<u64>(),
            any::<u32>(),
            value(),
            signers(SIGNERS_TESTED_MAX)
        )
            .prop_map(|(h, r, v, signers)| {
                Message::Commit(CommitCertificate {
                    height: Height(h),
                    round: Round(r),
                    value: v,
                    precommits: signers
                        .into_iter()
                        .map(|(validator, signature)| Signed {
                            message: Vote {
                                vote_type: VoteType::Precommit,
                                height: Height(h),
                                round: Round(r),
                                value: Some(v),
                                validator,
                            },
                            signature,
                        })
                        .collect(),
                })
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_message_round_trips_byte_for_byte(message in message()) {
        let bytes = message.encode();
        let decoded = Message::decode(&bytes).expect("a valid encoding decodes");
        prop_assert_eq!(&decoded, &message);
        prop_assert_eq!(decoded.encode(), bytes);
        let frame = message.to_frame();
        let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
        prop_assert_eq!(len, frame.len() - 4);
    }

    #[test]
    fn random_bytes_never_panic_and_accepted_bytes_are_canonical(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        if let Ok(message) = Message::decode(&bytes) {
            prop_assert_eq!(message.encode(), bytes);
        }
    }

    #[test]
    fn mutated_messages_never_panic_and_stay_canonical(
        message in message(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let mut bytes = message.encode();
        let index = at.index(bytes.len());
        if cut {
            bytes.truncate(index);
        } else {
            bytes[index] = byte;
        }
        if let Ok(decoded) = Message::decode(&bytes) {
            prop_assert_eq!(decoded.encode(), bytes);
        }
    }
}

#[test]
fn a_bundle_is_its_votes() {
    let votes: Vec<_> = [3u8, 1, 2]
        .iter()
        .map(|&i| Signed {
            message: Vote {
                vote_type: VoteType::Prevote,
                height: Height(5),
                round: Round(1),
                value: Some(ValueId([9; 32])),
                validator: ValidatorId([i; 32]),
            },
            signature: Signature([i; 64]),
        })
        .collect();
    let bundle = VoteBundle::from_votes(&votes).expect("votes agree");
    let mut sorted = votes.clone();
    sorted.sort_by_key(|v| v.message.validator);
    assert_eq!(bundle.votes().collect::<Vec<_>>(), sorted);
    let mut mixed = votes.clone();
    mixed[0].message.value = None;
    assert_eq!(VoteBundle::from_votes(&mixed), None);
    assert_eq!(VoteBundle::from_votes(&[]), None);
}

#[test]
fn oversized_frames_and_counts_are_refused_before_allocation() {
    let too_big = (FRAME_BYTES_MAX as u32 + 1).to_le_bytes();
    assert_eq!(
        frame_len(too_big),
        Err(WireError::FrameTooLarge {
            len: FRAME_BYTES_MAX + 1
        })
    );
    assert_eq!(
        frame_len((FRAME_BYTES_MAX as u32).to_le_bytes()),
        Ok(FRAME_BYTES_MAX)
    );
    // A bundle announcing the maximum number of signers and carrying none fails at once.
    let mut bytes = vec![3, 0];
    bytes.extend_from_slice(&1u64.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.push(0);
    let mut count = Vec::new();
    weft_execution::codec::put_varint(&mut count, SIGNERS_MAX);
    bytes.extend_from_slice(&count);
    assert!(matches!(
        Message::decode(&bytes),
        Err(WireError::Decode(DecodeError::UnexpectedEnd { .. }))
    ));
    let mut over = bytes[..bytes.len() - count.len()].to_vec();
    weft_execution::codec::put_varint(&mut over, SIGNERS_MAX + 1);
    assert!(matches!(
        Message::decode(&over),
        Err(WireError::Decode(DecodeError::OverLimit { .. }))
    ));
    assert!(matches!(
        Message::decode(&vec![0; FRAME_BYTES_MAX + 1]),
        Err(WireError::Decode(DecodeError::TooLarge { .. }))
    ));
}

#[test]
fn unsorted_signers_trailing_bytes_and_unknown_kinds_are_refused() {
    let bundle = Message::Bundle(VoteBundle {
        vote_type: VoteType::Precommit,
        height: Height(1),
        round: Round(0),
        value: None,
        signers: vec![
            (ValidatorId([2; 32]), Signature([0; 64])),
            (ValidatorId([1; 32]), Signature([0; 64])),
        ],
    });
    assert!(matches!(
        Message::decode(&bundle.encode()),
        Err(WireError::Decode(DecodeError::Invalid { .. }))
    ));
    let mut status = Message::Status {
        height: Height(1),
        round: Round(2),
    }
    .encode();
    status.push(0);
    assert_eq!(
        Message::decode(&status),
        Err(WireError::Decode(DecodeError::TrailingBytes { count: 1 }))
    );
    assert!(matches!(
        Message::decode(&[9]),
        Err(WireError::Decode(DecodeError::UnknownTag { .. }))
    ));
}
