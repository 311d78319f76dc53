//! The dotted version vector set (DVVSet) itself.
//!
//! A DVVSet is a list of per-actor entries `(actor, n, [v_n, v_{n-1}, ...])`
//! sorted by actor, plus a list of *anonymous* values that have no dot yet.
//! Entry `(a, n, l)` says: "every event of actor `a` up to `n` is known; the
//! values of the last `l.len()` of them (dots `(a, n)`, `(a, n-1)`, …) are
//! still live, every older one has been overwritten". The live values of all
//! entries plus the anonymous ones are the siblings.
//!
//! This is the structure and the algorithms of Almeida, Baquero et al.,
//! "Scalable and Accurate Causality Tracking for Eventually Consistent
//! Stores" (2014), as shipped in Riak 2.x (`dvvset.erl`).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An actor identity. dynkv uses node ids (server actors), never client ids,
/// so the number of entries is bounded by the number of coordinating nodes.
pub type Actor = String;

/// One actor's entry: its highest known event counter and the values of its
/// newest events that are still live (newest first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry<V> {
    /// The node that coordinated these events.
    pub actor: Actor,
    /// Every event of `actor` up to and including this one is known.
    pub counter: u64,
    /// Values of events `counter`, `counter - 1`, …: the live siblings this actor wrote.
    pub values: Vec<V>,
}

/// A version vector: the causal history a client has seen (the *context*).
///
/// Kept as a sorted list of `(actor, counter)` so that it encodes compactly
/// and compares in one linear pass.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionVector {
    entries: Vec<(Actor, u64)>,
}

impl VersionVector {
    /// The empty history: what a client that has read nothing knows.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a vector from arbitrary pairs; duplicates keep the highest
    /// counter and zero counters are dropped, so any input is normalised.
    pub fn from_pairs<I: IntoIterator<Item = (Actor, u64)>>(pairs: I) -> Self {
        let mut map: BTreeMap<Actor, u64> = BTreeMap::new();
        for (actor, counter) in pairs {
            if counter == 0 {
                continue;
            }
            let slot = map.entry(actor).or_insert(0);
            *slot = (*slot).max(counter);
        }
        VersionVector {
            entries: map.into_iter().collect(),
        }
    }

    /// The `(actor, counter)` pairs in actor order.
    pub fn entries(&self) -> &[(Actor, u64)] {
        &self.entries
    }

    /// The counter known for `actor` (0 when unknown).
    pub fn get(&self, actor: &str) -> u64 {
        self.entries
            .binary_search_by(|(a, _)| a.as_str().cmp(actor))
            .map(|i| self.entries[i].1)
            .unwrap_or(0)
    }

    /// True when no event is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when this history includes every event of `other` (`self >= other`).
    /// Session guarantees use it: a read may only answer with a state that
    /// descends from the client's last context.
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.entries.iter().all(|(a, n)| self.get(a) >= *n)
    }

    /// The least upper bound of two histories.
    pub fn merge(&self, other: &VersionVector) -> VersionVector {
        VersionVector::from_pairs(self.entries.iter().chain(other.entries.iter()).cloned())
    }
}

/// A dotted version vector set: the versioned state of one key on one replica.
///
/// `V` is the sibling payload (dynkv uses [`crate::Content`]); it must be
/// comparable so that anonymous values can be de-duplicated on merge.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DvvSet<V> {
    entries: Vec<Entry<V>>,
    anonymous: Vec<V>,
}

impl<V> Default for DvvSet<V> {
    fn default() -> Self {
        DvvSet {
            entries: Vec::new(),
            anonymous: Vec::new(),
        }
    }
}

impl<V> DvvSet<V> {
    /// The same causal state with every value (live or anonymous) turned
    /// into `f(value)`: the step between an object and one of its encodings.
    pub(crate) fn convert<'a, W>(&'a self, mut f: impl FnMut(&'a V) -> W) -> DvvSet<W> {
        DvvSet {
            entries: self
                .entries
                .iter()
                .map(|e| Entry {
                    actor: e.actor.clone(),
                    counter: e.counter,
                    values: e.values.iter().map(&mut f).collect(),
                })
                .collect(),
            anonymous: self.anonymous.iter().map(f).collect(),
        }
    }

    /// [`DvvSet::convert`], consuming.
    pub(crate) fn convert_into<W>(self, mut f: impl FnMut(V) -> W) -> DvvSet<W> {
        DvvSet {
            entries: self
                .entries
                .into_iter()
                .map(|e| Entry {
                    actor: e.actor,
                    counter: e.counter,
                    values: e.values.into_iter().map(&mut f).collect(),
                })
                .collect(),
            anonymous: self.anonymous.into_iter().map(f).collect(),
        }
    }
}

