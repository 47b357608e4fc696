//! The server side of the resumable Watch streams (`BindingCache.Watch`,
//! `Policy.WatchMobileNodes`): one task per stream turns what the core's hub gives
//! ([`WatchStart`]) into RESET / snapshot / SYNCED / live events, and starts over from a fresh
//! snapshot with reason SLOW_CONSUMER when the client read too slowly to keep up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::core::{CoreGone, GONE};
use crate::hub::{ResetReason, Stamped, WatchStart};

/// Events queued per stream between its task and the connection.
const QUEUE: usize = 256;

/// What one kind of Watch stream sends.
pub trait Feed: Send + Sync + 'static {
    /// A change of the hub.
    type Change: Clone + Send + Sync + 'static;
    /// A snapshot item.
    type Item: Send + 'static;
    /// The stream's message.
    type Event: Send + 'static;

    /// A fresh start from the core (`None`: from a snapshot).
    fn start(
        &self,
        cursor: Option<(u64, u64)>,
    ) -> impl Future<Output = Result<WatchStart<Self::Change, Self::Item>, CoreGone>> + Send;
    fn reset(&self, epoch: u64, revision: u64, reason: ResetReason) -> Self::Event;
    fn synced(&self, epoch: u64, revision: u64, objects: u64) -> Self::Event;
    /// A snapshot item's event and whether it counts as an object; `None` when filtered out.
    fn item(&self, epoch: u64, revision: u64, item: &Self::Item) -> Option<(Self::Event, bool)>;
    /// A change's event; `None` when filtered out.
    fn change(&self, c: &Stamped<Self::Change>) -> Option<Self::Event>;
    /// Objects in the state after a resume (`objects` counts them unfiltered).
    fn resumed_objects(&self, objects: u64) -> impl Future<Output = u64> + Send {
        async move { objects }
    }
}

/// The message of a stream the core ended.
pub fn core_gone() -> Status {
    Status::unavailable(GONE.to_string())
}

/// Starts the task of one stream from its first [`WatchStart`]; the stream ends with
/// UNAVAILABLE when `stop` turns true or the core stops.
pub fn spawn<F: Feed>(
    feed: F,
    first: WatchStart<F::Change, F::Item>,
    cursor: Option<(u64, u64)>,
    stop: watch::Receiver<bool>,
    watchers: Arc<AtomicU64>,
) -> ReceiverStream<Result<F::Event, Status>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    watchers.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let mut pump = Pump {
            feed,
            tx,
            stop,
            _count: Watcher(watchers),
        };
        let end = pump.run(first, cursor).await;
        if let Err(status) = end {
            // Best effort: a client that stopped reading does not get it.
            let _ = pump.tx.try_send(Err(status));
        }
    });
    ReceiverStream::new(rx)
}

/// Resolves when the server is told to stop; never when nobody can tell it any more.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Counts a live stream for the Stats RPC.
struct Watcher(Arc<AtomicU64>);

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Pump<F: Feed> {
    feed: F,
    tx: mpsc::Sender<Result<F::Event, Status>>,
    stop: watch::Receiver<bool>,
    _count: Watcher,
}

/// Why sending stopped: the client went away (nothing more to do), or an error to send.
enum Stop {
    ClientGone,
    Status(Status),
}

impl From<Status> for Stop {
    fn from(s: Status) -> Self {
        Stop::Status(s)
    }
}

impl<F: Feed> Pump<F> {
    async fn run(
        &mut self,
        first: WatchStart<F::Change, F::Item>,
        cursor: Option<(u64, u64)>,
    ) -> Result<(), Status> {
        match self.stream(first, cursor).await {
            Ok(()) | Err(Stop::ClientGone) => Ok(()),
            Err(Stop::Status(s)) => Err(s),
        }
    }

    async fn send(&mut self, ev: F::Event) -> Result<(), Stop> {
        tokio::select! {
            r = self.tx.send(Ok(ev)) => r.map_err(|_| Stop::ClientGone),
            _ = stopped(&mut self.stop) => Err(core_gone().into()),
        }
    }

