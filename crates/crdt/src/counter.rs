//! PN-counter (`riak_dt_pncounter`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Actor, Convergent};

/// A counter that goes up and down: per actor, the totals of its increments
/// and of its decrements, each only ever growing, so merge is a per-actor
/// maximum and the value is their difference (`riak_dt_pncounter`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Per actor: (sum of increments, sum of decrements).
    entries: BTreeMap<Actor, (u64, u64)>,
}

impl Counter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `by` (negative to decrement) on behalf of `actor`.
    pub fn increment(&mut self, actor: &str, by: i64) {
        if by == 0 {
            return;
        }
        let e = self.entries.entry(actor.to_owned()).or_insert((0, 0));
        if by > 0 {
            e.0 = e.0.wrapping_add(by.unsigned_abs());
        } else {
            e.1 = e.1.wrapping_add(by.unsigned_abs());
        }
    }

    /// Subtracts `by` on behalf of `actor`.
    pub fn decrement(&mut self, actor: &str, by: u64) {
        if by == 0 {
            return;
        }
        let e = self.entries.entry(actor.to_owned()).or_insert((0, 0));
        e.1 = e.1.wrapping_add(by);
    }

    /// Increments minus decrements over all actors (wrapping on overflow).
    pub fn value(&self) -> i64 {
        self.entries.values().fold(0i64, |acc, &(p, n)| {
            acc.wrapping_add(p as i64).wrapping_sub(n as i64)
        })
    }
}

impl Convergent for Counter {
    fn merge(&mut self, other: &Self) {
        for (actor, &(p, n)) in &other.entries {
            let e = self.entries.entry(actor.clone()).or_insert((0, 0));
            e.0 = e.0.max(p);
            e.1 = e.1.max(n);
        }
    }
}
