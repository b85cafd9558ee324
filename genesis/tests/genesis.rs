//! The genesis file: save/load round trips, the canonical hash, one test per validation error
//! (each asserting the variant and that the message names the file), the size cap, and the
//! conversions into consensus and execution types.

// A test unwraps: a panic is how it fails (production code may not; see Cargo.toml).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;

use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};
use weft_consensus::{TimeoutParams, ValidatorId};
use weft_execution::tx::ValidatorKey;
use weft_execution::{Account, Address, MemoryState, StateKey, StateValue, StateView};
use weft_genesis::genesis::{BLOCK_BYTES_MAX, TIMEOUT_MS_MAX};
use weft_genesis::{
    ACCOUNTS_MAX, ConsensusParams, GENESIS_FILE_BYTES_MAX, Genesis, GenesisProblem, KeyDefect,
    SecretKey, VALIDATORS_MAX,
};

/// 2026-11-27T00:00:00Z.
const GENESIS_TIME_MS: u64 = 1_795_737_600_000;

fn key(seed: u8) -> [u8; 32] {
    SecretKey([seed; 32]).public()
}

/// 32 bytes that are not an ed25519 point: the first such `[n, 0, …, 0]`.
fn not_a_point() -> [u8; 32] {
    (0..=255u8)
        .map(|n| {
            let mut bytes = [0u8; 32];
            bytes[0] = n;
            bytes
        })
        .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
        .expect("some y has no point")
}

fn sample() -> Genesis {
    let validators = (0..4)
        .map(|i| (format!("validator-{i}"), key(i + 1), 10 + u64::from(i)))
        .collect();
    let accounts = (0..3)
        .map(|i| (key(100 + i), 1_000_000 * u64::from(i + 1)))
        .collect();
    Genesis::new(
        "weft-test-1",
        GENESIS_TIME_MS,
        validators,
        accounts,
        ConsensusParams::default(),
    )
    .expect("the sample is valid")
}

fn sample_value() -> Value {
    serde_json::to_value(sample()).unwrap()
}

fn hash_of(value: &Value) -> [u8; 32] {
    Genesis::from_json(&value.to_string()).unwrap().hash()
}

/// Writes the sample, changed by `mutate`, as `file_name`, loads it, and checks that the error
/// names the file and is the `expected` problem.
fn check_refused(
    file_name: &str,
    mutate: impl FnOnce(&mut Value),
    expected: impl Fn(&GenesisProblem) -> bool,
) {
    let mut value = sample_value();
    mutate(&mut value);
    check_text_refused(file_name, value.to_string(), expected);
}

fn check_text_refused(file_name: &str, text: String, expected: impl Fn(&GenesisProblem) -> bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file_name);
    fs::write(&path, text).unwrap();
    let error = Genesis::load(&path).unwrap_err();
    assert!(expected(&error.problem), "{file_name}: {error}");
    assert!(
        error.to_string().contains(file_name),
        "{error} does not name the file"
    );
}

#[test]
fn a_saved_genesis_loads_back_with_the_same_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("genesis.json");
    let genesis = sample();
    genesis.save(&path).unwrap();
    let loaded = Genesis::load(&path).unwrap();
    assert_eq!(loaded, genesis);
    assert_eq!(loaded.hash(), genesis.hash());
    assert_eq!(loaded.genesis_time, "2026-11-27T00:00:00Z");

    // Saving again replaces the file and leaves no temporary file behind.
    let mut changed = genesis.clone();
    changed.initial_height = 7;
    changed.save(&path).unwrap();
    assert_eq!(Genesis::load(&path).unwrap(), changed);
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn an_invalid_genesis_is_not_saved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invalid.json");
    let mut genesis = sample();
    genesis.initial_height = 0;
    let error = genesis.save(&path).unwrap_err();
    assert!(matches!(error.problem, GenesisProblem::InitialHeightZero));
    assert!(error.to_string().contains("invalid.json"), "{error}");
    assert!(!path.exists());
}

