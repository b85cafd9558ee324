//! Strategies for valid execution values (txs, state values, DAGs of random forward edges),
//! and the reader of a leading varint: shared by the `hostile` tests and the fuzz binary
//! (`tests/fuzz.rs` includes this file as a module).

use std::ops::Range;

use proptest::prelude::*;
use proptest::sample::Index;
use weft_execution::tx::{WORK_ROUNDS_MAX, WORK_SLOTS_MAX};
use weft_execution::{
    Account, Address, ChainId, ConflictDag, Name, Payload, StateValue, Transaction, WorkSlots,
};

/// The varint at the front of `bytes`, read without limits (up to 5 bytes), if it ends there.
pub fn leading_varint(bytes: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (index, byte) in bytes.iter().take(5).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

pub fn name() -> impl Strategy<Value = Name> {
    "[a-z0-9-]{1,32}".prop_map(|text| Name::new(&text).expect("the regex admits only names"))
}

pub fn address() -> impl Strategy<Value = Address> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(Address),
        (0u8..4).prop_map(|b| Address([b; 32])),
    ]
}

pub fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (address(), any::<u64>()).prop_map(|(to, amount)| Payload::Transfer { to, amount }),
        name().prop_map(|name| Payload::RegisterName { name }),
        (name(), any::<u64>()).prop_map(|(name, amount)| Payload::PayName { name, amount }),
        (
            prop::collection::vec(any::<u64>(), 1..=WORK_SLOTS_MAX),
            0..=WORK_ROUNDS_MAX
        )
            .prop_map(|(slots, rounds)| Payload::Work {
                slots: WorkSlots::new(slots).expect("1 to 8 slots"),
                rounds,
            }),
    ]
}

pub fn transaction() -> impl Strategy<Value = Transaction> {
    (
        "[A-Za-z0-9._-]{1,50}",
        address(),
        any::<u64>(),
        payload(),
        prop::array::uniform::<_, 64>(any::<u8>()),
    )
        .prop_map(|(chain, sender, nonce, payload, signature)| Transaction {
            chain_id: ChainId::new(&chain).expect("the regex admits only chain ids"),
            sender,
            nonce,
            payload,
            signature,
        })
}

pub fn value() -> impl Strategy<Value = StateValue> {
    prop_oneof![
        (any::<u64>(), any::<u64>())
            .prop_map(|(balance, nonce)| StateValue::Account(Account { balance, nonce })),
        address().prop_map(StateValue::NameOwner),
        any::<[u8; 32]>().prop_map(StateValue::WorkDigest),
    ]
}

/// Valid DAGs of random forward edges: `txs` txs, each with up to `picks` predecessors among
/// the txs before it (sorted, deduplicated).
pub fn forward_dag(picks: Range<usize>, txs: Range<usize>) -> impl Strategy<Value = ConflictDag> {
    prop::collection::vec(prop::collection::vec(any::<Index>(), picks), txs).prop_map(|lists| {
        let preds: Vec<Vec<u32>> = lists
            .iter()
            .enumerate()
            .map(|(tx, picks)| {
                let mut list: Vec<u32> = if tx == 0 {
                    Vec::new()
                } else {
                    picks.iter().map(|pick| pick.index(tx) as u32).collect()
                };
                list.sort_unstable();
                list.dedup();
                list
            })
            .collect();
        ConflictDag::from_pred_lists_unchecked(&preds)
    })
}
