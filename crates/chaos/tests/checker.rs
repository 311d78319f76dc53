//! The checker on hand-made histories: each check must pass a correct
//! history and report the fault planted in a wrong one.

use std::collections::BTreeMap;

use dynkv_chaos::check::{check, disturbances};
use dynkv_chaos::history::{
    Action, FaultEvent, FeedEvent, FeedSummary, FinalKey, FinalState, History, ObjectView, Op,
    OpKind, Outcome, ReapSettings, RingMember, RingView, RunInfo,
};
use dynkv_vclock::{ContextKey, VersionVector, encode_context};

const N: usize = 3;

fn ctx(pairs: &[(&str, u64)]) -> String {
    // The checker reads tokens without their key (it only observes).
    encode_context(
        &VersionVector::from_pairs(pairs.iter().map(|(a, n)| (a.to_string(), *n))),
        &ContextKey::new([0; 32]),
    )
}

/// Builds operations on one key with increasing times.
struct B {
    ops: Vec<Op>,
    t: u64,
    seq: u64,
}

impl B {
    fn new() -> Self {
        B {
            ops: Vec::new(),
            t: 1_000,
            seq: 0,
        }
    }

    fn op(&mut self, kind: OpKind, outcome: Outcome) -> &mut Op {
        self.seq += 1;
        self.t += 1_000;
        self.ops.push(Op {
            client: 0,
            seq: self.seq,
            kind: Some(kind),
            key: "k".into(),
            node: 1,
            start_us: self.t,
            end_us: self.t + 500,
            sloppy: false,
            timeout_ms: 2000,
            outcome: Some(outcome),
            ..Op::default()
        });
        self.ops.last_mut().unwrap()
    }

    /// An acknowledged put of `value` with dot `dot`, sending `sent`
    /// (and having been shown `sup`).
    fn put(&mut self, value: &str, dot: (&str, u64), sent: Option<&str>, sup: &[&str]) -> &mut Op {
        let op = self.op(OpKind::Put, Outcome::Ok);
        op.value = Some(value.into());
        op.w = Some("quorum".into());
        op.dot = Some(format!("{}:{}", dot.0, dot.1));
        op.context = Some(ctx(&[dot]));
        op.values = vec![value.into()];
        op.context_sent = sent.map(str::to_string);
        op.supersedes = sup.iter().map(|s| s.to_string()).collect();
        op
    }

    fn delete(&mut self, dot: (&str, u64), sent: Option<&str>, sup: &[&str]) -> &mut Op {
        let op = self.op(OpKind::Delete, Outcome::Ok);
        op.w = Some("quorum".into());
        op.dot = Some(format!("{}:{}", dot.0, dot.1));
        op.context_sent = sent.map(str::to_string);
        op.supersedes = sup.iter().map(|s| s.to_string()).collect();
        op
    }

    fn get(&mut self, r: &str, got: &str, values: &[&str]) -> &mut Op {
        let op = self.op(OpKind::Get, Outcome::Ok);
        op.r = Some(r.into());
        op.context = Some(got.into());
        op.values = values.iter().map(|s| s.to_string()).collect();
        op
    }
}

/// A final state where nodes 1..=3 are the primaries and all agree.
fn agreed(context: &str, values: &[&str], tombstones: usize) -> FinalKey {
    let view = |node| ObjectView {
        node,
        status: 200,
        found: true,
        context: Some(context.into()),
        values: values.iter().map(|s| s.to_string()).collect(),
        tombstones,
        hints: 0,
    };
    let read = |node| ObjectView {
        status: match values.len() {
            0 => 404,
            1 if tombstones == 0 => 200,
            _ => 300,
        },
        found: false,
        tombstones: if values.is_empty() { 0 } else { tombstones },
        ..view(node)
    };
    FinalKey {
        primaries: vec![1, 2, 3],
        replicas: (1..=3).map(view).collect(),
        reads: (1..=3).map(read).collect(),
    }
}

fn history(ops: Vec<Op>, fk: FinalKey) -> History {
    let mut keys = BTreeMap::new();
    keys.insert("k".to_string(), fk);
    History {
        run: Some(RunInfo {
            seed: 42,
            nodes: 3,
            n_val: N,
            ..RunInfo::default()
        }),
        ops,
        faults: Vec::new(),
        final_state: Some(FinalState {
            healed_us: 1_000_000,
            converged: true,
            convergence_ms: Some(10),
            convergence_bound_ms: 1000,
            polls: 1,
            snapshot_ms: None,
            keys,
            rings: Vec::new(),
        }),
        ..History::default()
    }
}

