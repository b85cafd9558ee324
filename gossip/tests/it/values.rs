//! Strategies for the parts of valid messages, shared by `wire` (which declares this module)
//! and the fuzz binary (`tests/fuzz.rs`, which includes this file by path).

use proptest::prelude::*;
use weft_consensus::{Signature, ValidatorId, ValueId, VoteType};

pub fn vote_type() -> impl Strategy<Value = VoteType> {
    prop_oneof![Just(VoteType::Prevote), Just(VoteType::Precommit)]
}

pub fn value() -> impl Strategy<Value = ValueId> {
    any::<[u8; 32]>().prop_map(ValueId)
}

/// 1 to `max` signers, validators strictly ascending.
pub fn signers(max: usize) -> impl Strategy<Value = Vec<(ValidatorId, Signature)>> {
    prop::collection::btree_map(any::<[u8; 32]>(), any::<u8>(), 1..=max).prop_map(|map| {
        map.into_iter()
            .map(|(id, fill)| (ValidatorId(id), Signature([fill; 64])))
            .collect()
    })
}
