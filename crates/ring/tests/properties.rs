//! Property tests of the ring: balance, minimal movement on join/leave,
//! preference-list shape, determinism, round trips and spread.
//!
//! Run with `cargo test -p dynkv-ring -- --nocapture` to see the measured
//! movement figures.

use dynkv_ring::{DEFAULT_PARTITIONS, NodeId, PartitionMove, Ring, RingError, key_hash};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

// ---------------------------------------------------------------- helpers

/// 1..=12 distinct random node ids (unsorted, so `new` must sort them).
fn member_ids() -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set("[a-z]{1,5}", 1..=12)
        .prop_map(|s| s.into_iter().collect::<Vec<_>>())
        .prop_shuffle()
}

/// A power of two in 1..=1024.
fn partition_counts() -> impl Strategy<Value = u32> {
    (0u32..=10).prop_map(|e| 1 << e)
}

/// A membership change: join `id` (if new) or, otherwise, remove the member
/// at `index`.
#[derive(Clone, Debug)]
enum Op {
    Join(String),
    Leave(Index),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            "[a-z]{1,5}".prop_map(Op::Join),
            any::<Index>().prop_map(Op::Leave),
        ],
        0..8,
    )
}

/// Which node an op affects on `ring`, and whether it joins; `None` when the op
/// does not apply (joining a member, or removing the last one).
fn resolve(ring: &Ring, op: &Op) -> Option<(NodeId, bool)> {
    match op {
        Op::Join(id) => {
            let id = NodeId::from(id.as_str());
            (!ring.contains(&id)).then_some((id, true))
        }
        Op::Leave(index) => {
            let members = ring.members();
            (members.len() > 1).then(|| (members[index.index(members.len())].clone(), false))
        }
    }
}

fn apply(ring: &Ring, node: &NodeId, join: bool) -> Ring {
    if join {
        ring.with_member_added(node.clone()).unwrap()
    } else {
        ring.with_member_removed(node).unwrap()
    }
}

fn counts(ring: &Ring) -> BTreeMap<&NodeId, usize> {
    let mut counts: BTreeMap<&NodeId, usize> = ring.members().iter().map(|m| (m, 0)).collect();
    for owner in ring.owners() {
        *counts.get_mut(owner).expect("every owner is a member") += 1;
    }
    counts
}

/// Every member owns floor(P/k) or ceil(P/k) partitions.
fn assert_balanced(ring: &Ring) -> Result<(), TestCaseError> {
    let p = ring.partitions() as usize;
    let k = ring.members().len();
    let (lo, hi) = (p / k, p.div_ceil(k));
    for (node, count) in counts(ring) {
        prop_assert!(
            (lo..=hi).contains(&count),
            "{node} owns {count} of {p} partitions with {k} members (want {lo}..={hi})"
        );
    }
    prop_assert_eq!(ring.owners().len(), p);
    Ok(())
}