#[test]
fn a_correct_read_modify_write_history_passes() {
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    let c1 = ctx(&[("n1", 1)]);
    b.get("quorum", &c1, &["a"]);
    b.put("b", ("n1", 2), Some(&c1), &["a"]);
    let r = check(&history(b.ops, agreed(&ctx(&[("n1", 2)]), &["b"], 0)));
    assert!(r.passed, "{:?}", r.failures);
    assert_eq!(r.writes.acknowledged, 2);
    assert_eq!(r.writes.present, 1);
    assert_eq!(r.writes.superseded, 1);
    assert_eq!(r.seed, Some(42));
}

#[test]
fn an_acknowledged_write_missing_from_the_final_state_is_lost() {
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    b.put("b", ("n2", 1), None, &[]);
    // "a" vanished though nothing superseded it; the clock still covers it.
    let r = check(&history(
        b.ops,
        agreed(&ctx(&[("n1", 1), ("n2", 1)]), &["b"], 0),
    ));
    assert!(!r.passed);
    assert_eq!(r.writes.lost, 1);
    assert_eq!(r.lost_writes[0].op.as_deref(), Some("c0#1"));
    assert!(
        r.lost_writes[0]
            .detail
            .contains("neither in the final state")
    );
}

#[test]
fn a_write_whose_dot_the_final_context_lacks_is_lost() {
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    b.put("b", ("n1", 2), None, &[]);
    let r = check(&history(b.ops, agreed(&ctx(&[("n1", 1)]), &["a"], 0)));
    assert_eq!(r.writes.lost, 1);
    assert!(
        r.lost_writes[0]
            .detail
            .contains("not covered by the final context")
    );
}

#[test]
fn a_dot_given_to_two_acknowledged_writes_means_one_was_lost() {
    // The planted bug: write "a" is acknowledged with dot n1:1 but not
    // stored; the next write gets n1:1 again, and a reader supersedes it.
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    b.put("b", ("n1", 1), None, &[]);
    let c = ctx(&[("n1", 1)]);
    b.get("one", &c, &["b"]);
    b.put("c", ("n1", 2), Some(&c), &["b"]);
    let r = check(&history(b.ops, agreed(&ctx(&[("n1", 2)]), &["c"], 0)));
    assert!(!r.passed);
    assert_eq!(r.writes.lost, 1, "{:?}", r.lost_writes);
    assert_eq!(r.lost_writes[0].op.as_deref(), Some("c0#1"));
    assert!(r.lost_writes[0].detail.contains("also got"));
}

#[test]
fn an_unknown_write_may_be_there_or_not() {
    for present in [false, true] {
        let mut b = B::new();
        b.put("a", ("n1", 1), None, &[]);
        let op = b.op(OpKind::Put, Outcome::Unknown);
        op.value = Some("u".into());
        op.w = Some("all".into());
        let values: &[&str] = if present { &["a", "u"] } else { &["a"] };
        let r = check(&history(b.ops, agreed(&ctx(&[("n1", 2)]), values, 0)));
        assert!(r.passed, "{present}: {:?}", r.failures);
        assert_eq!(r.writes.unknown, 1);
        assert_eq!(r.writes.unknown_present, u64::from(present));
    }
}

#[test]
fn an_unknown_write_excuses_what_it_supersedes_only_if_it_happened() {
    let c1 = ctx(&[("n1", 1)]);
    let build = |seen: bool| {
        let mut b = B::new();
        b.put("a", ("n1", 1), None, &[]);
        let op = b.op(OpKind::Put, Outcome::Unknown);
        op.value = Some("u".into());
        op.context_sent = Some(c1.clone());
        op.supersedes = vec!["a".into()];
        if seen {
            // A later read showed "u": it happened.
            b.get("one", &ctx(&[("n1", 2)]), &["u"]);
        }
        b.ops
    };
    // Never seen: "a" must still be there, and is not.
    let r = check(&history(build(false), agreed(&ctx(&[("n1", 2)]), &[], 0)));
    assert_eq!(r.writes.lost, 1, "{:?}", r.lost_writes);
    // Seen: "a" was legitimately replaced ("u" itself may be gone later).
    let r = check(&history(build(true), agreed(&ctx(&[("n1", 2)]), &["u"], 0)));
    assert!(r.passed, "{:?}", r.failures);
    assert_eq!(r.writes.superseded, 1);
}

