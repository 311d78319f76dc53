//! Durability across real processes: a node that lost its disk never
//! reissues a version, a write is accepted while every primary is away,
//! contexts the cluster never issued are refused, and sibling and size caps
//! refuse a write before anything is stored.

use std::time::Duration;

use dynkv_tests::{Cluster, ClusterOptions, StatusCode, poll};
use dynkv_vclock::{ContextKey, VersionVector, encode_context, inspect_context};

/// SIGKILL node `i`, delete its data directory, start it again under the
/// same id and settings.
async fn wipe_and_restart(c: &mut Cluster, i: usize) {
    c.kill(i);
    let data = c.dir.path().join(format!("n{i}")).join("data");
    std::fs::remove_dir_all(&data).expect("wipe the data directory");
    c.restart(i).await;
    for j in 1..=c.nodes.len() {
        c.wait_sees_all_up(j).await;
    }
}

#[tokio::test]
async fn a_node_that_lost_its_disk_never_reissues_a_version() {
    let mut c = Cluster::start(3, ClusterOptions::default()).await;
    let key = "kv679";
    // n1 coordinates every write (N=3 on 3 nodes: every node is a primary).
    let mut ctx: Option<String> = None;
    for v in 1..=5 {
        let w = c
            .put(1, key, &format!("v{v}"), "w=all", ctx.as_deref())
            .await;
        assert!(w.status.is_success(), "{}", w.text());
        ctx = w.context.clone();
    }
    wipe_and_restart(&mut c, 1).await;
    // A blind write through the wiped node, at w=all.
    let w = c.put(1, key, "after-wipe", "w=all", None).await;
    assert!(w.status.is_success(), "{}", w.text());
    // It is readable and held by every replica (before epochs the other
    // replicas dropped it as already seen, while acknowledging it).
    let r = c.get(2, key, "r=all").await;
    assert!(
        r.values().contains(&"after-wipe".to_string()),
        "the write after the wipe is lost: {}",
        r.text()
    );
    for i in 1..=3 {
        assert!(
            poll(Duration::from_secs(10), || async {
                c.local_values(i, key)
                    .await
                    .contains(&"after-wipe".to_string())
            })
            .await,
            "n{i} lacks the write: {:?}",
            c.local_values(i, key).await
        );
    }
    // The wiped node writes under a new actor.
    let dot = w.dot.clone().expect("a dot");
    let old = inspect_context(ctx.as_deref().unwrap()).unwrap();
    let (actor, _) = dot.rsplit_once(':').unwrap();
    assert!(actor.starts_with("n1#"), "{dot}");
    assert_eq!(old.get(actor), 0, "a new incarnation: {dot} vs {old:?}");
}

#[tokio::test]
async fn a_clean_restart_keeps_the_incarnation() {
    let mut c = Cluster::start(1, ClusterOptions::default().set("DYNKV__CLUSTER__N_VAL", 1)).await;
    let first = c.put(1, "k", "a", "", None).await;
    let actor = |r: &dynkv_tests::Reply| {
        let d = r.dot.clone().unwrap();
        d.rsplit_once(':').unwrap().0.to_string()
    };
    c.stop(1);
    c.restart(1).await;
    let second = c.put(1, "k2", "b", "", None).await;
    assert_eq!(actor(&first), actor(&second), "a clean stop keeps it");
    c.kill(1);
    c.restart(1).await;
    let third = c.put(1, "k3", "c", "", None).await;
    assert_ne!(
        actor(&second),
        actor(&third),
        "a kill without synced writes takes a new one"
    );
}

