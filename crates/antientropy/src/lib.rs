//! # dynkv-antientropy (to be filled): per-partition Merkle trees and the exchange that heals replicas no read touches.
