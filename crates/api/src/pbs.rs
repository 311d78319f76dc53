//! `GET /admin/pbs?n=&r=&w=&t_ms=`: how stale can a read be?
//!
//! Answers, from this node's recorded replica latencies
//! ([`dynkv_pbs::Recorder`]), the probability that a read issued `t_ms`
//! after a write was acknowledged returns it or a newer version, the
//! `t` at which that probability reaches 99.9 %, and the curve at fixed
//! `t`s, by a Monte Carlo of the WARS model ([`dynkv_pbs::model`]).
//!
//! - `n` defaults to the cluster's N, `r` and `w` (a number or `one`,
//!   `quorum`, `all`) to the configured defaults, `t_ms` to 0. Anything
//!   else is a 400 `bad_parameter` saying what is allowed.
//! - The read is assumed to reach any node of the cluster with equal
//!   chance (a client behind a load balancer; [`ReadVia::AnyNode`]).
//! - Before any replica write or read was measured: 503 `no_samples`.
//! - `t_999_ms` is `null` when 99.9 % is not reached within 10 s.
//!
//! The answer is this node's view as a coordinator: its own links to its
//! peers. In a cluster whose links are alike, any node's answer is the
//! cluster's.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dynkv_pbs::{ReadVia, Scenario, predict};
use dynkv_rpc::messages::Quorum;
use rand::SeedableRng;
use serde_json::json;

use crate::http::params::Params;
use crate::{ApiError, AppState};

/// Trials of one Monte Carlo run.
pub const TRIALS: usize = 10_000;
/// The `t`s of the curve, ms.
pub const CURVE_T_MS: [f64; 11] = [
    0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
];
/// Largest `t_999_ms` reported; past it the answer is `null`.
pub const T_999_HORIZON_MS: f64 = 10_000.0;
/// Largest N the model is asked about.
pub const MAX_N: usize = 64;
/// Largest `t_ms` accepted (one hour).
pub const MAX_T_MS: f64 = 3_600_000.0;

fn bad(message: String) -> Response {
    ApiError::bad_request("bad_parameter", message).into_response()
}

/// The handler.
pub async fn pbs(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let params = Params::parse(q.as_deref().unwrap_or(""));
    let config = state.coord.config();
    let n = match params.get("n") {
        None => config.n_val,
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_N).contains(&n) => n,
            _ => return bad(format!("n must be a number from 1 to {MAX_N}, got {s:?}")),
        },
    };
    // The message of a bad `r` or `w`, or the count it asks for.
    let quorum = |name: &str, default: Quorum| -> Result<usize, String> {
        let q = match params.get(name) {
            None => default,
            Some(s) => Quorum::parse(s, n).map_err(|e| format!("{name} {e}"))?,
        };
        q.required_of(n)
            .map_err(|e| format!("{name} defaults to {default}, which {e}; pass {name} explicitly"))
    };
    let (r, w) = match (quorum("r", config.default_r), quorum("w", config.default_w)) {
        (Ok(r), Ok(w)) => (r, w),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let t_ms = match params.get("t_ms") {
        None => 0.0,
        Some(s) => match s.trim().parse::<f64>() {
            Ok(t) if (0.0..=MAX_T_MS).contains(&t) => t,
            _ => {
                return bad(format!(
                    "t_ms must be a number of milliseconds from 0 to {MAX_T_MS}, got {s:?}"
                ));
            }
        },
    };
    let recorder = state.coord.pbs().clone();
    let samples = recorder.samples();
    let Some(wars) = recorder
        .wars(None)
        .completed()
        .filter(|_| !samples.is_empty())
    else {
        let why = if recorder.enabled() {
            "no replica write or read has been measured on this node yet; write and read some keys first"
        } else {
            "latency recording is off on this node (pbs.record = false)"
        };
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_samples", why).into_response();
    };
    let cluster = state.coord.ring().members().len();
    let scenario = Scenario {
        n,
        r,
        w,
        via: ReadVia::AnyNode { cluster },
    };
    let seed = rand::random::<u64>();
    let run = tokio::task::spawn_blocking(move || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        predict(&wars, &scenario, TRIALS, &mut rng)
    })
    .await;
    let prediction = match run {
        Ok(p) => p,
        Err(e) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "pbs_failed",
                e.to_string(),
            )
            .into_response();
        }
    };
    let t_999 = prediction.t_for(0.999).filter(|t| *t <= T_999_HORIZON_MS);
    let curve: Vec<_> = CURVE_T_MS
        .iter()
        .map(|t| json!({"t_ms": t, "probability": prediction.probability(*t)}))
        .collect();
    Json(json!({
        "n": n,
        "r": r,
        "w": w,
        "t_ms": t_ms,
        "probability": prediction.probability(t_ms),
        "t_999_ms": t_999,
        "trials": prediction.trials(),
        "samples": {"w": samples.w, "a": samples.a, "r": samples.r, "s": samples.s},
        "curve": curve,
    }))
    .into_response()
}
