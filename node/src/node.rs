//! Starting and stopping a node: opens the home, builds every part, runs until shutdown.

use std::future::Future;

use thiserror::Error;

use crate::config::{Config, Home};

#[derive(Debug, Error)]
pub enum NodeError {
    #[error("{0}")]
    Setup(String),
}

/// Runs the node in `home` with `config` until `shutdown` completes, then stops cleanly:
/// flushes the WAL and the database and closes the listeners.
pub async fn run(home: &Home, config: Config, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    let _ = (home, config);
    shutdown.await;
    Err(NodeError::Setup("the node is being assembled".into()))
}
