//! Measurements: one HDR histogram per operation per client (no sharing on
//! the hot path), merged once at the end into the [`Report`] that is printed
//! and written as JSON.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::spec::Op;
use crate::target::Failure;

/// Highest latency the histograms hold, in microseconds (a minute); longer
/// samples are clamped, and the request timeout is far below it anyway.
const MAX_LATENCY_US: u64 = 60_000_000;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// What one client measured for one operation.
pub struct OpRecorder {
    hist: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
}

impl OpRecorder {
    fn new() -> Self {
        OpRecorder {
            hist: new_histogram(),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }
}

/// What one client measured, per operation.
pub struct Recorder {
    ops: [OpRecorder; 3],
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            ops: [OpRecorder::new(), OpRecorder::new(), OpRecorder::new()],
        }
    }
}

impl Recorder {
    /// A successful request and its latency.
    pub fn success(&mut self, op: Op, status: u16, latency_us: u64) {
        let r = &mut self.ops[op.index()];
        r.hist
            .saturating_record(latency_us.clamp(1, MAX_LATENCY_US));
        *r.statuses.entry(status).or_default() += 1;
    }

    /// A failed request (its latency is not recorded: a fast error must not
    /// make the latency look better).
    pub fn failure(&mut self, op: Op, f: &Failure) {
        let r = &mut self.ops[op.index()];
        if let Failure::Status(s) = f {
            *r.statuses.entry(*s).or_default() += 1;
        }
        *r.errors.entry(f.kind()).or_default() += 1;
    }

    /// Adds another client's measurements.
    pub fn merge(&mut self, other: &Recorder) {
        for (a, b) in self.ops.iter_mut().zip(other.ops.iter()) {
            a.hist.add(&b.hist).expect("same histogram bounds");
            for (k, v) in &b.statuses {
                *a.statuses.entry(*k).or_default() += v;
            }
            for (k, v) in &b.errors {
                *a.errors.entry(k.clone()).or_default() += v;
            }
        }
    }

