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

/// RFC 5847 §5: a heartbeat interval below 30 s is accepted (labs use it) with a warning
/// naming the field; 30 s and more, or 0 (off), without one.
#[test]
fn a_short_heartbeat_interval_is_accepted_with_a_warning() {
    let base = "address: '2001:db8::1'\nprefix_pools: [{prefix: '2001:db8:100::/48'}]\n";
    let (code, out, err) = run(
        &format!("{base}domain: {{heartbeat: {{interval_s: 5}}}}\n"),
        &["--check-config"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.ends_with(": ok\n"), "{out}");
    assert!(
        err.contains("warning: domain.heartbeat.interval_s: 5 s is below 30 s"),
        "{err}"
    );
    for interval in [0, 30, 3600] {
        let (code, _, err) = run(
            &format!("{base}domain: {{heartbeat: {{interval_s: {interval}}}}}\n"),
            &["--check-config"],
        );
        assert_eq!(code, Some(0), "{err}");
        assert!(!err.contains("warning"), "{interval}: {err}");
    }
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

/// `--set-sysctls` sets what the datapath needs in the daemon's network namespace and says
/// what it did; a second run finds them set; `--cleanup` puts back the values found.
#[test]
fn set_sysctls_then_cleanup_restores_them() {
    use datapath::Netlink;
    use datapath::netns::NetNs;
    use datapath::sysctl::Sysctl;
    let ns = NetNs::create(&format!("lmacli-{}", std::process::id())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _in_runtime = rt.enter();
    let nl = Netlink::connect_in(&ns).unwrap();
    rt.block_on(async {
        nl.set_link_up(1, true).await.unwrap();
        nl.add_address(1, "2001:db8::1".parse().unwrap(), 128)
            .await
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let f = dir.path().join("lma.yaml");
    std::fs::write(
        &f,
        format!(
            "address: '2001:db8::1'\nprefix_pools: [{{prefix: '2001:db8:100::/48'}}]\n\
             datapath: {{mode: seg6}}\nstate_dir: '{}'\n",
            state.display()
        ),
    )
    .unwrap();
    let lma = |arg: &str| {
        let out = ns
            .command(env!("CARGO_BIN_EXE_pmip-lma"))
            .unwrap()
            .args(["--config", f.to_str().unwrap(), arg])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{arg}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let fwd = Sysctl::new("net/ipv6/conf/all/forwarding");
    let seg6_lo = Sysctl::new("net/ipv6/conf/lo/seg6_enabled");
    // A new namespace inherits IPv4 settings from the host's (devconf_inherit_init_net).
    let ip_forward = Sysctl::new("net/ipv4/ip_forward");
    let ip_forward_before = nl.read_sysctl(&ip_forward).unwrap();
    assert_eq!(nl.read_sysctl(&fwd).unwrap(), "0");
    let first = lma("--set-sysctls");
    assert!(
        first.contains("net.ipv6.conf.all.forwarding=1 (was 0)")
            && first.contains("net.ipv6.conf.lo.seg6_enabled=1 (was 0)"),
        "{first}"
    );
    assert_eq!(nl.read_sysctl(&fwd).unwrap(), "1");
    assert_eq!(nl.read_sysctl(&seg6_lo).unwrap(), "1");
    assert_eq!(nl.read_sysctl(&ip_forward).unwrap(), "1");
    let second = lma("--set-sysctls");
    assert!(
        second.contains("net.ipv6.conf.all.forwarding=1 (already set)"),
        "{second}"
    );
    lma("--cleanup");
    assert_eq!(nl.read_sysctl(&fwd).unwrap(), "0");
    assert_eq!(nl.read_sysctl(&seg6_lo).unwrap(), "0");
    assert_eq!(nl.read_sysctl(&ip_forward).unwrap(), ip_forward_before);
    drop(nl);
    ns.delete().unwrap();
}
