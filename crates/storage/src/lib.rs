//! # dynkv-storage: one node's durable state in RocksDB
//!
//! Everything a node keeps lives in one RocksDB database with four column
//! families, each laid out for the scans that use it:
//!
//! | column family | key | value | scanned by |
//! | --- | --- | --- | --- |
//! | `objects` | partition (u32 BE) ‖ key | encoded [`Object`] | ownership handoff, listing: one partition is one contiguous range |
//! | `digests` | key hash (u64 BE) ‖ key | object digest (u64 LE) | anti-entropy: a Merkle leaf is a contiguous hash range |
//! | `hints` | owner len (u8) ‖ owner ‖ partition ‖ key | hint format byte ‖ created (unix ms, u64 LE) ‖ encoded [`Object`] | hinted handoff, per target node |
//! | `meta` | name | bytes | node identity, ring state |
//!
//! The object and its digest are written in one `WriteBatch`, so the digest
//! index never disagrees with the data after a crash, and anti-entropy can
//! rebuild its trees from the small `digests` family instead of reading
//! every value.
//!
//! ## Concurrent writers to one key
//! Every change to a key is a read-modify-write (`sync` the incoming object
//! into the stored one). [`Store::update`] serialises those per key with a
//! fixed array of striped mutexes chosen by key hash, held only for the
//! read, the merge and the write. We chose striped locks over a RocksDB merge
//! operator because the coordinator needs the merged object back at once (to
//! replicate it and to answer with its context), and a merge operator would
//! make every read pay for merging; the stripes are bounded memory and two
//! keys rarely share one.
//!
//! ## Durability
//! The write-ahead log is always on. By default a write returns once RocksDB
//! has appended it to the WAL in the operating system's page cache: an
//! acknowledged write survives a `kill -9` of the process (the kernel still
//! holds it) but not, by itself, a power loss. Two settings bound what a
//! power loss or kernel crash can take:
//!
//! - [`StoreConfig::sync_writes`]: every write also `fsync`s the WAL before
//!   returning. A write that returned survives power loss, at the cost of a
//!   disk flush per write.
//! - A periodic WAL sync ([`Store::start_wal_sync`], the node's
//!   `storage.sync_interval_ms`, as Cassandra's periodic commitlog): a
//!   thread `fsync`s the WAL every interval T. A power loss then takes at
//!   most the writes acknowledged since the start of the last successful
//!   sync, about the last T (plus the duration of one sync);
//!   [`Store::last_wal_sync`] says when that was.
//!
//! With neither, nothing bounds what a power loss takes except the kernel's
//! own writeback. [`Store::flush`] persists memtables on graceful shutdown.
//!
//! The calls are blocking (RocksDB is synchronous). They take microseconds
//! without `sync_writes`; with it, async callers should move them off the
//! runtime's worker threads.
//!
//! ## Hints
//! A hint value starts with a format byte. [`HINT_FORMAT_V2`] values carry
//! the hint's creation time (unix ms, u64 LE) before the encoded object;
//! merging a later write into a hint keeps its creation time, so a hint is as
//! old as the oldest write it holds. A value that starts with anything else
//! is a bare encoded object, the format hints were written in before: it is
//! read as a hint created when the store was opened, and rewritten in the
//! new format the next time it changes. The number of hints and the bytes
//! they hold (stored key plus stored value, before compression) are kept in
//! memory, rebuilt by one scan of the `hints` family at open, and bound what
//! [`Store::put_hint_bounded`] accepts.
//!
//! ## Observing writes
//! A [`WriteListener`] sees every digest change (old and new) under the key's
//! lock, in order: anti-entropy keeps its Merkle trees current from it
//! without ever rescanning a partition.

pub mod namespace;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dynkv_vclock::{DvvSet, Object, ObjectDecodeError, decode_object, encode_object};
use parking_lot::Mutex;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options,
    ReadOptions, WriteBatch, WriteOptions,
};

const CF_OBJECTS: &str = "objects";
const CF_DIGESTS: &str = "digests";
const CF_HINTS: &str = "hints";
const CF_META: &str = "meta";

/// Number of key-lock stripes: enough that unrelated hot keys rarely
/// contend, small enough to be a fixed 32 KiB.
const LOCK_STRIPES: usize = 4096;

/// Meta key holding the on-disk layout version, checked at open.
const META_FORMAT: &str = "storage_format";
/// The layout version this code writes.
pub const STORAGE_FORMAT_V1: u8 = 1;

