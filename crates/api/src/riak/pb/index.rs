//! Secondary index queries over protocol buffers, as `riak_kv_pb_index`
//! answers them: `RpbIndexReq` (25) → one `RpbIndexResp` (26), or with
//! `stream` a series of them, the last with `done` (and the continuation
//! of a full page).
//!
//! The query is checked by [`Query::build`] and run by [`index::gather`]
//! or [`index::stream`], the cores the HTTP handler calls, so paging,
//! `return_terms`, `term_regex`, timeouts and failures behave alike over
//! both transports. A continuation is the same opaque token as over HTTP
//! (its bytes), so a page fetched over one can be resumed over the other.
//! With `return_terms` the results are `RpbPair { key: term, value: key }`.
//! `return_body` and `cover_context` are not served (refused, rather than
//! ignored, so a client does not take keys for objects).

use dynkv_riakpb::messages::{RpbIndexReq, RpbIndexResp, RpbPair, rpb_index_req::IndexQueryType};
use prost::bytes::Bytes;
use tokio::sync::mpsc;

use super::super::RiakError;
use super::super::index::{self, Entry, Event, Options, Query, decode_continuation};
use super::super::request::Target;
use crate::AppState;

/// An index query's answer: one message, or a stream of them.
pub enum IndexAnswer {
    /// The whole answer.
    Whole(RpbIndexResp),
    /// A streamed answer: pull messages with [`IndexStream::next`].
    Stream(IndexStream),
}

/// A streamed answer being produced.
pub struct IndexStream {
    query: Query,
    events: mpsc::Receiver<Event>,
    continuation: Option<Bytes>,
    done: bool,
}

impl IndexStream {
    /// The next message to send: batches of results, then one with
    /// `done` (and the continuation, if any); a failure is an error and
    /// ends the stream. `None` once `done` was sent.
    pub async fn next(&mut self) -> Option<Result<RpbIndexResp, RiakError>> {
        if self.done {
            return None;
        }
        loop {
            match self.events.recv().await {
                Some(Event::Batch(entries)) => {
                    return Some(Ok(results(&self.query, &entries)));
                }
                Some(Event::Continuation(c)) => self.continuation = Some(Bytes::from(c)),
                Some(Event::Failed(f)) => {
                    self.done = true;
                    return Some(Err(f.into_error()));
                }
                None => {
                    self.done = true;
                    return Some(Ok(RpbIndexResp {
                        continuation: self.continuation.take(),
                        done: Some(true),
                        ..Default::default()
                    }));
                }
            }
        }
    }
}

/// The message of a batch of `(term, key name)` results.
fn results(query: &Query, entries: &[Entry]) -> RpbIndexResp {
    let mut r = RpbIndexResp::default();
    if query.return_terms {
        r.results = entries
            .iter()
            .map(|(term, key)| RpbPair {
                key: term.clone(),
                value: Some(key.clone()),
            })
            .collect();
    } else {
        r.keys = entries.iter().map(|(_, key)| key.clone()).collect();
    }
    r
}

/// The query an `RpbIndexReq` asks, checked as HTTP checks one.
pub fn query_of(req: &RpbIndexReq) -> Result<Query, RiakError> {
    if req.return_body == Some(true) || req.cover_context.is_some() {
        return Err(RiakError::bad_request(
            "Index queries with return_body or a cover context are not supported",
        ));
    }
    let (from, to) = match IndexQueryType::try_from(req.qtype) {
        Ok(IndexQueryType::Eq) => (req.key.clone().unwrap_or_default(), None),
        Ok(IndexQueryType::Range) => (
            req.range_min.clone().unwrap_or_default(),
            Some(req.range_max.clone().unwrap_or_default()),
        ),
        Err(_) => {
            return Err(RiakError::bad_request(format!(
                "Invalid query: unknown query type {}",
                req.qtype
            )));
        }
    };
    let continuation = match req.continuation.as_ref().filter(|c| !c.is_empty()) {
        Some(c) => {
            let s = std::str::from_utf8(c)
                .map_err(|_| RiakError::bad_request("Invalid continuation"))?;
            Some(decode_continuation(s)?)
        }
        None => None,
    };
    let term_regex = match &req.term_regex {
        Some(r) => Some(
            String::from_utf8(r.to_vec())
                .map_err(|_| RiakError::bad_request("Invalid term regular expression"))?,
        ),
        None => None,
    };
    let options = Options {
        return_terms: req.return_terms.unwrap_or(false),
        max_results: req.max_results.map(u64::from),
        continuation,
        term_regex,
        stream: req.stream.unwrap_or(false),
    };
    Query::build(req.index.to_vec(), from, to, options)
}

