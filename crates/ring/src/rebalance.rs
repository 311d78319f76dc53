//! Incremental membership changes: the join and leave algorithms behind
//! [`Ring::with_member_added`] and [`Ring::with_member_removed`].
//!
//! Both work on node *indices* into a sorted node list (so index order is
//! [`NodeId`] order) and share three steps:
//!
//! 1. give every node a target count, `floor(P/k)` or `ceil(P/k)`, handing
//!    the ceil slots to the nodes that already own the most, so that as few
//!    partitions as possible have to move;
//! 2. the change-specific moves (fill the joining node / empty the leaving
//!    one), only ever taking from nodes above target and giving to nodes
//!    below target;
//! 3. [`Layout::settle`]: if some node is still below target (only possible
//!    when the starting ring was unbalanced, e.g. hand-built with
//!    `from_owners`), fill it the same way a joining node is filled. On a
//!    balanced ring this does nothing.

use crate::{NodeId, Ring};
use std::cmp::Reverse;

/// A ring being rebuilt: owners as indices into `nodes`, with per-node counts
/// and targets.
struct Layout {
    nodes: Vec<NodeId>,
    owner: Vec<usize>,
    counts: Vec<usize>,
    targets: Vec<usize>,
}

impl Layout {
    fn new(nodes: Vec<NodeId>, owners: &[NodeId]) -> Layout {
        let owner: Vec<usize> = owners
            .iter()
            .map(|o| {
                nodes
                    .binary_search(o)
                    .expect("ring invariant: every owner is a member")
            })
            .collect();
        let mut counts = vec![0; nodes.len()];
        for &o in &owner {
            counts[o] += 1;
        }
        let targets = vec![0; nodes.len()];
        Layout {
            nodes,
            owner,
            counts,
            targets,
        }
    }

    /// Sets targets for the nodes in `participants` (all but a leaving node):
    /// each gets `floor(P/k)`; the `P % k` ceil slots go to the nodes ranked
    /// highest by current count (ties: lower index = smaller NodeId), skipping
    /// `floor_only` (a joining node). Non-participants get 0.
    fn set_targets(&mut self, participants: &[usize], floor_only: Option<usize>) {
        let p = self.owner.len();
        let k = participants.len();
        let (q, r) = (p / k, p % k);
        self.targets = vec![0; self.nodes.len()];
        for &i in participants {
            self.targets[i] = q;
        }
        let mut ranked: Vec<usize> = participants
            .iter()
            .copied()
            .filter(|&i| Some(i) != floor_only)
            .collect();
        ranked.sort_by_key(|&i| (Reverse(self.counts[i]), i));
        for &i in ranked.iter().take(r) {
            self.targets[i] += 1;
        }
    }

    fn reassign(&mut self, partition: usize, to: usize) {
        let from = self.owner[partition];
        self.counts[from] -= 1;
        self.counts[to] += 1;
        self.owner[partition] = to;
    }

    /// Moves partitions to `receiver` until it reaches its target, each time
    /// taking, from a donor above its target, the partition farthest
    /// (circularly) from the receiver's own partitions; ties: donor with the
    /// higher count, then lowest partition index.
    ///
    /// Cost: `O(P)` per moved partition, keeping `dist` up to date.
    fn fill(&mut self, receiver: usize) {
        let p = self.owner.len();
        let mut dist = self.distances_to(receiver);
        while self.counts[receiver] < self.targets[receiver] {
            let best = (0..p)
                .filter(|&i| {
                    let donor = self.owner[i];
                    self.counts[donor] > self.targets[donor]
                })
                .max_by_key(|&i| (dist[i], self.counts[self.owner[i]], Reverse(i)))
                .expect("a node below target implies a donor above target");
            self.reassign(best, receiver);
            for (i, d) in dist.iter_mut().enumerate() {
                *d = (*d).min(circular_distance(i, best, p));
            }
        }
    }

    /// For every partition, the circular distance to the nearest partition
    /// owned by `node` (`usize::MAX` if it owns none). Two sweeps, `O(P)`.
    fn distances_to(&self, node: usize) -> Vec<usize> {
        let p = self.owner.len();
        let mut dist = vec![usize::MAX; p];
        let Some(last) = self.owner.iter().rposition(|&o| o == node) else {
            return dist;
        };
        let first = self.owner.iter().position(|&o| o == node).unwrap_or(last);
        // Forward: distance back to the previous owned partition (wrapping).
        let mut prev = last as isize - p as isize;
        for (i, d) in dist.iter_mut().enumerate() {
            if self.owner[i] == node {
                prev = i as isize;
            }
            *d = (i as isize - prev) as usize;
        }
        // Backward: distance on to the next owned partition (wrapping).
        let mut next = first + p;
        for i in (0..p).rev() {
            if self.owner[i] == node {
                next = i;
            }
            dist[i] = dist[i].min(next - i);
        }
        dist
    }

