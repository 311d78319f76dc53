//! Users, sources and grants across real processes: with security enabled
//! every route family refuses a request without credentials (401), with a
//! wrong password or an unknown user (401), and from a user without the
//! grant (403), and serves the user holding it; a grant on one bucket does
//! not reach another; a revoke made through one node takes effect on every
//! node; bearer tokens work until revoked; disabling restores open access;
//! the rules survive a restart.

use std::time::Duration;

use dynkv_tests::{Cluster, ClusterOptions, StatusCode, poll};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// Who a request presents.
#[derive(Clone, Copy, Debug)]
enum Who {
    Nobody,
    User(&'static str, &'static str),
    Token(&'static str),
}

struct T {
    c: Cluster,
    http: reqwest::Client,
}

impl T {
    async fn send(
        &self,
        node: usize,
        m: Method,
        path: &str,
        body: Option<&str>,
        who: Who,
    ) -> reqwest::Response {
        let mut r = self
            .http
            .request(m, format!("{}{path}", self.c.url(node)))
            .header("content-type", "application/json");
        if let Some(b) = body {
            r = r.body(b.to_string());
        }
        r = match who {
            Who::Nobody => r,
            Who::User(u, p) => r.basic_auth(u, Some(p)),
            Who::Token(t) => r.bearer_auth(t),
        };
        r.send().await.unwrap()
    }

    async fn status(
        &self,
        node: usize,
        m: Method,
        path: &str,
        body: Option<&str>,
        who: Who,
    ) -> StatusCode {
        self.send(node, m, path, body, who).await.status()
    }

    /// A security command through node `node` with the cluster admin token.
    async fn admin(&self, node: usize, verb: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/admin/security/{verb}", self.c.url(node)))
            .header("x-dynkv-token", self.c.admin_token())
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{verb}: {v}");
        v
    }

    /// Waits until node `node` answers `want` to the request.
    async fn until(&self, node: usize, m: Method, path: &str, who: Who, want: StatusCode) {
        let ok = poll(WAIT, || async {
            self.status(node, m.clone(), path, None, who).await == want
        })
        .await;
        assert!(ok, "n{node} {m} {path} as {who:?} never answered {want}");
    }
}

/// A route: method, path, body, the user granted it, the statuses it may answer that user.
type Route<'a> = (Method, &'a str, Option<&'a str>, Who, &'a [u16]);

const ALICE: Who = Who::User("alice", "alice-pw");
const BOB: Who = Who::User("bob", "bob-pw");
const OPS: Who = Who::User("ops", "ops-pw");

