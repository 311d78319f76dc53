//! Secondary index queries (Riak's 2i): `GET /buckets/{b}/index/{field}/{term}`
//! (exact) and `GET /buckets/{b}/index/{field}/{from}/{to}` (range), the
//! same under `/types/{t}/...`, as `riak_kv_wm_index` answers them.
//!
//! ## What is indexed
//! A write's `X-Riak-Index-<field>: v1, v2` headers are kept in each
//! sibling's metadata ([`object`](super::object)); every replica keeps, in
//! the same RocksDB write batch as the object, one entry per `(field,
//! term)` of each live sibling (`dynkv_storage::index`). Fields end in `_int`
//! (integers, sorted numerically) or `_bin` (byte strings, sorted
//! bytewise); `$bucket` (every key of the bucket) and `$key` (a range of
//! key names) are answered from the keys themselves.
//!
//! ## How a query is answered
//! Like a key listing ([`listing`](super::listing)) a query reads one
//! replica of every partition (a *covering set*, R=1): each partition's
//! replica is the one its writes through this node were applied on first
//! (this node when it holds the partition, else its first primary),
//! believed-up ones first,
//! and the partitions given to one node are asked of it in one
//! [`IndexQuery`] per page of [`PAGE`] entries. A node that fails has its
//! partitions asked of their next replica (from the query's start: its
//! partial answer is dropped); when a partition has no replica left the
//! query fails with what each one answered. Answers are merged in (term,
//! key) order, integers numerically, and deduplicated.
//!
//! ## Parameters and answers
//! - `return_terms=true`: `{"results":[{"term":"key"},...]}` instead of
//!   `{"keys":[...]}` for range queries (as in Riak, not for exact queries,
//!   whose one term the client adds itself, nor for `$bucket`).
//! - `max_results=N`: at most N results, and when N were answered a
//!   `"continuation"` (opaque base64: the last `(term, key)`) that the next
//!   page passes back as `continuation=`. As in Riak, a page that ends
//!   exactly at the last result still carries one; the page after it is
//!   empty. Pages are stable: results are sorted by (term, key) and the
//!   next page starts strictly after the last one.
//! - `term_regex=R`: only terms the regular expression matches (anywhere
//!   in the term); refused on `_int` fields, as in Riak.
//! - `stream=true`: the answer is `multipart/mixed`, one
//!   `application/json` part per batch of results, then a part with the
//!   continuation if there is one, then the closing boundary; a failure
//!   is a part `{"error":"..."}`. Without `max_results` each page a
//!   replica answers is sent as soon as it arrives, as Riak streams
//!   (sorted within a part, not across parts; a replica that fails mid-way
//!   is replaced by the next, resuming after the last entry sent); with
//!   it the page is gathered and sorted first.
//! - `timeout=ms`: bounds the whole query (0 or absent: the listing
//!   default); past it the answer is 503 `request timed out` (or an
//!   error part when streaming).
//!
//! ## MapReduce over an index, without phases
//! `POST /mapred` with an index query as its inputs (`{"bucket": B,
//! "index": F, "key": T}` or `"start"`/`"end"`) and no phases (`"query":
//! []`) answers the matching `[[bucket, key], ...]`, which is what Riak
//! answers a phaseless job and how Riak clients run index queries as
//! MapReduce inputs ([`mapred`]). Any other job is refused: dynkv runs no
//! MapReduce phases.
//!
//! Bad requests are 400s in Riak's plain-text words: an unknown field type
//! (`Invalid query: ...`), an `_int` term that is not an integer, a bad
//! `max_results`, `return_terms`, `continuation`, `timeout` or regular
//! expression.

