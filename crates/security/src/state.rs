//! The security state and its changes (see the crate docs for the model).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::perm::{Permission, Scope};

/// The pseudo-user of sources and grants that apply to every user (Riak's
/// `all`).
pub const ALL: &str = "all";

/// Names no user may take: they are words of the grant and source syntax.
const RESERVED: [&str; 6] = [ALL, "any", "on", "to", "from", "anonymous"];

/// Longest user name.
pub const MAX_USER_BYTES: usize = 128;

/// When an entry was written: a counter above every counter its author had
/// seen, then the author's node id. The greater stamp wins a merge.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Lamport counter.
    pub counter: u64,
    /// Author (breaks ties between concurrent changes).
    pub node: String,
}

/// A last-writer-wins register; `None` is a removal (tombstone). Ordered
/// by stamp, then value, so the merge `max` is total and deterministic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Lww<T> {
    /// When it was written.
    pub stamp: Stamp,
    /// What was written.
    pub value: Option<T>,
}

/// A user.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct User {
    /// argon2id PHC string; `None`: the user can only come in through a
    /// `trust` source.
    pub password: Option<String>,
}

/// How a source authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// No password needed (only the user name).
    Trust,
    /// The password must verify against the user's hash.
    Password,
}

impl Method {
    /// The name operators write.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Trust => "trust",
            Method::Password => "password",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = CommandError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "trust" => Ok(Method::Trust),
            "password" => Ok(Method::Password),
            other => Err(CommandError::BadMethod(other.to_string())),
        }
    }
}

/// A change to the security state, as an operator asks for it. Passwords
/// arrive hashed: the node that takes the request hashes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Start enforcing.
    Enable,
    /// Stop enforcing (everything is open again, as before security).
    Disable,
    /// Creates a user (refused if it exists).
    AddUser {
        /// Name.
        name: String,
        /// PHC string, if the user has a password.
        password: Option<String>,
    },
    /// Changes a user's password (refused if the user does not exist).
    AlterUser {
        /// Name.
        name: String,
        /// New PHC string (`None` removes the password).
        password: Option<String>,
    },
    /// Deletes a user with its sources, grants and tokens.
    DelUser {
        /// Name.
        name: String,
    },
    /// Adds (or replaces) a source for each user (or `all`).
    AddSource {
        /// Users, or `["all"]`.
        users: Vec<String>,
        /// Addresses it covers.
        cidr: IpNet,
        /// How it authenticates.
        method: Method,
    },
    /// Removes a source.
    DelSource {
        /// Users, or `["all"]`.
        users: Vec<String>,
        /// The source's CIDR.
        cidr: IpNet,
    },
    /// Grants permissions on a scope to users (or `all`).
    Grant {
        /// Permissions.
        perms: Vec<Permission>,
        /// Where.
        scope: Scope,
        /// Users, or `["all"]`.
        users: Vec<String>,
    },
    /// Revokes permissions on a scope from users (or `all`).
    Revoke {
        /// Permissions.
        perms: Vec<Permission>,
        /// Where.
        scope: Scope,
        /// Users, or `["all"]`.
        users: Vec<String>,
    },
    /// Records a bearer token (by its hash) for a user.
    AddToken {
        /// [`crate::token_hash`] of the token.
        hash: String,
        /// Its user.
        user: String,
    },
    /// Revokes one token.
    RevokeToken {
        /// [`crate::token_hash`] of the token.
        hash: String,
    },
    /// Revokes every token of a user.
    RevokeUserTokens {
        /// The user.
        user: String,
    },
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The user does not exist.
    #[error("no user named {0:?}")]
    UnknownUser(String),
    /// The user exists already.
    #[error("a user named {0:?} exists already")]
    UserExists(String),
    /// A reserved word or a malformed name.
    #[error(
        "{0:?} cannot be a user name: 1 to 128 bytes, no ':' or whitespace, and not one of all, any, on, to, from, anonymous"
    )]
    BadName(String),
    /// No such source.
    #[error("no source for {0:?} on {1}")]
    UnknownSource(String, IpNet),
    /// No such token.
    #[error("no such token")]
    UnknownToken,
    /// An unknown source method.
    #[error("unknown source method {0:?}: use password or trust")]
    BadMethod(String),
    /// Nothing to change.
    #[error("{0}")]
    Empty(&'static str),
}

