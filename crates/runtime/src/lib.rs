//! # dynkv-runtime: background workers
//!
//! Every background loop of a node (hinted handoff, anti-entropy, gossip,
//! ownership transfers, the failure detector, the tombstone reaper, storage
//! recovery, the WAL sync, the internode listener, ...) is a [`Worker`]: a
//! [`Worker::work`] step and a [`Worker::wait_for_work`] pause. A
//! [`Runtime`] runs them, which gives every loop, in one place:
//!
//! - **one shutdown**: [`Runtime::shutdown`] tells every worker to stop,
//!   waits for them up to a grace period and aborts the stragglers. A worker
//!   never hand-rolls `select!{sleep, shutdown}`: the runner waits for it,
//!   and a long step can watch [`Context::stopped`];
//! - **a status per worker** ([`WorkerInfo`], what `GET /admin/workers`
//!   and `dynkv admin workers` show): its state (idle, busy and with what,
//!   throttled, done, stopped, off, failed), steps run, errors, the last
//!   error and the last step, and counters the worker keeps;
//! - **error logs at warn, rate limited**: a step that fails (returns
//!   `Err`, or reports an error through [`Context::error`]) is counted and
//!   logged, at most once per [`ERROR_LOG_INTERVAL`] per worker, with the
//!   number of errors left out since the last line.
//!
//! The model is Garage's `BackgroundRunner`: after a step the worker says
//! what it wants next ([`WorkerState`]): another step at once (`Busy`),
//! one after a pause (`Throttled`), to wait for work (`Idle`), or to exit
//! (`Done`). An idle worker waits in [`Worker::wait_for_work`], by default
//! its [`Worker::interval`]. A worker's first step comes after one wait
//! unless [`Worker::first_step`] says `Busy`: periodic loops pause before
//! their first pass.
//!
//! This crate knows nothing of the node: each mechanism crate implements
//! its own workers, and the node starts them.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

/// Least time between two error lines of one worker in the log; the errors
/// in between are counted (`suppressed` on the next line, and
/// [`WorkerInfo::errors`]).
pub const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// What a worker wants after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerState {
    /// More work is ready: the next step runs at once.
    Busy,
    /// More work is ready, but the next step waits this long (pacing).
    Throttled(Duration),
    /// Nothing to do now: the next step waits for [`Worker::wait_for_work`].
    Idle,
    /// Finished for good: the worker exits.
    Done,
}

/// The outcome of a step: what to do next, or why it failed (a failed step
/// is counted, logged and followed by a wait, as `Idle`).
pub type StepResult = Result<WorkerState, String>;

/// A background loop.
pub trait Worker: Send + 'static {
    /// Its name in the worker list: short, stable, lower case
    /// (`handoff`, `antientropy`, ...).
    fn name(&self) -> String;

    /// Its period: how long [`Worker::wait_for_work`] waits by default.
    /// Shown in the worker list.
    fn interval(&self) -> Duration;

    /// How the worker starts: `Idle` (the default) waits once before the
    /// first step; `Busy` steps at once.
    fn first_step(&self) -> WorkerState {
        WorkerState::Idle
    }

    /// One step of work. A long step may watch [`Context::stopped`] and end
    /// early; otherwise the runner lets it finish (within the grace period
    /// of [`Runtime::shutdown`]).
    fn work(&mut self, cx: &Context) -> impl Future<Output = StepResult> + Send;

    /// Waits until there may be work again: by default, [`Worker::interval`].
    /// The runner ends the wait at shutdown.
    fn wait_for_work(&mut self) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(self.interval())
    }
}

/// What a worker is doing, as the list shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for work.
    #[default]
    Idle,
    /// Running a step.
    Busy,
    /// Pausing between steps that have work.
    Throttled,
    /// Finished its work for good.
    Done,
    /// Stopped by shutdown.
    Stopped,
    /// Not started: turned off by configuration (see the note).
    Off,
    /// A step panicked; the worker is gone (see the last error).
    Failed,
}

