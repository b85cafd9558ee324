//! `weft`, the Weft validator node. The commands live in [`weft_node::cli`]; this file only
//! parses the command line, runs it, and turns an error into a message and a non-zero exit.

use std::process::ExitCode;

use clap::Parser;
use weft_node::cli::{Cli, run};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