#[tokio::test]
async fn a_sloppy_write_is_accepted_while_every_primary_is_away() {
    let mut c = Cluster::start(5, ClusterOptions::default()).await;
    let key = c.find_key("away", |_, _| true).await;
    let (primaries, fallbacks) = c.placement(1, &key).await;
    for &p in &primaries {
        c.kill(p);
    }
    let via = fallbacks[0];
    for &f in &fallbacks {
        assert!(
            poll(Duration::from_secs(10), || async {
                let v: serde_json::Value = c
                    .http
                    .get(format!("{}/admin/cluster", c.url(f)))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                v["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m["up"] == false)
                    .count()
                    == 3
            })
            .await,
            "n{f} should see the three primaries down"
        );
    }
    // Strict writes still refuse.
    let strict = c.put(via, &key, "strict", "w=2&sloppy=false", None).await;
    assert_eq!(
        strict.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        strict.text()
    );
    // A sloppy write at w=2 is accepted by the fallbacks, through either one.
    let w = c.put(via, &key, "while-away", "w=2", None).await;
    assert!(w.status.is_success(), "{}", w.text());
    let other = fallbacks[1];
    let r = c.get(other, &key, "r=1").await;
    assert!(
        r.values().contains(&"while-away".to_string()),
        "a sloppy read finds it on the fallbacks: {}",
        r.text()
    );
    // The primaries come back and get it (hints, then anti-entropy).
    for &p in &primaries {
        c.restart(p).await;
    }
    for &p in &primaries {
        assert!(
            poll(Duration::from_secs(30), || async {
                c.local_values(p, &key)
                    .await
                    .contains(&"while-away".to_string())
            })
            .await,
            "primary n{p} never got the write: {:?}",
            c.local(p, &key).await
        );
    }
}

#[tokio::test]
async fn a_context_the_cluster_never_issued_is_refused() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    let w = c.put(1, "forged", "v1", "w=all", None).await;
    let ctx = inspect_context(w.context.as_deref().unwrap()).unwrap();
    let (actor, _) = ctx.entries()[0].clone();
    // Signed with the cluster's own key (as if it had leaked): the
    // coordinator still refuses versions no replica issued.
    let key = ContextKey::new(c.secret().context_key());
    let forged = encode_context(&VersionVector::from_pairs([(actor, u64::MAX)]), &key);
    let f = c.put(1, "forged", "evil", "w=all", Some(&forged)).await;
    assert_eq!(f.status, StatusCode::BAD_REQUEST, "{}", f.text());
    assert_eq!(f.json()["code"], "bad_context");
    // Nothing changed, and the key still takes ordinary writes.
    assert_eq!(c.local_values(1, "forged").await, vec!["v1".to_string()]);
    let ok = c
        .put(1, "forged", "v2", "w=all", w.context.as_deref())
        .await;
    assert!(ok.status.is_success(), "{}", ok.text());
    assert_eq!(c.get(3, "forged", "r=all").await.text(), "v2");
}

#[tokio::test]
async fn caps_refuse_a_write_before_anything_is_stored() {
    let c = Cluster::start(
        3,
        ClusterOptions::default()
            .set("DYNKV__LIMITS__MAX_SIBLINGS", 3)
            .set("DYNKV__LIMITS__WARN_SIBLINGS", 2)
            .set("DYNKV__LIMITS__MAX_VALUE_BYTES", 100_000)
            .set("DYNKV__LIMITS__MAX_OBJECT_BYTES", 200_000),
    )
    .await;
    for v in ["a", "b", "c"] {
        let w = c.put(1, "many", v, "w=all", None).await;
        assert!(w.status.is_success(), "{}", w.text());
    }
    let over = c.put(2, "many", "d", "w=all", None).await;
    assert_eq!(over.status, StatusCode::CONFLICT, "{}", over.text());
    assert_eq!(over.json()["code"], "too_many_siblings");
    for i in 1..=3 {
        assert_eq!(c.local_values(i, "many").await.len(), 3, "n{i}");
    }
    // Resolving with a context is always allowed.
    let r = c.get(1, "many", "r=all").await;
    let fix = c
        .put(1, "many", "resolved", "w=all", r.context.as_deref())
        .await;
    assert!(fix.status.is_success(), "{}", fix.text());
    // Size: two blind 90 KB values fit, a third would not.
    let big = "x".repeat(90_000);
    for _ in 0..2 {
        let w = c.put(1, "big", &big, "w=all", None).await;
        assert!(w.status.is_success(), "{}", w.text());
    }
    let over = c.put(1, "big", &big, "w=all", None).await;
    assert_eq!(
        over.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        over.text()
    );
    assert_eq!(over.json()["code"], "object_too_large");
    assert_eq!(c.local_values(2, "big").await.len(), 2);
}
