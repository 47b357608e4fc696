//! A backend that only records: for testing the daemons without root or a kernel.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::model::{Change, Counts, DesiredState, ReconcileReport};

/// Records the state the changes add up to, and the changes themselves.
///
/// Clones share the record, so a test keeps one clone and hands the daemon a
/// [`crate::Datapath::Fake`] with another.
#[derive(Debug, Clone, Default)]
pub struct Fake {
    inner: Arc<Mutex<Record>>,
}

#[derive(Debug, Default)]
struct Record {
    state: DesiredState,
    changes: Vec<Change>,
    reconciles: usize,
    fail_with: Option<i32>,
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
            r.state.apply(c);
            r.changes.push(c.clone());
        }
        Ok(())
    }

    pub(crate) fn reconcile(&self, desired: &DesiredState) -> Result<ReconcileReport> {
        let mut r = self.record();
        Self::check(&r, "reconcile", "(fake)".into())?;
        let have = &r.state;
        let report = ReconcileReport {
            routes: add(
                count(&have.routes, &desired.routes),
                count(&have.routes4, &desired.routes4),
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

fn add(a: Counts, b: Counts) -> Counts {
    Counts {
        added: a.added + b.added,
        removed: a.removed + b.removed,
    }
}
