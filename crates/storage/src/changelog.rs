//! The change log: every version (dot) this node learns of, in the order of
//! the time its write was made, for the change feed and its consumers.
//!
//! ## What is logged, and when
//! Every change of a key's stored object or hint ([`Store::update`] and so
//! every merge, read repair, handoff and anti-entropy repair;
//! [`Store::merge_deferred`]; [`Store::put_hint_bounded`]) logs the live
//! versions of the new state whose dot the old state had not seen
//! ([`new_dots`]), **in the same RocksDB write batch** as the object: the
//! log never disagrees with the data, even after a crash. A dot this node
//! already knew (live or overwritten) is not logged again, so a repair that
//! brings nothing new writes nothing here. A deferred merge does not read
//! the stored object, so it logs every live dot it carries; the entry's key
//! is the same whoever writes it (see below), so a second write of it is a
//! harmless overwrite ("log and dedupe").
//!
//! ## Layout: one log per node, ordered by write time
//! Family `changes`, key `ts (u64 BE) ‖ h (u64 BE) ‖ key`, where `ts` is
//! the version's `modified_micros` (set once, by the node that took the
//! client's write, and carried with the value to every replica) and `h` is
//! an xxh3 of the key and the dot. An entry therefore has **the same key on
//! every node that logs it**: the logs of all replicas are subsets of one
//! totally ordered sequence, a position `(ts, h)` in one is a position in
//! all, and merging them is a sorted union where equal keys are one entry.
//! That is what makes a feed cursor valid on any node (`dynkv-quorum`'s
//! `feed` module holds the argument about completeness).
//!
//! Why not a log per partition with a version vector of dots as the
//! cursor: a DVVSet's dots are counted per key (`(n1, 3)` of key `a` and of
//! key `b` are different writes), so no per-partition vector of dots can
//! summarise what was delivered; and a feed for a prefix reads every
//! partition anyway, which one ordered range scan per node does at the
//! cost of one seek.
//!
//! Value: `format (1) ‖ partition (u32 BE) ‖ actor ‖ counter (u64 BE) ‖
//! context ‖ object`, strings as `u16 BE length ‖ bytes`, the context as
//! `u16 BE count` of `(actor, u64 BE)`, and the version itself as an
//! encoded one-sibling [`Object`] (versioned on its own). The context is
//! the causal context (join) of the state the entry was logged with.
//!
//! ## Retention
//! [`Store::trim_changes`] deletes the oldest entries, older than an age or
//! past a byte budget, and raises the log's **floor** in the same batch: the
//! time below which this log may be missing entries. A fresh database's
//! floor is its creation time (it holds nothing older, and a node whose
//! disk was wiped must not look like one that saw everything). Entries
//! below the floor are not logged. The floor is persisted in `meta`; the
//! byte count is kept in memory, rebuilt by one scan of the family at open.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dynkv_vclock::{Content, DvvSet, Object, VersionVector, decode_object, encode_version_into};
use rocksdb::{DB, Direction, IteratorMode, WriteBatch};
use xxhash_rust::xxh3::Xxh3;

use crate::{CF_CHANGES, CF_META, KeyRef, Result, Store, StoreError, cf};

/// Leading byte of a change-log value; bump it when the layout changes and
/// keep a decoder for each older version.
pub const CHANGE_FORMAT_V1: u8 = 1;

/// Meta key holding the log's floor (unix µs, u64 LE): entries older than
/// it may have been trimmed (or were never logged here).
pub(crate) const META_CHANGES_FLOOR: &str = "changes_floor_v1";

/// Bytes of a change key before the object key.
const POSITION_BYTES: usize = 16;

/// Most entries one trim deletes in one write batch.
const TRIM_BATCH: usize = 4096;

/// A position in the change log order: every entry at or before it.
/// `(ts, u64::MAX)` is "everything written at or before `ts`".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The write's time, unix microseconds.
    pub ts: u64,
    /// The entry's hash of key and dot: orders entries of one microsecond.
    pub h: u64,
}

impl Position {
    /// Everything logged at or before `ts`.
    pub fn end_of(ts: u64) -> Position {
        Position { ts, h: u64::MAX }
    }

    /// The first key of the log after this position.
    fn successor_key(self) -> Vec<u8> {
        // The next position: strictly after every key starting with this one.
        let (ts, h) = match self.h.checked_add(1) {
            Some(h) => (self.ts, h),
            None => (self.ts.saturating_add(1), 0),
        };
        let mut k = Vec::with_capacity(POSITION_BYTES);
        k.extend_from_slice(&ts.to_be_bytes());
        k.extend_from_slice(&h.to_be_bytes());
        k
    }
}

