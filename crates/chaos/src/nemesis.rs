//! Carries out a [`crate::schedule`] on a running cluster of real processes.
//!
//! Partitions are made by the harness's link proxies (every internode
//! connection, to a node's cluster port, goes through one proxy per directed
//! link; clients reach the public ports directly), so a cut is a real black
//! hole the nodes' own timeouts and failure detector have to notice.
//! Kills are `SIGKILL`s of the process, restarts reopen the same RocksDB,
//! pauses are `SIGSTOP`: the node keeps its sockets, its peers' calls hang.
//!
//! Disk and clock faults go through the harness too: a wiped disk is a
//! `SIGKILL` and the data directory removed; a power cut is a `SIGKILL` and
//! every file cut back to what the node had fsynced (the harness's
//! `LD_PRELOAD` fault layer records the sync points); a full disk and a
//! skewed wall clock are flags that layer reads on every call of the
//! running node (`dynkv_tests::faults`).
//!
//! The nemesis never panics on a fault that did not take (a node that does
//! not come back within the bound is recorded as a failed action and left
//! for the final heal), so a run always reaches the checker.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use dynkv_tests::Cluster;
use dynkv_tests::faults::Unsynced;

use crate::history::{Action, FaultEvent, Record, Recorder};
use crate::schedule::Step;

/// How long a restarted node may take to answer `/health`.
const RESTART_BOUND: Duration = Duration::from_secs(30);
/// How long a membership change may take to finish its handoff.
const MEMBERSHIP_BOUND: Duration = Duration::from_secs(90);

/// The fault injector and what it has broken so far.
pub struct Nemesis<'a> {
    cluster: &'a mut Cluster,
    recorder: &'a Recorder,
    t0: Instant,
    killed: BTreeSet<usize>,
    paused: BTreeSet<usize>,
    /// Nodes whose disk is full or clock is off now.
    disk_or_clock: BTreeSet<usize>,
    /// Nodes made to leave the cluster (they may stop on their own).
    left: BTreeSet<usize>,
    /// Nodes found dead that nothing killed, not restarted yet.
    crashed: BTreeSet<usize>,
    http: reqwest::Client,
}

