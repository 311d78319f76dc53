//! The nemesis's plan: a seeded, timed list of faults, fixed before the run
//! starts so that a seed names exactly one schedule whatever the cluster
//! does.
//!
//! The plan alternates *episodes* and quiet gaps. An episode injects a
//! network fault (a random split, one node isolated, a majority/minority
//! split, or one-way cuts), a process fault (`kill -9` then restart, or
//! SIGSTOP then SIGCONT) or both at once, holds them a few seconds and heals
//! them. The quiet gaps matter as much as the faults: they are when hinted
//! handoff and anti-entropy run, when the failure detector sees nodes come
//! back, and when read-your-quorum can be checked without a fault in the way.
//!
//! Disk and clock faults (a wiped disk, a power cut, a full disk, a skewed
//! clock) take an episode's process-fault slot: an episode holds at most one
//! of them, on one node, and no kill or pause then, so at most one node is
//! impaired by a process, disk or clock fault at any time (network faults go
//! on beside them). After a fault that lost data (wipe, power cut) the next
//! one waits [`FaultMix::data_loss_spacing_ms`] past the node's restart, so
//! that repair has put back the lost replica before another goes. They are
//! drawn from their own random stream: turning them off leaves the rest of a
//! seed's schedule as it was.
//!
//! Membership changes (with [`FaultMix::membership`]): a join at a quarter
//! of the run, a join racing a leave at two fifths, and a leave committed on
//! two nodes at the same moment at three fifths. Each opens a window of
//! [`MEMBERSHIP_WINDOW_MS`] in which the episodes hold network faults only
//! and no disk fault, and in which one fault that loses no data (`kill -9`,
//! a pause or an isolation) is aimed at a node of the change while its
//! handoff runs ([`Action::HandoffFault`]). The window closes with an
//! [`Action::AwaitHandoff`] before the first episode that may lose data, so
//! a wiped disk or a power cut never meets a running handoff. The changes
//! draw from a third stream.

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::history::{Action, HandoffFaultKind, HandoffRole};

/// How long after a membership change no episode process fault and no
/// disk fault is planned, ms (the change's own handoff fault lands in it).
pub const MEMBERSHIP_WINDOW_MS: u64 = 25_000;

/// When the change's handoff fault lands, ms after the change's step
/// (starting a joiner and committing take a second or two).
const HANDOFF_FAULT_AFTER_MS: (u64, u64) = (2_000, 5_000);
/// How long a handoff fault is held, ms.
const HANDOFF_FAULT_HOLD_MS: (u64, u64) = (2_000, 5_000);

/// The membership changes of a run on `nodes` nodes lasting `duration_ms`,
/// with when they start: nodes `nodes + 1` and `nodes + 2` join and leave
/// again, so the original nodes stay members throughout.
pub fn membership_changes(duration_ms: u64, nodes: usize) -> Vec<(u64, Action)> {
    let (a, b) = (nodes + 1, nodes + 2);
    vec![
        (duration_ms / 4, Action::Join { node: a }),
        (
            duration_ms * 2 / 5,
            Action::JoinAndLeave { join: b, leave: a },
        ),
        (duration_ms * 3 / 5, Action::RacingCommits { leave: b }),
    ]
}

/// One planned action, `at_ms` after the run starts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Step {
    /// When.
    pub at_ms: u64,
    /// What.
    pub action: Action,
}