/// Checks one join or leave: bound on moves, only moves involving `node`,
/// membership updated. Returns the number of moved partitions.
fn check_change(
    before: &Ring,
    after: &Ring,
    node: &NodeId,
    join: bool,
) -> Result<usize, TestCaseError> {
    let moves = before.moves_to(after).unwrap();
    // k+1 is the larger of the two member counts.
    let big = before.members().len().max(after.members().len());
    let bound = (before.partitions() as usize).div_ceil(big) + 1;
    prop_assert!(
        moves.len() <= bound,
        "{} moves > bound {bound}",
        moves.len()
    );
    for m in &moves {
        if join {
            prop_assert_eq!(&m.to, node, "join moved a partition elsewhere: {:?}", m);
        } else {
            prop_assert_eq!(
                &m.from,
                node,
                "leave moved a partition it did not own: {:?}",
                m
            );
        }
    }
    if join {
        prop_assert!(after.contains(node));
        prop_assert_eq!(after.members().len(), before.members().len() + 1);
        // Exactly what the new node owns moved.
        prop_assert_eq!(moves.len(), after.partitions_owned_by(node).len());
    } else {
        prop_assert!(!after.contains(node));
        prop_assert_eq!(after.members().len(), before.members().len() - 1);
        prop_assert!(after.partitions_owned_by(node).is_empty());
        prop_assert_eq!(moves.len(), before.partitions_owned_by(node).len());
    }
    Ok(moves.len())
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------- 1. balance

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn new_is_balanced(ids in member_ids(), p in partition_counts()) {
        let ring = Ring::new(ids.clone(), p).unwrap();
        prop_assert_eq!(ring.partitions(), p);
        let mut sorted = ids.clone();
        sorted.sort();
        let members: Vec<&str> = ring.members().iter().map(NodeId::as_str).collect();
        prop_assert_eq!(members, sorted);
        assert_balanced(&ring)?;
    }

    #[test]
    fn joins_and_leaves_keep_balance_and_move_little(
        ids in member_ids(),
        p in partition_counts(),
        ops in ops(),
    ) {
        let mut ring = Ring::new(ids, p).unwrap();
        for op in &ops {
            let Some((node, join)) = resolve(&ring, op) else { continue };
            let next = apply(&ring, &node, join);
            assert_balanced(&next)?;
            check_change(&ring, &next, &node, join)?;
            ring = next;
        }
    }

    // The same, starting from an arbitrary (unbalanced) owner table: the first
    // change must restore balance.
    #[test]
    fn changes_rebalance_a_hand_built_ring(
        pool in member_ids(),
        p in partition_counts(),
        picks in prop::collection::vec(any::<Index>(), 1024),
        ops in ops(),
    ) {
        let owners: Vec<NodeId> = picks[..p as usize]
            .iter()
            .map(|i| NodeId::from(pool[i.index(pool.len())].as_str()))
            .collect();
        let mut ring = Ring::from_owners(owners).unwrap();
        for op in &ops {
            let Some((node, join)) = resolve(&ring, op) else { continue };
            ring = apply(&ring, &node, join);
            assert_balanced(&ring)?;
        }
    }
}

// ---------------------------------------------------------------- 2. movement

/// Joins one node to a random k-node ring and removes one from a random
/// (k+1)-node ring, asserting the bound and printing the worst case seen.
#[test]
fn single_join_and_leave_move_at_most_one_share() {
    let mut runner = TestRunner::new(config(1024));
    // Worst excess of moved partitions over ceil(P/(k+1)), per direction.
    let worst_join = Cell::new(i64::MIN);
    let worst_leave = Cell::new(i64::MIN);
    let max_moved = Cell::new(0usize);
    let strategy = (
        member_ids(),
        partition_counts(),
        "[a-z]{1,5}",
        any::<Index>(),
        ops(),
    );
    runner
        .run(&strategy, |(ids, p, joiner, leaver, history)| {
            // Start from `new` plus a random history, so layouts are not just
            // round robin.
            let mut ring = Ring::new(ids, p).unwrap();
            for op in &history {
                if let Some((node, join)) = resolve(&ring, op) {
                    ring = apply(&ring, &node, join);
                }
            }
            let k = ring.members().len();
            let share = (p as usize).div_ceil(k + 1) as i64;
            let joiner = NodeId::from(joiner);
            if !ring.contains(&joiner) {
                let bigger = ring.with_member_added(joiner.clone()).unwrap();
                let moved = check_change(&ring, &bigger, &joiner, true)?;
                worst_join.set(worst_join.get().max(moved as i64 - share));
                max_moved.set(max_moved.get().max(moved));
            }
            if k >= 2 {
                // `ring` plays the (k+1)-node ring here.
                let share = (p as usize).div_ceil(k) as i64;
                let leaving = ring.members()[leaver.index(k)].clone();
                let smaller = ring.with_member_removed(&leaving).unwrap();
                let moved = check_change(&ring, &smaller, &leaving, false)?;
                worst_leave.set(worst_leave.get().max(moved as i64 - share));
                max_moved.set(max_moved.get().max(moved));
            }
            Ok(())
        })
        .unwrap();
    println!(
        "movement over 1024 random rings: worst (moved - ceil(P/(k+1))) join = {}, leave = {} \
         (bound allows +1); largest single change moved {} partitions",
        worst_join.get(),
        worst_leave.get(),
        max_moved.get()
    );
    assert!(worst_join.get() <= 1 && worst_leave.get() <= 1);
}

