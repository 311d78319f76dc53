//! What the Riak routes of one node share, reached through an `Extension`
//! (so [`crate::AppState`] stays as it is): the cache of bucket properties
//! and the counters `GET /stats` reports.
//!
//! The cache is a concurrent one (`moka`): reads take no lock that other
//! requests wait on, entries expire [`CACHE_TTL`] after they were read
//! from the cluster, and at most [`CACHE_MAX`] buckets are kept (the least
//! useful are evicted first), so no client can grow it without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::bucket::BucketProps;

/// How long a node trusts its cached copy of a bucket's properties.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// Most buckets whose properties are cached per node.
pub const CACHE_MAX: u64 = 10_000;

/// The Riak routes' shared state on one node.
#[derive(Clone)]
pub struct Riak(Arc<Shared>);

struct Shared {
    props: moka::sync::Cache<Vec<u8>, Arc<BucketProps>>,
    stats: Stats,
}

impl Default for Riak {
    fn default() -> Self {
        Riak(Arc::new(Shared {
            props: moka::sync::Cache::builder()
                .max_capacity(CACHE_MAX)
                .time_to_live(CACHE_TTL)
                .build(),
            stats: Stats::default(),
        }))
    }
}

impl Riak {
    /// A bucket's cached properties, when read less than [`CACHE_TTL`] ago.
    pub fn cached_props(&self, bucket: &[u8]) -> Option<Arc<BucketProps>> {
        self.0.props.get(bucket)
    }

    /// Caches a bucket's properties, as just read or written.
    pub fn cache_props(&self, bucket: &[u8], props: Arc<BucketProps>) {
        self.0.props.insert(bucket.to_vec(), props);
    }

    /// The `/stats` counters.
    pub fn stats(&self) -> &Stats {
        &self.0.stats
    }
}

/// Operation counters reported by `GET /stats` (since the node started).
#[derive(Default)]
pub struct Stats {
    /// Object reads.
    pub gets: AtomicU64,
    /// Object writes.
    pub puts: AtomicU64,
    /// Object deletes.
    pub deletes: AtomicU64,
    /// Reads answered with siblings.
    pub siblings_answered: AtomicU64,
    /// Reads whose siblings were resolved to the newest.
    pub siblings_resolved: AtomicU64,
    /// Key listings.
    pub key_listings: AtomicU64,
    /// Bucket listings.
    pub bucket_listings: AtomicU64,
}

impl Stats {
    /// Counts one.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The order in which a 2i query asks a partition's
/// `replicas` (given in preference order): this node first when it is one
/// of them (a write through it was applied here before it was
/// acknowledged), then the primaries in preference order (a write through
/// another node is forwarded to the first reachable one), believed-up
/// ones first. So a client that writes and then lists or queries through
/// one node sees its write, which spreading partitions over their
/// replicas would not guarantee (the last replica may still be applying
/// it).
pub fn covering_order(
    coord: &dynkv_quorum::Coordinator,
    mut replicas: Vec<dynkv_ring::NodeId>,
) -> Vec<dynkv_ring::NodeId> {
    if let Some(i) = replicas.iter().position(|r| r == coord.node_id()) {
        let own = replicas.remove(i);
        replicas.insert(0, own);
    }
    replicas.sort_by_key(|r| !coord.health().is_up(r));
    replicas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_props_expire_after_the_ttl() {
        let riak = Riak::default();
        assert!(riak.cached_props(b"b").is_none());
        riak.cache_props(b"b", Arc::new(BucketProps::defaults(3)));
        assert_eq!(riak.cached_props(b"b").unwrap().n_val, 3);
        assert!(riak.cached_props(b"other").is_none());
        std::thread::sleep(CACHE_TTL + Duration::from_millis(50));
        assert!(riak.cached_props(b"b").is_none());
    }
}