/// Which faults a schedule may use.
#[derive(Clone, Debug)]
pub struct FaultMix {
    /// Partitions, isolation and one-way cuts (through the link proxies).
    pub network: bool,
    /// `kill -9` and restart.
    pub kill: bool,
    /// SIGSTOP / SIGCONT.
    pub pause: bool,
    /// Shortest and longest episode, ms.
    pub episode_ms: (u64, u64),
    /// Shortest and longest quiet gap between episodes, ms.
    pub gap_ms: (u64, u64),
    /// Fault-free time at the start, ms (the cluster warms up, clients
    /// create the keys).
    pub warmup_ms: u64,
    /// Live membership changes ([`membership_changes`]), each with a fault
    /// aimed at its handoff, while the other faults go on.
    pub membership: bool,
    /// Lose a node's disk: kill it, wipe its data dir, restart it empty
    /// under the same id at the end of the episode.
    pub wipe: bool,
    /// Power cut: kill a node, drop what it had not fsynced, restart it at
    /// the end of the episode.
    pub power_cut: bool,
    /// A node's disk is full for the episode.
    pub disk_full: bool,
    /// A node's wall clock is 5-60 s off (either way) for the episode.
    pub clock_skew: bool,
    /// Share of eligible episodes that get a disk or clock fault.
    pub disk_share: f64,
    /// After a node that lost data is restarted, how long until another
    /// data-losing fault may start, ms.
    pub data_loss_spacing_ms: u64,
}

/// The kinds of disk and clock fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DiskKind {
    Wipe,
    PowerCut,
    DiskFull,
    ClockSkew,
}

impl DiskKind {
    fn loses_data(self) -> bool {
        matches!(self, DiskKind::Wipe | DiskKind::PowerCut)
    }
}

impl FaultMix {
    /// No disk or clock faults: partitions, kills and pauses (and
    /// membership) only, as before they existed.
    pub fn without_disk_faults(self) -> Self {
        FaultMix {
            wipe: false,
            power_cut: false,
            disk_full: false,
            clock_skew: false,
            ..self
        }
    }

    /// Whether the nodes must run under the fault layer (power cut, full
    /// disk, clock skew; a wipe needs nothing).
    pub fn needs_fault_layer(&self) -> bool {
        self.power_cut || self.disk_full || self.clock_skew
    }

    /// Whether a node may lose data it acknowledged.
    pub fn loses_data(&self) -> bool {
        self.wipe || self.power_cut
    }

    fn disk_kinds(&self) -> Vec<DiskKind> {
        [
            (self.wipe, DiskKind::Wipe),
            (self.power_cut, DiskKind::PowerCut),
            (self.disk_full, DiskKind::DiskFull),
            (self.clock_skew, DiskKind::ClockSkew),
        ]
        .into_iter()
        .filter_map(|(on, k)| on.then_some(k))
        .collect()
    }
}

impl Default for FaultMix {
    fn default() -> Self {
        FaultMix {
            network: true,
            kill: true,
            pause: true,
            episode_ms: (3_000, 9_000),
            gap_ms: (2_000, 5_000),
            warmup_ms: 3_000,
            membership: true,
            wipe: true,
            power_cut: true,
            disk_full: true,
            clock_skew: true,
            disk_share: 0.4,
            data_loss_spacing_ms: 15_000,
        }
    }
}