/// Why a request could not be authenticated (the metric label is
/// [`Denied::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No such user.
    #[error("unknown user")]
    UnknownUser,
    /// No source matches the user and the peer address.
    #[error("no source matches this user and address")]
    NoSource,
    /// The password does not verify (or the user has none).
    #[error("wrong password")]
    BadPassword,
    /// An unknown or revoked token.
    #[error("unknown or revoked token")]
    BadToken,
}

impl Denied {
    /// Short slug for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Denied::UnknownUser => "unknown_user",
            Denied::NoSource => "no_source",
            Denied::BadPassword => "bad_password",
            Denied::BadToken => "bad_token",
        }
    }
}

/// The whole security state: every entry a [`Lww`] register.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityState {
    /// Whether security is enforced (absent: never set, off).
    pub enabled: Option<Lww<bool>>,
    /// Users by name.
    pub users: BTreeMap<String, Lww<User>>,
    /// Sources by (user or `all`, CIDR).
    pub sources: BTreeMap<(String, IpNet), Lww<Method>>,
    /// Grants by (user or `all`, scope, permission).
    pub grants: BTreeMap<(String, Scope, Permission), Lww<()>>,
    /// Bearer tokens by hash: their user.
    pub tokens: BTreeMap<String, Lww<String>>,
}

fn merge_map<K: Ord + Clone, V: Ord + Clone>(
    a: &BTreeMap<K, Lww<V>>,
    b: &BTreeMap<K, Lww<V>>,
) -> BTreeMap<K, Lww<V>> {
    let mut out = a.clone();
    for (k, v) in b {
        match out.get_mut(k) {
            Some(cur) if *cur >= *v => {}
            Some(cur) => *cur = v.clone(),
            None => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

fn check_name(name: &str) -> Result<(), CommandError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_USER_BYTES
        && !name.contains(':')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
        && !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name));
    if ok {
        Ok(())
    } else {
        Err(CommandError::BadName(name.to_string()))
    }
}

