//! `dynkv-client` against real clusters: token-aware routing (checked by
//! the nodes' own counters), failover when a key's primary dies, `modify`
//! under concurrent writers, an idempotent retry after a lost answer, and
//! read-your-writes across nodes.

use std::time::Duration;

use dynkv_client::{Client, Quorum, ReadOptions, Routing, WriteOptions};
use dynkv_tests::proxy::AnswerLoser;
use dynkv_tests::{Cluster, ClusterOptions, StatusCode};

/// Sum of a counter over every node.
async fn total(c: &Cluster, name: &str, labels: &str) -> f64 {
    let mut sum = 0.0;
    for i in 1..=c.nodes.len() {
        sum += c.metric(i, name, labels).await;
    }
    sum
}

/// The client's ring view once it names every member's address (a node
/// learns its peers' addresses from their handshakes, just after start).
async fn full_view(cl: &Client) -> std::sync::Arc<dynkv_client::RingView> {
    let ok = dynkv_tests::poll(Duration::from_secs(10), || async {
        cl.refresh_ring()
            .await
            .is_ok_and(|v| v.members.iter().all(|m| m.url.is_some()))
    })
    .await;
    assert!(ok, "the ring view never named every member's address");
    cl.ring().unwrap()
}

fn client(c: &Cluster, routing: Routing) -> Client {
    Client::builder([c.url(1)])
        .routing(routing)
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .unwrap()
}

#[tokio::test]
async fn requests_go_to_a_primary_of_their_key() {
    // Four nodes at N=3: every key has a node that is not its replica.
    let c = Cluster::start(
        4,
        ClusterOptions::default().set("DYNKV__CLUSTER__PARTITIONS", 16),
    )
    .await;
    let token = client(&c, Routing::TokenAware);
    let view = full_view(&token).await;
    assert_eq!(view.members.len(), 4);
    assert_eq!(view.partitions, 16);
    for m in &view.members {
        let i: usize = m.id.trim_start_matches('n').parse().unwrap();
        assert_eq!(m.url.as_deref(), Some(c.url(i).as_str()), "{m:?}");
    }
    // The client places keys where the nodes do.
    for i in 0..20 {
        let key = format!("place-{i}");
        let (primaries, _) = c.placement(1, &key).await;
        let want: Vec<String> = primaries.iter().map(|p| format!("n{p}")).collect();
        assert_eq!(view.preference_list(key.as_bytes()), want, "{key}");
    }

    let writes = 30;
    let mut through_owner = 0;
    for i in 0..writes {
        let key = format!("routed-{i}");
        let w = token.put(&key, format!("v{i}"), None).await.unwrap();
        let (primaries, _) = c.placement(1, &key).await;
        let urls: Vec<String> = primaries.iter().map(|&p| c.url(p)).collect();
        assert!(
            urls.contains(&w.node),
            "{key} written through {}, not a replica",
            w.node
        );
        // The owner unless the failure detector briefly doubted it (a
        // loaded machine delays pings past their 150 ms deadline).
        through_owner += usize::from(w.node == urls[0]);
        let r = token.get(&key).await.unwrap();
        assert_eq!(r.value().unwrap(), &format!("v{i}"));
        assert!(urls.contains(&r.node), "{key} read through {}", r.node);
    }
    assert!(
        through_owner * 2 > writes,
        "only {through_owner} of {writes} writes went to the key's owner"
    );
    assert_eq!(total(&c, "dynkv_writes_forwarded_total", "").await, 0.0);
    assert!(total(&c, "dynkv_writes_coordinated_total", "").await >= writes as f64);
    assert_eq!(
        total(&c, "dynkv_reads_coordinated_total", "role=\"other\"").await,
        0.0
    );
    assert!(total(&c, "dynkv_reads_coordinated_total", "role=\"primary\"").await >= writes as f64);

    // The same requests sent round-robin land on non-replicas too: their
    // writes are forwarded and their reads coordinated off the replicas.
    // The counters tell the two apart.
    let rr = client(&c, Routing::RoundRobin);
    for i in 0..writes {
        rr.put(&format!("rr-{i}"), "x", None).await.unwrap();
        rr.get(&format!("rr-{i}")).await.unwrap();
    }
    assert!(total(&c, "dynkv_writes_forwarded_total", "").await > 0.0);
    assert!(total(&c, "dynkv_reads_coordinated_total", "role=\"other\"").await > 0.0);
}