/// Builds the plan for a `duration_ms` fault phase on `nodes` nodes.
///
/// Every fault is healed by the end of its episode, so at `duration_ms`
/// nothing is left broken by the plan (the run still heals everything).
pub fn generate(seed: u64, duration_ms: u64, nodes: usize, mix: &FaultMix) -> Vec<Step> {
    // A distinct stream from the clients', which are seeded from the same seed.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7321);
    // Disk and clock faults draw from their own stream.
    let mut drng = StdRng::seed_from_u64(seed ^ 0x6469_736b_636c_6f63);
    let disk_kinds = mix.disk_kinds();
    // When the next data-losing fault may start.
    let mut data_loss_ok_at = 0u64;
    let mut steps = Vec::new();
    let all: Vec<usize> = (1..=nodes).collect();
    let mut t = mix.warmup_ms;
    let end = duration_ms.saturating_sub(1_000);
    // Membership changes get windows without episode process faults and
    // disk faults: the change's own handoff fault is the only node fault
    // in it, and nothing that loses data meets a handoff.
    let changes = if mix.membership && nodes >= 3 {
        membership_changes(duration_ms, nodes)
    } else {
        Vec::new()
    };
    let change_times: Vec<u64> = changes.iter().map(|(m, _)| *m).collect();
    let reserved = |from: u64, to: u64| {
        change_times
            .iter()
            .any(|&m| from < m + MEMBERSHIP_WINDOW_MS && to + 1_000 > m)
    };
    // Episode starts outside every window: a change's window closes before
    // the first of them after it.
    let mut open_starts = Vec::new();
    while nodes >= 2 && t + mix.episode_ms.0 <= end {
        let len = rng
            .random_range(mix.episode_ms.0..=mix.episode_ms.1)
            .min(end - t);
        if !reserved(t, t + len) {
            open_starts.push(t);
        }
        let mut net = mix.network && rng.random_bool(0.75);
        let mut proc_fault = (mix.kill || mix.pause) && rng.random_bool(0.55);
        // A disk or clock fault for this episode (never in a membership
        // window: a transfer source must stay whole).
        let disk = if disk_kinds.is_empty() || reserved(t, t + len) {
            None
        } else if drng.random_bool(mix.disk_share) {
            let allowed: Vec<DiskKind> = disk_kinds
                .iter()
                .copied()
                .filter(|k| !k.loses_data() || t >= data_loss_ok_at)
                .collect();
            allowed.choose(&mut drng).copied()
        } else {
            None
        };
        if reserved(t, t + len) {
            proc_fault = false;
            if !mix.network {
                t += len;
                continue;
            }
            net = true;
        }
        if !net && !proc_fault {
            if mix.network {
                net = true;
            } else if mix.kill || mix.pause {
                proc_fault = true;
            } else if disk_kinds.is_empty() {
                break;
            }
        }
        if net {
            let action = network_fault(&mut rng, &all);
            steps.push(Step { at_ms: t, action });
            steps.push(Step {
                at_ms: t + len,
                action: Action::HealNetwork,
            });
        }
        if proc_fault {
            let node = *all.choose(&mut rng).expect("nodes");
            let at = t + rng.random_range(0..=len / 2);
            let kill = match (mix.kill, mix.pause) {
                (true, true) => rng.random_bool(0.5),
                (k, _) => k,
            };
            let (down, up) = if kill {
                (Action::Kill { node }, Action::Restart { node })
            } else {
                (Action::Pause { node }, Action::Resume { node })
            };
            // A disk or clock fault takes the process fault's place (the
            // main stream is drawn all the same, so the rest of the
            // schedule does not move).
            if disk.is_none() {
                steps.push(Step {
                    at_ms: at,
                    action: down,
                });
                steps.push(Step {
                    at_ms: t + len,
                    action: up,
                });
            }
        }
        if let Some(kind) = disk {
            let node = *all.choose(&mut drng).expect("nodes");
            let at = t + drng.random_range(0..=len / 2);
            let (down, up) = match kind {
                DiskKind::Wipe => (Action::WipeDisk { node }, Action::Restart { node }),
                DiskKind::PowerCut => (
                    Action::PowerCut {
                        node,
                        torn: drng.random_bool(0.5),
                        seed: drng.random(),
                    },
                    Action::Restart { node },
                ),
                DiskKind::DiskFull => (Action::DiskFull { node }, Action::DiskFree { node }),
                DiskKind::ClockSkew => {
                    let secs = drng.random_range(5..=60i64);
                    let offset_ms = if drng.random_bool(0.5) { secs } else { -secs } * 1_000;
                    (
                        Action::ClockSkew { node, offset_ms },
                        Action::ClockReset { node },
                    )
                }
            };
            if kind.loses_data() {
                data_loss_ok_at = t + len + mix.data_loss_spacing_ms;
            }
            steps.push(Step {
                at_ms: at,
                action: down,
            });
            steps.push(Step {
                at_ms: t + len,
                action: up,
            });
        }
        t += len + rng.random_range(mix.gap_ms.0..=mix.gap_ms.1);
    }
    let mut mrng = StdRng::seed_from_u64(seed ^ 0x6d65_6d62_6572_7368);
    for (i, (m, action)) in changes.iter().enumerate() {
        let m = *m;
        // The window closes before the next change, before the first
        // episode that may hold a disk fault, and before the end.
        let next = change_times.get(i + 1).copied().unwrap_or(end);
        let first_open = open_starts
            .iter()
            .copied()
            .find(|&t| t >= m + MEMBERSHIP_WINDOW_MS)
            .unwrap_or(end);
        let close = next.min(first_open).min(end).saturating_sub(1).max(m);
        // When the next change comes first, it waits for this handoff
        // itself (and its own window goes on): no await then.
        let await_here = first_open.min(end) <= next;
        let roles: &[HandoffRole] = match action {
            Action::Join { .. } => &[HandoffRole::Joiner, HandoffRole::Source],
            Action::JoinAndLeave { .. } => &[
                HandoffRole::Joiner,
                HandoffRole::Leaver,
                HandoffRole::Source,
            ],
            _ => &[HandoffRole::Leaver, HandoffRole::Source],
        };
        let role = *roles.choose(&mut mrng).expect("roles");
        // Only the original nodes have link proxies: only a source can be
        // isolated.
        let kinds: Vec<HandoffFaultKind> = [
            (mix.kill, HandoffFaultKind::Kill),
            (mix.pause, HandoffFaultKind::Pause),
            (
                mix.network && role == HandoffRole::Source,
                HandoffFaultKind::Isolate,
            ),
        ]
        .into_iter()
        .filter_map(|(on, k)| on.then_some(k))
        .collect();
        let fault_at = m + mrng.random_range(HANDOFF_FAULT_AFTER_MS.0..=HANDOFF_FAULT_AFTER_MS.1);
        let heal_at = (fault_at
            + mrng.random_range(HANDOFF_FAULT_HOLD_MS.0..=HANDOFF_FAULT_HOLD_MS.1))
        .min(close.saturating_sub(1));
        let pick: u32 = mrng.random();
        steps.push(Step {
            at_ms: m,
            action: action.clone(),
        });
        if let Some(&kind) = kinds.choose(&mut mrng)
            && heal_at > fault_at
        {
            steps.push(Step {
                at_ms: fault_at,
                action: Action::HandoffFault { role, kind, pick },
            });
            steps.push(Step {
                at_ms: heal_at,
                action: Action::HandoffHeal,
            });
        }
        if await_here {
            steps.push(Step {
                at_ms: close,
                action: Action::AwaitHandoff,
            });
        }
    }
    // Stable: a heal planned at the same instant as a fault of the next
    // episode keeps its place before it.
    steps.sort_by_key(|s| s.at_ms);
    steps
}

