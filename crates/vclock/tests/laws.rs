//! Property tests of the DVVSet laws dynkv relies on.
//!
//! States are never generated as arbitrary structures (most would be
//! impossible); they come from simulated histories: replicas that coordinate
//! writes with some context and merge each other's state in random order.

use std::collections::BTreeSet;

use dynkv_vclock::{
    ContextKey, DvvSet, VersionVector, context_payload, decode_context, decode_context_payload,
    decode_object, encode_context, encode_object,
};
use proptest::prelude::*;

type Set = DvvSet<u32>;
const NODES: [&str; 3] = ["n1", "n2", "n3"];

#[derive(Clone, Debug)]
enum Op {
    /// Node `coord` writes a fresh value with the context read from `ctx_from`
    /// (None: blind write).
    Write {
        coord: usize,
        ctx_from: Option<usize>,
    },
    /// Node `to` merges node `from`'s state.
    Sync { from: usize, to: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, proptest::option::of(0..3usize))
            .prop_map(|(coord, ctx_from)| Op::Write { coord, ctx_from }),
        (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Sync { from, to }),
    ]
}

/// Runs a history and returns each replica's final state.
fn run(ops: &[Op]) -> Vec<Set> {
    let mut replicas = vec![Set::new(); 3];
    for (value, op) in ops.iter().enumerate() {
        match *op {
            Op::Write { coord, ctx_from } => {
                let ctx = ctx_from.map(|r| replicas[r].join()).unwrap_or_default();
                replicas[coord] =
                    DvvSet::update(&ctx, &replicas[coord], NODES[coord], value as u32);
            }
            Op::Sync { from, to } => replicas[to] = DvvSet::sync(&replicas[to], &replicas[from]),
        }
    }
    replicas
}

fn value_set(s: &Set) -> BTreeSet<u32> {
    s.values().into_iter().copied().collect()
}

/// The dot of every live value: (actor, counter, value).
fn dots(s: &Set) -> Vec<(String, u64, u32)> {
    s.entries()
        .iter()
        .flat_map(|e| {
            e.values
                .iter()
                .enumerate()
                .map(move |(i, v)| (e.actor.clone(), e.counter - i as u64, *v))
        })
        .collect()
}

