//! The replica path of one node's store, timed: a 50/50 mix of `get` and a
//! replica `merge` (an incoming object that descends the stored one) over
//! uniformly random keys, after preloading K keys of 1 KiB values.
//!
//! ```text
//! cargo run --release -p dynkv-storage --example replica_path -- \
//!     [--keys 10000,100000] [--ops 200000] [--threads 1,2] [--json FILE] [--dir DIR]
//!     [--object-cache-mb N] [--merge deferred|read]
//! ```
//!
//! `--merge` picks how the replica step applies an object
//! (`StoreConfig::deferred_merges`; the store's default is `read`).
//!
//! Prints µs/op and ops/s per kind, per key count and thread count, and
//! writes the same table as JSON with `--json`. The timed loop is the
//! function `run_mix`, so `valgrind --tool=callgrind --collect-atstart=no
//! --toggle-collect='*run_mix*'` counts the instructions of the mix alone.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dynkv_storage::{KeyRef, Store, StoreConfig};
use dynkv_vclock::{Content, DvvSet, Object, VersionVector};

/// The actor every benchmark version is written by.
const ACTOR: &str = "n1#a";
/// Bytes of every value.
const VALUE_BYTES: usize = 1024;
/// Ring partitions the keys spread over.
const PARTITIONS: u64 = 64;

/// Command-line settings.
struct Args {
    keys: Vec<u64>,
    ops: u64,
    threads: Vec<usize>,
    json: Option<PathBuf>,
    dir: Option<PathBuf>,
    object_cache_mb: Option<u64>,
    deferred_merges: Option<bool>,
}

