//! A network formed the way independent operators form one (`weft_node::ceremony`), for `up`
//! (one box) and `generate` (real hosts) alike: each node's home made on its own with
//! `weft init` (its keys, no genesis), its operator's card read back, and one genesis assembled
//! by a coordinator from the cards' public keys only. No secret crosses from one home to
//! another, or into the coordinator's files.

use std::path::{Path, PathBuf};

use weft_genesis::{ConsensusParams, Genesis, read_key_file};
use weft_node::ceremony::{self, OperatorCard};
use weft_node::cli::{InitArgs, init, operator_summary};
use weft_node::config::{Config, Home};

/// Each validator's voting power in a formed network.
pub const VALIDATOR_POWER: u64 = 10;

/// One node to form: its name, home, and how the others reach it.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub home: PathBuf,
    /// The host name or address the others dial.
    pub host: String,
    pub p2p_port: u16,
    /// Account key files to create in its home (`config/account-<i>.json`), funded with
    /// `account_balance` each.
    pub accounts: usize,
    /// Whether it is a validator (else a full node: same genesis, not in the set).
    pub validator: bool,
}

/// What forming a network made.
pub struct Formed {
    pub genesis: Genesis,
    /// Each member's card, in member order.
    pub cards: Vec<OperatorCard>,
}

/// The coordinator's inputs besides the cards.
pub struct GenesisPlan<'a> {
    pub chain_id: &'a str,
    pub genesis_time_ms: u64,
    pub params: ConsensusParams,
    /// The balance of each member's account key files.
    pub account_balance: u64,
    /// Further funded accounts (public keys), e.g. a load generator's.
    pub extra_accounts: Vec<([u8; 32], u64)>,
    /// The validator authority's account (public key), if the validator set may change.
    pub authority: Option<[u8; 32]>,
}

fn problem(what: &str, error: impl std::fmt::Display) -> String {
    format!("{what}: {error}")
}

/// Makes each member's home (refusing one that exists), reads back its card, assembles the
/// genesis from the cards at `genesis_path` as a coordinator would, and puts a copy of it in
/// every home. Configs are left for the caller to finish.
pub fn form(
    members: &[Member],
    plan: &GenesisPlan<'_>,
    genesis_path: &Path,
) -> Result<Formed, String> {
    let mut cards = Vec::with_capacity(members.len());
    let mut funded = Vec::new();
    for member in members {
        let home = Home::new(&member.home);
        init(&InitArgs {
            accounts: member.accounts,
            ..InitArgs::joining(&member.home, &member.name)
        })
        .map_err(|e| problem(&member.name, e))?;
        let summary = operator_summary(&home, Some(&member.host), Some(member.p2p_port))
            .map_err(|e| problem(&member.name, e))?;
        cards.push(summary.card);
        for i in 0..member.accounts {
            let path = home.config_dir().join(format!("account-{i}.json"));
            let key = read_key_file(&path).map_err(|e| problem(&member.name, e))?;
            funded.push((hex::encode(key.public()), plan.account_balance));
        }
    }
    ceremony::new_genesis(
        genesis_path,
        plan.chain_id,
        None,
        1,
        plan.params,
        plan.genesis_time_ms,
    )
    .map_err(|e| e.to_string())?;
    let mut genesis = None;
    for (member, card) in members.iter().zip(&cards) {
        if member.validator {
            let added =
                ceremony::add_validator(genesis_path, &card.name, &card.pub_key, VALIDATOR_POWER)
                    .map_err(|e| problem(&member.name, e))?;
            genesis = Some(added);
        }
    }
    let extra = plan
        .extra_accounts
        .iter()
        .map(|(key, balance)| (hex::encode(key), *balance));
    let mut genesis = genesis.ok_or("a network needs at least one validator")?;
    genesis
        .add_accounts(funded.into_iter().chain(extra))
        .map_err(|e| problem("genesis", e))?;
    if let Some(authority) = plan.authority {
        genesis
            .set_authority(&hex::encode(authority))
            .map_err(|e| problem("genesis", e))?;
    }
    genesis
        .save(genesis_path)
        .map_err(|e| problem("genesis", e))?;
    for member in members {
        genesis
            .save(&Home::new(&member.home).genesis())
            .map_err(|e| problem(&member.name, e))?;
    }
    Ok(Formed { genesis, cards })
}

/// Makes one more member's home for a network already formed: its keys (`weft init`), the
/// network's genesis copied in, and its card read back. It joins as a full node.
pub fn join(member: &Member, genesis_path: &Path) -> Result<OperatorCard, String> {
    let home = Home::new(&member.home);
    init(&InitArgs {
        accounts: member.accounts,
        ..InitArgs::joining(&member.home, &member.name)
    })
    .map_err(|e| problem(&member.name, e))?;
    std::fs::copy(genesis_path, home.genesis())
        .map_err(|e| problem(&member.name, format!("copying the genesis: {e}")))?;
    let summary = operator_summary(&home, Some(&member.host), Some(member.p2p_port))
        .map_err(|e| problem(&member.name, e))?;
    Ok(summary.card)
}

/// Loads a member's config, lets `edit` change it, and saves it.
pub fn configure(home: &Path, edit: impl FnOnce(&mut Config)) -> Result<(), String> {
    let home = Home::new(home);
    let mut config = Config::load(&home.config()).map_err(|e| e.to_string())?;
    edit(&mut config);
    config.validate().map_err(|e| problem("config", e))?;
    config.save(&home.config()).map_err(|e| e.to_string())
}
