//! A backend that only records: for testing the daemons without root or a kernel.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use ipnet::IpNet;

use crate::model::{Change, Counts, DesiredState, Pending, PrefixRoute, ReconcileReport};

/// Records the state the changes add up to, and the changes themselves.
///
/// Clones share the record, so a test keeps one clone and hands the daemon a
/// [`crate::Datapath::Fake`] with another.
#[derive(Debug, Clone, Default)]
pub struct Fake {
    inner: Arc<Mutex<Record>>,
    /// Held by a test while a pending reconcile must wait ([`Fake::hold_reconciles`]).
    gate: Arc<tokio::sync::RwLock<()>>,
}

/// Keeps a pending reconcile of a [`Fake`] waiting until dropped.
#[derive(Debug)]
pub struct ReconcileHold(#[allow(dead_code)] tokio::sync::OwnedRwLockWriteGuard<()>);

/// An assumed state ([`Fake::assume`]) not yet reconciled: what the daemon believes the
/// kernel holds (the state recorded is the kernel's).
#[derive(Debug, Default)]
struct Assumed {
    shadow: DesiredState,
    pending: Pending,
}

#[derive(Debug, Default)]
struct Record {
    state: DesiredState,
    changes: Vec<Change>,
    reconciles: usize,
    fail_with: Option<i32>,
    assumed: Option<Assumed>,
}

impl Fake {
    pub fn new() -> Self {
        Self::default()
    }

    fn record(&self) -> MutexGuard<'_, Record> {
        // A panicking test thread must not take the others down with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state the applied changes and reconciles add up to.
    pub fn state(&self) -> DesiredState {
        self.record().state.clone()
    }

    /// Every change applied so far, in order (reconciles are not changes).
    pub fn changes(&self) -> Vec<Change> {
        self.record().changes.clone()
    }

    /// The changes applied since the last call.
    pub fn take_changes(&self) -> Vec<Change> {
        std::mem::take(&mut self.record().changes)
    }

    /// How many times `reconcile` (or `cleanup`) ran.
    pub fn reconciles(&self) -> usize {
        self.record().reconciles
    }

    /// From now on every call fails as if the kernel said `errno` (`None`: succeed again).
    pub fn fail_with(&self, errno: Option<i32>) {
        self.record().fail_with = errno;
    }

    fn check(record: &Record, op: &'static str, object: String) -> Result<()> {
        match record.fail_with {
            Some(errno) => Err(Error::Kernel {
                op,
                object,
                source: io::Error::from_raw_os_error(errno),
            }),
            None => Ok(()),
        }
    }

    pub(crate) fn apply(&self, changes: &[Change]) -> Result<()> {
        let mut r = self.record();
        Self::check(&r, "apply", format!("{} changes (fake)", changes.len()))?;
        for c in changes {
            if let Some(a) = r.assumed.as_mut() {
                a.pending.note(c, &a.shadow);
                a.shadow.apply(c);
            }
            r.state.apply(c);
            r.changes.push(c.clone());
        }
        Ok(())
    }

    /// Until the hold is dropped, a pending reconcile waits after taking its picture of the
    /// state (so that a test can apply changes in between).
    pub fn hold_reconciles(&self) -> ReconcileHold {
        ReconcileHold(
            self.gate
                .clone()
                .try_write_owned()
                .expect("one hold at a time, none while a reconcile runs"),
        )
    }

    /// Whether an assumed state waits for its reconcile.
    pub fn is_pending(&self) -> bool {
        self.record().assumed.is_some()
    }

    pub(crate) fn assume(&self, desired: DesiredState) {
        self.record().assumed = Some(Assumed {
            shadow: desired,
            pending: Pending::default(),
        });
    }

    /// As the kernel backend does: a picture of the assumed state and the changes since,
    /// then (after any hold) every route the picture and the kernel disagree on, except those
    /// a change wrote after the picture; a change of another kind makes it a whole reconcile.
    pub(crate) async fn reconcile_pending(&self) -> Result<ReconcileReport> {
        let picture = {
            let mut r = self.record();
            Self::check(&r, "reconcile", "(fake)".into())?;
            let Some(a) = r.assumed.as_mut() else {
                return Ok(ReconcileReport::default());
            };
            a.pending.touched.clear();
            a.shadow.clone()
        };
        let _open = self.gate.read().await;
        let mut r = self.record();
        let Some(a) = r.assumed.take() else {
            return Ok(ReconcileReport::default());
        };
        let whole = a.pending.other;
        let want = if whole { a.shadow } else { picture };
        let mut next = want.clone();
        if !whole {
            let touched = &a.pending.touched;
            for (p, route) in &r.state.routes {
                if touched.contains(&IpNet::from(p)) {
                    next.routes.insert(p, route);
                }
            }
            next.routes.retain(|p, _| {
                !touched.contains(&IpNet::from(*p)) || r.state.routes.contains_key(p)
            });
            for (p, route) in &r.state.routes4 {
                if touched.contains(&IpNet::from(p)) {
                    next.routes4.insert(p, route);
                }
            }
            next.routes4.retain(|p, _| {
                !touched.contains(&IpNet::from(*p)) || r.state.routes4.contains_key(p)
            });
        }
        let report = ReconcileReport {
            routes: add(
                count(&map(&r.state.routes), &map(&next.routes)),
                count(&map(&r.state.routes4), &map(&next.routes4)),
            ),
            ..ReconcileReport::default()
        };
        r.state = next;
        r.reconciles += 1;
        Ok(report)
    }

    pub(crate) fn reconcile(&self, desired: &DesiredState) -> Result<ReconcileReport> {
        let mut r = self.record();
        Self::check(&r, "reconcile", "(fake)".into())?;
        let have = &r.state;
        let report = ReconcileReport {
            routes: add(
                count(&map(&have.routes), &map(&desired.routes)),
                count(&map(&have.routes4), &map(&desired.routes4)),
            ),
            rules: add(
                add(
                    count(&have.uplinks, &desired.uplinks),
                    count(&have.uplinks4, &desired.uplinks4),
                ),
                count(&have.terminations, &desired.terminations),
            ),
            addresses: count(&have.access_links, &desired.access_links),
            links: Counts::default(),
        };
        r.state = desired.clone();
        r.reconciles += 1;
        Ok(report)
    }
}

fn count<K: Ord, V: PartialEq>(
    have: &std::collections::BTreeMap<K, V>,
    want: &std::collections::BTreeMap<K, V>,
) -> Counts {
    Counts {
        added: want.iter().filter(|(k, v)| have.get(k) != Some(*v)).count(),
        removed: have.keys().filter(|k| !want.contains_key(k)).count(),
    }
}

fn map<P: crate::Prefix>(
    routes: &crate::PrefixRoutes<P>,
) -> std::collections::BTreeMap<P, PrefixRoute> {
    routes.iter().collect()
}

fn add(a: Counts, b: Counts) -> Counts {
    Counts {
        added: a.added + b.added,
        removed: a.removed + b.removed,
    }
}