/// Leading byte of a hint value that carries its creation time:
/// `HINT_FORMAT_V2 ‖ created unix ms (u64 LE) ‖ encoded object`. Any other
/// leading byte is a bare encoded object (hint format 1, whose first byte is
/// the object format, 1 today); object formats stay far below this value.
pub const HINT_FORMAT_V2: u8 = 0xf2;
const _: () = assert!(dynkv_vclock::object::OBJECT_FORMAT_V1 != HINT_FORMAT_V2);

/// Storage failures. RocksDB errors are I/O problems the caller reports as a
/// failed replica; decode errors mean corruption and are never silently
/// treated as "not found".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB refused an operation.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A stored object could not be decoded.
    #[error("stored object is corrupt: {0}")]
    Corrupt(#[from] ObjectDecodeError),
    /// The data directory was written by an incompatible version.
    #[error("data directory has storage format {found}, this build reads {expected}")]
    Format {
        /// Format found on disk.
        found: u8,
        /// Format this build writes.
        expected: u8,
    },
}

/// Result alias for storage calls.
pub type Result<T> = std::result::Result<T, StoreError>;

/// How to open the store. Every field is a node config tunable.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Directory of the RocksDB database (created if missing).
    pub path: PathBuf,
    /// `fsync` the WAL on every write (survives power loss, slower).
    pub sync_writes: bool,
    /// Shared LRU block cache size in bytes.
    pub block_cache_bytes: usize,
    /// Memtable size per column family in bytes before a flush.
    pub write_buffer_bytes: usize,
    /// Bytes per second flushes and compactions may write (0: unlimited).
    pub background_bytes_per_sec: u64,
}

impl StoreConfig {
    /// Defaults suitable for a development node under `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            path: path.into(),
            sync_writes: false,
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 32 << 20,
            background_bytes_per_sec: 0,
        }
    }
}

/// Where a key lives: its ring partition and hash are computed once by the
/// caller (the ring owns the hash function) and used for both layouts.
#[derive(Clone, Copy, Debug)]
pub struct KeyRef<'a> {
    /// Ring partition of the key.
    pub partition: u32,
    /// The ring's 64-bit hash of the key.
    pub hash: u64,
    /// The key bytes.
    pub key: &'a [u8],
}

/// Sees every change of a key's digest, in order, under the key's lock.
pub trait WriteListener: Send + Sync {
    /// `old`/`new` are `None` when the key was absent / was removed.
    fn digest_changed(&self, key: &KeyRef<'_>, old: Option<u64>, new: Option<u64>);
}

/// What [`Store::update`] did.
#[derive(Clone, Debug)]
pub struct Updated {
    /// The stored object after the update (`None` if the key is absent).
    pub object: Option<Object>,
    /// True when the stored state changed (and was written).
    pub changed: bool,
}

/// A durable hint: an object meant for `owner`, held here while it is down.
#[derive(Clone, Debug)]
pub struct Hint {
    /// The node the object belongs to.
    pub owner: String,
    /// The key's partition.
    pub partition: u32,
    /// The key.
    pub key: Vec<u8>,
    /// The hinted state (merged with every later hint for the same key).
    pub object: Object,
    /// When the hint was created: the oldest write it holds (later writes
    /// merged into it keep this time). Hints written before creation times
    /// were recorded read as created when the store was opened.
    pub created: SystemTime,
}

/// Bounds on the hints a node keeps, checked by [`Store::put_hint_bounded`].
#[derive(Clone, Copy, Debug)]
pub struct HintLimits {
    /// Most hints held (across all owners).
    pub max_hints: u64,
    /// Most bytes held by hints (stored key plus stored value).
    pub max_bytes: u64,
}

impl HintLimits {
    /// No bound at all.
    pub const NONE: HintLimits = HintLimits {
        max_hints: u64::MAX,
        max_bytes: u64::MAX,
    };
}

/// Which bound refused a hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HintBound {
    /// [`HintLimits::max_hints`].
    Count,
    /// [`HintLimits::max_bytes`].
    Bytes,
}

/// What [`Store::put_hint_bounded`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HintPut {
    /// A new hint was stored.
    Created,
    /// The object was merged into the hint already kept for that owner and key.
    Merged,
    /// Nothing was stored: keeping it would pass this bound.
    Refused(HintBound),
}

/// One node's RocksDB database. Cheap to share behind an `Arc`.
pub struct Store {
    db: DB,
    locks: Box<[Mutex<()>]>,
    write_opts: WriteOptions,
    hint_count: AtomicU64,
    hint_bytes: AtomicU64,
    /// Unix ms at open: the creation time of hints stored without one.
    opened_ms: u64,
    /// Unix ms at the start of the last successful WAL sync (0: none yet).
    wal_synced_ms: AtomicU64,
    wal_syncs: AtomicU64,
    wal_sync_failures: AtomicU64,
    listener: Option<Arc<dyn WriteListener>>,
}

