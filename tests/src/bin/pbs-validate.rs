//! Validates the staleness prediction of `GET /admin/pbs` against stale
//! reads counted on a real cluster.
//!
//! A 3-node cluster (N = 3) runs with every internode link slowed by the
//! test harness's delay proxies (a fixed delay plus an exponential jitter
//! per chunk, each way), so that replicas really do lag behind each other
//! by milliseconds. Then, for each delay `t`: a fresh key is written with
//! W = 1 through a random node, and `t` ms after the acknowledgement it is
//! read with R = 1 through a random node (as a client behind a load
//! balancer, the model's assumption); a read that does not return the
//! value written is stale. The measured stale rate is compared with
//! `1 - probability` from `/admin/pbs?n=3&r=1&w=1&t_ms=`, averaged over
//! the delays each read actually had: the client's wait from receiving the
//! acknowledgement to sending the read (its sleep overshoots `t`), which
//! is the model's `t`. As a sensitivity check, the prediction is also
//! reported with the two client hops added (the acknowledgement's way to
//! the client and the read's way to its node, each taken as half of the
//! read's HTTP round trip).
//!
//! Usage: `pbs-validate [--trials N] [--base-ms B] [--jitter-ms J]
//! [--t-ms 0,1,2,5,10,20] [--margin M] [--clocks true|false] [--out FILE]`.
//! Prints a table, writes JSON, and exits 1 if a measured rate is
//! further than the margin from its prediction.

use std::time::{Duration, Instant};

use dynkv_tests::proxy::LinkDelay;
use dynkv_tests::{Cluster, ClusterOptions, StatusCode};
use serde_json::{Value, json};

