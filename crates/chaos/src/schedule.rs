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

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::history::Action;

/// How long after a membership change no process fault is planned, ms.
pub const MEMBERSHIP_WINDOW_MS: u64 = 25_000;

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
    /// Live membership changes: a new node joins at a quarter of the run
    /// and leaves again at three fifths, while the other faults go on.
    pub membership: bool,
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
    let mut steps = Vec::new();
    let all: Vec<usize> = (1..=nodes).collect();
    let mut t = mix.warmup_ms;
    let end = duration_ms.saturating_sub(1_000);
    // Membership changes get windows without process faults: a killed or
    // paused transfer source would stall the handoff the nemesis waits for.
    let (join_at, leave_at) = (duration_ms / 4, duration_ms * 3 / 5);
    let reserved = |from: u64, to: u64| {
        mix.membership
            && [join_at, leave_at]
                .iter()
                .any(|&m| from < m + MEMBERSHIP_WINDOW_MS && to + 1_000 > m)
    };
    while nodes >= 2 && t + mix.episode_ms.0 <= end {
        let len = rng
            .random_range(mix.episode_ms.0..=mix.episode_ms.1)
            .min(end - t);
        let mut net = mix.network && rng.random_bool(0.75);
        let mut proc_fault = (mix.kill || mix.pause) && rng.random_bool(0.55);
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
            } else {
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
    if mix.membership && nodes >= 2 {
        let joiner = nodes + 1;
        steps.push(Step {
            at_ms: join_at,
            action: Action::Join { node: joiner },
        });
        steps.push(Step {
            at_ms: leave_at,
            action: Action::Leave { node: joiner },
        });
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
                    Action::HealAll | Action::Join { .. } | Action::Leave { .. } => {}
                }
                assert!((0..=1).contains(&net), "overlapping network faults");
            }
            assert_eq!(net, 0);
            assert!(killed.is_empty() && paused.is_empty());
        }
    }

    #[test]
    fn the_mix_is_respected() {
        let mix = FaultMix {
            network: false,
            kill: true,
            pause: false,
            membership: false,
            ..FaultMix::default()
        };
        let steps = generate(3, 120_000, 5, &mix);
        assert!(
            steps
                .iter()
                .all(|s| matches!(s.action, Action::Kill { .. } | Action::Restart { .. }))
        );
    }
}
