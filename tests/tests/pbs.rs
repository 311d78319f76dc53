//! `GET /admin/pbs` across real processes: no answer before any latency
//! was measured, 400s for bad parameters, and after some traffic a
//! prediction with the shape the dashboard reads and the model's laws.

use dynkv_tests::{Cluster, ClusterOptions, StatusCode};
use serde_json::Value;

async fn pbs(c: &Cluster, i: usize, query: &str) -> (StatusCode, Value) {
    let r = c
        .http
        .get(format!("{}/admin/pbs?{query}", c.url(i)))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.json::<Value>().await.expect("a JSON body");
    (status, body)
}

#[tokio::test]
async fn admin_pbs_predicts_from_live_latencies() {
    // Counts must not halve while the test counts them.
    let c = Cluster::start(
        3,
        ClusterOptions::default().set("DYNKV__PBS__HALF_LIFE", "1h"),
    )
    .await;

    // Nothing measured yet.
    let (status, body) = pbs(&c, 1, "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "no_samples");

    for bad in [
        "n=0", "n=65", "r=4", "w=0", "r=two", "t_ms=-1", "t_ms=abc", "n=2&r=3",
    ] {
        let (status, body) = pbs(&c, 1, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["code"], "bad_parameter", "{bad}");
        assert!(body["error"].as_str().unwrap().len() > 10, "{bad}");
    }

    // Writes and reads through n1 that reach its two peers.
    for i in 0..40 {
        let key = format!("k{i}");
        let put = c.put(1, &key, "v", "w=all", None).await;
        assert!(put.status.is_success(), "{}", put.text());
        let get = c.get(1, &key, "r=all").await;
        assert_eq!(get.status, StatusCode::OK);
    }

    let (status, body) = pbs(&c, 1, "n=3&r=1&w=1&t_ms=10").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["n"].as_u64(), body["r"].as_u64(), body["w"].as_u64()),
        (Some(3), Some(1), Some(1))
    );
    assert_eq!(body["t_ms"].as_f64(), Some(10.0));
    assert_eq!(body["trials"].as_u64(), Some(10_000));
    for letter in ["w", "a", "r", "s"] {
        // Each request reached the two peers of n1: 80 samples a letter.
        assert_eq!(body["samples"][letter].as_u64(), Some(80), "{body}");
    }
    let p = body["probability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p), "{body}");
    // On loopback the replicas are microseconds apart: 99.9 % is reached
    // well within the 10 s horizon.
    let t999 = body["t_999_ms"].as_f64().expect("t_999_ms reached");
    assert!(t999 >= 0.0);
    let curve = body["curve"].as_array().unwrap();
    let ts: Vec<f64> = curve.iter().map(|x| x["t_ms"].as_f64().unwrap()).collect();
    assert_eq!(
        ts,
        vec![
            0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0
        ]
    );
    let ps: Vec<f64> = curve
        .iter()
        .map(|x| x["probability"].as_f64().unwrap())
        .collect();
    assert!(ps.windows(2).all(|w| w[0] <= w[1]), "not monotone: {ps:?}");
    // The curve at 10 ms is the probability asked about (same trials).
    assert_eq!(ps[4], p);
    // A third of the reads land on the write's coordinator: at least that
    // much is fresh at t = 0.
    assert!(ps[0] >= 0.3, "{ps:?}");

    // Overlapping quorums always read the write; the defaults (quorum)
    // overlap for N = 3.
    for query in ["r=2&w=2", "r=1&w=3", "r=all&w=1", ""] {
        let (status, body) = pbs(&c, 1, query).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["probability"].as_f64(), Some(1.0), "{query}: {body}");
        assert_eq!(body["t_999_ms"].as_f64(), Some(0.0), "{query}: {body}");
    }
}
