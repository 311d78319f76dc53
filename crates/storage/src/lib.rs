//! # dynkv-storage: one node's durable state in RocksDB
//!
//! Everything a node keeps lives in one RocksDB database with five column
//! families, each laid out for the scans that use it:
//!
//! | column family | key | value | scanned by |
//! | --- | --- | --- | --- |
//! | `objects` | partition (u32 BE) ‖ key | encoded [`Object`] | ownership handoff, listing: one partition is one contiguous range |
//! | `digests` | key hash (u64 BE) ‖ key | object digest (u64 LE) | anti-entropy: a Merkle leaf is a contiguous hash range |
//! | `hints` | owner len (u8) ‖ owner ‖ partition ‖ key | hint format byte ‖ created (unix ms, u64 LE) ‖ encoded [`Object`] | hinted handoff, per target node |
//! | `meta` | name | bytes | node identity, ring state |
//! | `index` | partition ‖ scope ‖ field ‖ term ‖ key (see [`index`]) | empty | secondary index queries: one (partition, scope, field) is a contiguous range in term order |
//! | `changes` | write time (µs, u64 BE) ‖ hash of key and dot ‖ key (see [`changelog`]) | the version, its dot and context | the change feed: one range scan from a cursor |
//!
//! Anti-entropy rebuilds its trees from the small `digests` family instead
//! of reading every value.
//!
//! ## The digest index, off the write path
//! A write puts only the object (one memtable insert, one WAL record). Its
//! new digest goes into an in-memory queue, coalesced per key, that a
//! background thread writes to `digests` in batches (every 100 ms, or at
//! once when 4096 keys are queued) with the WAL off. A scan of the index
//! ([`Store::scan_digests`], [`Store::for_each_digest`], what a Merkle tree
//! refresh reads) first writes the queue, so it sees every write that
//! returned before it. The index can therefore lag the objects after a
//! crash; a `digests_clean` marker in `meta` says when it cannot: it is
//! written (synced) by [`Store::flush`] once the queue and every memtable
//! are on disk, and deleted (synced) before the next write that changes a
//! digest. An open that finds no marker rebuilds the index from the
//! objects (one scan, hashing each key with [`StoreConfig::key_hash`]), as
//! Riak's AAE rebuilds its hashtrees after a crash; so does
//! [`Store::recover`].
//!
//! ## Secondary index entries, in the object's write batch
//! An object's index entries (the `(field, term)` pairs of its live
//! siblings' metadata, [`dynkv_vclock::Meta::indexes`]) are written in the
//! same RocksDB write batch as the object by every change
//! ([`Store::update`] computes the entries before and after and writes the
//! difference), so the `index` family never disagrees with `objects`, even
//! after a crash. [`Store::merge_deferred`] cannot know what its merge
//! removes: it adds the incoming siblings' entries, and
//! [`Store::scan_index`] then checks each entry it finds against the
//! object, skipping and deleting those no live sibling carries. Which prefix of a key groups its entries (Riak's bucket) is
//! [`StoreConfig::index_scope`]'s to say. A database written before the
//! family existed is indexed once at open.
//!
//! ## Object cache
//! Decoded objects are kept in a byte-bounded cache
//! ([`StoreConfig::object_cache_bytes`]) that serves [`Store::get`] and the
//! read inside [`Store::update`], so a replica applying an object it holds
//! there reads nothing from RocksDB. It is written through under the key's
//! lock by every change (a failed write forgets the key), and a read miss
//! fills it under that lock too, so it never holds a value the `objects`
//! family does not. Scans read RocksDB. A reopen empties it. It is off by
//! default: on a uniform 50/50 load over more keys than it holds, its upkeep
//! cost more CPU per request than the reads it saved (docs/PERFORMANCE.md).
//!
//! ## Concurrent writers to one key
//! A change that needs the result is a read-modify-write: the coordinator's
//! own write (it replicates the merged object and answers with its
//! context), read repair, handoff and anti-entropy. [`Store::update`]
//! serialises those per key with a fixed array of striped mutexes chosen by
//! key hash, held only for the read, the merge and the write; the stripes
//! are bounded memory and two keys rarely share one.
//!
//! The replica step of a coordinated write needs no result, so it may read
//! nothing ([`StoreConfig::deferred_merges`]):
//! [`Store::merge_deferred`] writes the incoming object as a merge operand
//! and RocksDB's merge operator ([`sync_operands`]) applies the DVVSet
//! `sync` when the key is next read, flushed or compacted. It takes the
//! key's lock for the write alone, so an operand never lands between an
//! update's read and its write (that write would hide it). A read of a key
//! with operands pending pays their merge once per read until a flush or
//! compaction folds them in, and so does the digest index's background
//! update. That is why it is off by default: the read a replica step saves
//! is cheap (the key is usually in the memtable or its bloom filter says
//! no), and the merges paid later cost more (docs/PERFORMANCE.md, seventh
//! run).
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
//! - A periodic WAL sync ([`Store::sync_wal`], called by the node's
//!   `wal_sync` background worker every `storage.sync_interval`, as
//!   Cassandra's periodic commitlog): the WAL is `fsync`ed every interval T
//!   (through descriptors of its own, not RocksDB's `FlushWAL`: see
//!   [`Store::sync_wal`]). A power loss then takes at
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
//! lock, in order, once the object is written (its digest may still be
//! queued; a scan writes the queue first): anti-entropy keeps its Merkle
//! trees current from it without ever rescanning a partition.
//!
//! ## A full disk, and other failed writes
//! When a write fails with an I/O error, RocksDB stops the database: every
//! later write fails with the same *background error* until `DB::Resume()`,
//! which neither rust-rocksdb 0.20 nor the C API of Debian's librocksdb 7.8
//! offers. The store then enters a failed state ([`StoreState`]): writes are
//! refused at once, before RocksDB is called ([`StoreError::NoSpace`] when
//! the failure was a lack of space, [`StoreError::Unavailable`] for any other
//! I/O error), and reads go on being served. [`Store::recover`] (the node
//! calls it every second while the store is failed) checks that the data
//! directory takes writes again (the file system reports room for a
//! memtable flush, and a small file can be written and synced there), then
//! closes the database once its last in-flight user is done and opens it
//! again, which replays the WAL: what was acknowledged is kept, a write that
//! failed was never applied. The hint counters are rebuilt as at open, and
//! the [`WriteListener`] is told about any key whose failed write turns out
//! to be stored after all. While the database is closed (milliseconds),
//! every call fails with [`StoreError::Unavailable`].
//!
//! Debian's librocksdb 7.8 is built with its assertions on, and some of them
//! abort the process when a file writer that has seen a failed write is
//! used again: its info log (`LOG`, in the data directory: the next log line
//! after a failed flush of the log aborts), and a WAL sync through RocksDB
//! (`FlushWAL(true)`) after a failed append. So the info log only takes the
//! lines written at open (the options, no runtime lines), a database is only
//! opened once a test write in the data directory succeeded, and the WAL is
//! synced through descriptors of our own ([`Store::sync_wal`]).

pub mod changelog;
pub mod index;

pub use changelog::{Change, ChangeHook, ChangeScan, Position, Trimmed};

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use dynkv_vclock::{DvvSet, Object, ObjectDecodeError, decode_object, encode_object};
use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Direction, IteratorMode, LogLevel,
    MergeOperands, Options, ReadOptions, WriteBatch, WriteOptions,
};

const CF_OBJECTS: &str = "objects";
const CF_DIGESTS: &str = "digests";
const CF_HINTS: &str = "hints";
const CF_META: &str = "meta";
const CF_INDEX: &str = "index";
const CF_CHANGES: &str = "changes";
/// Every column family, in the order they are opened.
const ALL_CFS: [&str; 6] = [
    CF_OBJECTS, CF_DIGESTS, CF_HINTS, CF_META, CF_INDEX, CF_CHANGES,
];

/// The file [`Store::recover`] (and open) writes, syncs and removes in the
/// data directory to see whether it takes writes. RocksDB ignores files it
/// did not name.
const SPACE_PROBE: &str = "dynkv-space-probe";
/// Bytes of that test write.
const SPACE_PROBE_BYTES: usize = 4096;
/// How long a reopen waits for the database's in-flight users (scans
/// included) before it gives up for this round and puts the database back.
const REOPEN_WAIT: Duration = Duration::from_secs(30);
/// Most keys whose failed write is remembered for the listener (see
/// [`Store::recover`]); writes fail fast once the store is failed, so only
/// the writes in flight at that moment get here.
const MAX_UNCERTAIN: usize = 10_000;

/// [`StoreState`] as stored in an atomic.
const HEALTHY: u8 = 0;
const NO_SPACE: u8 = 1;
const FAILED: u8 = 2;

/// Name of the `objects` family's merge operator ([`sync_operands`]).
/// RocksDB records it in the database's options; a new operator with other
/// semantics needs a new name.
const OBJECT_MERGE_OPERATOR: &str = "dynkv.dvvset-sync.v1";

/// Number of key-lock stripes: enough that unrelated hot keys rarely
/// contend, small enough to be a fixed 32 KiB.
const LOCK_STRIPES: usize = 4096;

/// Least block cache of the small column families (digests, hints, meta).
const MIN_SMALL_CACHE_BYTES: usize = 8 << 20;
/// Largest cache of the small families: their working set (a digest per
/// key, hints, metadata) stays small when the objects' cache is large.
const MAX_SMALL_CACHE_BYTES: usize = 256 << 20;
/// Least memtable of the small column families.
const MIN_SMALL_WRITE_BUFFER_BYTES: usize = 4 << 20;

/// Bytes added to every cached object's size for its entry, key and
/// allocations.
const OBJECT_CACHE_ENTRY_OVERHEAD: usize = 128;

/// Meta key present while the digest index is known to agree with the
/// objects: written by [`Store::flush`], deleted (synced) before the next
/// write that changes a digest. Absent at open, the index is rebuilt.
const META_DIGESTS_CLEAN: &str = "digests_clean";
/// Most queued digest changes before the flusher is woken early, and the
/// size of a rebuild's batches.
const DIGEST_BATCH: usize = 4096;
/// How often the flusher writes the queued digest changes.
const DIGEST_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Meta key present once the `index` family holds the entries of every
/// object: absent in a database written before the family existed, whose
/// open builds them (once).
const META_INDEX_BUILT: &str = "index_built_v1";

