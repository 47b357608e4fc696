//! The daemon's address on a secondary network (a Multus attachment) when its pod is not on
//! the host network: from the `k8s.v1.cni.cncf.io/network-status` annotation, which the
//! operator mounts through the downward API, or from the interface the attachment is given.
//!
//! Multus writes the annotation while the pod's sandbox is made; the kubelet refreshes a
//! downward API file on its next sync, so at the daemon's start the file may not list the
//! attachment yet. The interface itself has its address as soon as the CNI plugin ran, so
//! either source is enough, and the daemon waits a little for one of them.

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pmip::config::{AttachmentStatus, attachment_address, is_global_unicast};

/// How long a daemon waits for its transport attachment's address.
pub const ATTACHMENT_WAIT: Duration = Duration::from_secs(60);

/// Where the daemon's transport attachment is described (all from the command line or the
/// environment the operator renders).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TransportAttachment {
    /// The pod's `k8s.v1.cni.cncf.io/network-status` annotation as a file (a downward API
    /// volume); also `PMIP_NETWORK_STATUS`.
    #[arg(long, env = "PMIP_NETWORK_STATUS")]
    pub network_status: Option<PathBuf>,
    /// The transport attachment's network, `namespace/name` as the annotation names it;
    /// also `PMIP_TRANSPORT_NETWORK`.
    #[arg(long, env = "PMIP_TRANSPORT_NETWORK")]
    pub transport_network: Option<String>,
    /// The transport attachment's interface in the pod; its first global IPv6 address is the
    /// daemon's address when the annotation does not give one; also `PMIP_TRANSPORT_INTERFACE`.
    #[arg(long, env = "PMIP_TRANSPORT_INTERFACE")]
    pub transport_interface: Option<String>,
}

impl TransportAttachment {
    /// Whether an attachment is named at all.
    pub fn is_given(&self) -> bool {
        self.transport_network
            .as_deref()
            .is_some_and(|n| !n.is_empty())
            || self
                .transport_interface
                .as_deref()
                .is_some_and(|n| !n.is_empty())
    }

    /// The address, once: from the annotation file, else from the interface.
    pub fn address_now(&self) -> Option<Ipv6Addr> {
        let interface = self
            .transport_interface
            .as_deref()
            .filter(|i| !i.is_empty());
        if let (Some(file), Some(network)) = (&self.network_status, &self.transport_network)
            && let Ok(text) = std::fs::read_to_string(file)
            && let Some(a) = address_in_status(&text, network, interface)
        {
            return Some(a);
        }
        let interface = interface?;
        let if_inet6 = std::fs::read_to_string("/proc/net/if_inet6").ok()?;
        global_ipv6_on(&if_inet6, interface)
    }

    /// Waits up to `bound` for the address; the error says what was looked at.
    pub fn wait_for_address(&self, bound: Duration) -> anyhow::Result<Ipv6Addr> {
        let start = Instant::now();
        loop {
            if let Some(a) = self.address_now() {
                return Ok(a);
            }
            if start.elapsed() >= bound {
                anyhow::bail!(
                    "no global IPv6 address on the transport attachment after {}s: network {} \
                     in {}, interface {}. Give the NetworkAttachmentDefinition IPv6 IPAM (or \
                     static `ips`), and check the pod's k8s.v1.cni.cncf.io/network-status \
                     annotation",
                    bound.as_secs(),
                    self.transport_network.as_deref().unwrap_or("(none)"),
                    self.network_status
                        .as_deref()
                        .map_or("(no file)".into(), |p| p.display().to_string()),
                    self.transport_interface.as_deref().unwrap_or("(none)"),
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The address of `network` (on `interface`, if named) in the annotation's text; `None` when
/// the text is not the annotation's JSON or does not list it yet.
pub fn address_in_status(text: &str, network: &str, interface: Option<&str>) -> Option<Ipv6Addr> {
    let statuses: Vec<AttachmentStatus> = serde_json::from_str(text).ok()?;
    attachment_address(&statuses, network, interface)
}

/// The first global IPv6 address on `interface` that is not tentative, in the text of
/// `/proc/net/if_inet6` (see [`crate::address::state_in`]).
pub fn global_ipv6_on(if_inet6: &str, interface: &str) -> Option<Ipv6Addr> {
    if_inet6.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [hex, _, _, _, flags, name] = f[..] else {
            return None;
        };
        let flags = u32::from_str_radix(flags, 16).unwrap_or(0);
        // IFA_F_TENTATIVE, IFA_F_DADFAILED (linux/if_addr.h)
        if name != interface || flags & (0x40 | 0x08) != 0 {
            return None;
        }
        let a = Ipv6Addr::from(u128::from_str_radix(hex, 16).ok()?);
        is_global_unicast(&a).then_some(a)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const IF_INET6: &str = "\
00000000000000000000000000000001 01 80 10 80       lo
fe800000000000000000000000000001 03 40 20 80 transport
20010db800ff00000000000000000011 03 40 00 40 transport
20010db800ff00000000000000000010 03 40 00 80 transport
20010db800aa00000000000000000001 04 40 00 80   access0
";

    #[test]
    fn reads_the_interfaces_usable_global_address() {
        // The tentative ::11 is skipped, the link-local too.
        assert_eq!(
            global_ipv6_on(IF_INET6, "transport"),
            Some("2001:db8:ff::10".parse().unwrap())
        );
        assert_eq!(global_ipv6_on(IF_INET6, "eth0"), None);
    }

    #[test]
    fn reads_the_annotation_file_then_the_interface() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("network-status");
        let att = TransportAttachment {
            network_status: Some(file.clone()),
            transport_network: Some("pmip/transport".into()),
            transport_interface: None,
        };
        assert!(att.is_given());
        // No file yet: nothing (and no interface to fall back to).
        assert_eq!(att.address_now(), None);
        std::fs::write(&file, "not json").unwrap();
        assert_eq!(att.address_now(), None);
        std::fs::write(
            &file,
            r#"[{"name":"k8s-pod-network","interface":"eth0","ips":["10.1.0.4"],"default":true},
                {"name":"pmip/transport","interface":"transport","ips":["2001:db8:ff::20"]}]"#,
        )
        .unwrap();
        assert_eq!(att.address_now(), Some("2001:db8:ff::20".parse().unwrap()));
        let e = TransportAttachment {
            network_status: Some(dir.path().join("missing")),
            transport_network: Some("pmip/transport".into()),
            transport_interface: Some("no-such-if".into()),
        }
        .wait_for_address(Duration::ZERO)
        .unwrap_err();
        assert!(e.to_string().contains("no-such-if"), "{e}");
        assert!(!TransportAttachment::default().is_given());
    }
}
