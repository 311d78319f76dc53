//! Coordinators running in-process over the fault-injecting SimNetwork.

mod common;

use common::{Cluster, cluster_with, dispatcher, read_opts, test_config, values, write};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dynkv_quorum::handoff::{self, HandoffConfig, HandoffState};
use dynkv_quorum::{Coordinator, CoordinatorConfig, QuorumError, ReadOptions};
use dynkv_ring::NodeId;
use dynkv_rpc::messages::{Quorum, WriteRequest};
use dynkv_vclock::VersionVector;

fn read(r: Quorum) -> ReadOptions {
    read_opts(r, true)
}

fn cluster(k: usize) -> Cluster {
    cluster_with(
        k,
        CoordinatorConfig {
            read_repair_wait: Duration::from_millis(500),
            // These tests expect every replica a read could reach repaired.
            read_repair_chance: 1.0,
            ..test_config()
        },
    )
}

impl Cluster {
    fn node(&self, id: &str) -> &Arc<Coordinator> {
        self.nodes
            .iter()
            .find(|n| n.node_id().as_str() == id)
            .unwrap()
    }
    /// A key whose first primary is `first` (searching key names).
    fn key_with_primary(&self, pos: usize, id: &str) -> Bytes {
        (0..10_000)
            .map(|i| Bytes::from(format!("key-{i}")))
            .find(|k| self.nodes[0].placement(k).primaries[pos].as_str() == id)
            .unwrap()
    }
}

#[tokio::test]
async fn quorum_write_is_read_from_every_node() {
    let c = cluster(4);
    let key = Bytes::from_static(b"alpha");
    c.nodes[0]
        .put(write(
            &key,
            "v1",
            VersionVector::new(),
            Quorum::Majority,
            true,
        ))
        .await
        .unwrap();
    for n in &c.nodes {
        assert_eq!(
            values(&n.get(key.clone(), read(Quorum::Majority)).await.unwrap()),
            vec!["v1"]
        );
    }
}

#[tokio::test]
async fn concurrent_writes_become_siblings_and_a_context_resolves_them() {
    let c = cluster(3);
    let key = Bytes::from_static(b"k");
    c.nodes[0]
        .put(write(&key, "a", VersionVector::new(), Quorum::All, true))
        .await
        .unwrap();
    c.nodes[1]
        .put(write(&key, "b", VersionVector::new(), Quorum::All, true))
        .await
        .unwrap();
    let got = c.nodes[2]
        .get(key.clone(), read(Quorum::All))
        .await
        .unwrap();
    assert_eq!(values(&got), vec!["a", "b"]);
    let ctx = got.unwrap().join();
    c.nodes[2]
        .put(write(&key, "resolved", ctx, Quorum::All, true))
        .await
        .unwrap();
    for n in &c.nodes {
        assert_eq!(
            values(&n.get(key.clone(), read(Quorum::All)).await.unwrap()),
            vec!["resolved"]
        );
    }
}

#[tokio::test]
async fn write_from_a_non_primary_is_forwarded() {
    let c = cluster(5);
    let key = Bytes::from_static(b"forward-me");
    let outsider = c
        .nodes
        .iter()
        .find(|n| !n.placement(&key).primaries.contains(n.node_id()))
        .unwrap();
    outsider
        .put(write(&key, "x", VersionVector::new(), Quorum::All, true))
        .await
        .unwrap();
    assert_eq!(outsider.metrics().forwarded.get(), 1);
    let primary = c.node(c.nodes[0].placement(&key).primaries[0].as_str());
    let (own, _) = primary.local_view(&key).await.unwrap();
    assert_eq!(values(&own), vec!["x"]);
}

