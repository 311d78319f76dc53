//! The node configuration: typed sections, loaded in layers (embedded
//! `config/default.toml` → `--config FILE` → `DYNKV__SECTION__KEY`
//! environment variables) and checked by [`Config::validate`] before
//! anything starts.
//!
//! Values arrive typed: durations as humantime strings (`"500ms"`, `"3s"`;
//! the previous release's integer `_ms`/`_s` keys are still accepted, with
//! a warning naming the new key, see [`layers::LEGACY_DURATIONS`]), quorums
//! as `one|quorum|all|<n>`, members as `id@host:port`. Every error, from
//! parsing or from validation, names the setting and the file or
//! environment variable its value came from. The mechanism crates' own
//! config types are made from these sections once, in `wiring`.

mod de;
pub mod layers;

use std::path::{Path, PathBuf};
use std::time::Duration;

use dynkv_rpc::ClusterSecret;
use dynkv_rpc::messages::Quorum;
use serde::Deserialize;

pub use layers::Sources;

/// The defaults, compiled in so that `dynkv serve` needs no file.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or variable could not be read or parsed.
    #[error("{0}")]
    Load(#[from] config::ConfigError),
    /// The values break a rule.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Every tunable of a node. `config/default.toml` documents each with its
/// default; the field docs here say what the node does with it.
#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    /// `[node]`: identity, addresses, data directory.
    pub node: NodeSection,
    /// `[cluster]`: members, N, partitions, the secret.
    pub cluster: ClusterSection,
    /// `[quorum]`: default consistency and deadlines.
    pub quorum: QuorumSection,
    /// `[storage]`: RocksDB, durability, tombstone reaping.
    pub storage: StorageSection,
    /// `[limits]`: request and object size limits, bulkheads.
    pub limits: LimitsSection,
    /// `[failure_detector]`: pings and circuit breakers.
    pub failure_detector: FailureDetectorSection,
    /// `[handoff]`: hinted handoff.
    pub handoff: HandoffSection,
    /// `[read_repair]`: repair after reads.
    pub read_repair: ReadRepairSection,
    /// `[pbs]`: latency recording for the staleness model.
    pub pbs: PbsSection,
    /// `[antientropy]`: Merkle-tree exchanges.
    pub antientropy: AntiEntropySection,
    /// `[membership]`: live membership and ownership handoff.
    pub membership: MembershipSection,
    /// `[internode]`: the internode transport.
    pub internode: InternodeSection,
    /// `[riak]`: Riak's protocol buffers listener.
    pub riak: RiakSection,
    /// `[feed]`: watches of keys and the change feed.
    pub feed: FeedSection,
    /// Where each value came from, and the warnings of the load (not a
    /// setting).
    #[serde(skip)]
    pub sources: Sources,
}

/// Identity and addresses of this node.
#[derive(Clone, Debug, Deserialize)]
pub struct NodeSection {
    /// This node's id: its name on the ring and in version vectors; 1 to 64
    /// characters without '@', ',' or spaces. Never reused for a node that
    /// lost its data.
    pub id: String,
    /// Bind address of the public HTTP API (key-value and Riak APIs,
    /// admin, metrics).
    pub listen: String,
    /// Address clients use to reach the public API (empty: `listen`).
    pub advertise: String,
    /// Bind address of the internode listener.
    pub cluster_listen: String,
    /// Address peers use to reach the internode listener (empty:
    /// `cluster_listen`).
    pub cluster_advertise: String,
    /// RocksDB directory (created if missing).
    pub data_dir: PathBuf,
    /// Async worker threads (0: one per core). Several nodes sharing a
    /// small machine run better with fewer each than with one per core.
    pub worker_threads: usize,
    /// Take a new incarnation at this start (after restoring a backup).
    pub new_incarnation: bool,
    /// Connections the public listener serves at once; past it a new
    /// connection is closed as soon as it is accepted, so that idle or
    /// slow clients cannot take every file descriptor and buffer.
    pub max_connections: usize,
    /// Longest time the public listener waits for a request's headers,
    /// counted from when it starts waiting (an idle keep-alive connection
    /// included): a client trickling headers is dropped after it.
    #[serde(deserialize_with = "de::duration")]
    pub header_read_timeout: Duration,
    /// A public connection with no byte read or written for this long is
    /// closed (a client that stops reading its answer or sending its body).
    #[serde(deserialize_with = "de::duration")]
    pub idle_timeout: Duration,
    /// PEM certificate chain of the public listener; empty serves plain
    /// HTTP. Reloaded with `tls_key` on SIGHUP.
    pub tls_cert: String,
    /// PEM private key matching `tls_cert`.
    pub tls_key: String,
    /// TLS implementation: `rustls` (TLS 1.2 and 1.3, its safe default
    /// suites) or `openssl` (the system libssl, for clients such as the
    /// Riak Python client that only offer DHE-RSA or RSA CBC suites).
    pub tls_engine: TlsEngine,
    /// OpenSSL cipher string for TLS 1.2 and below (`openssl` engine
    /// only); empty keeps Mozilla's intermediate list.
    pub tls_ciphers: String,
    /// Lowest TLS version accepted: `1.2` or `1.3`.
    pub tls_min_version: String,
}

/// Which library terminates TLS on the public listener.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsEngine {
    /// rustls with the ring provider: memory-safe, TLS 1.2/1.3, AEAD
    /// suites with forward secrecy only.
    Rustls,
    /// The system OpenSSL: any cipher string, for legacy clients.
    Openssl,
}

