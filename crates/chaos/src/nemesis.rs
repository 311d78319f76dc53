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
//! Membership changes commit and return: their handoff runs while later
//! steps go on, so a [`Action::HandoffFault`] lands during it (aimed at
//! the joiner, the leaver or a transfer source), and the change's window
//! ends at an [`Action::AwaitHandoff`]. Every commit attempt is recorded
//! with its outcome ([`Action::Commit`]); a refused commit is retried
//! through other nodes, bounded in time.
//!
//! The nemesis never panics on a fault that did not take (a node that does
//! not come back within the bound is recorded as a failed action and left
//! for the final heal), so a run always reaches the checker.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use dynkv_tests::Cluster;
use dynkv_tests::faults::Unsynced;

use crate::history::{
    Action, FaultEvent, HandoffFaultKind, HandoffRole, Record, Recorder, RingMember, RingView,
};
use crate::schedule::Step;

/// How long a restarted node may take to answer `/health`.
const RESTART_BOUND: Duration = Duration::from_secs(30);
/// How long a membership change may take to finish its handoff.
const MEMBERSHIP_BOUND: Duration = Duration::from_secs(90);
/// How long a change's commit is retried through other nodes after
/// refusals (e.g. while the claimant is unreachable).
const COMMIT_BOUND: Duration = Duration::from_secs(60);
/// Pause between rounds of commit attempts.
const COMMIT_RETRY: Duration = Duration::from_secs(2);

/// The membership change whose handoff may be running, and who takes part.
#[derive(Clone, Debug, Default)]
struct Change {
    joiner: Option<usize>,
    leaver: Option<usize>,
}

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
    /// The last committed change, until its handoff is awaited.
    change: Option<Change>,
    /// The handoff fault in force: its node and kind.
    handoff_fault: Option<(usize, HandoffFaultKind)>,
    /// Nodes the run started with (the ones with link proxies).
    original: usize,
    http: reqwest::Client,
    /// For membership commands, which may wait on another node.
    admin_http: reqwest::Client,
}

