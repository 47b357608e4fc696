//! The LMA daemon's one task: a thin driver over the synchronous [`Service`]. It `select!`s
//! over the signalling socket, the service's next timeout, the API's commands and the store
//! commit in flight, hands each to the service, and after every turn flushes the service's
//! outputs in this order: datapath changes, the durable store commit, then the messages. A PBA
//! therefore never leaves before its route exists and its binding is on disk.
//!
//! The commit (an fsync) runs on another thread while the task goes on receiving and handling
//! messages: what those change is written by the next commit, which starts when this one ends
//! and carries every write made meanwhile (a group commit), and their replies are held until
//! it is done. The kernel datapath's batch (netlink requests and their answers) runs beside
//! the task the same way, one batch at a time. Messages leave in the order they were made.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use cnf::Clock;
use cnf::transport::{RecvBatch, SignallingTransport};
use datapath::{Datapath, ReconcileReport};
use futures::FutureExt;
use pmip::Instant;
use pmip::config::LmaConfig;
use pmip::output::Transmit;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::metrics::Metrics;
use crate::service::{Commit, LoadError, Loading, Service, Start};
use crate::store::{Run, Store, StoreError};

pub use crate::service::{
    BindingPage, Command, MagPeerView, MagView, PeerState, PolicyRefusal, ProfileView,
    RevokeOutcome, StatsView, Upserted,
};

/// The API's way into the LMA's core task.
pub type CoreHandle = cnf::core::CoreHandle<Command>;
/// The core task has stopped.
pub use cnf::core::CoreGone;

/// The error every API call gets once the core stopped.
pub const GONE: CoreGone = CoreGone { daemon: "LMA" };

/// Receive batches (of up to [`cnf::transport::BATCH`] messages) handled in one loop turn
/// before its datapath batch, store commit and replies. Measured with `pmip-bench signalling`:
/// at one batch a turn, a turn was one fsync for 64 PBUs and the control plane reached 21 %
/// of the raw-socket echo ceiling.
pub const MAX_BATCHES_PER_TURN: usize = 16;

/// What [`Core::new`] needs.
#[derive(Debug)]
pub struct Parts<T> {
    /// Restored from the store, by [`restore`].
    pub service: Service,
    /// Shared so that a test's transport can read what is on disk when a message leaves.
    pub store: Arc<Store>,
    pub run: Run,
    pub datapath: Datapath,
    pub transport: T,
    pub metrics: Metrics,
    pub clock: Clock,
}

/// The service restored from `store` for this `run` ([`Service::load`]), at `clock`'s now.
/// It reads the whole store: a daemon runs it on a blocking thread.
pub fn restore(
    config: LmaConfig,
    store: &Store,
    run: Run,
    seed: u64,
    clock: &Clock,
) -> Result<(Service, Loading), LoadError> {
    let start = Start {
        config,
        restart_counter: run.restart_counter,
        epoch: run.boot,
        seed,
    };
    Service::load(start, store, clock.now(), clock.wall())
}

/// The core task.
#[derive(Debug)]
pub struct Core<T> {
    service: Service,
    clock: Clock,
    transport: T,
    datapath: Datapath,
    store: Arc<Store>,
    metrics: Metrics,
    commands: mpsc::Receiver<Command>,
    /// The store commit in flight (commits run one at a time, in order).
    committing: Option<CommitTask>,
    /// Commits started and ended so far.
    commits_started: u64,
    commits_done: u64,
    /// The last commit started that holds writes replies wait for.
    last_awaited: u64,
    /// The datapath batch in flight (one at a time, in order), and batches started and ended.
    applying: Option<ApplyTask>,
    applies_started: u64,
    applies_done: u64,
    /// Messages waiting for a commit or a datapath batch, in the order they were made.
    held: VecDeque<Held>,
    /// The datapath's reconcile running in the background, and since when it was started.
    reconciling: Option<Reconciling>,
}

type CommitTask = tokio::task::JoinHandle<(Result<(), StoreError>, Duration)>;
/// A datapath batch: its outcome, how long it took and how many changes it held.
type ApplyTask = tokio::task::JoinHandle<(datapath::Result<()>, Duration, usize)>;

/// One turn's messages, which leave once commit number `needs` and datapath batch number
/// `needs_datapath` have ended.
#[derive(Debug)]
struct Held {
    needs: u64,
    needs_datapath: u64,
    tx: Vec<Transmit>,
    /// When each PBU these answer arrived.
    answered: Vec<Instant>,
}

