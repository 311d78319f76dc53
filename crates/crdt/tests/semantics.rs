//! What each type means: the Riak 2.x behaviours callers rely on.

use dynkv_crdt::{
    Convergent, Counter, FieldType, Flag, GSet, Hll, InvalidPrecision, Map, OrSet, Precondition,
    Register, Value, VersionVector,
};

fn merged<T: Convergent + Clone>(x: &T, y: &T) -> T {
    let mut out = x.clone();
    out.merge(y);
    out
}

#[test]
fn counter_counts_increments_and_decrements_of_all_actors() {
    let mut a = Counter::new();
    let mut b = Counter::new();
    a.increment("a", 5);
    a.increment("a", -2);
    b.increment("b", 10);
    b.decrement("b", 4);
    assert_eq!(a.value(), 3);
    assert_eq!(b.value(), 6);
    let ab = merged(&a, &b);
    assert_eq!(ab.value(), 9);
    // Re-delivering old state counts nothing twice.
    assert_eq!(merged(&ab, &a).value(), 9);
}

#[test]
fn gset_only_grows() {
    let mut a = GSet::new();
    let mut b = GSet::new();
    a.add(b"x".to_vec());
    b.add(b"y".to_vec());
    let ab = merged(&a, &b);
    assert!(ab.contains(b"x") && ab.contains(b"y"));
    assert!(!ab.contains(b"z"));
    assert_eq!(ab.len(), 2);
}

#[test]
fn orset_concurrent_add_wins_over_remove() {
    let mut a = OrSet::new();
    a.add("a", b"x".to_vec());
    let mut b = a.clone();
    // b removes what it observed while a adds x again concurrently.
    let ctx = b.context();
    b.remove(b"x", &ctx).unwrap();
    assert!(!b.contains(b"x"));
    a.add("a", b"x".to_vec());
    assert!(merged(&a, &b).contains(b"x"));
    assert!(merged(&b, &a).contains(b"x"));
}

#[test]
fn orset_observed_remove_sticks_without_tombstones() {
    let mut a = OrSet::new();
    a.add("a", b"x".to_vec());
    a.add("a", b"y".to_vec());
    let mut b = a.clone();
    let ctx = b.context();
    b.remove(b"x", &ctx).unwrap();
    let ab = merged(&a, &b);
    assert!(!ab.contains(b"x"));
    assert!(ab.contains(b"y"));
    assert_eq!(ab.value().collect::<Vec<_>>(), vec![&b"y".to_vec()]);
}

#[test]
fn orset_remove_of_unobserved_element_is_a_precondition_error() {
    let mut a = OrSet::new();
    a.add("a", b"x".to_vec());
    let ctx = a.context();
    assert_eq!(a.remove(b"never", &ctx), Err(Precondition::NotPresent));
    assert_eq!(
        OrSet::new().remove(b"x", &VersionVector::new()),
        Err(Precondition::NotPresent)
    );
    // A context with adds this replica has not received is refused too.
    let mut b = OrSet::new();
    b.add("b", b"x".to_vec());
    assert_eq!(
        a.remove(b"x", &b.context()),
        Err(Precondition::UnseenContext)
    );
    assert!(a.contains(b"x"));
}

#[test]
fn orset_remove_with_old_context_keeps_newer_add() {
    let mut a = OrSet::new();
    a.add("a", b"x".to_vec());
    let old = a.context();
    a.add("a", b"x".to_vec());
    a.remove(b"x", &old).unwrap();
    assert!(
        a.contains(b"x"),
        "the add the context had not seen survives"
    );
    let ctx = a.context();
    a.remove(b"x", &ctx).unwrap();
    assert!(a.is_empty());
}

#[test]
fn flag_enable_wins_over_concurrent_disable() {
    let mut a = Flag::new();
    a.enable("a");
    let mut b = a.clone();
    let ctx = b.context();
    b.disable(&ctx).unwrap();
    assert!(!b.value());
    a.enable("a");
    assert!(merged(&a, &b).value());
    assert!(merged(&b, &a).value());

    // Without a concurrent enable the disable sticks.
    let mut c = Flag::new();
    c.enable("c");
    let mut d = c.clone();
    let ctx = d.context();
    d.disable(&ctx).unwrap();
    assert!(!merged(&c, &d).value());
}

#[test]
fn lww_register_latest_timestamp_wins_and_ties_break_deterministically() {
    let mut a = Register::new();
    let mut b = Register::new();
    a.assign(b"old".to_vec(), 1, "a");
    b.assign(b"new".to_vec(), 2, "b");
    assert_eq!(merged(&a, &b).value(), Some(&b"new"[..]));
    assert_eq!(merged(&b, &a).value(), Some(&b"new"[..]));

    // Same timestamp: the greater actor id wins, whichever side merges.
    let mut x = Register::new();
    let mut y = Register::new();
    x.assign(b"from-x".to_vec(), 7, "node-1");
    y.assign(b"from-y".to_vec(), 7, "node-2");
    assert_eq!(merged(&x, &y).value(), Some(&b"from-y"[..]));
    assert_eq!(merged(&y, &x).value(), Some(&b"from-y"[..]));
    assert_eq!(merged(&y, &x).winner(), Some((7, "node-2")));

    // An older assign is ignored.
    let mut z = merged(&x, &y);
    z.assign(b"stale".to_vec(), 3, "node-9");
    assert_eq!(z.value(), Some(&b"from-y"[..]));
    assert_eq!(Register::new().value(), None);
}

