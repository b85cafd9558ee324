//! The test switches (`WEFT_BYZANTINE`, `WEFT_CRASH_AT`, `WEFT_SIGN_AUDIT`) are out of a plain
//! build: cargo's own feature resolution for `cargo build --release` leaves `test-hooks` off
//! `weft-node` (and so `weft_node::test_hooks::COMPILED_IN` false, under which no switch is
//! read: that rule is the module's unit test), while the tests' builds have it on.

use std::path::Path;
use std::process::Command;

/// The feature lists `cargo tree` resolves for `weft-node` across the workspace.
fn weft_node_features(args: &[&str]) -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let output = Command::new(cargo)
        .current_dir(root)
        .args(["tree", "--offline", "--workspace", "--prefix", "none"])
        .args(["--format", "{p} [{f}]"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<String> = text
        .lines()
        .filter(|line| line.starts_with("weft-node "))
        .map(str::to_owned)
        .collect();
    assert!(
        !lines.is_empty(),
        "cargo tree {args:?} lists no weft-node:\n{text}"
    );
    lines
}

#[test]
fn a_plain_build_leaves_the_test_hooks_out() {
    // What `cargo build --release` (no dev-dependencies) builds.
    for line in weft_node_features(&["--edges", "no-dev"]) {
        assert!(!line.contains("test-hooks"), "a plain build: {line}");
    }
    // The check sees the feature where it is: asked for, and in the tests' builds.
    for line in weft_node_features(&["--edges", "no-dev", "--features", "weft-node/test-hooks"]) {
        assert!(line.contains("test-hooks"), "a chaos build: {line}");
    }
    for line in weft_node_features(&[]) {
        assert!(line.contains("test-hooks"), "a test build: {line}");
    }
}

#[test]
fn the_tests_weft_says_it_has_the_test_hooks() {
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(
        text.lines()
            .any(|line| line == weft_node::test_hooks::VERSION_LINE_WITH_HOOKS),
        "{text}"
    );
}