/// One logged version of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Where it sits in the log order.
    pub position: Position,
    /// The key.
    pub key: Bytes,
    /// The key's ring partition when it was logged.
    pub partition: u32,
    /// The dot's actor (the node that coordinated the write).
    pub actor: String,
    /// The dot's counter.
    pub counter: u64,
    /// The causal context of the state it was logged with.
    pub context: VersionVector,
    /// The version: a value or a tombstone.
    pub content: Content,
}

/// What one [`Store::scan_changes`] found.
#[derive(Clone, Debug)]
pub struct ChangeScan {
    /// The entries whose key starts with the prefix, in log order.
    pub changes: Vec<Change>,
    /// The log was read completely up to here: equal to the bound asked
    /// for, or earlier when the entry or scan budget ran out.
    pub reached: Position,
    /// The log's floor (unix µs): it may lack entries older than this.
    pub floor: u64,
}

/// What one [`Store::trim_changes`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Entries deleted.
    pub entries: u64,
    /// Their bytes (keys and values).
    pub bytes: u64,
    /// The floor after the trim.
    pub floor: u64,
}

/// The log's in-memory state, kept by the store.
#[derive(Default)]
pub(crate) struct ChangeLogState {
    /// Logging is on ([`crate::StoreConfig::change_log`]).
    pub enabled: bool,
    /// Bytes of keys and values in the family (about: an entry written
    /// twice is counted twice until the next open).
    pub bytes: std::sync::atomic::AtomicU64,
    /// The floor, as persisted.
    pub floor: std::sync::atomic::AtomicU64,
    /// Entries trimmed since open.
    pub trimmed: std::sync::atomic::AtomicU64,
}

/// Sees every change of a key's stored object that brought a version this
/// node had not seen: what wakes the watches of that key.
pub trait ChangeHook: Send + Sync {
    /// `key` holds a new version (called after the write, under its lock).
    fn changed(&self, key: &KeyRef<'_>);
}

/// The live versions of `next` whose dots `current` had not seen, as
/// `(actor, counter, content)`: what a change logs. Anonymous values (never
/// stored by dynkv) have no dot and are not logged.
pub fn new_dots<'a>(
    current: Option<&Object>,
    next: &'a Object,
) -> Vec<(&'a str, u64, &'a Content)> {
    let seen = current.map(DvvSet::join).unwrap_or_default();
    dots_above(&seen, next)
}

/// The live versions of `next` whose dots `seen` does not cover.
fn dots_above<'a>(seen: &VersionVector, next: &'a Object) -> Vec<(&'a str, u64, &'a Content)> {
    let mut out = Vec::new();
    for e in next.entries() {
        let known = seen.get(&e.actor);
        for (i, v) in e.values.iter().enumerate() {
            let counter = e.counter.saturating_sub(i as u64);
            if counter > known {
                out.push((e.actor.as_str(), counter, v));
            }
        }
    }
    out
}

/// The hash that orders entries within one microsecond: of the key and
/// the dot, so the same version has the same log key on every node.
pub fn change_hash(key: &[u8], actor: &str, counter: u64) -> u64 {
    let mut h = Xxh3::new();
    h.update(&(key.len() as u64).to_le_bytes());
    h.update(key);
    h.update(&(actor.len() as u64).to_le_bytes());
    h.update(actor.as_bytes());
    h.update(&counter.to_le_bytes());
    h.digest()
}

fn change_key(position: Position, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(POSITION_BYTES + key.len());
    k.extend_from_slice(&position.ts.to_be_bytes());
    k.extend_from_slice(&position.h.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn split_change_key(k: &[u8]) -> Option<(Position, &[u8])> {
    if k.len() < POSITION_BYTES {
        return None;
    }
    let ts = u64::from_be_bytes(k[0..8].try_into().ok()?);
    let h = u64::from_be_bytes(k[8..16].try_into().ok()?);
    Some((Position { ts, h }, &k[POSITION_BYTES..]))
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = s.len().min(u16::MAX as usize);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..len]);
}