impl<V: Clone + PartialEq> PartialEq for DvvSet<V> {
    /// Equal causal state: same entries, same anonymous values as a set.
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
            && self.anonymous.len() == other.anonymous.len()
            && self.anonymous.iter().all(|v| other.anonymous.contains(v))
    }
}

impl<V: Clone + PartialEq + Eq> Eq for DvvSet<V> {}

impl<V: Clone + PartialEq> DvvSet<V> {
    /// The state of a key nobody has written: no history, no values.
    pub fn new() -> Self {
        Self::default()
    }

    /// A lone value with no causal history (Riak's `new/1`); it becomes a
    /// dotted value once a coordinator applies it with [`DvvSet::update`].
    pub fn from_value(value: V) -> Self {
        DvvSet {
            entries: Vec::new(),
            anonymous: vec![value],
        }
    }

    /// The per-actor entries, sorted by actor.
    pub fn entries(&self) -> &[Entry<V>] {
        &self.entries
    }

    /// Values that carry no dot (only ever transient in dynkv).
    pub fn anonymous(&self) -> &[V] {
        &self.anonymous
    }

    /// The coordinator's write (Riak's `update(new(Context, V), Local, Actor)`):
    /// the new value gets a fresh dot of `actor`, and replaces exactly the
    /// values of `local` that `context` has seen; values the writer had not
    /// seen stay as siblings. A blind write passes an empty context.
    ///
    /// `local` must be the coordinator's own stored state, which holds every
    /// dot `actor` has issued for this key, so the fresh dot is never reused.
    pub fn update(context: &VersionVector, local: &DvvSet<V>, actor: &str, value: V) -> DvvSet<V> {
        Self::update_above(context, local, actor, value, 0)
    }

    /// [`DvvSet::update`] whose new dot is above `floor` whenever `actor`
    /// has no live value in the key: a coordinator that no longer stores
    /// every dot it issued for a key (a reaped tombstone, a handed-off hint)
    /// keeps a floor above all of them, so the new dot is never one a
    /// replica elsewhere already knows. (An entry with live values stores
    /// consecutive dots, so its counter cannot jump; and it is complete, as
    /// the coordinator wrote every one of them locally.)
    pub fn update_above(
        context: &VersionVector,
        local: &DvvSet<V>,
        actor: &str,
        value: V,
        floor: u64,
    ) -> DvvSet<V> {
        let seen = DvvSet {
            entries: context
                .entries
                .iter()
                .map(|(a, n)| Entry {
                    actor: a.clone(),
                    counter: *n,
                    values: Vec::new(),
                })
                .collect(),
            anonymous: Vec::new(),
        };
        let mut merged = DvvSet::sync(&seen, local);
        merged.event(actor, value, floor);
        merged
    }

    /// Adds the next event of `actor` carrying `value`, above `floor` when
    /// the actor has no live value here.
    fn event(&mut self, actor: &str, value: V, floor: u64) {
        match self
            .entries
            .binary_search_by(|e| e.actor.as_str().cmp(actor))
        {
            Ok(i) => {
                let entry = &mut self.entries[i];
                let base = if entry.values.is_empty() {
                    entry.counter.max(floor)
                } else {
                    entry.counter
                };
                entry.counter = base.saturating_add(1);
                entry.values.insert(0, value);
            }
            Err(i) => self.entries.insert(
                i,
                Entry {
                    actor: actor.to_string(),
                    counter: floor.saturating_add(1),
                    values: vec![value],
                },
            ),
        }
    }

    /// Merges two replica states (Riak's `sync/2`): a value survives unless
    /// the other side has seen its dot and overwritten it. Commutative,
    /// associative and idempotent, so replicas converge whatever the order
    /// of merges.
    pub fn sync(a: &DvvSet<V>, b: &DvvSet<V>) -> DvvSet<V> {
        let anonymous = if a.less(b) {
            b.anonymous.clone()
        } else if b.less(a) {
            a.anonymous.clone()
        } else {
            let mut all = a.anonymous.clone();
            for v in &b.anonymous {
                if !all.contains(v) {
                    all.push(v.clone());
                }
            }
            all
        };
        let mut entries = Vec::with_capacity(a.entries.len().max(b.entries.len()));
        let (mut i, mut j) = (0, 0);
        while i < a.entries.len() && j < b.entries.len() {
            let (x, y) = (&a.entries[i], &b.entries[j]);
            match x.actor.cmp(&y.actor) {
                Ordering::Less => {
                    entries.push(x.clone());
                    i += 1;
                }
                Ordering::Greater => {
                    entries.push(y.clone());
                    j += 1;
                }
                Ordering::Equal => {
                    entries.push(merge_entry(x, y));
                    i += 1;
                    j += 1;
                }
            }
        }
        entries.extend(a.entries[i..].iter().cloned());
        entries.extend(b.entries[j..].iter().cloned());
        DvvSet { entries, anonymous }
    }

