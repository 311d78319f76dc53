//! Version vectors and dots, the causal bookkeeping of the dotted types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Actor, Convergent};

/// One update event: the `counter`-th update minted by `actor`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// Who minted it.
    pub actor: Actor,
    /// Its sequence number at that actor, from 1.
    pub counter: u64,
}

/// Per actor, the number of its updates seen: a summary of causal history
/// that doubles as the client's context for removes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionVector(BTreeMap<Actor, u64>);

impl VersionVector {
    /// An empty vector: nothing seen.
    pub fn new() -> Self {
        Self::default()
    }

    /// A vector from (actor, count) pairs (the greatest count per actor;
    /// zero counts are dropped): how a client's context comes back.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Actor, u64)>) -> Self {
        let mut m = BTreeMap::new();
        for (a, c) in pairs.into_iter().filter(|(_, c)| *c > 0) {
            let e = m.entry(a).or_insert(0);
            *e = c.max(*e);
        }
        VersionVector(m)
    }

    /// How many updates of `actor` have been seen (0 if none).
    pub fn get(&self, actor: &str) -> u64 {
        self.0.get(actor).copied().unwrap_or(0)
    }

    /// Mints the next dot of `actor`, recording it as seen.
    pub fn next_dot(&mut self, actor: &str) -> Dot {
        let counter = match self.0.get_mut(actor) {
            Some(c) => {
                *c += 1;
                *c
            }
            None => {
                self.0.insert(actor.to_owned(), 1);
                1
            }
        };
        Dot {
            actor: actor.to_owned(),
            counter,
        }
    }

    /// Whether the dot `(actor, counter)` is in this history.
    pub fn contains(&self, actor: &str, counter: u64) -> bool {
        self.get(actor) >= counter
    }

    /// Whether every update `other` has seen is seen here too.
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(a, &c)| self.get(a) >= c)
    }

    /// The (actor, count) pairs, by actor.
    pub fn iter(&self) -> impl Iterator<Item = (&Actor, u64)> {
        self.0.iter().map(|(a, &c)| (a, c))
    }
}

impl Convergent for VersionVector {
    fn merge(&mut self, other: &Self) {
        for (a, &c) in &other.0 {
            let mine = self.0.entry(a.clone()).or_insert(0);
            *mine = (*mine).max(c);
        }
    }
}

/// The dots of one element (or flag), at most one per actor: a newer add by
/// an actor supersedes its older one, which its clock has already seen.
pub(crate) type Dots = BTreeMap<Actor, u64>;

/// The ORSWOT merge of two keyed collections (set elements, map fields):
/// every key's entries merged by `merge_one` against both clocks, keys
/// whose merge is left empty dropped (removed on one side after the other
/// saw them). Shared by [`crate::OrSet`] and [`crate::Map`].
pub(crate) fn merge_keyed<K: Ord + Clone, V: Default>(
    mine: &BTreeMap<K, V>,
    my_clock: &VersionVector,
    theirs: &BTreeMap<K, V>,
    their_clock: &VersionVector,
    merge_one: impl Fn(&V, &VersionVector, &V, &VersionVector) -> V,
    is_empty: impl Fn(&V) -> bool,
) -> BTreeMap<K, V> {
    let empty = V::default();
    let mut merged = BTreeMap::new();
    let keys = mine
        .keys()
        .chain(theirs.keys().filter(|k| !mine.contains_key(*k)));
    for key in keys {
        let a = mine.get(key).unwrap_or(&empty);
        let b = theirs.get(key).unwrap_or(&empty);
        let v = merge_one(a, my_clock, b, their_clock);
        if !is_empty(&v) {
            merged.insert(key.clone(), v);
        }
    }
    merged
}

/// The ORSWOT merge of one element's dots: a dot survives when both sides
/// hold it, or when one side holds it and the other's clock has not seen it
/// (the other simply has not received it yet, rather than removed it).
pub(crate) fn merge_dots(
    mine: &Dots,
    my_clock: &VersionVector,
    theirs: &Dots,
    their_clock: &VersionVector,
) -> Dots {
    let mut out = Dots::new();
    for (actor, &c) in mine {
        if theirs.get(actor) == Some(&c) || !their_clock.contains(actor, c) {
            out.insert(actor.clone(), c);
        }
    }
    for (actor, &c) in theirs {
        if mine.get(actor) == Some(&c) || !my_clock.contains(actor, c) {
            let e = out.entry(actor.clone()).or_insert(c);
            *e = (*e).max(c);
        }
    }
    out
}