/// Table of moved partitions for P = 64: join one node to k, and remove the
/// worst-case node from k+1, for k = 1..=10. Also reports how many windows of
/// three consecutive partitions lost distinct owners after the change.
#[test]
fn movement_table_for_64_partitions() {
    let p = DEFAULT_PARTITIONS;
    let name = |i: usize| format!("node-{i:02}");
    println!("P = {p}");
    println!(
        " k -> k+1 | ceil(P/(k+1)) | join moved | leave moved (worst) | 3-windows without 3 distinct owners after join/leave"
    );
    for k in 1..=10usize {
        let share = (p as usize).div_ceil(k + 1);
        let small = Ring::new((0..k).map(name), p).unwrap();
        let joiner = NodeId::from(name(k));
        let joined = small.with_member_added(joiner.clone()).unwrap();
        let join_moves = small.moves_to(&joined).unwrap();
        assert!(join_moves.iter().all(|m| m.to == joiner));
        assert!(join_moves.len() <= share + 1, "join k={k}");

        let big = Ring::new((0..=k).map(name), p).unwrap();
        let mut leave_worst = 0;
        let mut leave_dups = 0;
        for leaving in big.members() {
            let left = big.with_member_removed(leaving).unwrap();
            let moves = big.moves_to(&left).unwrap();
            assert!(moves.iter().all(|m| &m.from == leaving));
            assert!(moves.len() <= share + 1, "leave k+1={}", k + 1);
            leave_worst = leave_worst.max(moves.len());
            leave_dups = leave_dups.max(dup_windows(&left));
        }
        println!(
            "{k:>2} -> {:<3} | {share:>13} | {:>10} | {leave_worst:>19} | {}/{}",
            k + 1,
            join_moves.len(),
            dup_windows(&joined),
            leave_dups
        );
    }
}

/// Circular windows of three consecutive partitions whose owners are not
/// three distinct nodes (only meaningful with >= 3 members).
fn dup_windows(ring: &Ring) -> usize {
    let o = ring.owners();
    let p = o.len();
    (0..p)
        .filter(|&i| {
            let (a, b, c) = (&o[i], &o[(i + 1) % p], &o[(i + 2) % p]);
            a == b || b == c || a == c
        })
        .count()
}

// ------------------------------------------------ 3. preference lists, walks

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn preference_lists_and_walks(
        ids in member_ids(),
        p in partition_counts(),
        history in ops(),
        sample in prop::collection::vec(any::<Index>(), 8),
    ) {
        let mut ring = Ring::new(ids, p).unwrap();
        for op in &history {
            if let Some((node, join)) = resolve(&ring, op) {
                ring = apply(&ring, &node, join);
            }
        }
        let k = ring.members().len();
        let members: BTreeSet<&NodeId> = ring.members().iter().collect();
        // All partitions for small rings, a random sample plus both ends otherwise.
        let partitions: Vec<u32> = if p <= 16 {
            (0..p).collect()
        } else {
            sample.iter().map(|i| i.index(p as usize) as u32).chain([0, p - 1]).collect()
        };
        for &part in &partitions {
            let walk = ring.walk(part);
            prop_assert_eq!(walk.len(), k);
            let distinct: BTreeSet<&NodeId> = walk.iter().copied().collect();
            prop_assert_eq!(&distinct, &members, "walk must hold every member once");
            prop_assert_eq!(walk[0], ring.owner(part));
            for n in 0..=k + 2 {
                let pref = ring.preference_list(part, n);
                prop_assert_eq!(pref.len(), n.min(k));
                prop_assert_eq!(&pref[..], &walk[..n.min(k)]);
                let fb = ring.fallbacks(part, n);
                prop_assert_eq!(&fb[..], &walk[n.min(k)..]);
            }
        }
        // Replicated partitions agree with preference lists, and every
        // partition is replicated min(n, k) times.
        for n in [1usize, 3] {
            let mut total = 0;
            for node in ring.members() {
                let replicated = ring.partitions_replicated_by(node, n);
                total += replicated.len();
                for &part in &partitions {
                    prop_assert_eq!(
                        replicated.contains(&part),
                        ring.preference_list(part, n).contains(&node)
                    );
                }
                let owned = ring.partitions_owned_by(node);
                prop_assert!(owned.iter().all(|p| replicated.contains(p)));
            }
            prop_assert_eq!(total, p as usize * n.min(k));
        }
    }
}