/// Resolves when the commit in flight ends; never without one.
async fn commit_done(
    c: &mut Option<CommitTask>,
) -> Result<(Result<(), StoreError>, Duration), tokio::task::JoinError> {
    match c {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

/// Resolves when the datapath batch in flight ends; never without one.
async fn apply_done(
    a: &mut Option<ApplyTask>,
) -> Result<(datapath::Result<()>, Duration, usize), tokio::task::JoinError> {
    match a {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

/// The background reconcile of the datapath after a restart ([`Datapath::reconcile_pending`]).
#[derive(Debug)]
struct Reconciling {
    task: tokio::task::JoinHandle<datapath::Result<ReconcileReport>>,
    since: std::time::Instant,
    attempts: u32,
}

/// A failed background reconcile is tried again after this long, doubled each time up to
/// [`RECONCILE_RETRY_MAX`].
const RECONCILE_RETRY: Duration = Duration::from_secs(1);
const RECONCILE_RETRY_MAX: Duration = Duration::from_secs(60);

fn spawn_reconcile(
    datapath: &Datapath,
    after: Duration,
) -> tokio::task::JoinHandle<datapath::Result<ReconcileReport>> {
    let dp = datapath.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        dp.reconcile_pending().await
    })
}

/// Resolves when the background reconcile ends; never without one.
async fn reconcile_done(
    r: &mut Option<Reconciling>,
) -> Result<datapath::Result<ReconcileReport>, tokio::task::JoinError> {
    match r {
        Some(r) => (&mut r.task).await,
        None => std::future::pending().await,
    }
}

impl<T: SignallingTransport> Core<T> {
    /// Starts from the service [`restore`]d from the store and returns the core and the
    /// API's handle. The kernel's routes outlive the process, so the datapath takes the restored
    /// bindings' routes for what the kernel holds and the core serves at once; the datapath
    /// is reconciled in the background, beside the changes the core makes meanwhile
    /// ([`Datapath::reconcile_pending`]), and the Stats RPC and the
    /// `pmip_lma_datapath_reconciled` metric say when that is done. The backends with a link
    /// per peer (ip6tnl, tun) make their links first; tun, whose devices and routes went with
    /// the process, gets every route back from that background reconcile.
    pub async fn new(p: Parts<T>) -> anyhow::Result<(Core<T>, CoreHandle)> {
        let epoch = p.run.boot;
        let mut service = p.service;
        service.set_datapath_backend(p.datapath.backend_name());
        let (handle, commands) = CoreHandle::channel(GONE.daemon, epoch);
        let mut core = Core {
            service,
            clock: p.clock,
            transport: p.transport,
            datapath: p.datapath,
            store: p.store,
            metrics: p.metrics,
            commands,
            committing: None,
            commits_started: 0,
            commits_done: 0,
            last_awaited: 0,
            applying: None,
            applies_started: 0,
            applies_done: 0,
            held: VecDeque::new(),
            reconciling: None,
        };
        // From before the desired state is built: `took_ms` below is what serving waits for.
        let t = std::time::Instant::now();
        let desired = core
            .service
            .desired(core.datapath.settings().transport_ifindex);
        let bindings = core.service.lma().cache().len();
        let backend = core.datapath.backend_name();
        let built = t.elapsed();
        if core.datapath.reconciles_later() {
            core.datapath.assume(desired).await?;
            core.reconciling = Some(Reconciling {
                task: spawn_reconcile(&core.datapath, Duration::ZERO),
                since: t,
                attempts: 1,
            });
            info!(
                bindings,
                took_ms = t.elapsed().as_millis() as u64,
                desired_ms = built.as_millis() as u64,
                backend,
                "datapath taken from the store; reconciling in the background"
            );
        } else {
            let report = core.datapath.reconcile(&desired).await?;
            info!(
                bindings,
                ?report,
                took_ms = t.elapsed().as_millis() as u64,
                backend,
                "datapath reconciled"
            );
            core.reconciled();
        }
        core.flush().await;
        core.settle().await;
        Ok((core, handle))
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut batch = RecvBatch::default();
        tokio::pin!(shutdown);
        loop {
            let sleep = self.clock.sleep_until(self.service.poll_timeout());
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                r = commit_done(&mut self.committing) => self.commit_ended(r),
                r = apply_done(&mut self.applying) => self.apply_ended(r),
                r = self.transport.recv_batch(&mut batch) => match r {
                    Ok(n) => {
                        self.receive(n, &batch);
                        // Whatever else is queued joins this turn, so that one store commit
                        // (an fsync) and one datapath batch serve many messages.
                        for _ in 1..MAX_BATCHES_PER_TURN {
                            match self.transport.recv_batch(&mut batch).now_or_never() {
                                Some(Ok(n)) if n > 0 => self.receive(n, &batch),
                                _ => break,
                            }
                        }
                    }
                    Err(e) => {
                        error!(error = %e, "receiving on the signalling socket");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Some(cmd) = self.commands.recv() => {
                    self.command(cmd);
                    // Take whatever else is queued in the same turn.
                    while let Ok(cmd) = self.commands.try_recv() {
                        self.command(cmd);
                    }
                }
                _ = sleep => {
                    let (now, wall) = (self.clock.now(), self.clock.wall());
                    self.service.handle_timeout(now, wall);
                }
                r = reconcile_done(&mut self.reconciling) => self.background_reconcile_ended(r),
            }
            self.flush().await;
        }
        info!("shutting down");
        self.settle().await;
        // The deferred refreshes are written now, with whatever the last turn changed.
        let last = self.service.final_commit();
        self.start_commit(last);
        self.settle().await;
    }

    fn reconciled(&mut self) {
        self.service.datapath_reconciled(self.clock.now());
        self.metrics.datapath_reconciled.set(1);
    }

    fn background_reconcile_ended(
        &mut self,
        r: Result<datapath::Result<ReconcileReport>, tokio::task::JoinError>,
    ) {
        let Some(done) = self.reconciling.take() else {
            return;
        };
        let took_ms = done.since.elapsed().as_millis() as u64;
        let error = match r {
            Ok(Ok(report)) => {
                info!(
                    bindings = self.service.lma().cache().len(),
                    ?report,
                    took_ms,
                    attempts = done.attempts,
                    "datapath reconciled"
                );
                self.reconciled();
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        self.metrics.datapath_failures.inc();
        let after = RECONCILE_RETRY
            .saturating_mul(1 << done.attempts.min(6))
            .min(RECONCILE_RETRY_MAX);
        error!(
            %error,
            attempts = done.attempts,
            retry_in_s = after.as_secs(),
            "datapath reconcile failed; the LMA serves on and tries again"
        );
        self.reconciling = Some(Reconciling {
            task: spawn_reconcile(&self.datapath, after),
            since: done.since,
            attempts: done.attempts + 1,
        });
    }

    fn receive(&mut self, n: usize, batch: &RecvBatch) {
        self.metrics.batch_size.observe(n as f64);
        for (m, bytes) in batch.iter() {
            let (now, wall) = (self.clock.now(), self.clock.wall());
            self.service.handle_message(now, wall, m.src, m.dst, bytes);
        }
    }

    fn command(&mut self, cmd: Command) {
        let (now, wall) = (self.clock.now(), self.clock.wall());
        self.service.command(now, wall, cmd);
    }

    /// Datapath, then store, then messages: this turn's datapath changes are applied, the
    /// store commit owed starts unless one is in flight, and the messages whose commit has
    /// ended leave.
    async fn flush(&mut self) {
        if self.applying.is_none() && self.service.has_changes() {
            let changes = self.service.take_changes();
            self.metrics.observe_changes(&changes);
            if matches!(self.datapath, Datapath::None) {
                self.applies_started += 1;
                self.applies_done += 1;
            } else {
                self.start_apply(changes);
            }
        }
        if self.committing.is_none()
            && let Some(c) = self.service.poll_commit(self.clock.now())
        {
            self.start_commit(c);
        }
        let tx = self.service.take_transmits();
        let answered = self.service.take_answered();
        if !tx.is_empty() || !answered.is_empty() {
            // Writes not yet in a commit go with the next one; otherwise the replies wait for
            // the last commit that carries writes (they may answer a binding it writes).
            // Refreshes alone are deferred writes, which replies do not wait for.
            let needs = if self.service.owes_commit() {
                self.commits_started + 1
            } else {
                self.last_awaited
            };
            // Likewise the routes: those not yet in a batch go with the next one.
            let needs_datapath = self.applies_started + u64::from(self.service.has_changes());
            self.held.push_back(Held {
                needs,
                needs_datapath,
                tx,
                answered,
            });
        }
        self.send_ready().await;
        self.metrics.observe(&self.service.stats());
        // This turn's log lines, in one write.
        cnf::telemetry::flush_logs();
    }

    /// Starts a datapath batch beside the task.
    fn start_apply(&mut self, changes: Vec<datapath::Change>) {
        debug_assert!(self.applying.is_none(), "one datapath batch at a time");
        self.applies_started += 1;
        let dp = self.datapath.clone();
        self.applying = Some(tokio::spawn(async move {
            let t = std::time::Instant::now();
            let r = dp.apply(&changes).await;
            (r, t.elapsed(), changes.len())
        }));
    }

    /// Records how the datapath batch in flight went. The binding state stays as the protocol
    /// says whatever the kernel answered: the next change of the same prefix, or the next
    /// start, reconciles the kernel; the batch's messages leave.
    fn apply_ended(
        &mut self,
        r: Result<(datapath::Result<()>, Duration, usize), tokio::task::JoinError>,
    ) {
        self.applying = None;
        self.applies_done += 1;
        match r {
            Ok((r, took, changes)) => {
                self.metrics.datapath_seconds.observe(took.as_secs_f64());
                if let Err(e) = r {
                    error!(error = %e, changes, "datapath");
                    self.metrics.datapath_failures.inc();
                }
            }
            Err(e) => {
                error!(error = %e, "datapath task failed");
                self.metrics.datapath_failures.inc();
            }
        }
    }

    fn start_commit(&mut self, Commit { batch, wait }: Commit) {
        if batch.is_empty() {
            return;
        }
        debug_assert!(self.committing.is_none(), "one commit at a time");
        self.commits_started += 1;
        if wait {
            self.last_awaited = self.commits_started;
        }
        let store = self.store.clone();
        self.committing = Some(tokio::task::spawn_blocking(move || {
            let t = std::time::Instant::now();
            (store.commit(&batch), t.elapsed())
        }));
    }

    /// Records how the commit in flight went. Its messages leave whether it succeeded or
    /// not, as they did before there was a store: a failure is logged and counted.
    fn commit_ended(
        &mut self,
        r: Result<(Result<(), StoreError>, Duration), tokio::task::JoinError>,
    ) {
        self.committing = None;
        self.commits_done += 1;
        match r {
            Ok((r, took)) => {
                self.metrics
                    .store_commit_seconds
                    .observe(took.as_secs_f64());
                match r {
                    Ok(()) => {
                        self.metrics.store_commits.inc();
                    }
                    Err(e) => {
                        error!(error = %e, "durable store commit failed");
                        self.metrics.store_failures.inc();
                    }
                }
            }
            Err(e) => {
                error!(error = %e, "durable store task failed");
                self.metrics.store_failures.inc();
            }
        }
    }

    /// Sends, in order, the messages whose commit has ended.
    async fn send_ready(&mut self) {
        let mut tx = Vec::new();
        let mut answered = Vec::new();
        while let Some(h) = self.held.front()
            && h.needs <= self.commits_done
            && h.needs_datapath <= self.applies_done
        {
            let Some(h) = self.held.pop_front() else {
                break;
            };
            if tx.is_empty() {
                tx = h.tx;
            } else {
                tx.extend(h.tx);
            }
            answered.extend(h.answered);
        }
        if tx.is_empty() {
            return;
        }
        match self.transport.send_batch(&tx).await {
            Ok(n) if n < tx.len() => {
                warn!(sent = n, of = tx.len(), "some messages were not sent")
            }
            Ok(_) => {}
            Err(e) => error!(error = %e, "sending on the signalling socket"),
        }
        let done = self.clock.now();
        for a in answered {
            self.metrics
                .registration_seconds
                .observe((done - a).as_secs_f64());
        }
    }

    /// Waits until no datapath batch or commit is in flight or owed and every held message
    /// has left.
    async fn settle(&mut self) {
        loop {
            if let Some(task) = self.applying.as_mut() {
                let r = task.await;
                self.apply_ended(r);
            } else if let Some(task) = self.committing.as_mut() {
                let r = task.await;
                self.commit_ended(r);
            } else {
                break;
            }
            self.flush().await;
        }
    }
}
