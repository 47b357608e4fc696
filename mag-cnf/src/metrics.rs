//! Prometheus metrics of the MAG (served on `metrics.listen`, `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use pmip::wire::Status;

use crate::service::{EVENT_KINDS, HANDOVER_MODES, HANDOVER_OUTCOMES, IPV4_REPLY_KINDS, Stats};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: u8,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandoverLabel {
    /// `predictive` or `reactive` (RFC 5949 §5.1, §5.2).
    pub mode: String,
    /// `completed` or `failed`.
    pub outcome: String,
}

/// The statuses a MAG's PBAs carry from an LMA of this project (RFC 5213 §8.9, RFC 5845,
/// RFC 5844): their series exist from the start, at 0; any other status gets its series when
/// it first arrives.
const PBA_STATUSES: [Status; 19] = [
    Status::Accepted,
    Status::GreKeyOptionNotRequired,
    Status::ReasonUnspecified,
    Status::InsufficientResources,
    Status::SequenceNumberOutOfWindow,
    Status::ProxyRegNotEnabled,
    Status::NotLmaForThisMobileNode,
    Status::MagNotAuthorizedForProxyReg,
    Status::NotAuthorizedForHomeNetworkPrefix,
    Status::TimestampMismatch,
    Status::TimestampLowerThanPrevAccepted,
    Status::MissingHomeNetworkPrefixOption,
    Status::BcePbuPrefixSetDoNotMatch,
    Status::MissingMnIdentifierOption,
    Status::MissingHandoffIndicatorOption,
    Status::MissingAccessTechTypeOption,
    Status::GreKeyOptionRequired,
    Status::NotAuthorizedForIpv4MobilityService,
    Status::MultipleIpv4HomeAddressAssignmentNotSupported,
];

fn status_label(status: Status) -> StatusLabel {
    StatusLabel {
        status: status.value(),
        name: status.rfc_name().unwrap_or("unknown").to_owned(),
    }
}

/// The fast-handover buffer's counters, in [`Metrics::observe`]'s order.
const BUFFER_KINDS: [&str; 4] = ["buffered", "flushed", "dropped", "discarded"];