/// Membership and replication.
#[derive(Clone, Debug, Deserialize)]
pub struct ClusterSection {
    /// Every member, this node included, at its cluster address; parsed
    /// from `id@host:port` at load. Empty: a cluster of this node alone.
    #[serde(deserialize_with = "de::members")]
    pub members: Vec<Member>,
    /// Replicas per key (N), 1 to 16.
    pub n_val: usize,
    /// Ring partitions: a power of two up to 65536, fixed for the life of
    /// the cluster.
    pub partitions: u32,
    /// The cluster secret, hex (at least 32 bytes); prefer `secret_file`.
    pub secret: String,
    /// A file holding the cluster secret, hex.
    pub secret_file: String,
    /// Highest internode message version to speak (0: this build's newest).
    pub protocol_version: u32,
    /// The setting `secret` replaced; refused with a pointer to it.
    #[serde(default)]
    pub cluster_token: Option<String>,
}

/// Default consistency and deadlines.
#[derive(Clone, Debug, Deserialize)]
pub struct QuorumSection {
    /// R when a request gives none: `one`, `quorum`, `all` or 1..=N.
    #[serde(deserialize_with = "de::quorum")]
    pub r: Quorum,
    /// W when a request gives none: `one`, `quorum`, `all` or 1..=N.
    #[serde(deserialize_with = "de::quorum")]
    pub w: Quorum,
    /// Deadline of a whole client request that gives no `timeout_ms`
    /// (was `request_timeout_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub request_timeout: Duration,
    /// Deadline of one internode call inside a request; at most
    /// `request_timeout` (was `rpc_timeout_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub rpc_timeout: Duration,
    /// Internode TCP connect deadline; at most `rpc_timeout` (was
    /// `rpc_connect_timeout_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub rpc_connect_timeout: Duration,
    /// How long an `Idempotency-Key` is remembered (was
    /// `idempotency_window_s`).
    #[serde(deserialize_with = "de::duration")]
    pub idempotency_window: Duration,
    /// When a read asks one more replica because its first replies are
    /// slow: `p99` (of the slowest replica asked), `<n>ms` or `none`.
    #[serde(deserialize_with = "de::speculative_retry")]
    pub speculative_retry: dynkv_quorum::SpeculativeRetry,
}

/// RocksDB, durability and tombstone reaping.
#[derive(Clone, Debug, Deserialize)]
pub struct StorageSection {
    /// fsync the WAL on every write before acknowledging it.
    pub sync_writes: bool,
    /// Period of the background WAL fsync, 0 (off) to 1 hour; ignored with
    /// `sync_writes` (was `sync_interval_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub sync_interval: Duration,
    /// RocksDB block cache, MiB; `None` ("auto"): a quarter of the
    /// memory the node may use ([`StorageSection::block_cache_bytes`]).
    #[serde(deserialize_with = "de::mib_or_auto")]
    pub block_cache_mb: Option<usize>,
    /// RocksDB memtable size per column family, MiB.
    pub write_buffer_mb: usize,
    /// Decoded objects kept in memory, MiB (0: no object cache).
    pub object_cache_mb: u64,
    /// A replica applies a replicated write as a RocksDB merge operand
    /// (no read on the write path) instead of a read-modify-write.
    pub deferred_merges: bool,
    /// Rate limit of flushes and compactions, MiB/s (0: unlimited).
    pub background_mb_per_sec: u64,
    /// Age of a tombstone before it may be reaped (was
    /// `tombstone_grace_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub tombstone_grace: Duration,
    /// Pause between reaping passes; 0 never reaps (was
    /// `reap_interval_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub reap_interval: Duration,
    /// Least time between the two checks that confirm a key (was
    /// `reap_settle_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub reap_settle: Duration,
    /// Keys per reaping check message, 1 to 100000.
    pub reap_batch: usize,
}

/// Smallest block cache "auto" picks, MiB: the fixed size before it.
const MIN_AUTO_BLOCK_CACHE_MB: u64 = 64;

impl StorageSection {
    /// The RocksDB block cache in bytes. "auto" takes a quarter of the
    /// memory the node may use (the cgroup's limit if it has one, else the
    /// machine's), at least 64 MiB, as Riak gives its LevelDB caches a
    /// share of the machine's memory: a fixed small cache made every read
    /// of a data set larger than it decompress a block from the page cache
    /// (docs/PERFORMANCE.md, seventh run, "Scaling with data"). RocksDB
    /// fills the cache only as blocks are read, so a small data set costs
    /// no more memory than before.
    pub fn block_cache_bytes(&self) -> usize {
        let mib = match self.block_cache_mb {
            Some(mib) => mib as u64,
            None => ((usable_memory_bytes().unwrap_or(0) / 4) >> 20).max(MIN_AUTO_BLOCK_CACHE_MB),
        };
        usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

/// The memory this process may use: the cgroup (v2) limit if one is set,
/// else the machine's total; `None` where neither can be read.
fn usable_memory_bytes() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| parse_meminfo_total(&m));
    let limit = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    match (total, limit) {
        (Some(t), Some(l)) => Some(t.min(l)),
        (t, l) => t.or(l),
    }
}

/// `MemTotal` of /proc/meminfo, in bytes.
fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Request and object limits, and the client bulkhead.
#[derive(Clone, Debug, Deserialize)]
pub struct LimitsSection {
    /// Longest key, bytes.
    pub max_key_bytes: usize,
    /// Largest value, bytes (413 above, before the body is buffered).
    pub max_value_bytes: usize,
    /// Largest internode frame, bytes; at least twice `max_object_bytes`
    /// plus 1 MiB.
    pub max_rpc_bytes: usize,
    /// Longest `timeout_ms` a client may ask for (was `max_timeout_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub max_timeout: Duration,
    /// Client requests served at once; more get 503 `overloaded`.
    pub max_inflight_requests: usize,
    /// Siblings a write may leave (409 `too_many_siblings` past it).
    pub max_siblings: usize,
    /// Siblings past which a write is counted in
    /// `dynkv_sibling_warnings_total`.
    pub warn_siblings: usize,
    /// Largest object a write may leave, bytes (413 `object_too_large`).
    pub max_object_bytes: usize,
    /// Longest a client may take to send a request body (408
    /// `body_timeout`); the in-flight permit is taken only once it has
    /// arrived, so slow senders cannot hold the node's permits.
    #[serde(deserialize_with = "de::duration")]
    pub body_read_timeout: Duration,
    /// Longest stored `Content-Type`, bytes.
    pub max_content_type_bytes: usize,
    /// Most Riak user metadata entries (`X-Riak-Meta-*`) on one write.
    pub max_meta_entries: usize,
    /// Most bytes of Riak user metadata (names and values) on one write.
    pub max_meta_bytes: usize,
    /// Most secondary index entries (`X-Riak-Index-*`) on one write.
    pub max_index_entries: usize,
    /// Most links (`Link` header entries) on one write.
    pub max_links: usize,
}

