//! The ring as a client sees it: the `GET /ring` view, and where a key
//! lives in it. Pure: parsing and placement, no I/O.
//!
//! A key's partition is the top `log2(partitions)` bits of the xxh3-64 of
//! its bytes (seed 0), exactly as the nodes place it
//! (`dynkv_ring::Ring::partition_of_key`); `preference_lists[p]` names
//! partition `p`'s primaries in ring order, the first being its owner.

use serde::Deserialize;

/// One member of the ring view.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Member {
    /// Node id, e.g. `n1`.
    pub id: String,
    /// Base URL of its public API (`null` while the answering node has not
    /// heard it).
    #[serde(default)]
    pub url: Option<String>,
    /// Whether the answering node's failure detector believes it up.
    #[serde(default = "yes")]
    pub up: bool,
}

fn yes() -> bool {
    true
}

/// The wire form of `GET /ring`.
#[derive(Deserialize)]
struct Wire {
    node: String,
    #[serde(default)]
    epoch: u64,
    #[serde(default)]
    version: u64,
    n_val: usize,
    partitions: u32,
    hash: String,
    members: Vec<Member>,
    preference_lists: Vec<Vec<String>>,
}

/// A parsed, checked ring view.
#[derive(Clone, Debug)]
pub struct RingView {
    /// The node that answered.
    pub node: String,
    /// Ring transitions so far (changes with every ring change).
    pub epoch: u64,
    /// The cluster state's version (changes with every membership change).
    pub version: u64,
    /// Replicas per key.
    pub n_val: usize,
    /// Partitions (a power of two).
    pub partitions: u32,
    /// Every member, in the order the view lists them.
    pub members: Vec<Member>,
    /// Per partition, its primaries as indexes into `members`.
    lists: Vec<Vec<u16>>,
}

/// Why a ring view was refused.
#[derive(Debug, thiserror::Error)]
#[error("bad ring view: {0}")]
pub struct RingError(pub String);

/// xxh3-64 of the key's bytes, seed 0: the nodes' `dynkv_ring::key_hash`.
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

impl RingView {
    /// Parses and checks a `GET /ring` body: the hash must be one this
    /// client computes, `partitions` a power of two with one list each,
    /// and every list must name known members.
    pub fn parse(body: &[u8]) -> Result<RingView, RingError> {
        let w: Wire = serde_json::from_slice(body).map_err(|e| RingError(e.to_string()))?;
        if w.hash != "xxh3_64" {
            return Err(RingError(format!("unknown hash {:?}", w.hash)));
        }
        if !w.partitions.is_power_of_two() || w.preference_lists.len() != w.partitions as usize {
            return Err(RingError(format!(
                "{} preference lists for {} partitions",
                w.preference_lists.len(),
                w.partitions
            )));
        }
        if w.members.is_empty() || w.members.len() > u16::MAX as usize {
            return Err(RingError(format!("{} members", w.members.len())));
        }
        let index = |id: &str| {
            w.members
                .iter()
                .position(|m| m.id == id)
                .map(|i| i as u16)
                .ok_or_else(|| RingError(format!("preference list names unknown member {id:?}")))
        };
        let lists = w
            .preference_lists
            .iter()
            .map(|l| {
                if l.is_empty() {
                    return Err(RingError("an empty preference list".into()));
                }
                l.iter().map(|id| index(id)).collect()
            })
            .collect::<Result<Vec<Vec<u16>>, RingError>>()?;
        Ok(RingView {
            node: w.node,
            epoch: w.epoch,
            version: w.version,
            n_val: w.n_val,
            partitions: w.partitions,
            members: w.members,
            lists,
        })
    }

    /// The partition of `key`: the top `log2(partitions)` bits of its hash.
    pub fn partition_of_key(&self, key: &[u8]) -> u32 {
        let bits = self.partitions.trailing_zeros();
        key_hash(key).checked_shr(64 - bits).map_or(0, |p| p as u32)
    }

    /// The primaries of `key` in ring order, as indexes into `members`.
    pub fn primaries(&self, key: &[u8]) -> &[u16] {
        &self.lists[self.partition_of_key(key) as usize]
    }

