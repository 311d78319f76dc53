//! Observed-remove set without tombstones (`riak_dt_orswot`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::vv::{Dots, merge_dots, merge_keyed};
use crate::{Convergent, Precondition, VersionVector};

/// A set with add and remove where a concurrent add wins over a remove
/// (`riak_dt_orswot`). Each add tags the element with a fresh dot; a remove
/// drops the dots the client observed. The clock remembers every dot ever
/// seen, so a removed element needs no tombstone: on merge, a dot one side
/// lacks but whose clock covers it was removed there, and goes.
///
/// Removes whose context is ahead of this replica are refused
/// ([`Precondition::UnseenContext`]) rather than deferred.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrSet {
    clock: VersionVector,
    entries: BTreeMap<Vec<u8>, Dots>,
}

impl OrSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `elem` on behalf of `actor`: a new dot replaces the element's
    /// dots, all of which this replica's clock has seen. O(log n).
    pub fn add(&mut self, actor: &str, elem: impl Into<Vec<u8>>) {
        let dot = self.clock.next_dot(actor);
        let mut dots = Dots::new();
        dots.insert(dot.actor, dot.counter);
        self.entries.insert(elem.into(), dots);
    }

    /// Removes the dots of `elem` that `context` (from an earlier read) has
    /// seen; dots added concurrently survive (add wins). O(log n).
    pub fn remove(&mut self, elem: &[u8], context: &VersionVector) -> Result<(), Precondition> {
        if !self.clock.descends(context) {
            return Err(Precondition::UnseenContext);
        }
        let Some(dots) = self.entries.get_mut(elem) else {
            return Err(Precondition::NotPresent);
        };
        dots.retain(|actor, &mut c| !context.contains(actor, c));
        if dots.is_empty() {
            self.entries.remove(elem);
        }
        Ok(())
    }

    /// Whether `elem` is in the set.
    pub fn contains(&self, elem: &[u8]) -> bool {
        self.entries.contains_key(elem)
    }

    /// The elements, in byte order.
    pub fn value(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.entries.keys()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The causal context to hand to a client with a read, for its later
    /// removes.
    pub fn context(&self) -> VersionVector {
        self.clock.clone()
    }
}

impl Convergent for OrSet {
    fn merge(&mut self, other: &Self) {
        self.entries = merge_keyed(
            &self.entries,
            &self.clock,
            &other.entries,
            &other.clock,
            merge_dots,
            Dots::is_empty,
        );
        self.clock.merge(&other.clock);
    }
}
