//! Grow-only set (`riak_dt_gset`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::Convergent;

/// A set that only grows: merge is union. The cheapest set when elements
/// are never removed (`riak_dt_gset`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GSet {
    elems: BTreeSet<Vec<u8>>,
}

impl GSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `elem`.
    pub fn add(&mut self, elem: impl Into<Vec<u8>>) {
        self.elems.insert(elem.into());
    }

    /// Whether `elem` was added.
    pub fn contains(&self, elem: &[u8]) -> bool {
        self.elems.contains(elem)
    }

    /// The elements, in byte order.
    pub fn value(&self) -> &BTreeSet<Vec<u8>> {
        &self.elems
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.elems.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.elems.is_empty()
    }
}

impl Convergent for GSet {
    fn merge(&mut self, other: &Self) {
        self.elems.extend(other.elems.iter().cloned());
    }
}