#[tokio::test(flavor = "multi_thread")]
async fn users_sources_and_grants_guard_every_route_family() {
    let t = T {
        c: Cluster::start(3, ClusterOptions::default()).await,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    };
    // Open before security is enabled.
    assert_eq!(
        t.status(1, Method::GET, "/kv/nothing", None, Who::Nobody)
            .await,
        StatusCode::NOT_FOUND
    );

    for (name, pw) in [("alice", "alice-pw"), ("bob", "bob-pw"), ("ops", "ops-pw")] {
        t.admin(1, "add-user", json!({"name": name, "password": pw}))
            .await;
    }
    t.admin(
        1,
        "add-source",
        json!({"users": ["all"], "cidr": "127.0.0.1/32", "method": "password"}),
    )
    .await;
    let all_riak = [
        "riak_kv.get",
        "riak_kv.put",
        "riak_kv.delete",
        "riak_kv.list_keys",
        "riak_core.get_bucket",
        "riak_core.set_bucket",
    ];
    t.admin(2, "grant", json!({"permissions": all_riak, "bucket_type": "default", "bucket": "a", "users": ["alice"]})).await;
    t.admin(2, "grant", json!({"permissions": ["riak_kv.list_buckets"], "bucket_type": "default", "users": ["alice"]})).await;
    t.admin(3, "grant", json!({"permissions": ["riak_kv.get", "riak_kv.put", "riak_kv.delete"], "bucket_type": "kv", "users": ["alice"]})).await;
    t.admin(
        3,
        "grant",
        json!({"permissions": ["dynkv.admin"], "users": ["ops"]}),
    )
    .await;
    let v = t.admin(1, "enable", json!({})).await;
    assert_eq!(v["enabled"], true);
    for n in 1..=3 {
        t.until(
            n,
            Method::GET,
            "/kv/nothing",
            Who::Nobody,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }

    // Every route family, in an order that makes each granted request succeed.
    let riak_obj = Some("v");
    let routes: Vec<Route> = vec![
        (Method::PUT, "/kv/k1", Some("v1"), ALICE, &[204]),
        (Method::GET, "/kv/k1", None, ALICE, &[200]),
        (Method::DELETE, "/kv/k1", None, ALICE, &[200, 204]),
        (Method::PUT, "/buckets/a/keys/k", riak_obj, ALICE, &[204]),
        (
            Method::GET,
            "/types/default/buckets/a/keys/k",
            None,
            ALICE,
            &[200],
        ),
        (Method::GET, "/buckets/a/props", None, ALICE, &[200]),
        (
            Method::PUT,
            "/buckets/a/props",
            Some(r#"{"props":{"allow_mult":true}}"#),
            ALICE,
            &[204],
        ),
        (Method::GET, "/buckets?buckets=true", None, ALICE, &[200]),
        (
            Method::GET,
            "/buckets/a/keys?keys=true",
            None,
            ALICE,
            &[200],
        ),
        (Method::DELETE, "/buckets/a/keys/k", None, ALICE, &[204]),
        (Method::GET, "/admin/cluster", None, OPS, &[200]),
        (Method::GET, "/admin/members", None, OPS, &[200]),
        (Method::GET, "/admin/security", None, OPS, &[200]),
        (Method::GET, "/metrics", None, OPS, &[200]),
        (Method::GET, "/ui", None, OPS, &[200]),
        (Method::GET, "/ui/ui.js", None, OPS, &[200]),
        (Method::GET, "/admin/overview", None, OPS, &[200]),
    ];
    for (m, path, body, granted, ok) in &routes {
        let node = 1 + path.len() % 3;
        let what = format!("{m} {path}");
        let r = t.send(node, m.clone(), path, *body, Who::Nobody).await;
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{what} without credentials"
        );
        assert_eq!(
            r.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Basic realm=\"dynkv\""),
            "{what}"
        );
        if !path.starts_with("/buckets") && !path.starts_with("/types") {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["code"], "unauthorized", "{what}: {v}");
        }
        for bad in [
            Who::User("alice", "wrong"),
            Who::User("mallory", "x"),
            Who::Token("dkv_forged"),
        ] {
            assert_eq!(
                t.status(node, m.clone(), path, *body, bad).await,
                StatusCode::UNAUTHORIZED,
                "{what} as {bad:?}"
            );
        }
        let other = if matches!(granted, Who::User("ops", _)) {
            ALICE
        } else {
            BOB
        };
        let r = t.send(node, m.clone(), path, *body, other).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{what} as {other:?}");
        let r = t.send(node, m.clone(), path, *body, *granted).await;
        let s = r.status();
        assert!(
            ok.contains(&s.as_u16()),
            "{what} as {granted:?}: {s} {}",
            r.text().await.unwrap_or_default()
        );
    }
    // A membership command (the join route) refuses a user without the grant.
    assert_eq!(
        t.status(1, Method::POST, "/admin/commit", None, ALICE)
            .await,
        StatusCode::FORBIDDEN
    );

    // A grant on one bucket does not reach another, nor another type.
    for path in [
        "/buckets/b/keys/k",
        "/types/other/buckets/a/keys/k",
        "/buckets/b/props",
    ] {
        assert_eq!(
            t.status(2, Method::GET, path, None, ALICE).await,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    let cluster: Value = t
        .send(3, Method::GET, "/admin/cluster", None, OPS)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cluster["security"]["enabled"], true, "{cluster}");
    let mut failures = 0.0;
    for n in 1..=3 {
        let text = t
            .send(n, Method::GET, "/metrics", None, OPS)
            .await
            .text()
            .await
            .unwrap();
        failures += text
            .lines()
            .filter(|l| l.starts_with("dynkv_auth_failures_total{reason=\"bad_password\"}"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    assert!(
        failures >= routes.len() as f64,
        "bad passwords counted: {failures}"
    );

    // A revoke through n1 takes effect on every node.
    let put = t
        .status(1, Method::PUT, "/buckets/a/keys/r", Some("x"), ALICE)
        .await;
    assert_eq!(put, StatusCode::NO_CONTENT);
    t.admin(1, "revoke", json!({"permissions": ["riak_kv.get"], "bucket_type": "default", "bucket": "a", "users": ["alice"]})).await;
    for n in 1..=3 {
        t.until(
            n,
            Method::GET,
            "/buckets/a/keys/r",
            ALICE,
            StatusCode::FORBIDDEN,
        )
        .await;
    }

    // Bearer tokens: made on n1, good on n3 until revoked.
    let created = t.admin(1, "token-create", json!({"user": "alice"})).await;
    let token: &'static str = created["created"]["token"]
        .as_str()
        .unwrap()
        .to_string()
        .leak();
    t.until(
        3,
        Method::GET,
        "/kv/tok",
        Who::Token(token),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(
        t.status(3, Method::GET, "/admin/cluster", None, Who::Token(token))
            .await,
        StatusCode::FORBIDDEN
    );
    t.admin(2, "token-revoke", json!({"token": token})).await;
    for n in 1..=3 {
        t.until(
            n,
            Method::GET,
            "/kv/tok",
            Who::Token(token),
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }

    // A user holding dynkv.admin may change the rules too.
    let r = t
        .http
        .post(format!("{}/admin/security/disable", t.c.url(2)))
        .basic_auth("ops", Some("ops-pw"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for n in 1..=3 {
        t.until(
            n,
            Method::GET,
            "/admin/cluster",
            Who::Nobody,
            StatusCode::OK,
        )
        .await;
        t.until(
            n,
            Method::GET,
            "/kv/open",
            Who::Nobody,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    // Disabled means unchecked: even a wrong password is not looked at.
    assert_eq!(
        t.status(1, Method::GET, "/kv/open", None, Who::User("x", "y"))
            .await,
        StatusCode::NOT_FOUND
    );

    // Enabled again, the rules survive a restart (n2 alone, so nothing is
    // learnt from gossip).
    t.admin(1, "enable", json!({})).await;
    t.until(
        2,
        Method::GET,
        "/kv/x",
        Who::Nobody,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let mut c = t.c;
    c.stop(1);
    c.stop(3);
    c.stop(2);
    c.restart(2).await;
    let t = T { c, http: t.http };
    assert_eq!(
        t.status(2, Method::GET, "/kv/x", None, Who::Nobody).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.status(2, Method::GET, "/admin/security", None, OPS).await,
        StatusCode::OK
    );
    assert_eq!(
        t.status(2, Method::GET, "/admin/security", None, BOB).await,
        StatusCode::FORBIDDEN
    );

    // Off loopback, credentials over plain HTTP are refused (403
    // tls_required) before they are looked at.
    let Some(ip) = non_loopback_address() else {
        eprintln!("no non-loopback address on this machine: the tls_required check is not run");
        return;
    };
    let port = t.c.url(2).rsplit(':').next().unwrap().to_string();
    let mut c = t.c;
    c.stop(2);
    c.restart_with(2, &[("DYNKV__NODE__LISTEN", &format!("0.0.0.0:{port}"))])
        .await;
    let t = T { c, http: t.http };
    let cluster: Value = t
        .send(2, Method::GET, "/admin/cluster", None, OPS)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cluster["security"]["listen_loopback"], false, "{cluster}");
    assert!(
        cluster["security"]["warning"].is_null(),
        "security is on: {cluster}"
    );
    let url = format!("http://{ip}:{port}/kv/x");
    let r = t
        .http
        .get(&url)
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "tls_required", "{v}");
    let r = t.http.get(&url).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "no credentials, no exception"
    );
}

/// An address of this machine that is not loopback (the source address
/// the kernel would pick for an outside destination), if it has one.
fn non_loopback_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}