#[test]
fn a_value_back_after_a_covering_delete_is_a_resurrection() {
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    b.put("b", ("n2", 1), None, &[]);
    let c = ctx(&[("n1", 1), ("n2", 1)]);
    b.get("all", &c, &["a", "b"]);
    b.delete(("n1", 2), Some(&c), &["a", "b"]);
    let end = ctx(&[("n1", 2), ("n2", 1)]);
    // Correct: only the tombstone is left.
    let ok = check(&history(b.ops.clone(), agreed(&end, &[], 1)));
    assert!(ok.passed, "{:?}", ok.failures);
    assert_eq!(ok.keys_checked_for_resurrection, 1);
    // Wrong: "a" is back.
    let r = check(&history(b.ops, agreed(&end, &["a"], 1)));
    assert!(!r.passed);
    assert_eq!(r.resurrections.len(), 1, "{:?}", r.resurrections);
    assert_eq!(r.resurrections[0].op.as_deref(), Some("c0#4"));
    assert!(r.resurrections[0].detail.contains("is back"));
    assert_eq!(r.deleted_values_checked, 2);
}

#[test]
fn a_delete_that_did_not_cover_everything_is_not_a_resurrection_check() {
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    let c = ctx(&[("n1", 1)]);
    b.delete(("n1", 2), Some(&c), &["a"]);
    // A later, concurrent blind write is legitimately alive.
    b.put("b", ("n2", 1), None, &[]);
    let r = check(&history(
        b.ops,
        agreed(&ctx(&[("n1", 2), ("n2", 1)]), &["b"], 1),
    ));
    assert!(r.passed, "{:?}", r.failures);
    assert_eq!(r.keys_checked_for_resurrection, 0);
}

#[test]
fn an_acknowledged_delete_needs_its_tombstone() {
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    b.delete(("n2", 1), None, &[]);
    let end = ctx(&[("n1", 1), ("n2", 1)]);
    assert!(check(&history(b.ops.clone(), agreed(&end, &["a"], 1))).passed);
    let r = check(&history(b.ops, agreed(&end, &["a"], 0)));
    assert_eq!(r.writes.lost, 1, "{:?}", r.lost_writes);
}

#[test]
fn phantom_duplicate_and_failed_siblings_are_reported() {
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    let f = b.op(OpKind::Put, Outcome::Fail);
    f.value = Some("f".into());
    f.error = Some("connect".into());
    let end = ctx(&[("n1", 2)]);
    let r = check(&history(b.ops, agreed(&end, &["a", "a", "f", "zz"], 0)));
    assert!(!r.passed);
    let v: Vec<&str> = r
        .siblings
        .violations
        .iter()
        .map(|v| v.detail.as_str())
        .collect();
    assert!(v.iter().any(|d| d.contains("2 times")), "{v:?}");
    assert!(v.iter().any(|d| d.contains("never written")), "{v:?}");
    assert!(v.iter().any(|d| d.contains("certainly failed")), "{v:?}");
    assert!(v.iter().any(|d| d.contains("siblings but only")), "{v:?}");
    assert_eq!(r.siblings.max, 4);
}

#[test]
fn replicas_that_disagree_are_not_converged() {
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    let mut fk = agreed(&ctx(&[("n1", 1)]), &["a"], 0);
    fk.replicas[2].values.clear();
    fk.replicas[2].context = Some(ctx(&[]));
    fk.replicas[0].hints = 1;
    let r = check(&history(b.ops, fk));
    assert!(!r.passed);
    assert_eq!(r.convergence.diverged.len(), 1);
    assert!(r.convergence.diverged[0].detail.contains("hints"));
    // The run's own verdict counts too.
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    let mut h = history(b.ops, agreed(&ctx(&[("n1", 1)]), &["a"], 0));
    h.final_state.as_mut().unwrap().converged = false;
    assert!(!check(&h).passed);
}

#[test]
fn read_your_quorum_separates_strict_and_sloppy_misses() {
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    // A strict read at R=2 after a W=2 write that misses it: a bug.
    b.get("quorum", &ctx(&[]), &[]);
    let end = agreed(&ctx(&[("n1", 1)]), &["a"], 0);
    let r = check(&history(b.ops.clone(), end.clone()));
    assert_eq!(r.read_your_quorum.strict_checked, 1);
    assert_eq!(r.read_your_quorum.strict_violations, 1);
    assert!(!r.passed);

    // The same with a sloppy read: counted, not a failure.
    b.ops[1].sloppy = true;
    let r = check(&history(b.ops.clone(), end.clone()));
    assert_eq!(r.read_your_quorum.sloppy_violations, 1);
    assert_eq!(r.read_your_quorum.strict_violations, 0);
    assert!(r.passed, "{:?}", r.failures);

    // R=1 with W=2 does not overlap: not checked.
    b.ops[1].sloppy = false;
    b.ops[1].r = Some("one".into());
    let r = check(&history(b.ops.clone(), end.clone()));
    assert_eq!(r.read_your_quorum.strict_checked, 0);

    // A fault between the write and the read: not checked.
    b.ops[1].r = Some("all".into());
    let mut h = history(b.ops, end);
    h.faults.push(FaultEvent {
        start_us: b.t - 1_200,
        end_us: b.t - 1_200,
        action: Action::Kill { node: 2 },
        ok: true,
        detail: String::new(),
        during_handoff: false,
    });
    let r = check(&h);
    assert_eq!(r.read_your_quorum.strict_checked, 0);
}