/// Meta key holding the on-disk layout version, checked at open.
const META_FORMAT: &str = "storage_format";
/// The layout version this code writes.
pub const STORAGE_FORMAT_V1: u8 = 1;

/// Leading byte of a hint value that carries its creation time:
/// `HINT_FORMAT_V2 ‖ created unix ms (u64 LE) ‖ encoded object`. Any other
/// leading byte is a bare encoded object (hint format 1, whose first byte is
/// the object format, 1 or 2); object formats stay far below this value.
pub const HINT_FORMAT_V2: u8 = 0xf2;
const _: () = assert!(dynkv_vclock::object::OBJECT_FORMAT_V1 != HINT_FORMAT_V2);
const _: () = assert!(dynkv_vclock::object::OBJECT_FORMAT_V2 != HINT_FORMAT_V2);

/// Storage failures. RocksDB errors are I/O problems the caller reports as a
/// failed replica; decode errors mean corruption and are never silently
/// treated as "not found". A RocksDB or I/O error that says the disk (or a
/// quota) is full is classified as [`StoreError::NoSpace`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB refused an operation.
    #[error("rocksdb: {0}")]
    Rocks(rocksdb::Error),
    /// The disk holding the data directory is full (or a quota is reached):
    /// the write failed, or was refused because an earlier one did (see
    /// [`StoreState::NoSpace`]). Reads are still served.
    #[error("no space left on the data disk: {0}")]
    NoSpace(String),
    /// The store refuses the call for now: a write failed with an I/O error
    /// and writes wait for the database to be reopened, or it is being
    /// reopened (reads too, for milliseconds).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A file operation of the store's own failed (the WAL sync, the space
    /// probe).
    #[error("i/o: {0}")]
    Io(std::io::Error),
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

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        if is_no_space(e.as_ref()) {
            StoreError::NoSpace(e.into_string())
        } else {
            StoreError::Rocks(e)
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        if io_no_space(&e) {
            StoreError::NoSpace(e.to_string())
        } else {
            StoreError::Io(e)
        }
    }
}

impl StoreError {
    /// True for [`StoreError::NoSpace`].
    pub fn is_no_space(&self) -> bool {
        matches!(self, StoreError::NoSpace(_))
    }
}

/// Whether a RocksDB status text says the disk or a quota is full:
/// `IO error: No space left on device: ...` (RocksDB's `NoSpace` subcode and
/// `ENOSPC`), `... Space limit reached` (its `SpaceLimit` subcode), or the
/// `EDQUOT` text.
pub fn is_no_space(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("no space left on device")
        || m.contains("space limit reached")
        || m.contains("disk quota exceeded")
}

fn io_no_space(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Result alias for storage calls.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Whether the store takes writes (see the crate documentation, "A full
/// disk").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreState {
    /// Reads and writes are served.
    Healthy,
    /// A write failed for lack of space: writes are refused with
    /// [`StoreError::NoSpace`] until [`Store::recover`] finds room again and
    /// reopens the database. Reads are served.
    NoSpace,
    /// A write failed with another I/O error: writes are refused with
    /// [`StoreError::Unavailable`] until [`Store::recover`] reopens the
    /// database. Reads are served.
    Failed,
}

impl StoreState {
    /// A short name for logs and views: `healthy`, `no_space`, `failed`.
    pub fn name(self) -> &'static str {
        match self {
            StoreState::Healthy => "healthy",
            StoreState::NoSpace => "no_space",
            StoreState::Failed => "failed",
        }
    }

    fn from_code(code: u8) -> StoreState {
        match code {
            HEALTHY => StoreState::Healthy,
            NO_SPACE => StoreState::NoSpace,
            _ => StoreState::Failed,
        }
    }
}

/// The store's state and its history, for metrics, logs and views.
#[derive(Clone, Debug)]
pub struct StoreHealth {
    /// Whether writes are taken.
    pub state: StoreState,
    /// The error that ended the healthy state (`None` while healthy).
    pub reason: Option<String>,
    /// When it ended (`None` while healthy).
    pub since: Option<SystemTime>,
    /// True while the database is closed to be reopened (every call fails).
    pub reopening: bool,
    /// Times [`Store::recover`] reopened the database since open.
    pub reopens: u64,
}

/// What one [`Store::recover`] call did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// The store is healthy: nothing to do.
    Healthy,
    /// The data directory does not take writes yet (why): try again later.
    NotYet(String),
    /// The database was reopened: writes are taken again.
    Reopened {
        /// How long the store was closed (the wait for in-flight users, the
        /// close and the open with its WAL replay).
        took: Duration,
        /// Keys whose failed write turned out to be stored after all, and
        /// which the listener was told about.
        reconciled: usize,
    },
}

/// A key whose write failed: (partition, hash, the digest the listener last
/// saw for it).
type Uncertain = (u32, u64, Option<u64>);

/// Why the store left the healthy state.
struct Failure {
    reason: String,
    since: SystemTime,
}

/// The database, held for one call (`Deref`s to it). Holding it keeps a
/// reopen waiting, so no call holds it longer than it runs.
struct Handle(arc_swap::Guard<Option<Arc<DB>>>);

impl std::ops::Deref for Handle {
    type Target = DB;

    fn deref(&self) -> &DB {
        self.0
            .as_deref()
            .expect("a handle is made only when the database is open")
    }
}

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
    /// The ring's hash of a key ([`KeyRef::hash`]): the store needs it only
    /// to rebuild the digest index from the objects after an unclean
    /// shutdown (the `objects` family does not keep the hash).
    pub key_hash: fn(&[u8]) -> u64,
    /// Bytes of decoded objects kept in memory for reads and for the read
    /// of a read-modify-write (0: no object cache).
    pub object_cache_bytes: u64,
    /// Apply the replica step of a coordinated write as a deferred merge
    /// ([`Store::merge_deferred`]) instead of a read-modify-write.
    pub deferred_merges: bool,
    /// The length of a key's *scope*, the prefix its secondary index
    /// entries are grouped by (Riak: the bucket's namespace), or `None`
    /// for a key whose object is never indexed ([`index`]). The default
    /// puts every key in one empty scope.
    pub index_scope: fn(&[u8]) -> Option<usize>,
    /// Log every new version in the `changes` family, in the object's write
    /// batch ([`changelog`]): what the change feed reads. Off, writes cost
    /// one put less and the feed has nothing to serve from this node.
    pub change_log: bool,
    /// Bytes of files the change log may hold on disk before the oldest
    /// are dropped: above its retention bytes (trimmed entries keep their
    /// space until their file goes), so only trimmed files are dropped.
    pub change_log_disk_bytes: u64,
}

