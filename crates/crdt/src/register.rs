//! Last-writer-wins register (`riak_dt_lwwreg`).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::{Actor, Convergent};

/// A single value where the write with the greatest timestamp wins
/// (`riak_dt_lwwreg`). Ties on the timestamp fall to the greater actor id,
/// then to the greater value bytes, so every replica picks the same winner.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    current: Option<Write>,
}

/// One assignment and its ordering key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Write {
    ts: u64,
    actor: Actor,
    value: Vec<u8>,
}

impl Write {
    fn key(&self) -> (u64, &str, &[u8]) {
        (self.ts, &self.actor, &self.value)
    }
}

impl Register {
    /// An unassigned register.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `value` at time `ts` on behalf of `actor`; ignored if a later
    /// write (by the order above) is already here.
    pub fn assign(&mut self, value: impl Into<Vec<u8>>, ts: u64, actor: &str) {
        let write = Write {
            ts,
            actor: actor.to_owned(),
            value: value.into(),
        };
        self.offer(write);
    }

    fn offer(&mut self, write: Write) {
        let wins = match &self.current {
            None => true,
            Some(cur) => write.key().cmp(&cur.key()) == Ordering::Greater,
        };
        if wins {
            self.current = Some(write);
        }
    }

    /// The winning value, if any was assigned.
    pub fn value(&self) -> Option<&[u8]> {
        self.current.as_ref().map(|w| w.value.as_slice())
    }

    /// The winning write's timestamp and actor.
    pub fn winner(&self) -> Option<(u64, &str)> {
        self.current.as_ref().map(|w| (w.ts, w.actor.as_str()))
    }
}

impl Convergent for Register {
    fn merge(&mut self, other: &Self) {
        if let Some(w) = &other.current {
            self.offer(w.clone());
        }
    }
}
