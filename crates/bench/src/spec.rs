//! What the load looks like: durations, the operation mix and the key
//! distribution. Everything here is parsed once before the run, so the hot
//! loop only draws random numbers.

use std::fmt;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;

/// Parses a bare number of seconds (`20`, `1.5`) or anything `humantime`
/// reads (`20s`, `500ms`, `1.5s`, `2m`, `1h 30m`), so durations read the
/// same on the command line and in scripts.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    match s.parse::<f64>() {
        Ok(secs) => Duration::try_from_secs_f64(secs).map_err(|_| format!("bad duration {s:?}")),
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| format!("bad duration {s:?} ({e}): expected e.g. 20s, 500ms, 2m")),
    }
}

/// One request kind of the generated load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Read a key.
    Get,
    /// Write a key.
    Put,
    /// Delete a key.
    Delete,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Op; 3] = [Op::Get, Op::Put, Op::Delete];

    /// Lower-case name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Delete => "delete",
        }
    }

    /// Position in per-operation arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Relative weights of GET, PUT and DELETE (`get=50,put=50,delete=0`);
/// weights, not percentages, so `get=9,put=1` works too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Mix {
    /// Weight of GET.
    pub get: u32,
    /// Weight of PUT.
    pub put: u32,
    /// Weight of DELETE.
    pub delete: u32,
}

impl Mix {
    /// Parses `get=50,put=50,delete=0`; omitted operations weigh 0.
    pub fn parse(s: &str) -> Result<Mix, String> {
        let mut m = Mix {
            get: 0,
            put: 0,
            delete: 0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("bad mix entry {part:?}: expected op=weight"))?;
            let v: u32 = v
                .trim()
                .parse()
                .map_err(|_| format!("bad weight in {part:?}"))?;
            match k.trim() {
                "get" => m.get = v,
                "put" => m.put = v,
                "delete" | "del" => m.delete = v,
                other => return Err(format!("unknown operation {other:?}: use get, put, delete")),
            }
        }
        if m.total() == 0 {
            return Err("the mix has no operation with a weight above 0".into());
        }
        Ok(m)
    }

    fn total(&self) -> u64 {
        u64::from(self.get) + u64::from(self.put) + u64::from(self.delete)
    }

    /// Draws one operation with the mix's weights.
    pub fn pick<R: Rng>(&self, rng: &mut R) -> Op {
        let x = rng.random_range(0..self.total());
        if x < u64::from(self.get) {
            Op::Get
        } else if x < u64::from(self.get) + u64::from(self.put) {
            Op::Put
        } else {
            Op::Delete
        }
    }
}

/// How keys are drawn from the key space `0..keys`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dist {
    /// Every key equally likely.
    Uniform,
    /// Key of rank i drawn with probability proportional to 1/i^s: a few hot keys.
    Zipf,
}

/// A sampler over `0..keys`. Zipf uses a precomputed CDF (8 bytes per key)
/// and a binary search, exact for any exponent and cheap per draw.
pub enum KeySampler {
    /// Uniform over `0..n`.
    Uniform(u64),
    /// Cumulative probabilities of ranks `0..n`.
    Zipf(Vec<f64>),
}

impl KeySampler {
    /// Builds the sampler for `keys` keys (at least 1).
    pub fn new(dist: Dist, keys: u64, exponent: f64) -> KeySampler {
        let keys = keys.max(1);
        match dist {
            Dist::Uniform => KeySampler::Uniform(keys),
            Dist::Zipf => {
                let mut cdf = Vec::with_capacity(keys as usize);
                let mut sum = 0.0;
                for i in 1..=keys {
                    sum += 1.0 / (i as f64).powf(exponent);
                    cdf.push(sum);
                }
                for c in &mut cdf {
                    *c /= sum;
                }
                KeySampler::Zipf(cdf)
            }
        }
    }

    /// Draws a key index.
    pub fn sample<R: Rng>(&self, rng: &mut R) -> u64 {
        match self {
            KeySampler::Uniform(n) => rng.random_range(0..*n),
            KeySampler::Zipf(cdf) => {
                let u: f64 = rng.random();
                (cdf.partition_point(|&c| c < u) as u64).min(cdf.len() as u64 - 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration(" 1m 30s ").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 fortnights").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("inf").is_err());
    }

    #[test]
    fn mixes() {
        let m = Mix::parse("get=50,put=50,delete=0").unwrap();
        assert_eq!((m.get, m.put, m.delete), (50, 50, 0));
        assert_eq!(Mix::parse("put=1").unwrap().get, 0);
        assert!(Mix::parse("get=0").is_err());
        assert!(Mix::parse("scan=3").is_err());
        let mut rng = SmallRng::seed_from_u64(1);
        let m = Mix::parse("get=1,put=3").unwrap();
        let puts = (0..10_000).filter(|_| m.pick(&mut rng) == Op::Put).count();
        assert!((7000..8000).contains(&puts), "{puts}");
        assert!((0..1000).all(|_| m.pick(&mut rng) != Op::Delete));
    }

    #[test]
    fn zipf_prefers_low_ranks_and_stays_in_range() {
        let s = KeySampler::new(Dist::Zipf, 1000, 1.0);
        let mut rng = SmallRng::seed_from_u64(7);
        let draws: Vec<u64> = (0..20_000).map(|_| s.sample(&mut rng)).collect();
        assert!(draws.iter().all(|&k| k < 1000));
        let first = draws.iter().filter(|&&k| k == 0).count();
        let tenth = draws.iter().filter(|&&k| k == 9).count();
        // P(rank 1) / P(rank 10) = 10 for s = 1.
        assert!(first > 5 * tenth, "{first} vs {tenth}");
        let u = KeySampler::new(Dist::Uniform, 10, 0.0);
        assert!((0..1000).all(|_| u.sample(&mut rng) < 10));
    }
}