impl<'a> Nemesis<'a> {
    /// A nemesis for `cluster`; timestamps are relative to `t0`.
    pub fn new(cluster: &'a mut Cluster, recorder: &'a Recorder, t0: Instant) -> Self {
        Nemesis {
            cluster,
            recorder,
            t0,
            killed: BTreeSet::new(),
            paused: BTreeSet::new(),
            disk_or_clock: BTreeSet::new(),
            left: BTreeSet::new(),
            crashed: BTreeSet::new(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("HTTP client"),
        }
    }

    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    /// Runs the schedule to its end, or until `stop` resolves.
    pub async fn run(&mut self, steps: &[Step], stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        for step in steps {
            let at = self.t0 + Duration::from_millis(step.at_ms);
            tokio::select! {
                _ = tokio::time::sleep_until(at.into()) => {}
                _ = &mut stop => return,
            }
            self.apply(&step.action).await;
        }
    }

    /// Records every node whose process is gone though the nemesis did not
    /// kill it (a crash), and counts it as down from now on.
    pub fn notice_deaths(&mut self) {
        for i in 1..=self.cluster.nodes.len() {
            if self.killed.contains(&i) || self.cluster.is_running(i) {
                continue;
            }
            // A joiner that left has been stopped on purpose.
            if self.left.contains(&i) {
                continue;
            }
            self.killed.insert(i);
            self.crashed.insert(i);
            self.paused.remove(&i);
            let now = self.now_us();
            self.recorder.record(Record::Nemesis(FaultEvent {
                start_us: now,
                end_us: now,
                action: Action::Died { node: i },
                ok: true,
                detail: self.cluster.log_tail(i),
            }));
        }
    }

    /// Carries out one action and records it.
    pub async fn apply(&mut self, action: &Action) {
        self.notice_deaths();
        let start_us = self.now_us();
        let mut note = String::new();
        let result = match action {
            Action::Partition { groups } => {
                let g: Vec<&[usize]> = groups.iter().map(Vec::as_slice).collect();
                self.cluster.partition(&g);
                Ok(())
            }
            Action::Isolate { node } => {
                self.cluster.isolate(*node);
                Ok(())
            }
            Action::Cut { links } => {
                for (i, j) in links {
                    self.cluster.cut(*i, *j);
                }
                Ok(())
            }
            Action::HealNetwork => {
                self.cluster.heal();
                Ok(())
            }
            Action::Kill { node } => {
                // A paused process dies of SIGKILL too; forget the pause.
                self.paused.remove(node);
                self.cluster.kill(*node);
                self.killed.insert(*node);
                Ok(())
            }
            Action::Restart { node } => self.restart(*node).await,
            Action::Pause { node } => {
                if self.killed.contains(node) {
                    Err(format!("n{node} is down"))
                } else {
                    self.cluster.pause(*node);
                    self.paused.insert(*node);
                    Ok(())
                }
            }
            Action::Resume { node } => {
                self.cluster.resume(*node);
                self.paused.remove(node);
                Ok(())
            }
            Action::HealAll => self.heal_all().await,
            Action::Join { node } => self.join(*node).await,
            Action::Leave { node } => {
                self.left.insert(*node);
                self.leave(*node).await
            }
            Action::WipeDisk { node } => {
                self.paused.remove(node);
                self.cluster.kill(*node);
                self.killed.insert(*node);
                self.cluster
                    .wipe_data(*node)
                    .map_err(|e| format!("wiping n{node}'s data dir: {e}"))
            }
            Action::PowerCut { node, torn, seed } => {
                self.paused.remove(node);
                self.cluster.kill(*node);
                self.killed.insert(*node);
                let keep = if *torn {
                    Unsynced::KeepRandomPrefix(*seed)
                } else {
                    Unsynced::DropAll
                };
                match self.cluster.drop_unsynced(*node, keep) {
                    Ok(report) => {
                        note = report.summary();
                        Ok(())
                    }
                    Err(e) => Err(format!("power cut of n{node}: {e}")),
                }
            }
            Action::DiskFull { node } => self.set_disk_full(*node, true),
            Action::DiskFree { node } => {
                let r = self.set_disk_full(*node, false);
                self.restart_crashed(*node, &mut note).await.and(r)
            }
            Action::ClockSkew { node, offset_ms } => self.set_clock(*node, *offset_ms),
            Action::ClockReset { node } => {
                let r = self.set_clock(*node, 0);
                self.restart_crashed(*node, &mut note).await.and(r)
            }
            Action::Died { node } => Err(format!("n{node}: `died` is observed, not injected")),
        };
        let (ok, detail) = match result {
            Ok(()) => (true, note),
            Err(e) => (false, e),
        };
        self.recorder.record(Record::Nemesis(FaultEvent {
            start_us,
            end_us: self.now_us(),
            action: action.clone(),
            ok,
            detail,
        }));
    }

    /// A node that died during a disk or clock fault is started again when
    /// that fault is healed (as an operator would once space is back); its
    /// death stays in the history.
    async fn restart_crashed(&mut self, node: usize, note: &mut String) -> Result<(), String> {
        if !self.crashed.remove(&node) {
            return Ok(());
        }
        *note = format!("n{node} had died; restarted");
        self.restart(node).await
    }

    fn set_disk_full(&mut self, node: usize, on: bool) -> Result<(), String> {
        self.cluster
            .disk_full(node, on)
            .map_err(|e| format!("disk full on n{node}: {e}"))?;
        if on {
            self.disk_or_clock.insert(node);
        } else {
            self.disk_or_clock.remove(&node);
        }
        Ok(())
    }

    fn set_clock(&mut self, node: usize, offset_ms: i64) -> Result<(), String> {
        self.cluster
            .skew_clock(node, offset_ms)
            .map_err(|e| format!("clock of n{node}: {e}"))?;
        if offset_ms != 0 {
            self.disk_or_clock.insert(node);
        } else {
            self.disk_or_clock.remove(&node);
        }
        Ok(())
    }

    /// Starts a new node, joins it through n1 and commits; waits for the
    /// handoff to finish.
    async fn join(&mut self, node: usize) -> Result<(), String> {
        if self.cluster.nodes.len() + 1 != node {
            return Err(format!("n{node} is not the next node number"));
        }
        self.wait_no_transition().await?;
        let i = self.cluster.start_joiner().await;
        // The seed is n1's internode address (its cluster port).
        let seed = self.cluster.node(1).cluster_addr();
        let (s, v) = self
            .cluster
            .admin(i, "join", serde_json::json!({ "seed": seed }))
            .await;
        if !s.is_success() {
            return Err(format!("join refused: {v}"));
        }
        self.commit().await?;
        self.wait_no_transition().await
    }

    /// Stages `node`'s leave and commits; waits for the handoff to finish.
    async fn leave(&mut self, node: usize) -> Result<(), String> {
        self.wait_no_transition().await?;
        let (s, v) = self
            .cluster
            .admin(
                1,
                "leave",
                serde_json::json!({ "node": format!("n{node}") }),
            )
            .await;
        if !s.is_success() {
            return Err(format!("leave refused: {v}"));
        }
        self.commit().await?;
        self.wait_no_transition().await
    }

    /// Commits the staged change through a node that answers.
    async fn commit(&self) -> Result<(), String> {
        let mut last = String::new();
        for i in 1..=self.cluster.nodes.len() {
            if self.killed.contains(&i) || self.paused.contains(&i) {
                continue;
            }
            let (s, v) = self
                .cluster
                .admin(i, "commit", serde_json::Value::Null)
                .await;
            if s.is_success() {
                return Ok(());
            }
            last = v.to_string();
        }
        Err(format!("commit refused: {last}"))
    }

    /// Waits (bounded) until a node that answers reports no membership change in progress.
    async fn wait_no_transition(&self) -> Result<(), String> {
        let token = self.cluster.admin_token();
        let done = dynkv_tests::poll(MEMBERSHIP_BOUND, || async {
            for i in 1..=self.cluster.nodes.len() {
                if self.killed.contains(&i) || self.paused.contains(&i) {
                    continue;
                }
                let url = format!("{}/admin/members", self.cluster.url(i));
                let Ok(r) = self
                    .http
                    .get(&url)
                    .header("x-dynkv-token", &token)
                    .send()
                    .await
                else {
                    continue;
                };
                let Ok(b) = r.bytes().await else { continue };
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b) else {
                    continue;
                };
                return v["transition"].is_null();
            }
            false
        })
        .await;
        if done {
            Ok(())
        } else {
            Err(format!(
                "membership change still in progress after {MEMBERSHIP_BOUND:?}"
            ))
        }
    }

