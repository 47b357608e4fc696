//! The Dockerfile copies exactly the binaries the release build produces: its `PMIP_BINARIES`
//! list and its copy loop must name every `bin` target of the workspace (per `cargo metadata`)
//! and nothing else.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn workspace_bins(root: &Path) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
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

#[test]
fn dockerfile_ships_exactly_the_workspace_binaries() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let declared: BTreeSet<String> = dockerfile
        .lines()
        .find_map(|l| l.trim().strip_prefix("ENV PMIP_BINARIES="))
        .expect("ENV PMIP_BINARIES=\"...\" in the Dockerfile")
        .trim_matches('"')
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let copied: BTreeSet<String> = dockerfile
        .lines()
        .find_map(|l| l.split_once("for b in ").map(|(_, r)| r))
        .and_then(|r| r.split_once("; do"))
        .map(|(list, _)| list.split_whitespace().map(str::to_string).collect())
        .expect("the `for b in ...; do cp` loop in the build stage");
    let bins = workspace_bins(&root);
    assert_eq!(copied, declared, "the copy loop and PMIP_BINARIES disagree");
    assert_eq!(
        declared, bins,
        "the Dockerfile's binaries differ from the workspace's bin targets (cargo metadata)"
    );
    assert!(dockerfile.contains("cargo build --release --locked --workspace --bins"));
}