/// `RpbIndexReq`: runs the query over the bucket it names.
pub async fn query(state: &AppState, req: RpbIndexReq) -> Result<IndexAnswer, RiakError> {
    let t = Target::new(state, req.r#type.as_deref(), &req.bucket, None)?;
    let query = query_of(&req)?;
    let deadline = index::deadline(state, req.timeout.map(u64::from))?;
    let scope = index::scope_of(&t);
    if query.stream {
        let events = index::stream(state.clone(), query.clone(), scope, deadline);
        return Ok(IndexAnswer::Stream(IndexStream {
            query,
            events,
            continuation: None,
            done: false,
        }));
    }
    let page = index::gather(state, &query, &scope, deadline)
        .await
        .map_err(index::Failure::into_error)?;
    let mut r = results(&query, &page.results);
    r.continuation = page.continuation.map(Bytes::from);
    Ok(IndexAnswer::Whole(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::riak::index::encode_continuation;

    fn req(qtype: IndexQueryType) -> RpbIndexReq {
        RpbIndexReq {
            bucket: Bytes::from_static(b"b"),
            index: Bytes::from_static(b"f_bin"),
            qtype: qtype as i32,
            ..Default::default()
        }
    }

    #[test]
    fn requests_read_as_the_http_query_reads() {
        let mut r = req(IndexQueryType::Range);
        r.range_min = Some(Bytes::from_static(b"a"));
        r.range_max = Some(Bytes::from_static(b"c"));
        r.return_terms = Some(true);
        r.max_results = Some(5);
        r.continuation = Some(Bytes::from(encode_continuation(b"b", b"k1")));
        r.term_regex = Some(Bytes::from_static(b"^b"));
        let q = query_of(&r).unwrap();
        assert!(!q.exact && q.return_terms);
        assert_eq!((q.from.as_ref(), q.to.as_ref()), (&b"a"[..], &b"c"[..]));
        assert_eq!(q.max_results, Some(5));
        assert_eq!(
            q.continuation,
            Some((Bytes::from_static(b"b"), Bytes::from_static(b"k1")))
        );
        let mut r = req(IndexQueryType::Eq);
        r.key = Some(Bytes::from_static(b"x"));
        r.return_terms = Some(true);
        let q = query_of(&r).unwrap();
        assert!(
            q.exact && !q.return_terms,
            "an exact query returns no terms"
        );
    }

    #[test]
    fn bad_requests_are_refused_in_riaks_words() {
        let mut r = req(IndexQueryType::Eq);
        r.index = Bytes::from_static(b"field");
        assert!(
            query_of(&r)
                .unwrap_err()
                .body
                .contains("unknown_field_type")
        );
        let mut r = req(IndexQueryType::Eq);
        r.max_results = Some(0);
        assert!(query_of(&r).unwrap_err().body.contains("positive integer"));
        let mut r = req(IndexQueryType::Eq);
        r.continuation = Some(Bytes::from_static(b"!!"));
        assert!(query_of(&r).unwrap_err().body.contains("continuation"));
        let mut r = req(IndexQueryType::Eq);
        r.qtype = 7;
        assert!(query_of(&r).is_err());
        let mut r = req(IndexQueryType::Eq);
        r.return_body = Some(true);
        assert!(query_of(&r).is_err());
    }

    #[test]
    fn results_carry_terms_only_when_asked() {
        let entries = vec![(Bytes::from_static(b"t"), Bytes::from_static(b"k"))];
        let mut r = req(IndexQueryType::Range);
        r.range_min = Some(Bytes::from_static(b"a"));
        r.range_max = Some(Bytes::from_static(b"z"));
        let q = query_of(&r).unwrap();
        assert_eq!(results(&q, &entries).keys, vec![Bytes::from_static(b"k")]);
        r.return_terms = Some(true);
        let q = query_of(&r).unwrap();
        let got = results(&q, &entries);
        assert!(got.keys.is_empty());
        assert_eq!(got.results[0].key, Bytes::from_static(b"t"));
        assert_eq!(got.results[0].value, Some(Bytes::from_static(b"k")));
    }
}