fn encode_change_value(
    partition: u32,
    actor: &str,
    counter: u64,
    context: &VersionVector,
    content: &Content,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        40 + actor.len()
            + context
                .entries()
                .iter()
                .map(|(a, _)| a.len() + 10)
                .sum::<usize>()
            + content.value.len()
            + content.content_type.len(),
    );
    out.push(CHANGE_FORMAT_V1);
    out.extend_from_slice(&partition.to_be_bytes());
    put_str(&mut out, actor);
    out.extend_from_slice(&counter.to_be_bytes());
    let entries = context.entries();
    out.extend_from_slice(&(entries.len().min(u16::MAX as usize) as u16).to_be_bytes());
    for (a, n) in entries.iter().take(u16::MAX as usize) {
        put_str(&mut out, a);
        out.extend_from_slice(&n.to_be_bytes());
    }
    encode_version_into(content, &mut out);
    out
}

/// A cursor over a value's bytes; every read is checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn corrupt(why: &str) -> StoreError {
    StoreError::Corrupt(dynkv_vclock::ObjectDecodeError::Corrupt(format!(
        "change log entry: {why}"
    )))
}

/// Decodes a logged entry; anything malformed is [`StoreError::Corrupt`].
fn decode_change(k: &[u8], v: &[u8]) -> Result<Change> {
    let (position, key) = split_change_key(k).ok_or_else(|| corrupt("short key"))?;
    let (&format, body) = v.split_first().ok_or_else(|| corrupt("empty value"))?;
    if format != CHANGE_FORMAT_V1 {
        return Err(corrupt(&format!("unknown format {format}")));
    }
    let mut r = Reader(body);
    let bad = || corrupt("truncated value");
    let partition = r.u32().ok_or_else(bad)?;
    let actor = r.string().ok_or_else(bad)?;
    let counter = r.u64().ok_or_else(bad)?;
    let n = r.u16().ok_or_else(bad)? as usize;
    let mut pairs = Vec::with_capacity(n);
    for _ in 0..n {
        let a = r.string().ok_or_else(bad)?;
        pairs.push((a, r.u64().ok_or_else(bad)?));
    }
    let object = decode_object(r.0)?;
    let content = object
        .values()
        .first()
        .map(|c| (*c).clone())
        .ok_or_else(|| corrupt("no version"))?;
    Ok(Change {
        position,
        key: Bytes::copy_from_slice(key),
        partition,
        actor,
        counter,
        context: VersionVector::from_pairs(pairs),
        content,
    })
}

/// Unix microseconds now.
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros().min(u64::MAX as u128) as u64)
}

/// The floor and byte count of the log at open; a database without a floor
/// gets one now (persisted), so a wiped disk does not look like a node
/// that saw everything.
pub(crate) fn changes_at_open(db: &DB) -> Result<(u64, u64)> {
    let floor = match db.get_cf(cf(db, CF_META), META_CHANGES_FLOOR.as_bytes())? {
        Some(v) if v.len() == 8 => u64::from_le_bytes(v[..8].try_into().expect("8 bytes")),
        _ => {
            let now = now_micros();
            db.put_cf(
                cf(db, CF_META),
                META_CHANGES_FLOOR.as_bytes(),
                now.to_le_bytes(),
            )?;
            now
        }
    };
    let mut bytes = 0u64;
    let from = floor.to_be_bytes();
    for item in db.iterator_cf(
        cf(db, CF_CHANGES),
        IteratorMode::From(&from, Direction::Forward),
    ) {
        let (k, v) = item?;
        bytes += (k.len() + v.len()) as u64;
    }
    Ok((floor, bytes))
}

impl Store {
    /// Adds to `batch` the log entries of the versions `next` holds that
    /// the old state's clock `seen` does not cover (`None`: no old state,
    /// or a deferred merge: every live version), returning their bytes.
    /// Versions older than the log's floor are not logged.
    pub(crate) fn log_changes(
        &self,
        db: &DB,
        batch: &mut WriteBatch,
        key: &KeyRef<'_>,
        seen: Option<&VersionVector>,
        next: Option<&Object>,
    ) -> u64 {
        if !self.changes.enabled {
            return 0;
        }
        let Some(next) = next else { return 0 };
        let dots = match seen {
            Some(seen) => dots_above(seen, next),
            None => new_dots(None, next),
        };
        if dots.is_empty() {
            return 0;
        }
        let floor = self.changes.floor.load(Ordering::Acquire);
        let context = next.join();
        let family = cf(db, CF_CHANGES);
        let mut bytes = 0u64;
        for (actor, counter, content) in dots {
            if content.modified_micros < floor {
                continue;
            }
            let position = Position {
                ts: content.modified_micros,
                h: change_hash(key.key, actor, counter),
            };
            let k = change_key(position, key.key);
            let v = encode_change_value(key.partition, actor, counter, &context, content);
            bytes += (k.len() + v.len()) as u64;
            batch.put_cf(family, k, v);
        }
        bytes
    }

