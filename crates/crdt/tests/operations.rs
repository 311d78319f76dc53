//! Client operations ([`dynkv_crdt::op::apply`]) on random histories over
//! three replicas, each applying operations with its own actor and merging
//! the others' states: every applied operation is inflationary, refused
//! ones change nothing, replicas that exchanged everything hold equal
//! states, and every state survives its storage encoding.

use dynkv_crdt::op::apply;
use dynkv_crdt::{
    Convergent, DataType, FieldOp, FieldType, Kind, MapOp, Op, SetOp, Update, VersionVector,
};
use proptest::prelude::*;

const ACTORS: [&str; 3] = ["n1#a", "n2#b", "n3#c"];

/// One step of a history.
#[derive(Clone, Debug)]
enum Step {
    /// Replica `.0` applies `.1`, with the context of replica `.2`'s
    /// state (`None`: no context).
    Apply(usize, Op, Option<usize>),
    /// Replica `.0` merges replica `.1`'s state.
    Merge(usize, usize),
}

fn elems() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec((0..4u8).prop_map(|e| vec![b'a' + e]), 0..3)
}

fn set_op() -> impl Strategy<Value = SetOp> {
    (elems(), elems()).prop_map(|(add, remove)| SetOp { add, remove })
}

fn field_op() -> impl Strategy<Value = ((String, FieldType), FieldOp)> {
    let name = (0..2u8).prop_map(|n| format!("f{n}"));
    prop_oneof![
        (name.clone(), -3..4i64)
            .prop_map(|(n, by)| ((n, FieldType::Counter), FieldOp::Counter(by))),
        (name.clone(), set_op()).prop_map(|(n, op)| ((n, FieldType::Set), FieldOp::Set(op))),
        (name.clone(), any::<bool>()).prop_map(|(n, on)| ((n, FieldType::Flag), FieldOp::Flag(on))),
        (name, 0..3u8).prop_map(|(n, v)| ((n, FieldType::Register), FieldOp::Register(vec![v]))),
    ]
}

fn map_op() -> impl Strategy<Value = MapOp> {
    let field = (0..2u8, 0..4u8).prop_map(|(n, t)| {
        let kind = [
            FieldType::Counter,
            FieldType::Set,
            FieldType::Flag,
            FieldType::Register,
        ][t as usize];
        (format!("f{n}"), kind)
    });
    (
        prop::collection::vec(field, 0..2),
        prop::collection::vec(field_op(), 0..3),
    )
        .prop_map(|(remove, update)| MapOp { remove, update })
}

fn history(kind: Kind) -> impl Strategy<Value = Vec<Step>> {
    let op: BoxedStrategy<Op> = match kind {
        Kind::Set => set_op().prop_map(Op::Set).boxed(),
        Kind::Map => map_op().prop_map(Op::Map).boxed(),
        _ => (-5..6i64).prop_map(Op::Counter).boxed(),
    };
    let step = prop_oneof![
        3 => (0..3usize, op, prop::option::of(0..3usize)).prop_map(|(r, o, c)| Step::Apply(r, o, c)),
        1 => (0..3usize, 0..3usize).prop_map(|(a, b)| Step::Merge(a, b)),
    ];
    prop::collection::vec(step, 0..40)
}

/// Runs a history; checks inflation and refusals on the way.
fn run(kind: Kind, steps: &[Step]) -> Vec<DataType> {
    let mut replicas: Vec<DataType> = (0..3).map(|_| DataType::new(kind, 10).unwrap()).collect();
    for (t, step) in steps.iter().enumerate() {
        match step {
            Step::Apply(r, op, ctx) => {
                let context: Option<VersionVector> = ctx.map(|c| replicas[c].context());
                let update = Update {
                    op: op.clone(),
                    context,
                    hll_precision: 10,
                };
                let before = replicas[*r].clone();
                if let Ok(after) = apply(Some(before.clone()), &update, ACTORS[*r], t as u64) {
                    let mut absorbed = after.clone();
                    absorbed.merge(&before);
                    assert_eq!(absorbed, after, "an applied operation is inflationary");
                    replicas[*r] = after;
                }
            }
            Step::Merge(a, b) => {
                let other = replicas[*b].clone();
                replicas[*a].merge(&other);
            }
        }
    }
    replicas
}

fn converge(kind: Kind, steps: &[Step]) {
    let replicas = run(kind, steps);
    let mut forward = replicas[0].clone();
    forward.merge(&replicas[1]);
    forward.merge(&replicas[2]);
    let mut backward = replicas[2].clone();
    backward.merge(&replicas[1]);
    backward.merge(&replicas[0]);
    assert_eq!(
        forward, backward,
        "replicas that exchanged everything agree"
    );
    for r in replicas.iter().chain([&forward]) {
        assert_eq!(
            &DataType::decode(&r.encode()).unwrap(),
            r,
            "codec round trip"
        );
    }
}

proptest! {
    #[test]
    fn set_operations_converge(steps in history(Kind::Set)) {
        converge(Kind::Set, &steps);
    }

    #[test]
    fn map_operations_converge(steps in history(Kind::Map)) {
        converge(Kind::Map, &steps);
    }

    #[test]
    fn counter_operations_converge(steps in history(Kind::Counter)) {
        converge(Kind::Counter, &steps);
    }
}