impl<'a> Nemesis<'a> {
    /// A nemesis for `cluster`; timestamps are relative to `t0`.
    pub fn new(cluster: &'a mut Cluster, recorder: &'a Recorder, t0: Instant) -> Self {
        let original = cluster.nodes.len();
        Nemesis {
            cluster,
            recorder,
            t0,
            killed: BTreeSet::new(),
            paused: BTreeSet::new(),
            disk_or_clock: BTreeSet::new(),
            left: BTreeSet::new(),
            crashed: BTreeSet::new(),
            change: None,
            handoff_fault: None,
            original,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("HTTP client"),
            admin_http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
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
                during_handoff: false,
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
            Action::Join { node } => self.join(*node, None).await,
            Action::Leave { node } => self.leave(&[*node]).await,
            Action::JoinAndLeave { join, leave } => self.join(*join, Some(*leave)).await,
            Action::RacingCommits { leave } => self.racing_commits(*leave).await,
            Action::HandoffFault { role, kind, pick } => {
                return self.handoff_fault(*role, *kind, *pick).await;
            }
            Action::HandoffHeal => return self.handoff_heal().await,
            Action::AwaitHandoff => {
                let r = self.wait_no_transition().await;
                self.change = None;
                r
            }
            Action::Commit { node, .. } => Err(format!(
                "n{node}: `commit` is recorded by the membership steps, not planned"
            )),
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
        let during_handoff = action.is_fault()
            && !action.changes_membership()
            && self.change.is_some()
            && self.transition_in_progress().await;
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
            during_handoff,
        }));
    }

    /// Records one event that happened between `start_us` and now.
    fn record(&self, start_us: u64, action: Action, result: Result<String, String>, during: bool) {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(e) => (false, e),
        };
        self.recorder.record(Record::Nemesis(FaultEvent {
            start_us,
            end_us: self.now_us(),
            action,
            ok,
            detail,
            during_handoff: during,
        }));
    }

    /// Original nodes neither killed nor paused, first to last.
    fn answering(&self) -> Vec<usize> {
        (1..=self.original)
            .filter(|i| !self.killed.contains(i) && !self.paused.contains(i))
            .collect()
    }

    /// Injects a fault that loses no data into the running handoff, on the
    /// node of the change that `role` names, and records it as the
    /// concrete kill, pause or isolation.
    async fn handoff_fault(&mut self, role: HandoffRole, kind: HandoffFaultKind, pick: u32) {
        self.notice_deaths();
        let start_us = self.now_us();
        let during = self.change.is_some() && self.transition_in_progress().await;
        let change = self.change.clone().unwrap_or_default();
        let target = match role {
            HandoffRole::Joiner => change.joiner,
            HandoffRole::Leaver => change.leaver,
            HandoffRole::Source => None,
        }
        .filter(|n| !self.killed.contains(n) && !self.paused.contains(n));
        let (node, why) = match target {
            Some(n) => (n, format!("{role:?} of the change").to_lowercase()),
            None => {
                // A real source when one is seen (a node with an unfinished
                // outbound transfer), else any answering original member.
                let candidates: Vec<usize> = self
                    .answering()
                    .into_iter()
                    .filter(|n| Some(*n) != change.leaver)
                    .collect();
                let mut sources = Vec::new();
                for &n in &candidates {
                    if self.sends_transfers(n).await {
                        sources.push(n);
                    }
                }
                let (list, why) = if sources.is_empty() {
                    (candidates, "a member (no unfinished transfer seen)")
                } else {
                    (sources, "a transfer source")
                };
                if list.is_empty() {
                    self.record(
                        start_us,
                        Action::HandoffFault { role, kind, pick },
                        Err("no node to aim at".into()),
                        during,
                    );
                    return;
                }
                (list[pick as usize % list.len()], why.to_string())
            }
        };
        // Only proxied nodes can be cut off.
        let kind = if kind == HandoffFaultKind::Isolate && node > self.original {
            HandoffFaultKind::Kill
        } else {
            kind
        };
        let action = match kind {
            HandoffFaultKind::Kill => {
                self.paused.remove(&node);
                self.cluster.kill(node);
                self.killed.insert(node);
                Action::Kill { node }
            }
            HandoffFaultKind::Pause => {
                self.cluster.pause(node);
                self.paused.insert(node);
                Action::Pause { node }
            }
            HandoffFaultKind::Isolate => {
                self.cluster.isolate(node);
                Action::Isolate { node }
            }
        };
        self.handoff_fault = Some((node, kind));
        let detail = format!(
            "aimed at the handoff: {why}{}",
            if during {
                ""
            } else {
                " (no transition seen running)"
            }
        );
        self.record(start_us, action, Ok(detail), during);
    }

    /// Heals the handoff fault in force, if any.
    async fn handoff_heal(&mut self) {
        let Some((node, kind)) = self.handoff_fault.take() else {
            return;
        };
        let start_us = self.now_us();
        let (action, result) = match kind {
            HandoffFaultKind::Kill => (Action::Restart { node }, self.restart(node).await),
            HandoffFaultKind::Pause => {
                self.cluster.resume(node);
                self.paused.remove(&node);
                (Action::Resume { node }, Ok(()))
            }
            HandoffFaultKind::Isolate => {
                self.cluster.heal();
                (Action::HealNetwork, Ok(()))
            }
        };
        let during = self.change.is_some() && self.transition_in_progress().await;
        self.record(
            start_us,
            action,
            result.map(|()| "heals the handoff fault".to_string()),
            during,
        );
    }

    /// Whether node `n` still owes a stream of the running change.
    async fn sends_transfers(&self, n: usize) -> bool {
        let url = format!("{}/admin/cluster", self.cluster.url(n));
        let Ok(r) = self.http.get(&url).send().await else {
            return false;
        };
        let Ok(v) = r.json::<serde_json::Value>().await else {
            return false;
        };
        // A source still owes a stream when it is among a pending
        // transfer's `waiting_for` (the sources that are up and have not
        // streamed their copy yet).
        let me = format!("n{n}");
        v["transfers"]["transfers"].as_array().is_some_and(|t| {
            t.iter().any(|t| {
                t["complete"] == false
                    && t["waiting_for"]
                        .as_array()
                        .is_some_and(|w| w.iter().any(|x| x == me.as_str()))
            })
        })
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

    /// Starts node `node` (a new one), stages its join through an original
    /// member, and with `leave` also that node's leave on the same member;
    /// then commits both at once. Returns once a commit was accepted: the
    /// handoff runs on.
    async fn join(&mut self, node: usize, leave: Option<usize>) -> Result<(), String> {
        if self.cluster.nodes.len() + 1 != node {
            return Err(format!("n{node} is not the next node number"));
        }
        self.wait_no_transition().await?;
        let via = *self.answering().first().ok_or("no original node answers")?;
        let i = self.cluster.start_joiner().await;
        // The seed is a member's internode address (its cluster port).
        let seed = self.cluster.node(via).cluster_addr();
        let (s, v) = self
            .admin_post(i, "join", serde_json::json!({ "seed": seed }))
            .await;
        if s != Some(200) && !matches!(s, Some(s) if (200..300).contains(&s)) {
            return Err(format!("join of n{node} through n{via} refused: {v}"));
        }
        let leaver = match leave {
            Some(l) => {
                self.left.insert(l);
                let (s, v) = self
                    .admin_post(via, "leave", serde_json::json!({ "node": format!("n{l}") }))
                    .await;
                if !matches!(s, Some(s) if (200..300).contains(&s)) {
                    return Err(format!("leave of n{l} staged on n{via} refused: {v}"));
                }
                Some(l)
            }
            None => None,
        };
        self.change = Some(Change {
            joiner: Some(node),
            leaver,
        });
        self.commit_retrying(&[via]).await
    }

    /// Stages the leave of `nodes` and commits; returns once a commit was
    /// accepted.
    async fn leave(&mut self, nodes: &[usize]) -> Result<(), String> {
        self.wait_no_transition().await?;
        let via = *self.answering().first().ok_or("no original node answers")?;
        for &node in nodes {
            self.left.insert(node);
            let (s, v) = self
                .admin_post(
                    via,
                    "leave",
                    serde_json::json!({ "node": format!("n{node}") }),
                )
                .await;
            if !matches!(s, Some(s) if (200..300).contains(&s)) {
                return Err(format!("leave of n{node} refused: {v}"));
            }
        }
        self.change = Some(Change {
            joiner: None,
            leaver: nodes.first().copied(),
        });
        self.commit_retrying(&[via]).await
    }

    /// Stages `leave`'s leave on one node, waits until a second node sees
    /// it staged, then commits on both at the same moment. Each outcome is
    /// recorded; one accepted commit is the expected result (a refused
    /// second one is correct). Without any, retries through other nodes.
    async fn racing_commits(&mut self, leave: usize) -> Result<(), String> {
        self.wait_no_transition().await?;
        let answering = self.answering();
        let (Some(&a), Some(&b)) = (answering.first(), answering.last()) else {
            return Err("no original node answers".into());
        };
        self.left.insert(leave);
        let (s, v) = self
            .admin_post(
                a,
                "leave",
                serde_json::json!({ "node": format!("n{leave}") }),
            )
            .await;
        if !matches!(s, Some(s) if (200..300).contains(&s)) {
            return Err(format!("leave of n{leave} refused: {v}"));
        }
        self.change = Some(Change {
            joiner: None,
            leaver: Some(leave),
        });
        // Gossip spreads the staged leave to b (bounded; the race goes on
        // regardless, b then has nothing to commit or is refused).
        let id = format!("n{leave}");
        dynkv_tests::poll(Duration::from_secs(10), || async {
            let v = self.members(b).await;
            v.and_then(|v| {
                v["members"].as_array().map(|m| {
                    m.iter()
                        .any(|m| m["id"] == id.as_str() && m["status"] == "leaving")
                })
            })
            .unwrap_or(false)
        })
        .await;
        let t = self.now_us();
        let (ra, rb) = tokio::join!(
            self.admin_post(a, "commit", serde_json::Value::Null),
            self.admin_post(b, "commit", serde_json::Value::Null)
        );
        let mut accepted = 0;
        for (node, (s, v)) in [(a, ra), (b, rb)] {
            let ok = matches!(s, Some(s) if (200..300).contains(&s));
            accepted += usize::from(ok);
            self.record_commit(t, node, ok, s, &v);
        }
        if accepted > 0 {
            return Ok(());
        }
        self.commit_retrying(&[a, b]).await
    }

    /// Records one commit attempt and its outcome.
    fn record_commit(
        &self,
        start_us: u64,
        node: usize,
        accepted: bool,
        status: Option<u16>,
        body: &serde_json::Value,
    ) {
        let detail = match (accepted, status) {
            (true, _) => String::new(),
            (false, Some(s)) => format!("refused: {s} {body}"),
            (false, None) => format!("no answer: {body}"),
        };
        self.record(
            start_us,
            Action::Commit { node, accepted },
            Ok(detail),
            false,
        );
    }

    /// Commits the staged change: through `first` and then every other
    /// answering node, in rounds, until one accepts or a transition is seen
    /// running (a commit whose answer was lost), bounded by
    /// [`COMMIT_BOUND`]. Every attempt is recorded.
    async fn commit_retrying(&self, first: &[usize]) -> Result<(), String> {
        let deadline = Instant::now() + COMMIT_BOUND;
        let mut last = String::new();
        loop {
            let mut order: Vec<usize> = first.to_vec();
            order.extend(self.answering().into_iter().filter(|n| !first.contains(n)));
            for node in order {
                if self.killed.contains(&node) || self.paused.contains(&node) {
                    continue;
                }
                let t = self.now_us();
                let (s, v) = self
                    .admin_post(node, "commit", serde_json::Value::Null)
                    .await;
                let ok = matches!(s, Some(s) if (200..300).contains(&s));
                self.record_commit(t, node, ok, s, &v);
                if ok {
                    return Ok(());
                }
                last = format!("n{node}: {v}");
                if self.transition_in_progress().await {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no commit accepted within {COMMIT_BOUND:?}; last refusal {last}"
                ));
            }
            tokio::time::sleep(COMMIT_RETRY).await;
        }
    }

    /// POSTs a membership command to node `i` with the admin token:
    /// the status (none without an answer) and the body.
    async fn admin_post(
        &self,
        i: usize,
        command: &str,
        body: serde_json::Value,
    ) -> (Option<u16>, serde_json::Value) {
        let url = format!("{}/admin/{command}", self.cluster.url(i));
        let r = self
            .admin_http
            .post(url)
            .json(&body)
            .header("x-dynkv-token", self.cluster.admin_token())
            .send()
            .await;
        match r {
            Ok(r) => {
                let s = r.status().as_u16();
                let b = r.bytes().await.unwrap_or_default();
                let v = serde_json::from_slice(&b).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&b).into())
                });
                (Some(s), v)
            }
            Err(e) => (None, serde_json::Value::String(e.to_string())),
        }
    }

    /// Node `i`'s `/admin/members`, if it answers.
    async fn members(&self, i: usize) -> Option<serde_json::Value> {
        let url = format!("{}/admin/members", self.cluster.url(i));
        let r = self
            .http
            .get(&url)
            .header("x-dynkv-token", self.cluster.admin_token())
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        let b = r.bytes().await.ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// Whether the first answering node reports a membership change in
    /// progress.
    async fn transition_in_progress(&self) -> bool {
        for i in 1..=self.cluster.nodes.len() {
            if self.killed.contains(&i) || self.paused.contains(&i) || self.left.contains(&i) {
                continue;
            }
            if let Some(v) = self.members(i).await {
                return !v["transition"].is_null();
            }
        }
        false
    }

    /// Waits (bounded) until a node that answers reports no membership change in progress.
    async fn wait_no_transition(&self) -> Result<(), String> {
        let done = dynkv_tests::poll(MEMBERSHIP_BOUND, || async {
            for i in 1..=self.cluster.nodes.len() {
                if self.killed.contains(&i) || self.paused.contains(&i) || self.left.contains(&i) {
                    continue;
                }
                if let Some(v) = self.members(i).await {
                    return v["transition"].is_null();
                }
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

    /// Every running member's view of the ring (`/admin/members`), polled
    /// until they agree or `bound` passes (gossip spreads the last
    /// switch); nodes made to leave are not asked.
    pub async fn ring_views(&mut self, bound: Duration) -> Vec<RingView> {
        let deadline = Instant::now() + bound;
        loop {
            let mut views = Vec::new();
            for i in 1..=self.cluster.nodes.len() {
                if self.left.contains(&i) || !self.cluster.is_running(i) {
                    continue;
                }
                views.push(match self.members(i).await {
                    Some(v) => ring_view(i, &v),
                    None => RingView {
                        node: i,
                        error: Some("/admin/members did not answer".into()),
                        ..RingView::default()
                    },
                });
            }
            if rings_agree(&views) || Instant::now() >= deadline {
                return views;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
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
        self.handoff_fault = None;
        for i in 1..=self.cluster.nodes.len() {
            if self.left.contains(&i) {
                // A node made to leave may have stopped on its own once its
                // data moved; one the nemesis killed is started again so a
                // leave still running can finish, but it owes no answer.
                if self.killed.contains(&i) {
                    let _ = self.restart(i).await;
                }
                continue;
            }
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
        self.change = None;
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
            for i in (1..=n).filter(|i| !self.left.contains(i)) {
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

/// One node's ring as `/admin/members` shows it.
fn ring_view(node: usize, v: &serde_json::Value) -> RingView {
    let mut members: Vec<RingMember> = v["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| RingMember {
                    id: m["id"].as_str().unwrap_or_default().to_string(),
                    status: m["status"].as_str().unwrap_or_default().to_string(),
                    partitions_owned: m["partitions_owned"].as_u64().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    members.sort();
    RingView {
        node,
        version: v["version"].as_u64(),
        members,
        transition: !v["transition"].is_null(),
        error: None,
    }
}

/// Whether every view was read and all report the same version, members,
/// statuses and partitions owned, with no change in progress.
pub fn rings_agree(views: &[RingView]) -> bool {
    let Some(first) = views.first() else {
        return false;
    };
    views.iter().all(|v| {
        v.error.is_none()
            && !v.transition
            && v.version == first.version
            && v.members == first.members
    })
}