    /// Counts bytes a successful batch added to the log.
    pub(crate) fn logged(&self, bytes: u64) {
        if bytes > 0 {
            self.changes.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Tells the change hook that `key` holds a new version.
    pub(crate) fn notify_change(&self, key: &KeyRef<'_>) {
        if let Some(hook) = self.change_hook.load().as_deref() {
            hook.changed(key);
        }
    }

    /// Installs what is told of every new version of a key (the watch
    /// notifier); replaces any earlier one.
    pub fn set_change_hook(&self, hook: std::sync::Arc<dyn ChangeHook>) {
        self.change_hook.store(Some(std::sync::Arc::new(hook)));
    }

    /// True when writes log their versions ([`crate::StoreConfig::change_log`]).
    pub fn change_log_enabled(&self) -> bool {
        self.changes.enabled
    }

    /// The entries after `after` up to and including `upto`, whose key
    /// starts with `prefix`, in log order: at most `limit` of them (the
    /// entries of the last microsecond read are never split from each
    /// other by the limit unless one microsecond holds more than `limit`),
    /// reading at most `budget` entries in all. [`ChangeScan::reached`]
    /// says how far the log was read completely.
    pub fn scan_changes(
        &self,
        after: Position,
        upto: Position,
        prefix: &[u8],
        limit: usize,
        budget: usize,
    ) -> Result<ChangeScan> {
        let db = self.handle()?;
        let floor = self.changes.floor.load(Ordering::Acquire);
        let mut out = ChangeScan {
            changes: Vec::new(),
            reached: upto,
            floor,
        };
        if after >= upto {
            out.reached = after.max(upto);
            return Ok(out);
        }
        let start = after.successor_key();
        let mut read = 0usize;
        let mut last: Option<Position> = None;
        let iter = db.iterator_cf(
            cf(&db, CF_CHANGES),
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            let Some((position, key)) = split_change_key(&k) else {
                continue;
            };
            if position > upto {
                break;
            }
            // Stop between entries only: everything up to `last` is read.
            let full = out.changes.len() >= limit.max(1) || read >= budget.max(1);
            if full && let Some(prev) = last {
                out.reached = prev;
                return Ok(out);
            }
            read += 1;
            last = Some(position);
            if key.starts_with(prefix) {
                out.changes.push(decode_change(&k, &v)?);
            }
        }
        Ok(out)
    }

    /// Deletes the entries older than `max_age` and, oldest first, those
    /// past `max_bytes`, raising the floor past them in the same batch.
    pub fn trim_changes(&self, max_age: Duration, max_bytes: u64) -> Result<Trimmed> {
        let db = self.handle()?;
        self.writable()?;
        let cutoff = now_micros().saturating_sub(max_age.as_micros().min(u64::MAX as u128) as u64);
        let mut done = Trimmed {
            floor: self.changes.floor.load(Ordering::Acquire),
            ..Trimmed::default()
        };
        loop {
            let mut batch = WriteBatch::default();
            let mut n = 0usize;
            let mut bytes = 0u64;
            let mut floor = done.floor;
            let over =
                |b: u64| self.changes.bytes.load(Ordering::Relaxed).saturating_sub(b) > max_bytes;
            // From the floor: what is below it is deleted already.
            let from = done.floor.to_be_bytes();
            let start = IteratorMode::From(&from, Direction::Forward);
            for item in db.iterator_cf(cf(&db, CF_CHANGES), start) {
                let (k, v) = item?;
                let Some((position, _)) = split_change_key(&k) else {
                    batch.delete_cf(cf(&db, CF_CHANGES), &k);
                    continue;
                };
                if position.ts >= cutoff && !over(bytes) {
                    break;
                }
                if n >= TRIM_BATCH {
                    break;
                }
                batch.delete_cf(cf(&db, CF_CHANGES), &k);
                bytes += (k.len() + v.len()) as u64;
                n += 1;
                floor = floor.max(position.ts.saturating_add(1));
            }
            if n == 0 {
                return Ok(done);
            }
            batch.put_cf(
                cf(&db, CF_META),
                META_CHANGES_FLOOR.as_bytes(),
                floor.to_le_bytes(),
            );
            // The floor first: a write racing the trim then skips what
            // would be deleted anyway.
            self.changes.floor.fetch_max(floor, Ordering::AcqRel);
            db.write_opt(batch, &self.write_opts)
                .map_err(|e| self.write_failed(e))?;
            let _ = self
                .changes
                .bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some(b.saturating_sub(bytes))
                });
            self.changes.trimmed.fetch_add(n as u64, Ordering::Relaxed);
            done.entries += n as u64;
            done.bytes += bytes;
            done.floor = floor;
            if n < TRIM_BATCH {
                return Ok(done);
            }
        }
    }