#[test]
fn disturbances_last_from_fault_to_heal_plus_settling() {
    let ev = |t: u64, action| FaultEvent {
        start_us: t,
        end_us: t + 10,
        action,
        ok: true,
        detail: String::new(),
        during_handoff: false,
    };
    let d = disturbances(&[
        ev(1_000, Action::Isolate { node: 1 }),
        ev(5_000_000, Action::HealNetwork),
        ev(20_000_000, Action::Pause { node: 2 }),
        ev(21_000_000, Action::Kill { node: 3 }),
        ev(22_000_000, Action::HealAll),
        ev(40_000_000, Action::Kill { node: 1 }),
    ]);
    assert_eq!(
        d,
        vec![
            (1_000, 5_000_010 + dynkv_chaos::check::SETTLE_US),
            (20_000_000, 22_000_010 + dynkv_chaos::check::SETTLE_US),
            (40_000_000, u64::MAX),
        ]
    );
}

#[test]
fn a_history_survives_a_round_trip_through_its_file() {
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    b.get("quorum", &ctx(&[("n1", 1)]), &["a"]);
    let mut h = history(b.ops, agreed(&ctx(&[("n1", 1)]), &["a"], 0));
    h.faults.push(FaultEvent {
        start_us: 1,
        end_us: 2,
        action: Action::Partition {
            groups: vec![vec![1], vec![2, 3]],
        },
        ok: true,
        detail: String::new(),
        during_handoff: false,
    });
    let dir = std::env::temp_dir().join(format!("dynkv-chaos-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("history.jsonl");
    h.save(&path).unwrap();
    let back = History::load(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(back.ops, h.ops);
    assert_eq!(back.faults, h.faults);
    assert_eq!(back.final_state, h.final_state);
    assert_eq!(back.run, h.run);
    let a = check(&h);
    let b = check(&back);
    assert_eq!(a.passed, b.passed);
    assert_eq!(a.writes, b.writes);
}

fn event(t: u64, action: Action) -> FaultEvent {
    FaultEvent {
        start_us: t,
        end_us: t + 10,
        action,
        ok: true,
        detail: String::new(),
        during_handoff: false,
    }
}

#[test]
fn lost_disks_power_cuts_and_full_disks_disturb_until_healed_and_skewed_clocks_do_not() {
    let settle = dynkv_chaos::check::SETTLE_US;
    let d = disturbances(&[
        event(1_000_000, Action::WipeDisk { node: 1 }),
        event(3_000_000, Action::Restart { node: 1 }),
        event(
            10_000_000,
            Action::PowerCut {
                node: 2,
                torn: true,
                seed: 9,
            },
        ),
        event(12_000_000, Action::Restart { node: 2 }),
        event(20_000_000, Action::DiskFull { node: 3 }),
        event(24_000_000, Action::DiskFree { node: 3 }),
        event(
            30_000_000,
            Action::ClockSkew {
                node: 4,
                offset_ms: -30_000,
            },
        ),
        event(34_000_000, Action::ClockReset { node: 4 }),
        event(40_000_000, Action::DiskFull { node: 5 }),
        event(41_000_000, Action::HealAll),
    ]);
    assert_eq!(
        d,
        vec![
            (1_000_000, 3_000_010 + settle),
            (10_000_000, 12_000_010 + settle),
            (20_000_000, 24_000_010 + settle),
            (40_000_000, 41_000_010 + settle),
        ]
    );
}

#[test]
fn a_node_that_died_on_its_own_fails_the_run_and_names_the_fault_it_died_in() {
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    let mut h = history(b.ops, agreed(&ctx(&[("n1", 1)]), &["a"], 0));
    h.faults
        .push(event(5_000_000, Action::DiskFull { node: 2 }));
    h.faults.push(FaultEvent {
        detail: "INFO ready\ndynkv: writable_file_writer.h:312: Assertion failed.\n".into(),
        during_handoff: false,
        ..event(7_000_000, Action::Died { node: 2 })
    });
    h.faults
        .push(event(8_000_000, Action::DiskFree { node: 2 }));
    let r = check(&h);
    assert!(!r.passed);
    assert_eq!(r.crashes.len(), 1);
    assert_eq!(r.crashes[0].key, "n2");
    assert!(
        r.crashes[0].detail.contains("during disk_full")
            && r.crashes[0].detail.contains("Assertion failed"),
        "{}",
        r.crashes[0].detail
    );
    assert!(r.failures.iter().any(|f| f.contains("died on their own")));
}

#[test]
fn a_lost_write_names_the_disk_faults_that_came_after_it() {
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    b.put("b", ("n2", 1), None, &[]);
    let mut h = history(b.ops, agreed(&ctx(&[("n1", 1), ("n2", 1)]), &["b"], 0));
    // Before the write: not named.
    h.faults.push(event(500, Action::WipeDisk { node: 3 }));
    h.faults.push(FaultEvent {
        detail: "dropped 4096 B from 2 of 9 files: 000004.log 5000→904 (synced 904)".into(),
        during_handoff: false,
        ..event(
            2_500_000,
            Action::PowerCut {
                node: 1,
                torn: false,
                seed: 0,
            },
        )
    });
    h.faults.push(event(2_600_000, Action::Restart { node: 1 }));
    let r = check(&h);
    assert_eq!(r.writes.lost, 1);
    let d = &r.lost_writes[0].detail;
    assert!(
        d.contains(
            "[disk/clock faults since: power_cut n1 (dropped 4096 B from 2 of 9 files) at 2.5 s]"
        ),
        "{d}"
    );
    assert!(!d.contains("wipe_disk"), "{d}");
}

#[test]
fn answers_through_a_full_node_are_counted_by_kind_and_status() {
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    // Through n1 while its disk is full: a refused write and a read.
    let t0 = b.t + 1_000;
    {
        let op = b.op(OpKind::Put, Outcome::Unknown);
        op.value = Some("x".into());
        op.status = Some(507);
        op.error = Some("insufficient_storage".into());
    }
    b.get("one", &ctx(&[("n1", 1)]), &["a"]).status = Some(200);
    {
        let op = b.op(OpKind::Put, Outcome::Fail);
        op.value = Some("y".into());
        op.error = Some("connect".into());
    }
    // After space is back: not counted.
    let t1 = b.t + 500;
    b.get("one", &ctx(&[("n1", 1)]), &["a"]).status = Some(200);
    let mut h = history(b.ops, agreed(&ctx(&[("n1", 1)]), &["a"], 0));
    h.faults.push(event(t0 - 10, Action::DiskFull { node: 1 }));
    h.faults.push(event(t1, Action::DiskFree { node: 1 }));
    let r = check(&h);
    let got: Vec<(&str, u64)> = r
        .disk_full_answers
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(got, [("get 200", 1), ("put 507", 1), ("put connect", 1)]);
    // A refused write is not acknowledged: nothing is lost.
    assert_eq!(r.writes.acknowledged, 1);
    assert!(r.passed, "{:?}", r.failures);
}

// Tombstone reaping.

/// Reaping as the run records it: a grace of 3 ms and a settle of 1 ms, in
/// the builder's time (an operation every 1 ms).
const REAP: ReapSettings = ReapSettings {
    grace_ms: 3,
    settle_ms: 1,
    interval_ms: 1,
};

fn reaping(mut h: History) -> History {
    h.run.as_mut().unwrap().reap = Some(REAP);
    h
}

/// A reaped key's final state: no primary stores anything, and reads
/// answer 404 with an empty context.
fn reaped() -> FinalKey {
    let view = |node| ObjectView {
        node,
        status: 200,
        found: false,
        context: Some(ctx(&[])),
        ..ObjectView::default()
    };
    FinalKey {
        primaries: vec![1, 2, 3],
        replicas: (1..=3).map(view).collect(),
        reads: (1..=3)
            .map(|node| ObjectView {
                status: 404,
                ..view(node)
            })
            .collect(),
    }
}

/// A put, a read, a delete with the read's context: `a` (n1:1), then the
/// tombstone (n1:2), ending at 4.5 ms.
fn put_then_delete() -> B {
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    let c = ctx(&[("n1", 1)]);
    b.get("quorum", &c, &["a"]);
    b.delete(("n1", 2), Some(&c), &["a"]);
    b
}

#[test]
fn a_reaped_key_passes() {
    let b = put_then_delete();
    let r = check(&reaping(history(b.ops.clone(), reaped())));
    assert!(r.passed, "{:?}", r.failures);
    assert_eq!(r.keys_reaped, 1);
    assert_eq!(r.writes.lost, 0);
    // Both dots went with the tombstone; the put was removed by an
    // acknowledged delete.
    assert_eq!(r.writes.reaped, 2);
    assert_eq!(r.writes.reaped_by_unconfirmed_delete, 0);
    assert_eq!(r.keys_checked_for_resurrection, 1);

    // The same final state from nodes that do not reap: both writes lost.
    let r = check(&history(b.ops, reaped()));
    assert!(!r.passed);
    assert_eq!(r.writes.lost, 2, "{:?}", r.lost_writes);
    assert!(
        r.lost_writes
            .iter()
            .all(|v| v.detail.contains("not covered by the final context"))
    );
}

#[test]
fn a_key_reaped_on_one_primary_only_has_not_converged() {
    let b = put_then_delete();
    let mut fk = reaped();
    fk.replicas[1] = agreed(&ctx(&[("n1", 2)]), &[], 1).replicas[1].clone();
    let r = check(&reaping(history(b.ops, fk)));
    assert!(!r.passed);
    assert_eq!(r.convergence.diverged.len(), 1, "{:?}", r.convergence);
}

#[test]
fn a_deleted_value_back_after_reaping_is_a_resurrection() {
    // A replica that missed the delete, or a message that carried the old
    // value past the reap: "a" is back, with its old clock or none.
    for context in [ctx(&[("n1", 1)]), ctx(&[])] {
        let b = put_then_delete();
        let r = check(&reaping(history(b.ops, agreed(&context, &["a"], 0))));
        assert!(!r.passed);
        assert_eq!(r.resurrections.len(), 1, "{:?}", r.resurrections);
        assert!(
            r.resurrections[0].detail.contains("is back"),
            "{:?}",
            r.resurrections
        );
    }
}

#[test]
fn a_put_lost_without_a_covering_delete_still_fails_with_reaping() {
    // "a" and "b" are concurrent; the delete saw only "b". A reap is only
    // possible once "a" is gone, and nothing removed "a".
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    b.put("b", ("n2", 1), None, &[]);
    let c = ctx(&[("n2", 1)]);
    b.get("one", &c, &["b"]);
    b.delete(("n2", 2), Some(&c), &["b"]);
    let r = check(&reaping(history(b.ops, reaped())));
    assert!(!r.passed);
    assert_eq!(r.writes.lost, 1, "{:?}", r.lost_writes);
    assert_eq!(r.lost_writes[0].op.as_deref(), Some("c0#1"));
    // The delete and the put it removed are accepted.
    assert_eq!(r.writes.reaped, 2);
}

#[test]
fn a_write_after_reaping_starts_a_fresh_clock_and_passes() {
    let mut b = put_then_delete();
    b.t += 10_000;
    // Through n2, whose actor the tombstone did not hold: n2:1.
    b.put("b", ("n2", 1), None, &[]);
    let fresh = ctx(&[("n2", 1)]);
    b.get("quorum", &fresh, &["b"]);
    // A client with a context from before the reap may still send it.
    b.put("c", ("n2", 2), Some(&fresh), &["b"]).context_sent = Some(ctx(&[("n1", 1), ("n2", 1)]));
    let end = ctx(&[("n2", 2)]);
    b.get("all", &end, &["c"]);
    let r = check(&reaping(history(b.ops, agreed(&end, &["c"], 0))));
    assert!(r.passed, "{:?}", r.failures);
    assert_eq!(r.writes.lost, 0);
    assert_eq!(r.writes.reaped, 2);
    assert_eq!(r.writes.present, 1);
    // The reads after the reap miss the old dots: accepted, as they come
    // late enough and show only the new values.
    assert_eq!(
        r.read_your_quorum.strict_violations, 0,
        "{:?}",
        r.read_your_quorum
    );
    assert_eq!(r.read_your_quorum.reaped_accepted, 4);
}

#[test]
fn a_write_after_reaping_that_reuses_a_dot_fails() {
    // The counter floor not applied: n1 numbers from 1 again after the
    // reap, so "b" gets the dot "a" had.
    let mut b = put_then_delete();
    b.t += 10_000;
    b.put("b", ("n1", 1), None, &[]);
    let r = check(&reaping(history(
        b.ops,
        agreed(&ctx(&[("n1", 1)]), &["b"], 0),
    )));
    assert!(!r.passed);
    assert!(
        r.lost_writes
            .iter()
            .any(|v| v.op.as_deref() == Some("c0#4") && v.detail.contains("also got")),
        "{:?}",
        r.lost_writes
    );
}

#[test]
fn with_reaping_a_read_may_miss_a_delete_only_late_enough_and_never_show_an_old_value() {
    let end = reaped();
    // A 404 with an empty context right after the delete (0.5 ms after it
    // ended, 1.5 ms after it started: within the 3 ms grace).
    let mut b = put_then_delete();
    b.get("quorum", &ctx(&[]), &[]);
    let r = check(&reaping(history(b.ops.clone(), end.clone())));
    assert_eq!(
        r.read_your_quorum.strict_violations, 2,
        "{:?}",
        r.read_your_quorum
    );
    assert!(!r.passed);

    // With a node's clock 2 ms ahead in the run, the grace may have been
    // 2 ms shorter: accepted.
    let mut h = reaping(history(b.ops.clone(), end.clone()));
    h.faults.push(event(
        100,
        Action::ClockSkew {
            node: 2,
            offset_ms: 2,
        },
    ));
    h.faults.push(event(200, Action::ClockReset { node: 2 }));
    let r = check(&h);
    assert!(r.passed, "{:?}", r.failures);
    assert_eq!(r.read_your_quorum.reaped_accepted, 2);

    // The same read after the grace: accepted.
    let last = b.ops.len() - 1;
    b.ops[last].start_us += 3_000;
    b.ops[last].end_us += 3_000;
    let r = check(&reaping(history(b.ops.clone(), end.clone())));
    assert!(r.passed, "{:?}", r.failures);
    assert_eq!(r.read_your_quorum.reaped_accepted, 2);

    // A 200 showing the deleted value, however late: a violation.
    b.ops[last].values = vec!["a".into()];
    b.ops[last].context = Some(ctx(&[("n1", 1)]));
    let r = check(&reaping(history(b.ops.clone(), end.clone())));
    assert_eq!(
        r.read_your_quorum.strict_violations, 1,
        "{:?}",
        r.read_your_quorum
    );
    assert!(!r.passed);
    // ... and with an empty context too (it then misses the put as well).
    b.ops[last].context = Some(ctx(&[]));
    let r = check(&reaping(history(b.ops, end)));
    assert_eq!(
        r.read_your_quorum.strict_violations, 2,
        "{:?}",
        r.read_your_quorum
    );
}

fn ring(node: usize, version: u64, owned: &[(&str, u64)]) -> RingView {
    RingView {
        node,
        version: Some(version),
        members: owned
            .iter()
            .map(|(id, p)| RingMember {
                id: id.to_string(),
                status: "valid".into(),
                partitions_owned: *p,
            })
            .collect(),
        transition: false,
        error: None,
    }
}

#[test]
fn every_member_must_report_the_same_ring_at_the_end() {
    let owned = [("n1", 22), ("n2", 21), ("n3", 21)];
    let mut h = history(Vec::new(), agreed(&ctx(&[("n1", 1)]), &[], 0));
    // Histories from before ring views were recorded are not checked.
    let r = check(&h);
    assert!(!r.ring.checked && r.passed, "{:?}", r.failures);

    let fin = h.final_state.as_mut().unwrap();
    fin.rings = (1..=3).map(|i| ring(i, 9, &owned)).collect();
    let r = check(&h);
    assert!(
        r.ring.checked && r.ring.agreed && r.passed,
        "{:?}",
        r.failures
    );
    assert_eq!(r.ring.version, Some(9));
    assert_eq!(
        r.ring.members,
        vec!["n1 valid 22", "n2 valid 21", "n3 valid 21"]
    );

    // A node behind on the version, one owning other partitions, one still
    // in a transition, one that did not answer: each is a disagreement.
    for change in [
        |v: &mut RingView| v.version = Some(8),
        |v: &mut RingView| v.members[0].partitions_owned = 21,
        |v: &mut RingView| v.members[2].status = "leaving".into(),
        |v: &mut RingView| v.transition = true,
        |v: &mut RingView| v.error = Some("no answer".into()),
    ] {
        let mut h = h.clone();
        change(&mut h.final_state.as_mut().unwrap().rings[2]);
        let r = check(&h);
        assert!(!r.ring.agreed && !r.passed);
        assert_eq!(r.ring.disagreements.len(), 1);
        assert_eq!(r.ring.disagreements[0].key, "n3");
    }
}

#[test]
fn faults_during_a_handoff_and_commit_outcomes_are_counted_and_a_refusal_is_no_failure() {
    let mut h = history(Vec::new(), agreed(&ctx(&[("n1", 1)]), &[], 0));
    let during = |t, action| FaultEvent {
        during_handoff: true,
        ..event(t, action)
    };
    h.faults = vec![
        event(1_000, Action::RacingCommits { leave: 5 }),
        event(
            1_100,
            Action::Commit {
                node: 1,
                accepted: true,
            },
        ),
        FaultEvent {
            detail: "refused: 409 membership_refused".into(),
            ..event(
                1_100,
                Action::Commit {
                    node: 3,
                    accepted: false,
                },
            )
        },
        during(2_000, Action::Kill { node: 5 }),
        during(3_000, Action::Restart { node: 5 }),
        during(4_000, Action::Isolate { node: 2 }),
        during(5_000, Action::HealNetwork),
        event(6_000, Action::Pause { node: 1 }),
        event(7_000, Action::Resume { node: 1 }),
        event(60_000_000, Action::AwaitHandoff),
    ];
    let r = check(&h);
    assert!(r.passed, "{:?}", r.failures);
    assert_eq!(r.faults_failed, 0);
    assert_eq!(r.faults_during_handoff, 2);
    assert_eq!(r.faults_during_handoff_by_kind.get("kill"), Some(&1));
    assert_eq!(r.faults_during_handoff_by_kind.get("isolate"), Some(&1));
    assert_eq!((r.commits.accepted, r.commits.refused), (1, 1));
    // The change disturbs from its step to the await that saw it done.
    let d = disturbances(&h.faults);
    assert!(
        d.iter().any(|&(a, b)| a <= 1_000 && b >= 60_000_000),
        "{d:?}"
    );
}

/// A feed event of key `k`.
fn feed_event(dot: &str, value: Option<&str>, node: usize) -> FeedEvent {
    FeedEvent {
        node,
        at_us: 0,
        key: "k".into(),
        dot: dot.into(),
        value: value.map(str::to_string),
        deleted: value.is_none(),
    }
}

/// Two acknowledged puts and a delete, the final state agreeing, and the
/// feed consumer's events.
fn feed_history(events: Vec<FeedEvent>, summary: FeedSummary) -> History {
    let mut b = B::new();
    b.put("a", ("n1", 1), None, &[]);
    let c1 = ctx(&[("n1", 1)]);
    b.put("b", ("n1", 2), Some(&c1), &["a"]);
    let c2 = ctx(&[("n1", 2)]);
    b.delete(("n1", 3), Some(&c2), &["b"]);
    // An unknown write may or may not be in the feed.
    let u = b.op(OpKind::Put, Outcome::Unknown);
    u.value = Some("u".into());
    let mut h = history(b.ops, agreed(&ctx(&[("n1", 3)]), &[], 1));
    h.feed = events;
    h.feed_summary = Some(summary);
    h
}

fn caught_up() -> FeedSummary {
    FeedSummary {
        drained: true,
        polls: 3,
        ..FeedSummary::default()
    }
}

#[test]
fn every_acknowledged_write_once_in_the_feed_passes() {
    let events = vec![
        feed_event("n1:1", Some("a"), 1),
        feed_event("n1:2", Some("b"), 2),
        feed_event("n1:3", None, 3),
        feed_event("n2:1", Some("u"), 3),
    ];
    let r = check(&feed_history(events, caught_up()));
    assert!(r.passed, "{:?}", r.failures);
    let f = r.feed.unwrap();
    assert_eq!((f.events, f.acknowledged), (4, 3));
    // No consumer ran: no feed check.
    let mut h = feed_history(Vec::new(), caught_up());
    h.feed_summary = None;
    assert!(check(&h).feed.is_none());
}

#[test]
fn a_missing_duplicated_or_wrong_feed_event_fails() {
    let missing = check(&feed_history(
        vec![
            feed_event("n1:1", Some("a"), 1),
            feed_event("n1:3", None, 1),
        ],
        caught_up(),
    ));
    assert!(!missing.passed);
    let f = missing.feed.unwrap();
    assert_eq!(f.missing.len(), 1);
    assert!(f.missing[0].detail.contains("n1:2"), "{:?}", f.missing);

    let twice = check(&feed_history(
        vec![
            feed_event("n1:1", Some("a"), 1),
            feed_event("n1:2", Some("b"), 1),
            feed_event("n1:2", Some("b"), 2),
            feed_event("n1:3", None, 2),
        ],
        caught_up(),
    ));
    assert!(!twice.passed);
    assert_eq!(twice.feed.unwrap().duplicates.len(), 1);

    let wrong = check(&feed_history(
        vec![
            feed_event("n1:1", Some("a"), 1),
            feed_event("n1:2", Some("x"), 1),
            feed_event("n1:3", Some("b"), 1),
        ],
        caught_up(),
    ));
    assert!(!wrong.passed);
    assert_eq!(wrong.feed.unwrap().wrong_values.len(), 2);

    let all = vec![
        feed_event("n1:1", Some("a"), 1),
        feed_event("n1:2", Some("b"), 1),
        feed_event("n1:3", None, 1),
    ];
    let gap = check(&feed_history(
        all.clone(),
        FeedSummary {
            expired: vec!["n1 at x: expired".into()],
            ..caught_up()
        },
    ));
    assert!(!gap.passed);
    assert!(
        gap.failures.iter().any(|f| f.contains("410")),
        "{:?}",
        gap.failures
    );
    let behind = check(&feed_history(all, FeedSummary::default()));
    assert!(!behind.passed);
    assert!(
        behind.failures.iter().any(|f| f.contains("catch up")),
        "{:?}",
        behind.failures
    );
}
