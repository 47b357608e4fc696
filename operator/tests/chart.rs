//! The Helm chart renders and lints with the real Helm engine and every manifest validates for
//! the Kubernetes versions pmip supports: `charts/pmip/ci/check_chart.py` does the work with the
//! Python tools in `charts/pmip/ci-requirements.txt`. Set `PMIP_PYTHON` to pick the interpreter.
//! The chart's ClusterRole (and Role) must grant exactly the operator's `rbac::RULES`, which
//! this test hands to the script.

use std::path::Path;
use std::process::Command;

#[test]
fn chart_renders_lints_and_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var("PMIP_PYTHON").unwrap_or_else(|_| "python3".into());
    let rules = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        rules.path(),
        serde_json::to_string(&operator::rbac::policy_rules()).unwrap(),
    )
    .unwrap();
    let out = Command::new(&python)
        .arg(root.join("charts/pmip/ci/check_chart.py"))
        .env("PMIP_RBAC_RULES", rules.path())
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {python}: {e}; install Python 3.10+ and then `python3 -m pip install -r charts/pmip/ci-requirements.txt`")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {
            assert!(stdout.contains("all chart checks passed"), "{stdout}");
            assert!(
                stdout.contains("grants exactly operator/src/rbac.rs"),
                "the RBAC was not compared: {stdout}"
            );
        }
        Some(2) => panic!(
            "the chart checks need Python tools that are missing:\n{stderr}\n\
             install them with `python3 -m pip install -r charts/pmip/ci-requirements.txt`"
        ),
        _ => panic!("chart checks failed:\n{stdout}\n{stderr}"),
    }
}
