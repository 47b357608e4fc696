//! Mirroring the LMA's binding cache: a per-domain view fed by `BindingCache.Watch`, resumed
//! after reconnects and LMA restarts, and a coalescer that turns a burst of changes into one
//! reconcile per node per window.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use proto::v1::binding_event::Event;
use proto::v1::{Binding, BindingEvent, RegistrationRejected, WatchBindingsRequest, WatchCursor};
use tokio::sync::mpsc;

/// What the LMA last said about one mobile node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// Its binding cache entry, if any.
    pub binding: Option<Binding>,
    /// Its last rejected registration and the revision it came at, if no accepted one since.
    pub rejection: Option<(u64, RegistrationRejected)>,
    /// The (epoch, revision) of the view when this was read.
    pub cursor: Option<(u64, u64)>,
}

/// One domain's copy of the LMA binding cache.
#[derive(Debug, Default)]
pub struct DomainView {
    cursor: Option<(u64, u64)>,
    bindings: HashMap<String, Binding>,
    rejections: HashMap<String, (u64, RegistrationRejected)>,
    /// During a snapshot: the epoch and what arrived so far.
    snapshot: Option<Snapshot>,
    synced: bool,
}

#[derive(Debug, Default)]
struct Snapshot {
    epoch: u64,
    bindings: HashMap<String, Binding>,
    rejections: HashMap<String, (u64, RegistrationRejected)>,
}

/// The result of applying one event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// MN-IDs whose observation changed.
    pub changed: Vec<String>,
    /// The event was older than the cursor (a duplicate or out of order) and was ignored.
    pub stale: bool,
    /// The stream broke the protocol (another epoch without a reset): reconnect without a
    /// cursor.
    pub resync: bool,
}

impl DomainView {
    /// Where to resume a Watch from: only a cursor from SYNCED or later.
    pub fn resume_from(&self) -> Option<WatchCursor> {
        // The cursor only moves on SYNCED and on live events after it, so a stream that broke
        // in the middle of a snapshot resumes from where the previous one was complete.
        self.cursor
            .map(|(epoch, revision)| WatchCursor { epoch, revision })
    }

    /// True once a snapshot or a replay has been completed on the current stream.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Forget the stream position (a new stream starts unsynced; the data stays until a RESET).
    pub fn stream_restarted(&mut self) {
        self.synced = false;
        self.snapshot = None;
    }

    pub fn observe(&self, mn_id: &str) -> Observation {
        Observation {
            binding: self.bindings.get(mn_id).cloned(),
            rejection: self.rejections.get(mn_id).cloned(),
            cursor: self.cursor,
        }
    }

    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    pub fn apply(&mut self, ev: BindingEvent) -> Applied {
        let mut out = Applied::default();
        let Some(event) = ev.event else {
            return out;
        };
        if let Event::Reset(_) = event {
            self.synced = false;
            self.snapshot = Some(Snapshot {
                epoch: ev.epoch,
                ..Snapshot::default()
            });
            return out;
        }
        if let Some(snap) = &mut self.snapshot {
            if snap.epoch != ev.epoch {
                out.resync = true;
                return out;
            }
            match event {
                Event::Added(b)
                | Event::Updated(proto::v1::BindingUpdated {
                    binding: Some(b), ..
                }) => {
                    snap.rejections.remove(&b.mn_id);
                    snap.bindings.insert(b.mn_id.clone(), b);
                }
                Event::Rejected(r) => {
                    snap.rejections.insert(r.mn_id.clone(), (ev.revision, r));
                }
                Event::Deleted(proto::v1::BindingDeleted {
                    binding: Some(b), ..
                }) => {
                    snap.bindings.remove(&b.mn_id);
                }
                Event::Synced(_) => {
                    let Some(snap) = self.snapshot.take() else {
                        return out;
                    };
                    let mut changed: HashSet<String> = HashSet::new();
                    for k in self.bindings.keys().chain(snap.bindings.keys()) {
                        if self.bindings.get(k) != snap.bindings.get(k) {
                            changed.insert(k.clone());
                        }
                    }
                    for k in self.rejections.keys().chain(snap.rejections.keys()) {
                        if self.rejections.get(k).map(|r| &r.1)
                            != snap.rejections.get(k).map(|r| &r.1)
                        {
                            changed.insert(k.clone());
                        }
                    }
                    self.bindings = snap.bindings;
                    self.rejections = snap.rejections;
                    self.cursor = Some((ev.epoch, ev.revision));
                    self.synced = true;
                    out.changed = sorted(changed);
                }
                _ => {}
            }
            return out;
        }
        // Live events, or the replay after a resume.
        match self.cursor {
            Some((epoch, _)) if epoch != ev.epoch => {
                out.resync = true;
                return out;
            }
            Some((_, rev)) if ev.revision <= rev && !matches!(event, Event::Synced(_)) => {
                out.stale = true;
                return out;
            }
            None => {
                // Live events before any snapshot: the server must start with RESET.
                out.resync = true;
                return out;
            }
            _ => {}
        }
        let mn = match event {
            Event::Synced(_) => {
                self.synced = true;
                None
            }
            Event::Added(b)
            | Event::Updated(proto::v1::BindingUpdated {
                binding: Some(b), ..
            }) => {
                let id = b.mn_id.clone();
                // An accepted registration supersedes a rejection that came before it.
                self.rejections.remove(&id);
                self.bindings.insert(id.clone(), b);
                Some(id)
            }
            Event::Deleted(proto::v1::BindingDeleted {
                binding: Some(b), ..
            }) => {
                self.bindings.remove(&b.mn_id);
                Some(b.mn_id)
            }
            Event::Rejected(r) => {
                let id = r.mn_id.clone();
                self.rejections.insert(id.clone(), (ev.revision, r));
                Some(id)
            }
            _ => None,
        };
        if let Some((_, rev)) = &mut self.cursor {
            *rev = (*rev).max(ev.revision);
        }
        out.changed.extend(mn);
        out
    }
}