    /// The primaries of `key` by node id.
    pub fn preference_list(&self, key: &[u8]) -> Vec<&str> {
        self.primaries(key)
            .iter()
            .map(|&i| self.members[i as usize].id.as_str())
            .collect()
    }

    /// Every member once, in the order a request for `key` should try
    /// them: its primaries in ring order, then the others in the order the
    /// ring walk meets them from the key's partition (the nodes' own
    /// fallback order), then members that own no partition.
    pub fn walk(&self, key: &[u8]) -> Vec<u16> {
        let p = self.partition_of_key(key) as usize;
        let mut out: Vec<u16> = Vec::with_capacity(self.members.len());
        out.extend_from_slice(&self.lists[p]);
        let parts = self.lists.len();
        for step in 1..=parts {
            if out.len() == self.members.len() {
                return out;
            }
            let owner = self.lists[(p + step) % parts][0];
            if !out.contains(&owner) {
                out.push(owner);
            }
        }
        for i in 0..self.members.len() as u16 {
            if !out.contains(&i) {
                out.push(i);
            }
        }
        out
    }

    /// Whether `other` routes differently from this view (members, their
    /// URLs and liveness, or placement).
    pub fn differs(&self, other: &RingView) -> bool {
        self.epoch != other.epoch
            || self.version != other.version
            || self.members != other.members
            || self.lists != other.lists
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn view_of(ring: &dynkv_ring::Ring, n: usize) -> RingView {
        let members: Vec<serde_json::Value> = ring
            .members()
            .iter()
            .map(|m| serde_json::json!({"id": m.as_str(), "url": format!("http://{}", m.as_str()), "up": true}))
            .collect();
        let lists: Vec<Vec<&str>> = (0..ring.partitions())
            .map(|p| {
                ring.preference_list(p, n)
                    .into_iter()
                    .map(|m| m.as_str())
                    .collect()
            })
            .collect();
        let body = serde_json::json!({
            "node": "n1", "epoch": 1, "version": 2, "n_val": n,
            "partitions": ring.partitions(), "hash": "xxh3_64",
            "members": members, "preference_lists": lists,
        });
        RingView::parse(body.to_string().as_bytes()).unwrap()
    }

    proptest! {
        /// The client places every key where the nodes do.
        #[test]
        fn places_keys_as_the_nodes_do(key in proptest::collection::vec(any::<u8>(), 1..64), nodes in 1usize..7, bits in 0u32..9) {
            let names: Vec<String> = (1..=nodes).map(|i| format!("n{i}")).collect();
            let ring = dynkv_ring::Ring::new(names, 1 << bits).unwrap();
            let view = view_of(&ring, 3);
            let p = ring.partition_of_key(&key);
            prop_assert_eq!(view.partition_of_key(&key), p);
            let want: Vec<&str> = ring.preference_list(p, 3).into_iter().map(|m| m.as_str()).collect();
            prop_assert_eq!(view.preference_list(&key), want);
            let walk: Vec<&str> = view.walk(&key).iter().map(|&i| view.members[i as usize].id.as_str()).collect();
            let nodes_walk: Vec<&str> = ring.walk(p).into_iter().map(|m| m.as_str()).collect();
            prop_assert_eq!(walk, nodes_walk);
        }
    }

    #[test]
    fn refuses_views_it_cannot_route_by() {
        let ok = r#"{"node":"n1","n_val":1,"partitions":2,"hash":"xxh3_64",
            "members":[{"id":"n1","url":null,"up":true}],"preference_lists":[["n1"],["n1"]]}"#;
        let v = RingView::parse(ok.as_bytes()).unwrap();
        assert_eq!(v.members[0].url, None);
        assert!(!v.differs(&v.clone()));
        for bad in [
            ok.replace("xxh3_64", "md5"),
            ok.replace(r#""partitions":2"#, r#""partitions":3"#),
            ok.replace(r#"["n1"],["n1"]"#, r#"["n1"],["n9"]"#),
            ok.replace(r#"["n1"],["n1"]"#, r#"["n1"],[]"#),
            "{}".to_string(),
            String::new(),
        ] {
            assert!(RingView::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