fn network_fault(rng: &mut StdRng, all: &[usize]) -> Action {
    let n = all.len();
    let mut shuffled = all.to_vec();
    shuffled.shuffle(rng);
    match rng.random_range(0..5) {
        // A random split into two non-empty sides.
        0 => {
            let cut = rng.random_range(1..n);
            Action::Partition {
                groups: sorted_groups(vec![shuffled[..cut].to_vec(), shuffled[cut..].to_vec()]),
            }
        }
        // Majority / minority.
        1 => {
            let maj = n / 2 + 1;
            Action::Partition {
                groups: sorted_groups(vec![shuffled[..maj].to_vec(), shuffled[maj..].to_vec()]),
            }
        }
        2 => Action::Isolate { node: shuffled[0] },
        // One node cannot reach anyone (or no one can reach it), the other
        // direction works.
        3 => {
            let x = shuffled[0];
            let outgoing = rng.random_bool(0.5);
            let links = all
                .iter()
                .filter(|&&j| j != x)
                .map(|&j| if outgoing { (x, j) } else { (j, x) })
                .collect();
            Action::Cut { links }
        }
        // Random directed links.
        _ => {
            let mut links = Vec::new();
            for &i in all {
                for &j in all {
                    if i != j && rng.random_bool(0.25) {
                        links.push((i, j));
                    }
                }
            }
            if links.is_empty() {
                links.push((shuffled[0], shuffled[1]));
            }
            Action::Cut { links }
        }
    }
}