/// The walk is the clockwise owner order: a hand-checked example.
#[test]
fn walk_example() {
    let ring = Ring::from_owners(
        ["a", "a", "b", "c", "a", "d", "b", "c"]
            .map(NodeId::from)
            .to_vec(),
    )
    .unwrap();
    let names = |v: Vec<&NodeId>| v.iter().map(|n| n.as_str().to_owned()).collect::<Vec<_>>();
    assert_eq!(names(ring.preference_list(0, 3)), ["a", "b", "c"]);
    assert_eq!(names(ring.walk(0)), ["a", "b", "c", "d"]);
    assert_eq!(names(ring.walk(6)), ["b", "c", "a", "d"]);
    assert_eq!(names(ring.fallbacks(6, 2)), ["a", "d"]);
    assert_eq!(names(ring.preference_list(5, 3)), ["d", "b", "c"]);
    assert_eq!(ring.partitions_owned_by(&"a".into()), [0, 1, 4]);
    assert_eq!(ring.partitions_replicated_by(&"d".into(), 2), [4, 5]);
    assert_eq!(
        ring.partitions_replicated_by(&"zz".into(), 2),
        Vec::<u32>::new()
    );
}

/// With more members than partitions, members owning nothing still appear in
/// walks, after the owners, starting at a partition-dependent rotation.
#[test]
fn standby_members_are_walked_last() {
    let ring = Ring::new(["a", "b", "c", "d"], 2).unwrap();
    assert_eq!(ring.owners(), ["a", "b"].map(NodeId::from));
    assert_eq!(ring.members().len(), 4);
    let names = |v: Vec<&NodeId>| v.iter().map(|n| n.as_str().to_owned()).collect::<Vec<_>>();
    assert_eq!(names(ring.walk(0)), ["a", "b", "c", "d"]);
    assert_eq!(names(ring.walk(1)), ["b", "a", "c", "d"]);
    assert_eq!(names(ring.preference_list(0, 3)), ["a", "b", "c"]);
    // Adding a fifth node moves nothing (its target is floor(2/5) = 0).
    let more = ring.with_member_added("e".into()).unwrap();
    assert!(ring.moves_to(&more).unwrap().is_empty());
    // Removing an owner hands its partition to a standby member.
    let fewer = ring.with_member_removed(&"a".into()).unwrap();
    assert_eq!(
        ring.moves_to(&fewer).unwrap(),
        [PartitionMove {
            partition: 0,
            from: "a".into(),
            to: "c".into()
        }]
    );
}

/// Hand-checked examples pinning the deterministic join/leave rules.
#[test]
fn membership_change_examples() {
    let mv = |partition, from: &str, to: &str| PartitionMove {
        partition,
        from: from.into(),
        to: to.into(),
    };
    let owners = |names: &[&str]| names.iter().map(|&n| NodeId::from(n)).collect::<Vec<_>>();

    // Join: a b c a b c a b + d. Targets 2 each; first pick is the
    // highest-count donor's lowest partition (0, from a); then the b
    // partition farthest from 0, which is 4.
    let ring = Ring::new(["a", "b", "c"], 8).unwrap();
    let joined = ring.with_member_added("d".into()).unwrap();
    assert_eq!(
        joined.owners(),
        owners(&["d", "b", "c", "a", "d", "c", "a", "b"])
    );
    assert_eq!(
        ring.moves_to(&joined).unwrap(),
        [mv(0, "a", "d"), mv(4, "b", "d")]
    );

    // Leave: round robin a b c d on 16, remove a (0, 4, 8, 12). Targets
    // b 6, c 5, d 5. Partition 0 sits between d and b, c is 2 away: c.
    // Then only b and d fit, both adjacent: lowest count, then id.
    let ring = Ring::new(["a", "b", "c", "d"], 16).unwrap();
    let left = ring.with_member_removed(&"a".into()).unwrap();
    assert_eq!(
        ring.moves_to(&left).unwrap(),
        [
            mv(0, "a", "c"),
            mv(4, "a", "b"),
            mv(8, "a", "d"),
            mv(12, "a", "b")
        ]
    );

    // Leave: a receiver with nothing within distance 2 wins over one with a
    // lower count.
    let ring = Ring::from_owners(owners(&[
        "x", "b", "x", "a", "a", "a", "a", "a", "a", "b", "b", "b", "b", "x", "x", "x",
    ]))
    .unwrap();
    let left = ring.with_member_removed(&"x".into()).unwrap();
    assert_eq!(
        ring.moves_to(&left).unwrap(),
        [
            mv(0, "x", "a"),
            mv(2, "x", "b"),
            mv(13, "x", "a"),
            mv(14, "x", "b"),
            mv(15, "x", "b")
        ]
    );
}