fn histories() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A coordinator that forgot a key (reaped, handed off) writes with a
    /// floor above every dot it issued: the write survives a merge with any
    /// replica that still remembers the old dots, and never reuses one.
    #[test]
    fn a_write_above_the_floor_survives_every_replica(ops in histories(), coord in 0..3usize, other in 0..3usize) {
        let r = run(&ops);
        let actor = NODES[coord];
        let floor = r.iter().map(|x| x.join().get(actor)).max().unwrap_or(0);
        // The coordinator's state is gone.
        let fresh = DvvSet::update_above(&VersionVector::new(), &Set::new(), actor, 9_999, floor);
        let (a, n) = (fresh.entries()[0].actor.clone(), fresh.entries()[0].counter);
        prop_assert_eq!(a.as_str(), actor);
        prop_assert!(n > floor, "dot {n} reuses one at or below {floor}");
        let merged = DvvSet::sync(&r[other], &fresh);
        prop_assert!(value_set(&merged).contains(&9_999), "the new write was lost on merge");
        // With live values of its own the counter stays consecutive.
        let own = DvvSet::update_above(&VersionVector::new(), &r[coord], actor, 9_998, floor);
        prop_assert!(value_set(&own).contains(&9_998));
        prop_assert!(own.is_well_formed());
    }

    #[test]
    fn sync_is_commutative(ops in histories(), i in 0..3usize, j in 0..3usize) {
        let r = run(&ops);
        prop_assert_eq!(DvvSet::sync(&r[i], &r[j]), DvvSet::sync(&r[j], &r[i]));
    }

    #[test]
    fn sync_is_associative(ops in histories()) {
        let r = run(&ops);
        let left = DvvSet::sync(&DvvSet::sync(&r[0], &r[1]), &r[2]);
        let right = DvvSet::sync(&r[0], &DvvSet::sync(&r[1], &r[2]));
        prop_assert_eq!(left, right);
    }

    #[test]
    fn sync_is_idempotent_and_an_upper_bound(ops in histories(), i in 0..3usize, j in 0..3usize) {
        let r = run(&ops);
        prop_assert_eq!(DvvSet::sync(&r[i], &r[i]), r[i].clone());
        let m = DvvSet::sync(&r[i], &r[j]);
        prop_assert!(m.descends(&r[i]) && m.descends(&r[j]));
        prop_assert_eq!(DvvSet::sync(&m, &r[i]), m.clone());
    }

    /// A write with a read's context drops exactly the siblings whose dots
    /// the read had seen and keeps every other one.
    #[test]
    fn write_with_context_replaces_exactly_what_was_seen(
        ops in histories(), reader in 0..3usize, later in histories(), coord in 0..3usize
    ) {
        let mut r = run(&ops);
        let read = r[reader].clone();
        let ctx = read.join();
        // Other writes and merges may happen between the read and the write.
        let offset = ops.len() as u32 + 1000;
        for (k, op) in later.iter().enumerate() {
            match *op {
                Op::Write { coord, ctx_from } => {
                    let c = ctx_from.map(|x| r[x].join()).unwrap_or_default();
                    r[coord] = DvvSet::update(&c, &r[coord], NODES[coord], offset + k as u32);
                }
                Op::Sync { from, to } => r[to] = DvvSet::sync(&r[to], &r[from]),
            }
        }
        let local = r[coord].clone();
        let new_value = u32::MAX;
        let written = DvvSet::update(&ctx, &local, NODES[coord], new_value);
        let mut expected: BTreeSet<u32> = dots(&local)
            .into_iter()
            .filter(|(actor, counter, _)| ctx.get(actor) < *counter)
            .map(|(_, _, v)| v)
            .collect();
        expected.insert(new_value);
        prop_assert_eq!(value_set(&written), expected);
        for seen in value_set(&read) {
            prop_assert!(!value_set(&written).contains(&seen), "a value the reader saw survived");
        }
    }

    #[test]
    fn two_writes_from_one_context_become_two_siblings(
        ops in histories(), reader in 0..3usize, c1 in 0..3usize, c2 in 0..3usize
    ) {
        let mut r = run(&ops);
        let ctx = r[reader].join();
        r[c1] = DvvSet::update(&ctx, &r[c1], NODES[c1], 1_000_001);
        r[c2] = DvvSet::update(&ctx, &r[c2], NODES[c2], 1_000_002);
        let all = DvvSet::sync(&DvvSet::sync(&r[0], &r[1]), &r[2]);
        let vals = value_set(&all);
        prop_assert!(vals.contains(&1_000_001) && vals.contains(&1_000_002));
    }

    /// One client doing read-modify-write through any coordinator, with
    /// replication completing between steps, never sees a sibling, and the
    /// clock holds one entry per coordinating node.
    #[test]
    fn read_modify_write_chain_never_makes_siblings(steps in proptest::collection::vec((0..3usize, 0..3usize), 1..60)) {
        let mut r = vec![Set::new(); 3];
        let mut coordinators = BTreeSet::new();
        for (k, (read_at, coord)) in steps.into_iter().enumerate() {
            let ctx = r[read_at].join();
            let new = DvvSet::update(&ctx, &r[coord], NODES[coord], k as u32);
            coordinators.insert(coord);
            for replica in r.iter_mut() {
                *replica = DvvSet::sync(replica, &new);
            }
            for replica in &r {
                prop_assert_eq!(replica.sibling_count(), 1);
                prop_assert_eq!(value_set(replica), BTreeSet::from([k as u32]));
                prop_assert!(replica.entries().len() <= coordinators.len());
            }
        }
    }

    /// Blind writes through one node are truly concurrent (each is a
    /// sibling) but the clock stays a single entry.
    #[test]
    fn blind_writes_on_one_node_keep_one_clock_entry(n in 1..200usize) {
        let mut s = Set::new();
        for k in 0..n {
            s = DvvSet::update(&VersionVector::new(), &s, "n1", k as u32);
        }
        prop_assert_eq!(s.entries().len(), 1);
        prop_assert_eq!(s.entries()[0].counter, n as u64);
        prop_assert_eq!(s.sibling_count(), n);
    }

    /// However many writes, the clock never has more entries than there
    /// were coordinating nodes.
    #[test]
    fn clock_size_is_bounded_by_coordinators(ops in proptest::collection::vec(op(), 0..300)) {
        let coordinators: BTreeSet<usize> = ops.iter().filter_map(|o| match o { Op::Write { coord, .. } => Some(*coord), _ => None }).collect();
        for s in run(&ops) {
            prop_assert!(s.entries().len() <= coordinators.len());
            prop_assert!(s.join().entries().len() <= coordinators.len());
        }
    }

    #[test]
    fn context_tokens_round_trip(ops in histories(), i in 0..3usize, k in any::<[u8; 32]>()) {
        let key = ContextKey::new(k);
        let vv = run(&ops)[i].join();
        prop_assert_eq!(decode_context(&encode_context(&vv, &key), &key).unwrap(), vv);
    }

    /// Sign then verify round-trips; flipping any single bit of the signed
    /// bytes, or of the token text, or cutting the token short, is refused.
    #[test]
    fn signed_contexts_refuse_any_change(ops in histories(), i in 0..3usize, k in any::<[u8; 32]>(), bit in any::<usize>(), cut in any::<usize>()) {
        let key = ContextKey::new(k);
        let vv = run(&ops)[i].join();
        let payload = context_payload(&vv, &key);
        prop_assert_eq!(decode_context_payload(&payload, &key).unwrap(), vv.clone());
        let mut flipped = payload.clone();
        let b = bit % (flipped.len() * 8);
        flipped[b / 8] ^= 1 << (b % 8);
        prop_assert!(decode_context_payload(&flipped, &key).is_err());
        let short = cut % payload.len();
        prop_assert!(decode_context_payload(&payload[..short], &key).is_err());

        let token = encode_context(&vv, &key);
        let mut text = token.clone().into_bytes();
        let b = bit % (text.len() * 8);
        text[b / 8] ^= 1 << (b % 8);
        if let Ok(text) = String::from_utf8(text) {
            prop_assert!(decode_context(&text, &key).is_err(), "{} accepted", text);
        }
        let short = cut % token.len();
        prop_assert!(decode_context(&token[..short], &key).is_err());
        let other = ContextKey::new(k.map(|x| x ^ 0x5a));
        prop_assert!(decode_context(&token, &other).is_err());
    }

    /// Fuzz-style: arbitrary strings and arbitrary payloads behind a valid
    /// base64 layer never panic the decoder.
    #[test]
    fn context_decoder_never_panics(s in ".{0,200}", raw in proptest::collection::vec(any::<u8>(), 0..300)) {
        let key = ContextKey::new([3; 32]);
        let _ = decode_context(&s, &key);
        use base64::Engine;
        let _ = decode_context(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw), &key);
        for version in [1u8, 2] {
            let mut with_version = vec![version];
            with_version.extend_from_slice(&raw);
            let _ = decode_context(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&with_version), &key);
        }
    }

    #[test]
    fn object_decoder_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_object(&raw);
        let mut with_version = vec![1u8];
        with_version.extend_from_slice(&raw);
        let _ = decode_object(&with_version);
    }
}

