//! `weft-testnet`: local testnets, load, chaos and benchmarks.
//!
//! Only `weft-testnet version` exists so far. `up`, `down`, `status`, `load`, `bench` and
//! `chaos` arrive with the testnet issue; until then the binary offers nothing it cannot do.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "weft-testnet", version, about = "Local Weft testnets")]
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
        Command::Version => println!("weft-testnet {}", env!("CARGO_PKG_VERSION")),
    }
}
