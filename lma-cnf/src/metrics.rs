//! Prometheus metrics of the LMA (served on `metrics.listen`, `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
    pub dataplane_changes: Family<KindLabel, Counter>,
    pub dataplane_failures: Counter,
    pub dataplane_seconds: Histogram,
    pub store_commits: Counter,
    pub store_failures: Counter,
    pub store_commit_seconds: Histogram,
    pub dropped: Counter,
    pub mags: Gauge,
    pub peer_events: Family<KindLabel, Counter>,
    pub batch_size: Histogram,
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
            dataplane_changes: Family::default(),
            dataplane_failures: Counter::default(),
            dataplane_seconds: latency(),
            store_commits: Counter::default(),
            store_failures: Counter::default(),
            store_commit_seconds: latency(),
            dropped: Counter::default(),
            mags: Gauge::default(),
            peer_events: Family::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
        };
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
            "dataplane_changes",
            "Datapath changes applied, by kind",
            m.dataplane_changes.clone(),
        );
        r.register(
            "dataplane_failures",
            "Datapath batches that failed",
            m.dataplane_failures.clone(),
        );
        r.register(
            "dataplane_seconds",
            "Time to apply one datapath batch",
            m.dataplane_seconds.clone(),
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
            let c = self.pba_sent.get_or_create(&StatusLabel {
                status: status.value(),
                name: status.rfc_name().unwrap_or("unknown").to_owned(),
            });
            sync(&c, *n);
        }
        for (kind, n) in [
            ("acknowledged", s.revocations_acknowledged),
            ("timed-out", s.revocations_timed_out),
        ] {
            if n > 0 {
                sync(
                    &self
                        .revocations
                        .get_or_create(&KindLabel { kind: kind.into() }),
                    n,
                );
            }
        }
        for (kind, n) in PEER_EVENT_KINDS.iter().zip(s.peer_events) {
            if n > 0 {
                sync(
                    &self.peer_events.get_or_create(&KindLabel {
                        kind: (*kind).into(),
                    }),
                    n,
                );
            }
        }
    }

    /// Counts one datapath batch's changes by kind.
    pub fn observe_changes(&self, changes: &[dataplane::Change]) {
        use dataplane::Change;
        for c in changes {
            let kind = match c {
                Change::AddDownlink { .. } => "add-downlink",
                Change::RemoveDownlink { .. } => "remove-downlink",
                _ => "other",
            };
            self.dataplane_changes
                .get_or_create(&KindLabel { kind: kind.into() })
                .inc();
        }
    }
}
