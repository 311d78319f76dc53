//! The node configuration: one documented serde struct, loaded in layers
//! (embedded `config/default.toml` → `--config FILE` → `DYNKV__SECTION__KEY`
//! environment variables) and checked by [`Config::validate`] before
//! anything starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dynkv_rpc::Quorum;
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
    /// Bind address.
    pub listen: String,
    /// Address peers use (empty: `listen`).
    pub advertise: String,
    /// RocksDB directory.
    pub data_dir: PathBuf,
    /// Async worker threads (0: one per core). Several nodes sharing a
    /// small machine run better with fewer each than with one per core.
    pub worker_threads: usize,
}

/// Membership and replication.
#[derive(Clone, Debug, Deserialize)]
pub struct ClusterSection {
    /// `id@host:port` of every member.
    pub members: Vec<String>,
    /// N.
    pub n_val: usize,
    /// Ring partitions.
    pub partitions: u32,
    /// Internode secret.
    pub cluster_token: String,
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
    /// Idle connections kept per peer.
    pub rpc_pool_idle_per_peer: usize,
    /// Idempotency-Key memory.
    pub idempotency_window_s: u64,
}

/// RocksDB settings.
#[derive(Clone, Debug, Deserialize)]
pub struct StorageSection {
    /// fsync per write.
    pub sync_writes: bool,
    /// Block cache MiB.
    pub block_cache_mb: usize,
    /// Memtable MiB.
    pub write_buffer_mb: usize,
    /// Flush and compaction rate limit, MiB/s.
    pub background_mb_per_sec: u64,
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

    /// The address peers use to reach this node.
    pub fn advertise(&self) -> &str {
        if self.node.advertise.is_empty() {
            &self.node.listen
        } else {
            &self.node.advertise
        }
    }

    /// The membership list, this node included (alone when none is configured).
    pub fn members(&self) -> Result<Vec<Member>, ConfigError> {
        if self.cluster.members.is_empty() {
            return Ok(vec![Member {
                id: self.node.id.clone(),
                addr: self.advertise().to_string(),
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
        if self.cluster.cluster_token.is_empty() {
            return bad("cluster.cluster_token must not be empty".into());
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
        if self.limits.max_rpc_bytes < self.limits.max_value_bytes {
            return bad("limits.max_rpc_bytes must be at least limits.max_value_bytes".into());
        }
        let members = self.members()?;
        if !members.iter().any(|m| m.id == self.node.id) {
            return bad(format!(
                "node.id {} is not in cluster.members",
                self.node.id
            ));
        }
        Ok(())
    }

    /// Duration helper.
    pub fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }
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
        assert!(c.validate().is_ok());
    }
}
