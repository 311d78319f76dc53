//! HyperLogLog (Riak's `hll` data type, bucket property `hll_precision`).

use serde::{Deserialize, Serialize};

use crate::Convergent;

/// The smallest precision Riak accepts for `hll_precision`.
pub const MIN_PRECISION: u8 = 4;
/// The largest precision Riak accepts for `hll_precision`.
pub const MAX_PRECISION: u8 = 16;
/// Riak's default `hll_precision`: 2^14 registers, about 0.81 % standard error.
pub const DEFAULT_PRECISION: u8 = 14;

/// A precision outside [`MIN_PRECISION`]..=[`MAX_PRECISION`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidPrecision(pub u8);

impl std::fmt::Display for InvalidPrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "hll precision {} is outside {MIN_PRECISION}..={MAX_PRECISION}",
            self.0
        )
    }
}

impl std::error::Error for InvalidPrecision {}

/// Counts distinct elements approximately in 2^precision bytes, whatever
/// their number: for "how many distinct visitors" without keeping them.
/// Merge is the register-wise maximum, so it is a CRDT; merging two
/// precisions keeps the lower one, folding the finer registers down.
///
/// The element hash is fixed, seedless and portable (64-bit FNV-1a, then
/// the splitmix64 finaliser), so every node and every version puts the
/// same element in the same register.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "HllRepr")]
pub struct Hll {
    precision: u8,
    registers: Vec<u8>,
}

/// The unchecked serialised form, validated into an [`Hll`].
#[derive(Deserialize)]
struct HllRepr {
    precision: u8,
    registers: Vec<u8>,
}

impl TryFrom<HllRepr> for Hll {
    type Error = String;

    fn try_from(r: HllRepr) -> Result<Self, String> {
        let hll = Hll::new(r.precision).map_err(|e| e.to_string())?;
        if r.registers.len() != hll.registers.len() {
            return Err(format!(
                "hll of precision {} needs {} registers, got {}",
                r.precision,
                hll.registers.len(),
                r.registers.len()
            ));
        }
        let max_rank = max_rank(r.precision);
        if r.registers.iter().any(|&v| v > max_rank) {
            return Err(format!("hll register above {max_rank}"));
        }
        Ok(Hll {
            precision: r.precision,
            registers: r.registers,
        })
    }
}

impl Default for Hll {
    fn default() -> Self {
        Self::new(DEFAULT_PRECISION).expect("default precision is valid")
    }
}

/// The largest rank a register can hold at `precision` (64-bit hash).
fn max_rank(precision: u8) -> u8 {
    64 - precision + 1
}

/// 64-bit FNV-1a over `bytes`, then splitmix64's finaliser to spread the
/// weak high bits of FNV over the whole word.
pub(crate) fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Hll {
    /// An empty sketch of 2^`precision` registers.
    pub fn new(precision: u8) -> Result<Self, InvalidPrecision> {
        if !(MIN_PRECISION..=MAX_PRECISION).contains(&precision) {
            return Err(InvalidPrecision(precision));
        }
        Ok(Hll {
            precision,
            registers: vec![0; 1 << precision],
        })
    }

    /// The precision (log2 of the register count).
    pub fn precision(&self) -> u8 {
        self.precision
    }

    /// The registers, one rank per byte.
    pub fn registers(&self) -> &[u8] {
        &self.registers
    }

    /// Records `elem`.
    pub fn add(&mut self, elem: &[u8]) {
        let h = hash64(elem);
        let p = u32::from(self.precision);
        let index = (h >> (64 - p)) as usize;
        // The rank: position of the first 1 in the remaining 64 - p bits.
        let rest = h << p;
        let rank = (rest.leading_zeros().min(64 - p) + 1) as u8;
        let r = &mut self.registers[index];
        *r = (*r).max(rank);
    }

    /// The estimated number of distinct elements added: the raw harmonic
    /// mean estimate with the alpha_m bias constant, and linear counting
    /// while it is at most 2.5 m and some register is still empty.
    pub fn estimate(&self) -> u64 {
        let m = self.registers.len() as f64;
        let alpha = match self.registers.len() {
            16 => 0.673,
            32 => 0.697,
            64 => 0.709,
            _ => 0.7213 / (1.0 + 1.079 / m),
        };
        let mut sum = 0.0;
        let mut zeros = 0usize;
        for &r in &self.registers {
            sum += 2f64.powi(-i32::from(r));
            if r == 0 {
                zeros += 1;
            }
        }
        let raw = alpha * m * m / sum;
        let est = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        est.round() as u64
    }

    /// This sketch at the lower `precision`: each register moves to the
    /// coarser register its top bits name, and the bits dropped from its
    /// index join its rank, exactly as if the elements had been added at
    /// that precision.
    fn folded(&self, precision: u8) -> Hll {
        debug_assert!(precision <= self.precision);
        let d = u32::from(self.precision - precision);
        let mut out = Hll::new(precision).expect("folding to a valid precision");
        for (i, &r) in self.registers.iter().enumerate() {
            if r == 0 {
                continue;
            }
            let j = i >> d;
            let low = (i as u64) & ((1u64 << d) - 1);
            let rank = if low != 0 {
                // Leading zeros of the d dropped bits, plus one.
                (d - (64 - low.leading_zeros())) as u8 + 1
            } else {
                d as u8 + r
            };
            let slot = &mut out.registers[j];
            *slot = (*slot).max(rank);
        }
        out
    }
}

impl Convergent for Hll {
    fn merge(&mut self, other: &Self) {
        if other.precision < self.precision {
            *self = self.folded(other.precision);
        }
        let folded;
        let theirs = if other.precision > self.precision {
            folded = other.folded(self.precision);
            &folded
        } else {
            other
        };
        for (mine, &t) in self.registers.iter_mut().zip(&theirs.registers) {
            *mine = (*mine).max(t);
        }
    }
}
