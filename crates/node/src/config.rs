//! The node configuration: one documented serde struct, loaded in layers
//! (embedded `config/default.toml` → `--config FILE` → `DYNKV__SECTION__KEY`
//! environment variables) and checked by [`Config::validate`] before
//! anything starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dynkv_rpc::ClusterSecret;
use dynkv_rpc::messages::Quorum;
use serde::Deserialize;

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

/// Every tunable of a node. Field docs live in `config/default.toml`.
#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    /// `[node]`
    pub node: NodeSection,
    /// `[cluster]`
    pub cluster: ClusterSection,
    /// `[quorum]`
    pub quorum: QuorumSection,
    /// `[storage]`
    pub storage: StorageSection,
    /// `[limits]`
    pub limits: LimitsSection,
    /// `[failure_detector]`
    pub failure_detector: FailureDetectorSection,
    /// `[handoff]`
    pub handoff: HandoffSection,
    /// `[read_repair]`
    pub read_repair: ReadRepairSection,
    /// `[antientropy]`
    pub antientropy: AntiEntropySection,
    /// `[membership]`
    pub membership: MembershipSection,
    /// `[internode]`
    pub internode: InternodeSection,
}

/// The internode transport.
#[derive(Clone, Debug, Deserialize)]
pub struct InternodeSection {
    /// Requests in flight per connection, either direction.
    pub max_inflight_per_peer: usize,
    /// Inbound internode connections served at once.
    pub max_connections: usize,
    /// Deadline of a handshake.
    pub handshake_timeout_ms: u64,
    /// Longest pause between reconnect attempts to a peer.
    pub reconnect_backoff_max_ms: u64,
}

/// Live membership.
#[derive(Clone, Debug, Deserialize)]
pub struct MembershipSection {
    /// Members to join through on first start.
    pub seeds: Vec<String>,
    /// Gossip period.
    pub gossip_interval_ms: u64,
    /// Objects per handoff batch.
    pub transfer_batch: usize,
    /// Pause between handoff batches.
    pub transfer_pause_ms: u64,
    /// Transfers at once.
    pub transfer_concurrency: usize,
    /// Wait before dropping partitions no longer replicated.
    pub cleanup_grace_ms: u64,
}

/// Merkle-tree anti-entropy.
#[derive(Clone, Debug, Deserialize)]
pub struct AntiEntropySection {
    /// Exchanges on/off.
    pub enabled: bool,
    /// Pause between rounds.
    pub exchange_interval_ms: u64,
    /// Exchanges per round.
    pub concurrency: usize,
    /// Keys per repair batch.
    pub keys_per_batch: usize,
    /// Pause between repair batches.
    pub batch_pause_ms: u64,
    /// Full rebuild period.
    pub rebuild_interval_s: u64,
}

/// Identity and addresses of this node.
#[derive(Clone, Debug, Deserialize)]
pub struct NodeSection {
    /// Node id (actor and ring name).
    pub id: String,
    /// Bind address of the public HTTP API.
    pub listen: String,
    /// Address clients use (empty: `listen`).
    pub advertise: String,
    /// Bind address of the internode listener.
    pub cluster_listen: String,
    /// Address peers use (empty: `cluster_listen`).
    pub cluster_advertise: String,
    /// RocksDB directory.
    pub data_dir: PathBuf,
    /// Async worker threads (0: one per core). Several nodes sharing a
    /// small machine run better with fewer each than with one per core.
    pub worker_threads: usize,
    /// Take a new incarnation at this start (after restoring a backup).
    pub new_incarnation: bool,
}

/// Membership and replication.
#[derive(Clone, Debug, Deserialize)]
pub struct ClusterSection {
    /// `id@host:port` of every member, at its cluster address.
    pub members: Vec<String>,
    /// N.
    pub n_val: usize,
    /// Ring partitions.
    pub partitions: u32,
    /// The cluster secret, hex.
    pub secret: String,
    /// A file holding the cluster secret, hex.
    pub secret_file: String,
    /// Highest message version to speak (0: this build's newest).
    pub protocol_version: u32,
    /// The setting `secret` replaced; refused with a pointer to it.
    #[serde(default)]
    pub cluster_token: Option<String>,
}

/// Default consistency and deadlines.
#[derive(Clone, Debug, Deserialize)]
pub struct QuorumSection {
    /// Default R.
    pub r: String,
    /// Default W.
    pub w: String,
    /// Whole-request deadline.
    pub request_timeout_ms: u64,
    /// One internode call's deadline.
    pub rpc_timeout_ms: u64,
    /// Internode TCP connect deadline.
    pub rpc_connect_timeout_ms: u64,
    /// Idempotency-Key memory.
    pub idempotency_window_s: u64,
}