/// Every metric of the MAG daemon.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub pbu_sent: Counter,
    pub pbu_retransmitted: Counter,
    pub pba_received: Counter,
    pub pba_received_by_status: Family<StatusLabel, Counter>,
    pub registration_seconds: Histogram,
    pub events: Family<KindLabel, Counter>,
    pub ra_sent: Counter,
    pub ra_failures: Counter,
    pub bul_entries: Gauge,
    pub registered: Gauge,
    pub datapath_changes: Counter,
    pub datapath_failures: Counter,
    pub datapath_seconds: Histogram,
    pub handovers: Family<HandoverLabel, Counter>,
    pub attach_to_ra_seconds: Histogram,
    pub attach_to_first_delivery_seconds: Histogram,
    pub buffer_packets: Family<KindLabel, Counter>,
    pub buffer_held: Gauge,
    pub lma_up: Gauge,
    pub ipv4_replies: Family<KindLabel, Counter>,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let latency = || Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        let m = Metrics {
            pbu_sent: Counter::default(),
            pbu_retransmitted: Counter::default(),
            pba_received: Counter::default(),
            pba_received_by_status: Family::default(),
            registration_seconds: latency(),
            events: Family::default(),
            ra_sent: Counter::default(),
            ra_failures: Counter::default(),
            bul_entries: Gauge::default(),
            registered: Gauge::default(),
            datapath_changes: Counter::default(),
            datapath_failures: Counter::default(),
            datapath_seconds: latency(),
            handovers: Family::default(),
            attach_to_ra_seconds: latency(),
            attach_to_first_delivery_seconds: latency(),
            buffer_packets: Family::default(),
            buffer_held: Gauge::default(),
            lma_up: Gauge::default(),
            ipv4_replies: Family::default(),
        };
        // Labelled series start at 0 rather than appear with their first event.
        for status in PBA_STATUSES {
            let _ = m
                .pba_received_by_status
                .get_or_create(&status_label(status));
        }
        for kind in EVENT_KINDS {
            let _ = m.events.get_or_create(&KindLabel { kind: kind.into() });
        }
        for mode in HANDOVER_MODES {
            for outcome in HANDOVER_OUTCOMES {
                let _ = m.handovers.get_or_create(&HandoverLabel {
                    mode: mode.into(),
                    outcome: outcome.into(),
                });
            }
        }
        for kind in IPV4_REPLY_KINDS {
            let _ = m
                .ipv4_replies
                .get_or_create(&KindLabel { kind: kind.into() });
        }
        for kind in BUFFER_KINDS {
            let _ = m
                .buffer_packets
                .get_or_create(&KindLabel { kind: kind.into() });
        }
        cnf::telemetry::register_common(registry, "pmip_mag");
        let r = registry.sub_registry_with_prefix("pmip_mag");
        r.register(
            "pbu_sent",
            "Proxy Binding Updates sent, retransmissions included",
            m.pbu_sent.clone(),
        );
        r.register(
            "pbu_retransmitted",
            "PBU retransmissions",
            m.pbu_retransmitted.clone(),
        );
        r.register(
            "pba_received",
            "Proxy Binding Acknowledgements received",
            m.pba_received.clone(),
        );
        r.register(
            "pba_received_by_status",
            "PBAs received, by status",
            m.pba_received_by_status.clone(),
        );
        r.register(
            "registration_seconds",
            "From a node's attachment to the accepting PBA",
            m.registration_seconds.clone(),
        );
        r.register("events", "State machine events, by kind", m.events.clone());
        r.register("ra_sent", "Router Advertisements sent", m.ra_sent.clone());
        r.register(
            "ra_failures",
            "Router Advertisements that could not be sent",
            m.ra_failures.clone(),
        );
        r.register(
            "bul_entries",
            "Binding update list entries",
            m.bul_entries.clone(),
        );
        r.register("registered", "Registered nodes", m.registered.clone());
        r.register(
            "datapath_changes",
            "Datapath changes applied",
            m.datapath_changes.clone(),
        );
        r.register(
            "datapath_failures",
            "Datapath batches that failed",
            m.datapath_failures.clone(),
        );
        r.register(
            "datapath_seconds",
            "Time to apply one datapath batch",
            m.datapath_seconds.clone(),
        );
        r.register(
            "handovers",
            "Handovers, by mode and outcome",
            m.handovers.clone(),
        );
        r.register(
            "attach_to_ra_seconds",
            "The L3 handover time: from a node seen on an access link to the Router Advertisement \
             with its prefix",
            m.attach_to_ra_seconds.clone(),
        );
        r.register(
            "attach_to_first_delivery_seconds",
            "Fast handover: from a node seen on an access link to the first buffered packet \
             delivered to it",
            m.attach_to_first_delivery_seconds.clone(),
        );
        r.register(
            "buffer_packets",
            "Fast-handover buffer: packets buffered, flushed, dropped (over the limits) and \
             discarded (failed handover)",
            m.buffer_packets.clone(),
        );
        r.register(
            "buffer_held",
            "Packets held in the fast-handover buffer now",
            m.buffer_held.clone(),
        );
        r.register(
            "lma_up",
            "1 while the LMA answers heartbeats, 0 when it does not (RFC 5847)",
            m.lma_up.clone(),
        );
        r.register(
            "ipv4_replies",
            "DHCP and ARP answers sent to nodes on access links, by kind (RFC 5844 §3.4)",
            m.ipv4_replies.clone(),
        );
        m
    }
}

/// Raises a counter to `total` (the service counts; the metric follows).
fn sync(c: &Counter, total: u64) {
    let seen = c.get();
    if total > seen {
        c.inc_by(total - seen);
    }
}

impl Metrics {
    /// Brings every metric the service counts up to date.
    pub fn observe(&self, s: &Stats) {
        sync(&self.pbu_sent, s.pbu_sent);
        sync(&self.pbu_retransmitted, s.pbu_retransmitted);
        sync(&self.pba_received, s.pba_received);
        self.bul_entries.set(s.bul_entries as i64);
        self.registered.set(s.registered as i64);
        self.lma_up.set(i64::from(s.lma_reachable));
        for (status, n) in &s.pba_by_status {
            sync(
                &self
                    .pba_received_by_status
                    .get_or_create(&status_label(*status)),
                *n,
            );
        }
        for (kind, n) in EVENT_KINDS.iter().zip(s.events) {
            sync(
                &self.events.get_or_create(&KindLabel {
                    kind: (*kind).into(),
                }),
                n,
            );
        }
        for (kind, n) in IPV4_REPLY_KINDS.iter().zip(s.ipv4_replies) {
            sync(
                &self.ipv4_replies.get_or_create(&KindLabel {
                    kind: (*kind).into(),
                }),
                n,
            );
        }
        for ((mode, outcome), n) in &s.handovers {
            sync(
                &self.handovers.get_or_create(&HandoverLabel {
                    mode: (*mode).into(),
                    outcome: (*outcome).into(),
                }),
                *n,
            );
        }
        if let Some(b) = &s.buffer {
            self.buffer_held.set(b.held as i64);
            for (kind, v) in BUFFER_KINDS.into_iter().zip([
                b.buffered,
                b.flushed,
                b.dropped_overflow,
                b.discarded,
            ]) {
                sync(
                    &self
                        .buffer_packets
                        .get_or_create(&KindLabel { kind: kind.into() }),
                    v,
                );
            }
        }
    }
}
