//! A stock DHCPv4 client in a node's namespace (RFC 5844 §3.4): Debian's busybox `udhcpc`
//! with its default script, which configures the lease on the node's `eth0`, and a reading of
//! the IPv4 addresses the node has.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};

use anyhow::Context;
use datapath::netns::NetNs;

/// `ip netns exec` gives a namespace's processes `/etc/netns/NAME/resolv.conf` in place of
/// the host's: the stock udhcpc script rewrites resolv.conf, and must not touch the host's.
struct EtcNetns(PathBuf);

impl EtcNetns {
    fn new(ns: &NetNs) -> anyhow::Result<EtcNetns> {
        let d = PathBuf::from("/etc/netns").join(ns.name());
        std::fs::create_dir_all(&d).with_context(|| d.display().to_string())?;
        std::fs::write(d.join("resolv.conf"), "")?;
        Ok(EtcNetns(d))
    }
}

impl Drop for EtcNetns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // /etc/netns itself too when this made it (a directory still in use is not empty and
        // stays).
        let _ = std::fs::remove_dir("/etc/netns");
    }
}

/// Runs udhcpc on the node's eth0 until it has a lease (or gives up after 10 DISCOVERs 1 s
/// apart), with `extra` arguments; its output.
pub fn udhcpc(ns: &NetNs, extra: &[&str]) -> anyhow::Result<Output> {
    let _etc = EtcNetns::new(ns)?;
    Command::new("ip")
        .args(["netns", "exec", ns.name(), "udhcpc"])
        // Foreground, quit once bound; no hostname.
        .args(["-i", "eth0", "-f", "-q", "-n", "-t", "10", "-T", "1"])
        .args(extra)
        .output()
        .context("running udhcpc (Debian package udhcpc or busybox)")
}

/// Leases an IPv4 address with udhcpc and releases it with a DHCPRELEASE (RFC 2131 §4.4.6;
/// udhcpc's SIGUSR2: busybox sends no release when it quits with `-q`); udhcpc's output.
pub fn lease_and_release(ns: &NetNs) -> anyhow::Result<Output> {
    let _etc = EtcNetns::new(ns)?;
    // A new lease: the address shows up when udhcpc is bound.
    Command::new("ip")
        .args(["-n", ns.name(), "-4", "addr", "flush", "dev", "eth0"])
        .status()?;
    let child = Command::new("ip")
        .args(["netns", "exec", ns.name(), "udhcpc"])
        .args(["-i", "eth0", "-f", "-n", "-t", "10", "-T", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running udhcpc (Debian package udhcpc or busybox)")?;
    // `ip netns exec` execs udhcpc: the child is udhcpc.
    let pid = child.id().to_string();
    let signal = |sig: &str| {
        Command::new("kill")
            .args([sig, &pid])
            .status()
            .context("kill")
    };
    let t = std::time::Instant::now();
    while addresses4(ns).is_empty() {
        if t.elapsed() > std::time::Duration::from_secs(15) {
            signal("-TERM")?;
            let out = child.wait_with_output()?;
            anyhow::bail!(
                "udhcpc got no lease: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    signal("-USR2")?;
    let t = std::time::Instant::now();
    while !addresses4(ns).is_empty() && t.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    signal("-TERM")?;
    Ok(child.wait_with_output()?)
}

/// Leases an IPv4 address with udhcpc; the address the node then has on eth0.
pub fn lease(ns: &NetNs) -> anyhow::Result<(Ipv4Addr, u8)> {
    let out = udhcpc(ns, &[])?;
    if !out.status.success() {
        anyhow::bail!(
            "udhcpc got no lease: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    match addresses4(ns)[..] {
        [one] => Ok(one),
        ref other => anyhow::bail!("after the lease eth0 has {other:?}"),
    }
}

/// The IPv4 addresses on the node's eth0, with their prefix lengths.
pub fn addresses4(ns: &NetNs) -> Vec<(Ipv4Addr, u8)> {
    let Ok(out) = Command::new("ip")
        .args(["-n", ns.name(), "-4", "-o", "addr", "show", "dev", "eth0"])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().skip_while(|w| *w != "inet");
            let (a, len) = w.nth(1)?.split_once('/')?;
            Some((a.parse().ok()?, len.parse().ok()?))
        })
        .collect()
}
