//! The `weft` command line: `init`, `start`, `keys`, `status`, `tx` and `version` (DESIGN §7).
//!
//! Each command is a function returning `Result<_, CliError>`; `main.rs` only parses and prints.
//! Every error names the file, flag or address at fault, and bad input never panics.
//! `status` and `tx` are clients over JSON-RPC and read results as plain JSON, so they do not
//! depend on the server's types; transactions are signed here, never on the node.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::params::ObjectParams;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use serde_json::Value;
use thiserror::Error;
use weft_execution::{Address, ChainId, Name, Payload, Transaction};
use weft_genesis::{
    ACCOUNTS_MAX, ConsensusParams, Genesis, GenesisError, GenesisProblem, KeyFileError, SecretKey,
    read_key_file, write_key_file,
};

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
    /// Create a home: config, keys, funded accounts and a one-validator genesis.
    Init(InitArgs),
    /// Run the node in a home until SIGINT or SIGTERM.
    Start(StartArgs),
    /// Create or inspect key files.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
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

#[derive(Args, Debug)]
pub struct InitArgs {
    #[arg(long)]
    pub home: PathBuf,
    #[arg(long, default_value = "weft-local")]
    pub chain_id: String,
    #[arg(long, default_value = "weft-node")]
    pub moniker: String,
    /// Funded accounts to create, each with a key file `config/account-<i>.json`.
    #[arg(long, default_value_t = 4)]
    pub accounts: usize,
    /// Initial balance of each account.
    #[arg(long, default_value_t = 1_000_000_000)]
    pub balance: u64,
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
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Write a new key file (mode 0600); never overwrites.
    New {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a key file's public key (its account address) and libp2p peer id.
    Show {
        #[arg(long)]
        key: PathBuf,
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
        code: u64,
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
            let (key, path) = match command {
                KeysCommand::New { out } => (keys_new(&out)?, out),
                KeysCommand::Show { key } => (read_key_file(&key)?, key),
            };
            print!("{}", KeySummary::new(&key, &path));
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
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// init

/// What `weft init` created.
#[derive(Debug)]
pub struct InitSummary {
    pub home: Home,
    pub chain_id: String,
    pub validator_public: [u8; 32],
    pub peer_id: String,
    /// Each account's key file and address.
    pub accounts: Vec<(PathBuf, [u8; 32])>,
}

impl fmt::Display for InitSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let home = &self.home;
        writeln!(f, "initialised home {}", home.root.display())?;
        writeln!(f, "  chain id:      {}", self.chain_id)?;
        writeln!(f, "  validator key: {}", hex::encode(self.validator_public))?;
        writeln!(f, "  peer id:       {}", self.peer_id)?;
        writeln!(f, "  config:        {}", home.config().display())?;
        writeln!(f, "  genesis:       {}", home.genesis().display())?;
        writeln!(f, "  validator:     {}", home.validator_key().display())?;
        writeln!(f, "  node key:      {}", home.node_key().display())?;
        writeln!(f, "  accounts:")?;
        for (path, address) in &self.accounts {
            writeln!(f, "    {} {}", hex::encode(address), path.display())?;
        }
        Ok(())
    }
}

fn account_key_path(home: &Home, index: usize) -> PathBuf {
    home.config_dir().join(format!("account-{index}.json"))
}

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

    let config = Config {
        moniker: args.moniker.clone(),
        ..Config::default()
    };
    let validator = SecretKey::generate();
    let node_key = SecretKey::generate();
    let accounts: Vec<SecretKey> = (0..args.accounts).map(|_| SecretKey::generate()).collect();
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

    for dir in [home.config_dir(), home.data(&config)] {
        std::fs::create_dir_all(&dir).map_err(|source| CliError::Io { path: dir, source })?;
    }
    write_key_file(&home.validator_key(), &validator)?;
    write_key_file(&home.node_key(), &node_key)?;
    for (path, key) in account_paths.iter().zip(&accounts) {
        write_key_file(path, key)?;
    }
    genesis.save(&home.genesis())?;
    config.save(&home.config())?;

    Ok(InitSummary {
        chain_id: genesis.chain_id,
        validator_public: validator.public(),
        peer_id: peer_id(&node_key),
        accounts: account_paths
            .into_iter()
            .zip(accounts.iter().map(SecretKey::public))
            .collect(),
        home,
    })
}

