//! STYLE 2: the consensus and execution cores stay free of networking and async runtimes. This
//! reads the resolved crate graph from `cargo metadata` and walks each core's normal (not dev,
//! not build) dependencies transitively.
//!
//! `cargo metadata` unifies features across dev and normal dependencies; resolver 3 does not
//! when it builds. So an optional dependency that only dev-dependencies switch on (proptest,
//! through weft-execution's `fuzzing` feature, which the fuzz binaries ask for) is not part of
//! a normal build, and the walk drops it (`dev_only_edge`).
//!
//! Decision (the text wins over STYLE 2): weft-execution owns the sled storage
//! implementation, so sled is allowed for weft-execution only.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// What one workspace crate must not reach, and what it must reach (controls that prove the
/// walk sees the graph). A pattern names a crate and its family: "tokio" also matches
/// "tokio-util", "weft" matches every weft-* crate.
struct Rule {
    krate: &'static str,
    forbidden: &'static [&'static str],
    /// Exceptions to `forbidden`: crates its patterns would match but that are allowed.
    allowed: &'static [&'static str],
    reaches: &'static [&'static str],
    /// Dev-only dependencies: the walk must not count them.
    not_reached: &'static [&'static str],
}

const RULES: &[Rule] = &[
    Rule {
        krate: "weft-consensus",
        forbidden: &["tokio", "libp2p", "sled", "weft"],
        // The canonical codec sits below it (ADR 0017): pure, no IO, no other Weft crate.
        allowed: &["weft-codec"],
        reaches: &["weft-codec"],
        not_reached: &[],
    },
    Rule {
        krate: "weft-codec",
        forbidden: &["tokio", "libp2p", "sled", "rayon", "weft"],
        allowed: &[],
        reaches: &["thiserror"],
        not_reached: &[],
    },
    Rule {
        krate: "weft-execution",
        forbidden: &[
            "tokio",
            "libp2p",
            "weft-consensus",
            "weft-gossip",
            "weft-node",
            "weft-genesis",
            "weft-testnet",
        ],
        allowed: &[],
        reaches: &["sled", "rayon", "ed25519-dalek", "weft-codec"],
        // proptest is also an optional dependency, behind `fuzzing`, which only
        // dev-dependencies turn on: this control proves the walk leaves that out too.
        not_reached: &["proptest", "tempfile"],
    },
];

fn matches(pattern: &str, name: &str) -> bool {
    name == pattern
        || name
            .strip_prefix(pattern)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// The resolved graph: package id → (name, ids of its normal dependencies).
fn graph() -> BTreeMap<String, (String, Vec<String>)> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace");
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(workspace)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let dev_only = dev_only_features(packages);
    let by_id: BTreeMap<&str, &Value> = packages
        .iter()
        .map(|package| (package["id"].as_str().expect("package id"), package))
        .collect();
    let names: BTreeMap<&str, &str> = packages
        .iter()
        .map(|package| {
            let id = package["id"].as_str().expect("package id");
            (id, package["name"].as_str().expect("package name"))
        })
        .collect();
    metadata["resolve"]["nodes"]
        .as_array()
        .expect("a resolved graph")
        .iter()
        .map(|node| {
            let id = node["id"].as_str().expect("node id");
            let deps = node["deps"]
                .as_array()
                .expect("node deps")
                .iter()
                .filter(|dep| {
                    dep["dep_kinds"]
                        .as_array()
                        .expect("dep kinds")
                        .iter()
                        .any(|kind| kind["kind"].is_null())
                })
                .map(|dep| dep["pkg"].as_str().expect("dep pkg"))
                .filter(|dep| !dev_only_edge(by_id[id], names[dep], &dev_only))
                .map(str::to_owned)
                .collect();
            (id.to_owned(), (names[id].to_owned(), deps))
        })
        .collect()
}

