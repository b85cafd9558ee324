//! The crate stays a pure core: no clock, no IO, no threads, no randomness it is not handed.
//! (The dependency-graph half of this check, no tokio, libp2p or sled, lives in
//! execution/tests/it/architecture.rs, which walks `cargo metadata` for both crates.)

use std::path::Path;

/// What the library's sources must not mention. The bench binary (src/bin) may read a clock.
const FORBIDDEN: &[&str] = &[
    "std::time",
    "Instant",
    "SystemTime",
    "std::fs",
    "std::net",
    "std::thread",
    "std::process",
    "tokio",
    "libp2p",
    "sled",
    "rand::",
    "getrandom",
    "thread_rng",
];

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name == "bin") {
                continue;
            }
            sources(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_library_uses_no_clock_io_threads_or_unseeded_randomness() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() >= 6, "found the sources: {files:?}");
    let mut hits = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in FORBIDDEN {
                if code.contains(word) {
                    hits.push(format!("{}:{}: {word}", file.display(), number + 1));
                }
            }
        }
    }
    assert!(hits.is_empty(), "the pure core reaches for: {hits:#?}");
}