use std::collections::HashMap;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{RawPathParams, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dynkv_quorum::index::{entry_order, is_term_of};
use dynkv_ring::NodeId;
use dynkv_rpc::messages::listing::{BUCKET_FIELD, KEY_FIELD};
use dynkv_rpc::messages::{IndexEntries, IndexQuery};
use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::RiakError;
use super::request::{Target, listing_deadline};
use crate::AppState;
use crate::http::codec::unquote_plus;
use crate::http::params::Params;

/// Entries asked of a replica per call.
pub const PAGE: u32 = 1000;

/// Results per part of a streamed answer.
pub const STREAM_BATCH: usize = 100;

/// Format byte of a continuation: `1 ‖ varint len(term) ‖ term ‖ key name`.
const CONTINUATION_V1: u8 = 1;

/// A `(term, key)` pair: the term as a client writes it, the whole stored
/// key.
pub type Entry = (Bytes, Bytes);

/// A parsed index query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The index field (`*_bin`, `*_int`, `$bucket`, `$key`).
    pub field: String,
    /// Least term (inclusive).
    pub from: Bytes,
    /// Greatest term (inclusive).
    pub to: Bytes,
    /// Whether the path named one term (an exact query).
    pub exact: bool,
    /// Answer terms with the keys.
    pub return_terms: bool,
    /// Page size.
    pub max_results: Option<usize>,
    /// Resume after this `(term, key name)`.
    pub continuation: Option<(Bytes, Bytes)>,
    /// Term filter.
    pub term_regex: Option<String>,
    /// Answer as `multipart/mixed`.
    pub stream: bool,
}

/// Riak's words for a bad `max_results` or `return_terms`.
fn invalid(param: &str, value: &str, what: &str) -> RiakError {
    RiakError::bad_request(format!("Invalid \"{param}\". \"{value}\" is not {what}"))
}

/// A query's options, already typed: what each transport reads from its
/// own request format.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Answer terms with the keys.
    pub return_terms: bool,
    /// Page size (0 is refused).
    pub max_results: Option<u64>,
    /// Resume after this `(term, key name)`.
    pub continuation: Option<(Bytes, Bytes)>,
    /// Term filter.
    pub term_regex: Option<String>,
    /// Answer in batches as they come.
    pub stream: bool,
}

impl Query {
    /// Reads the path (`field`, `from`, optional `to`, decoded the way
    /// Riak decodes paths) and the query string.
    pub fn parse(path: &[(String, Vec<u8>)], q: &Params) -> Result<Query, RiakError> {
        let get = |n: &str| path.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let field = get("index").unwrap_or_default();
        let from = Bytes::from(get("from").unwrap_or_default());
        let to = get("to").map(Bytes::from);
        let return_terms = match q.get("return_terms") {
            None => false,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(invalid("return_terms", v, "a boolean")),
            },
        };
        let max_results = match q.get("max_results") {
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(invalid("max_results", v, "a positive integer")),
            },
        };
        let continuation = q.get("continuation").map(decode_continuation).transpose()?;
        let options = Options {
            return_terms,
            max_results,
            continuation,
            term_regex: q.get("term_regex").map(str::to_string),
            stream: q.get("stream") == Some("true"),
        };
        Query::build(field, from, to, options)
    }

    /// Checks a query as Riak checks one, whatever transport it came by:
    /// the field's type, integer terms, the page size and the regular
    /// expression. `to` absent: an exact query for `from`.
    pub fn build(
        field: Vec<u8>,
        from: Bytes,
        to: Option<Bytes>,
        o: Options,
    ) -> Result<Query, RiakError> {
        let field = String::from_utf8(field)
            .map_err(|_| RiakError::bad_request("Invalid query: the index name is not UTF-8"))?;
        let exact = to.is_none();
        let to = to.unwrap_or_else(|| from.clone());
        let is_int = field.ends_with("_int");
        if field != BUCKET_FIELD && field != KEY_FIELD && !is_int && !field.ends_with("_bin") {
            return Err(RiakError::bad_request(format!(
                "Invalid query: {{unknown_field_type,<<\"{field}\">>}}"
            )));
        }
        for term in [&from, &to] {
            if is_int && !is_term_of(&field, term) {
                return Err(RiakError::bad_request(format!(
                    "Invalid query: {{could_not_parse_integer,<<\"{}\">>}}",
                    String::from_utf8_lossy(term)
                )));
            }
        }
        let max_results = match o.max_results {
            None => None,
            Some(n) => match usize::try_from(n) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(invalid("max_results", &n.to_string(), "a positive integer"));
                }
            },
        };
        if let Some(r) = &o.term_regex {
            if is_int {
                return Err(RiakError::bad_request(
                    "Can not use term regular expressions on integer queries",
                ));
            }
            regex::Regex::new(r).map_err(|e| {
                RiakError::bad_request(format!("Invalid term regular expression {r:?} : {e}"))
            })?;
        }
        Ok(Query {
            // An exact query's term is the one asked: the client adds it.
            return_terms: o.return_terms && !exact && field != BUCKET_FIELD,
            field,
            from,
            to,
            exact,
            max_results,
            continuation: o.continuation,
            term_regex: o.term_regex,
            stream: o.stream,
        })
    }
}