/// (package, feature) pairs that some dev-dependency asks for and no normal dependency does,
/// and that are not default features: a normal build never turns them on.
fn dev_only_features(packages: &[Value]) -> BTreeSet<(String, String)> {
    let mut normal = BTreeSet::new();
    let mut dev = BTreeSet::new();
    for dep in packages
        .iter()
        .flat_map(|package| package["dependencies"].as_array().expect("dependencies"))
    {
        let wanted = match dep["kind"].as_str() {
            None => &mut normal,
            Some("dev") => &mut dev,
            Some(_) => continue,
        };
        let name = dep["name"].as_str().expect("dependency name");
        for feature in dep["features"].as_array().expect("dependency features") {
            let feature = feature.as_str().expect("feature name");
            wanted.insert((name.to_owned(), feature.to_owned()));
        }
    }
    let default_features = |name: &str| -> BTreeSet<String> {
        packages
            .iter()
            .filter(|package| package["name"] == name)
            .filter_map(|package| package["features"]["default"].as_array())
            .flatten()
            .filter_map(|feature| feature.as_str().map(str::to_owned))
            .collect()
    };
    dev.difference(&normal)
        .filter(|(name, feature)| !default_features(name).contains(feature))
        .cloned()
        .collect()
}

/// Whether `package`'s edge to `dep` exists only because of dev-only features: `dep` is an
/// optional dependency of `package`, and every feature that names it is dev-only.
fn dev_only_edge(package: &Value, dep: &str, dev_only: &BTreeSet<(String, String)>) -> bool {
    let name = package["name"].as_str().expect("package name");
    let optional = package["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .any(|d| d["name"] == dep && d["kind"].is_null() && d["optional"] == true);
    if !optional {
        return false;
    }
    let names_dep = |entry: &Value| {
        entry.as_str().is_some_and(|entry| {
            entry == dep
                || entry.strip_prefix("dep:") == Some(dep)
                || entry
                    .split_once('/')
                    .is_some_and(|(head, _)| head.trim_end_matches('?') == dep)
        })
    };
    let features = package["features"].as_object().expect("features");
    features
        .iter()
        .filter(|(_, enables)| enables.as_array().is_some_and(|e| e.iter().any(names_dep)))
        .all(|(feature, _)| dev_only.contains(&(name.to_owned(), feature.clone())))
}

/// Every crate `root` reaches through normal dependencies, by name, with the chain that
/// reaches it.
fn reached(
    graph: &BTreeMap<String, (String, Vec<String>)>,
    root: &str,
) -> BTreeMap<String, String> {
    let (root_id, _) = graph
        .iter()
        .find(|(_, (name, _))| name == root)
        .unwrap_or_else(|| panic!("{root} is not in the workspace"));
    let mut chains: BTreeMap<String, String> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::from([root_id.clone()]);
    let mut queue = VecDeque::from([(root_id.clone(), root.to_owned())]);
    while let Some((id, chain)) = queue.pop_front() {
        for dep in &graph[&id].1 {
            if seen.insert(dep.clone()) {
                let name = &graph[dep].0;
                let chain = format!("{chain} -> {name}");
                chains.insert(name.clone(), chain.clone());
                queue.push_back((dep.clone(), chain));
            }
        }
    }
    chains
}

#[test]
fn the_cores_stay_off_the_network_stack() {
    let graph = graph();
    for rule in RULES {
        let reached = reached(&graph, rule.krate);
        let violations: Vec<&String> = reached
            .iter()
            .filter(|(name, _)| rule.forbidden.iter().any(|p| matches(p, name)))
            .filter(|(name, _)| !rule.allowed.contains(&name.as_str()))
            .map(|(_, chain)| chain)
            .collect();
        assert!(
            violations.is_empty(),
            "{} depends on what it must not: {violations:#?}",
            rule.krate
        );
        for name in rule.reaches {
            assert!(
                reached.contains_key(*name),
                "{} should reach {name}: the walk is broken",
                rule.krate
            );
        }
        for name in rule.not_reached {
            assert!(
                !reached.contains_key(*name),
                "{} reaches dev-only {name}: {}",
                rule.krate,
                reached[*name]
            );
        }
    }
}

#[test]
fn patterns_match_crate_families() {
    let cases = [
        ("tokio", "tokio", true),
        ("tokio", "tokio-util", true),
        ("tokio", "tokio_util", false),
        ("tokio", "tokios", false),
        ("libp2p", "libp2p-swarm", true),
        ("weft", "weft-execution", true),
        ("weft", "weftly", false),
        ("sled", "sled", true),
        ("weft-node", "weft-nodes", false),
    ];
    for (pattern, name, expected) in cases {
        assert_eq!(matches(pattern, name), expected, "{pattern} vs {name}");
    }
}
