//! Change streams for the Watch RPCs: every change gets the LMA's epoch (its run number, counting
//! every start) and a revision; a bounded history lets a client that reconnects resume where it
//! left off, and a client that cannot resume starts again from a snapshot.

use std::collections::VecDeque;
use std::net::Ipv6Addr;
use std::sync::Arc;

use pmip::config::MobileNodeProfile;
use pmip::lma::BindingRecord;
use pmip::wire::{Status, WallClock};
use tokio::sync::broadcast;

/// A change with its position in the stream.
#[derive(Debug, Clone)]
pub struct Stamped<T> {
    pub epoch: u64,
    pub revision: u64,
    pub time: WallClock,
    pub item: T,
}

/// Why a Watch starts from a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    NoCursor,
    NewEpoch,
    HistoryTooOld,
    CursorInFuture,
    SlowConsumer,
}

/// A stream of changes with history.
#[derive(Debug)]
pub struct Hub<T> {
    epoch: u64,
    revision: u64,
    history: VecDeque<Arc<Stamped<T>>>,
    capacity: usize,
    tx: broadcast::Sender<Arc<Stamped<T>>>,
}

impl<T: Clone + Send + Sync + 'static> Hub<T> {
    pub fn new(epoch: u64, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Hub {
            epoch,
            revision: 0,
            history: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            tx,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Publishes a change and returns its revision.
    pub fn publish(&mut self, time: WallClock, item: T) -> u64 {
        self.revision += 1;
        let s = Arc::new(Stamped {
            epoch: self.epoch,
            revision: self.revision,
            time,
            item,
        });
        if self.history.len() == self.capacity {
            self.history.pop_front();
        }
        self.history.push_back(s.clone());
        // No receiver is fine.
        let _ = self.tx.send(s);
        self.revision
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Stamped<T>>> {
        self.tx.subscribe()
    }

    /// The changes after `cursor`, or why the client must start from a snapshot.
    pub fn since(&self, cursor: Option<(u64, u64)>) -> Result<Vec<Arc<Stamped<T>>>, ResetReason> {
        let Some((epoch, rev)) = cursor else {
            return Err(ResetReason::NoCursor);
        };
        if epoch != self.epoch {
            return Err(ResetReason::NewEpoch);
        }
        if rev > self.revision {
            return Err(ResetReason::CursorInFuture);
        }
        if rev == self.revision {
            return Ok(Vec::new());
        }
        match self.history.front() {
            Some(first) if first.revision <= rev + 1 => Ok(self
                .history
                .iter()
                .filter(|s| s.revision > rev)
                .cloned()
                .collect()),
            _ => Err(ResetReason::HistoryTooOld),
        }
    }
}

/// How a binding looks to the API: the durable record plus what only the daemon knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingView {
    pub record: BindingRecord,
    pub state: ViewState,
    /// Revision of the entry's last change.
    pub revision: u64,
    pub previous_proxy_coa: Option<Ipv6Addr>,
    pub mag_name: Option<String>,
    /// Seconds left, when the view was made.
    pub remaining_s: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewState {
    Active,
    Deregistering,
    Revoking,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateReason {
    Refresh,
    Handoff,
    Deregistered,
    State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    Deregistered,
    Expired,
    Revoked,
}

/// A refused registration, kept so that a snapshot can show why a node is not attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub mn_id: String,
    pub mag: Ipv6Addr,
    pub mag_name: Option<String>,
    pub status: Status,
    /// Refusals of this node so far.
    pub count: u32,
}

/// One change of the binding cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingChange {
    Added(BindingView),
    Updated(BindingView, UpdateReason),
    Deleted(BindingView, DeleteReason),
    Rejected(Rejection),
}

/// One change of the policy store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileChange {
    Upserted(MobileNodeProfile),
    Deleted(String),
}

/// What a Watch starts with.
#[derive(Debug)]
pub enum WatchStart<T, S> {
    /// Resumed: the missed changes, then live ones.
    Resume {
        epoch: u64,
        /// Objects in the state now (for SYNCED).
        objects: u64,
        events: Vec<Arc<Stamped<T>>>,
        rx: broadcast::Receiver<Arc<Stamped<T>>>,
    },
    /// Start over: everything as it is at `revision`, then live changes after it.
    Reset {
        reason: ResetReason,
        epoch: u64,
        revision: u64,
        snapshot: Vec<S>,
        rx: broadcast::Receiver<Arc<Stamped<T>>>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_within_history_and_reset_outside_it() {
        let mut h: Hub<u32> = Hub::new(3, 4);
        let w = WallClock::default();
        for i in 0..6 {
            h.publish(w, i);
        }
        assert_eq!(h.revision(), 6);
        let got: Vec<u64> = h
            .since(Some((3, 3)))
            .unwrap()
            .iter()
            .map(|s| s.revision)
            .collect();
        assert_eq!(got, vec![4, 5, 6]);
        assert!(h.since(Some((3, 6))).unwrap().is_empty());
        assert_eq!(
            h.since(Some((3, 1))).unwrap_err(),
            ResetReason::HistoryTooOld
        );
        assert_eq!(h.since(Some((2, 5))).unwrap_err(), ResetReason::NewEpoch);
        assert_eq!(
            h.since(Some((3, 9))).unwrap_err(),
            ResetReason::CursorInFuture
        );
        assert_eq!(h.since(None).unwrap_err(), ResetReason::NoCursor);
    }
}
