//! `weft`, the Weft validator node.
//!
//! Only `weft version` exists so far. `init`, `start`, `keys`, `status` and `tx` arrive with the
//! node issue; until then the binary offers nothing it cannot do.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "weft", version, about = "The Weft validator node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version.
    Version,
}

fn main() {
    match Cli::parse().command {
        Command::Version => println!("weft {}", env!("CARGO_PKG_VERSION")),
    }
}