fn sorted(s: HashSet<String>) -> Vec<String> {
    let mut v: Vec<String> = s.into_iter().collect();
    v.sort();
    v
}

/// A change notice from a watch task: (namespace, domain, MN-ID).
pub type Changed = (String, String, String);

/// Runs one domain's Watch stream for ever: connects, resumes from the view's cursor, applies
/// events and reports changed nodes; reconnects with backoff when the stream breaks (an LMA
/// restart included: the new epoch makes the server send RESET and a snapshot).
pub async fn watch_domain(
    namespace: String,
    domain: String,
    channel: tonic::transport::Channel,
    view: Arc<Mutex<DomainView>>,
    changed: mpsc::Sender<Changed>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let resume_from = {
            let mut v = view.lock().unwrap_or_else(|e| e.into_inner());
            v.stream_restarted();
            v.resume_from()
        };
        let mut client = proto::v1::binding_cache_client::BindingCacheClient::new(channel.clone());
        let req = WatchBindingsRequest {
            resume_from,
            ..WatchBindingsRequest::default()
        };
        match client.watch(req).await {
            Ok(resp) => {
                let mut stream = resp.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(ev)) => {
                            metrics.watch_event(&ev);
                            let applied = view.lock().unwrap_or_else(|e| e.into_inner()).apply(ev);
                            if applied.resync {
                                tracing::warn!(%namespace, %domain, "watch stream out of step; resyncing");
                                let mut v = view.lock().unwrap_or_else(|e| e.into_inner());
                                *v = DomainView {
                                    bindings: std::mem::take(&mut v.bindings),
                                    rejections: std::mem::take(&mut v.rejections),
                                    ..DomainView::default()
                                };
                                break;
                            }
                            if view.lock().unwrap_or_else(|e| e.into_inner()).synced() {
                                backoff = Duration::from_millis(200);
                            }
                            for mn in applied.changed {
                                if changed
                                    .send((namespace.clone(), domain.clone(), mn))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::info!(%namespace, %domain, error = %e, "watch stream ended");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(%namespace, %domain, error = %e, "LMA watch not reachable"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Coalesces change notices: the first notice of a key opens a window of `window`; every
/// further notice of any key in that window joins it; at its end each key is emitted once.
/// A burst of N handovers of one node in a window becomes one status write, and a node is
/// never delayed by more than one window however long the burst lasts.
pub fn coalesce<K>(mut rx: mpsc::Receiver<K>, window: Duration) -> impl Stream<Item = K> + Send
where
    K: Eq + Hash + Clone + Ord + Send + 'static,
{
    let (tx, out) = mpsc::channel::<K>(1024);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut pending: HashSet<K> = HashSet::from([first]);
            let deadline = tokio::time::Instant::now() + window;
            let mut closed = false;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    k = rx.recv() => match k {
                        Some(k) => { pending.insert(k); }
                        None => { closed = true; break; }
                    },
                }
            }
            let mut keys: Vec<K> = pending.into_iter().collect();
            keys.sort();
            for k in keys {
                if tx.send(k).await.is_err() {
                    return;
                }
            }
            if closed {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(out)
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use proto::v1::{BindingDeleted, BindingUpdated, Reset, Synced};

    use super::*;

    pub(crate) fn binding(mn: &str, coa: &str, handovers: u64, rev: u64) -> Binding {
        Binding {
            mn_id: mn.into(),
            proxy_coa: coa.into(),
            home_network_prefixes: vec!["2001:db8:100:1::/64".into()],
            handover_count: handovers,
            revision: rev,
            state: proto::v1::BindingState::Active as i32,
            ..Binding::default()
        }
    }

    fn ev(epoch: u64, revision: u64, event: Event) -> BindingEvent {
        BindingEvent {
            epoch,
            revision,
            time: None,
            event: Some(event),
        }
    }

    fn snapshot(view: &mut DomainView, epoch: u64, rev: u64, bs: Vec<Binding>) -> Applied {
        view.apply(ev(epoch, rev, Event::Reset(Reset::default())));
        for b in bs {
            view.apply(ev(epoch, rev, Event::Added(b)));
        }
        view.apply(ev(epoch, rev, Event::Synced(Synced::default())))
    }

    #[test]
    fn snapshot_then_live_events_then_out_of_order_ones_are_ignored() {
        let mut v = DomainView::default();
        assert_eq!(v.resume_from(), None);
        let a = snapshot(
            &mut v,
            1,
            10,
            vec![binding("a@x.org", "2001:db8::10", 0, 9)],
        );
        assert_eq!(a.changed, vec!["a@x.org".to_string()]);
        assert_eq!(
            v.resume_from(),
            Some(WatchCursor {
                epoch: 1,
                revision: 10
            })
        );

        let handoff = BindingUpdated {
            binding: Some(binding("a@x.org", "2001:db8::20", 1, 12)),
            reason: proto::v1::UpdateReason::Handoff as i32,
        };
        assert_eq!(
            v.apply(ev(1, 12, Event::Updated(handoff))).changed,
            vec!["a@x.org".to_string()]
        );
        // Revision 11 arrives late: it must not undo the handoff.
        let late = BindingUpdated {
            binding: Some(binding("a@x.org", "2001:db8::10", 0, 11)),
            reason: proto::v1::UpdateReason::Refresh as i32,
        };
        let r = v.apply(ev(1, 11, Event::Updated(late)));
        assert!(r.stale && r.changed.is_empty());
        assert_eq!(
            v.observe("a@x.org").binding.unwrap().proxy_coa,
            "2001:db8::20"
        );
        assert_eq!(
            v.resume_from(),
            Some(WatchCursor {
                epoch: 1,
                revision: 12
            })
        );
    }

    #[test]
    fn lma_restart_replaces_the_view_and_reports_what_vanished() {
        let mut v = DomainView::default();
        snapshot(
            &mut v,
            1,
            5,
            vec![
                binding("a@x.org", "2001:db8::10", 0, 4),
                binding("b@x.org", "2001:db8::10", 0, 5),
            ],
        );
        // A live event from a new epoch without a RESET is a protocol break.
        let r = v.apply(ev(
            2,
            1,
            Event::Added(binding("c@x.org", "2001:db8::10", 0, 1)),
        ));
        assert!(r.resync);
        // The new LMA's stream: RESET, its (smaller) state, SYNCED.
        v.stream_restarted();
        let r = snapshot(&mut v, 2, 3, vec![binding("a@x.org", "2001:db8::10", 0, 2)]);
        assert_eq!(
            r.changed,
            vec!["a@x.org".to_string(), "b@x.org".to_string()]
        );
        assert!(v.observe("b@x.org").binding.is_none());
        assert_eq!(
            v.resume_from(),
            Some(WatchCursor {
                epoch: 2,
                revision: 3
            })
        );
        // A stream that breaks in the middle of a snapshot resumes from the last complete one.
        v.apply(ev(3, 1, Event::Reset(Reset::default())));
        v.apply(ev(
            3,
            1,
            Event::Added(binding("z@x.org", "2001:db8::10", 0, 1)),
        ));
        v.stream_restarted();
        assert_eq!(
            v.resume_from(),
            Some(WatchCursor {
                epoch: 2,
                revision: 3
            })
        );
        assert!(v.observe("z@x.org").binding.is_none());
    }

    #[test]
    fn rejection_until_accepted_and_deletion() {
        let mut v = DomainView::default();
        snapshot(&mut v, 1, 1, vec![]);
        let rej = RegistrationRejected {
            mn_id: "a@x.org".into(),
            proxy_coa: "2001:db8::30".into(),
            status: 154,
            status_name: "MAG_NOT_AUTHORIZED_FOR_PROXY_REG".into(),
            ..Default::default()
        };
        v.apply(ev(1, 2, Event::Rejected(rej)));
        assert_eq!(v.observe("a@x.org").rejection.unwrap().1.status, 154);
        v.apply(ev(
            1,
            3,
            Event::Added(binding("a@x.org", "2001:db8::10", 0, 3)),
        ));
        assert!(v.observe("a@x.org").rejection.is_none());
        let del = BindingDeleted {
            binding: Some(binding("a@x.org", "2001:db8::10", 0, 4)),
            reason: proto::v1::DeleteReason::Expired as i32,
        };
        assert_eq!(
            v.apply(ev(1, 4, Event::Deleted(del))).changed,
            vec!["a@x.org".to_string()]
        );
        assert!(v.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_becomes_one_notice_per_key_per_window() {
        let (tx, rx) = mpsc::channel(1024);
        let mut out = Box::pin(coalesce(rx, Duration::from_millis(500)));
        for _ in 0..100 {
            tx.send("a").await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tx.send("b").await.unwrap();
        // 100 notices over 200 ms: one window.
        assert_eq!(out.next().await, Some("a"));
        assert_eq!(out.next().await, Some("b"));
        // A continuing burst still gets out once per window.
        for _ in 0..300 {
            tx.send("a").await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(tx);
        let rest: Vec<&str> = out.collect().await;
        assert!((2..=4).contains(&rest.len()), "{rest:?}");
        assert!(rest.iter().all(|k| *k == "a"));
    }
}