fn unix_now_ms() -> u64 {
    // A clock before 1970 is a broken machine; genesis validation then refuses the time.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn peer_id(key: &SecretKey) -> String {
    weft_gossip::net::keypair_from_secret(key)
        .public()
        .to_peer_id()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// keys

/// Writes a fresh key to `out`, refusing to overwrite.
pub fn keys_new(out: &Path) -> Result<SecretKey, CliError> {
    let key = SecretKey::generate();
    write_key_file(out, &key)?;
    Ok(key)
}

pub struct KeySummary {
    pub path: PathBuf,
    pub public: [u8; 32],
    pub peer_id: String,
}

impl KeySummary {
    fn new(key: &SecretKey, path: &Path) -> Self {
        KeySummary {
            path: path.to_owned(),
            public: key.public(),
            peer_id: peer_id(key),
        }
    }
}

impl fmt::Display for KeySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key file:   {}", self.path.display())?;
        writeln!(
            f,
            "public key: {} (account address)",
            hex::encode(self.public)
        )?;
        writeln!(f, "peer id:    {}", self.peer_id)
    }
}

// ---------------------------------------------------------------------------------------------
// start

/// Loads and checks everything `start` needs, so that a bad file is named before the node
/// starts: the config with the flags applied, the genesis, and both key files.
pub fn prepare_start(args: &StartArgs) -> Result<(Home, Config), CliError> {
    let home = Home::new(&args.home);
    let mut config = Config::load(&home.config())?;
    apply_overrides(&mut config, args);
    config.validate().map_err(|problem| ConfigError {
        path: home.config(),
        problem: format!("{problem} (after applying the command-line flags)"),
    })?;
    Genesis::load(&home.genesis())?;
    read_key_file(&home.validator_key())?;
    read_key_file(&home.node_key())?;
    Ok((home, config))
}

fn apply_overrides(config: &mut Config, args: &StartArgs) {
    if let Some(listen) = &args.p2p_listen {
        config.p2p.listen.clone_from(listen);
    }
    if let Some(laddr) = &args.rpc_laddr {
        config.rpc.laddr.clone_from(laddr);
    }
    if let Some(laddr) = &args.metrics_laddr {
        config.metrics.laddr.clone_from(laddr);
    }
    if let Some(peers) = &args.persistent_peers {
        config.p2p.persistent_peers = peers.iter().filter(|p| !p.is_empty()).cloned().collect();
    }
    if let Some(gossip) = &args.gossip {
        config.p2p.gossip.clone_from(gossip);
    }
    if let Some(level) = &args.log_level {
        config.log_level.clone_from(level);
    }
    if let Some(ms) = args.timeout_commit_ms {
        config.consensus.timeout_commit_ms = Some(ms);
    }
    if let Some(threads) = args.threads {
        config.execution.threads = threads;
    }
    if args.rpc_unsafe {
        config.rpc.unsafe_routes = true;
    }
}

/// Runs the node until SIGINT or SIGTERM.
pub fn start(args: &StartArgs) -> Result<(), CliError> {
    let (home, config) = prepare_start(args)?;
    init_tracing(&home, &config)?;
    // Tokio takes one worker per core, or `TOKIO_WORKER_THREADS` when set (several nodes on
    // one machine run better with fewer each); the executor has its own pool sized by
    // `execution.threads`.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("weft-runtime")
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).map_err(CliError::Signal)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(CliError::Signal)?;
        let shutdown = async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received; stopping"),
                _ = terminate.recv() => tracing::info!("SIGTERM received; stopping"),
            }
        };
        crate::node::run(&home, config, shutdown)
            .await
            .map_err(|source| CliError::Node {
                home: home.root.clone(),
                source,
            })
    })
}