#[tokio::test]
async fn requests_fail_over_when_the_primary_is_killed() {
    let mut c = Cluster::start(3, ClusterOptions::default()).await;
    let key = c.find_key("failover", |p, _| p[0] == 2).await;
    let cl = Client::builder([c.url(1), c.url(3)])
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .unwrap();
    full_view(&cl).await;
    // Through n2, the key's owner (again, should a loaded machine have
    // made n2's failure detector doubt it for a moment).
    let mut w1 = cl.put(&key, "v1", None).await.unwrap();
    for _ in 0..20 {
        if w1.node == c.url(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        w1 = cl.put(&key, "v1", w1.context.as_ref()).await.unwrap();
    }
    assert_eq!(w1.node, c.url(2));
    c.kill(2);
    // The next write finds n2 dead and goes to the next primary at once.
    let w2 = cl.put(&key, "v2", w1.context.as_ref()).await.unwrap();
    assert_ne!(w2.node, c.url(2));
    let r = cl.get(&key).await.unwrap();
    assert_eq!(r.value().unwrap(), "v2", "{r:?}");
    assert_ne!(r.node, c.url(2));
    // A new view shows n2 down; requests keep avoiding it.
    let ok = dynkv_tests::poll(Duration::from_secs(10), || async {
        let v = cl.refresh_ring().await.unwrap();
        v.members.iter().any(|m| m.id == "n2" && !m.up)
    })
    .await;
    assert!(ok, "the ring view never showed n2 down");
    for i in 0..5 {
        let w = cl.put(&key, format!("v{}", i + 3), None).await.unwrap();
        assert_ne!(w.node, c.url(2));
    }
}

#[tokio::test]
async fn concurrent_modify_loses_no_update() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    let (writers, each) = (4, 6);
    let mut tasks = Vec::new();
    for t in 0..writers {
        // Writers enter through different nodes, some token-aware, some
        // round-robin: their writes meet on different coordinators.
        let routing = if t % 2 == 0 {
            Routing::TokenAware
        } else {
            Routing::RoundRobin
        };
        let cl = Client::builder([c.url(t % 3 + 1)])
            .routing(routing)
            .modify_attempts(100)
            .backoff(Duration::from_millis(5), Duration::from_millis(100))
            .build()
            .unwrap();
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                let mine = format!("w{t}-{i}");
                cl.modify("counter-set", |siblings| {
                    // A set union of every sibling, plus this writer's element.
                    let mut items: Vec<String> = siblings
                        .iter()
                        .flat_map(|s| {
                            String::from_utf8_lossy(&s.value)
                                .split(',')
                                .filter(|x| !x.is_empty())
                                .map(str::to_string)
                                .collect::<Vec<_>>()
                        })
                        .collect();
                    items.push(mine.clone());
                    items.sort();
                    items.dedup();
                    items.join(",")
                })
                .await
                .unwrap_or_else(|e| panic!("writer {t}: {e}"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let reader = client(&c, Routing::TokenAware);
    let r = reader
        .get_with(
            "counter-set",
            &ReadOptions {
                r: Some(Quorum::All),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let value = r
        .value()
        .unwrap_or_else(|| panic!("siblings left: {:?}", r.siblings));
    let got: Vec<&str> = std::str::from_utf8(value).unwrap().split(',').collect();
    let mut want: Vec<String> = (0..writers)
        .flat_map(|t| (0..each).map(move |i| format!("w{t}-{i}")))
        .collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_write_whose_answer_was_lost_is_retried_and_applied_once() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    let key = c.find_key("lost-answer", |p, _| p[0] == 1).await;
    // The client reaches n1, the key's owner, through a proxy that loses
    // the next answer.
    let proxy = AnswerLoser::start(c.node(1).port).await;
    let cl = Client::builder([c.url(2)])
        .node_url("n1", proxy.url())
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .unwrap();
    full_view(&cl).await;
    proxy.lose_next(1);
    let w = cl.put(&key, "once", None).await.unwrap();
    assert_eq!(proxy.lost(), 1, "the first answer was lost");
    assert_ne!(w.node, proxy.url(), "the retry went to the next primary");
    assert!(w.replayed, "the retry was recognised as a replay: {w:?}");
    assert_eq!(total(&c, "dynkv_idempotent_replays_total", "").await, 1.0);
    let r = c.get(2, &key, "r=all").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "one value, no sibling: {}",
        r.text()
    );
    assert_eq!(r.text(), "once");

    // Without idempotency keys, the same loss is an error the client does
    // not paper over by writing twice.
    let blind = Client::builder([c.url(2)])
        .node_url("n1", proxy.url())
        .idempotency_keys(false)
        .build()
        .unwrap();
    full_view(&blind).await;
    proxy.lose_next(1);
    let e = blind.put(&key, "twice?", None).await.unwrap_err();
    assert!(
        matches!(e, dynkv_client::Error::Transport(ref t) if !t.never_sent()),
        "{e}"
    );
}

#[tokio::test]
async fn a_client_reads_its_own_writes_through_another_node() {
    let c = Cluster::start(
        3,
        ClusterOptions::default()
            .proxied()
            .set("DYNKV__ANTIENTROPY__ENABLED", "false")
            .set("DYNKV__READ_REPAIR__ENABLED", "false"),
    )
    .await;
    let key = c
        .find_key("ryw", |p, _| p.contains(&1) && p.contains(&2))
        .await;
    // Round-robin over n1, n2, n3 in order: the write goes to n1, the
    // read after it to n2 (the view is read while every node is up).
    let cl = Client::builder([c.url(1)])
        .routing(Routing::RoundRobin)
        .retries(0)
        .build()
        .unwrap();
    let view = full_view(&cl).await;
    let ids: Vec<&str> = view.members.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["n1", "n2", "n3"]);
    // n1 cannot reach the other replicas: a write through it stays on n1.
    c.cut(1, 2);
    c.cut(1, 3);
    let one = WriteOptions {
        w: Some(Quorum::One),
        timeout: Some(Duration::from_millis(300)),
        ..Default::default()
    };
    let w = cl.put_with(&key, "mine", None, &one).await.unwrap();
    assert_eq!(w.node, c.url(1));
    // n2 does not hold the write...
    assert!(c.local_values(2, &key).await.is_empty());
    // ...yet a read through it, at r=one, sees it: the client sent the
    // write's context, so n2 asked a replica that has it.
    let r_one = ReadOptions {
        r: Some(Quorum::One),
        ..Default::default()
    };
    let r = cl.get_with(&key, &r_one).await.unwrap();
    assert_eq!(r.node, c.url(2));
    assert_eq!(r.value().unwrap(), "mine", "{r:?}");
    // A client without session contexts reading through n2 at r=one
    // answers from n2's own replica, which is behind.
    let forgetful = Client::builder([c.url(2)])
        .routing(Routing::Direct)
        .session_capacity(0)
        .build()
        .unwrap();
    let stale = forgetful.get_with(&key, &r_one).await.unwrap();
    assert!(!stale.is_found(), "{stale:?}");
}

/// A security command through node 1 with the cluster admin token.
async fn security(c: &Cluster, verb: &str, body: serde_json::Value) -> serde_json::Value {
    let (status, answer) = c.admin(1, &format!("security/{verb}"), body).await;
    assert_eq!(status, StatusCode::OK, "{verb}: {answer}");
    answer
}

#[tokio::test]
async fn a_client_speaks_tls_and_authenticates_with_a_password_or_a_token() {
    // Certificates from `dynkv admin certs`, as an operator makes them.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(dynkv_tests::dynkv_bin())
        .args(["admin", "certs", "--hosts", "127.0.0.1,localhost", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let c = Cluster::start(
        3,
        ClusterOptions::default().serve_tls(
            ca.clone(),
            &dir.path().join("node.pem"),
            &dir.path().join("node.key"),
        ),
    )
    .await;
    security(
        &c,
        "add-user",
        serde_json::json!({"name": "alice", "password": "pw"}),
    )
    .await;
    security(
        &c,
        "add-source",
        serde_json::json!({"users": ["all"], "cidr": "127.0.0.1/32", "method": "password"}),
    )
    .await;
    security(
        &c,
        "grant",
        serde_json::json!({"permissions": ["riak_kv.get", "riak_kv.put", "riak_kv.delete"], "bucket_type": "kv", "users": ["alice"]}),
    )
    .await;
    let token = security(&c, "token-create", serde_json::json!({"user": "alice"})).await["created"]
        ["token"]
        .as_str()
        .unwrap()
        .to_string();
    security(&c, "enable", serde_json::json!({})).await;

    let alice = Client::builder([c.url(1)])
        .tls_ca_pem(ca.clone())
        .auth(dynkv_client::Auth::Basic {
            user: "alice".into(),
            password: "pw".into(),
        })
        .build()
        .unwrap();
    let view = full_view(&alice).await;
    assert!(
        view.members
            .iter()
            .all(|m| m.url.as_deref().unwrap().starts_with("https://127.0.0.1:")),
        "{view:?}"
    );
    let w = alice.put("secret-cart", "apples", None).await.unwrap();
    assert!(w.node.starts_with("https://"));
    let bearer = Client::builder([c.url(2)])
        .tls_ca_pem(ca.clone())
        .auth(dynkv_client::Auth::Bearer(token))
        .build()
        .unwrap();
    let r = bearer.get("secret-cart").await.unwrap();
    assert_eq!(r.value().unwrap(), "apples");
    // Without credentials: 401, once every node enforces security.
    let nobody = Client::builder([c.url(3)])
        .tls_ca_pem(ca)
        .routing(Routing::Direct)
        .build()
        .unwrap();
    let refused = dynkv_tests::poll(Duration::from_secs(10), || async {
        nobody
            .get("secret-cart")
            .await
            .is_err_and(|e| e.status() == Some(401))
    })
    .await;
    assert!(refused, "a client without credentials was served");
    // A client that does not trust the CA cannot connect at all.
    let untrusting = Client::builder([c.url(1)])
        .routing(Routing::Direct)
        .retries(0)
        .build()
        .unwrap();
    let e = untrusting.get("secret-cart").await.unwrap_err();
    assert!(
        matches!(e, dynkv_client::Error::Transport(ref t) if t.never_sent()),
        "{e}"
    );
}