fn parse_args() -> Args {
    let mut args = Args {
        keys: vec![10_000, 100_000],
        ops: 200_000,
        threads: vec![1, 2],
        json: None,
        dir: None,
        object_cache_mb: None,
        deferred_merges: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let list = |v: &str| -> Vec<u64> {
            v.split(',')
                .map(|n| n.trim().parse().expect("a number"))
                .collect()
        };
        match flag.as_str() {
            "--keys" => args.keys = list(&value),
            "--ops" => args.ops = value.parse().expect("a number"),
            "--threads" => args.threads = list(&value).into_iter().map(|n| n as usize).collect(),
            "--json" => args.json = Some(value.into()),
            "--dir" => args.dir = Some(value.into()),
            "--object-cache-mb" => args.object_cache_mb = Some(value.parse().expect("a number")),
            "--merge" => args.deferred_merges = Some(value == "deferred"),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// The key name of index `i`, its ring hash and partition.
struct BenchKey {
    name: Vec<u8>,
    hash: u64,
    partition: u32,
}

impl BenchKey {
    fn new(i: u64) -> BenchKey {
        let name = format!("bench/key-{i:010}").into_bytes();
        let hash = xxhash_rust::xxh3::xxh3_64(&name);
        BenchKey {
            name,
            hash,
            partition: (hash % PARTITIONS) as u32,
        }
    }

    fn key_ref(&self) -> KeyRef<'_> {
        KeyRef {
            partition: self.partition,
            hash: self.hash,
            key: &self.name,
        }
    }
}

/// Version `counter` of a key as its coordinator writes it: one value with
/// the dot (`ACTOR`, counter), superseding every earlier version. The value
/// is pseudo-random bytes drawn from `seed`, so it does not compress.
fn version(counter: u64, seed: u64) -> Object {
    let context = VersionVector::from_pairs([(ACTOR.to_string(), counter.saturating_sub(1))]);
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let value: Vec<u8> = (0..VALUE_BYTES / 8)
        .flat_map(|_| rng.next().to_le_bytes())
        .collect();
    DvvSet::update(
        &context,
        &Object::new(),
        ACTOR,
        Content::value(value, "application/octet-stream", counter),
    )
}

/// A small deterministic generator (xorshift64*), one per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Time spent and operations done, per kind.
#[derive(Default, Clone, Copy)]
struct Tally {
    gets: u64,
    get_time: Duration,
    merges: u64,
    merge_time: Duration,
}

/// The timed mix: `ops` operations, half `get`, half `merge` of the next
/// version of a uniformly random key.
#[inline(never)]
fn run_mix(store: &Store, versions: &[AtomicU64], ops: u64, seed: u64) -> Tally {
    let mut rng = Rng(seed | 1);
    let mut t = Tally::default();
    for _ in 0..ops {
        let r = rng.next();
        let i = (r >> 1) % versions.len() as u64;
        let key = BenchKey::new(i);
        if r & 1 == 0 {
            let started = Instant::now();
            let got = store.get(&key.key_ref()).expect("get");
            t.get_time += started.elapsed();
            assert!(got.is_some(), "every preloaded key is found");
            t.gets += 1;
        } else {
            let counter = versions[i as usize].fetch_add(1, Ordering::Relaxed) + 1;
            let incoming = version(counter, r);
            let started = Instant::now();
            store
                .merge_replicated(&key.key_ref(), &incoming)
                .expect("merge");
            t.merge_time += started.elapsed();
            t.merges += 1;
        }
    }
    t
}

/// One measured row of the table.
struct Row {
    keys: u64,
    threads: usize,
    tally: Tally,
    wall: Duration,
}

fn main() {
    let args = parse_args();
    let mut rows = Vec::new();
    for &keys in &args.keys {
        let tmp;
        let dir = match &args.dir {
            Some(d) => {
                let d = d.join(format!("k{keys}"));
                let _ = std::fs::remove_dir_all(&d);
                d
            }
            None => {
                tmp = tempfile::tempdir().expect("temp dir");
                tmp.path().to_path_buf()
            }
        };
        let mut config = StoreConfig::new(&dir);
        if let Some(mb) = args.object_cache_mb {
            config.object_cache_bytes = mb << 20;
        }
        if let Some(deferred) = args.deferred_merges {
            config.deferred_merges = deferred;
        }
        let store = Arc::new(Store::open(&config, None).expect("open"));
        let started = Instant::now();
        let versions: Arc<Vec<AtomicU64>> =
            Arc::new((0..keys).map(|_| AtomicU64::new(1)).collect());
        for i in 0..keys {
            let key = BenchKey::new(i);
            store
                .merge(&key.key_ref(), &version(1, i))
                .expect("preload");
        }
        store.flush().expect("flush");
        eprintln!(
            "preloaded {keys} keys in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        for &threads in &args.threads {
            let per_thread = args.ops / threads as u64;
            let started = Instant::now();
            let handles: Vec<_> = (0..threads)
                .map(|n| {
                    let store = Arc::clone(&store);
                    let versions = Arc::clone(&versions);
                    std::thread::spawn(move || {
                        run_mix(&store, &versions, per_thread, 0x9e37_79b9 * (n as u64 + 1))
                    })
                })
                .collect();
            let mut tally = Tally::default();
            for h in handles {
                let t = h.join().expect("bench thread");
                tally.gets += t.gets;
                tally.get_time += t.get_time;
                tally.merges += t.merges;
                tally.merge_time += t.merge_time;
            }
            let row = Row {
                keys,
                threads,
                tally,
                wall: started.elapsed(),
            };
            print_row(&row);
            rows.push(row);
        }
        drop(store);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, to_json(&rows)).expect("write json");
    }
}

fn micros_per_op(time: Duration, ops: u64) -> f64 {
    time.as_secs_f64() * 1e6 / ops.max(1) as f64
}

fn print_row(r: &Row) {
    let t = &r.tally;
    let total = (t.gets + t.merges) as f64 / r.wall.as_secs_f64();
    println!(
        "keys {:>8} threads {} | get {:>7.2} µs/op | merge {:>7.2} µs/op | total {:>9.0} ops/s",
        r.keys,
        r.threads,
        micros_per_op(t.get_time, t.gets),
        micros_per_op(t.merge_time, t.merges),
        total
    );
}

fn to_json(rows: &[Row]) -> String {
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            let t = &r.tally;
            let secs = r.wall.as_secs_f64();
            format!(
                "{{\"keys\":{},\"threads\":{},\"get_us\":{:.3},\"merge_us\":{:.3},\"get_ops_per_s\":{:.0},\"merge_ops_per_s\":{:.0},\"ops_per_s\":{:.0}}}",
                r.keys,
                r.threads,
                micros_per_op(t.get_time, t.gets),
                micros_per_op(t.merge_time, t.merges),
                t.gets as f64 / secs,
                t.merges as f64 / secs,
                (t.gets + t.merges) as f64 / secs
            )
        })
        .collect();
    format!("[{}]\n", items.join(",\n"))
}