/// A join onto a ring built by `new` never leaves two adjacent partitions
/// with the same owner (the farthest-first choice spreads the new node's
/// partitions). The layout after such a join depends only on (k, P), so this
/// checks every case exhaustively.
#[test]
fn join_after_new_keeps_neighbours_distinct() {
    for p in (1..=10).map(|e| 1u32 << e) {
        for k in (1..=12usize).filter(|&k| k < p as usize) {
            let ring = Ring::new((0..k).map(|i| format!("n{i:02}")), p).unwrap();
            let joined = ring.with_member_added("new".into()).unwrap();
            let o = joined.owners();
            let clashes: Vec<usize> = (0..o.len())
                .filter(|&i| o[i] == o[(i + 1) % o.len()])
                .collect();
            assert!(
                clashes.is_empty(),
                "P={p} k={k}: same owner at partitions {clashes:?} and their successors"
            );
        }
    }
}

// ------------------------------------------------------------ 4. determinism

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn new_depends_only_on_the_member_set(
        ids in member_ids(),
        dups in prop::collection::vec(any::<Index>(), 0..6),
        p in partition_counts(),
        seed in any::<u64>(),
    ) {
        let reference = Ring::new(ids.clone(), p).unwrap();
        let mut shuffled: Vec<String> = ids.clone();
        shuffled.extend(dups.iter().map(|i| ids[i.index(ids.len())].clone()));
        // Deterministic Fisher-Yates from the seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let other = Ring::new(shuffled.iter().map(String::as_str), p).unwrap();
        prop_assert_eq!(&other, &reference);
    }

    #[test]
    fn membership_changes_are_deterministic(
        ids in member_ids(),
        p in partition_counts(),
        history in ops(),
    ) {
        let replay = || {
            let mut ring = Ring::new(ids.clone(), p).unwrap();
            for op in &history {
                if let Some((node, join)) = resolve(&ring, op) {
                    ring = apply(&ring, &node, join);
                }
            }
            ring
        };
        prop_assert_eq!(replay(), replay());
    }
}

// ------------------------------------------------- 5. round trips, hashing

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn from_owners_round_trips(
        ids in member_ids(),
        p in partition_counts(),
        history in ops(),
    ) {
        let mut ring = Ring::new(ids, p).unwrap();
        for op in &history {
            if let Some((node, join)) = resolve(&ring, op) {
                ring = apply(&ring, &node, join);
            }
        }
        let rebuilt = Ring::from_owners(ring.owners().to_vec()).unwrap();
        prop_assert_eq!(rebuilt.owners(), ring.owners());
        prop_assert_eq!(rebuilt.partitions(), ring.partitions());
        if ring.members().len() <= p as usize {
            // Balanced with k <= P: every member owns something.
            prop_assert_eq!(&rebuilt, &ring);
        } else {
            // Standby members are not recorded in the owner table.
            let owners: BTreeSet<&NodeId> = ring.owners().iter().collect();
            let members: BTreeSet<&NodeId> = rebuilt.members().iter().collect();
            prop_assert_eq!(members, owners);
        }
    }

    #[test]
    fn partition_of_hash_is_monotone_over_the_full_range(
        p in partition_counts(),
        a in any::<u64>(),
        b in any::<u64>(),
        key in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let ring = Ring::new(["x"], p).unwrap();
        prop_assert_eq!(ring.partition_of_hash(0), 0);
        prop_assert_eq!(ring.partition_of_hash(u64::MAX), p - 1);
        let (lo, hi) = (a.min(b), a.max(b));
        prop_assert!(ring.partition_of_hash(lo) <= ring.partition_of_hash(hi));
        prop_assert!(ring.partition_of_hash(a) < p);
        // Equal-width ranges: partition q starts at q * 2^64 / P.
        let q = ring.partition_of_hash(a);
        if p > 1 {
            let width = 1u64 << (64 - p.trailing_zeros()); // 2^64 / P
            let start = u64::from(q) * width;
            prop_assert_eq!(ring.partition_of_hash(start), q);
            prop_assert_eq!(ring.partition_of_hash(start + (width - 1)), q);
            if q > 0 {
                prop_assert_eq!(ring.partition_of_hash(start - 1), q - 1);
            }
        }
        prop_assert_eq!(ring.partition_of_key(&key), ring.partition_of_hash(key_hash(&key)));
    }
}