/// Logs go to stderr; `RUST_LOG`, when set, overrides the config's `log_level`.
fn init_tracing(home: &Home, config: &Config) -> Result<(), CliError> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(text) => EnvFilter::try_new(&text)
            .map_err(|e| CliError::Logging(format!("RUST_LOG {text:?}: {e}")))?,
        Err(_) => EnvFilter::try_new(&config.log_level).map_err(|e| ConfigError {
            path: home.config(),
            problem: format!("log_level {:?}: {e}", config.log_level),
        })?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .map_err(|e| CliError::Logging(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// RPC client: status, tx

fn block_on_client<T>(future: impl Future<Output = Result<T, CliError>>) -> Result<T, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?
        .block_on(future)
}

/// A JSON-RPC client that names its URL and method in every error.
struct Rpc {
    url: String,
    client: HttpClient,
}

impl Rpc {
    fn connect(url: &str) -> Result<Rpc, CliError> {
        let client = HttpClientBuilder::default()
            .request_timeout(Duration::from_millis(RPC_REQUEST_TIMEOUT_MS))
            .max_response_size(RPC_RESPONSE_BYTES_MAX)
            .build(url)
            .map_err(|e| CliError::Rpc {
                url: url.to_owned(),
                method: "connect",
                problem: e.to_string(),
            })?;
        Ok(Rpc {
            url: url.to_owned(),
            client,
        })
    }

    fn error(&self, method: &'static str, problem: impl fmt::Display) -> CliError {
        CliError::Rpc {
            url: self.url.clone(),
            method,
            problem: problem.to_string(),
        }
    }

    async fn call(
        &self,
        method: &'static str,
        params: &[(&str, Value)],
    ) -> Result<Value, CliError> {
        let mut object = ObjectParams::new();
        for (name, value) in params {
            object
                .insert(name, value)
                .map_err(|e| self.error(method, e))?;
        }
        self.client
            .request(method, object)
            .await
            .map_err(|e| self.error(method, error_chain(&e)))
    }
}

/// An error with its causes: transport errors hide the useful part ("connection refused")
/// in their sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Reads a number the server may send as a JSON number or, CometBFT style, as a string.
fn json_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn json_text(value: &Value) -> String {
    match value {
        Value::Null => "?".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn status(args: &StatusArgs) -> Result<(), CliError> {
    let rpc = Rpc::connect(&args.rpc)?;
    let status = rpc.call("status", &[]).await?;
    if args.json {
        let text = serde_json::to_string_pretty(&status).map_err(|e| rpc.error("status", e))?;
        println!("{text}");
        return Ok(());
    }
    // Peers are a nicety: a node without `net_info` still shows its status.
    let peers = rpc
        .call("net_info", &[])
        .await
        .ok()
        .and_then(|info| json_u64(&info["n_peers"]));
    print!("{}", status_summary(&status, peers));
    Ok(())
}

fn status_summary(status: &Value, peers: Option<u64>) -> String {
    let node = &status["node_info"];
    let sync = &status["sync_info"];
    let peers = peers.map_or_else(|| "?".to_owned(), |n| n.to_string());
    format!(
        "moniker:     {}\nchain id:    {}\nnode id:     {}\nheight:      {}\nblock hash:  {}\n\
         block time:  {}\ncatching up: {}\npeers:       {peers}\n",
        json_text(&node["moniker"]),
        json_text(&node["network"]),
        json_text(&node["id"]),
        json_text(&sync["latest_block_height"]),
        json_text(&sync["latest_block_hash"]),
        json_text(&sync["latest_block_time_ms"]),
        json_text(&sync["catching_up"]),
    )
}

/// A tx's fate as the node reported it.
#[derive(Debug, PartialEq)]
pub struct TxOutcome {
    pub hash: String,
    pub height: Option<u64>,
    /// The mempool check's code and log.
    pub check: (u64, String),
    /// The execution result's code and log; absent for `--async` or when the check failed.
    pub result: Option<(u64, String)>,
}

impl TxOutcome {
    /// An error naming the stage that failed, if one did.
    pub fn check(&self) -> Result<(), CliError> {
        let stages = [
            ("check_tx", Some(&self.check)),
            ("tx_result", self.result.as_ref()),
        ];
        for (stage, outcome) in stages {
            if let Some((code, log)) = outcome.filter(|(code, _)| *code != 0) {
                return Err(CliError::TxFailed {
                    hash: self.hash.clone(),
                    stage,
                    code: *code,
                    log: log.clone(),
                });
            }
        }
        Ok(())
    }
}

impl fmt::Display for TxOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "hash:      {}", self.hash)?;
        if let Some(height) = self.height {
            writeln!(f, "height:    {height}")?;
        }
        writeln!(f, "check_tx:  code {} {}", self.check.0, self.check.1)?;
        if let Some((code, log)) = &self.result {
            writeln!(f, "tx_result: code {code} {log}")?;
        }
        Ok(())
    }
}

fn code_and_log(value: &Value) -> Option<(u64, String)> {
    let code = json_u64(&value["code"])?;
    let log = value["log"].as_str().unwrap_or_default().to_owned();
    Some((code, log))
}