#[tokio::test]
async fn partitioned_replica_fails_all_but_not_majority() {
    let c = cluster(3);
    let key = Bytes::from_static(b"p");
    c.net.isolate("n3");
    let err = c.nodes[0]
        .put(write(&key, "v", VersionVector::new(), Quorum::All, false))
        .await
        .unwrap_err();
    match err {
        QuorumError::NotEnough { needed, acked, .. } => assert_eq!((needed, acked), (3, 2)),
        e => panic!("unexpected {e:?}"),
    }
    c.nodes[0]
        .put(write(
            &key,
            "v2",
            VersionVector::new(),
            Quorum::Majority,
            false,
        ))
        .await
        .unwrap();
    let err = c.nodes[0]
        .get(
            key.clone(),
            ReadOptions {
                r: Some(Quorum::All),
                sloppy: false,
                timeout: Some(Duration::from_millis(800)),
                after: None,
                n_val: None,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            QuorumError::NotEnough {
                needed: 3,
                acked: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

// Paused time: the delay and the measurement are virtual, so the
// assertion holds however loaded the machine running the test is.
#[tokio::test(start_paused = true)]
async fn slow_replica_does_not_delay_a_quorum_write() {
    let c = cluster(3);
    let key = c.key_with_primary(0, "n1");
    let slow = c.nodes[0].placement(&key).primaries[2].clone();
    c.net.delay("n1", slow.as_str(), Duration::from_millis(250));
    let started = tokio::time::Instant::now();
    c.nodes[0]
        .put(write(
            &key,
            "v",
            VersionVector::new(),
            Quorum::Majority,
            true,
        ))
        .await
        .unwrap();
    let fast = started.elapsed();
    // The slow replica still gets the write in the background.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (own, _) = c.node(slow.as_str()).local_view(&key).await.unwrap();
    assert_eq!(values(&own), vec!["v"]);
    assert!(
        fast < Duration::from_millis(250),
        "answered at W without waiting: {fast:?}"
    );
}

#[tokio::test]
async fn sloppy_quorum_hints_and_hands_off() {
    let c = cluster(4);
    let key = c.key_with_primary(0, "n1");
    let placement = c.nodes[0].placement(&key);
    let down = placement.primaries[2].clone();
    c.net.crash(down.as_str());
    let strict = c.nodes[0]
        .put(write(&key, "s", VersionVector::new(), Quorum::All, false))
        .await;
    assert!(
        matches!(
            strict,
            Err(QuorumError::NotEnough {
                needed: 3,
                acked: 2,
                ..
            })
        ),
        "{strict:?}"
    );
    c.nodes[0]
        .put(write(&key, "v", VersionVector::new(), Quorum::All, true))
        .await
        .unwrap();
    let fallback = c.node(placement.fallbacks[0].as_str());
    assert!(fallback.store().hint_count() >= 1);
    // A sloppy read finds the hinted copy too.
    let got = c.nodes[1]
        .get(key.clone(), read(Quorum::All))
        .await
        .unwrap();
    assert_eq!(values(&got), vec!["s", "v"]);
    // The owner returns; handoff delivers and drops the hint.
    c.net
        .register(down.clone(), dispatcher(c.node(down.as_str())));
    fallback.health().record_success(&down);
    let delivered = handoff::pass(
        fallback,
        &HandoffConfig::default(),
        &mut HandoffState::default(),
    )
    .await
    .unwrap();
    assert!(delivered >= 1);
    assert_eq!(fallback.store().hint_count(), 0);
    let (own, _) = c.node(down.as_str()).local_view(&key).await.unwrap();
    assert_eq!(values(&own), vec!["s", "v"]);
}

#[tokio::test]
async fn read_repair_heals_a_stale_replica_with_the_full_sibling_set() {
    let c = cluster(3);
    let key = c.key_with_primary(0, "n1");
    c.net.isolate("n3");
    c.nodes[0]
        .put(write(
            &key,
            "a",
            VersionVector::new(),
            Quorum::Count(2),
            true,
        ))
        .await
        .unwrap();
    c.nodes[1]
        .put(write(
            &key,
            "b",
            VersionVector::new(),
            Quorum::Count(2),
            true,
        ))
        .await
        .unwrap();
    c.net.heal();
    c.nodes[0].health().record_success(&"n3".into());
    let (stale, _) = c.node("n3").local_view(&key).await.unwrap();
    assert!(stale.is_none());
    let got = c.nodes[0]
        .get(key.clone(), read(Quorum::Majority))
        .await
        .unwrap();
    assert_eq!(values(&got), vec!["a", "b"]);
    // Repair runs after the answer; poll for it.
    let mut healed = Vec::new();
    for _ in 0..50 {
        healed = values(&c.node("n3").local_view(&key).await.unwrap().0);
        if healed.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(healed, vec!["a", "b"]);
    let repaired = c.nodes[0]
        .metrics()
        .read_repairs
        .get_or_create(&dynkv_quorum::metrics_labels::repaired())
        .get();
    assert!(repaired >= 1);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_stops_requests_waiting_for_a_slow_peer() {
    let c = cluster(3);
    let key = c.key_with_primary(0, "n1");
    // n3 answers far slower than the 300 ms per-call deadline.
    c.net.delay("n1", "n3", Duration::from_secs(5));
    c.nodes[0]
        .put(write(
            &key,
            "first",
            VersionVector::new(),
            Quorum::Majority,
            true,
        ))
        .await
        .unwrap();
    // Let the call to n3 time out: one failure opens its breaker (threshold 1).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let n3 = NodeId::from("n3");
    assert_eq!(
        c.nodes[0].health().breaker(&n3),
        dynkv_rpc::BreakerState::Open
    );
    let sent_before = c.net.delivered_to("n3");
    let started = tokio::time::Instant::now();
    for i in 0..10 {
        let ctx = c.nodes[0]
            .get(key.clone(), read(Quorum::One))
            .await
            .unwrap()
            .unwrap()
            .join();
        c.nodes[0]
            .put(write(&key, &format!("v{i}"), ctx, Quorum::Majority, true))
            .await
            .unwrap();
    }
    // Virtual time: none of the 20 requests waited on n3's deadline.
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        c.net.delivered_to("n3"),
        sent_before,
        "nothing was sent to n3 while its breaker was open"
    );
}

fn idempotent(key: &Bytes, value: &str, idem: Option<&str>) -> WriteRequest {
    WriteRequest {
        idempotency_key: idem.map(str::to_string),
        ..write(key, value, VersionVector::new(), Quorum::All, true)
    }
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_is_applied_once() {
    let c = cluster(3);
    let key = c.key_with_primary(0, "n1");
    let first = c.nodes[0]
        .put(idempotent(&key, "pay 10", Some("req-1")))
        .await
        .unwrap();
    assert!(!first.replayed);
    // The client timed out and retries through another primary.
    let retry = c
        .node("n2")
        .put(idempotent(&key, "pay 10", Some("req-1")))
        .await
        .unwrap();
    assert!(retry.replayed);
    assert!(retry.object.join().descends(&first.object.join()));
    let got = c.nodes[2]
        .get(key.clone(), read(Quorum::All))
        .await
        .unwrap();
    assert_eq!(values(&got), vec!["pay 10"]);
    // Without a key the same retry is a new concurrent write: two siblings.
    let other = c.key_with_primary(0, "n2");
    c.node("n2")
        .put(idempotent(&other, "pay 10", None))
        .await
        .unwrap();
    c.node("n3")
        .put(idempotent(&other, "pay 10", None))
        .await
        .unwrap();
    let got = c.nodes[0]
        .get(other.clone(), read(Quorum::All))
        .await
        .unwrap();
    assert_eq!(values(&got), vec!["pay 10", "pay 10"]);
}

#[tokio::test]
async fn a_session_read_never_goes_back_in_time() {
    let c = cluster(3);
    let key = c.key_with_primary(0, "n1");
    c.nodes[0]
        .put(write(&key, "old", VersionVector::new(), Quorum::All, true))
        .await
        .unwrap();
    c.net.isolate("n3");
    let ctx = c.nodes[0]
        .get(key.clone(), read(Quorum::One))
        .await
        .unwrap()
        .unwrap()
        .join();
    let new = c.nodes[0]
        .put(write(&key, "new", ctx, Quorum::One, true))
        .await
        .unwrap();
    let session = new.object.join();
    // n3 only has "old": a session read there must not answer it.
    let opts = ReadOptions {
        r: Some(Quorum::One),
        sloppy: true,
        timeout: Some(Duration::from_millis(700)),
        after: Some(session.clone()),
        n_val: None,
    };
    let err = c
        .node("n3")
        .get(key.clone(), opts.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, QuorumError::Stale { .. }), "{err:?}");
    // The same read without the context answers the stale value.
    let plain = c
        .node("n3")
        .get(key.clone(), read(Quorum::One))
        .await
        .unwrap();
    assert_eq!(values(&plain), vec!["old"]);
    // Healed, a session read on n3 waits for a replica that has caught up.
    c.net.heal();
    c.node("n3").health().record_success(&"n1".into());
    c.node("n3").health().record_success(&"n2".into());
    let got = c.node("n3").get(key.clone(), opts).await.unwrap();
    assert_eq!(values(&got), vec!["new"]);
}

/// Every primary away: the first fallback coordinates under its own
/// fallback actor; after its hints are handed off and deleted, its next
/// write of the key is under a new fallback actor, so the primaries keep
/// both blind writes instead of dropping one as already seen.
#[tokio::test]
async fn a_fallback_coordinates_and_never_reuses_a_dot_after_handoff() {
    let c = cluster(5);
    let key = c.key_with_primary(0, "n1");
    let placement = c.nodes[0].placement(&key);
    let f1 = c.node(placement.fallbacks[0].as_str());
    // Every primary gone (as f1 sees it), or back and handed its hints.
    let away = || {
        for p in &placement.primaries {
            c.net.crash(p.as_str());
            f1.health().record_failure(p);
        }
    };
    let back = || async {
        for p in &placement.primaries {
            c.net.register(p.clone(), dispatcher(c.node(p.as_str())));
            f1.health().record_success(p);
        }
        handoff::pass(f1, &HandoffConfig::default(), &mut HandoffState::default())
            .await
            .unwrap();
    };
    let put = |value: &'static str, sloppy: bool| {
        f1.put(write(
            &key,
            value,
            VersionVector::new(),
            Quorum::Count(1),
            sloppy,
        ))
    };
    away();
    let (actor1, _) = put("a", true).await.unwrap().dot.unwrap();
    assert_eq!(actor1, f1.fallback_actor());
    assert!(f1.store().hint_count() >= 3, "a hint per primary");
    let strict = put("s", false).await;
    assert!(strict.is_err(), "a strict write still refuses: {strict:?}");
    // The primaries return and take the hints; f1 forgets the key.
    back().await;
    assert_eq!(f1.store().hint_count(), 0);
    assert_ne!(
        f1.fallback_actor(),
        actor1,
        "the delivered actor is retired"
    );
    // Away again: f1's next fallback write is a new actor, and survives.
    away();
    let (actor2, _) = put("b", true).await.unwrap().dot.unwrap();
    assert_ne!(actor2, actor1, "a new actor after the handoff");
    back().await;
    let (own, _) = c
        .node(placement.primaries[0].as_str())
        .local_view(&key)
        .await
        .unwrap();
    assert_eq!(values(&own), vec!["a", "b"], "both blind writes kept");
}

/// During a membership change, a future replica that misses a write gets a
/// hint, and handoff delivers it to that node (not to the current
/// primaries) once it answers.
#[tokio::test]
async fn a_future_replica_that_misses_a_write_gets_it_by_handoff() {
    let c = cluster(4);
    let (three, four) = (ring_of(3), ring_of(4));
    for n in &c.nodes {
        n.replica().set_ring(three.clone());
        n.replica().set_next_ring(Some(four.clone()));
    }
    let n1 = &c.nodes[0];
    let n4 = NodeId::from("n4");
    let key = (0..10_000)
        .map(|i| Bytes::from(format!("key-{i}")))
        .find(|k| {
            let p = n1.placement(k);
            p.primaries.contains(n1.node_id())
                && four.preference_list(p.partition, 3).contains(&&n4)
        })
        .expect("a key that moves to n4");
    c.net.isolate("n4");
    n1.put(write(&key, "v", VersionVector::new(), Quorum::All, false))
        .await
        .unwrap();
    // The copy to n4 fails in the background and leaves a hint.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while n1.store().hint_count() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no hint for n4");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(n1.store().hint_counts_by_owner().unwrap()["n4"], 1);
    c.net.heal();
    n1.health().record_success(&n4);
    let delivered = handoff::pass(n1, &HandoffConfig::default(), &mut HandoffState::default())
        .await
        .unwrap();
    assert_eq!(delivered, 1);
    assert_eq!(n1.store().hint_count(), 0);
    let (own, _) = c.node("n4").local_view(&key).await.unwrap();
    assert_eq!(values(&own), vec!["v"]);
}

/// A node routing with a ring its peer has moved past is refused, not
/// served: the former owner keeps no copy that no read would find, and
/// gives no answer from one.
#[tokio::test]
async fn a_request_routed_with_a_stale_ring_is_refused() {
    let c = cluster(4);
    let (three, four) = (ring_of(3), ring_of(4));
    // n1 still routes with three nodes; the others have switched to four.
    for n in &c.nodes {
        n.replica().set_ring(four.clone());
    }
    let n1 = &c.nodes[0];
    n1.replica().set_ring(three.clone());
    let n4 = NodeId::from("n4");
    let (key, moved_from) = (0..10_000)
        .map(|i| Bytes::from(format!("key-{i}")))
        .find_map(|k| {
            let p = three.partition_of_hash(dynkv_ring::key_hash(&k));
            let old = three.preference_list(p, 3);
            let new = four.preference_list(p, 3);
            let gone = old
                .iter()
                .find(|o| !new.contains(o) && o.as_str() != "n1")?;
            (new.contains(&&n4)).then(|| (k, (*gone).clone()))
        })
        .expect("a key that moved from a node other than n1 to n4");
    // n1 is told who refused, to learn that peer's ring.
    let told = Arc::new(std::sync::Mutex::new(Vec::<NodeId>::new()));
    let t2 = told.clone();
    n1.on_ring_mismatch(Box::new(move |peer| t2.lock().unwrap().push(peer.clone())));
    let obj = dynkv_vclock::Object::default();
    let refused = n1
        .call_peer(
            &moved_from,
            &dynkv_rpc::messages::Replicate {
                key: key.clone(),
                object: obj,
            },
            Duration::from_secs(2),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(dynkv_rpc::RpcError::Remote(dynkv_rpc::RemoteError::NotReplica { ref node })) if *node == moved_from
        ),
        "{refused:?}"
    );
    let read = n1
        .call_peer(
            &moved_from,
            &dynkv_rpc::messages::Read {
                key: key.clone(),
                hint_for: None,
                digest_only: false,
            },
            Duration::from_secs(2),
        )
        .await;
    assert!(read.is_err(), "a former owner answered a read: {read:?}");
    assert_eq!(*told.lock().unwrap(), vec![moved_from.clone(); 2]);
    // The new owner takes it.
    let taken = n1
        .call_peer(
            &n4,
            &dynkv_rpc::messages::Replicate {
                key,
                object: dynkv_vclock::Object::default(),
            },
            Duration::from_secs(2),
        )
        .await;
    assert!(taken.is_ok(), "{taken:?}");
}

/// The ring of nodes n1..=nk (16 partitions): before and after a join.
fn ring_of(k: usize) -> dynkv_ring::Ring {
    dynkv_ring::Ring::new((1..=k).map(|i| NodeId::from(format!("n{i}"))), 16).unwrap()
}
