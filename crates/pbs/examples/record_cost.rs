//! What recording one replica answer costs: nanoseconds per
//! `Recorder::record_write` on one thread and on several at once (the
//! hot-path figure of docs/PERFORMANCE.md), and how long one `/admin/pbs`
//! Monte Carlo takes.
//!
//! `cargo run --release -p dynkv-pbs --example record_cost`

use std::sync::Arc;
use std::time::{Duration, Instant};

use dynkv_pbs::{Exchange, ReadVia, Recorder, Scenario, predict};
use rand::SeedableRng;

const PER_THREAD: u32 = 2_000_000;

fn exchange(i: u32) -> Exchange {
    Exchange {
        rtt: Duration::from_micros(200 + u64::from(i % 977)),
        service: Some(Duration::from_micros(40)),
        there: Some(Duration::from_micros(80 + u64::from(i % 311))),
    }
}

fn run(threads: usize) -> f64 {
    let r = Arc::new(Recorder::default());
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let r = r.clone();
            std::thread::spawn(move || {
                let peers = ["n1", "n2", "n3", "n4"];
                for i in 0..PER_THREAD {
                    r.record_write(peers[(i as usize + t) % 4], exchange(i));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let ns = started.elapsed().as_nanos() as f64 / f64::from(PER_THREAD);
    assert_eq!(r.samples().w, u64::from(PER_THREAD) * threads as u64);
    ns
}

fn main() {
    for threads in [1, 2] {
        println!(
            "record_write, {threads} thread(s): {:.1} ns per sample (wall time per thread)",
            run(threads)
        );
    }
    let r = Recorder::default();
    for i in 0..100_000 {
        r.record_write("n2", exchange(i));
        r.record_read("n3", exchange(i));
    }
    let wars = r.wars(None).completed().unwrap();
    let sc = Scenario {
        n: 3,
        r: 1,
        w: 1,
        via: ReadVia::AnyNode { cluster: 3 },
    };
    let started = Instant::now();
    let p = predict(
        &wars,
        &sc,
        10_000,
        &mut rand::rngs::StdRng::seed_from_u64(1),
    );
    println!(
        "predict, 10000 trials, N=3: {:.2} ms (P(t=0) = {:.3})",
        started.elapsed().as_secs_f64() * 1e3,
        p.probability(0.0)
    );
}
