//! # dynkv-quorum (to be filled): the coordinator that turns one client request into replica requests and waits for R or W answers.
