//! Permissions and the scopes they are granted on, spelled as Riak spells
//! them so `grant riak_kv.get,riak_kv.put on default mybucket to alice`
//! reads the same in both systems.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a request needs. Riak's KV and bucket permissions, plus
/// `dynkv.admin` for `/admin/*`, membership commands and `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// Read an object.
    Get,
    /// Write an object.
    Put,
    /// Delete an object.
    Delete,
    /// List a bucket's keys.
    ListKeys,
    /// Query a bucket's secondary indexes.
    Index,
    /// List a bucket type's buckets.
    ListBuckets,
    /// Read bucket properties.
    GetBucket,
    /// Change bucket properties.
    SetBucket,
    /// Operate the node and the cluster.
    Admin,
}

impl Permission {
    /// Every permission, in a stable order.
    pub const ALL: [Permission; 9] = [
        Permission::Get,
        Permission::Put,
        Permission::Delete,
        Permission::ListKeys,
        Permission::Index,
        Permission::ListBuckets,
        Permission::GetBucket,
        Permission::SetBucket,
        Permission::Admin,
    ];

    /// The name operators write.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Get => "riak_kv.get",
            Permission::Put => "riak_kv.put",
            Permission::Delete => "riak_kv.delete",
            Permission::ListKeys => "riak_kv.list_keys",
            Permission::Index => "riak_kv.index",
            Permission::ListBuckets => "riak_kv.list_buckets",
            Permission::GetBucket => "riak_core.get_bucket",
            Permission::SetBucket => "riak_core.set_bucket",
            Permission::Admin => "dynkv.admin",
        }
    }

    /// Parses a comma-separated list (`riak_kv.get,riak_kv.put`), as
    /// `riak-admin security grant` takes it.
    pub fn parse_list(s: &str) -> Result<Vec<Permission>, UnknownPermission> {
        let mut out: Vec<Permission> = s
            .split(',')
            .map(str::trim)
            .map(Permission::from_str)
            .collect::<Result<_, _>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// A permission name that is not one of [`Permission::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown permission {0:?}; known: riak_kv.get, riak_kv.put, riak_kv.delete, riak_kv.list_keys, riak_kv.index, riak_kv.list_buckets, riak_core.get_bucket, riak_core.set_bucket, dynkv.admin"
)]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPermission(s.to_string()))
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a grant applies: everywhere, a bucket type, or one bucket of a type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Every bucket type and bucket (`on any`).
    Any,
    /// Every bucket of one bucket type (`on TYPE`).
    Type(String),
    /// One bucket of one bucket type (`on TYPE BUCKET`).
    Bucket(String, String),
}

impl Scope {
    /// Whether a request on (`bucket_type`, `bucket`) falls in this scope.
    /// `None` means the request names no type or bucket (or a name that is
    /// not UTF-8), which only wider scopes cover.
    pub fn covers(&self, bucket_type: Option<&str>, bucket: Option<&str>) -> bool {
        match self {
            Scope::Any => true,
            Scope::Type(t) => bucket_type == Some(t.as_str()),
            Scope::Bucket(t, b) => bucket_type == Some(t.as_str()) && bucket == Some(b.as_str()),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Any => f.write_str("any"),
            Scope::Type(t) => write!(f, "{t}"),
            Scope::Bucket(t, b) => write!(f, "{t} {b}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
        }
        assert_eq!(
            Permission::parse_list("riak_kv.put, riak_kv.get,riak_kv.get"),
            Ok(vec![Permission::Get, Permission::Put])
        );
        assert!(Permission::parse_list("riak_kv.get,riak_kv.nope").is_err());
    }

    #[test]
    fn scopes_cover_what_they_name() {
        let b = Scope::Bucket("default".into(), "a".into());
        assert!(b.covers(Some("default"), Some("a")));
        assert!(!b.covers(Some("default"), Some("b")));
        assert!(!b.covers(Some("other"), Some("a")));
        assert!(!b.covers(Some("default"), None));
        let t = Scope::Type("default".into());
        assert!(t.covers(Some("default"), Some("x")));
        assert!(t.covers(Some("default"), None));
        assert!(!t.covers(None, None));
        assert!(Scope::Any.covers(None, None));
    }
}
