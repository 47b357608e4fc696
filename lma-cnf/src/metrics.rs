//! Prometheus metrics of the LMA (served on `metrics.listen`, `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use pmip::wire::Status;

use crate::service::{PEER_EVENT_KINDS, Stats};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// The PBA status value.
    pub status: u8,
    /// Its RFC name.
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct MagLabel {
    /// The MAG's address (its proxy-CoA).
    pub mag: String,
    /// Its name in the policy, empty when it has none.
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct PoolLabel {
    pub pool: String,
}

/// Every metric of the LMA daemon.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub pbu_received: Counter,
    pub pba_sent: Family<StatusLabel, Counter>,
    pub bindings: Gauge,
    pub handovers: Counter,
    pub bri_sent: Counter,
    pub revocations: Family<KindLabel, Counter>,
    pub registration_seconds: Histogram,
    pub datapath_changes: Family<KindLabel, Counter>,
    pub datapath_failures: Counter,
    pub datapath_seconds: Histogram,
    /// 1 once the kernel was checked against the binding cache since the start.
    pub datapath_reconciled: Gauge,
    pub store_commits: Counter,
    pub store_failures: Counter,
    pub store_commit_seconds: Histogram,
    pub dropped: Counter,
    pub mags: Gauge,
    pub peer_events: Family<KindLabel, Counter>,
    pub batch_size: Histogram,
    pub mag_bindings: Family<MagLabel, Gauge>,
    pub mag_up: Family<MagLabel, Gauge>,
    pub free_prefixes: Family<PoolLabel, Gauge>,
    /// The labels of the per-MAG and per-pool series last set, to remove the ones gone.
    shown: Arc<Mutex<Shown>>,
}

#[derive(Debug, Default)]
struct Shown {
    bindings: BTreeSet<MagLabel>,
    up: BTreeSet<MagLabel>,
}

/// The statuses the LMA's PBAs carry (RFC 5213 §5.3.1, §5.4, §8.9; RFC 5845 §6.4; RFC 5844
/// §3.2.3): their series exist from the start, at 0.
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

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let latency = || Histogram::new(exponential_buckets(0.000_025, 2.0, 16));
        let m = Metrics {
            pbu_received: Counter::default(),
            pba_sent: Family::default(),
            bindings: Gauge::default(),
            handovers: Counter::default(),
            bri_sent: Counter::default(),
            revocations: Family::default(),
            registration_seconds: latency(),
            datapath_changes: Family::default(),
            datapath_failures: Counter::default(),
            datapath_seconds: latency(),
            datapath_reconciled: Gauge::default(),
            store_commits: Counter::default(),
            store_failures: Counter::default(),
            store_commit_seconds: latency(),
            dropped: Counter::default(),
            mags: Gauge::default(),
            peer_events: Family::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
            mag_bindings: Family::default(),
            mag_up: Family::default(),
            free_prefixes: Family::default(),
            shown: Default::default(),
        };
        // Labelled series start at 0 rather than appear with their first event.
        for status in PBA_STATUSES {
            let _ = m.pba_sent.get_or_create(&status_label(status));
        }
        for kind in ["acknowledged", "timed-out"] {
            let _ = m
                .revocations
                .get_or_create(&KindLabel { kind: kind.into() });
        }
        for kind in PEER_EVENT_KINDS {
            let _ = m
                .peer_events
                .get_or_create(&KindLabel { kind: kind.into() });
        }
        for kind in ["set-downlink", "remove-downlink", "other"] {
            let _ = m
                .datapath_changes
                .get_or_create(&KindLabel { kind: kind.into() });
        }
        cnf::telemetry::register_common(registry, "pmip_lma");
        let r = registry.sub_registry_with_prefix("pmip_lma");
        r.register(
            "pbu_received",
            "Proxy Binding Updates received",
            m.pbu_received.clone(),
        );
        r.register(
            "pba_sent",
            "Proxy Binding Acknowledgements sent, by status",
            m.pba_sent.clone(),
        );
        r.register("bindings", "Binding cache entries", m.bindings.clone());
        r.register(
            "handovers",
            "Bindings moved to another MAG",
            m.handovers.clone(),
        );
        r.register(
            "bri_sent",
            "Binding Revocation Indications sent (with retransmissions)",
            m.bri_sent.clone(),
        );
        r.register(
            "revocations",
            "Revocations, by outcome",
            m.revocations.clone(),
        );
        r.register(
            "registration_seconds",
            "From a PBU's arrival to its PBA leaving, datapath and store included",
            m.registration_seconds.clone(),
        );
        r.register(
            "datapath_changes",
            "Datapath changes applied, by kind",
            m.datapath_changes.clone(),
        );
        r.register(
            "datapath_failures",
            "Datapath batches that failed",
            m.datapath_failures.clone(),
        );
        r.register(
            "datapath_reconciled",
            "1 once the kernel's routes were checked against the binding cache since the start; \
             after a restart the LMA serves at once from its store and the routes the kernel kept, \
             and checks them in the background",
            m.datapath_reconciled.clone(),
        );
        r.register(
            "datapath_seconds",
            "Time to apply one datapath batch",
            m.datapath_seconds.clone(),
        );
        r.register(
            "store_commits",
            "Durable store commits",
            m.store_commits.clone(),
        );
        r.register(
            "store_failures",
            "Durable store commits that failed",
            m.store_failures.clone(),
        );
        r.register(
            "store_commit_seconds",
            "Time of one durable commit",
            m.store_commit_seconds.clone(),
        );
        r.register(
            "dropped",
            "Messages dropped (malformed, not for an LMA)",
            m.dropped.clone(),
        );
        r.register("mags", "MAGs with at least one binding", m.mags.clone());
        r.register(
            "peer_events",
            "Heartbeat events, by kind",
            m.peer_events.clone(),
        );
        r.register(
            "batch_size",
            "Messages handled per loop turn",
            m.batch_size.clone(),
        );
        r.register(
            "mag_bindings",
            "Bindings at each MAG (every authorized MAG, and every MAG with bindings)",
            m.mag_bindings.clone(),
        );
        r.register(
            "mag_up",
            "1 when the MAG answers heartbeats, 0 when it does not (RFC 5847); only for the MAGs \
             the LMA has bindings at, with heartbeats on",
            m.mag_up.clone(),
        );
        r.register(
            "free_prefixes",
            "Home network prefixes each pool can still hand out",
            m.free_prefixes.clone(),
        );
        m
    }
}