struct Args {
    trials: usize,
    base_ms: f64,
    jitter_ms: f64,
    t_ms: Vec<f64>,
    margin: f64,
    clocks: bool,
    out: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        trials: 400,
        base_ms: 5.0,
        jitter_ms: 10.0,
        t_ms: vec![0.0, 2.0, 5.0, 10.0, 20.0, 40.0],
        margin: 0.06,
        clocks: true,
        out: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--trials" => a.trials = v.parse().expect("--trials N"),
            "--base-ms" => a.base_ms = v.parse().expect("--base-ms B"),
            "--jitter-ms" => a.jitter_ms = v.parse().expect("--jitter-ms J"),
            "--margin" => a.margin = v.parse().expect("--margin M"),
            "--clocks" => a.clocks = v.parse().expect("--clocks true|false"),
            "--t-ms" => {
                a.t_ms = v
                    .split(',')
                    .map(|t| t.trim().parse().expect("--t-ms 0,1,2"))
                    .collect()
            }
            "--out" => a.out = Some(v),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

/// `/admin/pbs` for R = W = 1 at `t_ms`: (probability, full answer).
async fn predicted(c: &Cluster, t_ms: f64) -> (f64, Value) {
    let url = format!("{}/admin/pbs?n=3&r=1&w=1&t_ms={t_ms}", c.url(1));
    let body: Value = c.http.get(url).send().await.unwrap().json().await.unwrap();
    let p = body["probability"]
        .as_f64()
        .unwrap_or_else(|| panic!("no prediction: {body}"));
    (p, body)
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let delay = LinkDelay {
        base: Duration::from_secs_f64(args.base_ms / 1e3),
        jitter: Duration::from_secs_f64(args.jitter_ms / 1e3),
    };
    let opts = ClusterOptions::default()
        .slow_links(delay)
        .set("DYNKV__PBS__HALF_LIFE", "1h")
        .set("DYNKV__PBS__CLOCKS", args.clocks)
        .set("DYNKV__ANTIENTROPY__ENABLED", "false")
        .set("DYNKV__QUORUM__RPC_TIMEOUT_MS", "2000");
    let c = Cluster::start(3, opts).await;
    eprintln!(
        "3 nodes, links delayed {} ms + exp(mean {} ms) each way; about {} trials per t",
        args.base_ms, args.jitter_ms, args.trials
    );

    // The delays are interleaved at random, so that every read sees the
    // same traffic on the links (a slow link queues a message behind the
    // one before it, and back-to-back trials queue more than spaced ones):
    // the latencies recorded over the run are then those every trial met.
    struct Trial {
        t: usize,
        stale: bool,
        wait_ms: f64,
        effective_ms: f64,
    }
    let mut trials = Vec::new();
    for seq in 0..args.trials * args.t_ms.len() {
        let t = rand::random_range(0..args.t_ms.len());
        let key = format!("pbs-{seq}");
        let value = format!("v{seq}");
        let writer = 1 + rand::random_range(0..3usize);
        let reader = 1 + rand::random_range(0..3usize);
        let put = c.put(writer, &key, &value, "w=1", None).await;
        let acked = Instant::now();
        assert!(put.status.is_success(), "{}", put.text());
        let t_ms = args.t_ms[t];
        if t_ms > 0.0 {
            tokio::time::sleep_until((acked + Duration::from_secs_f64(t_ms / 1e3)).into()).await;
        }
        let wait_ms = acked.elapsed().as_secs_f64() * 1e3;
        let sent = Instant::now();
        let get = c.get(reader, &key, "r=1").await;
        let get_rtt_ms = sent.elapsed().as_secs_f64() * 1e3;
        trials.push(Trial {
            t,
            stale: !(get.status == StatusCode::OK && get.text() == value),
            wait_ms,
            effective_ms: wait_ms + get_rtt_ms,
        });
    }

    // The prediction at the delay each read really had, from the curve at
    // 0.25 ms steps.
    let step = 0.25;
    let top = trials.iter().map(|x| x.effective_ms).fold(0.0, f64::max);
    let mut grid = Vec::new();
    let mut x = 0.0;
    while x <= top + step {
        grid.push(predicted(&c, x).await.0);
        x += step;
    }
    let at = |ms: f64| grid[((ms / step).round() as usize).min(grid.len() - 1)];
    let mut rows = Vec::new();
    let mut worst: f64 = 0.0;
    for (ti, &t) in args.t_ms.iter().enumerate() {
        let these: Vec<&Trial> = trials.iter().filter(|x| x.t == ti).collect();
        let n = these.len() as f64;
        let stale = these.iter().filter(|x| x.stale).count();
        let mean_stale =
            |f: &dyn Fn(&Trial) -> f64| these.iter().map(|x| 1.0 - at(f(x))).sum::<f64>() / n;
        let predicted_stale = mean_stale(&|x| x.wait_ms);
        let predicted_hops = mean_stale(&|x| x.effective_ms);
        let (p_nominal, _) = predicted(&c, t).await;
        let measured = stale as f64 / n;
        let ci95 = 1.96 * (predicted_stale * (1.0 - predicted_stale) / n).sqrt();
        let diff = measured - predicted_stale;
        worst = worst.max(diff.abs());
        let mean_wait = these.iter().map(|x| x.wait_ms).sum::<f64>() / n;
        let mean_effective = these.iter().map(|x| x.effective_ms).sum::<f64>() / n;
        println!(
            "t={t:>5} ms (wait {mean_wait:6.2}, with hops {mean_effective:6.2} ms)  measured stale {measured:.4} ({stale}/{})  predicted {predicted_stale:.4} (±{ci95:.4} at 95 %; with hops {predicted_hops:.4}, at t {:.4})  diff {diff:+.4}",
            these.len(),
            1.0 - p_nominal
        );
        rows.push(json!({
            "t_ms": t,
            "mean_wait_ms": mean_wait,
            "mean_wait_with_hops_ms": mean_effective,
            "trials": these.len(),
            "stale": stale,
            "measured_stale_rate": measured,
            "predicted_stale_rate": predicted_stale,
            "predicted_stale_rate_with_hops": predicted_hops,
            "predicted_stale_rate_at_t": 1.0 - p_nominal,
            "ci95": ci95,
            "difference": diff,
        }));
    }
    let (_, last) = predicted(&c, 0.0).await;
    let ok = worst <= args.margin;
    let report = json!({
        "cluster": {"nodes": 3, "n": 3, "r": 1, "w": 1},
        "link_delay": {"base_ms": args.base_ms, "jitter_mean_ms": args.jitter_ms},
        "clocks": args.clocks,
        "margin": args.margin,
        "worst_difference": worst,
        "within_margin": ok,
        "samples": last["samples"],
        "t_999_ms": last["t_999_ms"],
        "rows": rows,
    });
    println!(
        "worst |measured - predicted| = {worst:.4}, margin {}: {}",
        args.margin,
        if ok { "agree" } else { "DISAGREE" }
    );
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
        eprintln!("wrote {path}");
    }
    if !ok {
        std::process::exit(1);
    }
}