    /// Turns the merged measurements over `elapsed_s` seconds into per-op results.
    pub fn results(&self, elapsed_s: f64) -> (OpResult, BTreeMap<&'static str, OpResult>) {
        let mut all = OpRecorder::new();
        let mut per_op = BTreeMap::new();
        for op in Op::ALL {
            let r = &self.ops[op.index()];
            all.hist.add(&r.hist).expect("same histogram bounds");
            for (k, v) in &r.errors {
                *all.errors.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &r.statuses {
                *all.statuses.entry(*k).or_default() += v;
            }
            let res = OpResult::of(r, elapsed_s);
            if res.ops + res.errors > 0 {
                per_op.insert(op.name(), res);
            }
        }
        (OpResult::of(&all, elapsed_s), per_op)
    }
}

/// Latency percentiles in microseconds.
#[derive(Serialize, Clone, Debug, Default)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Slowest request.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// Throughput, latency and errors of one operation (or all of them).
#[derive(Serialize, Clone, Debug)]
pub struct OpResult {
    /// Successful requests measured.
    pub ops: u64,
    /// Successful requests per second.
    pub ops_per_s: f64,
    /// Failed requests.
    pub errors: u64,
    /// Latency of successful requests, microseconds.
    pub latency_us: Latency,
    /// Answers by HTTP status (successes and error statuses).
    pub statuses: BTreeMap<String, u64>,
    /// Failures by kind: `http_503`, `timeout`, `connect`, `io`.
    pub errors_by_kind: BTreeMap<String, u64>,
}

impl OpResult {
    fn of(r: &OpRecorder, elapsed_s: f64) -> OpResult {
        let h = &r.hist;
        let ops = h.len();
        let latency_us = if ops == 0 {
            Latency::default()
        } else {
            Latency {
                p50: h.value_at_quantile(0.50),
                p90: h.value_at_quantile(0.90),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
                mean: (h.mean() * 10.0).round() / 10.0,
            }
        };
        OpResult {
            ops,
            ops_per_s: if elapsed_s > 0.0 {
                (ops as f64 / elapsed_s * 10.0).round() / 10.0
            } else {
                0.0
            },
            errors: r.errors.values().sum(),
            latency_us,
            statuses: r
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            errors_by_kind: r.errors.clone(),
        }
    }
}

/// How the preload went.
#[derive(Serialize, Clone, Debug)]
pub struct PreloadResult {
    /// Keys written.
    pub keys: u64,
    /// Wall-clock seconds it took.
    pub seconds: f64,
    /// Keys that could not be written after retries.
    pub failed_keys: u64,
}

/// Everything a run measured, plus the parameters that produced it, so a
/// JSON file stands on its own.
#[derive(Serialize, Clone, Debug)]
pub struct Report {
    /// Free-form label given with `--label`.
    pub label: Option<String>,
    /// The parameters of the run.
    pub params: serde_json::Value,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix_s: u64,
    /// Preload, if one was asked for.
    pub preload: Option<PreloadResult>,
    /// Seconds of the measured phase (after warm-up).
    pub elapsed_s: f64,
    /// TCP connections opened in total (equal to the connection count when
    /// none had to be re-established).
    pub tcp_connects: u64,
    /// CPU use during the measured phase (absent when it ended before it began).
    pub cpu: Option<crate::cpu::CpuUse>,
    /// All operations together.
    pub total: OpResult,
    /// Per operation.
    pub per_op: BTreeMap<&'static str, OpResult>,
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

impl Report {
    /// The human-readable summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        if let Some(label) = &self.label {
            s.push_str(&format!("== {label}\n"));
        }
        if let Some(p) = &self.preload {
            s.push_str(&format!(
                "preload: {} keys in {:.1} s, {} failed\n",
                p.keys, p.seconds, p.failed_keys
            ));
        }
        s.push_str(&format!(
            "measured {:.2} s: {} ops, {:.1} ops/s, {} errors\n",
            self.elapsed_s, self.total.ops, self.total.ops_per_s, self.total.errors
        ));
        s.push_str(&format!(
            "{:<8} {:>10} {:>12} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "op", "ops", "ops/s", "errors", "p50 ms", "p90 ms", "p99 ms", "p999 ms", "max ms"
        ));
        let rows = self
            .per_op
            .iter()
            .map(|(k, v)| (*k, v))
            .chain(std::iter::once(("all", &self.total)));
        for (name, r) in rows {
            let l = &r.latency_us;
            s.push_str(&format!(
                "{:<8} {:>10} {:>12.1} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
                name,
                r.ops,
                r.ops_per_s,
                r.errors,
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.p999),
                ms(l.max)
            ));
        }
        if !self.total.errors_by_kind.is_empty() {
            let kinds: Vec<String> = self
                .total
                .errors_by_kind
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s.push_str(&format!("errors by kind: {}\n", kinds.join(" ")));
        }
        if let Some(c) = &self.cpu {
            let f = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "?".into());
            let servers: Vec<String> = c.servers.iter().map(|s| f(*s)).collect();
            s.push_str(&format!(
                "cpu cores: machine {} of {}, generator {}, servers [{}], other {}",
                f(c.machine_busy),
                c.cores,
                f(c.generator),
                servers.join(" "),
                f(c.other)
            ));
            if let Some(us) = c.server_cpu_us_per_op {
                s.push_str(&format!("; server cpu {us:.1} us/op"));
            }
            s.push('\n');
        }
        let statuses: Vec<String> = self
            .total
            .statuses
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        s.push_str(&format!("statuses: {}\n", statuses.join(" ")));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_percentiles() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        for i in 1..=100 {
            a.success(Op::Get, 200, i * 10);
        }
        b.success(Op::Put, 204, 5000);
        b.failure(Op::Put, &Failure::Status(503));
        b.failure(Op::Put, &Failure::Timeout);
        a.merge(&b);
        let (total, per_op) = a.results(2.0);
        assert_eq!(total.ops, 101);
        assert_eq!(total.errors, 2);
        assert_eq!(total.ops_per_s, 50.5);
        let get = &per_op["get"];
        assert_eq!(get.ops, 100);
        assert!((495..=505).contains(&get.latency_us.p50));
        assert!((985..=1000).contains(&get.latency_us.p99));
        let put = &per_op["put"];
        assert_eq!(put.errors_by_kind["http_503"], 1);
        assert_eq!(put.errors_by_kind["timeout"], 1);
        assert_eq!(put.statuses["503"], 1);
        assert!(!per_op.contains_key("delete"));
    }
}
