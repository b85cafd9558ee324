//! weft-sim's tests: the real node core under simulated time, network and disk.
//!
//! Replay one seed (prints the scenario and the report):
//! WEFT_SIM_SEED=<n> cargo test -p weft-sim --test it replay_one_seed -- --nocapture
//!
//! A long run: WEFT_SIM_SEEDS=100000 cargo test --release -p weft-sim --test it seeds -- --nocapture

#![allow(clippy::unwrap_used)]

mod sim;
