//! Data type growth workloads: how the cost of one update changes as a
//! data type grows (`--workload set-growth` adds `--elements` distinct
//! elements to one set, `--workload map-growth` adds that many counter
//! fields to one map), one update at a time through one connection.
//!
//! Two costs are reported per block of `--block` updates, because they
//! grow differently:
//! - **CRDT operation**, measured in this process on the same sequence of
//!   states: applying the operation (an ordered-map insert, O(log n)) and
//!   encoding the whole state for storage (O(n) bytes).
//! - **End to end**, through the cluster: the coordinator decodes the
//!   stored state, applies the operation, re-encodes it and replicates the
//!   whole object, so the per-update cost grows with the state's size in
//!   bytes, not with the operation. The report states how much.
//!
//! basho/riak#483 measured the same workload against Riak 2.0 sets: the
//! second thousand inserts took 354 s against 54 s for the first; the
//! ratio of the last block to the first is printed for comparison.

use std::time::{Duration, Instant};

use bytes::Bytes;
use dynkv_crdt::{DataType, FieldOp, FieldType, Kind, MapOp, Op, SetOp, Update};
use http_body_util::Full;
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST};
use serde::Serialize;

/// Which structure grows.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// The key-value load (the default).
    Kv,
    /// One set gains `--elements` distinct elements.
    SetGrowth,
    /// One map gains `--elements` counter fields.
    MapGrowth,
}

/// One block of updates.
#[derive(Debug, Serialize)]
pub struct Block {
    /// Updates before the block.
    pub from: usize,
    /// Updates after it.
    pub to: usize,
    /// End-to-end latency percentiles (µs).
    pub e2e_p50_us: u64,
    /// 99th percentile (µs).
    pub e2e_p99_us: u64,
    /// Mean end-to-end latency (µs).
    pub e2e_mean_us: u64,
    /// Mean in-process cost of applying one operation (ns).
    pub op_mean_ns: u64,
    /// Mean in-process cost of encoding the whole state once (ns).
    pub encode_mean_ns: u64,
    /// Stored state size at the end of the block (bytes).
    pub state_bytes: usize,
}

/// A growth run's report.
#[derive(Debug, Serialize)]
pub struct GrowthReport {
    /// What grew.
    pub workload: Workload,
    /// Its final size.
    pub elements: usize,
    /// Updates that failed (non-2xx or transport errors).
    pub errors: u64,
    /// Per block.
    pub blocks: Vec<Block>,
}

