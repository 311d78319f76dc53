//! `GET /admin/overview`: the whole cluster on one page of JSON, as the
//! dashboard (`/ui`, [`crate::ui`]) draws it.
//!
//! ## Why one node gathers
//! A browser usually reaches one node only: the others are other origins,
//! and in the docker cluster only some ports are published at all. So the
//! node that serves the page asks every member, over the internode RPC
//! ([`dynkv_rpc::messages::Overview`], endpoint 70), for a compact
//! [`NodeSummary`] and answers them side by side with its own view of the
//! cluster: who is up as its failure detector sees them, the ring's owner
//! of each partition (and the next ring's, while a membership change moves
//! partitions), the transfers of that change. A member whose summary does
//! not come back within [`PEER_TIMEOUT`] is shown with the reason, and a
//! member that cannot be reached at all counts as down on the page even
//! before the failure detector's threshold trips (`reachable: false`).
//!
//! ## Where the figures come from
//! Nothing is counted twice. A summary is read from what the node already
//! publishes: its Prometheus registry, encoded as `/metrics` encodes it
//! and parsed back ([`text`]): requests and latency per operation
//! (`dynkv_http_*`), read repairs, sibling counts, quorum failures,
//! bulkhead refusals; the `aae` admin view for anti-entropy progress per
//! partition; the bulkhead's free permits for requests in flight; the
//! store's hint counts per owner.
//!
//! Counters only grow, so "requests per second" and "p99 now" need two
//! readings. Each node keeps a few timed readings of its counters
//! ([`Recent`], at most one per [`MIN_SPACING`], none older than needed)
//! and answers the difference between now and the newest reading at least
//! [`WINDOW`] old: a rate and percentiles over the last ~10 seconds, from
//! the same histogram buckets Prometheus would use (so a percentile is
//! interpolated within a bucket whose bounds differ by a factor of 2).
//! Readings are taken only when a summary is asked for: a node nobody
//! watches does no work, and the first summary after a quiet spell covers
//! that whole spell (its `window_ms` says how long it was).
//!
//! The cost of one summary is one encoding of the registry (a few hundred
//! series) and, when hints are held, one scan of the hints column family,
//! which is cached for [`HINT_SCAN_EVERY`] since a store can hold millions
//! of hints; the dashboard polls every two seconds, and
//! docs/PERFORMANCE.md measures what that costs clients.

pub mod text;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use dynkv_ring::NodeId;
use dynkv_rpc::messages::overview::{AaeProgress, Bucket, Count, HintCount, OpSummary};
use dynkv_rpc::messages::{NodeSummary, Overview as OverviewRequest};
use dynkv_rpc::{CallContext, Handler, RemoteError, RpcError};
use serde_json::{Value, json};
use text::Sample;

use crate::AppState;

/// How long the gathering node waits for a member's summary.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(1);
/// The span rates and percentiles cover, at least (when the node has
/// readings that old).
pub const WINDOW: Duration = Duration::from_secs(10);
/// Readings closer together than this are not kept (several dashboards,
/// or several nodes' dashboards, polling at once share them).
pub const MIN_SPACING: Duration = Duration::from_secs(1);
/// How long a scan of the hints per owner is reused.
pub const HINT_SCAN_EVERY: Duration = Duration::from_secs(5);
/// Most readings kept (a bound whatever the polling pattern).
const MAX_READINGS: usize = 64;

const REQUESTS: &str = "dynkv_http_requests_total";
const LATENCY_BUCKET: &str = "dynkv_http_request_duration_seconds_bucket";
const SIBLINGS_BUCKET: &str = "dynkv_read_siblings_bucket";
const READ_REPAIRS: &str = "dynkv_read_repairs_total";
const QUORUM_FAILURES: &str = "dynkv_quorum_failures_total";
const OVERLOADED: &str = "dynkv_overloaded_total";

/// One operation's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
struct OpCounters {
    /// Answers by status class: index 0 for 1xx–3xx, 1 for 4xx, 2 for 5xx.
    by_class: [u64; 3],
    /// Latency histogram: (upper bound in seconds, cumulative count), in
    /// bound order, `+Inf` last.
    buckets: Vec<(f64, u64)>,
}