/// The last step of a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastRun {
    /// When it started, Unix ms.
    pub started_unix_ms: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// Whether it went without error.
    pub ok: bool,
}

/// The last error of a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastError {
    /// What went wrong.
    pub message: String,
    /// When, Unix ms.
    pub at_unix_ms: u64,
}

/// One worker's status: an entry of `GET /admin/workers`.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerInfo {
    /// Its name.
    pub name: String,
    /// What it is doing.
    pub state: Phase,
    /// While busy, what with (set by the worker).
    pub busy_with: Option<String>,
    /// Its period ([`Worker::interval`]), ms.
    pub interval_ms: Option<u64>,
    /// Steps run.
    pub runs: u64,
    /// Errors, all told.
    pub errors: u64,
    /// Steps in a row that failed, up to the last one.
    pub consecutive_errors: u64,
    /// The last step.
    pub last_run: Option<LastRun>,
    /// The last error.
    pub last_error: Option<LastError>,
    /// Counters and levels the worker keeps (`delivered`, `pending`, ...).
    pub counters: BTreeMap<String, u64>,
    /// Why it is off, or other context from the runner.
    pub note: Option<String>,
}

/// At most one line per [`ERROR_LOG_INTERVAL`].
#[derive(Default)]
struct LogLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// Whether to log an error now; if so, how many were left out before it.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < ERROR_LOG_INTERVAL)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[derive(Default)]
struct Inner {
    phase: Phase,
    busy_with: Option<String>,
    note: Option<String>,
    runs: u64,
    errors: u64,
    consecutive: u64,
    step_failed: bool,
    last_run: Option<LastRun>,
    last_error: Option<LastError>,
    counters: BTreeMap<&'static str, u64>,
    log: LogLimiter,
}

/// A worker's status cell, shared by its runner and the list.
struct Slot {
    name: String,
    interval: Option<Duration>,
    inner: Mutex<Inner>,
}