/// Reads a `broadcast_tx_commit` (`commit`) or `broadcast_tx_sync` result; `local_hash` stands
/// in when the reply carries none.
fn parse_tx_reply(reply: &Value, commit: bool, local_hash: &str) -> Result<TxOutcome, String> {
    let hash = reply["hash"].as_str().unwrap_or(local_hash).to_owned();
    let (check, result) = if commit {
        let check = code_and_log(&reply["check_tx"]).ok_or("the reply has no check_tx.code")?;
        (check, code_and_log(&reply["tx_result"]))
    } else {
        (code_and_log(reply).ok_or("the reply has no code")?, None)
    };
    if commit && check.0 == 0 && result.is_none() {
        return Err("the reply has check_tx code 0 but no tx_result.code".into());
    }
    let height = json_u64(&reply["height"]).filter(|h| *h > 0);
    Ok(TxOutcome {
        hash,
        height,
        check,
        result,
    })
}

async fn tx(command: &TxCommand) -> Result<TxOutcome, CliError> {
    let (common, payload) = match command {
        TxCommand::Transfer { common, to, amount } => (
            common,
            Payload::Transfer {
                to: *to,
                amount: *amount,
            },
        ),
        TxCommand::RegisterName { common, name } => (common, Payload::RegisterName { name: *name }),
        TxCommand::PayName {
            common,
            name,
            amount,
        } => (
            common,
            Payload::PayName {
                name: *name,
                amount: *amount,
            },
        ),
    };
    let key = read_key_file(&common.key)?;
    let rpc = Rpc::connect(&common.rpc)?;
    let chain_id = match &common.chain_id {
        Some(id) => id.clone(),
        None => remote_chain_id(&rpc).await?,
    };
    let address = hex::encode(key.public());
    let account = rpc
        .call("account", &[("address", Value::String(address.clone()))])
        .await?;
    let nonce = json_u64(&account["nonce"])
        .ok_or_else(|| rpc.error("account", format!("no nonce for {address}: {account}")))?;

    let tx = Transaction::sign(chain_id, &key.signing_key(), nonce, payload);
    let local_hash = hex::encode(tx.hash().0);
    let method = if common.no_wait {
        "broadcast_tx_sync"
    } else {
        "broadcast_tx_commit"
    };
    let reply = rpc
        .call(method, &[("tx", Value::String(hex::encode(tx.encode())))])
        .await?;
    parse_tx_reply(&reply, !common.no_wait, &local_hash).map_err(|e| rpc.error(method, e))
}