    /// Fills any node still below target (only after an unbalanced start).
    fn settle(&mut self) {
        while let Some(receiver) = (0..self.nodes.len())
            .filter(|&i| self.counts[i] < self.targets[i])
            .min_by_key(|&i| (self.counts[i], i))
        {
            self.fill(receiver);
        }
    }

    /// How close `node`'s own partitions come to `partition` (itself
    /// excluded): 0 if none is within circular distance 2, 1 if the closest
    /// is at distance 2, 2 if one is adjacent. Lower is better spread.
    fn closeness(&self, node: usize, partition: usize) -> u8 {
        let p = self.owner.len();
        let owns_at = |d: usize| {
            [(partition + d) % p, (partition + p - d % p) % p]
                .into_iter()
                .any(|i| i != partition && self.owner[i] == node)
        };
        if owns_at(1) {
            2
        } else if owns_at(2) {
            1
        } else {
            0
        }
    }

    fn into_ring(self, partitions: u32, drop_node: Option<usize>) -> Ring {
        let owners = self.owner.iter().map(|&i| self.nodes[i].clone()).collect();
        let mut members = self.nodes;
        if let Some(i) = drop_node {
            members.remove(i);
        }
        Ring::assemble(partitions, owners, members)
    }
}

fn circular_distance(a: usize, b: usize, p: usize) -> usize {
    let d = a.abs_diff(b);
    d.min(p - d)
}

/// See [`Ring::with_member_added`]. `node` must not be a member.
pub(crate) fn join(ring: &Ring, node: NodeId) -> Ring {
    let mut nodes = ring.members.clone();
    let new = nodes
        .binary_search(&node)
        .expect_err("caller checked that the node is not a member");
    nodes.insert(new, node);
    let mut layout = Layout::new(nodes, &ring.owners);
    let everyone: Vec<usize> = (0..layout.nodes.len()).collect();
    layout.set_targets(&everyone, Some(new));
    layout.fill(new);
    layout.settle();
    layout.into_ring(ring.partitions, None)
}

/// See [`Ring::with_member_removed`]. `node` must be a member, not the last.
pub(crate) fn leave(ring: &Ring, node: &NodeId) -> Ring {
    let mut layout = Layout::new(ring.members.clone(), &ring.owners);
    let gone = layout
        .nodes
        .binary_search(node)
        .expect("caller checked membership");
    let remaining: Vec<usize> = (0..layout.nodes.len()).filter(|&i| i != gone).collect();
    layout.set_targets(&remaining, None);
    for partition in 0..layout.owner.len() {
        if layout.owner[partition] != gone {
            continue;
        }
        let receiver = remaining
            .iter()
            .copied()
            .filter(|&i| layout.counts[i] < layout.targets[i])
            .min_by_key(|&i| (layout.closeness(i, partition), layout.counts[i], i))
            .expect("the leaving node's partitions fit under the remaining targets");
        layout.reassign(partition, receiver);
    }
    layout.settle();
    layout.into_ring(ring.partitions, Some(gone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_wrap_around() {
        let ring = Ring::from_owners(
            ["a", "b", "b", "b", "b", "a", "b", "b"]
                .map(NodeId::from)
                .to_vec(),
        )
        .unwrap();
        let layout = Layout::new(ring.members.clone(), &ring.owners);
        assert_eq!(layout.distances_to(0), vec![0, 1, 2, 2, 1, 0, 1, 1]);
        assert_eq!(layout.distances_to(1), vec![1, 0, 0, 0, 0, 1, 0, 0]);
        let single = Layout::new(vec!["a".into()], &["a".into()]);
        assert_eq!(single.distances_to(0), vec![0]);
    }

    #[test]
    fn closeness_handles_tiny_and_wrapping_rings() {
        for owners in [vec!["a"], vec!["a", "b"], vec!["a", "b", "c", "d"]] {
            let owners: Vec<NodeId> = owners.into_iter().map(NodeId::from).collect();
            let layout = Layout::new(Ring::from_owners(owners.clone()).unwrap().members, &owners);
            // "a" owns partition 0 only: nothing else of its own is near 0.
            assert_eq!(layout.closeness(0, 0), 0);
        }
        let owners: Vec<NodeId> = ["a", "b", "c", "d", "e", "f", "g", "a"]
            .map(NodeId::from)
            .to_vec();
        let mut nodes = owners.clone();
        nodes.sort();
        nodes.dedup();
        let layout = Layout::new(nodes, &owners);
        assert_eq!(layout.closeness(0, 1), 2); // partition 0 is adjacent to 1
        assert_eq!(layout.closeness(0, 2), 1); // partition 0 is 2 away from 2
        assert_eq!(layout.closeness(0, 3), 0); // partitions 0 and 7 are 3 and 4 away
        assert_eq!(layout.closeness(0, 5), 1); // partition 7 is 2 away from 5 (no wrap)
        assert_eq!(layout.closeness(0, 6), 2); // partition 7 is adjacent to 6
        assert_eq!(layout.closeness(0, 0), 2); // partition 7 is adjacent to 0 (wrap)
    }
}