impl Slot {
    fn new(name: String, interval: Option<Duration>) -> Arc<Slot> {
        Arc::new(Slot {
            name,
            interval,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn set_phase(&self, phase: Phase) {
        self.inner.lock().phase = phase;
    }

    fn error(&self, message: String) {
        let (logged, consecutive) = {
            let mut i = self.inner.lock();
            i.errors += 1;
            i.step_failed = true;
            i.last_error = Some(LastError {
                message: message.clone(),
                at_unix_ms: unix_ms(SystemTime::now()),
            });
            (i.log.allow(Instant::now()), i.consecutive + 1)
        };
        if let Some(suppressed) = logged {
            warn!(
                worker = %self.name,
                error = %message,
                consecutive_failed_steps = consecutive,
                suppressed,
                "background worker error"
            );
        }
    }

    fn begin(&self) -> (Instant, SystemTime) {
        let mut i = self.inner.lock();
        i.phase = Phase::Busy;
        i.step_failed = false;
        (Instant::now(), SystemTime::now())
    }

    fn end(&self, (started, at): (Instant, SystemTime), result: StepResult) -> WorkerState {
        let next = match result {
            Ok(next) => next,
            Err(e) => {
                self.error(e);
                WorkerState::Idle
            }
        };
        let recovered = {
            let mut i = self.inner.lock();
            i.runs += 1;
            i.busy_with = None;
            let failed = i.step_failed;
            i.last_run = Some(LastRun {
                started_unix_ms: unix_ms(at),
                duration_ms: started.elapsed().as_millis() as u64,
                ok: !failed,
            });
            if failed {
                i.consecutive += 1;
                0
            } else {
                std::mem::take(&mut i.consecutive)
            }
        };
        if recovered > 0 {
            info!(worker = %self.name, failed_steps = recovered, "background worker recovered");
        }
        next
    }

    fn info(&self) -> WorkerInfo {
        let i = self.inner.lock();
        WorkerInfo {
            name: self.name.clone(),
            state: i.phase,
            busy_with: i.busy_with.clone(),
            interval_ms: self.interval.map(|d| d.as_millis() as u64),
            runs: i.runs,
            errors: i.errors,
            consecutive_errors: i.consecutive,
            last_run: i.last_run.clone(),
            last_error: i.last_error.clone(),
            counters: i
                .counters
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            note: i.note.clone(),
        }
    }
}

/// What a step gets: a way to report progress and errors, and the shutdown
/// signal.
pub struct Context {
    slot: Arc<Slot>,
    stop: watch::Receiver<bool>,
}

impl Context {
    /// Says what the current step is busy with (shown until it ends).
    pub fn busy_with(&self, what: impl Into<String>) {
        self.slot.inner.lock().busy_with = Some(what.into());
    }

    /// Adds `n` to a counter.
    pub fn count(&self, counter: &'static str, n: u64) {
        *self.slot.inner.lock().counters.entry(counter).or_default() += n;
    }

    /// Sets a level (a counter that goes both ways, e.g. `pending`).
    pub fn set(&self, level: &'static str, value: u64) {
        self.slot.inner.lock().counters.insert(level, value);
    }

    /// Reports an error that does not end the step (one peer of several
    /// failed, ...): counted, kept as the last error and logged at warn
    /// (rate limited); the step counts as failed.
    pub fn error(&self, e: impl Display) {
        self.slot.error(e.to_string());
    }

    /// Whether shutdown has begun.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow() || self.stop.has_changed().is_err()
    }

    /// Resolves when shutdown begins: `select!` a long step against it.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.stop.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

/// Runs one worker until it is done, fails or `stop` turns true.
async fn run<W: Worker>(mut worker: W, slot: Arc<Slot>, stop: watch::Receiver<bool>) {
    let cx = Context {
        slot: slot.clone(),
        stop,
    };
    let steps = AssertUnwindSafe(async {
        let mut next = worker.first_step();
        loop {
            match next {
                WorkerState::Done => return Phase::Done,
                WorkerState::Busy => tokio::task::yield_now().await,
                WorkerState::Idle => {
                    slot.set_phase(Phase::Idle);
                    tokio::select! {
                        biased;
                        _ = cx.stopped() => return Phase::Stopped,
                        _ = worker.wait_for_work() => {}
                    }
                }
                WorkerState::Throttled(pause) => {
                    slot.set_phase(Phase::Throttled);
                    tokio::select! {
                        biased;
                        _ = cx.stopped() => return Phase::Stopped,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
            if cx.stopping() {
                return Phase::Stopped;
            }
            let started = slot.begin();
            let result = worker.work(&cx).await;
            next = slot.end(started, result);
        }
    });
    let end = match steps.catch_unwind().await {
        Ok(phase) => phase,
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            slot.error(format!("the worker panicked and is gone: {why}"));
            Phase::Failed
        }
    };
    let mut i = slot.inner.lock();
    i.phase = end;
    i.busy_with = None;
}

/// Runs one worker on the current task until it is done or `stop` turns
/// true, outside any [`Runtime`] (for tests and for callers that own their
/// shutdown signal). Returns its final status.
pub async fn drive<W: Worker>(worker: W, stop: watch::Receiver<bool>) -> WorkerInfo {
    let slot = Slot::new(worker.name(), Some(worker.interval()));
    run(worker, slot.clone(), stop).await;
    slot.info()
}

/// The node's background workers: starts them, lists them, stops them.
pub struct Runtime {
    stop: watch::Sender<bool>,
    slots: Mutex<Vec<Arc<Slot>>>,
    tasks: Mutex<Vec<(Arc<Slot>, JoinHandle<()>)>>,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}

impl Runtime {
    /// An empty runtime.
    pub fn new() -> Runtime {
        Runtime {
            stop: watch::Sender::new(false),
            slots: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Starts `worker` on a task of its own (call from within a Tokio
    /// runtime). After shutdown has begun it is listed but not started.
    pub fn spawn<W: Worker>(&self, worker: W) {
        let slot = Slot::new(worker.name(), Some(worker.interval()));
        self.slots.lock().push(slot.clone());
        if self.is_stopping() {
            slot.set_phase(Phase::Stopped);
            return;
        }
        let task = tokio::spawn(run(worker, slot.clone(), self.stop.subscribe()));
        self.tasks.lock().push((slot, task));
    }

    /// Lists a worker that configuration turned off, with the reason, so
    /// the list names every background loop.
    pub fn off(&self, name: impl Into<String>, why: impl Into<String>) {
        let slot = Slot::new(name.into(), None);
        {
            let mut i = slot.inner.lock();
            i.phase = Phase::Off;
            i.note = Some(why.into());
        }
        self.slots.lock().push(slot);
    }

    /// Every worker's status, in the order they were added.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.slots.lock().iter().map(|s| s.info()).collect()
    }

    /// The shutdown signal, for a loop this runtime does not run.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Tells every worker to stop and waits for them, at most `grace`;
    /// workers still running then are aborted (and logged).
    pub async fn shutdown(&self, grace: Duration) {
        self.stop.send_replace(true);
        let mut tasks = std::mem::take(&mut *self.tasks.lock());
        let all = futures::future::join_all(tasks.iter_mut().map(|(_, t)| t));
        let _ = tokio::time::timeout(grace, all).await;
        for (slot, task) in tasks {
            if !task.is_finished() {
                warn!(worker = %slot.name, ?grace, "background worker did not stop in time; aborted");
                task.abort();
                slot.set_phase(Phase::Stopped);
            }
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Counts its steps; fails every step while `fail` is set; done after
    /// `done_after` steps.
    struct Probe {
        first: WorkerState,
        next: WorkerState,
        steps: Arc<AtomicU64>,
        fail: bool,
        done_after: u64,
    }

    impl Probe {
        fn new(first: WorkerState, next: WorkerState) -> (Probe, Arc<AtomicU64>) {
            let steps = Arc::new(AtomicU64::new(0));
            let p = Probe {
                first,
                next,
                steps: steps.clone(),
                fail: false,
                done_after: u64::MAX,
            };
            (p, steps)
        }
    }

    impl Worker for Probe {
        fn name(&self) -> String {
            "probe".into()
        }

        fn interval(&self) -> Duration {
            Duration::from_secs(1)
        }

        fn first_step(&self) -> WorkerState {
            self.first
        }

        async fn work(&mut self, cx: &Context) -> StepResult {
            let n = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
            cx.busy_with("probing");
            cx.count("steps", 1);
            cx.set("last", n);
            if self.fail {
                return Err(format!("step {n} failed"));
            }
            if n >= self.done_after {
                return Ok(WorkerState::Done);
            }
            Ok(self.next)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_worker_waits_its_interval_before_each_step() {
        let rt = Runtime::new();
        let (p, steps) = Probe::new(WorkerState::Idle, WorkerState::Idle);
        rt.spawn(p);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            steps.load(Ordering::SeqCst),
            0,
            "waits before the first step"
        );
        tokio::time::sleep(Duration::from_millis(3_000)).await;
        assert_eq!(steps.load(Ordering::SeqCst), 3);
        let w = &rt.workers()[0];
        assert_eq!(w.name, "probe");
        assert_eq!(w.state, Phase::Idle);
        assert_eq!(w.runs, 3);
        assert_eq!(w.interval_ms, Some(1000));
        assert_eq!(w.counters["steps"], 3);
        assert_eq!(w.counters["last"], 3);
        assert!(w.busy_with.is_none(), "cleared after the step");
        assert!(w.last_run.as_ref().unwrap().ok);
        rt.shutdown(Duration::from_secs(1)).await;
        assert_eq!(rt.workers()[0].state, Phase::Stopped);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(steps.load(Ordering::SeqCst), 3, "no step after shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn busy_steps_run_back_to_back_and_done_ends_the_worker() {
        let rt = Runtime::new();
        let (mut p, steps) = Probe::new(WorkerState::Busy, WorkerState::Busy);
        p.done_after = 10;
        rt.spawn(p);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(steps.load(Ordering::SeqCst), 10);
        assert_eq!(rt.workers()[0].state, Phase::Done);
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_steps_are_paced() {
        let (p, steps) = Probe::new(
            WorkerState::Busy,
            WorkerState::Throttled(Duration::from_millis(100)),
        );
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(drive(p, rx));
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(steps.load(Ordering::SeqCst), 5);
        tx.send_replace(true);
        let info = task.await.unwrap();
        assert_eq!(info.state, Phase::Stopped);
        assert_eq!(info.runs, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_counted_and_the_worker_keeps_going() {
        let rt = Runtime::new();
        let (mut p, steps) = Probe::new(WorkerState::Busy, WorkerState::Idle);
        p.fail = true;
        rt.spawn(p);
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert_eq!(
            steps.load(Ordering::SeqCst),
            3,
            "a failed step is followed by a wait"
        );
        let w = &rt.workers()[0];
        assert_eq!((w.errors, w.consecutive_errors, w.runs), (3, 3, 3));
        assert_eq!(w.last_error.as_ref().unwrap().message, "step 3 failed");
        assert!(!w.last_run.as_ref().unwrap().ok);
        rt.shutdown(Duration::from_secs(1)).await;
    }

    #[test]
    fn error_lines_are_rate_limited() {
        let mut l = LogLimiter::default();
        let t0 = Instant::now();
        assert_eq!(l.allow(t0), Some(0), "the first error is logged");
        for s in 1..10 {
            assert_eq!(l.allow(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(
            l.allow(t0 + ERROR_LOG_INTERVAL),
            Some(9),
            "the next line says how many were left out"
        );
        assert_eq!(l.allow(t0 + ERROR_LOG_INTERVAL), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_worker_is_aborted_after_the_grace_and_off_workers_are_listed() {
        struct Stuck;
        impl Worker for Stuck {
            fn name(&self) -> String {
                "stuck".into()
            }
            fn interval(&self) -> Duration {
                Duration::from_millis(1)
            }
            async fn work(&mut self, cx: &Context) -> StepResult {
                cx.busy_with("ignoring shutdown");
                futures::future::pending::<()>().await;
                Ok(WorkerState::Idle)
            }
        }
        let rt = Runtime::new();
        rt.spawn(Stuck);
        rt.off("reaper", "storage.reap_interval = 0");
        tokio::time::sleep(Duration::from_millis(10)).await;
        let w = rt.workers();
        assert_eq!(w[0].state, Phase::Busy);
        assert_eq!(w[0].busy_with.as_deref(), Some("ignoring shutdown"));
        assert_eq!(w[1].state, Phase::Off);
        assert_eq!(w[1].note.as_deref(), Some("storage.reap_interval = 0"));
        let t = Instant::now();
        rt.shutdown(Duration::from_secs(5)).await;
        assert!(t.elapsed() >= Duration::from_secs(5));
        assert_eq!(rt.workers()[0].state, Phase::Stopped);
    }

    #[tokio::test]
    async fn a_panicking_step_marks_the_worker_failed() {
        struct Boom;
        impl Worker for Boom {
            fn name(&self) -> String {
                "boom".into()
            }
            fn interval(&self) -> Duration {
                Duration::from_millis(1)
            }
            fn first_step(&self) -> WorkerState {
                WorkerState::Busy
            }
            async fn work(&mut self, _: &Context) -> StepResult {
                panic!("kaboom")
            }
        }
        let (_tx, rx) = watch::channel(false);
        let info = drive(Boom, rx).await;
        assert_eq!(info.state, Phase::Failed);
        assert!(info.last_error.unwrap().message.contains("kaboom"));
    }
}