/// The continuation after `(term, key name)`: opaque base64 to clients.
pub fn encode_continuation(term: &[u8], name: &[u8]) -> String {
    let mut raw = vec![CONTINUATION_V1];
    prost::encode_length_delimiter(term.len(), &mut raw).expect("a Vec grows as needed");
    raw.extend_from_slice(term);
    raw.extend_from_slice(name);
    STANDARD.encode(raw)
}

/// Reads a continuation back; a 400 for anything [`encode_continuation`]
/// did not make.
pub fn decode_continuation(s: &str) -> Result<(Bytes, Bytes), RiakError> {
    let bad = || RiakError::bad_request(format!("Invalid continuation: {s:?}"));
    let raw = STANDARD.decode(s.trim()).map_err(|_| bad())?;
    let Some((&CONTINUATION_V1, mut rest)) = raw.split_first() else {
        return Err(bad());
    };
    let len = prost::decode_length_delimiter(&mut rest).map_err(|_| bad())?;
    if rest.len() < len {
        return Err(bad());
    }
    let (term, name) = rest.split_at(len);
    Ok((Bytes::copy_from_slice(term), Bytes::copy_from_slice(name)))
}

/// The keys' prefix an index query over `t`'s bucket looks in.
pub fn scope_of(t: &Target) -> Bytes {
    Bytes::from(
        Target {
            key: None,
            ..t.clone()
        }
        .internal_key(),
    )
}

/// A query's deadline from its `timeout` (0, which the Riak clients send
/// for `infinity`, or absent: the listing default).
pub fn deadline(state: &AppState, timeout_ms: Option<u64>) -> Result<Instant, RiakError> {
    match timeout_ms {
        None | Some(0) => listing_deadline(state, &Params::parse("")),
        Some(ms) => listing_deadline(state, &Params::parse(&format!("timeout={ms}"))),
    }
}

/// The answer of a gathered query: the results, `(term, key name)` in
/// order, and the continuation of the next page when the page is full.
#[derive(Debug, Default)]
pub struct Page {
    /// `(term, key name)` pairs.
    pub results: Vec<Entry>,
    /// Opaque (base64) resume point, only with a full page.
    pub continuation: Option<String>,
}

/// What a streamed query sends, in order: batches, then a continuation
/// if the page was full, or a failure that ends it.
#[derive(Debug)]
pub enum Event {
    /// `(term, key name)` pairs, in order within the batch.
    Batch(Vec<Entry>),
    /// The continuation of a full page.
    Continuation(String),
    /// The query stopped.
    Failed(Failure),
}

/// Entries with the scope stripped from their keys.
fn named(scope: &[u8], entries: Vec<Entry>) -> Vec<Entry> {
    entries
        .into_iter()
        .map(|(term, key)| {
            let name = match key.strip_prefix(scope) {
                Some(_) => key.slice(scope.len()..),
                None => key,
            };
            (term, name)
        })
        .collect()
}

/// The page of entries a query gathered, with its continuation.
fn page_of(query: &Query, scope: &[u8], entries: Vec<Entry>) -> Page {
    let continuation = match (query.max_results, entries.last()) {
        (Some(max), Some((term, key))) if entries.len() == max => Some(encode_continuation(
            term,
            key.strip_prefix(scope).unwrap_or(key),
        )),
        _ => None,
    };
    Page {
        results: named(scope, entries),
        continuation,
    }
}

/// Answers a query whole (bounded by `deadline`): the core every
/// transport's unstreamed query calls.
pub async fn gather(
    state: &AppState,
    query: &Query,
    scope: &Bytes,
    deadline: Instant,
) -> Result<Page, Failure> {
    let run = run(state, query, scope, None);
    match tokio::time::timeout_at(deadline.into(), run).await {
        Ok(Ok(entries)) => Ok(page_of(query, scope, entries)),
        Ok(Err(f)) => Err(f),
        Err(_) => Err(Failure::Timeout),
    }
}

