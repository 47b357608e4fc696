//! From the daemons' configuration and the state machines' [`DatapathCommand`]s to the
//! `datapath` crate.

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

use datapath::sysctl::{Ensured, Sysctl};
use datapath::{Change, Datapath, Mode, Netlink, Settings, Termination};
use pmip::config::{DatapathConfig, DatapathMode};
use pmip::output::DatapathCommand;

/// The file in a daemon's state directory where its datapath records the sysctl values it
/// found before it changed them, for `--cleanup` to put back.
pub fn sysctl_ledger(state_dir: &Path) -> PathBuf {
    state_dir.join("sysctls-found")
}

/// Opens the datapath the configuration asks for, on the transport link of `local`; the
/// sysctl values it changes are recorded in `state_dir`.
pub async fn open(
    cfg: &DatapathConfig,
    local: Ipv6Addr,
    state_dir: &Path,
) -> datapath::Result<Datapath> {
    open_reading(cfg, local, state_dir, true).await
}

/// [`open`] without reading back the kernel's routes (see [`Datapath::open_without_routes`]):
/// for a daemon that restores them from its store.
pub async fn open_without_routes(
    cfg: &DatapathConfig,
    local: Ipv6Addr,
    state_dir: &Path,
) -> datapath::Result<Datapath> {
    open_reading(cfg, local, state_dir, false).await
}

async fn open_reading(
    cfg: &DatapathConfig,
    local: Ipv6Addr,
    state_dir: &Path,
    routes: bool,
) -> datapath::Result<Datapath> {
    let mode = match cfg.mode {
        DatapathMode::Auto => Mode::Auto,
        DatapathMode::Seg6 => Mode::Seg6,
        DatapathMode::Ip6tnl => Mode::Ip6tnl,
        DatapathMode::Tun => Mode::Tun,
        DatapathMode::None => Mode::None,
    };
    let nl = Netlink::connect()?;
    let mut s = if mode == Mode::None {
        Settings::new(0, cfg.link_mtu.unwrap_or(1500))
    } else {
        Settings::resolve(&nl, cfg.transport_interface.as_deref(), local, cfg.link_mtu).await?
    };
    s.route_protocol = cfg.route_protocol;
    s.table_base = cfg.table_base;
    s.tun_linger = std::time::Duration::from_secs(cfg.tun_linger_s.into());
    s.sysctl_ledger = Some(sysctl_ledger(state_dir));
    if routes {
        Datapath::open(mode, nl, s).await
    } else {
        Datapath::open_without_routes(mode, nl, s).await
    }
}

/// `--set-sysctls`: sets the sysctls the datapath needs (each only when it differs, the value
/// found recorded in `state_dir`) and prints one line per sysctl. What a privileged init
/// container runs for a daemon that sees `/proc/sys` read-only.
pub async fn set_sysctls(
    cfg: &DatapathConfig,
    local: Ipv6Addr,
    state_dir: &Path,
) -> datapath::Result<Vec<(Sysctl, String, Ensured)>> {
    std::fs::create_dir_all(state_dir).map_err(|source| datapath::Error::SysctlLedger {
        path: state_dir.to_owned(),
        source,
    })?;
    let done = open(cfg, local, state_dir).await?.ensure_sysctls().await?;
    for (key, value, what) in &done {
        match what {
            Ensured::AlreadySet => println!("{key}={value} (already set)"),
            Ensured::Changed { previous } => println!("{key}={value} (was {previous})"),
        }
    }
    Ok(done)
}

/// The second half of `--cleanup`: puts back the sysctl values the datapath recorded in
/// `state_dir` before it changed them.
pub fn restore_sysctls(state_dir: &Path) -> datapath::Result<Vec<(Sysctl, String)>> {
    let nl = Netlink::connect()?;
    datapath::sysctl::restore(&nl, &sysctl_ledger(state_dir))
}

/// The change a command stands for; `None` for the buffer commands of fast handovers, which
/// the MAG daemon's buffer carries out. An IPv4 home address (RFC 5844) becomes the `*4`
/// change of the same kind.
pub fn change(c: &DatapathCommand) -> Option<Change> {
    use ipnet::IpNet::{V4, V6};
    Some(match *c {
        DatapathCommand::SetDownlink { prefix, peer } => match prefix {
            V6(prefix) => Change::SetDownlink { prefix, peer },
            V4(prefix) => Change::SetDownlink4 { prefix, peer },
        },
        // De-registered sessions lose their route: traffic to them is not delivered.
        DatapathCommand::DropDownlink { prefix } | DatapathCommand::RemoveDownlink { prefix } => {
            match prefix {
                V6(prefix) => Change::RemoveDownlink { prefix },
                V4(prefix) => Change::RemoveDownlink4 { prefix },
            }
        }
        DatapathCommand::SetUplink { prefix, peer } => match prefix {
            V6(prefix) => Change::SetUplink { prefix, peer },
            V4(prefix) => Change::SetUplink4 { prefix, peer },
        },
        DatapathCommand::RemoveUplink { prefix } => match prefix {
            V6(prefix) => Change::RemoveUplink { prefix },
            V4(prefix) => Change::RemoveUplink4 { prefix },
        },
        DatapathCommand::SetLinkRoute {
            prefix,
            link,
            local_routing,
        } => match prefix {
            V6(prefix) => Change::SetLinkRoute {
                prefix,
                ifindex: link.0,
                local_routing,
            },
            V4(prefix) => Change::SetLinkRoute4 {
                prefix,
                ifindex: link.0,
                local_routing,
            },
        },
        DatapathCommand::RemoveLinkRoute { prefix, link } => match prefix {
            V6(prefix) => Change::RemoveLinkRoute {
                prefix,
                ifindex: link.0,
            },
            V4(prefix) => Change::RemoveLinkRoute4 {
                prefix,
                ifindex: link.0,
            },
        },
        DatapathCommand::EndMarker { prefix, peer } => Change::SendEndMarker { prefix, peer },
        DatapathCommand::HoldForEndMarker {
            prefix,
            marker,
            lma,
            wait_ms,
        } => Change::HoldForEndMarker {
            prefix,
            marker,
            from: lma,
            wait: std::time::Duration::from_millis(wait_ms.into()),
        },
        DatapathCommand::Buffer { .. }
        | DatapathCommand::FlushBuffer { .. }
        | DatapathCommand::ForwardBuffer { .. }
        | DatapathCommand::DiscardBuffer { .. } => return None,
    })
}

