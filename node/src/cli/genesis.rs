//! `weft genesis`: the coordinator's steps of the ceremony, and every operator's checks.

use super::*;

/// Runs a `weft genesis` command; returns what to print.
pub fn genesis(command: GenesisCommand) -> Result<String, CliError> {
    match command {
        GenesisCommand::New {
            file,
            chain_id,
            time,
            initial_height,
            timeouts,
        } => {
            let path = file.path();
            let params = match timeouts {
                Timeouts::Default => ConsensusParams::default(),
                Timeouts::Fast => ConsensusParams::fast(),
            };
            ceremony::new_genesis(
                &path,
                chain_id.as_str(),
                time.as_deref(),
                initial_height,
                params,
                unix_now_ms(),
            )?;
            Ok(format!(
                "wrote {}: chain {chain_id}, no validators yet (weft genesis add-validator)\n",
                path.display(),
                chain_id = chain_id.as_str()
            ))
        }
        GenesisCommand::AddValidator {
            file,
            pubkey,
            from,
            name,
            power,
        } => {
            let source = match (&pubkey, &from) {
                (Some(hex), _) => KeySource::Hex(hex),
                (None, Some(card)) => KeySource::Card(card),
                (None, None) => unreachable!("clap requires one"),
            };
            let (name, pub_key) = ceremony::resolve_key(source, name.as_deref())?;
            let path = file.path();
            let genesis = ceremony::add_validator(&path, &name, &pub_key, power)?;
            Ok(format!(
                "added validator {name:?} (power {power}); {} now has {} validators, total power {}\n",
                path.display(),
                genesis.validators.len(),
                genesis.total_power()
            ))
        }
        GenesisCommand::AddAccount {
            file,
            account,
            balance,
        } => {
            let (_, address) = ceremony::resolve_key(account.source(), None)?;
            let path = file.path();
            let genesis = ceremony::add_account(&path, &address, balance)?;
            Ok(format!(
                "added account {address} ({balance}); {} now has {} accounts\n",
                path.display(),
                genesis.accounts.len()
            ))
        }
        GenesisCommand::SetAuthority { file, account } => {
            let (_, address) = ceremony::resolve_key(account.source(), None)?;
            let path = file.path();
            ceremony::set_authority(&path, &address)?;
            Ok(format!(
                "{}: validator authority is now {address}\n",
                path.display()
            ))
        }
        GenesisCommand::Validate { file } => {
            let path = file.path();
            let genesis = Genesis::load(&path)?;
            Ok(format!(
                "{} is valid: chain {}, {} validators (total power {}), {} accounts, hash {}\n",
                path.display(),
                genesis.chain_id,
                genesis.validators.len(),
                genesis.total_power(),
                genesis.accounts.len(),
                hex::encode(genesis.hash())
            ))
        }
        GenesisCommand::Hash { file } => {
            let genesis = Genesis::load(&file.path())?;
            Ok(format!("{}\n", hex::encode(genesis.hash())))
        }
        GenesisCommand::Show { file } => {
            let path = file.path();
            let genesis = Genesis::load_draft(&path)?;
            let hash = genesis.validate().is_ok().then(|| genesis.hash());
            Ok(ceremony::GenesisSummary {
                path: &path,
                genesis: &genesis,
                hash,
            }
            .to_string())
        }
    }
}