/// [`StoreConfig::index_scope`] by default: one empty scope for every key.
pub fn one_scope(_: &[u8]) -> Option<usize> {
    Some(0)
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
            key_hash: xxhash_rust::xxh3::xxh3_64,
            object_cache_bytes: 0,
            deferred_merges: false,
            index_scope: one_scope,
            change_log: true,
            change_log_disk_bytes: 2 << 30,
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

    /// A deferred merge ([`Store::merge_deferred`]) may have changed the
    /// key's digest; neither the old nor the new one is known on the write
    /// path (the digest index learns the new one in the background).
    fn merged(&self, key: &KeyRef<'_>);
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
    /// The open database; `None` while [`Store::recover`] reopens it.
    db: Arc<ArcSwapOption<DB>>,
    /// Digest index changes not yet in the `digests` family.
    digests: Arc<DigestQueue>,
    /// The background writer of `digests` (joined on drop).
    digest_flusher: Option<std::thread::JoinHandle<()>>,
    /// True while the `meta` family holds the "digests clean" marker. A
    /// write that changes a digest holds a read guard (clearing the marker
    /// first if it is set); [`Store::flush`] takes the write guard.
    digests_clean: RwLock<bool>,
    /// Decoded objects by object key (partition BE ‖ key), written through
    /// under the key's lock (see the crate documentation).
    objects: Option<ObjectCache>,
    /// How it was opened, to open it again.
    config: StoreConfig,
    /// [`StoreState`] as `HEALTHY`, `NO_SPACE` or `FAILED`; changed under
    /// `failure`'s lock.
    state: AtomicU8,
    failure: Mutex<Option<Failure>>,
    /// One [`Store::recover`] at a time.
    reopen: Mutex<()>,
    reopens: AtomicU64,
    /// Keys whose write failed, with the digest the listener last saw for
    /// each: checked against what the reopened database holds.
    uncertain: Mutex<HashMap<Vec<u8>, Uncertain>>,
    /// `uncertain` is not empty (spares successful writes its lock).
    uncertain_any: AtomicBool,
    /// More keys failed than `uncertain` keeps.
    uncertain_overflow: AtomicBool,
    /// The WAL files the last WAL sync found, to fsync the directory when
    /// that set changes.
    wal_files_synced: Mutex<Vec<OsString>>,
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
    /// The change log's floor, size and switch ([`changelog`]).
    changes: changelog::ChangeLogState,
    /// Told of every new version of a key (the watch notifier).
    change_hook: ArcSwapOption<Arc<dyn ChangeHook>>,
}

impl Store {
    /// Opens (or creates) the database. `listener` sees every digest change.
    /// Fails with [`StoreError::NoSpace`] when the data directory does not
    /// take a small test write (RocksDB must not open on a full disk: see the
    /// crate documentation).
    pub fn open(config: &StoreConfig, listener: Option<Arc<dyn WriteListener>>) -> Result<Store> {
        std::fs::create_dir_all(&config.path)?;
        if let Err(e) = probe_space(&config.path, 0) {
            return Err(StoreError::from(e));
        }
        let db = open_db(config)?;
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(config.sync_writes);
        check_format(&db)?;
        index_at_open(&db, config.index_scope)?;
        let (hints, bytes) = hint_totals(&db)?;
        let clean = digests_at_open(&db, config.key_hash)?;
        let (change_floor, change_bytes) = changelog::changes_at_open(&db)?;
        let db = Arc::new(ArcSwapOption::from_pointee(db));
        let digests = Arc::new(DigestQueue::default());
        let digest_flusher = {
            let (db, digests) = (Arc::clone(&db), Arc::clone(&digests));
            std::thread::Builder::new()
                .name("dynkv-digests".into())
                .spawn(move || digests.run_flusher(&db))?
        };
        Ok(Store {
            db,
            digests,
            digest_flusher: Some(digest_flusher),
            digests_clean: RwLock::new(clean),
            objects: ObjectCache::new(config.object_cache_bytes),
            config: config.clone(),
            state: AtomicU8::new(HEALTHY),
            failure: Mutex::new(None),
            reopen: Mutex::new(()),
            reopens: AtomicU64::new(0),
            uncertain: Mutex::new(HashMap::new()),
            uncertain_any: AtomicBool::new(false),
            uncertain_overflow: AtomicBool::new(false),
            wal_files_synced: Mutex::new(Vec::new()),
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            write_opts,
            hint_count: AtomicU64::new(hints),
            hint_bytes: AtomicU64::new(bytes),
            opened_ms: unix_ms(SystemTime::now()),
            wal_synced_ms: AtomicU64::new(0),
            wal_syncs: AtomicU64::new(0),
            wal_sync_failures: AtomicU64::new(0),
            listener,
            changes: changelog::ChangeLogState {
                enabled: config.change_log,
                bytes: AtomicU64::new(change_bytes),
                floor: AtomicU64::new(change_floor),
                trimmed: AtomicU64::new(0),
            },
            change_hook: ArcSwapOption::empty(),
        })
    }
}

impl Drop for Store {
    /// Stops the digest flusher. Changes still queued are not written: a
    /// store dropped without [`Store::flush`] was not closed cleanly, and
    /// the next open rebuilds the digest index.
    fn drop(&mut self) {
        self.digests.stop.store(true, Ordering::Release);
        {
            let _pending = self.digests.pending.lock();
            self.digests.wake.notify_all();
        }
        if let Some(flusher) = self.digest_flusher.take() {
            let _ = flusher.join();
        }
    }
}

/// Opens the RocksDB database of `config` with the node's options.
fn open_db(config: &StoreConfig) -> Result<DB> {
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    db_opts
        .increase_parallelism(std::thread::available_parallelism().map_or(2, |n| n.get() as i32));
    db_opts.set_max_background_jobs(2);
    // Compactions run at the lowest CPU priority: they can wait, and on
    // a small machine several replicas compact the same data at the same
    // moment, which otherwise stalls client requests for a few hundred
    // milliseconds. Flushes keep normal priority so writes never stall
    // behind a full memtable.
    let mut env = rocksdb::Env::new()?;
    env.lower_thread_pool_cpu_priority();
    db_opts.set_env(&env);
    // The info log takes only the header RocksDB writes at open (its
    // version and options): librocksdb 7.8 aborts on the next log line
    // after a failed write of the log, i.e. on a full disk (see the crate
    // documentation). Each open renames the last log to `LOG.old.*`.
    db_opts.set_log_level(LogLevel::Header);
    db_opts.set_keep_log_file_num(10);
    db_opts.set_bytes_per_sync(1 << 20);
    if config.background_bytes_per_sec > 0 {
        // Flushes and compactions share the machine with requests: a
        // rate limit spreads their bursts out instead of letting them
        // take every core for seconds.
        db_opts.set_ratelimiter(config.background_bytes_per_sec as i64, 100_000, 10);
    }

    // Two caches sized for their use: point reads of objects take most of
    // the block cache; the digests, hints and meta families are scanned in
    // runs (anti-entropy leaves, handoff) and get a small one of their own,
    // so a scan never evicts the objects' hot blocks.
    let small_cache_bytes =
        (config.block_cache_bytes / 8).clamp(MIN_SMALL_CACHE_BYTES, MAX_SMALL_CACHE_BYTES);
    let objects_cache = Cache::new_lru_cache(
        config
            .block_cache_bytes
            .saturating_sub(small_cache_bytes)
            .max(MIN_SMALL_CACHE_BYTES),
    )?;
    let small_cache = Cache::new_lru_cache(small_cache_bytes)?;
    let small_write_buffer = (config.write_buffer_bytes / 4).max(MIN_SMALL_WRITE_BUFFER_BYTES);

    // `objects`: tuned for point lookups (RocksDB's OptimizeForPointLookup
    // without its private cache). Whole-key bloom filters on every level
    // (format 5 full filters), so a read touches one data block per level
    // at most and a miss usually none; `optimize_filters_for_hits` stays
    // off because misses (a replica that lacks a key) matter. Index and
    // filter blocks live in the block cache, bounded, with level 0's and
    // the top level's pinned so that a burst of data blocks never evicts
    // them. A hash index inside each data block finds a key without a
    // binary search.
    let objects_opts = {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&objects_cache);
        table.set_format_version(5);
        table.set_bloom_filter(10.0, false);
        table.set_whole_key_filtering(true);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        table.set_pin_top_level_index_and_filter(true);
        table.set_data_block_index_type(rocksdb::DataBlockIndexType::BinaryAndHash);
        table.set_data_block_hash_ratio(0.75);
        let mut o = Options::default();
        o.set_block_based_table_factory(&table);
        o.set_write_buffer_size(config.write_buffer_bytes);
        // A bloom filter over the memtable's keys: a point read of a key
        // that is not in the memtable skips the skiplist search.
        o.set_memtable_whole_key_filtering(true);
        o.set_memtable_prefix_bloom_ratio(0.05);
        o.set_level_compaction_dynamic_level_bytes(true);
        o.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Always set, whichever way replicas apply objects: a database
        // written with deferred merges must stay readable.
        o.set_merge_operator_associative(OBJECT_MERGE_OPERATOR, sync_operands);
        o
    };
    // The other families: scanned in key order, small, written rarely
    // (digests: in batches, see the crate documentation).
    let small_opts = || {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&small_cache);
        table.set_format_version(5);
        table.set_block_size(16 << 10);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        let mut o = Options::default();
        o.set_block_based_table_factory(&table);
        o.set_write_buffer_size(small_write_buffer);
        o.set_compression_type(rocksdb::DBCompressionType::Lz4);
        o
    };
    let cfs = vec![
        ColumnFamilyDescriptor::new(CF_OBJECTS, objects_opts),
        ColumnFamilyDescriptor::new(CF_DIGESTS, small_opts()),
        ColumnFamilyDescriptor::new(CF_HINTS, small_opts()),
        ColumnFamilyDescriptor::new(CF_META, small_opts()),
        ColumnFamilyDescriptor::new(CF_INDEX, small_opts()),
        // Written with every new version, scanned in order by the feed and
        // trimmed from its start: the objects' memtable size, the small
        // families' cache, and no compaction at all (FIFO: a log written
        // once and dropped oldest first gains nothing from merging files,
        // and compacting it cost as much CPU as a quarter of the writes;
        // docs/PERFORMANCE.md, "Change feed"). The trim
        // ([`Store::trim_changes`]) deletes entries and raises the floor;
        // FIFO then drops the oldest files, all of them trimmed already,
        // once the family passes `change_log_disk_bytes`. All files stay
        // in level 0, so the level-0 write stalls are off for it.
        ColumnFamilyDescriptor::new(CF_CHANGES, {
            let mut o = small_opts();
            o.set_write_buffer_size(config.write_buffer_bytes);
            o.set_compaction_style(rocksdb::DBCompactionStyle::Fifo);
            let mut fifo = rocksdb::FifoCompactOptions::default();
            fifo.set_max_table_files_size(config.change_log_disk_bytes);
            o.set_fifo_compaction_options(&fifo);
            o.set_level_zero_slowdown_writes_trigger(1 << 20);
            o.set_level_zero_stop_writes_trigger(1 << 20);
            o
        }),
    ];
    Ok(DB::open_cf_descriptors(&db_opts, &config.path, cfs)?)
}

/// The `objects` family's merge operator: its operands are objects that
/// [`Store::merge_deferred`] wrote without reading the stored one, and the
/// merge is the DVVSet `sync` they would have had. `sync` is associative
/// and commutative, so RocksDB may fold operands together in any grouping
/// (partial merges in compaction) and the result is the same.
///
/// A merge must not fail: RocksDB would report the key corrupt on every
/// read and stop compactions. A stored object or operand that does not
/// decode (only a damaged disk makes one) is dropped with an error log, and
/// anti-entropy restores the key from the other replicas.
fn sync_operands(key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let decode = |bytes: &[u8], what: &str| match decode_object(bytes) {
        Ok(o) => Some(o),
        Err(e) => {
            tracing::error!(key = ?String::from_utf8_lossy(key), error = %e, "dropping an undecodable {what} in a merge");
            None
        }
    };
    let mut merged = existing.and_then(|b| decode(b, "stored object"));
    for operand in operands {
        if let Some(incoming) = decode(operand, "merge operand") {
            merged = Some(match merged {
                Some(current) => DvvSet::sync(&current, &incoming),
                None => incoming,
            });
        }
    }
    // Nothing decoded: an empty object, which reads as a key with no
    // versions, rather than a merge failure.
    Some(encode_object(&merged.unwrap_or_default()))
}

/// Checks (or, in a new database, writes) the layout version.
fn check_format(db: &DB) -> Result<()> {
    match db.get_cf(cf(db, CF_META), META_FORMAT.as_bytes())? {
        None => {
            let mut o = WriteOptions::default();
            o.set_sync(true);
            Ok(db.put_cf_opt(
                cf(db, CF_META),
                META_FORMAT.as_bytes(),
                [STORAGE_FORMAT_V1],
                &o,
            )?)
        }
        Some(v) if v.as_slice() == [STORAGE_FORMAT_V1] => Ok(()),
        Some(v) => Err(StoreError::Format {
            found: v.first().copied().unwrap_or(0),
            expected: STORAGE_FORMAT_V1,
        }),
    }
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column family created at open")
}

/// Number of hints and bytes they hold, by one scan (at open).
fn hint_totals(db: &DB) -> Result<(u64, u64)> {
    let (mut n, mut bytes) = (0, 0);
    for item in db.iterator_cf(cf(db, CF_HINTS), IteratorMode::Start) {
        let (k, v) = item?;
        n += 1;
        bytes += (k.len() + v.len()) as u64;
    }
    Ok((n, bytes))
}

/// A key's stored object.
fn read_object(db: &DB, key: &KeyRef<'_>) -> Result<Option<Object>> {
    read_object_at(db, &object_key(key.partition, key.key))
}

/// The stored object under an object key (partition BE ‖ key).
fn read_object_at(db: &DB, okey: &[u8]) -> Result<Option<Object>> {
    match db.get_pinned_cf(cf(db, CF_OBJECTS), okey)? {
        Some(bytes) => Ok(Some(decode_object(&bytes)?)),
        None => Ok(None),
    }
}