impl Store {
    /// Opens (or creates) the database. `listener` sees every digest change.
    pub fn open(config: &StoreConfig, listener: Option<Arc<dyn WriteListener>>) -> Result<Store> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(
            std::thread::available_parallelism().map_or(2, |n| n.get() as i32),
        );
        db_opts.set_max_background_jobs(2);
        // Compactions run at the lowest CPU priority: they can wait, and on
        // a small machine several replicas compact the same data at the same
        // moment, which otherwise stalls client requests for a few hundred
        // milliseconds. Flushes keep normal priority so writes never stall
        // behind a full memtable.
        let mut env = rocksdb::Env::new()?;
        env.lower_thread_pool_cpu_priority();
        db_opts.set_env(&env);
        db_opts.set_bytes_per_sync(1 << 20);
        if config.background_bytes_per_sec > 0 {
            // Flushes and compactions share the machine with requests: a
            // rate limit spreads their bursts out instead of letting them
            // take every core for seconds.
            db_opts.set_ratelimiter(config.background_bytes_per_sec as i64, 100_000, 10);
        }

        let cache = Cache::new_lru_cache(config.block_cache_bytes)?;
        let cf_opts = |bloom: bool, prefix: Option<usize>| {
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_cache_index_and_filter_blocks(true);
            if bloom {
                table.set_bloom_filter(10.0, false);
            }
            let mut o = Options::default();
            o.set_block_based_table_factory(&table);
            o.set_write_buffer_size(config.write_buffer_bytes);
            if bloom {
                // A bloom filter over the memtable's keys: a point read of a
                // key that is not in the memtable skips the skiplist search
                // (it showed in profiles of the read path).
                o.set_memtable_whole_key_filtering(true);
                o.set_memtable_prefix_bloom_ratio(0.05);
            }
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            if let Some(len) = prefix {
                o.set_prefix_extractor(rocksdb::SliceTransform::create_fixed_prefix(len));
            }
            o
        };
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_OBJECTS, cf_opts(true, None)),
            ColumnFamilyDescriptor::new(CF_DIGESTS, cf_opts(false, None)),
            ColumnFamilyDescriptor::new(CF_HINTS, cf_opts(false, None)),
            ColumnFamilyDescriptor::new(CF_META, cf_opts(false, None)),
        ];
        let db = DB::open_cf_descriptors(&db_opts, &config.path, cfs)?;
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(config.sync_writes);
        let store = Store {
            db,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            write_opts,
            hint_count: AtomicU64::new(0),
            hint_bytes: AtomicU64::new(0),
            opened_ms: unix_ms(SystemTime::now()),
            wal_synced_ms: AtomicU64::new(0),
            wal_syncs: AtomicU64::new(0),
            wal_sync_failures: AtomicU64::new(0),
            listener,
        };
        store.check_format()?;
        let (hints, bytes) = store.hint_totals()?;
        store.hint_count.store(hints, Ordering::Relaxed);
        store.hint_bytes.store(bytes, Ordering::Relaxed);
        Ok(store)
    }

    fn check_format(&self) -> Result<()> {
        match self.get_meta(META_FORMAT)? {
            None => self.put_meta(META_FORMAT, &[STORAGE_FORMAT_V1]),
            Some(v) if v.as_slice() == [STORAGE_FORMAT_V1] => Ok(()),
            Some(v) => Err(StoreError::Format {
                found: v.first().copied().unwrap_or(0),
                expected: STORAGE_FORMAT_V1,
            }),
        }
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }

    /// Number of hints and bytes they hold, by one scan (at open).
    fn hint_totals(&self) -> Result<(u64, u64)> {
        let (mut n, mut bytes) = (0, 0);
        for item in self.db.iterator_cf(self.cf(CF_HINTS), IteratorMode::Start) {
            let (k, v) = item?;
            n += 1;
            bytes += (k.len() + v.len()) as u64;
        }
        Ok((n, bytes))
    }

    /// Reads a key's stored object.
    pub fn get(&self, key: &KeyRef<'_>) -> Result<Option<Object>> {
        match self
            .db
            .get_pinned_cf(self.cf(CF_OBJECTS), object_key(key.partition, key.key))?
        {
            Some(bytes) => Ok(Some(decode_object(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Atomically replaces a key's object by `f(current)` under the key's
    /// lock. Returning `None` removes the key. Writes only if the state
    /// changed; the digest index is updated in the same batch.
    pub fn update<F>(&self, key: &KeyRef<'_>, f: F) -> Result<Updated>
    where
        F: FnOnce(Option<Object>) -> Option<Object>,
    {
        let _guard = self.locks[(key.hash as usize) % LOCK_STRIPES].lock();
        let current = self.get(key)?;
        let old_digest = current.as_ref().map(|o| o.digest());
        let next = f(current);
        let new_digest = next.as_ref().map(|o| o.digest());
        if old_digest == new_digest {
            return Ok(Updated {
                object: next,
                changed: false,
            });
        }
        let okey = object_key(key.partition, key.key);
        let dkey = digest_key(key.hash, key.key);
        let mut batch = WriteBatch::default();
        match (&next, new_digest) {
            (Some(obj), Some(d)) => {
                batch.put_cf(self.cf(CF_OBJECTS), &okey, encode_object(obj));
                batch.put_cf(self.cf(CF_DIGESTS), &dkey, d.to_le_bytes());
            }
            _ => {
                batch.delete_cf(self.cf(CF_OBJECTS), &okey);
                batch.delete_cf(self.cf(CF_DIGESTS), &dkey);
            }
        }
        self.db.write_opt(batch, &self.write_opts)?;
        if let Some(l) = &self.listener {
            l.digest_changed(key, old_digest, new_digest);
        }
        Ok(Updated {
            object: next,
            changed: true,
        })
    }

    /// Merges an object that came from another replica into the stored one
    /// (`sync`): what a replica does on replicate, read repair, handoff and
    /// anti-entropy.
    pub fn merge(&self, key: &KeyRef<'_>, incoming: &Object) -> Result<Updated> {
        self.update(key, |current| match current {
            Some(cur) => Some(DvvSet::sync(&cur, incoming)),
            None => Some(incoming.clone()),
        })
    }

    /// Removes a key outright (tombstone reaping only: a normal DELETE is a
    /// tombstone write through [`Store::update`]).
    pub fn remove(&self, key: &KeyRef<'_>) -> Result<Updated> {
        self.update(key, |_| None)
    }

    /// Up to `limit` objects of one partition in key order, starting after
    /// `after`: the resumable scan ownership handoff streams.
    pub fn scan_partition(
        &self,
        partition: u32,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Object)>> {
        let mut out = Vec::new();
        for item in self.partition_objects(partition, &[], after).take(limit) {
            let (k, v) = item?;
            out.push((k[4..].to_vec(), decode_object(&v)?));
        }
        Ok(out)
    }

    /// Up to `limit` keys (not values) of one partition that start with
    /// `prefix`, in key order, after `after` (exclusive), skipping keys whose
    /// every sibling is a tombstone: the per-partition step of a key listing
    /// (Riak's list-keys over a covering set of partitions).
    pub fn scan_keys(
        &self,
        partition: u32,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for item in self.partition_objects(partition, prefix, after) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if decode_object(&v)?.is_deleted() {
                continue;
            }
            out.push(k[4..].to_vec());
        }
        Ok(out)
    }

    /// One partition's stored objects whose keys start with `prefix`, in key
    /// order, from just after `after` (exclusive) or from the first: the walk
    /// under the per-partition scans. Yields (stored key, encoded object).
    fn partition_objects(
        &self,
        partition: u32,
        prefix: &[u8],
        after: Option<&[u8]>,
    ) -> impl Iterator<Item = Result<RawEntry>> + '_ {
        let lower = object_key(partition, prefix);
        let start = match after {
            Some(k) => {
                let mut s = object_key(partition, k);
                s.push(0);
                s.max(lower.clone())
            }
            None => lower.clone(),
        };
        let mut opts = ReadOptions::default();
        bound_to_prefix(&mut opts, &lower);
        self.db
            .iterator_cf_opt(
                self.cf(CF_OBJECTS),
                opts,
                IteratorMode::From(&start, Direction::Forward),
            )
            .map(|item| item.map_err(StoreError::from))
            // The upper bound is unset when the prefix is all 0xff bytes.
            .take_while(move |item| !matches!(item, Ok((k, _)) if !k.starts_with(&lower)))
    }

    /// Up to `limit` distinct namespaces (see [`namespace`]) that hold at
    /// least one live key in one partition, in order, after the namespace
    /// `after` (exclusive). Seeks past each namespace found, so the cost
    /// follows the number of namespaces, not of keys (except keys that are
    /// only tombstones, which are stepped over).
    pub fn scan_namespaces(
        &self,
        partition: u32,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let lower = object_key(partition, &[namespace::TAG]);
        let start = match after {
            Some(ns) => match namespace::successor(&namespace::prefix(ns)) {
                Some(next) => object_key(partition, &next),
                None => return Ok(Vec::new()),
            },
            None => lower.clone(),
        };
        let mut opts = ReadOptions::default();
        bound_to_prefix(&mut opts, &lower);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_OBJECTS), opts);
        it.seek(&start);
        let mut out = Vec::new();
        while out.len() < limit && it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let ns = k
                .get(4..)
                .and_then(namespace::split)
                .map(|(ns, _)| ns.to_vec());
            let Some(ns) = ns else {
                it.next();
                continue;
            };
            if decode_object(v)?.is_deleted() {
                it.next();
                continue;
            }
            let next = namespace::successor(&namespace::prefix(&ns));
            out.push(ns);
            match next {
                Some(next) => it.seek(object_key(partition, &next)),
                None => break,
            }
        }
        it.status()?;
        Ok(out)
    }

    /// Every `(hash, key, digest)` with `lo <= hash <= hi`, in hash order:
    /// one Merkle leaf, or a whole partition when rebuilding a tree.
    pub fn scan_digests(&self, lo: u64, hi: u64) -> Result<Vec<(u64, Vec<u8>, u64)>> {
        let mut out = Vec::new();
        self.for_each_digest(lo, hi, |h, k, d| out.push((h, k.to_vec(), d)))?;
        Ok(out)
    }

    /// Streaming form of [`Store::scan_digests`], without collecting.
    pub fn for_each_digest<F: FnMut(u64, &[u8], u64)>(
        &self,
        lo: u64,
        hi: u64,
        mut f: F,
    ) -> Result<()> {
        let start = lo.to_be_bytes();
        let mut opts = ReadOptions::default();
        if let Some(next) = hi.checked_add(1) {
            opts.set_iterate_upper_bound(next.to_be_bytes().to_vec());
        }
        for item in self.db.iterator_cf_opt(
            self.cf(CF_DIGESTS),
            opts,
            IteratorMode::From(&start, Direction::Forward),
        ) {
            let (k, v) = item?;
            if k.len() < 8 || v.len() != 8 {
                continue;
            }
            let hash = u64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
            let digest = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
            f(hash, &k[8..], digest);
        }
        Ok(())
    }

    /// Stores (or merges into) the hint for `owner` and this key, with no
    /// bound. Returns true when this created a new hint rather than merging
    /// into one.
    pub fn put_hint(&self, owner: &str, key: &KeyRef<'_>, object: &Object) -> Result<bool> {
        Ok(self.put_hint_bounded(owner, key, object, HintLimits::NONE)? == HintPut::Created)
    }

    /// Stores (or merges into) the hint for `owner` and this key, unless
    /// that would pass a bound of `limits`: a new hint when
    /// [`Store::hint_count`] is at `max_hints`, or any hint whose growth
    /// would take [`Store::hint_bytes`] past `max_bytes` (a merge that does
    /// not grow the hint is always taken). The check is exact for one
    /// writer; hints stored at the same instant for other keys may pass a
    /// bound by their own size.
    pub fn put_hint_bounded(
        &self,
        owner: &str,
        key: &KeyRef<'_>,
        object: &Object,
        limits: HintLimits,
    ) -> Result<HintPut> {
        let _guard = self.locks[(key.hash as usize) % LOCK_STRIPES].lock();
        let hkey = hint_key(owner, key.partition, key.key);
        let cf = self.cf(CF_HINTS);
        let existing = match self.db.get_pinned_cf(cf, &hkey)? {
            Some(bytes) => Some((bytes.len(), self.decode_hint_value(&bytes)?)),
            None => None,
        };
        if existing.is_none() && self.hint_count() >= limits.max_hints {
            return Ok(HintPut::Refused(HintBound::Count));
        }
        let existed = existing.is_some();
        // Sizes as accounted in `hint_bytes`: stored key plus stored value.
        let (old_size, created_ms, merged) = match existing {
            Some((len, (created, e))) => (hkey.len() + len, created, DvvSet::sync(&e, object)),
            None => (0, unix_ms(SystemTime::now()), object.clone()),
        };
        let value = encode_hint_value(&merged, created_ms);
        let (old_size, new_size) = (old_size as u64, (hkey.len() + value.len()) as u64);
        if new_size > old_size
            && self.hint_bytes().saturating_add(new_size - old_size) > limits.max_bytes
        {
            return Ok(HintPut::Refused(HintBound::Bytes));
        }
        self.db.put_cf_opt(cf, &hkey, value, &self.write_opts)?;
        // Add before subtracting: the total never wraps below zero.
        self.hint_bytes.fetch_add(new_size, Ordering::Relaxed);
        self.hint_bytes.fetch_sub(old_size, Ordering::Relaxed);
        if existed {
            Ok(HintPut::Merged)
        } else {
            self.hint_count.fetch_add(1, Ordering::Relaxed);
            Ok(HintPut::Created)
        }
    }

    /// The hint kept for `owner` and this key, if any.
    pub fn get_hint(&self, owner: &str, key: &KeyRef<'_>) -> Result<Option<Object>> {
        match self
            .db
            .get_pinned_cf(self.cf(CF_HINTS), hint_key(owner, key.partition, key.key))?
        {
            Some(bytes) => Ok(Some(self.decode_hint_value(&bytes)?.1)),
            None => Ok(None),
        }
    }

    /// A stored hint value: (created unix ms, object). A value in the
    /// format before creation times reads as created at open.
    fn decode_hint_value(&self, bytes: &[u8]) -> Result<(u64, Object)> {
        match bytes.split_first() {
            Some((&HINT_FORMAT_V2, rest)) if rest.len() >= 8 => {
                let created = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
                Ok((created, decode_object(&rest[8..])?))
            }
            Some((&HINT_FORMAT_V2, _)) => Err(StoreError::Corrupt(ObjectDecodeError::Corrupt(
                "hint value shorter than its header".into(),
            ))),
            _ => Ok((self.opened_ms, decode_object(bytes)?)),
        }
    }

    /// Up to `limit` hints in (owner, partition, key) order, starting after
    /// the hint `after` (owner, partition, key) and restricted to `owner` if given.
    pub fn hints(
        &self,
        owner: Option<&str>,
        after: Option<(&str, u32, &[u8])>,
        limit: usize,
    ) -> Result<Vec<Hint>> {
        let start = match (after, owner) {
            (Some((o, p, k)), _) => {
                let mut s = hint_key(o, p, k);
                s.push(0);
                s
            }
            (None, Some(o)) => hint_owner_prefix(o),
            (None, None) => Vec::new(),
        };
        let mut opts = ReadOptions::default();
        if let Some(o) = owner {
            bound_to_prefix(&mut opts, &hint_owner_prefix(o));
        }
        let mut out = Vec::new();
        for item in self.db.iterator_cf_opt(
            self.cf(CF_HINTS),
            opts,
            IteratorMode::From(&start, Direction::Forward),
        ) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let Some((o, partition, key)) = parse_hint_key(&k) else {
                continue;
            };
            let (created, object) = self.decode_hint_value(&v)?;
            out.push(Hint {
                owner: o,
                partition,
                key,
                object,
                created: from_unix_ms(created),
            });
        }
        Ok(out)
    }

    /// Deletes a delivered hint, but only if it still holds exactly what was
    /// delivered (`delivered_digest`): a hint merged with a newer write
    /// meanwhile stays for the next round. Returns true if deleted.
    pub fn remove_hint_if_unchanged(
        &self,
        owner: &str,
        key: &KeyRef<'_>,
        delivered_digest: u64,
    ) -> Result<bool> {
        let _guard = self.locks[(key.hash as usize) % LOCK_STRIPES].lock();
        let hkey = hint_key(owner, key.partition, key.key);
        let cf = self.cf(CF_HINTS);
        let Some(bytes) = self.db.get_pinned_cf(cf, &hkey)? else {
            return Ok(false);
        };
        if self.decode_hint_value(&bytes)?.1.digest() != delivered_digest {
            return Ok(false);
        }
        let size = (hkey.len() + bytes.len()) as u64;
        drop(bytes);
        self.db.delete_cf_opt(cf, &hkey, &self.write_opts)?;
        self.hint_count.fetch_sub(1, Ordering::Relaxed);
        self.hint_bytes.fetch_sub(size, Ordering::Relaxed);
        Ok(true)
    }

    /// Deletes the hint for `owner` and this key if it was created at or
    /// before `cutoff` (an expired hint; merges keep the creation time, so a
    /// hint that was expired stays so). Returns true if deleted.
    pub fn remove_hint_created_before(
        &self,
        owner: &str,
        key: &KeyRef<'_>,
        cutoff: SystemTime,
    ) -> Result<bool> {
        let _guard = self.locks[(key.hash as usize) % LOCK_STRIPES].lock();
        let hkey = hint_key(owner, key.partition, key.key);
        let cf = self.cf(CF_HINTS);
        let Some(bytes) = self.db.get_pinned_cf(cf, &hkey)? else {
            return Ok(false);
        };
        if self.decode_hint_value(&bytes)?.0 > unix_ms(cutoff) {
            return Ok(false);
        }
        let size = (hkey.len() + bytes.len()) as u64;
        drop(bytes);
        self.db.delete_cf_opt(cf, &hkey, &self.write_opts)?;
        self.hint_count.fetch_sub(1, Ordering::Relaxed);
        self.hint_bytes.fetch_sub(size, Ordering::Relaxed);
        Ok(true)
    }

    /// Whether a hint for `owner` and this key is kept (no decoding).
    pub fn has_hint(&self, owner: &str, key: &KeyRef<'_>) -> Result<bool> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_HINTS), hint_key(owner, key.partition, key.key))?
            .is_some())
    }

    /// Every owner some hint is kept for, in key order. Seeks past each
    /// owner found, so the cost follows the number of owners, not of hints.
    pub fn hint_owners(&self) -> Result<Vec<String>> {
        let mut it = self.db.raw_iterator_cf(self.cf(CF_HINTS));
        it.seek_to_first();
        let mut out = Vec::new();
        while it.valid() {
            let Some(k) = it.key() else { break };
            let Some((owner, _, _)) = parse_hint_key(k) else {
                it.next();
                continue;
            };
            let mut next = hint_owner_prefix(&owner);
            out.push(owner);
            // The first key after every key of this owner: the prefix with
            // its last byte incremented (the length byte never is 0xff).
            match next.iter().rposition(|b| *b < 0xff) {
                Some(i) => {
                    next[i] += 1;
                    next.truncate(i + 1);
                    it.seek(&next);
                }
                None => break,
            }
        }
        it.status()?;
        Ok(out)
    }

    /// Compacts the `objects` and `digests` column families over their whole
    /// range, so that deleted keys (reaped tombstones) stop taking disk
    /// space now rather than whenever RocksDB compacts those files on its
    /// own. Blocking; takes as long as rewriting the live data.
    pub fn compact(&self) {
        for cf in [CF_OBJECTS, CF_DIGESTS] {
            self.db
                .compact_range_cf(self.cf(cf), None::<&[u8]>, None::<&[u8]>);
        }
    }

    /// Bytes of the live SST files of every column family (RocksDB's
    /// `rocksdb.live-sst-files-size`; the write-ahead log is not counted).
    pub fn sst_bytes(&self) -> u64 {
        [CF_OBJECTS, CF_DIGESTS, CF_HINTS, CF_META]
            .iter()
            .filter_map(|cf| {
                self.db
                    .property_int_value_cf(self.cf(cf), "rocksdb.live-sst-files-size")
                    .ok()
                    .flatten()
            })
            .sum()
    }

    /// Hints held, across all owners (kept in memory; exact).
    pub fn hint_count(&self) -> u64 {
        self.hint_count.load(Ordering::Relaxed)
    }

    /// Bytes held by hints, across all owners: stored keys plus stored
    /// values, before RocksDB's compression (kept in memory; exact).
    pub fn hint_bytes(&self) -> u64 {
        self.hint_bytes.load(Ordering::Relaxed)
    }

    /// Pending hints per owner (scans the hints family: for admin views).
    pub fn hint_counts_by_owner(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let mut out = std::collections::BTreeMap::new();
        for item in self.db.iterator_cf(self.cf(CF_HINTS), IteratorMode::Start) {
            let (k, _) = item?;
            if let Some((o, _, _)) = parse_hint_key(&k) {
                *out.entry(o).or_insert(0) += 1;
            }
        }
        Ok(out)
    }

    /// Reads a small named value (node identity, ring state).
    pub fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(CF_META), name.as_bytes())?)
    }

    /// Durably writes a small named value (always synced: it is rare and
    /// describes the node itself).
    pub fn put_meta(&self, name: &str, value: &[u8]) -> Result<()> {
        let mut o = WriteOptions::default();
        o.set_sync(true);
        Ok(self
            .db
            .put_cf_opt(self.cf(CF_META), name.as_bytes(), value, &o)?)
    }

    /// Flushes memtables and the WAL to disk (graceful shutdown).
    pub fn flush(&self) -> Result<()> {
        self.sync_wal()?;
        for cf in [CF_OBJECTS, CF_DIGESTS, CF_HINTS, CF_META] {
            self.db.flush_cf(self.cf(cf))?;
        }
        Ok(())
    }

    /// `fsync`s the write-ahead log: once this returns `Ok`, every write
    /// that returned before it was called survives a power loss. Counted in
    /// [`Store::wal_sync_stats`].
    pub fn sync_wal(&self) -> Result<()> {
        let started = unix_ms(SystemTime::now());
        match self.db.flush_wal(true) {
            Ok(()) => {
                self.wal_syncs.fetch_add(1, Ordering::Relaxed);
                self.wal_synced_ms.fetch_max(started, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.wal_sync_failures.fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }

    /// When the last successful [`Store::sync_wal`] started: every write
    /// acknowledged before this time is on disk. `None` before the first.
    pub fn last_wal_sync(&self) -> Option<SystemTime> {
        match self.wal_synced_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(from_unix_ms(ms)),
        }
    }

    /// WAL syncs since open: (succeeded, failed).
    pub fn wal_sync_stats(&self) -> (u64, u64) {
        (
            self.wal_syncs.load(Ordering::Relaxed),
            self.wal_sync_failures.load(Ordering::Relaxed),
        )
    }

    /// Starts a thread that syncs the WAL ([`Store::sync_wal`]) every
    /// `interval` (at a fixed rate; a sync that overruns is followed by the
    /// next at once), calling `on_sync` with each outcome. It runs until the
    /// returned [`WalSyncer`] is stopped or dropped, and then syncs once
    /// more. A zero interval is taken as 1 ms.
    pub fn start_wal_sync<F>(self: &Arc<Self>, interval: Duration, mut on_sync: F) -> WalSyncer
    where
        F: FnMut(&Result<()>) + Send + 'static,
    {
        let interval = interval.max(Duration::from_millis(1));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let store = self.clone();
        let thread = std::thread::Builder::new()
            .name("dynkv-wal-sync".into())
            .spawn(move || {
                let mut next = std::time::Instant::now() + interval;
                loop {
                    let wait = next.saturating_duration_since(std::time::Instant::now());
                    // Stopped (or the handle dropped): one last sync, then out.
                    let last = !matches!(
                        stopped.recv_timeout(wait),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    );
                    let r = store.sync_wal();
                    on_sync(&r);
                    if last {
                        return;
                    }
                    next = (next + interval).max(std::time::Instant::now());
                }
            })
            .expect("spawn the WAL sync thread");
        WalSyncer {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Approximate number of stored objects (RocksDB's estimate; for metrics).
    pub fn estimated_objects(&self) -> u64 {
        self.db
            .property_int_value_cf(self.cf(CF_OBJECTS), "rocksdb.estimate-num-keys")
            .ok()
            .flatten()
            .unwrap_or(0)
    }
}

/// The thread [`Store::start_wal_sync`] started; stopping or dropping it
/// ends the thread after one last sync.
pub struct WalSyncer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WalSyncer {
    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WalSyncer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u64::MAX as u128) as u64)
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A hint value in [`HINT_FORMAT_V2`].
fn encode_hint_value(object: &Object, created_ms: u64) -> Vec<u8> {
    let body = encode_object(object);
    let mut v = Vec::with_capacity(9 + body.len());
    v.push(HINT_FORMAT_V2);
    v.extend_from_slice(&created_ms.to_le_bytes());
    v.extend_from_slice(&body);
    v
}

fn object_key(partition: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn digest_key(hash: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&hash.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn hint_owner_prefix(owner: &str) -> Vec<u8> {
    let owner = &owner.as_bytes()[..owner.len().min(255)];
    let mut k = Vec::with_capacity(1 + owner.len());
    k.push(owner.len() as u8);
    k.extend_from_slice(owner);
    k
}

fn hint_key(owner: &str, partition: u32, key: &[u8]) -> Vec<u8> {
    let mut k = hint_owner_prefix(owner);
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn parse_hint_key(k: &[u8]) -> Option<(String, u32, Vec<u8>)> {
    let (&len, rest) = k.split_first()?;
    let len = len as usize;
    if rest.len() < len + 4 {
        return None;
    }
    let owner = String::from_utf8(rest[..len].to_vec()).ok()?;
    let partition = u32::from_be_bytes(rest[len..len + 4].try_into().ok()?);
    Some((owner, partition, rest[len + 4..].to_vec()))
}

/// Bounds an iterator to the keys starting with `prefix` (no bound when the
/// prefix is all 0xff and nothing sorts after it).
/// A stored key and its encoded value, as RocksDB's iterator yields them.
type RawEntry = (Box<[u8]>, Box<[u8]>);

fn bound_to_prefix(opts: &mut ReadOptions, prefix: &[u8]) {
    let mut b = prefix.to_vec();
    while let Some(last) = b.pop() {
        if last < 0xff {
            b.push(last + 1);
            opts.set_iterate_upper_bound(b);
            return;
        }
    }
}
