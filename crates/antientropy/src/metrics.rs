//! Prometheus metrics of anti-entropy.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming an outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// "ok" or "failed".
    pub outcome: &'static str,
}

/// Counters of one node's exchanges.
pub struct AaeMetrics {
    /// Exchanges by outcome.
    pub exchanges: Family<OutcomeLabels, Counter>,
    /// Keys whose digests were compared.
    pub keys_compared: Counter,
    /// Keys whose state in this node's store changed through anti-entropy.
    pub keys_repaired: Counter,
    /// Merged objects sent to peers.
    pub keys_sent: Counter,
    /// Tree hashes received.
    pub hashes: Counter,
    /// Request bytes sent.
    pub bytes_sent: Counter,
    /// Exchange duration, seconds.
    pub duration: Histogram,
}

impl Default for AaeMetrics {
    fn default() -> Self {
        AaeMetrics {
            exchanges: Family::default(),
            keys_compared: Counter::default(),
            keys_repaired: Counter::default(),
            keys_sent: Counter::default(),
            hashes: Counter::default(),
            bytes_sent: Counter::default(),
            duration: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
        }
    }
}

impl AaeMetrics {
    /// Adds every metric to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "dynkv_aae_exchanges",
            "Anti-entropy exchanges by outcome",
            self.exchanges.clone(),
        );
        registry.register(
            "dynkv_aae_keys_compared",
            "Keys compared by anti-entropy",
            self.keys_compared.clone(),
        );
        registry.register(
            "dynkv_aae_keys_repaired",
            "Keys changed in this node's store by anti-entropy",
            self.keys_repaired.clone(),
        );
        registry.register(
            "dynkv_aae_keys_sent",
            "Merged objects sent to peers by anti-entropy",
            self.keys_sent.clone(),
        );
        registry.register(
            "dynkv_aae_hashes",
            "Merkle hashes received in exchanges",
            self.hashes.clone(),
        );
        registry.register(
            "dynkv_aae_bytes_sent",
            "Request bytes sent in exchanges",
            self.bytes_sent.clone(),
        );
        registry.register(
            "dynkv_aae_exchange_duration_seconds",
            "Duration of exchanges",
            self.duration.clone(),
        );
    }
}
