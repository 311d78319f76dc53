//! The feed consumer: one client that follows `GET /feed` (long-poll JSON,
//! every key) for the whole run, through one node at a time, recording
//! every event it is given ([`FeedEvent`]).
//!
//! It behaves as a real consumer would under faults: on any error (a
//! refused connection after a kill, a timeout in a partition, a 503 from a
//! node that cannot see enough of the cluster) it moves to the next node
//! and resumes from the cursor it holds; it also moves every
//! [`SWITCH_EVERY`] answers, so that resuming on another node is exercised
//! even in quiet stretches. A 410 (cursor expired) is recorded as a gap and
//! followed by a resume from the oldest cursor the answer names. After the
//! clients stop, it keeps reading until its cursor passes the moment they
//! stopped (plus how far ahead any clock was), so every acknowledged write
//! must be in what it recorded: the checker's feed rule
//! (`check::check_feed`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::history::{FeedEvent, FeedSummary, Record, Recorder};

/// Answers from one node before the consumer moves on by itself.
pub const SWITCH_EVERY: u64 = 25;

/// Most events asked for per answer.
const LIMIT: usize = 500;

/// Long-poll wait asked of the node, ms.
const WAIT_MS: u64 = 1_000;

/// Pause after an error before asking the next node.
const ERROR_PAUSE: Duration = Duration::from_millis(200);

/// Follows the feed of a cluster.
pub struct FeedConsumer {
    urls: Vec<String>,
    recorder: Arc<Recorder>,
    t0: Instant,
    http: reqwest::Client,
    /// Unix µs the cursor must pass before the consumer stops (0: not yet
    /// known, keep following).
    pub drain_until: Arc<AtomicU64>,
}

#[derive(Deserialize)]
struct Batch {
    events: Vec<Event>,
    cursor: String,
}

#[derive(Deserialize)]
struct Event {
    key: String,
    dot: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    deleted: bool,
}

/// The time (Unix µs) a cursor token stands at (0 if it is not one).
pub fn cursor_micros(cursor: &str) -> u64 {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .filter(|b| b.len() == 17 && b[0] == 1)
        .map_or(0, |b| {
            u64::from_be_bytes(b[1..9].try_into().expect("8 bytes"))
        })
}

/// Unix µs now.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl FeedConsumer {
    /// A consumer of the nodes at `urls`, recording into `recorder`.
    pub fn new(urls: Vec<String>, recorder: Arc<Recorder>, t0: Instant) -> Self {
        FeedConsumer {
            urls,
            recorder,
            t0,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_millis(WAIT_MS + 5_000))
                .connect_timeout(Duration::from_millis(500))
                .build()
                .expect("HTTP client"),
            drain_until: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Follows the feed until the cursor passes `drain_until` (once set)
    /// or `deadline`, and records the summary.
    pub async fn run(self, deadline: Instant) -> FeedSummary {
        let mut s = FeedSummary {
            started_us: self.t0.elapsed().as_micros() as u64,
            ..FeedSummary::default()
        };
        let mut node = 0usize;
        let mut cursor: Option<String> = None;
        let mut on_node = 0u64;
        loop {
            let drain = self.drain_until.load(Ordering::Acquire);
            let at = cursor.as_deref().map_or(0, cursor_micros);
            if drain > 0 && at >= drain {
                s.drained = true;
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            let mut url = format!(
                "{}/feed?timeout_ms={WAIT_MS}&limit={LIMIT}",
                self.urls[node]
            );
            if let Some(c) = &cursor {
                url.push_str("&cursor=");
                url.push_str(c);
            }
            s.polls += 1;
            let answer = self.http.get(&url).send().await;
            let failed = match answer {
                Err(e) => Some(if e.is_timeout() {
                    "timeout".to_string()
                } else if e.is_connect() {
                    "connect".to_string()
                } else {
                    "transport".to_string()
                }),
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body = r.bytes().await.unwrap_or_default();
                    match status {
                        200 => match serde_json::from_slice::<Batch>(&body) {
                            Ok(b) => {
                                let at_us = self.t0.elapsed().as_micros() as u64;
                                for e in b.events {
                                    s.events += 1;
                                    self.recorder.record(Record::Feed(FeedEvent {
                                        node: node + 1,
                                        at_us,
                                        key: e.key,
                                        dot: e.dot,
                                        value: e.value,
                                        deleted: e.deleted,
                                    }));
                                }
                                cursor = Some(b.cursor);
                                None
                            }
                            Err(_) => Some("bad body".to_string()),
                        },
                        410 => {
                            let v: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            s.expired.push(format!(
                                "n{} at {}: {}",
                                node + 1,
                                cursor.as_deref().unwrap_or("(start)"),
                                v["error"].as_str().unwrap_or("410")
                            ));
                            cursor = v["oldest_cursor"].as_str().map(str::to_string);
                            Some("410".to_string())
                        }
                        other => {
                            let v: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            Some(format!("{other} {}", v["code"].as_str().unwrap_or("")))
                        }
                    }
                }
            };
            on_node += 1;
            let switch = failed.is_some() || on_node >= SWITCH_EVERY;
            if let Some(why) = failed {
                *s.errors.entry(why).or_insert(0) += 1;
                tokio::time::sleep(ERROR_PAUSE).await;
            }
            if switch && self.urls.len() > 1 {
                node = (node + 1) % self.urls.len();
                on_node = 0;
                s.switches += 1;
            }
        }
        s.ended_us = self.t0.elapsed().as_micros() as u64;
        s.cursor = cursor;
        self.recorder.record(Record::FeedEnd(s.clone()));
        s
    }
}
