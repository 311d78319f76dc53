//! The lattice laws of every type, on states reached by random histories of
//! updates and merges across three replicas (one actor each): merge is
//! commutative, associative and idempotent, and every update is
//! inflationary (merging the state before it into the state after it
//! changes nothing).

use std::fmt::Debug;

use dynkv_crdt::{Convergent, Counter, FieldType, Flag, GSet, Hll, Map, OrSet, Register, Value};
use proptest::prelude::*;

const ACTORS: [&str; 3] = ["a", "b", "c"];

fn merged<T: Convergent + Clone>(x: &T, y: &T) -> T {
    let mut out = x.clone();
    out.merge(y);
    out
}

/// Checks the three laws on `a`, `b`, `c`, comparing full states and values.
fn check_laws<T, V>(a: &T, b: &T, c: &T, value: impl Fn(&T) -> V)
where
    T: Convergent + Clone + PartialEq + Debug,
    V: PartialEq + Debug,
{
    let ab = merged(a, b);
    let ba = merged(b, a);
    assert_eq!(ab, ba, "commutative");
    assert_eq!(value(&ab), value(&ba));

    let ab_c = merged(&ab, c);
    let a_bc = merged(a, &merged(b, c));
    assert_eq!(ab_c, a_bc, "associative");
    assert_eq!(value(&ab_c), value(&a_bc));

    let aa = merged(a, a);
    assert_eq!(&aa, a, "idempotent");
    assert_eq!(value(&aa), value(a));
}

/// Asserts that `post`, the result of an update on `pre`, absorbs `pre`.
fn check_inflation<T: Convergent + Clone + PartialEq + Debug>(pre: &T, post: &T) {
    assert_eq!(&merged(post, pre), post, "update is inflationary");
}

/// An operation at replica `.0`: an update (`.1`), or a merge from another
/// replica (`Op::Merge`).
#[derive(Clone, Debug)]
enum Op {
    /// Generic update payload: element, amount or timestamp.
    Update(usize, u8, i64),
    /// Remove/disable at `.0` with the context of replica `.1`.
    Remove(usize, usize, u8),
    /// Merge replica `.1` into replica `.0`.
    Merge(usize, usize),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (0..3usize, 0..5u8, -5..6i64).prop_map(|(r, e, n)| Op::Update(r, e, n)),
        2 => (0..3usize, 0..3usize, 0..5u8).prop_map(|(r, c, e)| Op::Remove(r, c, e)),
        2 => (0..3usize, 0..3usize).prop_map(|(r, s)| Op::Merge(r, s)),
    ];
    prop::collection::vec(op, 0..40)
}

/// Runs `ops` on three replicas, checking inflation of every update.
fn run<T: Convergent + Clone + PartialEq + Debug>(
    mut replicas: [T; 3],
    ops: &[Op],
    update: impl Fn(&mut T, &str, u8, i64),
    remove: impl Fn(&mut T, &T, u8),
) -> [T; 3] {
    for op in ops {
        match *op {
            Op::Update(r, e, n) => {
                let pre = replicas[r].clone();
                update(&mut replicas[r], ACTORS[r], e, n);
                check_inflation(&pre, &replicas[r]);
            }
            Op::Remove(r, c, e) => {
                let pre = replicas[r].clone();
                let ctx = replicas[c].clone();
                remove(&mut replicas[r], &ctx, e);
                check_inflation(&pre, &replicas[r]);
            }
            Op::Merge(r, s) => {
                let pre = replicas[r].clone();
                let from = replicas[s].clone();
                replicas[r].merge(&from);
                check_inflation(&pre, &replicas[r]);
            }
        }
    }
    replicas
}

