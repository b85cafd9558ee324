//! `weft init`: an operator's home (keys, config), and with `--single-validator` a chain of its own.

use super::*;

/// What `weft init` created.
#[derive(Debug)]
pub struct InitSummary {
    pub home: Home,
    /// The chain id of a `--single-validator` chain; `None` while the home waits for a
    /// network's genesis.
    pub chain_id: Option<String>,
    pub moniker: String,
    pub validator_public: [u8; 32],
    pub peer_id: String,
    pub p2p_listen: String,
    /// Each account's key file and address.
    pub accounts: Vec<(PathBuf, [u8; 32])>,
}

impl fmt::Display for InitSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let home = &self.home;
        writeln!(f, "initialised home {}", home.root.display())?;
        writeln!(f, "  validator key: {}", hex::encode(self.validator_public))?;
        writeln!(f, "  peer id:       {}", self.peer_id)?;
        writeln!(f, "  p2p listen:    {}", self.p2p_listen)?;
        writeln!(f, "  config:        {}", home.config().display())?;
        writeln!(f, "  validator:     {}", home.validator_key().display())?;
        writeln!(f, "  node key:      {}", home.node_key().display())?;
        match &self.chain_id {
            Some(chain_id) => {
                writeln!(f, "  genesis:       {}", home.genesis().display())?;
                writeln!(
                    f,
                    "  chain id:      {chain_id} (this node its only validator)"
                )?;
            }
            None => writeln!(
                f,
                "  genesis:       none yet; the network's coordinator supplies it"
            )?,
        }
        if !self.accounts.is_empty() {
            writeln!(f, "  accounts:")?;
            for (path, address) in &self.accounts {
                writeln!(f, "    {} {}", hex::encode(address), path.display())?;
            }
        }
        if self.chain_id.is_none() {
            let root = home.root.display();
            writeln!(f)?;
            writeln!(f, "To join a network:")?;
            writeln!(
                f,
                "  1. weft keys show --home {root} --host <this host> --json > {}.json",
                self.moniker
            )?;
            writeln!(
                f,
                "     and send that card (public values only) to the coordinator;"
            )?;
            writeln!(
                f,
                "  2. put the genesis you get back at {}, and compare",
                home.genesis().display()
            )?;
            writeln!(
                f,
                "     `weft genesis hash --home {root}` with the coordinator's;"
            )?;
            writeln!(
                f,
                "  3. list the other nodes in p2p.persistent_peers of {}, then `weft start --home {root}`.",
                home.config().display()
            )?;
        }
        Ok(())
    }
}

pub(super) fn account_key_path(home: &Home, index: usize) -> PathBuf {
    home.config_dir().join(format!("account-{index}.json"))
}

/// Where a node that joins a network listens by default: every interface, as the others must
/// reach it (RPC and metrics stay on loopback).
pub const JOIN_P2P_LISTEN: &str = "/ip4/0.0.0.0/tcp/26656";

/// Creates a home: everything is checked and built in memory first, so a refused init writes
/// nothing; `config.toml`, the file that marks a home as initialised, is written last.
pub fn init(args: &InitArgs) -> Result<InitSummary, CliError> {
    let home = Home::new(&args.home);
    if home.config().exists() {
        return Err(CliError::HomeExists {
            home: home.root.clone(),
            file: home.config(),
        });
    }
    if args.accounts > ACCOUNTS_MAX {
        return Err(CliError::Flag {
            flag: "accounts",
            problem: format!("{} is over the limit of {ACCOUNTS_MAX}", args.accounts),
        });
    }
    let account_paths: Vec<PathBuf> = (0..args.accounts)
        .map(|i| account_key_path(&home, i))
        .collect();
    let fixed = [home.genesis(), home.validator_key(), home.node_key()];
    if let Some(file) = fixed.iter().chain(&account_paths).find(|p| p.exists()) {
        return Err(CliError::HomeExists {
            home: home.root.clone(),
            file: file.clone(),
        });
    }

    let mut config = Config {
        moniker: args.moniker.clone(),
        ..Config::default()
    };
    match &args.p2p_listen {
        Some(listen) => config.p2p.listen.clone_from(listen),
        None if !args.single_validator => config.p2p.listen = JOIN_P2P_LISTEN.into(),
        None => {}
    }
    config.validate().map_err(|problem| CliError::Flag {
        flag: "p2p-listen",
        problem,
    })?;
    let validator = SecretKey::generate();
    let node_key = SecretKey::generate();
    let accounts: Vec<SecretKey> = (0..args.accounts).map(|_| SecretKey::generate()).collect();
    let genesis = if args.single_validator {
        let genesis = Genesis::new(
            &args.chain_id,
            unix_now_ms(),
            vec![(
                args.moniker.clone(),
                validator.public(),
                INIT_VALIDATOR_POWER,
            )],
            accounts
                .iter()
                .map(|a| (a.public(), args.balance))
                .collect(),
            ConsensusParams::default(),
        )
        .map_err(|problem| CliError::GenesisBuild {
            home: home.root.clone(),
            problem,
        })?;
        Some(genesis)
    } else {
        None
    };

    for dir in [home.config_dir(), home.data(&config)] {
        std::fs::create_dir_all(&dir).map_err(|source| CliError::Io { path: dir, source })?;
    }
    write_key_file(&home.validator_key(), &validator)?;
    write_key_file(&home.node_key(), &node_key)?;
    for (path, key) in account_paths.iter().zip(&accounts) {
        write_key_file(path, key)?;
    }
    if let Some(genesis) = &genesis {
        genesis.save(&home.genesis())?;
    }
    config.save(&home.config())?;

    Ok(InitSummary {
        chain_id: genesis.map(|g| g.chain_id),
        moniker: args.moniker.clone(),
        validator_public: validator.public(),
        peer_id: peer_id(&node_key),
        p2p_listen: config.p2p.listen,
        accounts: account_paths
            .into_iter()
            .zip(accounts.iter().map(SecretKey::public))
            .collect(),
        home,
    })
}

pub(super) fn unix_now_ms() -> u64 {
    // A clock before 1970 is a broken machine; genesis validation then refuses the time.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn peer_id(key: &SecretKey) -> String {
    weft_gossip::net::keypair_from_secret(key)
        .public()
        .to_peer_id()
        .to_string()
}
