//! The `weft` command line: `init`, `start`, `keys`, `genesis`, `status`, `tx` and `version`
//! (DESIGN §7). `genesis` and `keys show --home` are the genesis ceremony ([`crate::ceremony`]).
//!
//! One file per command (`init`, `keys`, `genesis`, `start`; `client` holds `status` and `tx`),
//! and the arguments, errors and dispatch here. Each command is a function returning
//! `Result<_, CliError>`; `main.rs` only parses and prints.
//! Every error names the file, flag or address at fault, and bad input never panics.
//! `status` and `tx` are clients of the node's typed RPC (`crate::rpc::RpcClient`), which reads
//! CometBFT's shapes; transactions are signed here, never on the node.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use thiserror::Error;
use weft_execution::tx::ValidatorKey;
use weft_execution::{Address, ChainId, Name, Payload, Transaction};
use weft_genesis::{
    ACCOUNTS_MAX, ConsensusParams, Genesis, GenesisError, GenesisProblem, KeyFileError, SecretKey,
    read_key_file, write_key_file,
};

use crate::ceremony::{self, CeremonyError, KeySource, OperatorCard, OperatorSummary};
use crate::config::{Config, ConfigError, Home};
use crate::node::NodeError;

/// The RPC address `status` and `tx` talk to unless told otherwise.
pub const DEFAULT_RPC_URL: &str = "http://127.0.0.1:26657";
/// How long a client call may take; above the server's default `commit_timeout_ms` (10 s) so
/// that `broadcast_tx_commit` reports the server's verdict rather than a client timeout.
pub const RPC_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Largest RPC reply the client accepts.
pub const RPC_RESPONSE_BYTES_MAX: u32 = 4 << 20;
/// Voting power of the single validator `weft init` creates.
pub const INIT_VALIDATOR_POWER: u64 = 10;

#[derive(Parser, Debug)]
#[command(name = "weft", version, about = "The Weft validator node")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a home: config and keys. The genesis is left for the network's coordinator to
    /// supply, unless `--single-validator` makes a chain of this node's own.
    Init(InitArgs),
    /// Run the node in a home until SIGINT or SIGTERM.
    Start(StartArgs),
    /// Create or inspect key files; `keys show --home` prints what to send a coordinator.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Assemble and check a genesis from operators' public keys (the genesis ceremony).
    Genesis {
        #[command(subcommand)]
        command: GenesisCommand,
    },
    /// Show a node's status over RPC.
    Status(StatusArgs),
    /// Sign a transaction here and submit it over RPC.
    Tx {
        #[command(subcommand)]
        command: TxCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    #[arg(long)]
    pub home: PathBuf,
    /// Also write a genesis with this node as the only validator and the accounts funded: a
    /// chain of its own. Without it the home waits for the network's genesis.
    #[arg(long)]
    pub single_validator: bool,
    /// The chain id of a `--single-validator` chain.
    #[arg(long, default_value = "weft-local", requires = "single_validator")]
    pub chain_id: String,
    #[arg(long, default_value = "weft-node")]
    pub moniker: String,
    /// Account key files to create, `config/account-<i>.json` (funded only with
    /// `--single-validator`; otherwise send their public keys to the coordinator).
    #[arg(long, default_value_t = 0)]
    pub accounts: usize,
    /// Initial balance of each account of a `--single-validator` chain.
    #[arg(long, default_value_t = 1_000_000_000)]
    pub balance: u64,
    /// `p2p.listen`. Default: every interface (`/ip4/0.0.0.0/tcp/26656`) for a node that joins
    /// a network, loopback for a `--single-validator` chain.
    #[arg(long)]
    pub p2p_listen: Option<String>,
}

impl InitArgs {
    /// A home that waits for a network's genesis.
    pub fn joining(home: &Path, moniker: &str) -> InitArgs {
        InitArgs {
            home: home.to_owned(),
            single_validator: false,
            chain_id: "weft-local".into(),
            moniker: moniker.to_owned(),
            accounts: 0,
            balance: 0,
            p2p_listen: None,
        }
    }
}