/// Answers a query as a stream of [`Event`]s: the core every
/// transport's streamed query calls. Without a page size each page a
/// replica answers is sent as soon as it arrives, as Riak streams, so no
/// node holds the whole answer (batches are in order only within each
/// one); with one, the page is gathered and sorted first, then sent in
/// batches of [`STREAM_BATCH`].
pub fn stream(
    state: AppState,
    query: Query,
    scope: Bytes,
    deadline: Instant,
) -> mpsc::Receiver<Event> {
    let (events, rx) = mpsc::channel::<Event>(4);
    tokio::spawn(async move {
        if query.max_results.is_some() {
            match gather(&state, &query, &scope, deadline).await {
                Ok(page) => {
                    for batch in page.results.chunks(STREAM_BATCH) {
                        if events.send(Event::Batch(batch.to_vec())).await.is_err() {
                            return;
                        }
                    }
                    if let Some(c) = page.continuation {
                        let _ = events.send(Event::Continuation(c)).await;
                    }
                }
                Err(f) => {
                    let _ = events.send(Event::Failed(f)).await;
                }
            }
            return;
        }
        let (tx, mut pages) = mpsc::channel::<Vec<Entry>>(4);
        let forward_scope = scope.clone();
        let forward_events = events.clone();
        let forward = tokio::spawn(async move {
            while let Some(batch) = pages.recv().await {
                let batch = named(&forward_scope, batch);
                if forward_events.send(Event::Batch(batch)).await.is_err() {
                    return;
                }
            }
        });
        let run = run(&state, &query, &scope, Some(&tx));
        let failure = match tokio::time::timeout_at(deadline.into(), run).await {
            Ok(Ok(_)) => None,
            Ok(Err(f)) => Some(f),
            Err(_) => Some(Failure::Timeout),
        };
        drop(tx);
        // Every page is sent before the failure, if any.
        let _ = forward.await;
        if let Some(f) = failure {
            let _ = events.send(Event::Failed(f)).await;
        }
    });
    rx
}

/// `GET /buckets/{b}/index/{field}/{from}[/{to}]`.
pub async fn query(
    State(state): State<AppState>,
    t: Target,
    raw: RawPathParams,
    q: Params,
) -> Result<Response, RiakError> {
    let path: Vec<(String, Vec<u8>)> = raw
        .iter()
        .map(|(k, v)| (k.to_string(), unquote_plus(v)))
        .collect();
    let query = Query::parse(&path, &q)?;
    let deadline = match q.get("timeout") {
        // The Riak client sends 0 for `infinity`.
        Some("0") => listing_deadline(&state, &Params::parse(""))?,
        _ => listing_deadline(&state, &q)?,
    };
    let scope = scope_of(&t);
    if query.stream {
        let events = stream(state, query.clone(), scope, deadline);
        return Ok(stream_response(events, query));
    }
    Ok(match gather(&state, &query, &scope, deadline).await {
        Ok(page) => {
            let mut doc = results_json(&query, &page.results);
            if let Some(c) = page.continuation {
                doc["continuation"] = Value::from(c);
            }
            let mut r = doc.to_string().into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(f) => f.into_error().into_response(),
    })
}

/// A streamed answer as `multipart/mixed`: one `application/json` part
/// per event, then the closing boundary.
fn stream_response(mut events: mpsc::Receiver<Event>, query: Query) -> Response {
    let boundary = new_boundary();
    let closing = Bytes::from(format!("\r\n--{boundary}--\r\n"));
    let framing = boundary.clone();
    let parts = futures::stream::poll_fn(move |cx| events.poll_recv(cx));
    let body = parts
        .map(move |event| {
            let doc = match event {
                Event::Batch(entries) => results_json(&query, &entries),
                Event::Continuation(c) => json!({ "continuation": c }),
                Event::Failed(f) => failure_json(&f),
            };
            Ok::<_, std::convert::Infallible>(Bytes::from(part(&framing, &doc)))
        })
        .chain(futures::stream::once(async move { Ok(closing) }));
    multipart_response(Body::from_stream(body), &boundary)
}

/// The answer of a MapReduce job (JSON, as every transport carries it):
/// for a phaseless job over an index query, the matching `[[bucket, key],
/// ...]`; any other job is a 400 naming what is served. The core of
/// `POST /mapred` and `RpbMapRedReq`.
pub async fn mapred_answer(state: &AppState, body: &[u8]) -> Result<Vec<Value>, RiakError> {
    let job: Value = serde_json::from_slice(body)
        .map_err(|e| RiakError::bad_request(format!("Invalid MapReduce job: {e}")))?;
    let (btype, bucket, query) = mapred_query(&job)?;
    if let Some(t) = &btype {
        let active = state
            .membership
            .as_ref()
            .and_then(|m| m.bucket_type(t))
            .is_some_and(|e| e.active);
        if !active {
            return Err(RiakError::new(
                StatusCode::NOT_FOUND,
                format!("Unknown bucket type: {t}"),
            ));
        }
    }
    let base = super::namespace::base(btype.as_deref().map(str::as_bytes));
    let scope = Bytes::from(super::namespace::prefix_in(&base, &bucket));
    let deadline = listing_deadline(state, &Params::parse(""))?;
    let entries =
        match tokio::time::timeout_at(deadline.into(), run(state, &query, &scope, None)).await {
            Ok(Ok(entries)) => entries,
            Ok(Err(Failure::Replicas(why))) => {
                return Err(RiakError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("Error:\n{why}"),
                ));
            }
            Ok(Err(Failure::Timeout)) | Err(_) => {
                return Err(RiakError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "request timed out",
                ));
            }
        };
    let bucket = String::from_utf8_lossy(&bucket).into_owned();
    let pairs: Vec<Value> = entries
        .iter()
        .map(|(_, key)| {
            let name = key.strip_prefix(&scope[..]).unwrap_or(key);
            json!([bucket, String::from_utf8_lossy(name)])
        })
        .collect();
    Ok(pairs)
}

