//! Helpers for tests that start real dynkv nodes (filled with the cluster work).
