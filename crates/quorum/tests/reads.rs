//! Reads ask R replicas: who is contacted, digest reads and their repair,
//! speculative retry, session reads.

mod common;

use common::{Cluster, cluster_with, read_opts, test_config, values};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dynkv_quorum::{Coordinator, CoordinatorConfig, ReadOptions, SpeculativeRetry};
use dynkv_rpc::messages::{Quorum, WriteRequest};
use dynkv_vclock::VersionVector;
use tokio::time::Instant;

fn write(key: &Bytes, value: &str, ctx: VersionVector, w: Quorum) -> WriteRequest {
    common::write(key, value, ctx, w, false)
}

fn read(r: Quorum) -> ReadOptions {
    read_opts(r, false)
}

fn node<'a>(c: &'a Cluster, id: &str) -> &'a Arc<Coordinator> {
    c.nodes.iter().find(|n| n.node_id().as_str() == id).unwrap()
}

/// Reads that never ask for digests and never speculate, so every message
/// a read sends is one of its R full reads.
fn quiet() -> CoordinatorConfig {
    CoordinatorConfig {
        read_repair_chance: 0.0,
        speculative_retry: SpeculativeRetry::Never,
        ..test_config()
    }
}

#[tokio::test]
async fn a_healthy_read_contacts_exactly_r_replicas() {
    let c = cluster_with(3, quiet());
    let key = Bytes::from_static(b"counted");
    c.nodes[0]
        .put(write(&key, "v", VersionVector::new(), Quorum::All))
        .await
        .unwrap();
    // n1 holds the key (N=3 of 3 nodes) and reads its own copy in place.
    for (r, remote) in [(Quorum::One, 0), (Quorum::Count(2), 1), (Quorum::All, 2)] {
        let before = c.net.delivered();
        let got = c.nodes[0].get(key.clone(), read(r)).await.unwrap();
        assert_eq!(values(&got), vec!["v"]);
        // Give any background work the chance to show itself.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(c.net.delivered() - before, remote, "r={r}");
    }
}