/// The failure detector and the per-peer circuit breakers.
#[derive(Clone, Debug, Deserialize)]
pub struct FailureDetectorSection {
    /// Ping every peer this often (was `ping_interval_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub ping_interval: Duration,
    /// A ping unanswered this long is a failure; at most `ping_interval`
    /// (was `ping_timeout_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub ping_timeout: Duration,
    /// Consecutive failures that open a peer's breaker.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before one probe (was
    /// `breaker_cooldown_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub breaker_cooldown: Duration,
}

/// Hinted handoff.
#[derive(Clone, Debug, Deserialize)]
pub struct HandoffSection {
    /// Run the handoff worker.
    pub enabled: bool,
    /// Pause between passes over the hints (was `interval_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub interval: Duration,
    /// Hints read per batch.
    pub batch: usize,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Most hints kept for others.
    pub max_hints: u64,
    /// Most bytes of hints kept for others.
    pub max_hint_bytes: u64,
    /// Age past which a hint is dropped undelivered; 0 never (was
    /// `hint_window_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub hint_window: Duration,
    /// First retry delay after an owner failed (was `backoff_base_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub backoff_base: Duration,
    /// Longest retry delay (was `backoff_max_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub backoff_max: Duration,
}

/// Read repair.
#[derive(Clone, Debug, Deserialize)]
pub struct ReadRepairSection {
    /// Repair stale replicas a read found.
    pub enabled: bool,
    /// Fraction of reads that also ask the replicas not read in full for a
    /// digest, to repair them, 0 to 1 (replicas read in full are repaired
    /// whenever they disagree).
    pub chance: f64,
    /// How long late replies are awaited for repair (was `wait_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub wait: Duration,
    /// Repairs running at once; past it reads are not repaired.
    pub concurrency: usize,
}

/// Latency recording for probabilistically bounded staleness
/// (`GET /admin/pbs`).
#[derive(Clone, Debug, Deserialize)]
pub struct PbsSection {
    /// Record replica write and read latencies per peer.
    pub record: bool,
    /// Recorded counts halve this often, 1 second to 1 day.
    #[serde(deserialize_with = "de::duration")]
    pub half_life: Duration,
    /// Place the split of a round trip with the replica's wall-clock stamp
    /// (synchronised clocks); false: in halves.
    pub clocks: bool,
}

/// Merkle-tree anti-entropy.
#[derive(Clone, Debug, Deserialize)]
pub struct AntiEntropySection {
    /// Run exchanges.
    pub enabled: bool,
    /// Pause between rounds (was `exchange_interval_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub exchange_interval: Duration,
    /// Exchanges per round.
    pub concurrency: usize,
    /// Keys fetched and repaired per message.
    pub keys_per_batch: usize,
    /// Pause between repair batches (was `batch_pause_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub batch_pause: Duration,
    /// Rebuild every tree this often (was `rebuild_interval_s`).
    #[serde(deserialize_with = "de::duration")]
    pub rebuild_interval: Duration,
}

/// Live membership.
#[derive(Clone, Debug, Deserialize)]
pub struct MembershipSection {
    /// Members' cluster addresses (host:port) to join through on first
    /// start.
    pub seeds: Vec<String>,
    /// Gossip with one random member this often (was
    /// `gossip_interval_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub gossip_interval: Duration,
    /// Objects per ownership-handoff batch.
    pub transfer_batch: usize,
    /// Pause between handoff batches (was `transfer_pause_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub transfer_pause: Duration,
    /// Partitions streamed at once by this node.
    pub transfer_concurrency: usize,
    /// Wait after a ring switch before dropping partitions no longer
    /// replicated (was `cleanup_grace_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub cleanup_grace: Duration,
}

/// Watches of keys and the change feed (`dynkv_quorum::feed`).
#[derive(Clone, Debug, Deserialize)]
pub struct FeedSection {
    /// Log every new version in the change log and serve `/feed`.
    pub enabled: bool,
    /// How far behind now the feed reads; at least the longest write
    /// timeout clients use.
    #[serde(deserialize_with = "de::duration")]
    pub settle: Duration,
    /// How often a waiting feed request asks the logs again.
    #[serde(deserialize_with = "de::duration")]
    pub poll_interval: Duration,
    /// Watches and feed requests waiting at once; more get 503.
    pub max_waiting: usize,
    /// A watch's or long poll's wait when the client names none.
    #[serde(deserialize_with = "de::duration")]
    pub default_wait: Duration,
    /// Longest wait a client may ask for (`timeout_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub max_wait: Duration,
    /// Most events per feed answer.
    pub batch: usize,
    /// Members that may be silent while the feed advances; -1: quorum(N) - 1.
    pub tolerate_silent: i64,
    /// Change log entries older than this are trimmed.
    #[serde(deserialize_with = "de::duration")]
    pub retention: Duration,
    /// Bytes the change log may hold, MiB; the oldest entries past it are
    /// trimmed.
    pub retention_mb: u64,
    /// How often the change log is trimmed.
    #[serde(deserialize_with = "de::duration")]
    pub trim_interval: Duration,
}