/// `POST /mapred`: a phaseless job whose inputs are an index query (see
/// the module documentation); any other job is a 400 naming what is
/// served.
pub async fn mapred(State(state): State<AppState>, body: Bytes) -> Result<Response, RiakError> {
    let pairs = mapred_answer(&state, &body).await?;
    let mut r = Value::Array(pairs).to_string().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// The bucket and index query of a phaseless MapReduce job over an index.
fn mapred_query(job: &Value) -> Result<(Option<String>, Vec<u8>, Query), RiakError> {
    let refuse = || {
        RiakError::bad_request(
            "MapReduce is not supported: only a job with no phases whose inputs are a secondary index query (bucket, index, key or start and end) is served",
        )
    };
    if job
        .get("query")
        .and_then(Value::as_array)
        .is_none_or(|q| !q.is_empty())
    {
        return Err(refuse());
    }
    let inputs = job
        .get("inputs")
        .and_then(Value::as_object)
        .ok_or_else(refuse)?;
    let (btype, bucket) = match inputs.get("bucket") {
        Some(Value::String(b)) => (None, b.clone()),
        Some(Value::Array(tb)) => match tb.as_slice() {
            [Value::String(t), Value::String(b)] if t == dynkv_btypes::DEFAULT_TYPE => {
                (None, b.clone())
            }
            [Value::String(t), Value::String(b)] => (Some(t.clone()), b.clone()),
            _ => return Err(refuse()),
        },
        _ => return Err(refuse()),
    };
    let term = |name: &str| -> Option<Vec<u8>> {
        match inputs.get(name)? {
            Value::String(s) => Some(s.clone().into_bytes()),
            Value::Number(n) => Some(n.to_string().into_bytes()),
            _ => None,
        }
    };
    let field = inputs
        .get("index")
        .and_then(Value::as_str)
        .ok_or_else(refuse)?;
    let mut path = vec![("index".to_string(), field.as_bytes().to_vec())];
    match (term("key"), term("start"), term("end")) {
        (Some(k), None, None) => path.push(("from".into(), k)),
        (None, Some(from), Some(to)) => {
            path.push(("from".into(), from));
            path.push(("to".into(), to));
        }
        _ => return Err(refuse()),
    }
    Ok((
        btype,
        bucket.into_bytes(),
        Query::parse(&path, &Params::parse(""))?,
    ))
}

/// Why a query has no answer.
#[derive(Debug)]
pub enum Failure {
    /// Past its deadline.
    Timeout,
    /// A partition had no replica that answered (what each said).
    Replicas(String),
}

impl Failure {
    /// Riak's answer to it: 503 `request timed out`, or 503 with what
    /// each replica said.
    pub fn into_error(self) -> RiakError {
        match self {
            Failure::Timeout => {
                RiakError::new(StatusCode::SERVICE_UNAVAILABLE, "request timed out")
            }
            Failure::Replicas(why) => {
                RiakError::new(StatusCode::SERVICE_UNAVAILABLE, format!("Error:\n{why}"))
            }
        }
    }
}

/// `{"keys":[...]}`, or `{"results":[{"term":"key"},...]}` with terms,
/// of `(term, key name)` pairs.
fn results_json(query: &Query, entries: &[Entry]) -> Value {
    if query.return_terms {
        let items = entries
            .iter()
            .map(|(term, key)| {
                let mut m = Map::new();
                m.insert(
                    String::from_utf8_lossy(term).into_owned(),
                    Value::from(String::from_utf8_lossy(key).into_owned()),
                );
                Value::Object(m)
            })
            .collect();
        json!({ "results": Value::Array(items) })
    } else {
        let keys: Vec<String> = entries
            .iter()
            .map(|(_, k)| String::from_utf8_lossy(k).into_owned())
            .collect();
        json!({ "keys": keys })
    }
}

/// The error part of a streamed answer.
fn failure_json(f: &Failure) -> Value {
    match f {
        Failure::Timeout => json!({ "error": "timeout" }),
        Failure::Replicas(why) => json!({ "error": why }),
    }
}

/// A fresh multipart boundary.
fn new_boundary() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// One part of a streamed answer, as Riak frames it: the boundary, the
/// part's content type and the JSON document.
fn part(boundary: &str, doc: &Value) -> String {
    format!("\r\n--{boundary}\r\nContent-Type: application/json\r\n\r\n{doc}")
}

/// A 200 `multipart/mixed` answer.
fn multipart_response(body: Body, boundary: &str) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&format!("multipart/mixed;boundary={boundary}"))
            .expect("a hex boundary is a valid header value"),
    );
    r
}