    async fn stream(
        &mut self,
        mut start: WatchStart<F::Change, F::Item>,
        cursor: Option<(u64, u64)>,
    ) -> Result<(), Stop> {
        let mut reason_override = None;
        loop {
            let (mut rx, mut last) = match start {
                WatchStart::Resume {
                    epoch,
                    objects,
                    events,
                    rx,
                } => {
                    let mut last = cursor.map_or(0, |c| c.1);
                    for e in events {
                        last = e.revision;
                        if let Some(ev) = self.feed.change(&e) {
                            self.send(ev).await?;
                        }
                    }
                    let objects = self.feed.resumed_objects(objects).await;
                    self.send(self.feed.synced(epoch, last, objects)).await?;
                    (rx, last)
                }
                WatchStart::Reset {
                    reason,
                    epoch,
                    revision,
                    snapshot,
                    rx,
                } => {
                    let reason = reason_override.take().unwrap_or(reason);
                    self.send(self.feed.reset(epoch, revision, reason)).await?;
                    let mut objects = 0;
                    for item in snapshot {
                        if let Some((ev, object)) = self.feed.item(epoch, revision, &item) {
                            objects += u64::from(object);
                            self.send(ev).await?;
                        }
                    }
                    self.send(self.feed.synced(epoch, revision, objects))
                        .await?;
                    (rx, revision)
                }
            };
            // Live.
            loop {
                let r = tokio::select! {
                    r = rx.recv() => r,
                    _ = stopped(&mut self.stop) => return Err(core_gone().into()),
                    _ = self.tx.closed() => return Err(Stop::ClientGone),
                };
                match r {
                    Ok(s) => {
                        if s.revision <= last {
                            continue;
                        }
                        last = s.revision;
                        if let Some(ev) = self.feed.change(&s) {
                            self.send(ev).await?;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::info!(missed, "watch client too slow; starting it over");
                        reason_override = Some(ResetReason::SlowConsumer);
                        start = self.feed.start(None).await.map_err(|_| core_gone())?;
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(core_gone().into()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use pmip::wire::WallClock;
    use tokio_stream::StreamExt;

    use super::*;
    use crate::hub::Hub;

    /// A stream of numbers from a hub of its own, as the core would serve it.
    struct Numbers(Arc<Mutex<Hub<u32>>>);

    #[derive(Debug, PartialEq, Eq)]
    enum Ev {
        Reset(ResetReason, u64),
        Item(u32),
        Synced(u64, u64),
        Change(u64, u32),
    }

    impl Feed for Numbers {
        type Change = u32;
        type Item = u32;
        type Event = Ev;

        async fn start(
            &self,
            cursor: Option<(u64, u64)>,
        ) -> Result<WatchStart<u32, u32>, CoreGone> {
            let h = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let rx = h.subscribe();
            Ok(match h.since(cursor) {
                Ok(events) => WatchStart::Resume {
                    epoch: h.epoch(),
                    objects: h.revision(),
                    events,
                    rx,
                },
                Err(reason) => WatchStart::Reset {
                    reason,
                    epoch: h.epoch(),
                    revision: h.revision(),
                    // The state: one item per change so far.
                    snapshot: (1..=h.revision() as u32).collect(),
                    rx,
                },
            })
        }
        fn reset(&self, _: u64, revision: u64, reason: ResetReason) -> Ev {
            Ev::Reset(reason, revision)
        }
        fn synced(&self, _: u64, revision: u64, objects: u64) -> Ev {
            Ev::Synced(revision, objects)
        }
        fn item(&self, _: u64, _: u64, item: &u32) -> Option<(Ev, bool)> {
            // Odd items are filtered out.
            item.is_multiple_of(2).then_some((Ev::Item(*item), true))
        }
        fn change(&self, c: &Stamped<u32>) -> Option<Ev> {
            Some(Ev::Change(c.revision, c.item))
        }
    }

    async fn open(
        hub: &Arc<Mutex<Hub<u32>>>,
        cursor: Option<(u64, u64)>,
    ) -> (
        ReceiverStream<Result<Ev, Status>>,
        watch::Sender<bool>,
        Arc<AtomicU64>,
    ) {
        let feed = Numbers(hub.clone());
        let first = feed.start(cursor).await.unwrap();
        let (stop, rx) = watch::channel(false);
        let watchers = Arc::new(AtomicU64::new(0));
        (
            spawn(feed, first, cursor, rx, watchers.clone()),
            stop,
            watchers,
        )
    }

    async fn next(s: &mut ReceiverStream<Result<Ev, Status>>) -> Ev {
        tokio::time::timeout(std::time::Duration::from_secs(5), s.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    }

    fn publish(hub: &Arc<Mutex<Hub<u32>>>, n: u32) {
        let mut h = hub.lock().unwrap();
        for _ in 0..n {
            let item = h.revision() as u32 + 1;
            h.publish(WallClock::default(), item);
        }
    }

    #[tokio::test]
    async fn snapshot_then_live_then_resume_from_the_cursor() {
        let hub = Arc::new(Mutex::new(Hub::new(3, 100)));
        publish(&hub, 4);
        let (mut s, _stop, watchers) = open(&hub, None).await;
        assert_eq!(next(&mut s).await, Ev::Reset(ResetReason::NoCursor, 4));
        assert_eq!(next(&mut s).await, Ev::Item(2));
        assert_eq!(next(&mut s).await, Ev::Item(4));
        // Filtered items are not objects.
        assert_eq!(next(&mut s).await, Ev::Synced(4, 2));
        publish(&hub, 1);
        assert_eq!(next(&mut s).await, Ev::Change(5, 5));
        assert_eq!(watchers.load(Ordering::Relaxed), 1);
        drop(s);
        publish(&hub, 2);
        let (mut s, _stop, _) = open(&hub, Some((3, 5))).await;
        assert_eq!(next(&mut s).await, Ev::Change(6, 6));
        assert_eq!(next(&mut s).await, Ev::Change(7, 7));
        assert_eq!(next(&mut s).await, Ev::Synced(7, 7));
        // The first stream's task noticed its client left.
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while watchers.load(Ordering::Relaxed) != 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_starts_over_from_a_snapshot() {
        // The broadcast channel keeps 16 changes; the stream queues QUEUE more.
        let hub = Arc::new(Mutex::new(Hub::new(1, 16)));
        let (mut s, _stop, _) = open(&hub, None).await;
        assert_eq!(next(&mut s).await, Ev::Reset(ResetReason::NoCursor, 0));
        assert_eq!(next(&mut s).await, Ev::Synced(0, 0));
        let total = (QUEUE + 200) as u32;
        publish(&hub, total);
        let mut seen = Vec::new();
        loop {
            match next(&mut s).await {
                Ev::Change(rev, _) => seen.push(rev),
                Ev::Reset(reason, rev) => {
                    assert_eq!(reason, ResetReason::SlowConsumer);
                    assert_eq!(rev, u64::from(total));
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // What came before the reset was in order and incomplete.
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        assert!(seen.len() < total as usize);
        // Then the whole state as it is now, and live changes after it.
        let mut items = 0;
        let synced = loop {
            match next(&mut s).await {
                Ev::Item(_) => items += 1,
                e @ Ev::Synced(..) => break e,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(items, total / 2);
        assert_eq!(synced, Ev::Synced(u64::from(total), u64::from(total / 2)));
        publish(&hub, 1);
        assert_eq!(
            next(&mut s).await,
            Ev::Change(u64::from(total) + 1, total + 1)
        );
    }

    #[tokio::test]
    async fn stopping_the_server_ends_the_stream_with_unavailable() {
        let hub = Arc::new(Mutex::new(Hub::new(1, 16)));
        let (mut s, stop, _) = open(&hub, None).await;
        next(&mut s).await;
        next(&mut s).await;
        stop.send(true).unwrap();
        let e = s.next().await.unwrap().unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable);
        assert!(s.next().await.is_none());
    }
}