/// The canonical form of a peer address (an IPv4-mapped IPv6 address is
/// its IPv4 address).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl SecurityState {
    /// Whether security is enforced.
    pub fn enabled(&self) -> bool {
        self.enabled.as_ref().and_then(|e| e.value).unwrap_or(false)
    }

    /// The highest counter of any entry: grows with every change, equal on
    /// nodes that converged.
    pub fn version(&self) -> u64 {
        let c = |s: &Stamp| s.counter;
        let maps = [
            self.users.values().map(|l| c(&l.stamp)).max(),
            self.sources.values().map(|l| c(&l.stamp)).max(),
            self.grants.values().map(|l| c(&l.stamp)).max(),
            self.tokens.values().map(|l| c(&l.stamp)).max(),
            self.enabled.as_ref().map(|l| c(&l.stamp)),
        ];
        maps.into_iter().flatten().max().unwrap_or(0)
    }

    /// The gossip merge: the entry-wise maximum. Commutative, associative
    /// and idempotent.
    pub fn merge(&self, other: &SecurityState) -> SecurityState {
        SecurityState {
            enabled: self.enabled.clone().max(other.enabled.clone()),
            users: merge_map(&self.users, &other.users),
            sources: merge_map(&self.sources, &other.sources),
            grants: merge_map(&self.grants, &other.grants),
            tokens: merge_map(&self.tokens, &other.tokens),
        }
    }

    /// A live user.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name).and_then(|l| l.value.as_ref())
    }

    /// Live users, by name.
    pub fn live_users(&self) -> impl Iterator<Item = (&String, &User)> {
        self.users
            .iter()
            .filter_map(|(n, l)| l.value.as_ref().map(|u| (n, u)))
    }

    /// Live sources, most specific first (the order they are matched in).
    pub fn live_sources(&self) -> Vec<(&str, IpNet, Method)> {
        let mut v: Vec<_> = self
            .sources
            .iter()
            .filter_map(|((u, net), l)| l.value.map(|m| (u.as_str(), *net, m)))
            .collect();
        v.sort_by_key(|(u, net, _)| (std::cmp::Reverse(net.prefix_len()), *u == ALL, *net));
        v
    }

    /// Live grants: (user, scope, permission).
    pub fn live_grants(&self) -> impl Iterator<Item = &(String, Scope, Permission)> {
        self.grants
            .iter()
            .filter(|(_, l)| l.value.is_some())
            .map(|(k, _)| k)
    }

    /// Live tokens: (hash, user).
    pub fn live_tokens(&self) -> impl Iterator<Item = (&String, &String)> {
        self.tokens
            .iter()
            .filter_map(|(h, l)| l.value.as_ref().map(|u| (h, u)))
    }

    /// The source that applies to `user` connecting from `peer`: the most
    /// specific CIDR containing the peer, a source naming the user before
    /// one for `all`. An unknown peer matches only `/0` sources.
    pub fn match_source(&self, user: &str, peer: Option<IpAddr>) -> Option<(IpNet, Method)> {
        let peer = peer.map(canonical);
        self.sources
            .iter()
            .filter_map(|((u, net), l)| l.value.map(|m| (u, net, m)))
            .filter(|(u, _, _)| u.as_str() == user || u.as_str() == ALL)
            .filter(|(_, net, _)| match peer {
                Some(ip) => net.contains(&ip),
                None => net.prefix_len() == 0,
            })
            .max_by_key(|(u, net, _)| (net.prefix_len(), u.as_str() != ALL))
            .map(|(_, net, m)| (*net, m))
    }

    /// What Basic authentication of `user` from `peer` requires:
    /// `Ok(None)` when a trust source lets it in, `Ok(Some(phc))` when the
    /// password must verify against `phc`.
    pub fn basic_requirement(
        &self,
        user: &str,
        peer: Option<IpAddr>,
    ) -> Result<Option<&str>, Denied> {
        let u = self.user(user).ok_or(Denied::UnknownUser)?;
        let (_, method) = self.match_source(user, peer).ok_or(Denied::NoSource)?;
        match method {
            Method::Trust => Ok(None),
            Method::Password => u.password.as_deref().map(Some).ok_or(Denied::BadPassword),
        }
    }

    /// The user a bearer token (by [`crate::token_hash`]) stands for, if it
    /// is live, its user exists and a source matches the peer.
    pub fn token_user(&self, hash: &str, peer: Option<IpAddr>) -> Result<&str, Denied> {
        let user = self
            .tokens
            .get(hash)
            .and_then(|l| l.value.as_deref())
            .ok_or(Denied::BadToken)?;
        self.user(user).ok_or(Denied::BadToken)?;
        self.match_source(user, peer).ok_or(Denied::NoSource)?;
        Ok(user)
    }

    fn granted(&self, user: &str, scope: Scope, perm: Permission) -> bool {
        [user, ALL].into_iter().any(|u| {
            self.grants
                .get(&(u.to_string(), scope.clone(), perm))
                .is_some_and(|l| l.value.is_some())
        })
    }

    /// Whether `user` (directly or through `all`) holds `perm` on `any`,
    /// on `bucket_type`, or on (`bucket_type`, `bucket`).
    pub fn allowed(
        &self,
        user: &str,
        perm: Permission,
        bucket_type: Option<&str>,
        bucket: Option<&str>,
    ) -> bool {
        if self.user(user).is_none() {
            return false;
        }
        if self.granted(user, Scope::Any, perm) {
            return true;
        }
        let Some(t) = bucket_type else {
            return false;
        };
        if self.granted(user, Scope::Type(t.to_string()), perm) {
            return true;
        }
        bucket
            .is_some_and(|b| self.granted(user, Scope::Bucket(t.to_string(), b.to_string()), perm))
    }

    fn require_users(&self, users: &[String]) -> Result<(), CommandError> {
        if users.is_empty() {
            return Err(CommandError::Empty("name at least one user, or all"));
        }
        for u in users {
            if u != ALL && self.user(u).is_none() {
                return Err(CommandError::UnknownUser(u.clone()));
            }
        }
        Ok(())
    }

    /// Applies `cmd`, authored by node `by`: every entry it writes gets the
    /// stamp (version + 1, by).
    pub fn apply(&self, by: &str, cmd: &Command) -> Result<SecurityState, CommandError> {
        let stamp = Stamp {
            counter: self.version().saturating_add(1),
            node: by.to_string(),
        };
        let lww = |value| Lww {
            stamp: stamp.clone(),
            value,
        };
        let mut s = self.clone();
        match cmd {
            Command::Enable => s.enabled = Some(lww(Some(true))),
            Command::Disable => s.enabled = Some(lww(Some(false))),
            Command::AddUser { name, password } => {
                check_name(name)?;
                if self.user(name).is_some() {
                    return Err(CommandError::UserExists(name.clone()));
                }
                s.users.insert(
                    name.clone(),
                    Lww {
                        stamp: stamp.clone(),
                        value: Some(User {
                            password: password.clone(),
                        }),
                    },
                );
            }
            Command::AlterUser { name, password } => {
                if self.user(name).is_none() {
                    return Err(CommandError::UnknownUser(name.clone()));
                }
                s.users.insert(
                    name.clone(),
                    Lww {
                        stamp: stamp.clone(),
                        value: Some(User {
                            password: password.clone(),
                        }),
                    },
                );
            }
            Command::DelUser { name } => {
                if self.user(name).is_none() {
                    return Err(CommandError::UnknownUser(name.clone()));
                }
                if let Some(l) = s.users.get_mut(name) {
                    l.stamp = stamp.clone();
                    l.value = None;
                }
                for ((u, _), l) in s.sources.iter_mut() {
                    if u == name && l.value.is_some() {
                        l.stamp = stamp.clone();
                        l.value = None;
                    }
                }
                for ((u, _, _), l) in s.grants.iter_mut() {
                    if u == name && l.value.is_some() {
                        l.stamp = stamp.clone();
                        l.value = None;
                    }
                }
                for l in s.tokens.values_mut() {
                    if l.value.as_ref() == Some(name) {
                        l.stamp = stamp.clone();
                        l.value = None;
                    }
                }
            }
            Command::AddSource {
                users,
                cidr,
                method,
            } => {
                self.require_users(users)?;
                for u in users {
                    s.sources.insert(
                        (u.clone(), cidr.trunc()),
                        Lww {
                            stamp: stamp.clone(),
                            value: Some(*method),
                        },
                    );
                }
            }
            Command::DelSource { users, cidr } => {
                if users.is_empty() {
                    return Err(CommandError::Empty("name at least one user, or all"));
                }
                for u in users {
                    let key = (u.clone(), cidr.trunc());
                    match s.sources.get_mut(&key) {
                        Some(l) if l.value.is_some() => {
                            l.stamp = stamp.clone();
                            l.value = None;
                        }
                        _ => return Err(CommandError::UnknownSource(u.clone(), cidr.trunc())),
                    }
                }
            }
            Command::Grant {
                perms,
                scope,
                users,
            }
            | Command::Revoke {
                perms,
                scope,
                users,
            } => {
                let grant = matches!(cmd, Command::Grant { .. });
                if perms.is_empty() {
                    return Err(CommandError::Empty("name at least one permission"));
                }
                if grant {
                    self.require_users(users)?;
                } else if users.is_empty() {
                    return Err(CommandError::Empty("name at least one user, or all"));
                }
                for u in users {
                    for p in perms {
                        s.grants.insert(
                            (u.clone(), scope.clone(), *p),
                            Lww {
                                stamp: stamp.clone(),
                                value: grant.then_some(()),
                            },
                        );
                    }
                }
            }
            Command::AddToken { hash, user } => {
                if self.user(user).is_none() {
                    return Err(CommandError::UnknownUser(user.clone()));
                }
                s.tokens.insert(
                    hash.clone(),
                    Lww {
                        stamp: stamp.clone(),
                        value: Some(user.clone()),
                    },
                );
            }
            Command::RevokeToken { hash } => match s.tokens.get_mut(hash) {
                Some(l) if l.value.is_some() => {
                    l.stamp = stamp.clone();
                    l.value = None;
                }
                _ => return Err(CommandError::UnknownToken),
            },
            Command::RevokeUserTokens { user } => {
                let mut any = false;
                for l in s.tokens.values_mut() {
                    if l.value.as_ref() == Some(user) {
                        l.stamp = stamp.clone();
                        l.value = None;
                        any = true;
                    }
                }
                if !any {
                    return Err(CommandError::UnknownToken);
                }
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn run(s: SecurityState, by: &str, cmds: &[Command]) -> SecurityState {
        cmds.iter().fold(s, |s, c| s.apply(by, c).unwrap())
    }

    fn alice_bob() -> SecurityState {
        run(
            SecurityState::default(),
            "n1",
            &[
                Command::AddUser {
                    name: "alice".into(),
                    password: Some("phc-a".into()),
                },
                Command::AddUser {
                    name: "bob".into(),
                    password: None,
                },
            ],
        )
    }

    #[test]
    fn off_until_enabled() {
        let s = SecurityState::default();
        assert!(!s.enabled());
        let s = s.apply("n1", &Command::Enable).unwrap();
        assert!(s.enabled());
        assert!(!s.apply("n2", &Command::Disable).unwrap().enabled());
    }

    #[test]
    fn most_specific_source_wins_then_the_user_over_all() {
        let s = run(
            alice_bob(),
            "n1",
            &[
                Command::AddSource {
                    users: vec![ALL.into()],
                    cidr: net("0.0.0.0/0"),
                    method: Method::Password,
                },
                Command::AddSource {
                    users: vec!["alice".into()],
                    cidr: net("127.0.0.1/32"),
                    method: Method::Trust,
                },
                Command::AddSource {
                    users: vec![ALL.into()],
                    cidr: net("10.0.0.0/8"),
                    method: Method::Trust,
                },
                Command::AddSource {
                    users: vec!["bob".into()],
                    cidr: net("10.1.2.3/8"),
                    method: Method::Password,
                },
            ],
        );
        assert_eq!(
            s.match_source("alice", ip("127.0.0.1")),
            Some((net("127.0.0.1/32"), Method::Trust))
        );
        assert_eq!(
            s.match_source("alice", ip("192.168.1.1")),
            Some((net("0.0.0.0/0"), Method::Password))
        );
        assert_eq!(
            s.match_source("alice", ip("10.9.9.9")).unwrap().1,
            Method::Trust
        );
        // Same prefix length: bob's own source beats all's; CIDRs are truncated.
        assert_eq!(
            s.match_source("bob", ip("10.9.9.9")),
            Some((net("10.0.0.0/8"), Method::Password))
        );
        assert_eq!(
            s.match_source("bob", ip("::ffff:10.0.0.1")).unwrap().1,
            Method::Password,
            "IPv4-mapped peers match IPv4 sources"
        );
        assert_eq!(s.match_source("alice", ip("::1")), None);
        assert_eq!(
            s.match_source("alice", None),
            Some((net("0.0.0.0/0"), Method::Password)),
            "an unknown peer matches only /0"
        );
        assert_eq!(
            s.basic_requirement("bob", ip("10.0.0.1")),
            Err(Denied::BadPassword)
        );
        assert_eq!(s.basic_requirement("alice", ip("127.0.0.1")), Ok(None));
        assert_eq!(
            s.basic_requirement("alice", ip("1.2.3.4")),
            Ok(Some("phc-a"))
        );
        assert_eq!(
            s.basic_requirement("carol", ip("1.2.3.4")),
            Err(Denied::UnknownUser)
        );
        assert_eq!(
            s.basic_requirement("alice", ip("::1")),
            Err(Denied::NoSource)
        );
    }

    #[test]
    fn grants_reach_their_scope_only() {
        let s = run(
            alice_bob(),
            "n1",
            &[
                Command::Grant {
                    perms: vec![Permission::Get, Permission::Put],
                    scope: Scope::Bucket("default".into(), "a".into()),
                    users: vec!["alice".into()],
                },
                Command::Grant {
                    perms: vec![Permission::ListBuckets],
                    scope: Scope::Type("maps".into()),
                    users: vec![ALL.into()],
                },
            ],
        );
        assert!(s.allowed("alice", Permission::Get, Some("default"), Some("a")));
        assert!(!s.allowed("alice", Permission::Get, Some("default"), Some("b")));
        assert!(!s.allowed("alice", Permission::Delete, Some("default"), Some("a")));
        assert!(!s.allowed("bob", Permission::Get, Some("default"), Some("a")));
        assert!(s.allowed("bob", Permission::ListBuckets, Some("maps"), None));
        assert!(!s.allowed("carol", Permission::ListBuckets, Some("maps"), None));
        let s = s
            .apply(
                "n2",
                &Command::Revoke {
                    perms: vec![Permission::Put],
                    scope: Scope::Bucket("default".into(), "a".into()),
                    users: vec!["alice".into()],
                },
            )
            .unwrap();
        assert!(s.allowed("alice", Permission::Get, Some("default"), Some("a")));
        assert!(!s.allowed("alice", Permission::Put, Some("default"), Some("a")));
    }

    #[test]
    fn deleting_a_user_takes_its_grants_sources_and_tokens() {
        let s = run(
            alice_bob(),
            "n1",
            &[
                Command::Grant {
                    perms: vec![Permission::Get],
                    scope: Scope::Any,
                    users: vec!["alice".into()],
                },
                Command::AddSource {
                    users: vec!["alice".into()],
                    cidr: net("0.0.0.0/0"),
                    method: Method::Trust,
                },
                Command::AddToken {
                    hash: "h".into(),
                    user: "alice".into(),
                },
                Command::DelUser {
                    name: "alice".into(),
                },
                Command::AddUser {
                    name: "alice".into(),
                    password: None,
                },
            ],
        );
        assert!(!s.allowed("alice", Permission::Get, None, None));
        assert_eq!(s.match_source("alice", ip("1.1.1.1")), None);
        assert_eq!(s.token_user("h", ip("1.1.1.1")), Err(Denied::BadToken));
    }

    #[test]
    fn refusals() {
        let s = alice_bob();
        for bad in ["all", "ANY", "", "a:b", "a b", &"x".repeat(129)] {
            assert!(matches!(
                s.apply(
                    "n1",
                    &Command::AddUser {
                        name: bad.into(),
                        password: None
                    }
                ),
                Err(CommandError::BadName(_))
            ));
        }
        assert!(matches!(
            s.apply(
                "n1",
                &Command::AddUser {
                    name: "alice".into(),
                    password: None
                }
            ),
            Err(CommandError::UserExists(_))
        ));
        assert!(matches!(
            s.apply(
                "n1",
                &Command::Grant {
                    perms: vec![Permission::Get],
                    scope: Scope::Any,
                    users: vec!["carol".into()]
                }
            ),
            Err(CommandError::UnknownUser(_))
        ));
        assert!(matches!(
            s.apply(
                "n1",
                &Command::DelSource {
                    users: vec!["alice".into()],
                    cidr: net("1.0.0.0/8")
                }
            ),
            Err(CommandError::UnknownSource(..))
        ));
        assert_eq!(
            s.apply("n1", &Command::RevokeToken { hash: "x".into() }),
            Err(CommandError::UnknownToken)
        );
    }

    #[test]
    fn tokens_need_a_source_and_die_on_revoke() {
        let s = run(
            alice_bob(),
            "n1",
            &[Command::AddToken {
                hash: "h".into(),
                user: "bob".into(),
            }],
        );
        assert_eq!(s.token_user("h", ip("1.1.1.1")), Err(Denied::NoSource));
        let s = run(
            s,
            "n1",
            &[Command::AddSource {
                users: vec!["bob".into()],
                cidr: net("1.0.0.0/8"),
                method: Method::Password,
            }],
        );
        assert_eq!(s.token_user("h", ip("1.1.1.1")), Ok("bob"));
        assert_eq!(s.token_user("other", ip("1.1.1.1")), Err(Denied::BadToken));
        let s = run(s, "n2", &[Command::RevokeUserTokens { user: "bob".into() }]);
        assert_eq!(s.token_user("h", ip("1.1.1.1")), Err(Denied::BadToken));
    }

    #[test]
    fn a_later_change_wins_over_the_one_it_saw() {
        let a = alice_bob().apply("n1", &Command::Enable).unwrap();
        // n2 saw the enable, then disabled: its stamp is higher.
        let b = a.apply("n2", &Command::Disable).unwrap();
        assert!(!a.merge(&b).enabled());
        assert!(!b.merge(&a).enabled());
    }

    #[test]
    fn encodes_with_postcard() {
        let s = run(
            alice_bob(),
            "n1",
            &[Command::AddSource {
                users: vec![ALL.into()],
                cidr: net("::/0"),
                method: Method::Trust,
            }],
        );
        let bytes = postcard::to_allocvec(&s).unwrap();
        assert_eq!(postcard::from_bytes::<SecurityState>(&bytes).unwrap(), s);
    }

    fn command() -> impl Strategy<Value = Command> {
        let user = prop_oneof![Just("alice"), Just("bob"), Just("carol"), Just("all")]
            .prop_map(String::from);
        let cidr = prop_oneof![Just("0.0.0.0/0"), Just("10.0.0.0/8"), Just("127.0.0.1/32")]
            .prop_map(|s| s.parse::<IpNet>().unwrap());
        let perm = proptest::sample::select(Permission::ALL.to_vec());
        let scope = prop_oneof![
            Just(Scope::Any),
            Just(Scope::Type("default".into())),
            Just(Scope::Bucket("default".into(), "a".into())),
        ];
        prop_oneof![
            Just(Command::Enable),
            Just(Command::Disable),
            (user.clone(), any::<bool>()).prop_map(|(name, p)| Command::AddUser {
                name,
                password: p.then(|| "phc".to_string())
            }),
            user.clone().prop_map(|name| Command::DelUser { name }),
            (user.clone(), cidr.clone(), any::<bool>()).prop_map(|(u, cidr, t)| {
                Command::AddSource {
                    users: vec![u],
                    cidr,
                    method: if t { Method::Trust } else { Method::Password },
                }
            }),
            (user.clone(), cidr).prop_map(|(u, cidr)| Command::DelSource {
                users: vec![u],
                cidr
            }),
            (user.clone(), perm.clone(), scope.clone()).prop_map(|(u, p, scope)| Command::Grant {
                perms: vec![p],
                scope,
                users: vec![u]
            }),
            (user.clone(), perm, scope).prop_map(|(u, p, scope)| Command::Revoke {
                perms: vec![p],
                scope,
                users: vec![u]
            }),
            user.prop_map(|u| Command::AddToken {
                hash: format!("h-{u}"),
                user: u
            }),
        ]
    }

    /// Three replicas each applying their own commands (refusals skipped).
    fn replicas() -> impl Strategy<Value = [SecurityState; 3]> {
        proptest::collection::vec((0..3usize, command()), 0..30).prop_map(|cmds| {
            let mut r: [SecurityState; 3] = Default::default();
            for (i, c) in cmds {
                let by = format!("n{i}");
                if let Ok(s) = r[i].apply(&by, &c) {
                    r[i] = s;
                }
                // Sometimes gossip: replica i tells the next one.
                if i == 1 {
                    r[2] = r[2].merge(&r[1]);
                }
            }
            r
        })
    }

    proptest! {
        #[test]
        fn merge_is_commutative_associative_idempotent([a, b, c] in replicas()) {
            prop_assert_eq!(a.merge(&b), b.merge(&a));
            prop_assert_eq!(a.merge(&b).merge(&c), a.merge(&b.merge(&c)));
            prop_assert_eq!(a.merge(&a), a.clone());
        }

        #[test]
        fn every_order_of_gossip_converges([a, b, c] in replicas()) {
            let x = a.merge(&b).merge(&c);
            let y = c.merge(&a).merge(&b);
            prop_assert_eq!(x.enabled(), y.enabled());
            prop_assert_eq!(&x, &y);
            prop_assert!(x.version() >= a.version().max(b.version()).max(c.version()));
        }

        #[test]
        fn a_grant_on_one_bucket_never_reaches_another(
            b in "[a-z]{1,8}", other in "[a-z]{1,8}", p in proptest::sample::select(Permission::ALL.to_vec())
        ) {
            prop_assume!(b != other);
            let s = alice_bob().apply("n1", &Command::Grant {
                perms: vec![p], scope: Scope::Bucket("default".into(), b.clone()), users: vec!["alice".into()]
            }).unwrap();
            prop_assert!(s.allowed("alice", p, Some("default"), Some(&b)));
            prop_assert!(!s.allowed("alice", p, Some("default"), Some(&other)));
            prop_assert!(!s.allowed("alice", p, Some(&b), Some(&b)));
            prop_assert!(!s.allowed("bob", p, Some("default"), Some(&b)));
        }
    }
}
