//! The coordinator hooks the Riak-compatible API relies on: per-key `n_val`,
//! superseding writes and key listing, over the in-process SimNetwork.

mod common;

use common::{Cluster, cluster_with, test_config};

use std::time::Duration;

use bytes::Bytes;
use dynkv_quorum::{CoordinatorConfig, ReadOptions};
use dynkv_rpc::messages::listing::component_prefix;
use dynkv_rpc::messages::{Keys, ListKeys, ListNamespaces, Quorum, WriteRequest};
use dynkv_vclock::{Content, VersionVector};

/// Keys grouped as the Riak adapter groups them: `0xFF ‖ len(ns) ‖ ns ‖ name`.
mod namespace {
    pub const TAG: &[u8] = &[0xFF];

    pub fn prefix(ns: &[u8]) -> Vec<u8> {
        super::component_prefix(TAG, ns)
    }

    pub fn key(ns: &[u8], name: &[u8]) -> Vec<u8> {
        [prefix(ns), name.to_vec()].concat()
    }
}

/// Deadline of the typed listing calls a node makes to itself.
const RPC_TIMEOUT: Duration = Duration::from_secs(2);

fn cluster(k: usize) -> Cluster {
    cluster_with(
        k,
        CoordinatorConfig {
            read_repair: false,
            ..test_config()
        },
    )
}

fn write(key: &[u8], value: &str, n_val: Option<u32>, supersede: bool) -> WriteRequest {
    WriteRequest {
        key: Bytes::copy_from_slice(key),
        content: Content::value(value.to_string(), "text/plain", 0),
        context: VersionVector::new(),
        w: Quorum::One,
        sloppy: true,
        timeout_ms: 1500,
        idempotency_key: None,
        n_val,
        supersede,
        datatype_op: None,
    }
}

#[tokio::test]
async fn superseding_blind_writes_leave_one_sibling() {
    let c = cluster(3);
    let key = namespace::key(b"b", b"k");
    let coord = &c.nodes[0];
    for v in ["a", "b", "c"] {
        coord.put(write(&key, v, None, true)).await.unwrap();
    }
    let o = coord
        .get(Bytes::from(key.clone()), ReadOptions::sloppy())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.sibling_count(), 1);
    assert_eq!(&o.values()[0].value[..], b"c");
    // Without supersede the same blind writes are concurrent siblings.
    let key2 = namespace::key(b"b", b"k2");
    for v in ["a", "b"] {
        coord.put(write(&key2, v, None, false)).await.unwrap();
    }
    let o = coord
        .get(Bytes::from(key2), ReadOptions::sloppy())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.sibling_count(), 2);
}

#[tokio::test]
async fn a_smaller_n_val_writes_to_the_first_primaries_only() {
    let c = cluster(3);
    let key = namespace::key(b"one-copy", b"k");
    let p = c.nodes[0].placement_n(&key, Some(1));
    assert_eq!(p.primaries.len(), 1);
    assert_eq!(p.primaries[0], c.nodes[0].placement(&key).primaries[0]);
    // n_val above the cluster's is clamped to it.
    assert_eq!(c.nodes[0].placement_n(&key, Some(9)).primaries.len(), 3);

    let mut req = write(&key, "v", Some(1), false);
    req.w = Quorum::All;
    c.nodes[1].put(req).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut holders = Vec::new();
    for n in &c.nodes {
        if n.local_view(&key).await.unwrap().0.is_some() {
            holders.push(n.node_id().clone());
        }
    }
    assert_eq!(holders, p.primaries, "only the one primary stores it");
    let opts = ReadOptions {
        r: Some(Quorum::All),
        n_val: Some(1),
        ..ReadOptions::sloppy()
    };
    let o = c.nodes[2]
        .get(Bytes::from(key), opts)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&o.values()[0].value[..], b"v");
}

#[tokio::test]
async fn list_keys_and_namespaces_of_a_partition() {
    let c = cluster(1);
    let coord = &c.nodes[0];
    let mut partitions = std::collections::BTreeSet::new();
    for i in 0..40 {
        let key = namespace::key(b"bucket", format!("k{i}").as_bytes());
        partitions.insert(coord.placement(&key).partition);
        coord.put(write(&key, "v", None, false)).await.unwrap();
    }
    coord
        .put(write(&namespace::key(b"other", b"x"), "v", None, false))
        .await
        .unwrap();
    // Keys of another grouping prefix are not namespaces of this one.
    coord
        .put(write(
            &component_prefix(b"\xfe", b"props"),
            "v",
            None,
            false,
        ))
        .await
        .unwrap();
    let mut keys = Vec::new();
    let mut namespaces = std::collections::BTreeSet::new();
    for partition in 0..16 {
        let req = ListKeys {
            partition,
            prefix: Bytes::from(namespace::prefix(b"bucket")),
            after: None,
            limit: 1000,
        };
        let Keys(k) = coord
            .transport()
            .call(coord.node_id(), &req, RPC_TIMEOUT)
            .await
            .unwrap();
        assert!(k.is_empty() || partitions.contains(&partition));
        keys.extend(k);
        let req = ListNamespaces {
            partition,
            prefix: Bytes::from_static(namespace::TAG),
            after: None,
            limit: 1000,
        };
        let Keys(ns) = coord
            .transport()
            .call(coord.node_id(), &req, RPC_TIMEOUT)
            .await
            .unwrap();
        namespaces.extend(ns.into_iter().map(|b| b.to_vec()));
    }
    assert_eq!(keys.len(), 40);
    assert_eq!(
        namespaces.into_iter().collect::<Vec<_>>(),
        vec![b"bucket".to_vec(), b"other".to_vec()]
    );
    // Paging: one namespace per call, resuming after the last one.
    let bucket_partition = coord.placement(&namespace::key(b"other", b"x")).partition;
    let mut after = None;
    let mut paged = Vec::new();
    loop {
        let req = ListNamespaces {
            partition: bucket_partition,
            prefix: Bytes::from_static(namespace::TAG),
            after: after.clone(),
            limit: 1,
        };
        let Keys(ns) = coord
            .transport()
            .call(coord.node_id(), &req, RPC_TIMEOUT)
            .await
            .unwrap();
        if ns.is_empty() {
            break;
        }
        after = ns.last().cloned();
        paged.extend(ns);
    }
    // In key order: by length, then bytes.
    let Keys(whole) = coord
        .transport()
        .call(
            coord.node_id(),
            &ListNamespaces {
                partition: bucket_partition,
                prefix: Bytes::from_static(namespace::TAG),
                after: None,
                limit: 1000,
            },
            RPC_TIMEOUT,
        )
        .await
        .unwrap();
    assert!(paged.contains(&Bytes::from_static(b"other")));
    assert_eq!(paged, whole);
}
