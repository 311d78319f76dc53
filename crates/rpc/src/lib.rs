//! # dynkv-rpc (to be filled): internode message types, their compact binary encoding, the `Transport` trait and its HTTP implementation.
