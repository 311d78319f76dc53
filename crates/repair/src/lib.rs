//! # dynkv-repair (to be filled): read repair, sending the merged object to replicas a read found stale.
