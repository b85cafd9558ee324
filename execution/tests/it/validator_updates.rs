//! `ValidatorUpdate` txs: each outcome code, and that a block's validator writes are exactly the
//! updates that succeeded, with the totals kept. Run through the proposer and checked by the
//! parallel executor like any tx.

use ed25519_dalek::SigningKey;
use weft_execution::logic::VALIDATOR_TOTAL_POWER_MAX;
use weft_execution::tx::ValidatorKey;
use weft_execution::{
    Address, ChainId, MemoryState, Payload, StateKey, StateValue, Transaction, TxCode, propose,
};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn validator(seed: u8) -> ValidatorKey {
    ValidatorKey::new(key(seed).verifying_key().to_bytes()).unwrap()
}

const AUTHORITY: u8 = 1;

/// Validators 10..10+n at `power` each, and the authority.
fn genesis(powers: &[u64]) -> MemoryState {
    let validators = powers.iter().enumerate().map(|(i, power)| {
        (
            StateKey::Validator(validator(10 + i as u8)),
            StateValue::ValidatorPower(*power),
        )
    });
    MemoryState::from_pairs(validators.chain([
        (
            StateKey::ValidatorTotals,
            StateValue::ValidatorTotals {
                total: powers.iter().sum(),
                count: powers.len() as u32,
            },
        ),
        (
            StateKey::ValidatorAuthority,
            StateValue::Authority(Address::from(&key(AUTHORITY))),
        ),
    ]))
}

fn update(sender: u8, nonce: u64, seed: u8, power: u64) -> Transaction {
    Transaction::sign(
        ChainId::new("weft-test").unwrap(),
        &key(sender),
        nonce,
        Payload::ValidatorUpdate {
            validator: validator(seed),
            power,
        },
    )
}

/// The codes of `txs` run in order on `state`.
fn codes(state: &MemoryState, txs: &[Transaction]) -> Vec<TxCode> {
    let proposal = propose(state, txs).unwrap();
    proposal.outcome.results.iter().map(|r| r.code).collect()
}

#[test]
fn each_refusal_has_its_code_and_changes_nothing() {
    let four = genesis(&[10, 10, 10, 10]);
    let cases = [
        (update(2, 0, 14, 10), TxCode::NotAuthority),
        (update(AUTHORITY, 0, 20, 0), TxCode::UnknownValidator),
        (update(AUTHORITY, 0, 10, 10), TxCode::ValidatorUnchanged),
        (update(AUTHORITY, 0, 14, 14), TxCode::PowerChangeTooLarge),
        (update(AUTHORITY, 0, 10, 24), TxCode::PowerChangeTooLarge),
        (
            update(AUTHORITY, 0, 14, VALIDATOR_TOTAL_POWER_MAX),
            TxCode::ValidatorLimit,
        ),
    ];
    for (tx, expected) in cases {
        let proposal = propose(&four, std::slice::from_ref(&tx)).unwrap();
        assert_eq!(proposal.outcome.results[0].code, expected, "{tx:?}");
        assert!(
            proposal.outcome.changes.writes.is_empty(),
            "{tx:?} wrote state"
        );
    }
    let one = genesis(&[10]);
    assert_eq!(
        codes(&one, &[update(AUTHORITY, 0, 10, 0)]),
        [TxCode::EmptyValidatorSet]
    );
    // Without an authority in the genesis, nobody may change the set.
    let mut none = MemoryState::new();
    none.insert(
        StateKey::ValidatorTotals,
        StateValue::ValidatorTotals {
            total: 10,
            count: 1,
        },
    );
    assert_eq!(
        codes(&none, &[update(AUTHORITY, 0, 10, 11)]),
        [TxCode::NotAuthority]
    );
}

#[test]
fn a_join_a_change_and_a_removal_write_the_set_and_its_totals() {
    let four = genesis(&[10, 10, 10, 10]);
    // Exactly a third of the total may move: 40 → a newcomer of 13 moves 13 (3 × 13 = 39).
    let txs = [
        update(AUTHORITY, 0, 14, 13),
        update(AUTHORITY, 1, 11, 12),
        update(AUTHORITY, 2, 12, 0),
    ];
    let proposal = propose(&four, &txs).unwrap();
    let codes: Vec<TxCode> = proposal.outcome.results.iter().map(|r| r.code).collect();
    assert_eq!(codes, [TxCode::Ok; 3]);
    let writes = &proposal.outcome.changes.writes;
    let power = |seed: u8| {
        writes
            .iter()
            .find(|(k, _)| *k == StateKey::Validator(validator(seed)))
            .map(|(_, v)| *v)
    };
    assert_eq!(power(14), Some(StateValue::ValidatorPower(13)));
    assert_eq!(power(11), Some(StateValue::ValidatorPower(12)));
    // A removal keeps the key at power 0: the state has no deletions.
    assert_eq!(power(12), Some(StateValue::ValidatorPower(0)));
    let totals = writes
        .iter()
        .find(|(k, _)| *k == StateKey::ValidatorTotals)
        .map(|(_, v)| *v);
    assert_eq!(
        totals,
        Some(StateValue::ValidatorTotals {
            total: 10 + 12 + 10 + 13,
            count: 4
        })
    );
}

#[test]
fn a_key_that_is_not_a_curve_point_is_refused_when_decoded() {
    // y = 2 is not the y-coordinate of a point on edwards25519.
    let mut bytes = [0u8; 32];
    bytes[0] = 2;
    let error = ValidatorKey::new(bytes).unwrap_err();
    assert!(
        error.to_string().contains("not an ed25519 public key"),
        "{error}"
    );
    let mut encoded = update(AUTHORITY, 0, 10, 5).encode();
    // The validator key follows the payload tag: overwrite it with the bad point.
    let tag = encoded
        .windows(32)
        .position(|w| w == validator(10).0)
        .unwrap();
    encoded[tag..tag + 32].copy_from_slice(&bytes);
    assert!(Transaction::decode(&encoded).is_err());
}
