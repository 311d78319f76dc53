//! Observed-disable flag, enable wins (`riak_dt_od_flag`).

use serde::{Deserialize, Serialize};

use crate::vv::{Dots, merge_dots};
use crate::{Convergent, Precondition, VersionVector};

/// An on/off flag where a concurrent enable wins over a disable
/// (`riak_dt_od_flag`): the flag is an observed-remove set holding at most
/// one element, "enabled"; it is on while it holds a dot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    clock: VersionVector,
    dots: Dots,
}

impl Flag {
    /// A disabled flag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns the flag on with a fresh dot of `actor`.
    pub fn enable(&mut self, actor: &str) {
        let dot = self.clock.next_dot(actor);
        self.dots.clear();
        self.dots.insert(dot.actor, dot.counter);
    }

    /// Turns off the enables `context` has seen; a concurrent enable
    /// survives. Disabling a flag that is off is a no-op.
    pub fn disable(&mut self, context: &VersionVector) -> Result<(), Precondition> {
        if !self.clock.descends(context) {
            return Err(Precondition::UnseenContext);
        }
        self.dots
            .retain(|actor, &mut c| !context.contains(actor, c));
        Ok(())
    }

    /// Whether the flag is on.
    pub fn value(&self) -> bool {
        !self.dots.is_empty()
    }

    /// The causal context to hand to a client with a read.
    pub fn context(&self) -> VersionVector {
        self.clock.clone()
    }
}

impl Convergent for Flag {
    fn merge(&mut self, other: &Self) {
        self.dots = merge_dots(&self.dots, &self.clock, &other.dots, &other.clock);
        self.clock.merge(&other.clock);
    }
}