/// Where a `weft genesis` command finds its file.
#[derive(Args, Debug, Clone)]
pub struct GenesisFile {
    /// The genesis file.
    #[arg(long, default_value = "genesis.json", conflicts_with = "home")]
    pub genesis: PathBuf,
    /// A node home: its `config/genesis.json`.
    #[arg(long)]
    pub home: Option<PathBuf>,
}

impl GenesisFile {
    pub fn path(&self) -> PathBuf {
        match &self.home {
            Some(home) => Home::new(home).genesis(),
            None => self.genesis.clone(),
        }
    }
}

/// Which consensus timeouts a new genesis takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Timeouts {
    /// CometBFT's: 3 s propose, 1 s votes, +0.5 s a round, 1 s commit delay.
    Default,
    /// For local networks: 400 ms propose, 200 ms votes, no commit delay.
    Fast,
}

#[derive(Subcommand, Debug)]
pub enum GenesisCommand {
    /// Start a genesis with no validators yet (refuses to overwrite a file).
    New {
        #[command(flatten)]
        file: GenesisFile,
        #[arg(long, value_parser = parse_chain_id)]
        chain_id: ChainId,
        /// The genesis time, RFC 3339 in UTC (`2026-12-24T00:00:00Z`); default now.
        #[arg(long)]
        time: Option<String>,
        #[arg(long, default_value_t = 1)]
        initial_height: u64,
        #[arg(long, value_enum, default_value = "default")]
        timeouts: Timeouts,
    },
    /// Add a validator from its public key (`--pubkey`) or an operator's card (`--from`, as
    /// `weft keys show --home H --json` prints it). Never give it a secret key file.
    AddValidator {
        #[command(flatten)]
        file: GenesisFile,
        /// The validator's ed25519 public key, 64 hex digits.
        #[arg(long, required_unless_present = "from", conflicts_with = "from")]
        pubkey: Option<String>,
        /// An operator's card (JSON).
        #[arg(long)]
        from: Option<PathBuf>,
        /// The validator's name (default: the card's moniker).
        #[arg(long, required_unless_present = "from")]
        name: Option<String>,
        #[arg(long, default_value_t = ceremony::DEFAULT_VALIDATOR_POWER)]
        power: u64,
    },
    /// Add a funded account from its public key (`--address`) or a card (`--from`).
    AddAccount {
        #[command(flatten)]
        file: GenesisFile,
        #[command(flatten)]
        account: AccountKey,
        #[arg(long)]
        balance: u64,
    },
    /// Name the validator authority: the account (from `--address` or a card) whose signed
    /// `weft tx validator-update` changes the validator set while the chain runs.
    SetAuthority {
        #[command(flatten)]
        file: GenesisFile,
        #[command(flatten)]
        account: AccountKey,
    },
    /// Check a genesis completely, as `weft start` will.
    Validate {
        #[command(flatten)]
        file: GenesisFile,
    },
    /// Print the genesis hash (every operator compares it with the coordinator's).
    Hash {
        #[command(flatten)]
        file: GenesisFile,
    },
    /// Print the values to check: chain id, time, validators and their shares, accounts.
    Show {
        #[command(flatten)]
        file: GenesisFile,
    },
}

/// An account's public key: `--address` (64 hex digits) or `--from` (an operator's card).
#[derive(Args, Debug)]
pub struct AccountKey {
    /// The account's public key, 64 hex digits.
    #[arg(long, required_unless_present = "from", conflicts_with = "from")]
    pub address: Option<String>,
    /// An account's card (JSON, as `weft keys show --key K --json` prints it).
    #[arg(long)]
    pub from: Option<PathBuf>,
}

impl AccountKey {
    pub fn source(&self) -> KeySource<'_> {
        match (&self.address, &self.from) {
            (Some(hex), _) => KeySource::Hex(hex),
            (None, Some(card)) => KeySource::Card(card),
            (None, None) => unreachable!("clap requires one"),
        }
    }
}