#[test]
fn whitespace_field_order_hex_case_list_order_and_time_spelling_keep_the_hash() {
    let genesis = sample();
    let expected = genesis.hash();
    let pretty = genesis.to_json_pretty();
    let spaced = pretty.replace(',', " ,\n\t\t").replace("\": ", "\"  :\n ");
    assert_eq!(Genesis::from_json(&spaced).unwrap().hash(), expected);

    // Every object's fields reversed, written by hand so that no map order is relied upon.
    let c = &genesis.consensus;
    let validators: Vec<String> = genesis
        .validators
        .iter()
        .map(|v| {
            format!(
                r#"{{"power":{},"pub_key":"{}","name":"{}"}}"#,
                v.power, v.pub_key, v.name
            )
        })
        .collect();
    let accounts: Vec<String> = genesis
        .accounts
        .iter()
        .map(|a| format!(r#"{{"balance":{},"address":"{}"}}"#, a.balance, a.address))
        .collect();
    let reversed = format!(
        r#"{{"accounts":[{}],"validators":[{}],"consensus":{{"block_max_bytes":{},"block_max_txs":{},"timeout_commit_ms":{},"timeout_precommit_delta_ms":{},"timeout_precommit_ms":{},"timeout_prevote_delta_ms":{},"timeout_prevote_ms":{},"timeout_propose_delta_ms":{},"timeout_propose_ms":{}}},"initial_height":{},"genesis_time":"{}","chain_id":"{}"}}"#,
        accounts.join(","),
        validators.join(","),
        c.block_max_bytes,
        c.block_max_txs,
        c.timeout_commit_ms,
        c.timeout_precommit_delta_ms,
        c.timeout_precommit_ms,
        c.timeout_prevote_delta_ms,
        c.timeout_prevote_ms,
        c.timeout_propose_delta_ms,
        c.timeout_propose_ms,
        genesis.initial_height,
        genesis.genesis_time,
        genesis.chain_id,
    );
    assert_eq!(Genesis::from_json(&reversed).unwrap().hash(), expected);

    let mut value = sample_value();
    value["validators"][0]["pub_key"] = json!(genesis.validators[0].pub_key.to_uppercase());
    value["accounts"][1]["address"] = json!(genesis.accounts[1].address.to_uppercase());
    value["validators"].as_array_mut().unwrap().reverse();
    value["accounts"].as_array_mut().unwrap().reverse();
    value["genesis_time"] = json!("2026-11-27T00:00:00.000000000Z");
    assert_eq!(hash_of(&value), expected);
}

#[test]
fn every_field_change_changes_the_hash() {
    type Mutation = (&'static str, fn(&mut Value));
    let mutations: Vec<Mutation> = vec![
        ("chain_id", |g| g["chain_id"] = json!("weft-test-2")),
        ("genesis_time seconds", |g| {
            g["genesis_time"] = json!("2026-11-27T00:00:01Z")
        }),
        ("genesis_time nanos", |g| {
            g["genesis_time"] = json!("2026-11-27T00:00:00.000000001Z")
        }),
        ("initial_height", |g| g["initial_height"] = json!(2)),
        ("timeout_propose_ms", |g| {
            g["consensus"]["timeout_propose_ms"] = json!(3001)
        }),
        ("timeout_propose_delta_ms", |g| {
            g["consensus"]["timeout_propose_delta_ms"] = json!(501)
        }),
        ("timeout_prevote_ms", |g| {
            g["consensus"]["timeout_prevote_ms"] = json!(1001)
        }),
        ("timeout_prevote_delta_ms", |g| {
            g["consensus"]["timeout_prevote_delta_ms"] = json!(501)
        }),
        ("timeout_precommit_ms", |g| {
            g["consensus"]["timeout_precommit_ms"] = json!(1001)
        }),
        ("timeout_precommit_delta_ms", |g| {
            g["consensus"]["timeout_precommit_delta_ms"] = json!(501)
        }),
        ("timeout_commit_ms", |g| {
            g["consensus"]["timeout_commit_ms"] = json!(1001)
        }),
        ("block_max_txs", |g| {
            g["consensus"]["block_max_txs"] = json!(10_001)
        }),
        ("block_max_bytes", |g| {
            g["consensus"]["block_max_bytes"] = json!(4_194_305)
        }),
        ("validator name", |g| {
            g["validators"][0]["name"] = json!("validator-x")
        }),
        ("validator names swapped", |g| {
            g["validators"][0]["name"] = json!("validator-1");
            g["validators"][1]["name"] = json!("validator-0");
        }),
        ("validator pub_key", |g| {
            g["validators"][0]["pub_key"] = json!(hex::encode(key(50)))
        }),
        ("validator power", |g| {
            g["validators"][0]["power"] = json!(11)
        }),
        ("validator powers swapped", |g| {
            g["validators"][0]["power"] = json!(11);
            g["validators"][1]["power"] = json!(10);
        }),
        ("validator added", |g| {
            let added = json!({"name": "validator-9", "pub_key": hex::encode(key(9)), "power": 1});
            g["validators"].as_array_mut().unwrap().push(added);
        }),
        ("validator removed", |g| {
            g["validators"].as_array_mut().unwrap().pop();
        }),
        ("account address", |g| {
            g["accounts"][0]["address"] = json!(hex::encode(key(51)))
        }),
        ("account balance", |g| {
            g["accounts"][0]["balance"] = json!(1)
        }),
        ("account balances swapped", |g| {
            g["accounts"][0]["balance"] = json!(2_000_000);
            g["accounts"][1]["balance"] = json!(1_000_000);
        }),
        ("account added", |g| {
            let added = json!({"address": hex::encode(key(52)), "balance": 0});
            g["accounts"].as_array_mut().unwrap().push(added);
        }),
        ("account removed", |g| {
            g["accounts"].as_array_mut().unwrap().pop();
        }),
    ];
    let mut seen = BTreeSet::from([sample().hash()]);
    for (what, mutate) in mutations {
        let mut value = sample_value();
        mutate(&mut value);
        assert!(seen.insert(hash_of(&value)), "changing {what} kept a hash");
    }
}

#[test]
fn an_empty_validator_set_is_refused() {
    check_refused(
        "no_validators.json",
        |g| g["validators"] = json!([]),
        |p| matches!(p, GenesisProblem::NoValidators),
    );
}

#[test]
fn a_duplicate_validator_key_is_refused() {
    check_refused(
        "duplicate_key.json",
        |g| g["validators"][2]["pub_key"] = g["validators"][0]["pub_key"].clone(),
        |p| {
            matches!(p, GenesisProblem::DuplicateValidatorKey { first, second }
                if first == "validator-0" && second == "validator-2")
        },
    );
    // The same key in another hex case is the same key.
    check_refused(
        "duplicate_key_case.json",
        |g| {
            let upper = g["validators"][0]["pub_key"]
                .as_str()
                .unwrap()
                .to_uppercase();
            g["validators"][2]["pub_key"] = json!(upper);
        },
        |p| matches!(p, GenesisProblem::DuplicateValidatorKey { .. }),
    );
}

#[test]
fn a_duplicate_validator_name_is_refused() {
    check_refused(
        "duplicate_name.json",
        |g| g["validators"][3]["name"] = json!("validator-1"),
        |p| matches!(p, GenesisProblem::DuplicateValidatorName { name } if name == "validator-1"),
    );
}

#[test]
fn a_bad_validator_name_is_refused() {
    for (file_name, name) in [
        ("empty_name.json", String::new()),
        ("long_name.json", "v".repeat(65)),
        ("control_name.json", "validator\n0".to_owned()),
    ] {
        check_refused(
            file_name,
            |g| g["validators"][0]["name"] = json!(name),
            |p| matches!(p, GenesisProblem::ValidatorName { .. }),
        );
    }
}

#[test]
fn zero_power_is_refused() {
    check_refused(
        "zero_power.json",
        |g| g["validators"][1]["power"] = json!(0),
        |p| matches!(p, GenesisProblem::ZeroPower { name } if name == "validator-1"),
    );
}

#[test]
fn total_power_over_the_cap_or_overflowing_is_refused() {
    let cap = (i64::MAX / 8) as u64;
    check_refused(
        "power_over_cap.json",
        |g| g["validators"][0]["power"] = json!(cap),
        |p| matches!(p, GenesisProblem::TotalPowerTooLarge { .. }),
    );
    check_refused(
        "power_overflow.json",
        |g| {
            g["validators"][0]["power"] = json!(u64::MAX);
            g["validators"][1]["power"] = json!(u64::MAX);
        },
        |p| matches!(p, GenesisProblem::TotalPowerTooLarge { .. }),
    );
}

#[test]
fn malformed_validator_keys_are_refused() {
    let cases = [
        ("key_hex.json", "zz".repeat(32), KeyDefect::BadHex),
        (
            "key_short.json",
            "abcd".to_owned(),
            KeyDefect::WrongLength { chars: 4 },
        ),
        (
            "key_long.json",
            "ab".repeat(33),
            KeyDefect::WrongLength { chars: 66 },
        ),
        (
            "key_point.json",
            hex::encode(not_a_point()),
            KeyDefect::NotAPoint,
        ),
    ];
    for (file_name, pub_key, expected) in cases {
        check_refused(
            file_name,
            |g| g["validators"][1]["pub_key"] = json!(pub_key),
            |p| {
                matches!(p, GenesisProblem::MalformedValidatorKey { name, defect }
                    if name == "validator-1" && *defect == expected)
            },
        );
    }
}

#[test]
fn a_bad_chain_id_is_refused() {
    for (file_name, chain_id) in [
        ("chain_empty.json", String::new()),
        ("chain_chars.json", "weft test!".to_owned()),
        ("chain_long.json", "w".repeat(51)),
    ] {
        check_refused(
            file_name,
            |g| g["chain_id"] = json!(chain_id),
            |p| matches!(p, GenesisProblem::ChainId { .. }),
        );
    }
}

#[test]
fn a_bad_genesis_time_is_refused() {
    let cases = [
        "2026-11-27",
        "2026-11-27 00:00:00Z",
        "2026-11-27T00:00:00",
        "2026-11-27T00:00:00+01:00",
        "2026-11-27t00:00:00z",
        "2026-11-27T00:00:00.Z",
        "2026-11-27T00:00:00.0000000001Z",
        "2026-1a-27T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-11-27T24:00:00Z",
        "2026-11-27T00:60:00Z",
        "2026-11-27T00:00:60Z",
        "２０２６-11-27T00:00:00Z",
    ];
    for (index, time) in cases.into_iter().enumerate() {
        check_refused(
            &format!("time_{index}.json"),
            |g| g["genesis_time"] = json!(time),
            |p| matches!(p, GenesisProblem::GenesisTime { time: t, .. } if t == time),
        );
    }
}

#[test]
fn initial_height_zero_is_refused() {
    check_refused(
        "height_zero.json",
        |g| g["initial_height"] = json!(0),
        |p| matches!(p, GenesisProblem::InitialHeightZero),
    );
}

#[test]
fn zero_base_timeouts_are_refused_and_zero_deltas_are_not() {
    for field in [
        "timeout_propose_ms",
        "timeout_prevote_ms",
        "timeout_precommit_ms",
    ] {
        check_refused(
            &format!("{field}.json"),
            |g| g["consensus"][field] = json!(0),
            |p| matches!(p, GenesisProblem::ZeroTimeout { field: f } if *f == field),
        );
    }
    let mut value = sample_value();
    for field in [
        "timeout_propose_delta_ms",
        "timeout_prevote_delta_ms",
        "timeout_precommit_delta_ms",
        "timeout_commit_ms",
    ] {
        value["consensus"][field] = json!(0);
    }
    Genesis::from_json(&value.to_string()).unwrap();
}

#[test]
fn an_overlong_timeout_is_refused() {
    check_refused(
        "timeout_long.json",
        |g| g["consensus"]["timeout_commit_ms"] = json!(TIMEOUT_MS_MAX + 1),
        |p| {
            matches!(p, GenesisProblem::TimeoutTooLarge { field: "timeout_commit_ms", value_ms }
                if *value_ms == TIMEOUT_MS_MAX + 1)
        },
    );
}

#[test]
fn zero_block_limits_are_refused() {
    for field in ["block_max_txs", "block_max_bytes"] {
        check_refused(
            &format!("{field}.json"),
            |g| g["consensus"][field] = json!(0),
            |p| matches!(p, GenesisProblem::ZeroBlockLimit { field: f } if *f == field),
        );
    }
}

#[test]
fn block_limits_out_of_range_are_refused() {
    let cases = [
        ("txs_high.json", "block_max_txs", 65_537),
        ("bytes_low.json", "block_max_bytes", 511),
        ("bytes_high.json", "block_max_bytes", BLOCK_BYTES_MAX + 1),
        // Once accepted (the cap was 32 MiB), then refused by every node's block decoder.
        ("bytes_undecodable.json", "block_max_bytes", 8 << 20),
    ];
    for (file_name, field, value) in cases {
        check_refused(
            file_name,
            |g| g["consensus"][field] = json!(value),
            |p| {
                matches!(p, GenesisProblem::BlockLimitOutOfRange { field: f, value: v, .. }
                    if *f == field && *v == value)
            },
        );
    }
}

#[test]
fn a_duplicate_account_address_is_refused() {
    check_refused(
        "duplicate_account.json",
        |g| {
            let upper = g["accounts"][0]["address"].as_str().unwrap().to_uppercase();
            g["accounts"][2]["address"] = json!(upper);
        },
        |p| matches!(p, GenesisProblem::DuplicateAddress { .. }),
    );
}

#[test]
fn malformed_account_addresses_are_refused() {
    let cases = [
        ("address_hex.json", "gg".repeat(32), KeyDefect::BadHex),
        (
            "address_short.json",
            "ab".repeat(31),
            KeyDefect::WrongLength { chars: 62 },
        ),
        (
            "address_point.json",
            hex::encode(not_a_point()),
            KeyDefect::NotAPoint,
        ),
    ];
    for (file_name, address, expected) in cases {
        check_refused(
            file_name,
            |g| g["accounts"][2]["address"] = json!(address),
            |p| {
                matches!(p, GenesisProblem::MalformedAddress { index: 2, defect }
                    if *defect == expected)
            },
        );
    }
}

#[test]
fn balances_adding_past_u64_are_refused() {
    check_refused(
        "balances.json",
        |g| {
            g["accounts"][0]["balance"] = json!(u64::MAX);
            g["accounts"][1]["balance"] = json!(1);
        },
        |p| matches!(p, GenesisProblem::TotalBalanceTooLarge),
    );
}

#[test]
fn too_many_validators_are_refused() {
    check_refused(
        "many_validators.json",
        |g| {
            let one = g["validators"][0].clone();
            g["validators"] = Value::Array(vec![one; VALIDATORS_MAX + 1]);
        },
        |p| matches!(p, GenesisProblem::TooManyValidators { count } if *count == VALIDATORS_MAX + 1),
    );
}

#[test]
fn too_many_accounts_are_refused() {
    check_refused(
        "many_accounts.json",
        |g| {
            let one = g["accounts"][0].clone();
            g["accounts"] = Value::Array(vec![one; ACCOUNTS_MAX + 1]);
        },
        |p| matches!(p, GenesisProblem::TooManyAccounts { count } if *count == ACCOUNTS_MAX + 1),
    );
}

#[test]
fn malformed_json_and_unknown_or_missing_fields_are_refused() {
    let is_json = |p: &GenesisProblem| matches!(p, GenesisProblem::Json(_));
    check_text_refused("not_json.json", "{not json".to_owned(), is_json);
    check_refused("unknown_top.json", |g| g["extra"] = json!(1), is_json);
    check_refused(
        "unknown_consensus.json",
        |g| g["consensus"]["timeout_vote_ms"] = json!(1),
        is_json,
    );
    check_refused(
        "unknown_validator.json",
        |g| g["validators"][0]["address"] = json!("x"),
        is_json,
    );
    check_refused(
        "missing_field.json",
        |g| {
            g.as_object_mut().unwrap().remove("initial_height");
        },
        is_json,
    );
    check_refused(
        "negative_power.json",
        |g| g["validators"][0]["power"] = json!(-1),
        is_json,
    );
}

#[test]
fn a_file_over_the_cap_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    // A sparse file of zero bytes: parsing it would fail as JSON, so TooLarge proves that the
    // size was checked first.
    let path = dir.path().join("huge.json");
    let file = fs::File::create(&path).unwrap();
    file.set_len(GENESIS_FILE_BYTES_MAX + 1).unwrap();
    let error = Genesis::load(&path).unwrap_err();
    assert!(
        matches!(error.problem, GenesisProblem::TooLarge { len } if len == GENESIS_FILE_BYTES_MAX + 1),
        "{error}"
    );
    assert!(error.to_string().contains("huge.json"), "{error}");

    let missing = Genesis::load(&dir.path().join("missing.json")).unwrap_err();
    assert!(
        matches!(missing.problem, GenesisProblem::Io(_)),
        "{missing}"
    );
    assert!(missing.to_string().contains("missing.json"), "{missing}");
}

#[test]
fn the_conversions_give_the_validator_set_timeouts_chain_id_and_state() {
    let genesis = sample();
    let set = genesis.validator_set();
    assert_eq!(set.len(), 4);
    assert_eq!(set.total_power(), 10 + 11 + 12 + 13);
    for i in 0..4u8 {
        let id = ValidatorId(key(i + 1));
        assert_eq!(set.power(&id), Some(10 + u64::from(i)));
    }

    assert_eq!(genesis.timeout_params(), TimeoutParams::default());
    let mut fast = genesis.clone();
    fast.consensus = ConsensusParams::fast();
    let expected = TimeoutParams {
        propose_ms: 400,
        propose_delta_ms: 100,
        prevote_ms: 200,
        prevote_delta_ms: 100,
        precommit_ms: 200,
        precommit_delta_ms: 100,
    };
    assert_eq!(fast.timeout_params(), expected);
    assert_eq!(fast.consensus.timeout_commit_ms, 0);

    assert_eq!(genesis.chain_id().as_str(), "weft-test-1");
    assert_eq!(genesis.genesis_time_ms(), GENESIS_TIME_MS);

    // The accounts, then the scheduled validator set and its totals (no authority named).
    let state = genesis.initial_state();
    assert_eq!(state.len(), 3 + genesis.validators.len() + 1);
    let mut pairs = Vec::new();
    for i in 0..3u8 {
        let key = StateKey::Account(Address(key(100 + i)));
        let value = StateValue::Account(Account {
            balance: 1_000_000 * u64::from(i + 1),
            nonce: 0,
        });
        assert_eq!(state.get(&key).unwrap(), Some(value));
        pairs.push((key, value));
    }
    for validator in &genesis.validators {
        let key = StateKey::Validator(ValidatorKey::new(validator.public_key().unwrap()).unwrap());
        let value = StateValue::ValidatorPower(validator.power);
        assert_eq!(state.get(&key).unwrap(), Some(value));
        pairs.push((key, value));
    }
    let totals = StateValue::ValidatorTotals {
        total: genesis.total_power(),
        count: genesis.validators.len() as u32,
    };
    assert_eq!(state.get(&StateKey::ValidatorTotals).unwrap(), Some(totals));
    pairs.push((StateKey::ValidatorTotals, totals));
    assert_eq!(state.get(&StateKey::ValidatorAuthority).unwrap(), None);
    assert_eq!(state.root(), MemoryState::from_pairs(pairs).root());
}

#[test]
fn the_defaults_are_cometbfts() {
    let params = ConsensusParams::default();
    assert_eq!(
        (
            params.timeout_commit_ms,
            params.block_max_txs,
            params.block_max_bytes
        ),
        (1_000, 10_000, 4 << 20)
    );
    let genesis = sample();
    assert_eq!(genesis.consensus, params);
    assert_eq!(genesis.initial_height, 1);
}

#[test]
fn genesis_times_are_read_as_unix_milliseconds() {
    let cases = [
        ("1970-01-01T00:00:00Z", 0),
        ("2000-02-29T12:34:56Z", 951_827_696_000),
        ("2000-02-29T12:34:56.5Z", 951_827_696_500),
        ("2000-02-29T12:34:56.123456789Z", 951_827_696_123),
        ("2026-11-27T00:00:00Z", GENESIS_TIME_MS),
        ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
    ];
    for (time, expected_ms) in cases {
        let mut value = sample_value();
        value["genesis_time"] = json!(time);
        let genesis = Genesis::from_json(&value.to_string()).unwrap();
        assert_eq!(genesis.genesis_time_ms(), expected_ms, "{time}");
    }
}

#[test]
fn new_writes_times_that_read_back_to_the_same_milliseconds() {
    let at = |unix_ms: u64| {
        let validators = vec![("v".to_owned(), key(1), 1)];
        Genesis::new("t", unix_ms, validators, vec![], ConsensusParams::default())
    };
    let last_ms: u64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    // A fixed stride through the whole range, with varying milliseconds, plus the edges.
    let stride = last_ms / 9_973;
    let samples = (0..9_973)
        .map(|i| i * stride + i % 1_000)
        .chain([0, last_ms]);
    for unix_ms in samples {
        let genesis = at(unix_ms).unwrap_or_else(|e| panic!("{unix_ms}: {e}"));
        let time = &genesis.genesis_time;
        assert_eq!(genesis.genesis_time_ms(), unix_ms, "{time}");
    }
    assert_eq!(
        at(951_827_696_007).unwrap().genesis_time,
        "2000-02-29T12:34:56.007Z"
    );
    assert!(matches!(
        at(last_ms + 1),
        Err(GenesisProblem::GenesisTime { .. })
    ));
}

#[test]
fn new_validates_its_inputs() {
    let params = ConsensusParams::fast();
    let no_validators = Genesis::new("weft", 0, vec![], vec![], params);
    assert!(matches!(no_validators, Err(GenesisProblem::NoValidators)));
    let bad_point = Genesis::new(
        "weft",
        0,
        vec![("v".into(), not_a_point(), 1)],
        vec![],
        params,
    );
    assert!(matches!(
        bad_point,
        Err(GenesisProblem::MalformedValidatorKey {
            defect: KeyDefect::NotAPoint,
            ..
        })
    ));
    let bad_chain = Genesis::new(
        "no spaces",
        0,
        vec![("v".into(), key(1), 1)],
        vec![],
        params,
    );
    assert!(matches!(bad_chain, Err(GenesisProblem::ChainId { .. })));
}

#[test]
fn from_json_checks_the_cap_too() {
    let text = " ".repeat(GENESIS_FILE_BYTES_MAX as usize + 1);
    assert!(matches!(
        Genesis::from_json(&text),
        Err(GenesisProblem::TooLarge { .. })
    ));
}

/// A genesis assembled the way a coordinator does (a draft, then one validator or account at a
/// time, saved and reloaded between steps) equals the one built in one go, hash included.
#[test]
fn a_genesis_assembled_step_by_step_equals_one_built_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("genesis.json");
    let expected = sample();
    let draft = Genesis::draft(
        &expected.chain_id,
        GENESIS_TIME_MS,
        1,
        ConsensusParams::default(),
    )
    .unwrap();
    assert!(matches!(
        draft.validate(),
        Err(GenesisProblem::NoValidators)
    ));
    draft.save_draft(&path).unwrap();
    let refused = Genesis::load(&path).unwrap_err().to_string();
    assert!(refused.contains("no validators"), "{refused}");
    // Added in reverse, with upper-case hex: neither order nor case counts.
    for v in expected.validators.iter().rev() {
        let mut genesis = Genesis::load_draft(&path).unwrap();
        genesis
            .add_validator(&v.name, &v.pub_key.to_ascii_uppercase(), v.power)
            .unwrap();
        genesis.save_draft(&path).unwrap();
    }
    for a in expected.accounts.iter().rev() {
        let mut genesis = Genesis::load_draft(&path).unwrap();
        genesis.add_account(&a.address, a.balance).unwrap();
        genesis.save_draft(&path).unwrap();
    }
    let assembled = Genesis::load(&path).unwrap();
    assert_eq!(assembled.hash(), expected.hash());
    assert_eq!(assembled.total_power(), 10 + 11 + 12 + 13);
    assert_eq!(assembled.total_balance(), 6_000_000);
}

/// Each refusal names the problem and leaves the genesis exactly as it was.
#[test]
fn a_refused_addition_names_the_problem_and_changes_nothing() {
    let base = sample();
    let existing = base.validators[0].clone();
    let fresh = hex::encode(key(77));
    let cap = (i64::MAX / 8) as u64;
    type Check = fn(&GenesisProblem) -> bool;
    let validator_cases: Vec<(&str, String, u64, Check)> = vec![
        ("short", "abcd".into(), 1, |p| {
            matches!(
                p,
                GenesisProblem::MalformedValidatorKey {
                    defect: KeyDefect::WrongLength { chars: 4 },
                    ..
                }
            )
        }),
        ("not-hex", "zz".repeat(32), 1, |p| {
            matches!(
                p,
                GenesisProblem::MalformedValidatorKey {
                    defect: KeyDefect::BadHex,
                    ..
                }
            )
        }),
        ("off-curve", hex::encode(not_a_point()), 1, |p| {
            matches!(
                p,
                GenesisProblem::MalformedValidatorKey {
                    defect: KeyDefect::NotAPoint,
                    ..
                }
            )
        }),
        ("twin", existing.pub_key.clone(), 1, |p| {
            matches!(p, GenesisProblem::DuplicateValidatorKey { .. })
        }),
        (&existing.name, fresh.clone(), 1, |p| {
            matches!(p, GenesisProblem::DuplicateValidatorName { .. })
        }),
        ("zero", fresh.clone(), 0, |p| {
            matches!(p, GenesisProblem::ZeroPower { .. })
        }),
        (
            "heavy",
            fresh.clone(),
            cap,
            |p| matches!(p, GenesisProblem::TotalPowerTooLarge { name } if name == "heavy"),
        ),
        ("overflow", fresh.clone(), u64::MAX, |p| {
            matches!(p, GenesisProblem::TotalPowerTooLarge { .. })
        }),
    ];
    for (name, pub_key, power, expected) in validator_cases {
        let mut genesis = base.clone();
        let problem = genesis.add_validator(name, &pub_key, power).unwrap_err();
        assert!(expected(&problem), "{name}: {problem}");
        assert_eq!(genesis, base, "{name} changed the genesis");
    }
    let account_cases: Vec<(String, u64, Check)> = vec![
        ("00".into(), 1, |p| {
            matches!(p, GenesisProblem::MalformedAddress { .. })
        }),
        (base.accounts[0].address.clone(), 1, |p| {
            matches!(p, GenesisProblem::DuplicateAddress { .. })
        }),
        (fresh.clone(), u64::MAX, |p| {
            matches!(p, GenesisProblem::TotalBalanceTooLarge)
        }),
    ];
    for (address, balance, expected) in account_cases {
        let mut genesis = base.clone();
        let problem = genesis.add_account(&address, balance).unwrap_err();
        assert!(expected(&problem), "{address}: {problem}");
        assert_eq!(genesis, base, "{address} changed the genesis");
    }
}

/// The validator authority: optional (a genesis without one hashes as before), refused when
/// malformed, part of the hash and of the initial state when named.
#[test]
fn the_validator_authority_is_checked_hashed_and_written_to_the_state() {
    let plain = sample();
    assert_eq!(plain.validator_authority, None);
    assert!(!plain.to_json_pretty().contains("validator_authority"));
    let mut named = plain.clone();
    let authority = hex::encode(key(100));
    named.set_authority(&authority).unwrap();
    assert_ne!(named.hash(), plain.hash());
    let again = Genesis::from_json(&named.to_json_pretty()).unwrap();
    assert_eq!(again.hash(), named.hash());
    assert_eq!(
        named
            .initial_state()
            .get(&StateKey::ValidatorAuthority)
            .unwrap(),
        Some(StateValue::Authority(Address(key(100))))
    );
    let mut bad = plain.clone();
    let refused = bad.set_authority("xyz").unwrap_err();
    assert!(
        refused.to_string().contains("validator_authority"),
        "{refused}"
    );
    assert_eq!(bad, plain, "a refusal changed the genesis");
    let mut value = sample_value();
    value["validator_authority"] = Value::String("00".repeat(31));
    let error = Genesis::from_json(&value.to_string()).unwrap_err();
    assert!(error.to_string().contains("validator_authority"), "{error}");
}