proptest! {
    #[test]
    fn counter_laws(ops in ops()) {
        let [a, b, c] = run(
            Default::default(),
            &ops,
            |x: &mut Counter, actor, _, n| x.increment(actor, n),
            |x: &mut Counter, _, e| x.decrement("a", u64::from(e)),
        );
        check_laws(&a, &b, &c, Counter::value);
    }

    #[test]
    fn gset_laws(ops in ops()) {
        let [a, b, c] = run(
            Default::default(),
            &ops,
            |x: &mut GSet, _, e, _| x.add(vec![e]),
            |_: &mut GSet, _, _| {},
        );
        check_laws(&a, &b, &c, |s: &GSet| s.value().clone());
    }

    #[test]
    fn orset_laws(ops in ops()) {
        let [a, b, c] = run(
            Default::default(),
            &ops,
            |x: &mut OrSet, actor, e, _| x.add(actor, vec![e]),
            |x: &mut OrSet, ctx, e| {
                let _ = x.remove(&[e], &ctx.context());
            },
        );
        check_laws(&a, &b, &c, |s: &OrSet| s.value().cloned().collect::<Vec<_>>());
    }

    #[test]
    fn flag_laws(ops in ops()) {
        let [a, b, c] = run(
            Default::default(),
            &ops,
            |x: &mut Flag, actor, _, _| x.enable(actor),
            |x: &mut Flag, ctx, _| {
                let _ = x.disable(&ctx.context());
            },
        );
        check_laws(&a, &b, &c, Flag::value);
    }

    #[test]
    fn register_laws(ops in ops()) {
        let [a, b, c] = run(
            Default::default(),
            &ops,
            |x: &mut Register, actor, e, n| x.assign(vec![e], n.unsigned_abs(), actor),
            // A second writer whose clock runs ahead: ties and overtakes.
            |x: &mut Register, _, e| x.assign(vec![e, e], u64::from(e), "z"),
        );
        check_laws(&a, &b, &c, |r: &Register| r.value().map(<[u8]>::to_vec));
    }

    #[test]
    fn hll_laws(ops in ops(), precisions in prop::array::uniform3(4u8..=6)) {
        let replicas = precisions.map(|p| Hll::new(p).unwrap());
        let [a, b, c] = run(
            replicas,
            &ops,
            |x: &mut Hll, _, e, n| x.add(&[e, n as u8]),
            |x: &mut Hll, _, e| x.add(&[e; 3]),
        );
        check_laws(&a, &b, &c, Hll::estimate);
    }

    #[test]
    fn map_laws(ops in ops()) {
        let [a, b, c] = run(
            Default::default(),
            &ops,
            |x: &mut Map, actor, e, n| {
                let (name, kind) = map_field(e);
                x.update(actor, name, kind, |v| update_value(v, actor, e, n));
            },
            |x: &mut Map, ctx, e| {
                let (name, kind) = map_field(e);
                let _ = x.remove(name, kind, &ctx.context());
            },
        );
        check_laws(&a, &b, &c, Map::value);
    }
}

/// Five fields of the five types, two sharing a name.
fn map_field(e: u8) -> (&'static str, FieldType) {
    match e % 5 {
        0 => ("x", FieldType::Counter),
        1 => ("x", FieldType::Set),
        2 => ("r", FieldType::Register),
        3 => ("f", FieldType::Flag),
        _ => ("m", FieldType::Map),
    }
}

/// An update of an embedded value, nesting one level for maps.
fn update_value(v: &mut Value, actor: &str, e: u8, n: i64) {
    match v {
        Value::Counter(c) => c.increment(actor, n),
        Value::Set(s) => {
            if n > 0 {
                s.add(actor, vec![n as u8]);
            } else {
                let ctx = s.context();
                let _ = s.remove(&[n.unsigned_abs() as u8], &ctx);
            }
        }
        Value::Register(r) => r.assign(vec![e], n.unsigned_abs(), actor),
        Value::Flag(f) => {
            if n >= 0 {
                f.enable(actor);
            } else {
                let ctx = f.context();
                let _ = f.disable(&ctx);
            }
        }
        Value::Map(m) => {
            let kind = map_field((n.unsigned_abs() % 4) as u8).1;
            m.update(actor, "inner", kind, |inner| {
                update_value(inner, actor, e, n)
            });
        }
    }
}