/// Bytes an object is accounted for in the [`ObjectCache`]: its key, its
/// approximate size and a fixed overhead for the entry and its allocations.
fn cached_bytes(okey: &[u8], object: &Object) -> u32 {
    let bytes = okey.len() + object.byte_size() + OBJECT_CACHE_ENTRY_OVERHEAD;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// Decoded objects by object key, bounded in bytes: a read served from it
/// skips RocksDB and the decode. Only ever holds what the `objects` family
/// holds: it is written through under the key's lock by every change, and
/// filled on a read miss under that lock too (so a fill never puts back a
/// value a concurrent write replaced).
struct ObjectCache {
    cache: moka::sync::Cache<Vec<u8>, Arc<Object>>,
}

impl ObjectCache {
    /// A cache of at most `bytes` (`None` when 0).
    fn new(bytes: u64) -> Option<ObjectCache> {
        (bytes > 0).then(|| ObjectCache {
            cache: moka::sync::Cache::builder()
                .max_capacity(bytes)
                .weigher(|k: &Vec<u8>, v: &Arc<Object>| cached_bytes(k, v))
                .build(),
        })
    }

    fn get(&self, okey: &[u8]) -> Option<Arc<Object>> {
        self.cache.get(okey)
    }

    /// Records what the `objects` family now holds for `okey`.
    fn set(&self, okey: Vec<u8>, object: Option<&Object>) {
        match object {
            Some(o) => self.cache.insert(okey, Arc::new(o.clone())),
            None => self.cache.invalidate(&okey),
        }
    }

    fn forget(&self, okey: &[u8]) {
        self.cache.invalidate(okey);
    }

    fn clear(&self) {
        self.cache.invalidate_all();
    }
}

/// Builds the `index` family from the objects unless it is known to hold
/// every entry ([`META_INDEX_BUILT`]): a database written before the
/// family existed. The entries and then the marker are written synced, so
/// an interrupted build is started over at the next open.
fn index_at_open(db: &DB, scope: fn(&[u8]) -> Option<usize>) -> Result<()> {
    if db
        .get_cf(cf(db, CF_META), META_INDEX_BUILT.as_bytes())?
        .is_some()
    {
        return Ok(());
    }
    let icf = cf(db, CF_INDEX);
    let mut batch = WriteBatch::default();
    let mut indexed = 0u64;
    for item in db.iterator_cf(cf(db, CF_OBJECTS), IteratorMode::Start) {
        let (k, v) = item?;
        let (Some(p), Some(key)) = (k.get(..4), k.get(4..)) else {
            continue;
        };
        let partition = u32::from_be_bytes(p.try_into().expect("4 bytes"));
        // An object that does not decode is indexed once it is repaired.
        let Ok(object) = decode_object(&v) else {
            continue;
        };
        for entry in index::entries(partition, key, scope(key), Some(&object)) {
            batch.put_cf(icf, entry, []);
            indexed += 1;
        }
        if batch.len() >= DIGEST_BATCH {
            db.write(std::mem::take(&mut batch))?;
        }
    }
    batch.put_cf(cf(db, CF_META), META_INDEX_BUILT.as_bytes(), [1]);
    let mut synced = WriteOptions::default();
    synced.set_sync(true);
    db.write_opt(batch, &synced)?;
    if indexed > 0 {
        tracing::info!(
            indexed,
            "built the secondary index entries of the stored objects"
        );
    }
    Ok(())
}

/// Whether the digest index is known to agree with the objects (the
/// "digests clean" marker is in `meta`); if it is not, rebuilds it from the
/// objects first. Returns whether the marker is (still) set.
fn digests_at_open(db: &DB, key_hash: fn(&[u8]) -> u64) -> Result<bool> {
    if db
        .get_cf(cf(db, CF_META), META_DIGESTS_CLEAN.as_bytes())?
        .is_some()
    {
        return Ok(true);
    }
    let started = Instant::now();
    let (objects, skipped) = rebuild_digests(db, key_hash)?;
    tracing::info!(
        objects,
        skipped,
        took_ms = started.elapsed().as_millis() as u64,
        "rebuilt the digest index from the objects (the store was not closed cleanly)"
    );
    Ok(false)
}

/// Rewrites the `digests` family from the `objects` family: every stored
/// digest is deleted, then one is written per decodable object (the WAL is
/// off for both: an interruption leaves the marker unset, so the next open
/// rebuilds again). Returns (objects indexed, undecodable objects skipped).
fn rebuild_digests(db: &DB, key_hash: fn(&[u8]) -> u64) -> Result<(u64, u64)> {
    let dcf = cf(db, CF_DIGESTS);
    let mut no_wal = WriteOptions::default();
    no_wal.disable_wal(true);
    let mut batch = WriteBatch::default();
    for item in db.iterator_cf(dcf, IteratorMode::Start) {
        let (k, _) = item?;
        batch.delete_cf(dcf, k);
        if batch.len() >= DIGEST_BATCH {
            db.write_opt(std::mem::take(&mut batch), &no_wal)?;
        }
    }
    let (mut objects, mut skipped) = (0, 0);
    for item in db.iterator_cf(cf(db, CF_OBJECTS), IteratorMode::Start) {
        let (k, v) = item?;
        let Some(key) = k.get(4..) else { continue };
        match decode_object(&v) {
            Ok(o) => {
                batch.put_cf(
                    dcf,
                    digest_key(key_hash(key), key),
                    o.digest().to_le_bytes(),
                );
                objects += 1;
            }
            Err(e) => {
                skipped += 1;
                tracing::warn!(error = %e, "an undecodable object is left out of the digest index");
            }
        }
        if batch.len() >= DIGEST_BATCH {
            db.write_opt(std::mem::take(&mut batch), &no_wal)?;
        }
    }
    db.write_opt(batch, &no_wal)?;
    Ok((objects, skipped))
}

/// A key's queued change to the digest index.
#[derive(Clone, Copy, Debug)]
enum DigestChange {
    /// The key's object now has this digest.
    Set(u64),
    /// The key was removed.
    Removed,
    /// A deferred merge ([`Store::merge_deferred`]) changed the key's object
    /// (stored in this partition) to a state nobody has read yet: the
    /// flusher reads it, and so computes the digest off the write path.
    Recompute(u32),
}

impl DigestChange {
    /// The digest the index should hold for `digest_key` (hash BE ‖ key)
    /// after this change (`None`: no entry). A recompute reads the object,
    /// which applies its pending merge operands.
    fn digest(
        self,
        db: &DB,
        digest_key: &[u8],
    ) -> std::result::Result<Option<u64>, rocksdb::Error> {
        Ok(match self {
            DigestChange::Set(d) => Some(d),
            DigestChange::Removed => None,
            DigestChange::Recompute(partition) => {
                let okey = object_key(partition, &digest_key[8..]);
                // An object that does not decode has no digest until it is
                // repaired; its reads report it.
                db.get_pinned_cf(cf(db, CF_OBJECTS), okey)?
                    .and_then(|v| decode_object(&v).ok())
                    .map(|o| o.digest())
            }
        })
    }
}

/// Digest index changes waiting for the background flusher, coalesced per
/// key: the `digests` family is written in batches off the write path.
#[derive(Default)]
struct DigestQueue {
    /// Digest key (hash BE ‖ key) to its newest change.
    pending: Mutex<HashMap<Vec<u8>, DigestChange>>,
    /// Wakes the flusher before its interval when a batch is full, or to
    /// stop.
    wake: Condvar,
    /// One flush at a time, so an older batch never lands after a newer one.
    flushing: Mutex<()>,
    /// The store is being dropped: the flusher ends.
    stop: AtomicBool,
}

impl DigestQueue {
    /// Queues a key's new digest (called under the key's lock, after its
    /// object was written).
    fn push(&self, digest_key: Vec<u8>, change: DigestChange) {
        let mut pending = self.pending.lock();
        pending.insert(digest_key, change);
        if pending.len() == DIGEST_BATCH {
            self.wake.notify_one();
        }
    }

    /// Writes every queued change to the `digests` family in one batch
    /// without the WAL. On failure the changes go back in the queue (behind
    /// any newer change of the same key).
    fn flush(&self, db: &DB) -> std::result::Result<(), rocksdb::Error> {
        let _one = self.flushing.lock();
        let taken = std::mem::take(&mut *self.pending.lock());
        if taken.is_empty() {
            return Ok(());
        }
        let dcf = cf(db, CF_DIGESTS);
        let mut batch = WriteBatch::default();
        let mut no_wal = WriteOptions::default();
        no_wal.disable_wal(true);
        let written = taken
            .iter()
            .try_for_each(|(k, change)| {
                match change.digest(db, k)? {
                    Some(d) => batch.put_cf(dcf, k, d.to_le_bytes()),
                    None => batch.delete_cf(dcf, k),
                }
                Ok(())
            })
            .and_then(|()| db.write_opt(batch, &no_wal));
        if let Err(e) = written {
            let mut pending = self.pending.lock();
            for (k, d) in taken {
                pending.entry(k).or_insert(d);
            }
            return Err(e);
        }
        Ok(())
    }

    /// The flusher thread: every [`DIGEST_FLUSH_INTERVAL`], or as soon as
    /// [`DIGEST_BATCH`] keys are queued, flushes the queue into the open
    /// database (skipped while it is being reopened, which clears the
    /// queue).
    fn run_flusher(&self, db: &ArcSwapOption<DB>) {
        loop {
            {
                let mut pending = self.pending.lock();
                if pending.len() < DIGEST_BATCH && !self.stop.load(Ordering::Acquire) {
                    self.wake.wait_for(&mut pending, DIGEST_FLUSH_INTERVAL);
                }
            }
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let guard = db.load();
            if let Some(db) = guard.as_deref()
                && let Err(e) = self.flush(db)
            {
                tracing::warn!(error = %e, "writing queued digests failed; retrying");
            }
        }
    }
}

impl Store {
    /// The open database, or [`StoreError::Unavailable`] while it is being
    /// reopened.
    fn handle(&self) -> Result<Handle> {
        let guard = self.db.load();
        if guard.is_none() {
            return Err(StoreError::Unavailable(
                "the database is being reopened after a failed write; retry shortly".into(),
            ));
        }
        Ok(Handle(guard))
    }

    /// `Ok` while writes are taken; the refusal otherwise.
    fn writable(&self) -> Result<()> {
        match self.state.load(Ordering::Acquire) {
            HEALTHY => Ok(()),
            state => {
                let reason = self
                    .failure
                    .lock()
                    .as_ref()
                    .map_or_else(String::new, |f| f.reason.clone());
                Err(match state {
                    NO_SPACE => StoreError::NoSpace(format!(
                        "writes are refused until space is freed (the write that failed: {reason})"
                    )),
                    _ => StoreError::Unavailable(format!(
                        "writes are refused until the database is reopened (the write that failed: {reason})"
                    )),
                })
            }
        }
    }

    /// A failed write: classifies it, and on an I/O error (RocksDB has then
    /// stopped the database) leaves the healthy state.
    fn write_failed(&self, e: impl Into<StoreError>) -> StoreError {
        let e = e.into();
        let state = match &e {
            StoreError::NoSpace(_) => NO_SPACE,
            StoreError::Rocks(r) if r.kind() == rocksdb::ErrorKind::IOError => FAILED,
            _ => return e,
        };
        let mut failure = self.failure.lock();
        if self.state.load(Ordering::Acquire) == HEALTHY {
            *failure = Some(Failure {
                reason: e.to_string(),
                since: SystemTime::now(),
            });
            self.state.store(state, Ordering::Release);
            tracing::warn!(
                data_dir = %self.config.path.display(),
                state = StoreState::from_code(state).name(),
                error = %e,
                "a write failed: the store refuses writes (reads go on) until it is reopened"
            );
        }
        e
    }

    /// The lock every change of a key is made under (one of the stripes).
    fn key_lock(&self, hash: u64) -> parking_lot::MutexGuard<'_, ()> {
        self.locks[(hash as usize) % LOCK_STRIPES].lock()
    }

    /// A write of `key` succeeded: an earlier failed one is no longer
    /// uncertain (the listener sees this one).
    fn written(&self, key: &KeyRef<'_>) {
        if self.uncertain_any.load(Ordering::Acquire) {
            self.uncertain.lock().remove(key.key);
        }
    }

    /// Remembers that a write of `key` failed while the listener knew it as
    /// `known` (see [`Store::recover`]).
    fn note_uncertain(&self, key: &KeyRef<'_>, known: Option<u64>) {
        let mut u = self.uncertain.lock();
        if u.len() >= MAX_UNCERTAIN && !u.contains_key(key.key) {
            self.uncertain_overflow.store(true, Ordering::Relaxed);
            return;
        }
        u.entry(key.key.to_vec())
            .or_insert((key.partition, key.hash, known));
        self.uncertain_any.store(true, Ordering::Release);
    }

    /// Whether the store takes writes now.
    pub fn state(&self) -> StoreState {
        StoreState::from_code(self.state.load(Ordering::Acquire))
    }

    /// The store's state, why and since when it is not healthy, and how
    /// often it was reopened.
    pub fn health(&self) -> StoreHealth {
        let failure = self.failure.lock();
        StoreHealth {
            state: self.state(),
            reason: failure.as_ref().map(|f| f.reason.clone()),
            since: failure.as_ref().map(|f| f.since),
            reopening: self.db.load().is_none(),
            reopens: self.reopens.load(Ordering::Relaxed),
        }
    }

    /// Brings a failed store back (blocking; the node calls it every second
    /// while [`Store::state`] is not healthy). Does nothing on a healthy
    /// store. Otherwise, if the data directory takes writes again (its file
    /// system has room for a memtable flush, `write_buffer_bytes`, and a
    /// small file can be written and synced there), closes the database as
    /// soon as no call holds it (for up to 30 s; past that it is put back and
    /// the next call tries again), opens it again (replaying the WAL),
    /// rebuilds the hint counters as [`Store::open`] does, tells the listener
    /// about every key whose failed write is stored after all, and takes
    /// writes again. While the database is closed every call fails with
    /// [`StoreError::Unavailable`]. An error leaves the store failed (and
    /// closed if the open failed); the next call tries again.
    pub fn recover(&self) -> Result<Recovery> {
        if self.state.load(Ordering::Acquire) == HEALTHY {
            return Ok(Recovery::Healthy);
        }
        let _one = self.reopen.lock();
        if self.state.load(Ordering::Acquire) == HEALTHY {
            return Ok(Recovery::Healthy);
        }
        let min_free = self.config.write_buffer_bytes as u64;
        if let Err(e) = probe_space(&self.config.path, min_free) {
            return Ok(Recovery::NotYet(e.to_string()));
        }
        let started = Instant::now();
        if let Some(old) = self.db.swap(None) {
            let mut old = old;
            let deadline = Instant::now() + REOPEN_WAIT;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still) if Instant::now() >= deadline => {
                        self.db.store(Some(still));
                        return Err(StoreError::Unavailable(format!(
                            "the database is still in use after {REOPEN_WAIT:?}; reopening later"
                        )));
                    }
                    Err(still) => {
                        old = still;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }
        }
        let db = open_db(&self.config)?;
        check_format(&db)?;
        let (hints, bytes) = hint_totals(&db)?;
        // Queued digests are of writes the objects family holds: a rebuild
        // (if the marker is gone, as it is after any digest change) covers
        // them.
        self.digests.pending.lock().clear();
        if let Some(c) = &self.objects {
            c.clear();
        }
        *self.digests_clean.write() = digests_at_open(&db, self.config.key_hash)?;
        let reconciled = self.reconcile(&db)?;
        self.hint_count.store(hints, Ordering::Relaxed);
        self.hint_bytes.store(bytes, Ordering::Relaxed);
        self.db.store(Some(Arc::new(db)));
        {
            let mut failure = self.failure.lock();
            *failure = None;
            self.state.store(HEALTHY, Ordering::Release);
        }
        self.reopens.fetch_add(1, Ordering::Relaxed);
        Ok(Recovery::Reopened {
            took: started.elapsed(),
            reconciled,
        })
    }

    /// Tells the listener about every key whose failed write the reopened
    /// database holds after all (a WAL record appended whose sync failed),
    /// under each key's lock. Returns how many.
    fn reconcile(&self, db: &DB) -> Result<usize> {
        let pending = std::mem::take(&mut *self.uncertain.lock());
        self.uncertain_any.store(false, Ordering::Release);
        if self.uncertain_overflow.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                max = MAX_UNCERTAIN,
                "more writes failed than the store remembers: anti-entropy trees may miss some of them until their next rebuild"
            );
        }
        let Some(listener) = &self.listener else {
            return Ok(0);
        };
        let mut told = 0;
        for (key, (partition, hash, known)) in pending {
            let kr = KeyRef {
                partition,
                hash,
                key: &key,
            };
            let _guard = self.key_lock(hash);
            let stored = read_object(db, &kr)?.map(|o| o.digest());
            if stored != known {
                listener.digest_changed(&kr, known, stored);
                told += 1;
            }
        }
        Ok(told)
    }

    /// A guard under which the digest index may lag the objects: clears
    /// the "digests clean" marker (synced) if it is set. Held across a write
    /// of an object and the queueing of its digest, so that
    /// [`Store::flush`] never marks the index clean in between.
    fn digests_dirty(&self, db: &DB) -> Result<RwLockReadGuard<'_, bool>> {
        let clean = self.digests_clean.read();
        if !*clean {
            return Ok(clean);
        }
        drop(clean);
        let mut clean = self.digests_clean.write();
        if *clean {
            let mut synced = WriteOptions::default();
            synced.set_sync(true);
            db.delete_cf_opt(cf(db, CF_META), META_DIGESTS_CLEAN.as_bytes(), &synced)
                .map_err(|e| self.write_failed(e))?;
            *clean = false;
        }
        Ok(RwLockWriteGuard::downgrade(clean))
    }

    /// Writes the queued digest changes now (a scan of the digest index
    /// must see every write that returned before it).
    fn flush_digests(&self, db: &DB) -> Result<()> {
        self.digests.flush(db).map_err(|e| self.write_failed(e))
    }

    /// Reads a key's stored object.
    pub fn get(&self, key: &KeyRef<'_>) -> Result<Option<Object>> {
        let db = self.handle()?;
        let Some(cache) = &self.objects else {
            return read_object(&db, key);
        };
        let okey = object_key(key.partition, key.key);
        if let Some(o) = cache.get(&okey) {
            return Ok(Some((*o).clone()));
        }
        let _guard = self.key_lock(key.hash);
        if let Some(o) = cache.get(&okey) {
            return Ok(Some((*o).clone()));
        }
        let stored = read_object_at(&db, &okey)?;
        if let Some(o) = &stored {
            cache.set(okey, Some(o));
        }
        Ok(stored)
    }

    /// Bytes the object cache holds now, after its pending evictions, and
    /// its bound (both 0 without a cache): for metrics and tests.
    pub fn object_cache_bytes(&self) -> (u64, u64) {
        match &self.objects {
            Some(c) => {
                c.cache.run_pending_tasks();
                (
                    c.cache.weighted_size(),
                    c.cache.policy().max_capacity().unwrap_or(0),
                )
            }
            None => (0, 0),
        }
    }

    /// Atomically replaces a key's object by `f(current)` under the key's
    /// lock. Returning `None` removes the key. Writes only if the state
    /// changed; the key's new digest is queued for the digest index (see
    /// the crate documentation). The current object is read from the object
    /// cache when it holds the key.
    pub fn update<F>(&self, key: &KeyRef<'_>, f: F) -> Result<Updated>
    where
        F: FnOnce(Option<Object>) -> Option<Object>,
    {
        let db = self.handle()?;
        let _guard = self.key_lock(key.hash);
        let okey = object_key(key.partition, key.key);
        let (current, cached) = match self.objects.as_ref().and_then(|c| c.get(&okey)) {
            Some(o) => (Some((*o).clone()), true),
            None => (read_object_at(&db, &okey)?, false),
        };
        let old_digest = current.as_ref().map(|o| o.digest());
        let scope = (self.config.index_scope)(key.key);
        let old_entries = index::entries(key.partition, key.key, scope, current.as_ref());
        // What the old state had seen: the versions the change log takes
        // are those above it.
        let seen = match (&current, self.changes.enabled) {
            (Some(c), true) => Some(c.join()),
            _ => None,
        };
        let next = f(current);
        let new_digest = next.as_ref().map(|o| o.digest());
        if old_digest == new_digest {
            if !cached && let (Some(c), Some(o)) = (&self.objects, &next) {
                c.set(okey, Some(o));
            }
            return Ok(Updated {
                object: next,
                changed: false,
            });
        }
        self.writable()?;
        let _dirty = self.digests_dirty(&db)?;
        // The object and its index entries change in one batch.
        let mut batch = WriteBatch::default();
        match &next {
            Some(obj) => batch.put_cf(cf(&db, CF_OBJECTS), &okey, encode_object(obj)),
            None => batch.delete_cf(cf(&db, CF_OBJECTS), &okey),
        }
        let new_entries = index::entries(key.partition, key.key, scope, next.as_ref());
        let icf = cf(&db, CF_INDEX);
        for gone in old_entries.difference(&new_entries) {
            batch.delete_cf(icf, gone);
        }
        for added in new_entries.difference(&old_entries) {
            batch.put_cf(icf, added, []);
        }
        // So are the versions it brings (the change log).
        let logged = self.log_changes(&db, &mut batch, key, seen.as_ref(), next.as_ref());
        let written = db.write_opt(batch, &self.write_opts);
        if let Err(e) = written {
            if let Some(c) = &self.objects {
                c.forget(&okey);
            }
            self.note_uncertain(key, old_digest);
            return Err(self.write_failed(e));
        }
        if let Some(c) = &self.objects {
            c.set(okey, next.as_ref());
        }
        let change = new_digest.map_or(DigestChange::Removed, DigestChange::Set);
        self.digests.push(digest_key(key.hash, key.key), change);
        self.written(key);
        self.logged(logged);
        if let Some(l) = &self.listener {
            l.digest_changed(key, old_digest, new_digest);
        }
        self.notify_change(key);
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

    /// Merges an object that came from another replica into the stored one
    /// without reading it: the object is written as a merge operand of the
    /// `objects` family and RocksDB applies the DVVSet `sync` when the key
    /// is next read, flushed or compacted ([`sync_operands`]). The replica
    /// path of a coordinated write, where nobody needs the merged object
    /// back. The key's lock is held for the write only, so a concurrent
    /// [`Store::update`] (a read then a put) never overwrites the operand;
    /// the digest index learns the new digest from the background flusher.
    pub fn merge_deferred(&self, key: &KeyRef<'_>, incoming: &Object) -> Result<()> {
        let db = self.handle()?;
        self.writable()?;
        let operand = encode_object(incoming);
        let _guard = self.key_lock(key.hash);
        let okey = object_key(key.partition, key.key);
        let _dirty = self.digests_dirty(&db)?;
        // The stored object is not read, so the entries it loses to this
        // merge are not known: the incoming siblings' entries are added (a
        // superset) and a scan checks each against the object.
        let mut batch = WriteBatch::default();
        batch.merge_cf(cf(&db, CF_OBJECTS), &okey, operand);
        let scope = (self.config.index_scope)(key.key);
        for entry in index::entries(key.partition, key.key, scope, Some(incoming)) {
            batch.put_cf(cf(&db, CF_INDEX), entry, []);
        }
        // Nor which of its versions are new here: every one is logged (the
        // same entry keys as any earlier logging of them).
        let logged = self.log_changes(&db, &mut batch, key, None, Some(incoming));
        let written = db.write_opt(batch, &self.write_opts);
        if let Some(c) = &self.objects {
            c.forget(&okey);
        }
        if let Err(e) = written {
            // Whether the operand landed is known after a reopen: the
            // listener is told then if the stored digest is not the
            // absent key's.
            self.note_uncertain(key, None);
            return Err(self.write_failed(e));
        }
        self.digests.push(
            digest_key(key.hash, key.key),
            DigestChange::Recompute(key.partition),
        );
        self.written(key);
        self.logged(logged);
        if let Some(l) = &self.listener {
            l.merged(key);
        }
        self.notify_change(key);
        Ok(())
    }

    /// The replica step of a coordinated write: the incoming object is
    /// merged into the stored one, deferred or read first as
    /// [`StoreConfig::deferred_merges`] says.
    pub fn merge_replicated(&self, key: &KeyRef<'_>, incoming: &Object) -> Result<()> {
        if self.config.deferred_merges {
            self.merge_deferred(key, incoming)
        } else {
            self.merge(key, incoming).map(|_| ())
        }
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
        let db = self.handle()?;
        let mut out = Vec::new();
        for item in partition_objects(&db, partition, &[], after).take(limit) {
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
        let db = self.handle()?;
        let mut out = Vec::new();
        for item in partition_objects(&db, partition, prefix, after) {
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

    /// Up to `limit` live keys (not only tombstones) of one partition that
    /// start with `prefix`, from `start` (inclusive) on, in key order: the
    /// scan of a key range (Riak's `$key` index and its `$bucket` index).
    pub fn scan_keys_from(
        &self,
        partition: u32,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let db = self.handle()?;
        let lower = object_key(partition, prefix);
        let from = object_key(partition, start).max(lower.clone());
        let mut opts = ReadOptions::default();
        bound_to_prefix(&mut opts, &lower);
        let mut out = Vec::new();
        for item in db.iterator_cf_opt(
            cf(&db, CF_OBJECTS),
            opts,
            IteratorMode::From(&from, Direction::Forward),
        ) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if !k.starts_with(&lower) {
                break;
            }
            if decode_object(&v)?.is_deleted() {
                continue;
            }
            out.push(k[4..].to_vec());
        }
        Ok(out)
    }

    /// Up to `limit` secondary index entries of one partition in `range`
    /// (terms `from..=to` of one field of one scope), in (term, key) order,
    /// strictly after the position `after` (a term and an object key) when
    /// given, keeping only terms `keep` accepts. Answers `(term, object
    /// key)`, the term as a client writes it (an integer in decimal).
    ///
    /// Every entry stands for a live sibling that carries it. With
    /// [`StoreConfig::deferred_merges`] a replica's merge adds entries
    /// without knowing which ones the merge removes, so each entry found is
    /// checked against the stored object (one read) and skipped, and
    /// deleted, unless a live sibling still carries it.
    pub fn scan_index(
        &self,
        partition: u32,
        range: &index::IndexRange,
        after: Option<(&[u8], &[u8])>,
        limit: usize,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = index::field_prefix(partition, &range.scope, &range.field);
        let with = |enc: &[u8]| {
            let mut k = prefix.clone();
            k.extend_from_slice(enc);
            k
        };
        let mut start = with(&range.from);
        if let Some((term, key)) = after {
            let Some(enc) = range.encode(term) else {
                return Ok(Vec::new());
            };
            let mut resume = with(&enc);
            resume.extend_from_slice(key.strip_prefix(&range.scope[..]).unwrap_or(key));
            resume.push(0);
            start = start.max(resume);
        }
        let db = self.handle()?;
        let mut opts = ReadOptions::default();
        // Every entry whose term is `to` starts with `prefix ‖ enc(to)`.
        let upper = successor(&with(&range.to));
        if let Some(u) = &upper {
            opts.set_iterate_upper_bound(u.clone());
        }
        let mut out = Vec::new();
        for item in db.iterator_cf_opt(
            cf(&db, CF_INDEX),
            opts,
            IteratorMode::From(&start, Direction::Forward),
        ) {
            if out.len() >= limit {
                break;
            }
            let (k, _) = item?;
            if !k.starts_with(&prefix) || upper.as_deref().is_some_and(|u| &k[..] >= u) {
                break;
            }
            let Some((term, used)) = index::decode_term(&range.field, &k[prefix.len()..]) else {
                continue;
            };
            if !keep(&term) {
                continue;
            }
            let mut key = range.scope.clone();
            key.extend_from_slice(&k[prefix.len() + used..]);
            if self.config.deferred_merges && !self.entry_is_live(&db, partition, &k, &key)? {
                continue;
            }
            out.push((term, key));
        }
        Ok(out)
    }

    /// Whether a live sibling of the object under `key` carries the index
    /// entry `entry` (see [`Store::scan_index`]). An entry none carries is
    /// deleted, under the key's lock (so a merge that adds it back at that
    /// moment is never undone), unless the store refuses writes.
    fn entry_is_live(&self, db: &DB, partition: u32, entry: &[u8], key: &[u8]) -> Result<bool> {
        let scope = (self.config.index_scope)(key);
        let carried = || -> Result<bool> {
            let object = read_object_at(db, &object_key(partition, key))?;
            Ok(index::entries(partition, key, scope, object.as_ref()).contains(entry))
        };
        if carried()? {
            return Ok(true);
        }
        let _guard = self.key_lock((self.config.key_hash)(key));
        if carried()? {
            return Ok(true);
        }
        if self.writable().is_ok()
            && let Err(e) = db.delete_cf_opt(cf(db, CF_INDEX), entry, &self.write_opts)
        {
            let e = self.write_failed(e);
            tracing::warn!(error = %e, "could not delete a stale index entry");
        }
        Ok(false)
    }

    /// Up to `limit` distinct *groups* of keys of one partition that hold
    /// at least one live key, in key order: the keys starting with `prefix`
    /// are grouped by `group`, which gives the length of the key prefix
    /// naming a key's group (`None`: the key is in no group and is stepped
    /// over), and every key starting with a group's prefix must be in that
    /// group (a length-delimited component after `prefix` is such a
    /// grouping). The answer is the groups' prefixes, after the group
    /// prefix `after` (exclusive). Seeks past each group found, so the cost
    /// follows the number of groups, not of keys (except keys that are only
    /// tombstones, which are stepped over).
    pub fn scan_groups(
        &self,
        partition: u32,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        group: impl Fn(&[u8]) -> Option<usize>,
    ) -> Result<Vec<Vec<u8>>> {
        let lower = object_key(partition, prefix);
        let start = match after {
            Some(g) => match successor(g) {
                Some(next) => object_key(partition, &next),
                None => return Ok(Vec::new()),
            },
            None => lower.clone(),
        };
        let db = self.handle()?;
        let mut opts = ReadOptions::default();
        bound_to_prefix(&mut opts, &lower);
        let mut it = db.raw_iterator_cf_opt(cf(&db, CF_OBJECTS), opts);
        it.seek(&start);
        let mut out = Vec::new();
        while out.len() < limit && it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let key = &k[4..];
            let Some(g) = group(key)
                .filter(|&len| len <= key.len())
                .map(|len| &key[..len])
            else {
                it.next();
                continue;
            };
            if decode_object(v)?.is_deleted() {
                it.next();
                continue;
            }
            let g = g.to_vec();
            let next = successor(&g);
            out.push(g);
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
        let db = self.handle()?;
        self.flush_digests(&db)?;
        let start = lo.to_be_bytes();
        let mut opts = ReadOptions::default();
        if let Some(next) = hi.checked_add(1) {
            opts.set_iterate_upper_bound(next.to_be_bytes().to_vec());
        }
        for item in db.iterator_cf_opt(
            cf(&db, CF_DIGESTS),
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
        let db = self.handle()?;
        let _guard = self.key_lock(key.hash);
        let hkey = hint_key(owner, key.partition, key.key);
        let cf = cf(&db, CF_HINTS);
        let existing = match db.get_pinned_cf(cf, &hkey)? {
            Some(bytes) => Some((bytes.len(), self.decode_hint_value(&bytes)?)),
            None => None,
        };
        if existing.is_none() && self.hint_count() >= limits.max_hints {
            return Ok(HintPut::Refused(HintBound::Count));
        }
        let existed = existing.is_some();
        // Sizes as accounted in `hint_bytes`: stored key plus stored value.
        let (old_size, created_ms, merged, old_hint) = match existing {
            Some((len, (created, e))) => {
                let merged = DvvSet::sync(&e, object);
                (hkey.len() + len, created, merged, Some(e))
            }
            None => (0, unix_ms(SystemTime::now()), object.clone(), None),
        };
        let value = encode_hint_value(&merged, created_ms);
        let (old_size, new_size) = (old_size as u64, (hkey.len() + value.len()) as u64);
        if new_size > old_size
            && self.hint_bytes().saturating_add(new_size - old_size) > limits.max_bytes
        {
            return Ok(HintPut::Refused(HintBound::Bytes));
        }
        self.writable()?;
        // The hint and the versions it brings here, in one batch.
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, &hkey, value);
        let seen = old_hint.as_ref().map(DvvSet::join);
        let logged = self.log_changes(&db, &mut batch, key, seen.as_ref(), Some(&merged));
        db.write_opt(batch, &self.write_opts)
            .map_err(|e| self.write_failed(e))?;
        self.logged(logged);
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
        let db = self.handle()?;
        match db.get_pinned_cf(cf(&db, CF_HINTS), hint_key(owner, key.partition, key.key))? {
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
        let db = self.handle()?;
        let mut out = Vec::new();
        for item in db.iterator_cf_opt(
            cf(&db, CF_HINTS),
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
        let db = self.handle()?;
        let _guard = self.key_lock(key.hash);
        let hkey = hint_key(owner, key.partition, key.key);
        let cf = cf(&db, CF_HINTS);
        let Some(bytes) = db.get_pinned_cf(cf, &hkey)? else {
            return Ok(false);
        };
        if self.decode_hint_value(&bytes)?.1.digest() != delivered_digest {
            return Ok(false);
        }
        let size = (hkey.len() + bytes.len()) as u64;
        drop(bytes);
        self.writable()?;
        db.delete_cf_opt(cf, &hkey, &self.write_opts)
            .map_err(|e| self.write_failed(e))?;
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
        let db = self.handle()?;
        let _guard = self.key_lock(key.hash);
        let hkey = hint_key(owner, key.partition, key.key);
        let cf = cf(&db, CF_HINTS);
        let Some(bytes) = db.get_pinned_cf(cf, &hkey)? else {
            return Ok(false);
        };
        if self.decode_hint_value(&bytes)?.0 > unix_ms(cutoff) {
            return Ok(false);
        }
        let size = (hkey.len() + bytes.len()) as u64;
        drop(bytes);
        self.writable()?;
        db.delete_cf_opt(cf, &hkey, &self.write_opts)
            .map_err(|e| self.write_failed(e))?;
        self.hint_count.fetch_sub(1, Ordering::Relaxed);
        self.hint_bytes.fetch_sub(size, Ordering::Relaxed);
        Ok(true)
    }

    /// Whether a hint for `owner` and this key is kept (no decoding).
    pub fn has_hint(&self, owner: &str, key: &KeyRef<'_>) -> Result<bool> {
        let db = self.handle()?;
        Ok(db
            .get_pinned_cf(cf(&db, CF_HINTS), hint_key(owner, key.partition, key.key))?
            .is_some())
    }

    /// Every owner some hint is kept for, in key order. Seeks past each
    /// owner found, so the cost follows the number of owners, not of hints.
    pub fn hint_owners(&self) -> Result<Vec<String>> {
        let db = self.handle()?;
        let mut it = db.raw_iterator_cf(cf(&db, CF_HINTS));
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
    /// Skipped while the store refuses writes.
    pub fn compact(&self) {
        if self.writable().is_err() {
            return;
        }
        let Ok(db) = self.handle() else { return };
        for name in [CF_OBJECTS, CF_DIGESTS, CF_INDEX] {
            db.compact_range_cf(cf(&db, name), None::<&[u8]>, None::<&[u8]>);
        }
    }

    /// Bytes of the live SST files of every column family (RocksDB's
    /// `rocksdb.live-sst-files-size`; the write-ahead log is not counted).
    /// 0 while the database is being reopened.
    pub fn sst_bytes(&self) -> u64 {
        let Ok(db) = self.handle() else { return 0 };
        ALL_CFS
            .iter()
            .filter_map(|name| {
                db.property_int_value_cf(cf(&db, name), "rocksdb.live-sst-files-size")
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
        let db = self.handle()?;
        let mut out = std::collections::BTreeMap::new();
        for item in db.iterator_cf(cf(&db, CF_HINTS), IteratorMode::Start) {
            let (k, _) = item?;
            if let Some((o, _, _)) = parse_hint_key(&k) {
                *out.entry(o).or_insert(0) += 1;
            }
        }
        Ok(out)
    }

    /// Reads a small named value (node identity, ring state).
    pub fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let db = self.handle()?;
        Ok(db.get_cf(cf(&db, CF_META), name.as_bytes())?)
    }

    /// Durably writes a small named value (always synced: it is rare and
    /// describes the node itself).
    pub fn put_meta(&self, name: &str, value: &[u8]) -> Result<()> {
        self.writable()?;
        let db = self.handle()?;
        let mut o = WriteOptions::default();
        o.set_sync(true);
        db.put_cf_opt(cf(&db, CF_META), name.as_bytes(), value, &o)
            .map_err(|e| self.write_failed(e))
    }

    /// Flushes memtables and the WAL to disk (graceful shutdown). Refused
    /// while the store refuses writes (the WAL is replayed at the next open).
    pub fn flush(&self) -> Result<()> {
        self.writable()?;
        let db = self.handle()?;
        self.sync_wal()?;
        let mut clean = self.digests_clean.write();
        self.flush_digests(&db)?;
        for name in ALL_CFS {
            db.flush_cf(cf(&db, name))
                .map_err(|e| self.write_failed(e))?;
        }
        if !*clean {
            let mut synced = WriteOptions::default();
            synced.set_sync(true);
            db.put_cf_opt(
                cf(&db, CF_META),
                META_DIGESTS_CLEAN.as_bytes(),
                [1],
                &synced,
            )
            .map_err(|e| self.write_failed(e))?;
            *clean = true;
        }
        Ok(())
    }

    /// `fsync`s the write-ahead log: once this returns `Ok`, every write
    /// that returned before it was called survives a power loss. Counted in
    /// [`Store::wal_sync_stats`].
    ///
    /// It `fdatasync`s every WAL file (`NNNNNN.log`) of the data directory
    /// through a descriptor of its own, and the directory when the set of
    /// WAL files changed since the last sync, instead of calling RocksDB's
    /// `FlushWAL(true)`: that call, racing with a WAL append that fails
    /// (a full disk), syncs a writer that has seen an error, which aborts
    /// the process in librocksdb 7.8 (an assertion its Debian build keeps).
    /// The result is the same: RocksDB appends to its WAL with plain
    /// `write(2)`s (no WAL buffer is kept in the process: `manual_wal_flush`
    /// is off), never recycles WAL files, and syncing a file through any
    /// descriptor makes its written data durable. A WAL file deleted
    /// meanwhile is skipped (RocksDB deletes one only once its data is in
    /// synced table files). Works while the store is failed or reopening.
    pub fn sync_wal(&self) -> Result<()> {
        let started = unix_ms(SystemTime::now());
        match self.sync_wal_files() {
            Ok(()) => {
                self.wal_syncs.fetch_add(1, Ordering::Relaxed);
                self.wal_synced_ms.fetch_max(started, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.wal_sync_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn sync_wal_files(&self) -> Result<()> {
        let dir = &self.config.path;
        let mut wals: Vec<OsString> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            if is_wal_file(&name) {
                wals.push(name);
            }
        }
        wals.sort();
        for name in &wals {
            match std::fs::File::open(dir.join(name)) {
                Ok(f) => f.sync_data()?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut synced = self.wal_files_synced.lock();
        if *synced != wals {
            // A new WAL file's name must survive a power cut too.
            std::fs::File::open(dir)?.sync_all()?;
            *synced = wals;
        }
        Ok(())
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

    /// Approximate number of stored objects (RocksDB's estimate; for metrics).
    /// 0 while the database is being reopened.
    pub fn estimated_objects(&self) -> u64 {
        let Ok(db) = self.handle() else { return 0 };
        db.property_int_value_cf(cf(&db, CF_OBJECTS), "rocksdb.estimate-num-keys")
            .ok()
            .flatten()
            .unwrap_or(0)
    }
}

/// One partition's stored objects whose keys start with `prefix`, in key
/// order, from just after `after` (exclusive) or from the first: the walk
/// under the per-partition scans. Yields (stored key, encoded object).
fn partition_objects<'a>(
    db: &'a DB,
    partition: u32,
    prefix: &[u8],
    after: Option<&[u8]>,
) -> impl Iterator<Item = Result<RawEntry>> + 'a {
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
    db.iterator_cf_opt(
        cf(db, CF_OBJECTS),
        opts,
        IteratorMode::From(&start, Direction::Forward),
    )
    .map(|item| item.map_err(StoreError::from))
    // The upper bound is unset when the prefix is all 0xff bytes.
    .take_while(move |item| !matches!(item, Ok((k, _)) if !k.starts_with(&lower)))
}

/// Whether `name` is a RocksDB WAL file: digits, then `.log`.
fn is_wal_file(name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    name.strip_suffix(".log")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `dir` takes writes: its file system reports at least `min_free`
/// bytes available to us, and a small file can be written and synced there
/// (then removed). What a full disk, a quota or the test harness's fault
/// layer refuse.
fn probe_space(dir: &Path, min_free: u64) -> std::io::Result<()> {
    if let Some(free) = available_bytes(dir)
        && free < min_free
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!(
                "{} has {free} bytes available, less than the {min_free} a reopen needs",
                dir.display()
            ),
        ));
    }
    let path = dir.join(SPACE_PROBE);
    let written = (|| {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&[0u8; SPACE_PROBE_BYTES])?;
        f.sync_data()
    })();
    let _ = std::fs::remove_file(&path);
    written.map_err(|e| {
        let kind = if io_no_space(&e) {
            std::io::ErrorKind::StorageFull
        } else {
            e.kind()
        };
        std::io::Error::new(
            kind,
            format!("a test write in {} failed: {e}", dir.display()),
        )
    })
}

/// Bytes available to an unprivileged user on the file system of `dir`
/// (`statvfs`), if it can be asked.
fn available_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero `statvfs` is a valid value of that plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is a valid, writable
    // `statvfs` that outlives the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
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

/// The smallest byte string greater than every string starting with
/// `prefix` (`None` when no such string exists: the prefix is all `0xFF`).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut b = prefix.to_vec();
    while let Some(last) = b.pop() {
        if last < 0xff {
            b.push(last + 1);
            return Some(b);
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use dynkv_vclock::{Content, VersionVector};

    use super::*;

    /// Records every digest change it is told about.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Heard>>);

    /// (key, old digest, new digest).
    type Heard = (Vec<u8>, Option<u64>, Option<u64>);

    impl WriteListener for Recorder {
        fn digest_changed(&self, key: &KeyRef<'_>, old: Option<u64>, new: Option<u64>) {
            self.0.lock().push((key.key.to_vec(), old, new));
        }
        fn merged(&self, key: &KeyRef<'_>) {
            panic!("no deferred merge in these tests: {:?}", key.key);
        }
    }

    fn key(k: &[u8]) -> KeyRef<'_> {
        KeyRef {
            partition: 7,
            hash: 0x7000 + k.len() as u64,
            key: k,
        }
    }

    fn obj(v: &str) -> Object {
        DvvSet::update(
            &VersionVector::new(),
            &Object::new(),
            "n1",
            Content::value(v.to_string(), "text/plain", 1),
        )
    }

    fn full_disk() -> StoreError {
        StoreError::NoSpace(
            "IO error: No space left on device: While appending to file: 000004.log".into(),
        )
    }

    #[test]
    fn full_disk_errors_are_told_apart() {
        assert!(is_no_space(
            "IO error: No space left on device: While appending to file: /d/000004.log: No space left on device"
        ));
        assert!(is_no_space("IO error: Space limit reached"));
        assert!(is_no_space(
            "IO error: While open a file for appending: /d/x: Disk quota exceeded"
        ));
        assert!(!is_no_space("IO error: Input/output error"));
        assert!(!is_no_space("Corruption: block checksum mismatch"));
        let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(StoreError::from(enospc).is_no_space());
        let edquot = std::io::Error::from_raw_os_error(libc::EDQUOT);
        assert!(StoreError::from(edquot).is_no_space());
        let eio = std::io::Error::from_raw_os_error(libc::EIO);
        assert!(matches!(StoreError::from(eio), StoreError::Io(_)));
    }

    #[test]
    fn wal_files_are_recognised_by_name() {
        for (name, wal) in [
            ("000004.log", true),
            ("12.log", true),
            (".log", false),
            ("LOG", false),
            ("LOG.old.1700000000", false),
            ("MANIFEST-000005", false),
            ("000009.sst", false),
            ("x4.log", false),
        ] {
            assert_eq!(is_wal_file(std::ffi::OsStr::new(name)), wal, "{name}");
        }
    }

    #[test]
    fn a_healthy_store_needs_no_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&StoreConfig::new(dir.path()), None).unwrap();
        assert_eq!(s.state(), StoreState::Healthy);
        assert_eq!(s.recover().unwrap(), Recovery::Healthy);
        assert_eq!(s.health().reopens, 0);
        assert!(
            !dir.path().join(SPACE_PROBE).exists(),
            "the space probe is removed"
        );
    }

    #[test]
    fn a_failed_store_refuses_writes_serves_reads_and_recovers_by_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let listener = Arc::new(Recorder::default());
        let mut cfg = StoreConfig::new(dir.path());
        // The reopen needs room for one memtable flush.
        cfg.write_buffer_bytes = 1 << 20;
        let s = Store::open(&cfg, Some(listener.clone())).unwrap();
        let (a, b) = (key(b"a"), key(b"b"));
        s.merge(&a, &obj("va")).unwrap();
        s.put_hint("n2", &b, &obj("vb")).unwrap();
        let hints = (s.hint_count(), s.hint_bytes());

        assert!(s.write_failed(full_disk()).is_no_space());
        let h = s.health();
        assert_eq!(h.state, StoreState::NoSpace);
        assert!(h.reason.unwrap().contains("No space left"));
        assert!(h.since.is_some() && !h.reopening);
        // Writes are refused before RocksDB is asked, every kind of them.
        assert!(s.merge(&b, &obj("x")).unwrap_err().is_no_space());
        assert!(s.put_hint("n3", &a, &obj("x")).unwrap_err().is_no_space());
        let d = s.get_hint("n2", &b).unwrap().unwrap().digest();
        assert!(
            s.remove_hint_if_unchanged("n2", &b, d)
                .unwrap_err()
                .is_no_space()
        );
        assert!(s.put_meta("m", b"x").unwrap_err().is_no_space());
        assert!(s.flush().unwrap_err().is_no_space());
        // An update that changes nothing needs no write: still answered.
        assert!(!s.merge(&a, &obj("va")).unwrap().changed);
        // Reads go on.
        assert_eq!(s.get(&a).unwrap(), Some(obj("va")));
        assert_eq!(s.hints(None, None, 10).unwrap().len(), 1);
        // The sync of the WAL works (it does not go through RocksDB).
        s.sync_wal().unwrap();

        let Recovery::Reopened { reconciled, .. } = s.recover().unwrap() else {
            panic!("not reopened");
        };
        assert_eq!(reconciled, 0);
        let h = s.health();
        assert_eq!(h.state, StoreState::Healthy);
        assert!(h.reason.is_none() && !h.reopening);
        assert_eq!(h.reopens, 1);
        assert_eq!(s.get(&a).unwrap(), Some(obj("va")));
        assert_eq!((s.hint_count(), s.hint_bytes()), hints);
        assert!(s.merge(&b, &obj("vb")).unwrap().changed);
        assert!(s.remove_hint_if_unchanged("n2", &b, d).unwrap());
        assert_eq!(s.hint_count(), 0);
        s.flush().unwrap();
        assert_eq!(s.recover().unwrap(), Recovery::Healthy);
        // The listener heard of each successful change exactly once.
        let heard: Vec<Vec<u8>> = listener.0.lock().iter().map(|e| e.0.clone()).collect();
        assert_eq!(heard, vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn another_io_error_refuses_writes_as_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&StoreConfig::new(dir.path()), None).unwrap();
        let eio = std::io::Error::from_raw_os_error(libc::EIO);
        // Only RocksDB's I/O errors fail the store; this one is not.
        assert!(matches!(s.write_failed(eio), StoreError::Io(_)));
        assert_eq!(s.state(), StoreState::Healthy);
        s.enter_state_for_test(FAILED, "IO error: Input/output error");
        assert!(matches!(
            s.merge(&key(b"a"), &obj("x")),
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(s.state(), StoreState::Failed);
    }

    #[test]
    fn a_reopen_waits_for_calls_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = StoreConfig::new(dir.path());
        cfg.write_buffer_bytes = 1 << 20;
        let s = Arc::new(Store::open(&cfg, None).unwrap());
        s.merge(&key(b"a"), &obj("va")).unwrap();
        s.write_failed(full_disk());
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let holder = {
            let s = s.clone();
            std::thread::spawn(move || {
                let db = s.handle().unwrap();
                held_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                // Still the old database, still readable.
                read_object(&db, &key(b"a")).unwrap()
            })
        };
        held_rx.recv().unwrap();
        let Recovery::Reopened { took, .. } = s.recover().unwrap() else {
            panic!("not reopened");
        };
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert_eq!(holder.join().unwrap(), Some(obj("va")));
        assert_eq!(s.get(&key(b"a")).unwrap(), Some(obj("va")));
    }

    #[test]
    fn the_listener_hears_of_a_failed_write_found_stored_after_the_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let listener = Arc::new(Recorder::default());
        let mut cfg = StoreConfig::new(dir.path());
        cfg.write_buffer_bytes = 1 << 20;
        let s = Store::open(&cfg, Some(listener.clone())).unwrap();
        let (a, b) = (key(b"a"), key(b"b"));
        s.merge(&a, &obj("va")).unwrap();
        s.merge(&b, &obj("vb")).unwrap();
        let da = obj("va").digest();
        listener.0.lock().clear();
        // As if the write of `a` had failed while the listener knew it as
        // absent, yet its WAL record was replayed; and `b` failed and is
        // indeed as the listener knows it.
        s.note_uncertain(&a, None);
        s.note_uncertain(&b, Some(obj("vb").digest()));
        // A key whose later write succeeded is no longer in doubt.
        let c = key(b"cc");
        s.note_uncertain(&c, None);
        s.merge(&c, &obj("vc")).unwrap();
        s.write_failed(full_disk());
        let Recovery::Reopened { reconciled, .. } = s.recover().unwrap() else {
            panic!("not reopened");
        };
        assert_eq!(reconciled, 1);
        let heard = listener.0.lock().clone();
        assert_eq!(
            heard,
            vec![
                (b"cc".to_vec(), None, Some(obj("vc").digest())),
                (b"a".to_vec(), None, Some(da)),
            ]
        );
    }

    impl Store {
        fn enter_state_for_test(&self, state: u8, reason: &str) {
            *self.failure.lock() = Some(Failure {
                reason: reason.into(),
                since: SystemTime::now(),
            });
            self.state.store(state, Ordering::Release);
        }
    }
}