fn sorted_groups(mut groups: Vec<Vec<usize>>) -> Vec<Vec<usize>> {
    for g in &mut groups {
        g.sort_unstable();
    }
    groups.sort();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_names_one_schedule() {
        let mix = FaultMix::default();
        assert_eq!(generate(7, 180_000, 5, &mix), generate(7, 180_000, 5, &mix));
        assert_ne!(generate(7, 180_000, 5, &mix), generate(8, 180_000, 5, &mix));
    }

    #[test]
    fn every_fault_is_healed_within_the_duration() {
        for seed in 0..50 {
            let steps = generate(seed, 90_000, 5, &FaultMix::default());
            assert!(!steps.is_empty());
            let (mut net, mut killed, mut paused) = (0i32, Vec::new(), Vec::new());
            let (mut disk, mut handoff) = (0i32, 0i32);
            for s in &steps {
                assert!(s.at_ms < 90_000);
                match &s.action {
                    Action::Partition { .. } | Action::Isolate { .. } | Action::Cut { .. } => {
                        net += 1
                    }
                    Action::HealNetwork => net -= 1,
                    Action::Kill { node } => killed.push(*node),
                    Action::Restart { node } => killed.retain(|n| n != node),
                    Action::Pause { node } => paused.push(*node),
                    Action::Resume { node } => paused.retain(|n| n != node),
                    Action::WipeDisk { node } | Action::PowerCut { node, .. } => killed.push(*node),
                    Action::Died { .. } => panic!("a schedule never plans a death"),
                    Action::DiskFull { .. } | Action::ClockSkew { .. } => disk += 1,
                    Action::DiskFree { .. } | Action::ClockReset { .. } => disk -= 1,
                    Action::HandoffFault { .. } => handoff += 1,
                    Action::HandoffHeal => handoff -= 1,
                    Action::Commit { .. } => panic!("a schedule never plans a commit alone"),
                    Action::HealAll
                    | Action::Join { .. }
                    | Action::Leave { .. }
                    | Action::JoinAndLeave { .. }
                    | Action::RacingCommits { .. }
                    | Action::AwaitHandoff => {}
                }
                assert!((0..=1).contains(&net), "overlapping network faults");
                assert!((0..=1).contains(&handoff), "overlapping handoff faults");
            }
            assert_eq!(net, 0);
            assert_eq!(handoff, 0);
            assert_eq!(disk, 0);
            assert!(killed.is_empty() && paused.is_empty());
        }
    }

    /// Replays a schedule and returns, at every step, the nodes impaired by
    /// a process, disk or clock fault, and the steps that lose data.
    fn impaired_over_time(steps: &[Step]) -> Vec<(u64, Vec<usize>)> {
        let mut now: Vec<usize> = Vec::new();
        let mut out = Vec::new();
        for s in steps {
            match &s.action {
                Action::Kill { node }
                | Action::Pause { node }
                | Action::WipeDisk { node }
                | Action::PowerCut { node, .. }
                | Action::DiskFull { node }
                | Action::ClockSkew { node, .. } => now.push(*node),
                // The node is chosen when it lands: one impaired node.
                Action::HandoffFault {
                    kind: HandoffFaultKind::Kill | HandoffFaultKind::Pause,
                    ..
                } => now.push(usize::MAX),
                Action::HandoffHeal => now.retain(|&n| n != usize::MAX),
                Action::Restart { node }
                | Action::Resume { node }
                | Action::DiskFree { node }
                | Action::ClockReset { node } => {
                    let i = now
                        .iter()
                        .position(|n| n == node)
                        .expect("healed what was faulted");
                    now.remove(i);
                }
                _ => {}
            }
            out.push((s.at_ms, now.clone()));
        }
        out
    }

    #[test]
    fn at_most_one_disk_or_clock_fault_and_no_other_process_fault_with_it() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..100 {
            let steps = generate(seed, 180_000, 5, &FaultMix::default());
            for s in &steps {
                seen.insert(s.action.name());
            }
            // At most one node impaired by a process, disk or clock fault.
            for (at, nodes) in impaired_over_time(&steps) {
                assert!(
                    nodes.len() <= 1,
                    "seed {seed} at {at} ms: {nodes:?} impaired at once"
                );
            }
        }
        for name in [
            "wipe_disk",
            "power_cut",
            "power_cut_torn",
            "disk_full",
            "clock_skew",
        ] {
            assert!(seen.contains(name), "no {name} in 100 seeds");
        }
    }

    /// The membership windows of a schedule: from each change's step
    /// (less a second) to its window's end and to the await that closes
    /// the handoff (or the end of the run), whichever is later.
    fn membership_windows(steps: &[Step], duration_ms: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut open: Option<u64> = None;
        for s in steps {
            if s.action.changes_membership() {
                open.get_or_insert(s.at_ms);
            }
            if s.action == Action::AwaitHandoff
                && let Some(from) = open.take()
            {
                out.push((from.saturating_sub(1_000), s.at_ms));
            }
        }
        if let Some(from) = open {
            out.push((from.saturating_sub(1_000), duration_ms));
        }
        for (m, _) in membership_changes(duration_ms, 5) {
            out.push((m.saturating_sub(1_000), m + MEMBERSHIP_WINDOW_MS));
        }
        out
    }

    #[test]
    fn data_losing_faults_stay_out_of_handoffs_and_lossless_faults_land_in_them() {
        let mix = FaultMix::default();
        let mut seeds_with_handoff_faults = 0;
        for seed in 0..100 {
            let steps = generate(seed, 180_000, 5, &mix);
            let windows = membership_windows(&steps, 180_000);
            let inside = |at: u64| windows.iter().any(|&(a, b)| at >= a && at <= b);
            let mut last_restart: Option<u64> = None;
            let mut lost: Option<usize> = None;
            let mut handoff_faults = 0;
            for s in &steps {
                match s.action {
                    Action::WipeDisk { node } | Action::PowerCut { node, .. } => {
                        if let Some(r) = last_restart {
                            assert!(
                                s.at_ms >= r + mix.data_loss_spacing_ms,
                                "seed {seed}: data lost at {} ms, {} ms after the last restart",
                                s.at_ms,
                                s.at_ms - r
                            );
                        }
                        lost = Some(node);
                        assert!(
                            !inside(s.at_ms),
                            "seed {seed}: data lost at {} ms, in a membership window {windows:?}",
                            s.at_ms
                        );
                    }
                    Action::Restart { node } if lost == Some(node) => {
                        // Nor is a node without its data still down when a
                        // window opens.
                        assert!(
                            !windows.iter().any(|&(a, b)| s.at_ms > a && s.at_ms <= b),
                            "seed {seed}: n{node} restarted after losing data at {} ms, in {windows:?}",
                            s.at_ms
                        );
                        last_restart = Some(s.at_ms);
                        lost = None;
                    }
                    Action::HandoffFault { .. } | Action::HandoffHeal => {
                        assert!(
                            inside(s.at_ms),
                            "seed {seed}: handoff step at {} ms outside {windows:?}",
                            s.at_ms
                        );
                        handoff_faults += usize::from(s.action != Action::HandoffHeal);
                    }
                    _ => {}
                }
            }
            if handoff_faults > 0 {
                seeds_with_handoff_faults += 1;
            }
        }
        assert!(
            seeds_with_handoff_faults >= 90,
            "kill/pause/partition faults land in a handoff in only {seeds_with_handoff_faults} of 100 seeds"
        );
    }

    #[test]
    fn every_run_with_membership_has_the_racing_changes() {
        for seed in 0..100 {
            for duration_ms in [60_000, 180_000] {
                let steps = generate(seed, duration_ms, 5, &FaultMix::default());
                let changes: Vec<&Action> = steps
                    .iter()
                    .map(|s| &s.action)
                    .filter(|a| a.changes_membership())
                    .collect();
                assert_eq!(
                    changes,
                    vec![
                        &Action::Join { node: 6 },
                        &Action::JoinAndLeave { join: 7, leave: 6 },
                        &Action::RacingCommits { leave: 7 },
                    ],
                    "seed {seed}, {duration_ms} ms"
                );
                // The original five stay members throughout: at least
                // three valid members at all times.
                assert!(steps.iter().all(|s| match s.action {
                    Action::Leave { node }
                    | Action::JoinAndLeave { leave: node, .. }
                    | Action::RacingCommits { leave: node } => node > 5,
                    _ => true,
                }));
                // The last change's handoff is awaited before the end.
                assert!(
                    steps.iter().any(|s| s.action == Action::AwaitHandoff),
                    "seed {seed}: no await"
                );
            }
        }
        let off = FaultMix {
            membership: false,
            ..FaultMix::default()
        };
        assert!(
            generate(1, 180_000, 5, &off)
                .iter()
                .all(|s| !s.action.changes_membership()
                    && !matches!(s.action, Action::HandoffFault { .. } | Action::AwaitHandoff))
        );
    }

    #[test]
    fn without_disk_faults_a_seed_keeps_its_old_schedule() {
        // The disk faults draw from their own stream and only replace a
        // process fault, so every network fault and heal stays in place.
        for seed in 0..20 {
            let with = generate(seed, 120_000, 5, &FaultMix::default());
            let without = generate(seed, 120_000, 5, &FaultMix::default().without_disk_faults());
            let net = |steps: &[Step]| -> Vec<Step> {
                steps
                    .iter()
                    .filter(|s| {
                        matches!(
                            s.action,
                            Action::Partition { .. }
                                | Action::Isolate { .. }
                                | Action::Cut { .. }
                                | Action::HealNetwork
                        )
                    })
                    .cloned()
                    .collect()
            };
            assert_eq!(net(&with), net(&without), "seed {seed}");
            assert!(
                without
                    .iter()
                    .all(|s| s.action.disk_or_clock_node().is_none())
            );
        }
    }

    #[test]
    fn each_disk_fault_can_be_turned_off() {
        let off = |f: fn(&mut FaultMix)| {
            let mut mix = FaultMix::default();
            f(&mut mix);
            (0..30)
                .flat_map(|seed| generate(seed, 180_000, 5, &mix))
                .map(|s| s.action.name())
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert!(!off(|m| m.wipe = false).contains("wipe_disk"));
        let no_cut = off(|m| m.power_cut = false);
        assert!(!no_cut.contains("power_cut") && !no_cut.contains("power_cut_torn"));
        assert!(!off(|m| m.disk_full = false).contains("disk_full"));
        assert!(!off(|m| m.clock_skew = false).contains("clock_skew"));
        // Only disk and clock faults: every episode may hold one.
        let only = off(|m| {
            m.network = false;
            m.kill = false;
            m.pause = false;
            m.membership = false;
        });
        assert!(only.contains("wipe_disk") && only.contains("clock_skew"));
        assert!(!only.contains("kill") && !only.contains("partition_random"));
    }

    #[test]
    fn the_mix_is_respected() {
        let mix = FaultMix {
            network: false,
            kill: true,
            pause: false,
            membership: false,
            ..FaultMix::default().without_disk_faults()
        };
        let steps = generate(3, 120_000, 5, &mix);
        assert!(
            steps
                .iter()
                .all(|s| matches!(s.action, Action::Kill { .. } | Action::Restart { .. }))
        );
    }
}