#[tokio::test]
async fn a_digest_read_finds_and_repairs_a_stale_replica() {
    let c = cluster_with(
        3,
        CoordinatorConfig {
            read_repair_chance: 1.0,
            speculative_retry: SpeculativeRetry::Never,
            read_repair_wait: Duration::from_millis(300),
            ..test_config()
        },
    );
    let key = Bytes::from_static(b"stale-on-n3");
    c.net.isolate("n3");
    c.nodes[0]
        .put(write(&key, "v", VersionVector::new(), Quorum::Count(2)))
        .await
        .unwrap();
    c.net.heal();
    c.nodes[0].health().record_success(&"n3".into());
    assert!(node(&c, "n3").local_view(&key).await.unwrap().0.is_none());
    // R=1 from n1 reads only n1 in full; n2 and n3 get digest reads.
    let got = c.nodes[0]
        .get(key.clone(), read(Quorum::One))
        .await
        .unwrap();
    assert_eq!(values(&got), vec!["v"]);
    let mut healed = Vec::new();
    for _ in 0..50 {
        healed = values(&node(&c, "n3").local_view(&key).await.unwrap().0);
        if !healed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(healed, vec!["v"]);
    let repaired = c.nodes[0]
        .metrics()
        .read_repairs
        .get_or_create(&dynkv_quorum::metrics_labels::repaired())
        .get();
    assert_eq!(repaired, 1, "only n3 differed");
}

/// Reads `key` at R=2 from a node that is not a replica of it and has
/// never called one (so it asks the primaries in ring order), while its
/// link to the second primary is slow. Returns how long the read took.
async fn read_with_second_primary_slow(speculative_retry: SpeculativeRetry) -> Duration {
    let c = cluster_with(
        4,
        CoordinatorConfig {
            speculative_retry,
            read_repair_chance: 0.0,
            ..test_config()
        },
    );
    let key = (0..10_000)
        .map(|i| Bytes::from(format!("key-{i}")))
        .find(|k| {
            !c.nodes[0]
                .placement(k)
                .primaries
                .iter()
                .any(|p| p.as_str() == "n4")
        })
        .unwrap();
    let primaries = c.nodes[0].placement(&key).primaries;
    node(&c, primaries[0].as_str())
        .put(write(&key, "v", VersionVector::new(), Quorum::All))
        .await
        .unwrap();
    c.net
        .delay("n4", primaries[1].as_str(), Duration::from_millis(250));
    let started = Instant::now();
    let got = node(&c, "n4")
        .get(key.clone(), read(Quorum::Count(2)))
        .await
        .unwrap();
    assert_eq!(values(&got), vec!["v"]);
    started.elapsed()
}

// Paused time: the delays and the measurement are virtual.
#[tokio::test(start_paused = true)]
async fn a_slow_replica_gets_a_speculative_read_to_another() {
    let with =
        read_with_second_primary_slow(SpeculativeRetry::Fixed(Duration::from_millis(20))).await;
    assert!(
        with >= Duration::from_millis(20) && with < Duration::from_millis(250),
        "answered by the third primary after the delay: {with:?}"
    );
    let without = read_with_second_primary_slow(SpeculativeRetry::Never).await;
    assert!(
        without >= Duration::from_millis(250),
        "without speculation the slow replica is waited for: {without:?}"
    );
}

#[tokio::test]
async fn a_session_read_asks_more_replicas_until_one_has_its_context() {
    let c = cluster_with(3, quiet());
    let key = Bytes::from_static(b"session");
    let first = c.nodes[0]
        .put(write(&key, "v1", VersionVector::new(), Quorum::All))
        .await
        .unwrap();
    c.net.isolate("n3");
    let second = c.nodes[0]
        .put(write(&key, "v2", first.object.join(), Quorum::Count(2)))
        .await
        .unwrap();
    c.net.heal();
    let n3 = node(&c, "n3");
    // R=1 at n3 reads n3 alone: still v1.
    let alone = n3.get(key.clone(), read(Quorum::One)).await.unwrap();
    assert_eq!(values(&alone), vec!["v1"]);
    // With the context of v2 it must not answer v1: it asks on.
    let session = n3
        .get(
            key.clone(),
            ReadOptions {
                after: Some(second.object.join()),
                ..read(Quorum::One)
            },
        )
        .await
        .unwrap();
    assert_eq!(values(&session), vec!["v2"]);
}

/// Replicas that apply replicated writes as deferred merges keep every
/// concurrent write as a sibling, like replicas that read first.
#[tokio::test]
async fn deferred_merges_keep_concurrent_writes_as_siblings() {
    let c = common::cluster_with_stores(3, quiet(), |s| s.deferred_merges = true);
    let key = Bytes::from_static(b"deferred");
    let (a, b) = tokio::join!(
        c.nodes[0].put(write(&key, "a", VersionVector::new(), Quorum::All)),
        c.nodes[1].put(write(&key, "b", VersionVector::new(), Quorum::All)),
    );
    a.unwrap();
    b.unwrap();
    // R=1 at each node reads its own copy in place.
    for n in &c.nodes {
        let got = n.get(key.clone(), read(Quorum::One)).await.unwrap();
        assert_eq!(values(&got), vec!["a", "b"], "at {}", n.node_id());
    }
    // A write over the merged context supersedes both everywhere.
    let seen = c.nodes[2]
        .get(key.clone(), read(Quorum::All))
        .await
        .unwrap()
        .unwrap();
    c.nodes[2]
        .put(write(&key, "c", seen.join(), Quorum::All))
        .await
        .unwrap();
    for n in &c.nodes {
        let got = n.get(key.clone(), read(Quorum::One)).await.unwrap();
        assert_eq!(values(&got), vec!["c"], "at {}", n.node_id());
    }
}