    /// The causal context a reader gets back (Riak's `join/1`).
    pub fn join(&self) -> VersionVector {
        VersionVector {
            entries: self
                .entries
                .iter()
                .map(|e| (e.actor.clone(), e.counter))
                .collect(),
        }
    }

    /// Every live sibling value: dotted values in actor order (newest first
    /// within an actor), then anonymous values.
    pub fn values(&self) -> Vec<&V> {
        self.entries
            .iter()
            .flat_map(|e| e.values.iter())
            .chain(self.anonymous.iter())
            .collect()
    }

    /// How many siblings are live.
    pub fn sibling_count(&self) -> usize {
        self.entries.iter().map(|e| e.values.len()).sum::<usize>() + self.anonymous.len()
    }

    /// True when this state is strictly older than `other` (`self < other`):
    /// every counter is ≤ and at least one is < (Riak's `less/2`).
    pub fn less(&self, other: &DvvSet<V>) -> bool {
        greater(&other.entries, &self.entries)
    }

    /// True when `other`'s history is contained in this one's (`self >= other`).
    /// Read repair and hinted handoff skip a replica whose state already
    /// descends from what they would send.
    pub fn descends(&self, other: &DvvSet<V>) -> bool {
        self.join().descends(&other.join())
    }

    /// Replaces every live value by `f(value)`, keeping the causal history.
    /// Used to resolve siblings server-side (last-write-wins buckets).
    pub fn map_values<F: FnMut(&V) -> V>(&self, mut f: F) -> DvvSet<V> {
        DvvSet {
            entries: self
                .entries
                .iter()
                .map(|e| Entry {
                    actor: e.actor.clone(),
                    counter: e.counter,
                    values: e.values.iter().map(&mut f).collect(),
                })
                .collect(),
            anonymous: self.anonymous.iter().map(f).collect(),
        }
    }

    /// Keeps only the live values `keep` accepts, keeping the causal history
    /// (a dropped value's dot stays known, so it cannot come back on merge).
    pub fn retain_values<F: FnMut(&V) -> bool>(&self, mut keep: F) -> DvvSet<V> {
        DvvSet {
            entries: self
                .entries
                .iter()
                .map(|e| Entry {
                    actor: e.actor.clone(),
                    counter: e.counter,
                    values: e.values.iter().filter(|v| keep(v)).cloned().collect(),
                })
                .collect(),
            anonymous: self.anonymous.iter().filter(|v| keep(v)).cloned().collect(),
        }
    }
}

/// Merges two entries of one actor: keep the dots neither side overwrote.
///
/// The side with the higher counter has every live dot above the other's
/// overwritten prefix, so the result takes its values, truncated to the dots
/// the other side has not overwritten.
fn merge_entry<V: Clone>(x: &Entry<V>, y: &Entry<V>) -> Entry<V> {
    let (hi, lo) = if x.counter >= y.counter {
        (x, y)
    } else {
        (y, x)
    };
    // Saturating: a malformed state from the network must not panic a node.
    let hi_floor = hi.counter.saturating_sub(hi.values.len() as u64);
    let lo_floor = lo.counter.saturating_sub(lo.values.len() as u64);
    let values = if hi_floor >= lo_floor {
        hi.values.clone()
    } else {
        let keep = hi.counter.saturating_sub(lo_floor) as usize;
        hi.values[..keep.min(hi.values.len())].to_vec()
    };
    Entry {
        actor: hi.actor.clone(),
        counter: hi.counter,
        values,
    }
}

/// `a > b` as version vectors over sorted entries (Riak's `greater/3`).
fn greater<V>(a: &[Entry<V>], b: &[Entry<V>]) -> bool {
    let (mut i, mut j) = (0, 0);
    let mut strict = false;
    loop {
        match (a.get(i), b.get(j)) {
            (None, None) => return strict,
            (Some(_), None) => return true,
            (None, Some(_)) => return false,
            (Some(x), Some(y)) => match x.actor.cmp(&y.actor) {
                Ordering::Equal => {
                    match x.counter.cmp(&y.counter) {
                        Ordering::Less => return false,
                        Ordering::Greater => strict = true,
                        Ordering::Equal => {}
                    }
                    i += 1;
                    j += 1;
                }
                Ordering::Less => {
                    strict = true;
                    i += 1;
                }
                Ordering::Greater => return false,
            },
        }
    }
}