/// Where tunnels to `local` (the LMA address or the proxy-CoA) end: on the transport link.
pub fn termination(dp: &Datapath, local: Ipv6Addr) -> Termination {
    Termination {
        local,
        ifindex: dp.settings().transport_ifindex,
    }
}

/// The userspace tunnel's packet counters ([`datapath::tun::TunCounters`]), read when the
/// metrics are scraped.
#[derive(Debug)]
struct TunCollector(std::sync::Arc<datapath::tun::TunCounters>);

impl prometheus_client::collector::Collector for TunCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let [encapsulated, decapsulated, refused, errors] = self.0.snapshot();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let kept_off = load(&self.0.kept_off);
        for (name, help, value) in [
            (
                "pmip_tun_end_markers_sent",
                "End markers sent to a previous MAG after a handover moved a prefix from it",
                load(&self.0.end_markers_sent),
            ),
            (
                "pmip_tun_end_markers_received",
                "End markers that ended a new MAG's hold of the LMA's packets",
                load(&self.0.end_markers_received),
            ),
            (
                "pmip_tun_held_for_end_marker_packets",
                "Packets from the LMA a new MAG held until the previous MAG's forwarded ones ended",
                load(&self.0.held_for_end_marker),
            ),
            (
                "pmip_tun_holds_without_end_marker",
                "Holds for an end marker that ended without it (expired or full)",
                load(&self.0.holds_without_marker),
            ),
            (
                "pmip_tun_encapsulated_packets",
                "Packets the userspace tunnel read from a peer's veth pair and sent to the peer",
                encapsulated,
            ),
            (
                "pmip_tun_decapsulated_packets",
                "Tunnelled packets the userspace tunnel received and handed to the kernel",
                decapsulated,
            ),
            (
                "pmip_tun_refused_packets",
                "Packets the userspace tunnel dropped: neither IPv6 in protocol 41 nor IPv4 in 4",
                refused,
            ),
            (
                "pmip_tun_kept_off_packets",
                "Packets a peer's pair sent on its own link (MLD, link-local, multicast), kept off \
                 the tunnel",
                kept_off,
            ),
            (
                "pmip_tun_failed_packets",
                "Packets the userspace tunnel dropped because the kernel refused a send or write",
                errors,
            ),
        ] {
            let c = prometheus_client::metrics::counter::ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

/// Registers the datapath's own metrics: the userspace tunnel's packet counters when it is
/// the backend (nothing otherwise).
pub fn register_metrics(registry: &mut prometheus_client::registry::Registry, dp: &Datapath) {
    if let Some(c) = dp.tun_counters_shared() {
        registry.register_collector(Box::new(TunCollector(c)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn the_configured_tun_linger_defaults_to_the_datapaths() {
        let cfg = DatapathConfig::default();
        assert_eq!(
            std::time::Duration::from_secs(cfg.tun_linger_s.into()),
            datapath::DEFAULT_TUN_LINGER
        );
    }

    #[test]
    fn the_userspace_tunnels_counters_are_read_when_scraped() {
        let counters = std::sync::Arc::new(datapath::tun::TunCounters::default());
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(TunCollector(counters.clone())));
        counters.encapsulated.fetch_add(3, Ordering::Relaxed);
        counters.decapsulated.fetch_add(5, Ordering::Relaxed);
        counters.errors.fetch_add(1, Ordering::Relaxed);
        counters.end_markers_sent.fetch_add(2, Ordering::Relaxed);
        counters.held_for_end_marker.fetch_add(7, Ordering::Relaxed);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "pmip_tun_encapsulated_packets_total 3",
            "pmip_tun_decapsulated_packets_total 5",
            "pmip_tun_refused_packets_total 0",
            "pmip_tun_failed_packets_total 1",
            "pmip_tun_end_markers_sent_total 2",
            "pmip_tun_end_markers_received_total 0",
            "pmip_tun_held_for_end_marker_packets_total 7",
            "pmip_tun_holds_without_end_marker_total 0",
            "# TYPE pmip_tun_encapsulated_packets counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
        // Read again at the next scrape, not copied at registration.
        counters.encapsulated.fetch_add(1, Ordering::Relaxed);
        text.clear();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("pmip_tun_encapsulated_packets_total 4\n"),
            "{text}"
        );
    }
}