mod objects {
    use dynkv_vclock::{Content, DvvSet, Object, VersionVector, decode_object, encode_object};

    #[test]
    fn encoding_round_trips_and_digest_tracks_state() {
        let a: Object = DvvSet::update(
            &VersionVector::new(),
            &Object::new(),
            "n1",
            Content::value("x", "text/plain", 1),
        );
        let b: Object = DvvSet::update(
            &VersionVector::new(),
            &a,
            "n2",
            Content::value("y", "text/plain", 2),
        );
        let decoded = decode_object(&encode_object(&b)).unwrap();
        assert_eq!(decoded, b);
        assert_eq!(decoded.digest(), b.digest());
        assert_ne!(a.digest(), b.digest());
        assert_eq!(DvvSet::sync(&a, &b).digest(), DvvSet::sync(&b, &a).digest());
    }

    #[test]
    fn tombstone_beats_older_value_and_reads_deleted() {
        let v: Object = DvvSet::update(
            &VersionVector::new(),
            &Object::new(),
            "n1",
            Content::value("x", "", 1),
        );
        let del = DvvSet::update(&v.join(), &v, "n2", Content::tombstone(2));
        assert!(del.is_deleted());
        assert!(DvvSet::sync(&v, &del).is_deleted());
        assert!(DvvSet::sync(&del, &v).is_deleted());
        // A stale concurrent write survives as a sibling of the tombstone.
        let stale = DvvSet::update(
            &VersionVector::new(),
            &v,
            "n1",
            Content::value("late", "", 3),
        );
        let merged = DvvSet::sync(&del, &stale);
        assert!(!merged.is_deleted());
        assert_eq!(merged.live_values().len(), 1);
        assert_eq!(merged.sibling_count(), 2);
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(decode_object(&[]).is_err());
        assert!(decode_object(&[9, 1, 2]).is_err());
        let mut bytes = encode_object(&Object::new());
        bytes.push(0);
        assert!(decode_object(&bytes).is_err());
    }
}

#[test]
fn object_roundtrip_smoke() {
    let o: dynkv_vclock::Object = DvvSet::from_value(dynkv_vclock::Content::value("v", "t", 0));
    assert_eq!(decode_object(&encode_object(&o)).unwrap(), o);
}