impl OpCounters {
    fn total(&self) -> u64 {
        self.by_class.iter().sum()
    }

    /// `self - base`, counter by counter (a counter that went down, which
    /// only a restart could do, counts from zero).
    fn since(&self, base: Option<&OpCounters>) -> OpCounters {
        let Some(base) = base else {
            return self.clone();
        };
        let mut by_class = self.by_class;
        for (c, b) in by_class.iter_mut().zip(base.by_class) {
            *c = c.saturating_sub(b);
        }
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, n)| {
                let b = base
                    .buckets
                    .iter()
                    .find(|(ble, _)| *ble == le)
                    .map_or(0, |(_, n)| *n);
                (le, n.saturating_sub(b))
            })
            .collect();
        OpCounters { by_class, buckets }
    }
}

/// The counters of every operation, from the registry's samples.
fn op_counters(samples: &[Sample]) -> BTreeMap<String, OpCounters> {
    let mut ops: BTreeMap<String, OpCounters> = BTreeMap::new();
    for s in samples {
        if s.name == REQUESTS {
            let class = match s.label("status").as_bytes().first() {
                Some(b'4') => 1,
                Some(b'5') => 2,
                _ => 0,
            };
            ops.entry(s.label("op").to_string()).or_default().by_class[class] += s.value as u64;
        } else if s.name == LATENCY_BUCKET
            && let Some(le) = text_bound(s.label("le"))
        {
            ops.entry(s.label("op").to_string())
                .or_default()
                .buckets
                .push((le, s.value as u64));
        }
    }
    for c in ops.values_mut() {
        c.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    ops
}

fn text_bound(le: &str) -> Option<f64> {
    match le {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        _ => le.parse().ok(),
    }
}

/// The `q` quantile (0..=1) of a cumulative histogram, interpolated
/// linearly within its bucket; the open last bucket answers its lower
/// bound. `None` without observations.
pub fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let target = (q * total as f64).max(f64::MIN_POSITIVE);
    let (mut lo, mut below) = (0.0, 0u64);
    for &(le, n) in buckets {
        if n as f64 >= target {
            if le.is_infinite() {
                return Some(lo);
            }
            let within = (n - below).max(1) as f64;
            return Some(lo + (le - lo) * ((target - below as f64) / within).clamp(0.0, 1.0));
        }
        lo = le;
        below = n;
    }
    Some(lo)
}

/// A timed reading of every operation's counters.
struct Reading {
    at: Instant,
    ops: BTreeMap<String, OpCounters>,
}

/// The readings a node keeps to answer recent rates, and its cached hint
/// counts. One per node, shared by every summary it answers.
pub struct Recent {
    started: Instant,
    readings: Mutex<VecDeque<Reading>>,
    hints: Mutex<Option<(Instant, BTreeMap<String, u64>)>>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            started: Instant::now(),
            readings: Mutex::new(VecDeque::new()),
            hints: Mutex::new(None),
        }
    }
}

impl Recent {
    /// Records `ops` as read at `now` and answers the reading to subtract
    /// from it: the newest at least [`WINDOW`] old, else the oldest kept
    /// (`None` before the first: the window is then the node's life).
    fn window(
        &self,
        now: Instant,
        ops: &BTreeMap<String, OpCounters>,
    ) -> (Option<BTreeMap<String, OpCounters>>, Duration) {
        let mut r = self.readings.lock().unwrap_or_else(|p| p.into_inner());
        // Readings older than the newest one at least WINDOW old are not
        // needed any more.
        while r.len() >= 2 && now.duration_since(r[1].at) >= WINDOW {
            r.pop_front();
        }
        let base = r
            .iter()
            .rev()
            .find(|x| now.duration_since(x.at) >= WINDOW)
            .or(r.front())
            .map(|x| (x.ops.clone(), now.duration_since(x.at)));
        if r.back()
            .is_none_or(|x| now.duration_since(x.at) >= MIN_SPACING)
        {
            if r.len() >= MAX_READINGS {
                r.pop_front();
            }
            r.push_back(Reading {
                at: now,
                ops: ops.clone(),
            });
        }
        match base {
            Some((ops, d)) => (Some(ops), d),
            None => (None, now.duration_since(self.started)),
        }
    }