/// One partition still to be asked: its replicas not yet tried (the next
/// one last), what the tried ones answered, and where to resume.
#[derive(Default)]
struct Pending {
    partition: u32,
    order: Vec<NodeId>,
    tried: Vec<String>,
    after: Option<Entry>,
}

/// Asks a covering set of replicas. Without a `sink` it merges their
/// answers: the first `max_results` entries after the continuation (all
/// of them without a page size), in (term, key) order. With one, every
/// page is sent to it as it arrives (in order within a page) and nothing
/// is kept; a replica that fails mid-way is replaced by the next one,
/// resuming after the last entry sent.
async fn run(
    state: &AppState,
    query: &Query,
    scope: &Bytes,
    sink: Option<&mpsc::Sender<Vec<Entry>>>,
) -> Result<Vec<Entry>, Failure> {
    let coord = &state.coord;
    let ring = coord.ring();
    let n = coord.effective_n();
    let after: Option<Entry> = query
        .continuation
        .as_ref()
        .map(|(term, name)| (term.clone(), [&scope[..], &name[..]].concat().into()));
    // Each partition's replicas in the order its writes are coordinated
    // (`covering_order`), last first: candidates are popped.
    let mut pending: Vec<Pending> = (0..ring.partitions())
        .map(|p| {
            let replicas: Vec<NodeId> = ring.walk(p).into_iter().take(n).cloned().collect();
            let mut order = super::shared::covering_order(coord, replicas);
            order.reverse();
            Pending {
                partition: p,
                order,
                tried: Vec::new(),
                after: after.clone(),
            }
        })
        .collect();
    let mut found: Vec<Entry> = Vec::new();
    while !pending.is_empty() {
        // The partitions each node is asked for this round (those with the
        // same resume position share a request).
        let mut groups: HashMap<(NodeId, Option<Entry>), Vec<usize>> = HashMap::new();
        for (i, p) in pending.iter().enumerate() {
            let Some(node) = p.order.last() else {
                return Err(Failure::Replicas(format!(
                    "no replica of partition {} could be queried ({})",
                    p.partition,
                    p.tried.join("; ")
                )));
            };
            groups
                .entry((node.clone(), p.after.clone()))
                .or_default()
                .push(i);
        }
        let asks = groups.into_iter().map(|((node, after), members)| {
            let partitions: Vec<u32> = members.iter().map(|&i| pending[i].partition).collect();
            async move {
                let got = ask_node(state, &node, query, scope, partitions, after, sink).await;
                (node, members, got)
            }
        });
        let mut failed = Vec::new();
        for (node, members, got) in futures::future::join_all(asks).await {
            match got {
                Ok(entries) => found.extend(entries),
                Err(Stopped::ClientGone) => {
                    return Err(Failure::Replicas("the client went away".into()));
                }
                Err(Stopped::Failed { why, resume }) => failed.extend(
                    members
                        .into_iter()
                        .map(|i| (i, format!("{node}: {why}"), resume.clone())),
                ),
            }
        }
        let mut next = Vec::new();
        for (i, why, resume) in failed {
            let mut p = std::mem::take(&mut pending[i]);
            p.order.pop();
            p.tried.push(why);
            p.after = resume;
            next.push(p);
        }
        pending = next;
    }
    found.sort_by(|a, b| entry_order(&query.field, a, b));
    found.dedup();
    if let Some(max) = query.max_results {
        found.truncate(max);
    }
    Ok(found)
}

