//! The image holds the daemons, the operator and pmipctl, and nothing else, however it is
//! built: the Dockerfile (from source) and `e2e/containers/build-image.sh` (offline, from the
//! workspace's binaries) name the same programs, each a bin target of the workspace (per
//! `cargo metadata`), and end with the same metadata (labels, user, entrypoint).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const SHIPPED: [&str; 4] = ["pmip-lma", "pmip-mag", "pmip-operator", "pmipctl"];

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn workspace_bins() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

fn words(s: &str) -> BTreeSet<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// The `ENV PMIP_BINARIES="..."` list.
fn declared(file: &str) -> BTreeSet<String> {
    words(
        file.lines()
            .find_map(|l| l.trim().strip_prefix("ENV PMIP_BINARIES="))
            .expect("ENV PMIP_BINARIES=\"...\"")
            .trim_matches('"'),
    )
}

/// From the last `FROM` on: what the image is, whatever its base.
fn final_stage(file: &str) -> Vec<String> {
    let lines: Vec<&str> = file.lines().collect();
    let from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    lines[from + 1..]
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("COPY "))
        .map(str::to_string)
        .collect()
}

#[test]
fn dockerfile_and_offline_build_ship_the_same_programs() {
    let shipped: BTreeSet<String> = SHIPPED.iter().map(|s| s.to_string()).collect();
    let bins = workspace_bins();
    assert!(
        shipped.is_subset(&bins),
        "not bin targets of the workspace: {:?}",
        shipped.difference(&bins).collect::<Vec<_>>()
    );

    let dockerfile = read("Dockerfile");
    assert_eq!(declared(&dockerfile), shipped, "Dockerfile PMIP_BINARIES");
    let build_line: Vec<&str> = dockerfile
        .lines()
        .find_map(|l| l.trim().strip_prefix("cargo build --release --locked "))
        .expect("the cargo build line")
        .split_whitespace()
        .collect();
    let built: BTreeSet<String> = build_line
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1].to_string())
        .collect();
    assert_eq!(built, shipped, "the Dockerfile's cargo build --bin list");
    // MobilityDomain spec.mags.lab runs the MAG's emulated mobile nodes.
    assert!(
        build_line
            .windows(2)
            .any(|w| w == ["--features", "mag-cnf/lab"]),
        "the Dockerfile builds the MAG with its lab feature: {build_line:?}"
    );
    let copied = words(
        dockerfile
            .lines()
            .find_map(|l| l.split_once("for b in ").map(|(_, r)| r))
            .and_then(|r| r.split_once("; do"))
            .map(|(list, _)| list)
            .expect("the `for b in ...; do strip` loop"),
    );
    assert_eq!(copied, shipped, "the Dockerfile's copy loop");
    for arg in ["ARG RUST_IMAGE=", "ARG RUNTIME_IMAGE="] {
        assert!(
            dockerfile.contains(arg),
            "base images are build arguments: {arg}"
        );
    }

    let script = read("e2e/containers/build-image.sh");
    let listed = words(
        script
            .lines()
            .find_map(|l| l.strip_prefix("binaries=("))
            .and_then(|r| r.strip_suffix(')'))
            .expect("binaries=(...) in build-image.sh"),
    );
    assert_eq!(listed, shipped, "build-image.sh binaries");
    assert!(
        script.contains("--features mag-cnf/lab"),
        "build-image.sh builds the MAG with its lab feature"
    );
    let containerfile = read("e2e/containers/Containerfile");
    assert_eq!(
        declared(&containerfile),
        shipped,
        "Containerfile PMIP_BINARIES"
    );
    assert_eq!(
        final_stage(&containerfile),
        final_stage(&dockerfile),
        "the offline image and the Dockerfile's end differently"
    );
}