/// Riak's protocol buffers API (PBC).
#[derive(Clone, Debug, Deserialize)]
pub struct RiakSection {
    /// Bind address (`host:port`) of the PBC listener; empty: no listener.
    /// Its connections count toward `node.max_connections` separately
    /// from HTTP's, and its requests toward `limits.max_inflight_requests`
    /// with HTTP's.
    pub pb_listen: String,
    /// Largest PBC frame accepted (message code and body); a larger
    /// declared length closes the connection before anything is allocated.
    pub pb_max_frame_bytes: usize,
}

/// The internode transport.
#[derive(Clone, Debug, Deserialize)]
pub struct InternodeSection {
    /// Requests in flight per connection, either direction.
    pub max_inflight_per_peer: usize,
    /// Inbound internode connections served at once.
    pub max_connections: usize,
    /// Deadline of a handshake (was `handshake_timeout_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub handshake_timeout: Duration,
    /// Longest pause between reconnect attempts to a peer (was
    /// `reconnect_backoff_max_ms`).
    #[serde(deserialize_with = "de::duration")]
    pub reconnect_backoff_max: Duration,
}

/// One member of the static membership list, parsed from `id@host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Node id.
    pub id: String,
    /// Its cluster address, `host:port`.
    pub addr: String,
}

impl Config {
    /// Loads the layers: defaults, then `file` if given, then the
    /// environment; then validates.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with_env(file, None)
    }

    /// [`Config::load`] with `env` in place of the process environment
    /// (`None`: the process environment).
    pub fn load_with_env(
        file: Option<&Path>,
        env: Option<config::Map<String, String>>,
    ) -> Result<Config, ConfigError> {
        let (merged, sources) = layers::load(file, env)?;
        let mut cfg: Config = merged
            .try_deserialize()
            .map_err(|e| layers::explain(e, &sources))?;
        cfg.sources = sources;
        cfg.validate()?;
        Ok(cfg)
    }

    /// What the operator should change in the configuration (deprecated
    /// keys); the node logs each at warn when it starts.
    pub fn warnings(&self) -> &[String] {
        &self.sources.warnings
    }

    /// The address clients use to reach this node's public API.
    pub fn advertise(&self) -> &str {
        if self.node.advertise.is_empty() {
            &self.node.listen
        } else {
            &self.node.advertise
        }
    }

    /// The address peers use to reach this node's internode listener.
    pub fn cluster_advertise(&self) -> &str {
        if self.node.cluster_advertise.is_empty() {
            &self.node.cluster_listen
        } else {
            &self.node.cluster_advertise
        }
    }

    /// The message version this node is pinned to, if any.
    pub fn pinned_protocol_version(&self) -> Option<u32> {
        (self.cluster.protocol_version != 0).then_some(self.cluster.protocol_version)
    }

    /// `key` with where its value came from, for error messages.
    fn at(&self, key: &str) -> String {
        self.sources.describe(key)
    }

    /// The configured cluster secret (`secret`, else `secret_file`), if any.
    pub fn configured_secret(&self) -> Result<Option<ClusterSecret>, ConfigError> {
        let (hex, from) = if !self.cluster.secret.is_empty() {
            (self.cluster.secret.clone(), self.at("cluster.secret"))
        } else if !self.cluster.secret_file.is_empty() {
            let f = &self.cluster.secret_file;
            let from = self.at("cluster.secret_file");
            let hex = std::fs::read_to_string(f)
                .map_err(|e| ConfigError::Invalid(format!("{from}: cannot read {f}: {e}")))?;
            (hex, format!("{from}, {f}"))
        } else {
            return Ok(None);
        };
        ClusterSecret::from_hex(&hex)
            .map(Some)
            .map_err(|e| ConfigError::Invalid(format!("{from}: {e}")))
    }

    /// The secret this node runs with: the configured one, or, for a
    /// single node that listens only on loopback, a throwaway one (it has
    /// no peer to talk to).
    pub fn secret(&self) -> Result<ClusterSecret, ConfigError> {
        match self.configured_secret()? {
            Some(s) => Ok(s),
            None if self.may_run_without_secret() => Ok(ClusterSecret::ephemeral()),
            None => Err(ConfigError::Invalid(
                "a node with peers, or listening off loopback, needs a cluster secret of at least 32 bytes: set cluster.secret_file (or cluster.secret) to what `dynkv admin secret` prints"
                    .into(),
            )),
        }
    }

    /// True for a lone node bound to loopback addresses only.
    fn may_run_without_secret(&self) -> bool {
        self.members().len() <= 1
            && is_loopback(&self.node.listen)
            && is_loopback(&self.node.cluster_listen)
            && self.membership.seeds.is_empty()
    }

    /// The membership list, this node included (alone when none is configured).
    pub fn members(&self) -> Vec<Member> {
        if self.cluster.members.is_empty() {
            return vec![Member {
                id: self.node.id.clone(),
                addr: self.cluster_advertise().to_string(),
            }];
        }
        self.cluster.members.clone()
    }

    /// Checks the rules that span fields; every error names the settings
    /// and where their values came from.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let at = |k: &str| self.at(k);
        let show = |d: Duration| humantime::format_duration(d).to_string();
        if !de::valid_node_id(&self.node.id) {
            return bad(format!(
                "{} = {:?}: must be 1 to 64 characters without '@', ',' or spaces",
                at("node.id"),
                self.node.id
            ));
        }
        if self.node.worker_threads > 1024 {
            return bad(format!(
                "{} must be 0 (one per core) to 1024, got {}",
                at("node.worker_threads"),
                self.node.worker_threads
            ));
        }
        let n = self.cluster.n_val;
        if n == 0 || n > 16 {
            return bad(format!("{} must be 1 to 16, got {n}", at("cluster.n_val")));
        }
        let p = self.cluster.partitions;
        if !p.is_power_of_two() || p > 65536 {
            return bad(format!(
                "{} must be a power of two up to 65536, got {p}",
                at("cluster.partitions")
            ));
        }
        for (key, q) in [("quorum.r", self.quorum.r), ("quorum.w", self.quorum.w)] {
            if let Quorum::Count(c) = q
                && q.required_of(n).is_err()
            {
                return bad(format!(
                    "{} must be one, quorum, all or a number from 1 to {n} ({}), got {c}",
                    at(key),
                    at("cluster.n_val")
                ));
            }
        }
        if self.cluster.cluster_token.is_some() {
            return bad(format!(
                "{} is gone: internode traffic is authenticated by cluster.secret_file (or cluster.secret), at least 32 bytes in hex, as `dynkv admin secret` prints",
                at("cluster.cluster_token")
            ));
        }
        if self.node.cluster_listen.is_empty() || self.node.cluster_listen == self.node.listen {
            return bad(format!(
                "{} = {:?} must be set and differ from {}",
                at("node.cluster_listen"),
                self.node.cluster_listen,
                at("node.listen")
            ));
        }
        let v = self.cluster.protocol_version;
        if v != 0
            && !(dynkv_rpc::wire::MIN_PROTOCOL_VERSION..=dynkv_rpc::PROTOCOL_VERSION).contains(&v)
        {
            return bad(format!(
                "{} must be 0 (newest) or {} to {}, got {v}",
                at("cluster.protocol_version"),
                dynkv_rpc::wire::MIN_PROTOCOL_VERSION,
                dynkv_rpc::PROTOCOL_VERSION
            ));
        }
        let n = &self.node;
        for (key, zero) in [
            ("node.max_connections", n.max_connections == 0),
            ("node.header_read_timeout", n.header_read_timeout.is_zero()),
            ("node.idle_timeout", n.idle_timeout.is_zero()),
        ] {
            if zero {
                return bad(format!("{} must be positive", at(key)));
            }
        }
        if n.tls_cert.is_empty() != n.tls_key.is_empty() {
            return bad(format!(
                "{} and {} must be set together (both empty: plain HTTP)",
                at("node.tls_cert"),
                at("node.tls_key")
            ));
        }
        if !matches!(n.tls_min_version.as_str(), "1.2" | "1.3") {
            return bad(format!(
                "{} must be 1.2 or 1.3, got {:?}",
                at("node.tls_min_version"),
                n.tls_min_version
            ));
        }
        if !n.tls_ciphers.is_empty() && n.tls_engine != TlsEngine::Openssl {
            return bad(format!(
                "{} needs {} = \"openssl\" (rustls offers only its own safe suites)",
                at("node.tls_ciphers"),
                at("node.tls_engine")
            ));
        }
        let i = &self.internode;
        for (key, zero) in [
            (
                "internode.max_inflight_per_peer",
                i.max_inflight_per_peer == 0,
            ),
            ("internode.max_connections", i.max_connections == 0),
            ("internode.handshake_timeout", i.handshake_timeout.is_zero()),
            ("riak.pb_max_frame_bytes", self.riak.pb_max_frame_bytes == 0),
        ] {
            if zero {
                return bad(format!("{} must be positive", at(key)));
            }
        }
        let q = &self.quorum;
        for (key, d) in [
            ("quorum.request_timeout", q.request_timeout),
            ("quorum.rpc_timeout", q.rpc_timeout),
            ("quorum.rpc_connect_timeout", q.rpc_connect_timeout),
        ] {
            if d.is_zero() {
                return bad(format!("{} must be positive", at(key)));
            }
        }
        if q.rpc_timeout > q.request_timeout {
            return bad(format!(
                "{} = {} must not exceed {} = {}",
                at("quorum.rpc_timeout"),
                show(q.rpc_timeout),
                at("quorum.request_timeout"),
                show(q.request_timeout)
            ));
        }
        if q.rpc_connect_timeout > q.rpc_timeout {
            return bad(format!(
                "{} = {} must not exceed {} = {}",
                at("quorum.rpc_connect_timeout"),
                show(q.rpc_connect_timeout),
                at("quorum.rpc_timeout"),
                show(q.rpc_timeout)
            ));
        }
        let fd = &self.failure_detector;
        if fd.ping_timeout.is_zero() || fd.ping_timeout > fd.ping_interval {
            return bad(format!(
                "{} = {} must be positive and at most {} = {}",
                at("failure_detector.ping_timeout"),
                show(fd.ping_timeout),
                at("failure_detector.ping_interval"),
                show(fd.ping_interval)
            ));
        }
        let s = &self.storage;
        if s.sync_interval > Duration::from_secs(3600) {
            return bad(format!(
                "{} must be 0 (off) to 1h, got {}",
                at("storage.sync_interval"),
                show(s.sync_interval)
            ));
        }
        if !s.reap_interval.is_zero() && (s.reap_batch == 0 || s.reap_batch > 100_000) {
            return bad(format!(
                "{} must be 1 to 100000, got {}",
                at("storage.reap_batch"),
                s.reap_batch
            ));
        }
        let h = &self.handoff;
        if !h.hint_window.is_zero() && h.hint_window < h.interval {
            return bad(format!(
                "{} = {} must be 0 (hints never expire) or at least {} = {}",
                at("handoff.hint_window"),
                show(h.hint_window),
                at("handoff.interval"),
                show(h.interval)
            ));
        }
        let half_life = self.pbs.half_life;
        if half_life < Duration::from_secs(1) || half_life > Duration::from_secs(86_400) {
            return bad(format!(
                "{} must be from 1s to 1 day, got {}",
                at("pbs.half_life"),
                show(half_life)
            ));
        }
        if !(0.0..=1.0).contains(&self.read_repair.chance) {
            return bad(format!(
                "{} must be between 0 and 1, got {}",
                at("read_repair.chance"),
                self.read_repair.chance
            ));
        }
        let l = &self.limits;
        for (key, zero) in [
            ("limits.max_key_bytes", l.max_key_bytes == 0),
            ("limits.max_value_bytes", l.max_value_bytes == 0),
            ("limits.max_inflight_requests", l.max_inflight_requests == 0),
        ] {
            if zero {
                return bad(format!("{} must be positive", at(key)));
            }
        }
        // An object carries its values plus a clock and metadata; a replica
        // may merge two concurrent writes at the cap into one object, which
        // must still fit a frame.
        if l.max_object_bytes < l.max_value_bytes + (64 << 10) {
            return bad(format!(
                "{} = {} must exceed {} = {} by at least 64 KiB",
                at("limits.max_object_bytes"),
                l.max_object_bytes,
                at("limits.max_value_bytes"),
                l.max_value_bytes
            ));
        }
        if l.max_rpc_bytes < 2 * l.max_object_bytes + (1 << 20) {
            return bad(format!(
                "{} = {} must be at least twice {} = {} plus 1 MiB",
                at("limits.max_rpc_bytes"),
                l.max_rpc_bytes,
                at("limits.max_object_bytes"),
                l.max_object_bytes
            ));
        }
        if l.max_siblings == 0 || l.warn_siblings > l.max_siblings {
            return bad(format!(
                "{} = {} must be positive and at least {} = {}",
                at("limits.max_siblings"),
                l.max_siblings,
                at("limits.warn_siblings"),
                l.warn_siblings
            ));
        }
        let members = &self.cluster.members;
        for (i, m) in members.iter().enumerate() {
            if members[..i].iter().any(|o| o.id == m.id) {
                return bad(format!(
                    "{}: node id {} appears twice",
                    at("cluster.members"),
                    m.id
                ));
            }
        }
        if !self.members().iter().any(|m| m.id == self.node.id) {
            return bad(format!(
                "{} = {} is not in {}",
                at("node.id"),
                self.node.id,
                at("cluster.members")
            ));
        }
        let f = &self.feed;
        for (key, zero) in [
            ("feed.poll_interval", f.poll_interval.is_zero()),
            ("feed.max_waiting", f.max_waiting == 0),
            ("feed.default_wait", f.default_wait.is_zero()),
            ("feed.batch", f.batch == 0),
            ("feed.trim_interval", f.trim_interval.is_zero()),
            ("feed.retention", f.retention.is_zero()),
            ("feed.retention_mb", f.retention_mb == 0),
        ] {
            if zero {
                return bad(format!("{} must be positive", at(key)));
            }
        }
        if f.default_wait > f.max_wait {
            return bad(format!(
                "{} = {} must not exceed {} = {}",
                at("feed.default_wait"),
                show(f.default_wait),
                at("feed.max_wait"),
                show(f.max_wait)
            ));
        }
        if f.tolerate_silent < -1 || f.tolerate_silent >= self.cluster.n_val as i64 {
            return bad(format!(
                "{} must be -1 (quorum(N) - 1) or 0 to N - 1 ({}), got {}",
                at("feed.tolerate_silent"),
                at("cluster.n_val"),
                f.tolerate_silent
            ));
        }
        // Refuses a missing, short or unreadable secret before anything starts.
        self.secret()?;
        Ok(())
    }
}

