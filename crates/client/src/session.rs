//! Session guarantees: the last context this client saw for each key.
//!
//! A read sends the key's last context (`X-Dynkv-Context` on a GET), and
//! the server answers only with a state that includes it, waiting for a
//! replica that has caught up or failing as `stale` (which the client
//! retries on another replica). So a client reads its own writes and
//! never reads a key's state older than one it read before, whichever
//! node answers: read-your-writes and monotonic reads per key, the
//! session guarantees of Terry et al. (1994).
//!
//! The table is bounded: past its capacity, a shard forgets an arbitrary
//! key to make room, and that key loses its guarantee until it is read or
//! written again (a forgotten context never makes an answer wrong, only
//! possibly older than one seen before).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::types::Context;

const SHARDS: usize = 16;

/// Last context per key, in shards so concurrent requests rarely contend.
pub(crate) struct Sessions {
    shards: Vec<Mutex<HashMap<Box<str>, Context>>>,
    per_shard: usize,
}

impl Sessions {
    /// A table remembering about `capacity` keys (0 disables it).
    pub(crate) fn new(capacity: usize) -> Sessions {
        Sessions {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<Box<str>, Context>> {
        let h = crate::ring::key_hash(key.as_bytes()) as usize;
        &self.shards[h % SHARDS]
    }

    /// The last context seen for `key`.
    pub(crate) fn get(&self, key: &str) -> Option<Context> {
        if self.per_shard == 0 {
            return None;
        }
        self.shard(key)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Remembers `ctx` as the last context of `key`.
    pub(crate) fn put(&self, key: &str, ctx: &Context) {
        if self.per_shard == 0 {
            return;
        }
        let mut m = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = m.get_mut(key) {
            *c = ctx.clone();
            return;
        }
        if m.len() >= self.per_shard
            && let Some(k) = m.keys().next().cloned()
        {
            m.remove(&k);
        }
        m.insert(key.into(), ctx.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_context_within_capacity() {
        let s = Sessions::new(32);
        let c = |t: &str| Context::from_token(t).unwrap();
        s.put("a", &c("one"));
        s.put("a", &c("two"));
        assert_eq!(s.get("a").unwrap().as_str(), "two");
        for i in 0..1000 {
            s.put(&format!("k{i}"), &c("x"));
        }
        let held: usize = s.shards.iter().map(|m| m.lock().unwrap().len()).sum();
        assert!(held <= 32, "{held}");
        let off = Sessions::new(0);
        off.put("a", &c("one"));
        assert!(off.get("a").is_none());
    }
}
