//! `weft start`: load and check the home, set up logging, run the node until a signal.

use super::*;

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
    if !home.genesis().exists() {
        return Err(CliError::NoGenesis {
            file: home.genesis(),
            home: home.root.clone(),
        });
    }
    Genesis::load(&home.genesis())?;
    read_key_file(&home.validator_key())?;
    read_key_file(&home.node_key())?;
    Ok((home, config))
}

pub(super) fn apply_overrides(config: &mut Config, args: &StartArgs) {
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
    if args.state_sync {
        config.statesync.enable = true;
    }
    if let Some(height) = args.trust_height {
        config.statesync.trust_height = height;
    }
    if let Some(hash) = &args.trust_hash {
        config.statesync.trust_hash.clone_from(hash);
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

/// gossipsub warns once per message it cannot queue for a peer, so a peer that went silent
/// (a host cut off) floods the log with thousands of lines a second. Unless `log_level` says
/// otherwise about `libp2p_gossipsub`, only its errors are logged; the node's own logs say
/// which peers it drops, and the metrics count the lost batches.
pub(super) fn with_quiet_gossipsub(level: &str) -> String {
    match level.trim() {
        _ if level.contains("libp2p_gossipsub") => level.to_owned(),
        "" => "libp2p_gossipsub=error".to_owned(),
        level => format!("{level},libp2p_gossipsub=error"),
    }
}

/// Logs go to stderr; `RUST_LOG`, when set, overrides the config's `log_level`.
pub(super) fn init_tracing(home: &Home, config: &Config) -> Result<(), CliError> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(text) => EnvFilter::try_new(&text)
            .map_err(|e| CliError::Logging(format!("RUST_LOG {text:?}: {e}")))?,
        Err(_) => EnvFilter::try_new(with_quiet_gossipsub(&config.log_level)).map_err(|e| {
            ConfigError {
                path: home.config(),
                problem: format!("log_level {:?}: {e}", config.log_level),
            }
        })?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .map_err(|e| CliError::Logging(e.to_string()))
}