    /// Hints per owner, scanned at most every [`HINT_SCAN_EVERY`].
    async fn hints(&self, state: &AppState) -> BTreeMap<String, u64> {
        if state.coord.store().hint_count() == 0 {
            return BTreeMap::new();
        }
        {
            let h = self.hints.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, counts)) = h.as_ref()
                && at.elapsed() < HINT_SCAN_EVERY
            {
                return counts.clone();
            }
        }
        let store = state.coord.store().clone();
        let counts = tokio::task::spawn_blocking(move || store.hint_counts_by_owner())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        *self.hints.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), counts.clone()));
        counts
    }
}

/// This node's summary now.
pub async fn summarize(state: &AppState) -> NodeSummary {
    state.metrics.overview_summaries.inc();
    let mut encoded = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut encoded, &state.registry) {
        tracing::warn!(error = %e, "encoding the metrics for the overview failed");
    }
    let samples = text::parse(&encoded);
    let now = Instant::now();
    let ops_now = op_counters(&samples);
    let recent = &state.overview;
    let (base, window) = recent.window(now, &ops_now);
    let secs = window.as_secs_f64();
    let ops = ops_now
        .iter()
        .map(|(op, c)| {
            let d = c.since(base.as_ref().and_then(|b| b.get(op)));
            let ms = |q| quantile(&d.buckets, q).map_or(0.0, |s| round3(s * 1000.0));
            OpSummary {
                op: op.clone(),
                requests: d.total(),
                rate: if secs > 0.001 {
                    round3(d.total() as f64 / secs)
                } else {
                    0.0
                },
                errors: d.by_class[2],
                client_errors: d.by_class[1],
                p50_ms: ms(0.5),
                p99_ms: ms(0.99),
            }
        })
        .collect();
    let labelled = |name: &str, label: &str| -> Vec<Count> {
        samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| Count {
                label: s.label(label).to_string(),
                count: s.value as u64,
            })
            .collect()
    };
    let mut sibling_buckets: Vec<(f64, u64)> = samples
        .iter()
        .filter(|s| s.name == SIBLINGS_BUCKET)
        .filter_map(|s| Some((text_bound(s.label("le"))?, s.value as u64)))
        .collect();
    sibling_buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut below = 0;
    let siblings = sibling_buckets
        .into_iter()
        .map(|(le, n)| {
            let count = n.saturating_sub(below);
            below = n;
            Bucket { le, count }
        })
        .collect();
    let overloaded = samples
        .iter()
        .find(|s| s.name == OVERLOADED)
        .map_or(0, |s| s.value as u64);
    let aae = state
        .views
        .iter()
        .find(|(n, _)| *n == "aae")
        .map(|(_, v)| v.view())
        .unwrap_or(Value::Null);
    let mut aae_partitions: Vec<AaeProgress> = aae["partitions"]
        .as_object()
        .map(|ps| {
            ps.iter()
                .filter_map(|(p, s)| {
                    Some(AaeProgress {
                        partition: p.parse().ok()?,
                        exchanges: s["exchanges"].as_u64().unwrap_or(0),
                        last_exchange_unix_ms: s["last_exchange_ms"].as_u64().unwrap_or(0),
                        last_peer: s["last_peer"].as_str().unwrap_or("").to_string(),
                        keys_repaired: s["repaired_here_total"].as_u64().unwrap_or(0),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    // The view keys partitions by their decimal name; the page wants ring order.
    aae_partitions.sort_by_key(|p| p.partition);
    let capacity = state.limits.max_inflight as u64;
    NodeSummary {
        node: state.coord.node_id().to_string(),
        uptime_ms: recent.started.elapsed().as_millis() as u64,
        window_ms: window.as_millis() as u64,
        ops,
        inflight: capacity.saturating_sub(state.inflight.available_permits() as u64),
        inflight_capacity: capacity,
        overloaded,
        hints: recent
            .hints(state)
            .await
            .into_iter()
            .map(|(owner, count)| HintCount { owner, count })
            .collect(),
        read_repairs: labelled(READ_REPAIRS, "outcome"),
        aae_exchanges: aae["exchanges_ok"].as_u64().unwrap_or(0),
        aae_keys_repaired: aae["keys_repaired"].as_u64().unwrap_or(0),
        aae_partitions,
        siblings,
        quorum_failures: labelled(QUORUM_FAILURES, "op"),
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Serves [`OverviewRequest`] from peers: this node's [`summarize`].
pub struct OverviewHandler(AppState);

/// The internode handler of the overview endpoint, over this node's state.
pub fn handler(state: &AppState) -> Arc<OverviewHandler> {
    Arc::new(OverviewHandler(state.clone()))
}

impl Handler<OverviewRequest> for OverviewHandler {
    async fn handle(
        self: Arc<Self>,
        _: OverviewRequest,
        _: CallContext,
    ) -> Result<NodeSummary, RemoteError> {
        Ok(summarize(&self.0).await)
    }
}

/// Why a member's summary is missing, in a few words, and whether that
/// means the member could not be reached (rather than reached and unable
/// to answer, like an older release).
fn failure(e: &RpcError) -> (String, bool) {
    match e {
        RpcError::Remote(RemoteError::UnknownEndpoint(_)) => {
            ("this member's release serves no overview".to_string(), true)
        }
        e => (e.to_string(), e.peer_answered()),
    }
}

/// `GET /admin/overview`.
pub async fn route(State(state): State<AppState>) -> Response {
    let coord = state.coord.clone();
    let ring = coord.ring();
    let health = coord.health().clone();
    let me = coord.node_id().clone();
    let addrs: BTreeMap<NodeId, String> = state.book.all().into_iter().collect();
    let asks = ring.members().iter().cloned().map(|m| {
        let state = state.clone();
        let me = me.clone();
        async move {
            let started = Instant::now();
            let got = if m == me {
                Ok(summarize(&state).await)
            } else {
                state
                    .coord
                    .transport()
                    .call(&m, &OverviewRequest {}, PEER_TIMEOUT)
                    .await
            };
            (m, got, started.elapsed())
        }
    });
    let answers = futures::future::join_all(asks).await;
    let members: Vec<Value> = answers
        .into_iter()
        .map(|(m, got, took)| {
            let this = m == me;
            let up = this || health.is_up(&m);
            let (summary, error, reachable) = match got {
                Ok(s) => (Some(s), None, true),
                Err(e) => {
                    let (why, reachable) = failure(&e);
                    (None, Some(why), reachable)
                }
            };
            json!({
                "id": m,
                "addr": addrs.get(&m),
                "self": this,
                "up": up,
                "reachable": reachable,
                "breaker": if this { "closed" } else { health.breaker(&m).as_str() },
                "summary_ms": round3(took.as_secs_f64() * 1000.0),
                "error": error,
                "summary": summary,
            })
        })
        .collect();
    let owners: Vec<&str> = ring.owners().iter().map(NodeId::as_str).collect();
    let next = coord.next_ring();
    let next_owners: Option<Vec<&str>> = next
        .as_ref()
        .map(|r| r.owners().iter().map(NodeId::as_str).collect());
    Json(json!({
        "node": me,
        "at_unix_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        "n_val": coord.config().n_val,
        "effective_n": coord.effective_n(),
        "default_r": coord.config().default_r.to_string(),
        "default_w": coord.config().default_w.to_string(),
        "members": members,
        "ring": {
            "partitions": ring.partitions(),
            "owners": owners,
            "next_owners": next_owners,
        },
        "transfers": state.membership.as_ref().map(|m| m.transfers()),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(pairs: &[(f64, u64)]) -> Vec<(f64, u64)> {
        pairs.to_vec()
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        // 100 observations: 50 in (0, 1], 40 in (1, 2], 10 in (2, 4].
        let h = hist(&[(1.0, 50), (2.0, 90), (4.0, 100), (f64::INFINITY, 100)]);
        assert_eq!(quantile(&h, 0.5), Some(1.0));
        assert!((quantile(&h, 0.7).unwrap() - 1.5).abs() < 1e-9);
        assert!((quantile(&h, 0.99).unwrap() - 3.8).abs() < 1e-9);
        assert!((quantile(&h, 0.25).unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(quantile(&hist(&[(1.0, 0), (f64::INFINITY, 0)]), 0.5), None);
        assert_eq!(quantile(&[], 0.5), None);
        // Everything past the last finite bound: its bound is the answer.
        assert_eq!(
            quantile(&hist(&[(1.0, 0), (f64::INFINITY, 5)]), 0.99),
            Some(1.0)
        );
    }

    #[test]
    fn counters_by_operation_and_class() {
        let text = "dynkv_http_requests_total{op=\"get\",status=\"200\"} 7\n\
            dynkv_http_requests_total{op=\"get\",status=\"404\"} 2\n\
            dynkv_http_requests_total{op=\"get\",status=\"503\"} 1\n\
            dynkv_http_requests_total{op=\"put\",status=\"204\"} 4\n\
            dynkv_http_request_duration_seconds_bucket{le=\"0.002\",op=\"get\"} 9\n\
            dynkv_http_request_duration_seconds_bucket{le=\"+Inf\",op=\"get\"} 10\n\
            dynkv_http_request_duration_seconds_bucket{le=\"0.001\",op=\"get\"} 5\n";
        let ops = op_counters(&text::parse(text));
        assert_eq!(ops["get"].by_class, [7, 2, 1]);
        assert_eq!(ops["get"].total(), 10);
        assert_eq!(
            ops["get"].buckets,
            vec![(0.001, 5), (0.002, 9), (f64::INFINITY, 10)]
        );
        assert_eq!(ops["put"].by_class, [4, 0, 0]);
        let base = OpCounters {
            by_class: [2, 2, 0],
            buckets: vec![(0.001, 3), (0.002, 4), (f64::INFINITY, 4)],
        };
        let d = ops["get"].since(Some(&base));
        assert_eq!(d.by_class, [5, 0, 1]);
        assert_eq!(d.buckets, vec![(0.001, 2), (0.002, 5), (f64::INFINITY, 6)]);
        assert_eq!(ops["put"].since(None), ops["put"]);
    }

    #[test]
    fn the_window_reaches_back_at_least_its_span_once_it_can() {
        let r = Recent::default();
        let t0 = r.started;
        let ops = |n: u64| {
            BTreeMap::from([(
                "get".to_string(),
                OpCounters {
                    by_class: [n, 0, 0],
                    buckets: vec![],
                },
            )])
        };
        let at = |s: u64| t0 + Duration::from_secs(s);
        // First reading: no base, the window is the node's life.
        let (base, w) = r.window(at(3), &ops(30));
        assert!(base.is_none());
        assert_eq!(w, Duration::from_secs(3));
        // Then every second for 20 s: once 10 s of readings exist, the base
        // is the newest reading at least 10 s old.
        for s in 4..=23 {
            let (base, w) = r.window(at(s), &ops(10 * s));
            let base = base.expect("a base from the second reading on");
            if s >= 13 {
                assert_eq!(w, Duration::from_secs(10), "at {s}");
                assert_eq!(base["get"].by_class[0], 10 * (s - 10));
            } else {
                assert_eq!(w, Duration::from_secs(s - 3), "at {s}");
            }
        }
        let kept = r.readings.lock().unwrap().len();
        assert!(kept <= 12, "{kept} readings kept");
        // Readings closer than MIN_SPACING are not kept.
        let before = r.readings.lock().unwrap().len();
        r.window(at(23) + Duration::from_millis(200), &ops(231));
        assert_eq!(r.readings.lock().unwrap().len(), before);
    }

    #[test]
    fn failures_say_whether_the_member_was_reached() {
        let (why, reached) = failure(&RpcError::Remote(RemoteError::UnknownEndpoint(70)));
        assert!(reached && why.contains("release"), "{why}");
        let (_, reached) = failure(&RpcError::Unreachable("refused".into()));
        assert!(!reached);
        let (_, reached) = failure(&RpcError::Timeout(PEER_TIMEOUT));
        assert!(!reached);
    }
}