    /// The log's floor (unix µs): it may lack entries older than this.
    pub fn change_floor(&self) -> u64 {
        self.changes.floor.load(Ordering::Acquire)
    }

    /// Bytes the log holds (about), and entries trimmed since open.
    pub fn change_log_stats(&self) -> (u64, u64) {
        (
            self.changes.bytes.load(Ordering::Relaxed),
            self.changes.trimmed.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(actor: &str, context: &VersionVector, local: &Object, v: &str, ts: u64) -> Object {
        DvvSet::update(
            context,
            local,
            actor,
            Content::value(v.to_string(), "t", ts),
        )
    }

    #[test]
    fn new_dots_are_the_live_versions_the_old_state_had_not_seen() {
        let a = write("n1", &VersionVector::new(), &Object::new(), "a", 1);
        let dots = new_dots(None, &a);
        assert_eq!(dots.len(), 1);
        assert_eq!((dots[0].0, dots[0].1), ("n1", 1));
        // A replica that already holds `a` sees nothing new in it.
        assert!(new_dots(Some(&a), &a).is_empty());
        // Two concurrent writes: only the other node's is new to `a`.
        let b = write("n2", &VersionVector::new(), &Object::new(), "b", 2);
        let both = DvvSet::sync(&a, &b);
        let dots = new_dots(Some(&a), &both);
        assert_eq!(dots.len(), 1);
        assert_eq!((dots[0].0, dots[0].1), ("n2", 1));
        // A replica that missed two writes of which the second replaced the
        // first learns only the live one.
        let c = write("n1", &a.join(), &a, "c", 3);
        let dots = new_dots(None, &c);
        assert_eq!(dots.len(), 1);
        assert_eq!((dots[0].0, dots[0].1), ("n1", 2));
        assert_eq!(dots[0].2.value, "c");
    }

    #[test]
    fn entries_round_trip_and_corrupt_ones_are_errors() {
        let ctx = VersionVector::from_pairs([("n1".to_string(), 4), ("n2".to_string(), 1)]);
        let content = Content::tombstone(77);
        let pos = Position { ts: 77, h: 5 };
        let k = change_key(pos, b"key");
        let v = encode_change_value(9, "n1", 4, &ctx, &content);
        let c = decode_change(&k, &v).unwrap();
        assert_eq!(c.position, pos);
        assert_eq!(&c.key[..], b"key");
        assert_eq!((c.partition, c.actor.as_str(), c.counter), (9, "n1", 4));
        assert_eq!(c.context, ctx);
        assert_eq!(c.content, content);
        for cut in 0..v.len() {
            assert!(decode_change(&k, &v[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_change(&k[..10], &v).is_err());
        let mut future = v.clone();
        future[0] = 9;
        assert!(decode_change(&k, &future).is_err());
    }

    fn open(dir: &std::path::Path) -> Store {
        Store::open(&crate::StoreConfig::new(dir), None).unwrap()
    }

    #[test]
    fn writes_log_each_new_version_once_and_scans_resume_after_a_position() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let t = now_micros() + 1_000;
        let user = KeyRef {
            partition: 1,
            hash: 7,
            key: b"user/a",
        };
        let a = write("n1", &VersionVector::new(), &Object::new(), "a", t);
        s.merge(&user, &a).unwrap();
        // The same state again (a repair that brings nothing): no entry.
        let (bytes_one, _) = s.change_log_stats();
        s.merge(&user, &a).unwrap();
        assert_eq!(s.change_log_stats().0, bytes_one);
        let b = write("n1", &a.join(), &a, "b", t + 5);
        s.merge(&user, &b).unwrap();
        let other = KeyRef {
            partition: 2,
            hash: 8,
            key: b"other",
        };
        s.merge(
            &other,
            &write("n2", &VersionVector::new(), &Object::new(), "o", t + 2),
        )
        .unwrap();
        // A hint logs the versions it brings too.
        let hinted = KeyRef {
            partition: 3,
            hash: 9,
            key: b"user/h",
        };
        let h = write("n3", &VersionVector::new(), &Object::new(), "h", t + 3);
        s.put_hint("n1", &hinted, &h).unwrap();
        s.put_hint("n1", &hinted, &h).unwrap();

        let everything = Position::end_of(u64::MAX);
        let scan = s
            .scan_changes(Position::default(), everything, b"user/", 100, 1000)
            .unwrap();
        let seen: Vec<(&[u8], u64, &[u8])> = scan
            .changes
            .iter()
            .map(|c| (&c.key[..], c.counter, &c.content.value[..]))
            .collect();
        assert_eq!(
            seen,
            vec![
                (&b"user/a"[..], 1, &b"a"[..]),
                (&b"user/h"[..], 1, &b"h"[..]),
                (&b"user/a"[..], 2, &b"b"[..])
            ]
        );
        assert_eq!(scan.reached, everything);
        assert_eq!(scan.changes[2].context, b.join());
        // Resuming after the first entry; and a limit stops between entries.
        let after = s
            .scan_changes(scan.changes[0].position, everything, b"user/", 100, 1000)
            .unwrap();
        assert_eq!(after.changes.len(), 2);
        let one = s
            .scan_changes(Position::default(), everything, b"", 1, 1000)
            .unwrap();
        assert_eq!(one.changes.len(), 1);
        assert_eq!(one.reached, one.changes[0].position);
        // Nothing past the bound.
        let bounded = s
            .scan_changes(Position::default(), Position::end_of(t + 2), b"", 100, 1000)
            .unwrap();
        assert_eq!(bounded.changes.len(), 2);

        // Trimming everything raises the floor past every entry; a reopen
        // keeps the floor and counts the bytes again.
        let floor_before = s.change_floor();
        assert!(floor_before < t);
        let trimmed = s.trim_changes(Duration::from_secs(3600), 0).unwrap();
        assert_eq!(trimmed.entries, 4);
        assert!(trimmed.floor > t + 5);
        assert_eq!(s.change_log_stats(), (0, 4));
        assert!(
            s.scan_changes(Position::default(), everything, b"", 100, 1000)
                .unwrap()
                .changes
                .is_empty()
        );
        // A version older than the floor is not logged.
        let late = KeyRef {
            partition: 4,
            hash: 10,
            key: b"user/late",
        };
        s.merge(
            &late,
            &write("n1", &VersionVector::new(), &Object::new(), "l", t),
        )
        .unwrap();
        assert_eq!(s.change_log_stats().0, 0);
        let floor = s.change_floor();
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.change_floor(), floor);
        assert_eq!(s.change_log_stats(), (0, 0));
    }

    #[test]
    fn the_change_hook_hears_every_change_and_a_store_without_the_log_writes_none() {
        struct Count(std::sync::atomic::AtomicU64);
        impl ChangeHook for Count {
            fn changed(&self, _: &KeyRef<'_>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::StoreConfig::new(dir.path());
        config.change_log = false;
        let s = Store::open(&config, None).unwrap();
        let hook = std::sync::Arc::new(Count(Default::default()));
        s.set_change_hook(hook.clone());
        let k = KeyRef {
            partition: 0,
            hash: 1,
            key: b"k",
        };
        let a = write(
            "n1",
            &VersionVector::new(),
            &Object::new(),
            "a",
            now_micros() + 10,
        );
        s.merge(&k, &a).unwrap();
        s.merge(&k, &a).unwrap();
        s.merge_deferred(&k, &a).unwrap();
        assert_eq!(hook.0.load(Ordering::Relaxed), 2);
        assert!(!s.change_log_enabled());
        assert_eq!(s.change_log_stats().0, 0);
    }

    #[test]
    fn positions_order_like_keys() {
        let a = Position { ts: 1, h: u64::MAX };
        let b = Position { ts: 2, h: 0 };
        assert!(a < b);
        assert!(change_key(a, b"zzz") < change_key(b, b""));
        let c = Position { ts: 2, h: 5 };
        assert!(c.successor_key() > change_key(c, b"\xff\xff"));
        assert!(c.successor_key() <= change_key(Position { ts: 2, h: 6 }, b""));
        assert!(a.successor_key() <= change_key(b, b""));
    }
}