/// RocksDB settings.
#[derive(Clone, Debug, Deserialize)]
pub struct StorageSection {
    /// fsync per write.
    pub sync_writes: bool,
    /// Periodic WAL fsync interval, ms (0: off; ignored with sync_writes).
    pub sync_interval_ms: u64,
    /// Block cache MiB.
    pub block_cache_mb: usize,
    /// Memtable MiB.
    pub write_buffer_mb: usize,
    /// Flush and compaction rate limit, MiB/s.
    pub background_mb_per_sec: u64,
    /// Age of a tombstone before it may be reaped, ms.
    pub tombstone_grace_ms: u64,
    /// Pause between reaping passes, ms (0: never reap).
    pub reap_interval_ms: u64,
    /// Least time between the two checks that confirm a key, ms.
    pub reap_settle_ms: u64,
    /// Keys per reaping check.
    pub reap_batch: usize,
}

/// Request size limits.
#[derive(Clone, Debug, Deserialize)]
pub struct LimitsSection {
    /// Longest key.
    pub max_key_bytes: usize,
    /// Largest value.
    pub max_value_bytes: usize,
    /// Largest internode frame.
    pub max_rpc_bytes: usize,
    /// Longest client timeout.
    pub max_timeout_ms: u64,
    /// Client requests in flight.
    pub max_inflight_requests: usize,
    /// Siblings a write may leave.
    pub max_siblings: usize,
    /// Siblings past which a write is counted.
    pub warn_siblings: usize,
    /// Largest object a write may leave.
    pub max_object_bytes: usize,
}

/// Failure detector.
#[derive(Clone, Debug, Deserialize)]
pub struct FailureDetectorSection {
    /// Ping period.
    pub ping_interval_ms: u64,
    /// Ping deadline.
    pub ping_timeout_ms: u64,
    /// Failures before down.
    pub failure_threshold: u32,
    /// Open-breaker cooldown.
    pub breaker_cooldown_ms: u64,
}

/// Hinted handoff.
#[derive(Clone, Debug, Deserialize)]
pub struct HandoffSection {
    /// Worker on/off.
    pub enabled: bool,
    /// Pass period.
    pub interval_ms: u64,
    /// Hints per batch.
    pub batch: usize,
    /// Deliveries in flight.
    pub concurrency: usize,
    /// Hint store bound.
    pub max_hints: u64,
    /// Hint store bound in bytes.
    pub max_hint_bytes: u64,
    /// Age after which a hint is dropped (0: never).
    pub hint_window_ms: u64,
    /// First retry delay.
    pub backoff_base_ms: u64,
    /// Longest retry delay.
    pub backoff_max_ms: u64,
}

/// Read repair.
#[derive(Clone, Debug, Deserialize)]
pub struct ReadRepairSection {
    /// On/off.
    pub enabled: bool,
    /// Fraction of reads repaired.
    pub chance: f64,
    /// Wait for late replies.
    pub wait_ms: u64,
    /// Repairs at once.
    pub concurrency: usize,
}

/// One member of the static membership list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Node id.
    pub id: String,
    /// `host:port`.
    pub addr: String,
}