/// Why a node's part of a query stopped.
enum Stopped {
    /// The node failed (why), after sending what precedes `resume`.
    Failed { why: String, resume: Option<Entry> },
    /// The streamed answer's receiver is gone.
    ClientGone,
}

/// Asks one node for its entries in `partitions`, page by page: every
/// entry after `after` (or the first `max_results`), kept or sent to
/// `sink`.
async fn ask_node(
    state: &AppState,
    node: &NodeId,
    query: &Query,
    scope: &Bytes,
    partitions: Vec<u32>,
    start: Option<Entry>,
    sink: Option<&mpsc::Sender<Vec<Entry>>>,
) -> Result<Vec<Entry>, Stopped> {
    let coord = &state.coord;
    let mut out: Vec<Entry> = Vec::new();
    let mut after = start.clone();
    // Where a replacement resumes: where this node started, unless pages
    // were already sent on.
    let failed = |why: String, after: &Option<Entry>| Stopped::Failed {
        why,
        resume: if sink.is_some() {
            after.clone()
        } else {
            start.clone()
        },
    };
    loop {
        let limit = match query.max_results {
            Some(max) => (max - out.len()).min(PAGE as usize) as u32,
            None => PAGE,
        };
        let req = IndexQuery {
            partitions: partitions.clone(),
            scope: scope.clone(),
            field: query.field.clone(),
            from: query.from.clone(),
            to: query.to.clone(),
            after: after.clone(),
            term_regex: query.term_regex.clone(),
            limit,
        };
        let items = match coord.ask(node, req, coord.config().rpc_timeout).await {
            Ok(IndexEntries(items)) if items.len() > limit as usize => {
                let why = format!("answered {} entries for a page of {limit}", items.len());
                return Err(failed(why, &after));
            }
            Ok(IndexEntries(items)) => items,
            Err(e) => return Err(failed(e.to_string(), &after)),
        };
        let done = items.len() < limit as usize;
        if let Some(last) = items.last() {
            after = Some(last.clone());
        }
        match sink {
            Some(tx) if !items.is_empty() => {
                if tx.send(items).await.is_err() {
                    return Err(Stopped::ClientGone);
                }
            }
            Some(_) => {}
            None => out.extend(items),
        }
        if done || query.max_results.is_some_and(|m| out.len() >= m) {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &[(&str, &[u8])], qs: &str) -> Result<Query, RiakError> {
        let path: Vec<(String, Vec<u8>)> = path
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        Query::parse(&path, &Params::parse(qs))
    }

    #[test]
    fn queries_are_read_as_riak_reads_them() {
        let q = parse(
            &[("index", b"f_int"), ("from", b"-10000"), ("to", b"0")],
            "return_terms=TRUE&max_results=2&stream=true",
        )
        .unwrap();
        assert_eq!(
            (q.from.as_ref(), q.to.as_ref()),
            (&b"-10000"[..], &b"0"[..])
        );
        assert!(q.return_terms && q.stream && !q.exact);
        assert_eq!(q.max_results, Some(2));
        let q = parse(&[("index", b"f_bin"), ("from", b"v")], "term_regex=.*l2").unwrap();
        assert!(q.exact && q.from == q.to);
        assert_eq!(q.term_regex.as_deref(), Some(".*l2"));
        // `$bucket` has no terms to return.
        let q = parse(
            &[("index", b"$bucket"), ("from", b"b")],
            "return_terms=true",
        )
        .unwrap();
        assert!(!q.return_terms);
    }

    #[test]
    fn bad_queries_are_400s_in_riaks_words() {
        for (path, qs, says) in [
            (
                &[("index", &b"field1"[..]), ("from", b"x")][..],
                "",
                "unknown_field_type",
            ),
            (
                &[("index", b"f_int"), ("from", b"ten")],
                "",
                "could_not_parse_integer",
            ),
            (
                &[("index", b"f_int"), ("from", b"1"), ("to", b"x")],
                "",
                "could_not_parse_integer",
            ),
            (
                &[("index", b"f_bin"), ("from", b"a")],
                "max_results=0",
                "positive integer",
            ),
            (
                &[("index", b"f_bin"), ("from", b"a")],
                "max_results=-3",
                "positive integer",
            ),
            (
                &[("index", b"f_bin"), ("from", b"a")],
                "return_terms=yes",
                "boolean",
            ),
            (
                &[("index", b"f_bin"), ("from", b"a")],
                "continuation=%21%21",
                "continuation",
            ),
            (
                &[("index", b"f_bin"), ("from", b"a")],
                "term_regex=%28",
                "regular expression",
            ),
            (
                &[("index", b"f_int"), ("from", b"1")],
                "term_regex=1",
                "integer queries",
            ),
        ] {
            let e = parse(path, qs).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{qs}");
            assert!(e.body.contains(says), "{qs}: {}", e.body);
        }
    }

    #[test]
    fn phaseless_index_jobs_are_the_only_mapreduce() {
        let job = json!({"inputs": {"bucket": "b", "index": "f_int", "key": 1337}, "query": []});
        let (btype, bucket, q) = mapred_query(&job).unwrap();
        assert_eq!(
            (btype, bucket.as_slice(), q.from.as_ref(), q.exact),
            (None, &b"b"[..], &b"1337"[..], true)
        );
        let job =
            json!({"inputs": {"bucket": ["maps", "b"], "index": "f_bin", "key": "a"}, "query": []});
        assert_eq!(mapred_query(&job).unwrap().0.as_deref(), Some("maps"));
        let job = json!({"inputs": {"bucket": ["default", "b"], "index": "f_bin", "start": "a", "end": "c"}, "query": []});
        let (btype, _, q) = mapred_query(&job).unwrap();
        assert_eq!(btype, None);
        assert_eq!(
            (q.from.as_ref(), q.to.as_ref(), q.exact),
            (&b"a"[..], &b"c"[..], false)
        );
        for bad in [
            json!({"inputs": "b", "query": []}),
            json!({"inputs": {"bucket": "b", "index": "f_bin", "key": "a"}, "query": [{"map": {}}]}),
            json!({"inputs": {"bucket": "b", "index": "f_bin"}, "query": []}),
            json!({"inputs": {"bucket": "b", "index": "nope", "key": "a"}, "query": []}),
        ] {
            assert_eq!(
                mapred_query(&bad).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }

    #[test]
    fn continuations_round_trip_and_refuse_garbage() {
        let c = encode_continuation(b"val2", b"key\xff2");
        assert_eq!(
            decode_continuation(&c).unwrap(),
            (Bytes::from_static(b"val2"), Bytes::from_static(b"key\xff2"))
        );
        let c = encode_continuation(b"", b"");
        assert_eq!(
            decode_continuation(&c).unwrap(),
            (Bytes::new(), Bytes::new())
        );
        for bad in ["", "!!", "AA==", &STANDARD.encode([1, 9, b'a'])] {
            assert!(decode_continuation(bad).is_err(), "{bad}");
        }
    }
}