#[derive(Args, Debug, Default)]
pub struct StartArgs {
    #[arg(long)]
    pub home: PathBuf,
    /// Overrides `p2p.listen` (a multiaddr).
    #[arg(long)]
    pub p2p_listen: Option<String>,
    /// Overrides `rpc.laddr`.
    #[arg(long)]
    pub rpc_laddr: Option<String>,
    /// Overrides `metrics.laddr`; an empty value disables the endpoint.
    #[arg(long)]
    pub metrics_laddr: Option<String>,
    /// Overrides `p2p.persistent_peers`, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub persistent_peers: Option<Vec<String>>,
    /// Overrides `p2p.gossip`.
    #[arg(long, value_parser = ["plain", "semantic"])]
    pub gossip: Option<String>,
    /// Overrides `log_level`; `RUST_LOG` still wins.
    #[arg(long)]
    pub log_level: Option<String>,
    /// Overrides `consensus.timeout_commit_ms`.
    #[arg(long)]
    pub timeout_commit_ms: Option<u64>,
    /// Overrides `execution.threads` (0: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Sets `rpc.unsafe`: serve the `unsafe_*` methods (partition control for chaos tests).
    #[arg(long)]
    pub rpc_unsafe: bool,
    /// Join by state sync: restore a peer's snapshot instead of replaying every block, when
    /// the chain database is empty (sets `statesync.enable`).
    #[arg(long)]
    pub state_sync: bool,
    /// A height this node trusts, with `--trust-hash` (as CometBFT's light client): state sync
    /// verifies the snapshot's header from it. Without both, it trusts the genesis validators.
    #[arg(long, requires = "trust_hash")]
    pub trust_height: Option<u64>,
    /// The block hash (hex) at `--trust-height`, from a source this operator trusts (another
    /// node's `block` RPC, a block explorer).
    #[arg(long, requires = "trust_height")]
    pub trust_hash: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Write a new key file (mode 0600); never overwrites.
    New {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a key file's public key and peer id (`--key`), or a node home's validator key,
    /// peer id and `persistent_peers` entry: what an operator sends the coordinator (`--home`).
    Show {
        #[arg(long, required_unless_present = "home", conflicts_with = "home")]
        key: Option<PathBuf>,
        #[arg(long)]
        home: Option<PathBuf>,
        /// This node's host name or address, as the other nodes will dial it.
        #[arg(long, requires = "home")]
        host: Option<String>,
        /// The p2p port the others dial (default: the port of `p2p.listen`).
        #[arg(long, requires = "home")]
        port: Option<u16>,
        /// Print a card (JSON): public values only.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(long, default_value = DEFAULT_RPC_URL)]
    pub rpc: String,
    /// Print the raw `status` result.
    #[arg(long)]
    pub json: bool,
}

/// What every `tx` subcommand takes.
#[derive(Args, Debug)]
pub struct TxCommon {
    /// The sender's key file.
    #[arg(long)]
    pub key: PathBuf,
    #[arg(long, default_value = DEFAULT_RPC_URL)]
    pub rpc: String,
    /// The chain id to sign for; asked of the node (`status`) when absent.
    #[arg(long, value_parser = parse_chain_id)]
    pub chain_id: Option<ChainId>,
    /// Return once the tx passes the mempool check (`broadcast_tx_sync`) instead of waiting
    /// for its commit.
    #[arg(long = "async")]
    pub no_wait: bool,
}

#[derive(Subcommand, Debug)]
pub enum TxCommand {
    /// Move funds to an account.
    Transfer {
        #[command(flatten)]
        common: TxCommon,
        /// The recipient's address (64 hex digits).
        #[arg(long, value_parser = parse_address)]
        to: Address,
        #[arg(long)]
        amount: u64,
    },
    /// Register a name for the sender's account.
    RegisterName {
        #[command(flatten)]
        common: TxCommon,
        #[arg(long, value_parser = parse_name)]
        name: Name,
    },
    /// Pay the account that holds a name.
    PayName {
        #[command(flatten)]
        common: TxCommon,
        #[arg(long, value_parser = parse_name)]
        name: Name,
        #[arg(long)]
        amount: u64,
    },
    /// Set a validator's voting power (0 removes it), signed by the genesis's validator
    /// authority (`--key`). It takes effect two heights after the block that commits it; at
    /// most a third of the total power may move in one update, and one block carries one.
    ValidatorUpdate {
        #[command(flatten)]
        common: TxCommon,
        /// The validator's consensus public key (64 hex digits, as `weft keys show` prints it).
        #[arg(long, value_parser = parse_validator_key)]
        pubkey: ValidatorKey,
        /// Its new voting power; 0 removes it from the set.
        #[arg(long)]
        power: u64,
    },
}

fn parse_validator_key(text: &str) -> Result<ValidatorKey, String> {
    if std::path::Path::new(text).exists() {
        return Err(format!(
            "{text} is a file; give the validator's public key (64 hex digits, from `weft keys \
             show`), never a key file"
        ));
    }
    let bytes = hex::decode(text.trim()).map_err(|e| format!("not hex: {e}"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes, not 32", b.len()))?;
    ValidatorKey::new(bytes).map_err(|e| e.to_string())
}

fn parse_address(text: &str) -> Result<Address, String> {
    let bytes = hex::decode(text).map_err(|e| format!("not hex: {e}"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes, not 32", b.len()))?;
    Ok(Address(bytes))
}

fn parse_name(text: &str) -> Result<Name, String> {
    Name::new(text).map_err(|e| e.to_string())
}

fn parse_chain_id(text: &str) -> Result<ChainId, String> {
    ChainId::new(text).map_err(|e| e.to_string())
}

#[derive(Debug, Error)]
pub enum CliError {
    #[error("home {}: {} already exists; refusing to initialise it again", home.display(), file.display())]
    HomeExists { home: PathBuf, file: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    #[error("genesis for home {}: {problem}", home.display())]
    GenesisBuild {
        home: PathBuf,
        problem: GenesisProblem,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ceremony(#[from] CeremonyError),
    #[error(
        "home {} has no genesis ({} is missing): put the network's genesis file there (from its \
         coordinator; compare `weft genesis hash --home {}` with theirs), or make a chain of this \
         node's own with `weft init --single-validator`",
        home.display(), file.display(), home.display()
    )]
    NoGenesis { home: PathBuf, file: PathBuf },
    #[error("--{flag}: {problem}")]
    Flag { flag: &'static str, problem: String },
    #[error("logging: {0}")]
    Logging(String),
    #[error("tokio runtime: {0}")]
    Runtime(std::io::Error),
    #[error("installing the signal handlers: {0}")]
    Signal(std::io::Error),
    #[error("node at {}: {source}", home.display())]
    Node { home: PathBuf, source: NodeError },
    #[error("RPC {url}: {method}: {problem}")]
    Rpc {
        url: String,
        method: &'static str,
        problem: String,
    },
    #[error("transaction {hash} failed in {stage} with code {code}: {log}")]
    TxFailed {
        hash: String,
        stage: &'static str,
        code: u32,
        log: String,
    },
}

/// Runs a parsed command line, printing its output to stdout.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Init(args) => {
            print!("{}", init(&args)?);
            Ok(())
        }
        Command::Start(args) => start(&args),
        Command::Keys { command } => {
            print!("{}", keys(command)?);
            Ok(())
        }
        Command::Genesis { command } => {
            print!("{}", genesis(command)?);
            Ok(())
        }
        Command::Status(args) => block_on_client(status(&args)),
        Command::Tx { command } => {
            let outcome = block_on_client(tx(&command))?;
            print!("{outcome}");
            outcome.check()
        }
        Command::Version => {
            println!("weft {}", env!("CARGO_PKG_VERSION"));
            println!("{}", crate::test_hooks::version_line());
            Ok(())
        }
    }
}

mod client;
mod genesis;
mod init;
mod keys;
mod start;
#[cfg(test)]
mod tests;

pub use client::*;
pub use genesis::*;
pub use init::*;
pub use keys::*;
pub use start::*;
