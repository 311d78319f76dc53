//! Query parameters, typed: the request's query string is decoded once
//! ([`Params`]), and each parameter is read as the value it holds: a
//! quorum ([`QuorumParam`]), a flag, a count of milliseconds. A value that
//! is not one of those its parameter allows is a [`ParamError`] naming the
//! parameter, the value and what is allowed; each protocol words it once
//! (`/kv`: JSON `bad_parameter`, Riak: its plain-text sentences).

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use dynkv_rpc::messages::Quorum;
use dynkv_rpc::messages::kv::majority;

/// A request's query parameters, decoded as a form is (`+` is a space,
/// then `%XX`); when a name is repeated the last value counts.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl<S: Sync> FromRequestParts<S> for Params {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Params::parse(parts.uri.query().unwrap_or_default()))
    }
}

/// A quorum as a query parameter (or a Riak bucket property) names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuorumParam {
    /// `default`: the bucket's or the node's value.
    Default,
    /// `one`.
    One,
    /// `quorum`: a majority.
    Quorum,
    /// `all`.
    All,
    /// A count (0 means "none required" for Riak's `pr`/`pw`).
    Num(u32),
}

impl QuorumParam {
    /// Reads one of the words (any case) or a count.
    pub fn parse(s: &str) -> Option<QuorumParam> {
        match s.to_ascii_lowercase().as_str() {
            "default" => Some(QuorumParam::Default),
            "one" => Some(QuorumParam::One),
            "quorum" => Some(QuorumParam::Quorum),
            "all" => Some(QuorumParam::All),
            n => n.parse().ok().map(QuorumParam::Num),
        }
    }

    /// The number of replicas this asks for out of `n`, with `fallback`
    /// standing in for `default` (a majority when that is `default` too).
    pub fn resolve(self, n: usize, fallback: QuorumParam) -> usize {
        match self {
            QuorumParam::Default => match fallback {
                QuorumParam::Default => majority(n),
                f => f.resolve(n, QuorumParam::Default),
            },
            QuorumParam::One => 1,
            QuorumParam::Quorum => majority(n),
            QuorumParam::All => n,
            QuorumParam::Num(k) => k as usize,
        }
    }
}

/// What a parameter allows, for the error that names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// A quorum word or a count (from 1 to `max`, when given).
    Quorum {
        /// The largest count allowed, when the protocol checks it here.
        max: Option<usize>,
    },
    /// `true` or `false`.
    Flag,
    /// Milliseconds from 1 to `max`.
    Millis {
        /// The longest allowed.
        max: u64,
    },
}

/// A query parameter whose value is not one its name allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamError {
    /// The parameter.
    pub name: &'static str,
    /// The value it had.
    pub value: String,
    /// What it allows.
    pub allowed: Allowed,
}

impl Params {
    /// Decodes a raw query string.
    pub fn parse(query: &str) -> Params {
        Params(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// Parameters given as decoded name/value pairs (by an adapter that
    /// has no query string, such as Riak's PBC); the last value of a name
    /// counts.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Params {
        Params(pairs.into_iter().collect())
    }

    /// The raw value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn refuse(&self, name: &'static str, value: &str, allowed: Allowed) -> ParamError {
        ParamError {
            name,
            value: value.to_string(),
            allowed,
        }
    }

    /// A quorum: `one`, `quorum`, `all`, `default` (any case) or a count;
    /// absent is [`QuorumParam::Default`].
    pub fn quorum(&self, name: &'static str) -> Result<QuorumParam, ParamError> {
        match self.get(name) {
            None => Ok(QuorumParam::Default),
            Some(v) => QuorumParam::parse(v)
                .ok_or_else(|| self.refuse(name, v, Allowed::Quorum { max: None })),
        }
    }

