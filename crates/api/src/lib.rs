//! # dynkv-api (to be filled): the axum routers of the public and internal HTTP API.