async fn remote_chain_id(rpc: &Rpc) -> Result<ChainId, CliError> {
    let status = rpc.call("status", &[]).await?;
    let network = status["node_info"]["network"].as_str().ok_or_else(|| {
        rpc.error(
            "status",
            "the reply has no node_info.network; pass --chain-id",
        )
    })?;
    ChainId::new(network).map_err(|e| rpc.error("status", format!("chain id {network:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde_json::json;

    use super::*;

    fn init_args(home: &Path, accounts: usize) -> InitArgs {
        InitArgs {
            home: home.to_owned(),
            chain_id: "weft-test".into(),
            moniker: "node-0".into(),
            accounts,
            balance: 5_000,
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn init_writes_a_home_that_loads() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home");
        let summary = init(&init_args(&root, 3)).unwrap();
        let home = Home::new(&root);

        let config = Config::load(&home.config()).unwrap();
        assert_eq!(config.moniker, "node-0");
        assert!(home.data(&config).is_dir());

        let validator = read_key_file(&home.validator_key()).unwrap();
        read_key_file(&home.node_key()).unwrap();
        for path in [home.validator_key(), home.node_key()] {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
        assert_eq!(summary.validator_public, validator.public());

        let genesis = Genesis::load(&home.genesis()).unwrap();
        assert_eq!(genesis.chain_id, "weft-test");
        assert_eq!(genesis.validators.len(), 1);
        assert_eq!(
            genesis.validators[0].public_key().unwrap(),
            validator.public()
        );
        assert_eq!(genesis.validators[0].power, INIT_VALIDATOR_POWER);
        assert_eq!(genesis.accounts.len(), 3);
        assert_eq!(summary.accounts.len(), 3);
        for (i, (path, address)) in summary.accounts.iter().enumerate() {
            assert_eq!(*path, account_key_path(&home, i));
            assert_eq!(mode(path), 0o600);
            assert_eq!(read_key_file(path).unwrap().public(), *address);
            let funded = &genesis.accounts[i];
            assert_eq!(funded.address, hex::encode(address));
            assert_eq!(funded.balance, 5_000);
        }
        assert!(summary.to_string().contains("weft-test"));
    }

    #[test]
    fn init_refuses_an_initialised_home_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        init(&init_args(dir.path(), 1)).unwrap();
        let home = Home::new(dir.path());
        let genesis_before = std::fs::read(home.genesis()).unwrap();

        let error = init(&init_args(dir.path(), 1)).unwrap_err();
        assert!(matches!(error, CliError::HomeExists { .. }), "{error}");
        assert!(error.to_string().contains("config.toml"), "{error}");
        assert_eq!(std::fs::read(home.genesis()).unwrap(), genesis_before);
    }

    #[test]
    fn init_refuses_bad_input_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(&str, InitArgs)> = vec![
            (
                "chain id",
                InitArgs {
                    chain_id: "bad chain".into(),
                    ..init_args(dir.path(), 1)
                },
            ),
            ("accounts", init_args(dir.path(), ACCOUNTS_MAX + 1)),
            (
                "balances",
                InitArgs {
                    balance: u64::MAX,
                    ..init_args(dir.path(), 2)
                },
            ),
        ];
        for (what, args) in cases {
            let error = init(&args).unwrap_err();
            assert!(
                !Home::new(dir.path()).config_dir().exists(),
                "{what}: {error}"
            );
        }
    }

    #[test]
    fn keys_new_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        let key = keys_new(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        let error = keys_new(&path).unwrap_err();
        assert!(error.to_string().contains("key.json"), "{error}");
        assert_eq!(read_key_file(&path).unwrap().0, key.0);
        let shown = KeySummary::new(&key, &path).to_string();
        assert!(shown.contains(&hex::encode(key.public())), "{shown}");
        assert!(shown.contains("12D3KooW"), "{shown}");
    }

    #[test]
    fn start_names_the_missing_or_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let args = |overrides: StartArgs| StartArgs {
            home: dir.path().to_owned(),
            ..overrides
        };
        let error = prepare_start(&args(StartArgs::default())).unwrap_err();
        assert!(error.to_string().contains("config.toml"), "{error}");

        init(&init_args(dir.path(), 1)).unwrap();
        let (_, config) = prepare_start(&args(StartArgs {
            rpc_laddr: Some("127.0.0.1:0".into()),
            persistent_peers: Some(vec![String::new()]),
            timeout_commit_ms: Some(50),
            threads: Some(2),
            rpc_unsafe: true,
            ..StartArgs::default()
        }))
        .unwrap();
        assert_eq!(config.rpc.laddr, "127.0.0.1:0");
        assert!(config.rpc.unsafe_routes);
        assert!(config.p2p.persistent_peers.is_empty());
        assert_eq!(config.consensus.timeout_commit_ms, Some(50));
        assert_eq!(config.execution.threads, 2);

        let error = prepare_start(&args(StartArgs {
            rpc_laddr: Some("nowhere".into()),
            ..StartArgs::default()
        }))
        .unwrap_err();
        assert!(error.to_string().contains("rpc.laddr"), "{error}");

        let home = Home::new(dir.path());
        std::fs::set_permissions(home.node_key(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = prepare_start(&args(StartArgs::default())).unwrap_err();
        assert!(error.to_string().contains("node_key.json"), "{error}");

        std::fs::write(home.genesis(), "{}").unwrap();
        let error = prepare_start(&args(StartArgs::default())).unwrap_err();
        assert!(error.to_string().contains("genesis.json"), "{error}");
    }

    fn parse(line: &str) -> Result<Command, clap::Error> {
        Cli::try_parse_from(line.split_whitespace()).map(|cli| cli.command)
    }

    #[test]
    fn every_subcommand_parses() {
        let to = "ab".repeat(32);
        let accepted = [
            "weft init --home h".to_owned(),
            "weft init --home h --chain-id c --moniker m --accounts 0 --balance 7".into(),
            "weft start --home h".into(),
            "weft start --home h --p2p-listen /ip4/127.0.0.1/tcp/1 --rpc-laddr 127.0.0.1:2 \
             --metrics-laddr 127.0.0.1:3 --persistent-peers a,b --gossip plain --log-level debug \
             --timeout-commit-ms 5 --threads 2 --rpc-unsafe"
                .into(),
            "weft keys new --out k.json".into(),
            "weft keys show --key k.json".into(),
            "weft status".into(),
            "weft status --rpc http://127.0.0.1:1 --json".into(),
            format!("weft tx transfer --key k --to {to} --amount 3"),
            format!(
                "weft tx transfer --key k --to {to} --amount 3 --rpc http://x:1 --chain-id c --async"
            ),
            "weft tx register-name --key k --name alice".into(),
            "weft tx pay-name --key k --name alice --amount 9".into(),
            "weft version".into(),
        ];
        for line in &accepted {
            if let Err(e) = parse(line) {
                panic!("{line}: {e}");
            }
        }
        let refused = [
            "weft init".to_owned(),
            "weft start --home h --gossip loud".into(),
            "weft start --home h --threads many".into(),
            "weft start --home h --rpc-unsafe yes".into(),
            "weft keys new".into(),
            "weft tx transfer --key k --to 00 --amount 3".into(),
            "weft tx transfer --key k --to zz --amount 3".into(),
            "weft tx register-name --key k --name Alice".into(),
            "weft tx pay-name --key k --name alice --amount -1".into(),
            format!("weft tx transfer --key k --to {to} --amount 3 --chain-id bad/id"),
            format!("weft tx transfer --key k --to {to}"),
            "weft frobnicate".into(),
        ];
        for line in &refused {
            assert!(parse(line).is_err(), "{line} parsed");
        }

        let Command::Start(start) = parse(&accepted[3]).unwrap() else {
            panic!("not start");
        };
        assert_eq!(
            start.persistent_peers,
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(start.gossip.as_deref(), Some("plain"));
        assert!(start.rpc_unsafe);
        let Command::Start(start) = parse(&accepted[2]).unwrap() else {
            panic!("not start");
        };
        assert!(!start.rpc_unsafe);
        let Command::Tx {
            command:
                TxCommand::Transfer {
                    common,
                    to: address,
                    amount,
                },
        } = parse(&accepted[9]).unwrap()
        else {
            panic!("not transfer");
        };
        assert_eq!((address, amount), (Address([0xab; 32]), 3));
        assert!(common.no_wait);
        assert_eq!(common.chain_id.unwrap().as_str(), "c");
    }

    #[test]
    fn tx_replies_are_read_and_judged() {
        let ok = |code: u64, log: &str| (code, log.to_owned());
        type Case = (Value, bool, Result<TxOutcome, ()>, bool);
        let outcome = |height, check, result: Option<(u64, String)>| TxOutcome {
            hash: "h".into(),
            height,
            check,
            result,
        };
        let cases: Vec<Case> = vec![
            (
                json!({"check_tx": {"code": 0, "log": ""}, "tx_result": {"code": 0, "log": "ok"},
                       "hash": "h", "height": "12"}),
                true,
                Ok(outcome(Some(12), ok(0, ""), Some(ok(0, "ok")))),
                true,
            ),
            (
                json!({"check_tx": {"code": 0}, "tx_result": {"code": 3, "log": "balance"},
                       "hash": "h", "height": 4}),
                true,
                Ok(outcome(Some(4), ok(0, ""), Some(ok(3, "balance")))),
                false,
            ),
            (
                json!({"check_tx": {"code": 2, "log": "nonce"}, "hash": "h", "height": 0}),
                true,
                Ok(outcome(None, ok(2, "nonce"), None)),
                false,
            ),
            (
                json!({"code": 0, "log": "", "hash": "h"}),
                false,
                Ok(outcome(None, ok(0, ""), None)),
                true,
            ),
            (
                json!({"code": 0, "log": ""}),
                false,
                Ok(TxOutcome {
                    hash: "local".into(),
                    ..outcome(None, ok(0, ""), None)
                }),
                true,
            ),
            (
                json!({"check_tx": {"code": 0}, "hash": "h"}),
                true,
                Err(()),
                false,
            ),
            (json!({"hash": "h"}), false, Err(()), false),
        ];
        for (reply, commit, expected, passes) in cases {
            let got = parse_tx_reply(&reply, commit, "local").map_err(|_| ());
            assert_eq!(got, expected, "{reply}");
            if let Ok(outcome) = got {
                assert_eq!(outcome.check().is_ok(), passes, "{reply}");
            }
        }
    }

    #[test]
    fn status_summary_tolerates_missing_fields() {
        let status = json!({
            "node_info": {"network": "weft-local", "moniker": "m", "id": "12D3"},
            "sync_info": {"latest_block_height": "7", "catching_up": false},
        });
        let text = status_summary(&status, Some(3));
        for part in [
            "weft-local",
            "height:      7",
            "catching up: false",
            "peers:       3",
        ] {
            assert!(text.contains(part), "{text}");
        }
        assert!(status_summary(&json!(null), None).contains("height:      ?"));
    }
}