impl Config {
    /// Loads the layers: defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut b = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(f) = file {
            b = b.add_source(
                config::File::from(f)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        b = b.add_source(
            config::Environment::with_prefix("DYNKV")
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("cluster.members")
                .with_list_parse_key("membership.seeds")
                .try_parsing(true),
        );
        let cfg: Config = b.build()?.try_deserialize()?;
        cfg.validate()?;
        Ok(cfg)
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

    /// The configured cluster secret (`secret`, else `secret_file`), if any.
    pub fn configured_secret(&self) -> Result<Option<ClusterSecret>, ConfigError> {
        let (hex, from) = if !self.cluster.secret.is_empty() {
            (self.cluster.secret.clone(), "cluster.secret".to_string())
        } else if !self.cluster.secret_file.is_empty() {
            let f = &self.cluster.secret_file;
            let hex = std::fs::read_to_string(f).map_err(|e| {
                ConfigError::Invalid(format!("cluster.secret_file {f}: cannot read it: {e}"))
            })?;
            (hex, format!("cluster.secret_file {f}"))
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
            None if self.may_run_without_secret()? => Ok(ClusterSecret::ephemeral()),
            None => Err(ConfigError::Invalid(
                "a node with peers, or listening off loopback, needs a cluster secret of at least 32 bytes: set cluster.secret_file (or cluster.secret) to what `dynkv admin secret` prints"
                    .into(),
            )),
        }
    }

    /// True for a lone node bound to loopback addresses only.
    fn may_run_without_secret(&self) -> Result<bool, ConfigError> {
        Ok(self.members()?.len() <= 1
            && is_loopback(&self.node.listen)
            && is_loopback(&self.node.cluster_listen)
            && self.membership.seeds.is_empty())
    }

    /// The membership list, this node included (alone when none is configured).
    pub fn members(&self) -> Result<Vec<Member>, ConfigError> {
        if self.cluster.members.is_empty() {
            return Ok(vec![Member {
                id: self.node.id.clone(),
                addr: self.cluster_advertise().to_string(),
            }]);
        }
        let mut out: Vec<Member> = Vec::new();
        for m in &self.cluster.members {
            let m = m.trim();
            if m.is_empty() {
                continue;
            }
            let (id, addr) = m.split_once('@').ok_or_else(|| {
                ConfigError::Invalid(format!("cluster.members entry {m:?} is not id@host:port"))
            })?;
            if id.is_empty() || addr.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "cluster.members entry {m:?} is not id@host:port"
                )));
            }
            if out.iter().any(|o| o.id == id) {
                return Err(ConfigError::Invalid(format!(
                    "node id {id} appears twice in cluster.members"
                )));
            }
            out.push(Member {
                id: id.to_string(),
                addr: addr.to_string(),
            });
        }
        Ok(out)
    }

    /// Default R.
    pub fn default_r(&self) -> Quorum {
        Quorum::parse(&self.quorum.r, self.cluster.n_val).expect("validated")
    }

    /// Default W.
    pub fn default_w(&self) -> Quorum {
        Quorum::parse(&self.quorum.w, self.cluster.n_val).expect("validated")
    }

    /// Checks the rules that span fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.node.id.is_empty()
            || self.node.id.len() > 64
            || self.node.id.contains(['@', ',', ' '])
        {
            return bad(format!(
                "node.id {:?} must be 1 to 64 characters without '@', ',' or spaces",
                self.node.id
            ));
        }
        if self.node.worker_threads > 1024 {
            return bad(format!(
                "node.worker_threads must be 0 (one per core) to 1024, got {}",
                self.node.worker_threads
            ));
        }
        let n = self.cluster.n_val;
        if n == 0 || n > 16 {
            return bad(format!("cluster.n_val must be 1 to 16, got {n}"));
        }
        let p = self.cluster.partitions;
        if !p.is_power_of_two() || p > 65536 {
            return bad(format!(
                "cluster.partitions must be a power of two up to 65536, got {p}"
            ));
        }
        for (name, v) in [("quorum.r", &self.quorum.r), ("quorum.w", &self.quorum.w)] {
            if let Err(e) = Quorum::parse(v, n) {
                return bad(format!("{name} {e}"));
            }
        }
        if self.cluster.cluster_token.is_some() {
            return bad(
                "cluster.cluster_token is gone: internode traffic is authenticated by cluster.secret_file (or cluster.secret), at least 32 bytes in hex, as `dynkv admin secret` prints"
                    .into(),
            );
        }
        if self.node.cluster_listen.is_empty() || self.node.cluster_listen == self.node.listen {
            return bad(format!(
                "node.cluster_listen ({:?}) must be set and differ from node.listen",
                self.node.cluster_listen
            ));
        }
        let v = self.cluster.protocol_version;
        if v != 0
            && !(dynkv_rpc::wire::MIN_PROTOCOL_VERSION..=dynkv_rpc::PROTOCOL_VERSION).contains(&v)
        {
            return bad(format!(
                "cluster.protocol_version must be 0 (newest) or {} to {}, got {v}",
                dynkv_rpc::wire::MIN_PROTOCOL_VERSION,
                dynkv_rpc::PROTOCOL_VERSION
            ));
        }
        let i = &self.internode;
        if i.max_inflight_per_peer == 0 || i.max_connections == 0 || i.handshake_timeout_ms == 0 {
            return bad("internode limits and timeouts must be positive".into());
        }
        let q = &self.quorum;
        if q.rpc_timeout_ms == 0 || q.request_timeout_ms == 0 || q.rpc_connect_timeout_ms == 0 {
            return bad("quorum timeouts must be positive".into());
        }
        if q.rpc_timeout_ms > q.request_timeout_ms {
            return bad(format!(
                "quorum.rpc_timeout_ms ({}) must not exceed quorum.request_timeout_ms ({})",
                q.rpc_timeout_ms, q.request_timeout_ms
            ));
        }
        if q.rpc_connect_timeout_ms > q.rpc_timeout_ms {
            return bad(
                "quorum.rpc_connect_timeout_ms must not exceed quorum.rpc_timeout_ms".into(),
            );
        }
        if self.failure_detector.ping_timeout_ms == 0
            || self.failure_detector.ping_timeout_ms > self.failure_detector.ping_interval_ms
        {
            return bad(
                "failure_detector.ping_timeout_ms must be positive and at most ping_interval_ms"
                    .into(),
            );
        }
        if self.storage.sync_interval_ms > 3_600_000 {
            return bad(format!(
                "storage.sync_interval_ms must be 0 (off) to 3600000 (an hour), got {}",
                self.storage.sync_interval_ms
            ));
        }
        let s = &self.storage;
        if s.reap_interval_ms > 0 && (s.reap_batch == 0 || s.reap_batch > 100_000) {
            return bad(format!(
                "storage.reap_batch must be 1 to 100000, got {}",
                s.reap_batch
            ));
        }
        let h = &self.handoff;
        if h.hint_window_ms != 0 && h.hint_window_ms < h.interval_ms {
            return bad(format!(
                "handoff.hint_window_ms ({}) must be 0 (hints never expire) or at least handoff.interval_ms ({})",
                h.hint_window_ms, h.interval_ms
            ));
        }
        if !(0.0..=1.0).contains(&self.read_repair.chance) {
            return bad(format!(
                "read_repair.chance must be between 0 and 1, got {}",
                self.read_repair.chance
            ));
        }
        if self.limits.max_key_bytes == 0
            || self.limits.max_value_bytes == 0
            || self.limits.max_inflight_requests == 0
        {
            return bad("limits must be positive".into());
        }
        // An object carries its values plus a clock and metadata; a replica
        // may merge two concurrent writes at the cap into one object, which
        // must still fit a frame.
        let l = &self.limits;
        if l.max_object_bytes < l.max_value_bytes + (64 << 10) {
            return bad(
                "limits.max_object_bytes must exceed limits.max_value_bytes by at least 64 KiB"
                    .into(),
            );
        }
        if l.max_rpc_bytes < 2 * l.max_object_bytes + (1 << 20) {
            return bad(
                "limits.max_rpc_bytes must be at least twice limits.max_object_bytes plus 1 MiB"
                    .into(),
            );
        }
        if l.max_siblings == 0 || l.warn_siblings > l.max_siblings {
            return bad(
                "limits.max_siblings must be positive and at least limits.warn_siblings".into(),
            );
        }
        let members = self.members()?;
        if !members.iter().any(|m| m.id == self.node.id) {
            return bad(format!(
                "node.id {} is not in cluster.members",
                self.node.id
            ));
        }
        // Refuses a missing, short or unreadable secret before anything starts.
        self.secret()?;
        Ok(())
    }

    /// Duration helper.
    pub fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
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

    #[test]
    fn defaults_are_valid_and_single_node() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.node.listen, "127.0.0.1:7070");
        assert_eq!(c.members().unwrap().len(), 1);
        assert_eq!(c.default_w(), Quorum::Majority);
    }

    #[test]
    fn rules_are_enforced() {
        let mut c = Config::load(None).unwrap();
        c.cluster.partitions = 60;
        assert!(c.validate().is_err());
        let mut c = Config::load(None).unwrap();
        assert_eq!(c.node.worker_threads, 0, "default: one per core");
        c.node.worker_threads = 100_000;
        assert!(c.validate().is_err());
        let mut c = Config::load(None).unwrap();
        c.quorum.w = "4".into();
        assert!(c.validate().is_err());
        let mut c = Config::load(None).unwrap();
        c.quorum.rpc_timeout_ms = c.quorum.request_timeout_ms + 1;
        assert!(c.validate().is_err());
        let mut c = Config::load(None).unwrap();
        c.cluster.members = vec!["n2@127.0.0.1:1".into()];
        assert!(c.validate().is_err());
        c.cluster.members = vec!["n1@127.0.0.1:1".into(), "n1@127.0.0.1:2".into()];
        assert!(c.validate().is_err());
        c.cluster.members = vec!["n1@127.0.0.1:1".into(), "n2@127.0.0.1:2".into()];
        assert!(c.validate().is_err(), "a cluster needs a secret");
        c.cluster.secret = "ab".repeat(31);
        assert!(c.validate().is_err(), "a short secret is refused");
        c.cluster.secret = ClusterSecret::generate().to_hex();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn a_lone_node_off_loopback_needs_a_secret() {
        let mut c = Config::load(None).unwrap();
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