    /// A quorum that must be explicit and fit `n` replicas: `one`,
    /// `quorum`, `all` or a count from 1 to `n` (`None`: absent).
    pub fn quorum_of(&self, name: &'static str, n: usize) -> Result<Option<Quorum>, ParamError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let q = match QuorumParam::parse(v) {
            Some(QuorumParam::One) => Quorum::One,
            Some(QuorumParam::Quorum) => Quorum::Majority,
            Some(QuorumParam::All) => Quorum::All,
            Some(QuorumParam::Num(c)) if c >= 1 && c as usize <= n => Quorum::Count(c),
            _ => return Err(self.refuse(name, v, Allowed::Quorum { max: Some(n) })),
        };
        Ok(Some(q))
    }

    /// A flag spelled exactly `true` or `false` (`None`: absent).
    pub fn flag(&self, name: &'static str) -> Result<Option<bool>, ParamError> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(self.refuse(name, v, Allowed::Flag)),
        }
    }

    /// A flag as Riak spells it: `true`, `false` or `default`, any case
    /// (`None`: absent or `default`).
    pub fn flag_or_default(&self, name: &'static str) -> Result<Option<bool>, ParamError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        match v.to_ascii_lowercase().as_str() {
            "default" => Ok(None),
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(self.refuse(name, v, Allowed::Flag)),
        }
    }

    /// Milliseconds, at least 1, longer ones cut to `max`; spaces around
    /// the number are ignored (`None`: absent).
    pub fn millis_capped(&self, name: &'static str, max: u64) -> Result<Option<u64>, ParamError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Ok(Some(ms.min(max))),
                _ => Err(self.refuse(name, v, Allowed::Millis { max })),
            },
        }
    }

    /// Milliseconds from 1 to `max` (`None`: absent).
    pub fn millis(&self, name: &'static str, max: u64) -> Result<Option<u64>, ParamError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(ms) if (1..=max).contains(&ms) => Ok(Some(ms)),
                _ => Err(self.refuse(name, v, Allowed::Millis { max })),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_words_and_numbers() {
        let p = Params::parse("r=QUORUM&w=2&pr=-1&dw=default&rw=0");
        assert_eq!(p.quorum("r"), Ok(QuorumParam::Quorum));
        assert_eq!(p.quorum("w"), Ok(QuorumParam::Num(2)));
        assert_eq!(p.quorum("dw"), Ok(QuorumParam::Default));
        assert_eq!(p.quorum("rw"), Ok(QuorumParam::Num(0)));
        assert_eq!(p.quorum("absent"), Ok(QuorumParam::Default));
        let e = p.quorum("pr").unwrap_err();
        assert_eq!((e.name, e.value.as_str()), ("pr", "-1"));
    }

    #[test]
    fn quorums_resolve_against_n_and_a_fallback() {
        use QuorumParam::*;
        assert_eq!(Quorum.resolve(3, Default), 2);
        assert_eq!(Default.resolve(3, All), 3);
        assert_eq!(Default.resolve(5, Default), 3);
        assert_eq!(Default.resolve(3, Num(0)), 0);
        assert_eq!(One.resolve(3, All), 1);
        assert_eq!(Num(7).resolve(3, All), 7);
    }

    #[test]
    fn explicit_quorums_fit_n() {
        let p = Params::parse("a=one&b=3&c=0&d=4&e=default&f=banana");
        assert_eq!(p.quorum_of("a", 3), Ok(Some(Quorum::One)));
        assert_eq!(p.quorum_of("b", 3), Ok(Some(Quorum::Count(3))));
        assert_eq!(p.quorum_of("x", 3), Ok(None));
        for name in ["c", "d", "e", "f"] {
            let e = p.quorum_of(name, 3).unwrap_err();
            assert_eq!(e.allowed, Allowed::Quorum { max: Some(3) });
        }
    }

    #[test]
    fn flags_strict_and_riak() {
        let p = Params::parse("a=true&b=false&c=TRUE&d=default&e=maybe");
        assert_eq!(p.flag("a"), Ok(Some(true)));
        assert_eq!(p.flag("b"), Ok(Some(false)));
        assert!(p.flag("c").is_err() && p.flag("d").is_err());
        assert_eq!(p.flag_or_default("c"), Ok(Some(true)));
        assert_eq!(p.flag_or_default("d"), Ok(None));
        assert_eq!(p.flag_or_default("e").unwrap_err().value, "maybe");
    }

    #[test]
    fn millis_in_range_and_decoding() {
        let p = Params::parse("t=1500&z=0&big=70000&k=a+b%2Fc&k=last");
        assert_eq!(p.millis("t", 60_000), Ok(Some(1500)));
        assert!(p.millis("z", 60_000).is_err());
        assert_eq!(
            p.millis("big", 60_000).unwrap_err().allowed,
            Allowed::Millis { max: 60_000 }
        );
        assert_eq!(p.millis_capped("big", 60_000), Ok(Some(60_000)));
        assert!(p.millis_capped("z", 60_000).is_err());
        assert_eq!(Params::parse("t=+5").millis_capped("t", 9), Ok(Some(5)));
        assert_eq!(p.get("k"), Some("last"));
        assert_eq!(Params::parse("k=a+b%2Fc").get("k"), Some("a b/c"));
    }
}