#[test]
fn key_hash_is_xxh3_64() {
    // Reference values of XXH3-64 with seed 0.
    assert_eq!(key_hash(b""), 0x2D06_8005_38D3_94C2);
    assert_eq!(key_hash(b"a"), 0xE6C6_32B6_1E96_4E1F);
}

#[test]
fn partition_of_hash_examples() {
    let ring = Ring::new(["x"], 4).unwrap();
    assert_eq!(ring.partition_of_hash(0x3FFF_FFFF_FFFF_FFFF), 0);
    assert_eq!(ring.partition_of_hash(0x4000_0000_0000_0000), 1);
    assert_eq!(ring.partition_of_hash(0xC000_0000_0000_0000), 3);
    let one = Ring::new(["x"], 1).unwrap();
    assert_eq!(one.partition_of_hash(u64::MAX), 0);
    let max = Ring::new(["x"], 65536).unwrap();
    assert_eq!(max.partition_of_hash(u64::MAX), 65535);
    assert_eq!(max.partition_of_hash(0x0001_FFFF_FFFF_FFFF), 1);
}

// ------------------------------------------------------------------ 6. errors

#[test]
fn construction_errors() {
    assert_eq!(Ring::new(["a"], 0), Err(RingError::BadPartitionCount(0)));
    assert_eq!(Ring::new(["a"], 3), Err(RingError::BadPartitionCount(3)));
    assert_eq!(
        Ring::new(["a"], 131072),
        Err(RingError::BadPartitionCount(131072))
    );
    assert!(Ring::new(["a"], 65536).is_ok());
    assert_eq!(
        Ring::new(Vec::<String>::new(), 64),
        Err(RingError::NoMembers)
    );
    assert_eq!(Ring::from_owners(vec![]), Err(RingError::NoMembers));
    assert_eq!(
        Ring::from_owners(vec!["a".into(); 3]),
        Err(RingError::BadPartitionCount(3))
    );
}

#[test]
fn membership_errors() {
    let ring = Ring::new(["a", "b"], 8).unwrap();
    assert_eq!(
        ring.with_member_added("a".into()),
        Err(RingError::AlreadyMember("a".into()))
    );
    assert_eq!(
        ring.with_member_removed(&"z".into()),
        Err(RingError::UnknownMember("z".into()))
    );
    let single = ring.with_member_removed(&"a".into()).unwrap();
    assert_eq!(single.owners(), vec![NodeId::from("b"); 8]);
    assert_eq!(
        single.with_member_removed(&"b".into()),
        Err(RingError::LastMember)
    );
    let other = Ring::new(["a", "b"], 16).unwrap();
    assert_eq!(
        ring.moves_to(&other),
        Err(RingError::PartitionCountMismatch {
            ours: 8,
            theirs: 16
        })
    );
    assert_eq!(ring.moves_to(&ring), Ok(vec![]));
}

#[test]
#[should_panic(expected = "out of range")]
fn owner_of_out_of_range_partition_panics() {
    let ring = Ring::new(["a"], 8).unwrap();
    let _ = ring.owner(8);
}

// ------------------------------------------------------------------- spread

proptest! {
    #![proptest_config(config(512))]

    /// With k >= 3, `new` puts three distinct owners on every three
    /// consecutive partitions. Across the wrap from P-1 to 0 that holds
    /// whenever P % k is not 1 or 2 (with P = 4, k = 3 no balanced layout
    /// can do it).
    #[test]
    fn new_spreads_consecutive_partitions(
        ids in prop::collection::btree_set("[a-z]{1,5}", 3..=12),
        p in (2u32..=10).prop_map(|e| 1 << e),
    ) {
        let ring = Ring::new(ids, p).unwrap();
        let o = ring.owners();
        let p = p as usize;
        let k = ring.members().len();
        let circular = !matches!(p % k, 1 | 2);
        let windows = if circular { p } else { p - 2 };
        for i in 0..windows {
            let (a, b, c) = (&o[i], &o[(i + 1) % p], &o[(i + 2) % p]);
            prop_assert!(
                a != b && b != c && a != c,
                "partitions {}..{} owned by {} {} {} (P={}, k={})",
                i, i + 2, a, b, c, p, k
            );
        }
    }
}
