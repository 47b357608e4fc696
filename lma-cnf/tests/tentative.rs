//! `pmip-lma` started on an address that is still tentative (duplicate address detection has
//! not finished) says so, names the interface and what to do, and exits with code 1, instead
//! of a bare "Cannot assign requested address". Needs root (the CI runs the tests as root).

use std::process::Command;
use std::time::{Duration, Instant};

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("ip(8)");
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The namespace, removed when the test ends.
struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .output();
    }
}

#[test]
fn a_tentative_address_is_named_with_what_to_do() {
    let ns = Ns(format!("tent{}", std::process::id() % 100_000));
    let n = ns.0.as_str();
    ip(&["netns", "add", n]);
    ip(&[
        "-n", n, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
    ]);
    // Duplicate address detection of a minute: the address stays tentative all the test.
    let sysctl = |k: &str, v: &str| {
        ip(&["netns", "exec", n, "sysctl", "-qw", &format!("{k}={v}")]);
    };
    sysctl("net.ipv6.conf.v0.dad_transmits", "60");
    sysctl("net.ipv6.neigh.v0.retrans_time_ms", "1000");
    ip(&["-n", n, "link", "set", "v1", "up"]);
    ip(&["-n", n, "link", "set", "v0", "up"]);
    ip(&["-n", n, "addr", "add", "2001:db8:77::1/64", "dev", "v0"]);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lma.yaml");
    std::fs::write(
        &config,
        format!(
            "address: 2001:db8:77::1\nprefix_pools: [{{prefix: 2001:db8:100::/48}}]\n\
             datapath: {{mode: none}}\nmetrics: {{listen: null}}\nstate_dir: {}\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let t = Instant::now();
    let o = Command::new("ip")
        .args(["netns", "exec", n])
        .arg(env!("CARGO_BIN_EXE_pmip-lma"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("2001:db8:77::1 on v0 is still tentative after 5s"),
        "{err}"
    );
    assert!(err.contains("nodad"), "{err}");
    // It waited for the detection, but not for ever.
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(30),
        "{took:?}"
    );
}