/// Whether `host:port` names a loopback address (`localhost` included).
pub fn is_loopback(addr: &str) -> bool {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Option<config::Map<String, String>> {
        Some(
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn load_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load_with_env(None, env(vars))
    }

    fn defaults() -> Config {
        load_env(&[]).unwrap()
    }

    fn node_file(dir: &tempfile::TempDir, toml: &str) -> PathBuf {
        let f = dir.path().join("node.toml");
        std::fs::write(&f, toml).unwrap();
        f
    }

    #[test]
    fn defaults_are_valid_and_single_node() {
        let c = defaults();
        assert_eq!(c.node.listen, "127.0.0.1:7070");
        assert_eq!(c.members().len(), 1);
        assert_eq!(c.quorum.w, Quorum::Majority);
        assert_eq!(c.quorum.rpc_timeout, Duration::from_secs(1));
        assert_eq!(c.quorum.idempotency_window, Duration::from_secs(600));
        assert_eq!(c.handoff.hint_window, Duration::from_secs(3 * 3600));
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }

    #[test]
    fn the_block_cache_is_a_size_or_auto() {
        let auto = defaults();
        assert_eq!(auto.storage.block_cache_mb, None);
        let machine = usable_memory_bytes().expect("this machine's memory is readable");
        assert_eq!(
            auto.storage.block_cache_bytes() as u64,
            ((machine / 4) >> 20).max(MIN_AUTO_BLOCK_CACHE_MB) << 20
        );
        for given in ["128", " 128 "] {
            let c = load_env(&[("DYNKV__STORAGE__BLOCK_CACHE_MB", given)]).unwrap();
            assert_eq!(c.storage.block_cache_bytes(), 128 << 20);
        }
        for bad in ["0", "lots", "-5"] {
            let e = load_env(&[("DYNKV__STORAGE__BLOCK_CACHE_MB", bad)]).unwrap_err();
            assert!(e.to_string().contains("block_cache_mb"), "{bad}: {e}");
        }
    }

    #[test]
    fn meminfo_total_is_read_in_bytes() {
        let m = "MemFree:  100 kB\nMemTotal:       24576000 kB\nCached: 5 kB\n";
        assert_eq!(parse_meminfo_total(m), Some(24_576_000 * 1024));
        assert_eq!(parse_meminfo_total("nothing here"), None);
    }

    #[test]
    fn the_defaults_file_uses_only_the_new_duration_keys() {
        let t: toml::Table = DEFAULT_TOML.parse().unwrap();
        for &(section, stem, _) in layers::LEGACY_DURATIONS {
            let s = t[section].as_table().unwrap();
            assert!(s.contains_key(stem), "{section}.{stem} is documented");
            let old: Vec<&String> = s
                .keys()
                .filter(|k| k.starts_with(&format!("{stem}_")))
                .collect();
            assert!(old.is_empty(), "{section}: {old:?}");
        }
    }

    #[test]
    fn durations_are_humantime_and_typed_values_parse_at_load() {
        let c = load_env(&[
            ("DYNKV__QUORUM__RPC_TIMEOUT", "750ms"),
            ("DYNKV__HANDOFF__HINT_WINDOW", "1h 30m"),
            ("DYNKV__STORAGE__REAP_INTERVAL", "0"),
            ("DYNKV__QUORUM__W", "2"),
            ("DYNKV__QUORUM__R", "ALL"),
        ])
        .unwrap();
        assert_eq!(c.quorum.rpc_timeout, Duration::from_millis(750));
        assert_eq!(c.handoff.hint_window, Duration::from_secs(5400));
        assert_eq!(c.storage.reap_interval, Duration::ZERO);
        assert_eq!(c.quorum.w, Quorum::Count(2));
        assert_eq!(c.quorum.r, Quorum::All);
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn old_ms_and_s_keys_still_work_with_a_warning_naming_the_new_key() {
        let c = load_env(&[
            ("DYNKV__QUORUM__RPC_TIMEOUT_MS", "500"),
            ("DYNKV__QUORUM__IDEMPOTENCY_WINDOW_S", "60"),
            ("DYNKV__STORAGE__REAP_INTERVAL_MS", "0"),
        ])
        .unwrap();
        assert_eq!(c.quorum.rpc_timeout, Duration::from_millis(500));
        assert_eq!(c.quorum.idempotency_window, Duration::from_secs(60));
        assert_eq!(c.storage.reap_interval, Duration::ZERO);
        let w = c.warnings();
        assert_eq!(w.len(), 3, "{w:?}");
        let rpc = w.iter().find(|w| w.contains("rpc_timeout_ms")).unwrap();
        assert!(
            rpc.contains("environment variable DYNKV__QUORUM__RPC_TIMEOUT_MS")
                && rpc.contains("deprecated")
                && rpc.contains("use quorum.rpc_timeout instead")
                && rpc.contains("DYNKV__QUORUM__RPC_TIMEOUT=500ms"),
            "{rpc}"
        );
        assert!(
            w.iter()
                .any(|w| w.contains("DYNKV__QUORUM__IDEMPOTENCY_WINDOW=1m")),
            "{w:?}"
        );

        // In a node file too, and a node file's old key beats the new
        // default.
        let dir = tempfile::tempdir().unwrap();
        let f = node_file(
            &dir,
            "[handoff]\ninterval_ms = 250\nbackoff_max_ms = 2000\n",
        );
        let c = Config::load_with_env(Some(&f), env(&[])).unwrap();
        assert_eq!(c.handoff.interval, Duration::from_millis(250));
        assert_eq!(c.handoff.backoff_max, Duration::from_secs(2));
        let w = c
            .warnings()
            .iter()
            .find(|w| w.contains("interval_ms"))
            .unwrap();
        assert!(
            w.contains(&format!("file {}", f.display()))
                && w.contains("interval = \"250ms\" in [handoff]"),
            "{w}"
        );
    }

    #[test]
    fn the_later_layer_wins_between_an_old_and_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        // Old key in the environment over a new key in the file: the old one.
        let f = node_file(&dir, "[quorum]\nrpc_timeout = \"900ms\"\n");
        let c = Config::load_with_env(Some(&f), env(&[("DYNKV__QUORUM__RPC_TIMEOUT_MS", "700")]))
            .unwrap();
        assert_eq!(c.quorum.rpc_timeout, Duration::from_millis(700));
        // New key in the environment over an old key in the file: the new
        // one, and the old one is reported as ignored.
        let f = node_file(&dir, "[quorum]\nrpc_timeout_ms = 900\n");
        let c = Config::load_with_env(Some(&f), env(&[("DYNKV__QUORUM__RPC_TIMEOUT", "700ms")]))
            .unwrap();
        assert_eq!(c.quorum.rpc_timeout, Duration::from_millis(700));
        assert!(
            c.warnings()
                .iter()
                .any(|w| w.contains("quorum.rpc_timeout_ms") && w.contains("is ignored")),
            "{:?}",
            c.warnings()
        );
        // Both in one layer: the new key, and the old one is reported.
        let c = load_env(&[
            ("DYNKV__QUORUM__RPC_TIMEOUT_MS", "700"),
            ("DYNKV__QUORUM__RPC_TIMEOUT", "800ms"),
        ])
        .unwrap();
        assert_eq!(c.quorum.rpc_timeout, Duration::from_millis(800));
        assert!(
            c.warnings().iter().any(|w| w.contains(
                "quorum.rpc_timeout_ms (environment variable DYNKV__QUORUM__RPC_TIMEOUT_MS) is ignored"
            )),
            "{:?}",
            c.warnings()
        );
    }

    #[test]
    fn parse_errors_name_the_key_and_where_it_came_from() {
        let e = load_env(&[("DYNKV__QUORUM__RPC_TIMEOUT", "fast")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("quorum.rpc_timeout (environment variable DYNKV__QUORUM__RPC_TIMEOUT)")
                && e.contains("\"fast\" is not a duration"),
            "{e}"
        );
        let e = load_env(&[("DYNKV__HANDOFF__INTERVAL", "250")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("handoff.interval") && e.contains("has no unit"),
            "{e}"
        );
        let e = load_env(&[("DYNKV__QUORUM__RPC_TIMEOUT_MS", "1s")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "quorum.rpc_timeout_ms (environment variable DYNKV__QUORUM__RPC_TIMEOUT_MS)"
            ) && e.contains("whole number of milliseconds"),
            "{e}"
        );
        let e = load_env(&[("DYNKV__QUORUM__W", "most")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("quorum.w (environment variable DYNKV__QUORUM__W)"),
            "{e}"
        );
        let e = load_env(&[("DYNKV__CLUSTER__MEMBERS", "n1@127.0.0.1:7170,n2")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cluster.members (environment variable DYNKV__CLUSTER__MEMBERS)")
                && e.contains("\"n2\" is not id@host:port"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = node_file(&dir, "[read_repair]\nwait = \"soon\"\n");
        let e = Config::load_with_env(Some(&f), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("read_repair.wait (file {})", f.display())),
            "{e}"
        );
    }

    #[test]
    fn validation_errors_name_the_keys_and_where_they_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let f = node_file(&dir, "[quorum]\nrpc_timeout = \"5s\"\n");
        let e = Config::load_with_env(Some(&f), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "quorum.rpc_timeout (file {}) = 5s must not exceed quorum.request_timeout (the defaults) = 3s",
                f.display()
            )),
            "{e}"
        );
        // An old key is named as written.
        let e = load_env(&[("DYNKV__QUORUM__REQUEST_TIMEOUT_MS", "200")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "must not exceed quorum.request_timeout_ms (environment variable DYNKV__QUORUM__REQUEST_TIMEOUT_MS) = 200ms"
            ),
            "{e}"
        );
        let e = load_env(&[("DYNKV__QUORUM__W", "4")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("quorum.w (environment variable DYNKV__QUORUM__W) must be one, quorum, all or a number from 1 to 3 (cluster.n_val (the defaults)), got 4"),
            "{e}"
        );
        let e = load_env(&[("DYNKV__CLUSTER__PARTITIONS", "60")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cluster.partitions (environment variable DYNKV__CLUSTER__PARTITIONS)"),
            "{e}"
        );
    }

    #[test]
    fn rules_are_enforced() {
        let mut c = defaults();
        c.cluster.partitions = 60;
        assert!(c.validate().is_err());
        let mut c = defaults();
        assert_eq!(c.node.worker_threads, 0, "default: one per core");
        c.node.worker_threads = 100_000;
        assert!(c.validate().is_err());
        let mut c = defaults();
        c.quorum.w = Quorum::Count(4);
        assert!(c.validate().is_err());
        let mut c = defaults();
        c.quorum.rpc_timeout = c.quorum.request_timeout + Duration::from_millis(1);
        assert!(c.validate().is_err());
        let mut c = defaults();
        let m = |s: &str| s.parse::<Member>().unwrap();
        c.cluster.members = vec![m("n2@127.0.0.1:1")];
        assert!(c.validate().is_err());
        c.cluster.members = vec![m("n1@127.0.0.1:1"), m("n1@127.0.0.1:2")];
        assert!(c.validate().is_err());
        c.cluster.members = vec![m("n1@127.0.0.1:1"), m("n2@127.0.0.1:2")];
        assert!(c.validate().is_err(), "a cluster needs a secret");
        c.cluster.secret = "ab".repeat(31);
        assert!(c.validate().is_err(), "a short secret is refused");
        c.cluster.secret = ClusterSecret::generate().to_hex();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn listener_limits_and_tls_settings_are_checked() {
        let c = defaults();
        assert_eq!(c.node.max_connections, 4096);
        assert_eq!(c.node.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.node.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.node.tls_engine, TlsEngine::Rustls);
        assert!(c.node.tls_cert.is_empty(), "plain HTTP by default");
        let mut c = defaults();
        c.node.max_connections = 0;
        assert!(c.validate().is_err());
        let mut c = defaults();
        c.node.header_read_timeout = Duration::ZERO;
        assert!(c.validate().is_err());
        let mut c = defaults();
        c.node.tls_cert = "cert.pem".into();
        assert!(c.validate().is_err(), "a certificate without a key");
        c.node.tls_key = "key.pem".into();
        assert!(c.validate().is_ok());
        c.node.tls_min_version = "1.1".into();
        assert!(c.validate().is_err(), "TLS 1.1 is not offered");
        c.node.tls_min_version = "1.2".into();
        c.node.tls_ciphers = "AES128-SHA".into();
        assert!(
            c.validate().is_err(),
            "a cipher string needs the openssl engine"
        );
        c.node.tls_engine = TlsEngine::Openssl;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn a_lone_node_off_loopback_needs_a_secret() {
        let mut c = defaults();
        assert!(c.secret().is_ok(), "a lone loopback node runs without one");
        c.node.listen = "0.0.0.0:7070".into();
        assert!(c.validate().is_err());
        c.node.listen = "127.0.0.1:7070".into();
        c.node.cluster_listen = "10.0.0.5:7170".into();
        assert!(c.validate().is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, format!("{}\n", ClusterSecret::generate().to_hex())).unwrap();
        c.cluster.secret_file = f.display().to_string();
        assert!(c.validate().is_ok());
        c.cluster.cluster_token = Some("old".into());
        assert!(c.validate().is_err(), "the old token setting is refused");
    }

    #[test]
    fn loopback_addresses() {
        assert!(is_loopback("127.0.0.1:7070"));
        assert!(is_loopback("localhost:1"));
        assert!(is_loopback("[::1]:7070"));
        assert!(!is_loopback("0.0.0.0:7070"));
        assert!(!is_loopback("n1:7170"));
    }
}