/// Raises a counter to `total` (the service counts; the metric follows).
pub(crate) fn sync(c: &Counter, total: u64) {
    let seen = c.get();
    if total > seen {
        c.inc_by(total - seen);
    }
}

impl Metrics {
    /// Brings every metric the service counts up to date.
    pub fn observe(&self, s: &Stats) {
        self.bindings.set(s.bindings as i64);
        self.mags.set(s.mags_with_bindings as i64);
        sync(&self.pbu_received, s.pbu_received);
        sync(&self.bri_sent, s.bri_sent);
        sync(&self.handovers, s.handovers);
        sync(&self.dropped, s.dropped);
        for (status, n) in &s.pba_by_status {
            sync(&self.pba_sent.get_or_create(&status_label(*status)), *n);
        }
        for (kind, n) in [
            ("acknowledged", s.revocations_acknowledged),
            ("timed-out", s.revocations_timed_out),
        ] {
            sync(
                &self
                    .revocations
                    .get_or_create(&KindLabel { kind: kind.into() }),
                n,
            );
        }
        for (kind, n) in PEER_EVENT_KINDS.iter().zip(s.peer_events) {
            sync(
                &self.peer_events.get_or_create(&KindLabel {
                    kind: (*kind).into(),
                }),
                n,
            );
        }
        for (pool, n) in &s.free_prefixes {
            (self.free_prefixes)
                .get_or_create(&PoolLabel {
                    pool: pool.to_string(),
                })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        let (mut bindings, mut up) = (BTreeSet::new(), BTreeSet::new());
        for m in &s.mags {
            let l = MagLabel {
                mag: m.address.to_string(),
                name: m.name.clone(),
            };
            self.mag_bindings
                .get_or_create(&l)
                .set(i64::from(m.bindings));
            if let Some(u) = m.up {
                self.mag_up.get_or_create(&l).set(i64::from(u));
                up.insert(l.clone());
            }
            bindings.insert(l);
        }
        // A MAG removed from the policy, or without bindings any more, loses its series.
        for gone in shown.bindings.difference(&bindings) {
            self.mag_bindings.remove(gone);
        }
        for gone in shown.up.difference(&up) {
            self.mag_up.remove(gone);
        }
        *shown = Shown { bindings, up };
    }

    /// Counts one datapath batch's changes by kind.
    pub fn observe_changes(&self, changes: &[datapath::Change]) {
        use datapath::Change;
        for c in changes {
            let kind = match c {
                Change::SetDownlink { .. } => "set-downlink",
                Change::RemoveDownlink { .. } => "remove-downlink",
                Change::SendEndMarker { .. } => "end-marker",
                _ => "other",
            };
            self.datapath_changes
                .get_or_create(&KindLabel { kind: kind.into() })
                .inc();
        }
    }
}