    async fn restart(&mut self, node: usize) -> Result<(), String> {
        self.crashed.remove(&node);
        if !self.killed.contains(&node) && self.cluster.is_running(node) {
            return Ok(());
        }
        // Reap a process that died on its own, then start it again.
        self.cluster.kill(node);
        self.cluster.spawn_again(node);
        if self.wait_healthy(node, RESTART_BOUND).await {
            self.killed.remove(&node);
            Ok(())
        } else {
            let running = self.cluster.is_running(node);
            Err(format!(
                "n{node} did not answer /health within {RESTART_BOUND:?} (process running: {running}); log tail:\n{}",
                self.cluster.log_tail(node)
            ))
        }
    }

    /// Heals every link, resumes every paused node and restarts every dead
    /// one; fails if a node still does not answer.
    async fn heal_all(&mut self) -> Result<(), String> {
        self.cluster.heal();
        for i in 1..=self.cluster.nodes.len() {
            // SIGCONT to every node is harmless and covers any pause.
            self.cluster.resume(i);
        }
        self.paused.clear();
        let mut errors = Vec::new();
        // Space back and clocks true on every node that had them changed.
        for i in std::mem::take(&mut self.disk_or_clock) {
            for r in [
                self.cluster.disk_full(i, false),
                self.cluster.skew_clock(i, 0),
            ] {
                if let Err(e) = r {
                    errors.push(format!("n{i}: {e}"));
                }
            }
        }
        for i in 1..=self.cluster.nodes.len() {
            if self.killed.contains(&i) || !self.cluster.is_running(i) {
                self.killed.insert(i);
                if let Err(e) = self.restart(i).await {
                    errors.push(e);
                }
            } else if !self.wait_healthy(i, RESTART_BOUND).await {
                errors.push(format!("n{i} does not answer /health"));
            }
        }
        // Every node is back: a membership change still running can finish.
        if let Err(e) = self.wait_no_transition().await {
            errors.push(e);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }

    async fn wait_healthy(&self, i: usize, bound: Duration) -> bool {
        let url = format!("{}/health", self.cluster.url(i));
        dynkv_tests::poll(bound, || async {
            matches!(self.http.get(&url).send().await, Ok(r) if r.status().is_success())
        })
        .await
    }

    /// Waits until every node sees every other one up (its breakers
    /// closed), so that what follows is measured on a whole cluster.
    pub async fn wait_all_see_all_up(&self, bound: Duration) -> bool {
        let n = self.cluster.nodes.len();
        dynkv_tests::poll(bound, || async {
            for i in 1..=n {
                let url = format!("{}/admin/cluster", self.cluster.url(i));
                let Ok(r) = self.http.get(&url).send().await else {
                    return false;
                };
                let Ok(b) = r.bytes().await else {
                    return false;
                };
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b) else {
                    return false;
                };
                let all_up = v["members"]
                    .as_array()
                    .is_some_and(|m| m.iter().all(|m| m["up"] == true));
                if !all_up {
                    return false;
                }
            }
            true
        })
        .await
    }
}
