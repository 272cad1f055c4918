//! A field's value before and after an event: events carry both, so the audit trail and
//! the counters never need to look anything up.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change<T> {
    pub old: T,
    pub new: T,
}

impl<T: PartialEq + Clone> Change<T> {
    /// `Some(change)` when `new` is given and differs from `old`.
    pub fn between(old: &T, new: Option<T>) -> Option<Self> {
        new.filter(|n| n != old).map(|new| Change { old: old.clone(), new })
    }
}