fn element(i: u64) -> Vec<u8> {
    format!("element-{i}").into_bytes()
}

#[test]
fn hll_estimate_within_two_percent_at_precision_14() {
    for n in [10_000u64, 100_000] {
        let mut h = Hll::new(14).unwrap();
        for i in 0..n {
            h.add(&element(i));
        }
        // Duplicates do not count.
        for i in 0..n / 10 {
            h.add(&element(i));
        }
        let est = h.estimate() as f64;
        let err = (est - n as f64).abs() / n as f64;
        assert!(err < 0.02, "n={n} estimate={est} error={err}");
    }
}

#[test]
fn hll_merge_equals_hll_of_union() {
    let mut a = Hll::default();
    let mut b = Hll::default();
    let mut union = Hll::default();
    for i in 0..20_000u64 {
        let e = element(i);
        if i % 3 == 0 {
            a.add(&e);
        } else {
            b.add(&e);
        }
        if i % 5 == 0 {
            a.add(&e);
        }
        union.add(&e);
    }
    assert_eq!(merged(&a, &b), union);
    assert_eq!(merged(&a, &b).estimate(), union.estimate());
}

#[test]
fn hll_merge_of_two_precisions_keeps_the_lower_one() {
    let mut fine = Hll::new(14).unwrap();
    let mut coarse = Hll::new(10).unwrap();
    let mut union = Hll::new(10).unwrap();
    for i in 0..5_000u64 {
        let e = element(i);
        if i % 2 == 0 {
            fine.add(&e);
        } else {
            coarse.add(&e);
        }
        union.add(&e);
    }
    let m1 = merged(&fine, &coarse);
    let m2 = merged(&coarse, &fine);
    assert_eq!(m1.precision(), 10);
    assert_eq!(m1, union);
    assert_eq!(m2, union);
}

#[test]
fn hll_precision_is_validated() {
    assert_eq!(Hll::new(3), Err(InvalidPrecision(3)));
    assert_eq!(Hll::new(17), Err(InvalidPrecision(17)));
    assert!(Hll::new(4).is_ok() && Hll::new(16).is_ok());
    assert_eq!(Hll::default().precision(), 14);
    assert_eq!(Hll::default().registers().len(), 1 << 14);
    assert_eq!(Hll::default().estimate(), 0);
}

fn counter_of(m: &Map, name: &str) -> Option<i64> {
    match m.get(name, FieldType::Counter)? {
        Value::Counter(c) => Some(c.value()),
        other => panic!("not a counter: {other:?}"),
    }
}

#[test]
fn map_fields_are_keyed_by_name_and_type_and_merge_their_values() {
    let mut a = Map::new();
    let mut b = Map::new();
    a.update("a", "n", FieldType::Counter, |v| {
        if let Value::Counter(c) = v {
            c.increment("a", 2);
        }
    });
    b.update("b", "n", FieldType::Counter, |v| {
        if let Value::Counter(c) = v {
            c.increment("b", 3);
        }
    });
    b.update("b", "n", FieldType::Register, |v| {
        if let Value::Register(r) = v {
            r.assign(b"name".to_vec(), 1, "b");
        }
    });
    let ab = merged(&a, &b);
    assert_eq!(ab.len(), 2);
    assert_eq!(counter_of(&ab, "n"), Some(5));
    assert_eq!(
        ab.get("n", FieldType::Register),
        Some(Value::Register({
            let mut r = Register::new();
            r.assign(b"name".to_vec(), 1, "b");
            r
        }))
    );
}

#[test]
fn map_remove_needs_context_and_concurrent_update_wins() {
    let mut a = Map::new();
    let bump = |v: &mut Value| {
        if let Value::Counter(c) = v {
            c.increment("a", 1);
        }
    };
    a.update("a", "n", FieldType::Counter, bump);
    assert_eq!(
        a.remove("other", FieldType::Counter, &a.context()),
        Err(Precondition::NotPresent)
    );
    let mut b = a.clone();
    let ctx = b.context();
    b.remove("n", FieldType::Counter, &ctx).unwrap();
    assert!(b.is_empty());
    // Removal without a concurrent update sticks.
    assert!(merged(&a, &b).is_empty());
    // An update concurrent with the removal keeps the field.
    a.update("a", "n", FieldType::Counter, bump);
    let ab = merged(&a, &b);
    assert_eq!(counter_of(&ab, "n"), Some(2));
    assert_eq!(ab, merged(&b, &a));
}

#[test]
fn map_nests_maps() {
    let mut a = Map::new();
    a.update("a", "profile", FieldType::Map, |v| {
        if let Value::Map(m) = v {
            m.update("a", "tags", FieldType::Set, |v| {
                if let Value::Set(s) = v {
                    s.add("a", b"rust".to_vec());
                }
            });
        }
    });
    let Some(Value::Map(profile)) = a.get("profile", FieldType::Map) else {
        panic!("profile missing");
    };
    let Some(Value::Set(tags)) = profile.get("tags", FieldType::Set) else {
        panic!("tags missing");
    };
    assert!(tags.contains(b"rust"));
}
