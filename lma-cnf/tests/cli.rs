//! The command line of `pmip-lma`: a bad configuration names the field and exits with code 2
//! before anything starts; `--check-config` accepts a good one.

use std::process::Command;

fn run(yaml: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("lma.yaml");
    std::fs::write(&f, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pmip-lma"))
        .arg("--config")
        .arg(&f)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_good_file_passes_the_check() {
    let (code, out, err) = run(
        "address: '2001:db8::1'\nprefix_pools: [{prefix: '2001:db8:100::/48'}]\n",
        &["--check-config"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.ends_with(": ok\n"), "{out}");
}

#[test]
fn a_bad_field_is_named_and_exits_2() {
    let (code, _, err) = run(
        "address: '2001:db8::1'\nprefix_pools: [{prefix: '2001:db8:100::/48', prefix_length: 200}]\n",
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("prefix_length"), "{err}");
}

#[test]
fn an_unknown_field_is_named_and_exits_2() {
    let (code, _, err) = run(
        "address: '2001:db8::1'\nprefix_pools: [{prefix: '2001:db8:100::/48'}]\nno_such_field: 1\n",
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no_such_field"), "{err}");
}

#[test]
fn a_missing_file_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_pmip-lma"))
        .args(["--config", "/nonexistent/lma.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lma.yaml"));
}

#[test]
fn what_only_shows_when_used_is_checked_before_the_start() {
    let base = "address: '2001:db8::1'\nprefix_pools: [{prefix: '2001:db8:100::/48'}]\n";
    let (code, _, err) = run(
        &format!("{base}tracing: {{level: 'info,[[['}}\n"),
        &["--check-config"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("tracing.level"), "{err}");
    let (code, _, err) = run(
        &format!(
            "{base}api: {{tls: {{cert: /nonexistent/cert.pem, key: /nonexistent/key.pem}}}}\n"
        ),
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cert.pem"), "{err}");
}
