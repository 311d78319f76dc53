//! Typed settings from their configuration forms: durations as humantime
//! strings (`"500ms"`, `"3s"`, `"10m"`), quorums as `one|quorum|all|<n>`,
//! members as `id@host:port`. Each error names what was expected; the
//! loader adds the key and where its value came from.

use std::fmt;
use std::time::Duration;

use dynkv_rpc::messages::Quorum;
use serde::Deserializer;
use serde::de::{self, Visitor};

use super::Member;

/// A duration: a humantime string, or the number 0.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration such as \"500ms\", \"3s\" or \"10m\"")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            parse_duration(s).map_err(E::custom)
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
            match n {
                0 => Ok(Duration::ZERO),
                n => Err(E::custom(format!(
                    "{n} has no unit: write a duration such as \"{n}ms\" or \"{n}s\""
                ))),
            }
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
            match u64::try_from(n) {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::custom(format!("{n} is negative: durations are not"))),
            }
        }
    }
    d.deserialize_any(V)
}

/// A cache size: a number of MiB (as a number or a string, which is how
/// environment overrides arrive), or `"auto"` (`None`: sized from the
/// machine's memory when the node starts).
pub fn mib_or_auto<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<usize>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number of MiB or \"auto\"")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<usize>, E> {
            let s = s.trim();
            if s.eq_ignore_ascii_case("auto") {
                return Ok(None);
            }
            s.parse::<u64>()
                .map_err(|_| E::custom(format!("{s:?} is neither a number of MiB nor \"auto\"")))
                .and_then(|n| self.visit_u64(n))
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Option<usize>, E> {
            match usize::try_from(n) {
                Ok(n) if n >= 1 => Ok(Some(n)),
                _ => Err(E::custom(format!(
                    "{n} MiB is out of range: at least 1, or \"auto\""
                ))),
            }
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Option<usize>, E> {
            match u64::try_from(n) {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::custom(format!("{n} is negative: a cache size is not"))),
            }
        }
    }
    d.deserialize_any(V)
}

/// When a read asks one more replica: `p99`, `<n>ms` or `none`.
pub fn speculative_retry<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<dynkv_quorum::SpeculativeRetry, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    dynkv_quorum::SpeculativeRetry::parse(&s).map_err(de::Error::custom)
}

/// Parses a humantime duration, saying what is allowed when it is not one.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("{s:?} is not a duration ({e}): write e.g. \"500ms\", \"3s\", \"10m\" or \"3h\"")
    })
}

/// A quorum: `one`, `quorum`, `all` or a count of at least 1 (whether the
/// count fits N is checked with the rest of the configuration).
pub fn quorum<'de, D: Deserializer<'de>>(d: D) -> Result<Quorum, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Quorum;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("one, quorum, all or a number of replicas")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Quorum, E> {
            if let Some(q) = Quorum::from_word(s) {
                return Ok(q);
            }
            match s.trim().parse::<u64>() {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::custom(format!(
                    "must be one, quorum, all or a number of replicas, got {s:?}"
                ))),
            }
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Quorum, E> {
            match u32::try_from(n) {
                Ok(c) if c >= 1 => Ok(Quorum::Count(c)),
                _ => Err(E::custom(format!(
                    "must be one, quorum, all or a number of replicas from 1 to cluster.n_val, got {n}"
                ))),
            }
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Quorum, E> {
            match u64::try_from(n) {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::custom(format!(
                    "must be one, quorum, all or a number of replicas, got {n}"
                ))),
            }
        }
    }
    d.deserialize_any(V)
}

/// The member list: `id@host:port` entries (empty entries are skipped, so
/// `DYNKV__CLUSTER__MEMBERS=""` means none).
pub fn members<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Member>, D::Error> {
    let raw: Vec<String> = serde::Deserialize::deserialize(d)?;
    raw.iter()
        .map(|m| m.trim())
        .filter(|m| !m.is_empty())
        .map(|m| m.parse::<Member>().map_err(de::Error::custom))
        .collect()
}

/// Whether `id` may name a node: 1 to 64 characters without '@', ',' or
/// spaces.
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && !id.contains(['@', ',', ' '])
}

impl std::str::FromStr for Member {
    type Err = String;

    fn from_str(m: &str) -> Result<Member, String> {
        let bad = |why: &str| format!("entry {m:?} is not id@host:port: {why}");
        let (id, addr) = m.split_once('@').ok_or_else(|| bad("no '@'"))?;
        if !valid_node_id(id) {
            return Err(bad(
                "the id must be 1 to 64 characters without '@', ',' or spaces",
            ));
        }
        let port_ok = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(bad("the address must be host:port"));
        }
        Ok(Member {
            id: id.to_string(),
            addr: addr.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_from_humantime() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration(" 1h 30m "), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        let e = parse_duration("3 parsecs").unwrap_err();
        assert!(e.contains("\"3 parsecs\" is not a duration"), "{e}");
    }

    #[test]
    fn members_parse_or_say_why_not() {
        let m: Member = "n1@127.0.0.1:7171".parse().unwrap();
        assert_eq!((m.id.as_str(), m.addr.as_str()), ("n1", "127.0.0.1:7171"));
        let m: Member = "n2@[::1]:7172".parse().unwrap();
        assert_eq!(m.addr, "[::1]:7172");
        for bad in [
            "n1",
            "@h:1",
            "n1@",
            "n1@host",
            "n1@:1",
            "n1@h:99999",
            "a b@h:1",
        ] {
            let e = bad.parse::<Member>().unwrap_err();
            assert!(e.contains("is not id@host:port"), "{bad}: {e}");
        }
    }
}
