//! The test switches, compiled in only with the `test-hooks` cargo feature.
//!
//! `WEFT_BYZANTINE` (a lying proposer, an equivocator), `WEFT_CRASH_AT` (exit at a durable
//! write) and `WEFT_SIGN_AUDIT` (log every signature released) make a validator misbehave on
//! purpose, for tests and `weft-testnet chaos`. A plain `cargo build --release` leaves them
//! out: that `weft` never reads them, and says so at start when one is set, so a stray
//! variable can never make a production validator equivocate. The tests get them through the
//! crates' own dev-dependencies; a chaos build asks for them by name
//! (`--features weft-node/test-hooks`), and `weft version` says which kind of build it is.

/// Whether this build has the test switches (`--features weft-node/test-hooks`).
pub const COMPILED_IN: bool = cfg!(feature = "test-hooks");

/// Every test switch, by its environment variable.
pub const SWITCHES: [&str; 3] = ["WEFT_BYZANTINE", "WEFT_CRASH_AT", "WEFT_SIGN_AUDIT"];

/// What `weft version` prints on the line after the version: tools that need the switches
/// (`weft-testnet chaos`) look for [`VERSION_LINE_WITH_HOOKS`].
pub fn version_line() -> &'static str {
    if COMPILED_IN {
        VERSION_LINE_WITH_HOOKS
    } else {
        "test hooks: none"
    }
}

/// The line of `weft version` in a build with the test switches.
pub const VERSION_LINE_WITH_HOOKS: &str = "test hooks: compiled in (WEFT_BYZANTINE, WEFT_CRASH_AT, \
     WEFT_SIGN_AUDIT); never run this build as a production validator";

/// The value of test switch `name`: the environment's in a build with the switches, none in
/// any other.
pub fn var(name: &str) -> Option<std::ffi::OsString> {
    var_in(COMPILED_IN, name, |name| std::env::var_os(name))
}

/// [`var`] for a build that has the switches or not, over any environment.
pub fn var_in(
    compiled_in: bool,
    name: &str,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<std::ffi::OsString> {
    debug_assert!(SWITCHES.contains(&name), "{name} is not a test switch");
    if compiled_in { env(name) } else { None }
}

/// The switches set in the environment that this build ignores (all of them without the
/// feature, none with it).
pub fn ignored_in(
    compiled_in: bool,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Vec<&'static str> {
    if compiled_in {
        return Vec::new();
    }
    SWITCHES
        .into_iter()
        .filter(|name| env(name).is_some())
        .collect()
}

/// Logs, as a node starts, that this build has the switches, or which set ones it ignores.
pub fn warn_at_start() {
    if COMPILED_IN {
        tracing::warn!("{}", VERSION_LINE_WITH_HOOKS);
    }
    for name in ignored_in(COMPILED_IN, |name| std::env::var_os(name)) {
        tracing::warn!(
            "{name} is set and ignored: this build has no test hooks (a test build needs \
             --features weft-node/test-hooks)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn every_switch_set(name: &str) -> Option<OsString> {
        let value = match name {
            "WEFT_BYZANTINE" => "equivocate",
            "WEFT_CRASH_AT" => "wal-append:1",
            _ => "/tmp/audit",
        };
        Some(value.into())
    }

    #[test]
    fn a_build_without_the_hooks_reads_no_switch_and_names_the_ignored_ones() {
        for name in SWITCHES {
            assert_eq!(var_in(false, name, every_switch_set), None, "{name}");
            assert!(var_in(true, name, every_switch_set).is_some(), "{name}");
            assert_eq!(var_in(true, name, |_| None), None, "{name}");
        }
        assert_eq!(ignored_in(false, every_switch_set), SWITCHES.to_vec());
        assert!(ignored_in(false, |_| None).is_empty());
        assert!(ignored_in(true, every_switch_set).is_empty());
    }

    #[test]
    fn the_tests_run_with_the_hooks() {
        // The crate's dev-dependency on itself turns the feature on for every test build.
        const { assert!(COMPILED_IN) };
        assert_eq!(version_line(), VERSION_LINE_WITH_HOOKS);
    }
}