/// The `i`-th operation of `workload`.
fn op(workload: Workload, i: usize) -> (Op, String) {
    match workload {
        Workload::MapGrowth => (
            Op::Map(MapOp {
                remove: vec![],
                update: vec![(
                    (format!("f{i:06}"), FieldType::Counter),
                    FieldOp::Counter(1),
                )],
            }),
            format!(r#"{{"update":{{"f{i:06}_counter":1}}}}"#),
        ),
        _ => (
            Op::Set(SetOp {
                add: vec![format!("element-{i:06}").into_bytes()],
                remove: vec![],
            }),
            format!(r#"{{"add":"element-{i:06}"}}"#),
        ),
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Applies the whole sequence in this process: per block, the mean cost
/// of one operation (the block's operations timed together, so that the
/// encoding below does not evict the state from the caches between them),
/// the mean cost of encoding the state at the block's end, and its size.
pub fn in_process(workload: Workload, elements: usize, block: usize) -> Vec<(u64, u64, usize)> {
    const ENCODINGS: u32 = 5;
    let kind = if workload == Workload::MapGrowth {
        Kind::Map
    } else {
        Kind::Set
    };
    let mut state = DataType::new(kind, dynkv_crdt::DEFAULT_PRECISION).expect("valid precision");
    let mut out = Vec::new();
    let mut start = 0;
    while start < elements {
        let end = (start + block).min(elements);
        let updates: Vec<Update> = (start..end)
            .map(|i| Update {
                op: op(workload, i).0,
                context: None,
                hll_precision: dynkv_crdt::DEFAULT_PRECISION,
            })
            .collect();
        let t = Instant::now();
        for (i, u) in updates.iter().enumerate() {
            state = dynkv_crdt::op::apply(Some(state), u, "n1#bench", (start + i) as u64)
                .expect("adds always apply");
        }
        let op_ns = t.elapsed().as_nanos() / (end - start) as u128;
        let t = Instant::now();
        let mut bytes = 0;
        for _ in 0..ENCODINGS {
            bytes = std::hint::black_box(state.encode()).len();
        }
        let enc_ns = t.elapsed().as_nanos() / u128::from(ENCODINGS);
        out.push((op_ns as u64, enc_ns as u64, bytes));
        start = end;
    }
    out
}

/// Runs the workload against `addr` (`host:port`) under bucket type
/// `btype`, key `key`.
pub async fn run(
    workload: Workload,
    addr: &str,
    btype: &str,
    key: &str,
    elements: usize,
    block: usize,
    timeout: Duration,
) -> GrowthReport {
    let transport = dynkv_client::Transport::new(None, timeout, 1);
    let Ok(ep) = transport.endpoint(addr) else {
        return GrowthReport {
            workload,
            elements,
            errors: elements as u64,
            blocks: Vec::new(),
        };
    };
    let path = format!("/types/{btype}/buckets/bench/datatypes/{key}");
    let mut errors = 0;
    let mut lat: Vec<u64> = Vec::with_capacity(block);
    let mut e2e = Vec::new();
    for i in 0..elements {
        let body = op(workload, i).1;
        let req = Request::post(&path)
            .header(HOST, ep.host().clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("valid request");
        let t = Instant::now();
        match transport.send(&ep, req, timeout).await {
            Ok(a) if a.status().is_success() => lat.push(t.elapsed().as_micros() as u64),
            _ => errors += 1,
        }
        if (i + 1) % block == 0 || i + 1 == elements {
            lat.sort_unstable();
            let mean = lat.iter().sum::<u64>() / lat.len().max(1) as u64;
            e2e.push((percentile(&lat, 0.5), percentile(&lat, 0.99), mean));
            eprintln!(
                "growth: {} updates, this block p50 {} µs, p99 {} µs",
                i + 1,
                e2e.last().unwrap().0,
                e2e.last().unwrap().1
            );
            lat.clear();
        }
    }
    let local = in_process(workload, elements, block);
    let blocks = e2e
        .into_iter()
        .zip(local)
        .enumerate()
        .map(|(b, ((p50, p99, mean), (op, enc, bytes)))| Block {
            from: b * block,
            to: ((b + 1) * block).min(elements),
            e2e_p50_us: p50,
            e2e_p99_us: p99,
            e2e_mean_us: mean,
            op_mean_ns: op,
            encode_mean_ns: enc,
            state_bytes: bytes,
        })
        .collect();
    GrowthReport {
        workload,
        elements,
        errors,
        blocks,
    }
}

impl GrowthReport {
    /// The table printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{:?}: {} updates, {} errors\n{:>13} {:>9} {:>9} {:>9} {:>9} {:>10} {:>11}\n",
            self.workload,
            self.elements,
            self.errors,
            "updates",
            "p50 µs",
            "p99 µs",
            "mean µs",
            "op ns",
            "encode ns",
            "state bytes"
        );
        for b in &self.blocks {
            s += &format!(
                "{:>6}-{:<6} {:>9} {:>9} {:>9} {:>9} {:>10} {:>11}\n",
                b.from,
                b.to,
                b.e2e_p50_us,
                b.e2e_p99_us,
                b.e2e_mean_us,
                b.op_mean_ns,
                b.encode_mean_ns,
                b.state_bytes
            );
        }
        if let (Some(first), Some(last)) = (self.blocks.first(), self.blocks.last()) {
            let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
            s += &format!(
                "last block / first block: end-to-end mean x{:.2}, op x{:.2}, encode x{:.2}, bytes x{:.1}\n",
                ratio(last.e2e_mean_us, first.e2e_mean_us),
                ratio(last.op_mean_ns, first.op_mean_ns),
                ratio(last.encode_mean_ns, first.encode_mean_ns),
                last.state_bytes as f64 / first.state_bytes.max(1) as f64,
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_process_blocks_cover_the_run_and_states_grow() {
        for w in [Workload::SetGrowth, Workload::MapGrowth] {
            let blocks = in_process(w, 250, 100);
            assert_eq!(blocks.len(), 3);
            assert!(blocks[2].2 > blocks[0].2, "{w:?}: the state grows");
        }
        assert_eq!(percentile(&[1, 2, 3], 0.5), 2);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
