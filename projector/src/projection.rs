//! The trait every read model implements.

use std::collections::HashSet;

use uuid::Uuid;

use crate::event::Event;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The store is unreachable or busy: retry the same batch later.
    #[error("transient failure: {0:#}")]
    Transient(#[from] anyhow::Error),
    /// This event can never be applied (bad data for this store): park it and its stream.
    #[error("event {event_id} cannot be applied: {reason}")]
    Poison { event_id: Uuid, reason: String },
}

/// A read model fed by the event log.
///
/// Invariant: `apply` is idempotent per (stream, version). Every store keeps the version
/// it holds per stream and ignores an event at or below it, so redelivery after a crash,
/// a rebalance or a broker refill changes nothing. An event more than one version ahead
/// (a gap) is skipped: the relay always sends the missing one again, followed by this one.
#[async_trait::async_trait]
pub trait Projection: Send + Sync {
    /// Stable name; also the suffix of the Kafka consumer group. Never rename one.
    fn name(&self) -> &'static str;

    /// Applies the events in order, all or nothing where the store allows it.
    async fn apply(&self, events: &[Event]) -> Result<(), ApplyError>;
}

/// Streams with events parked for a projection; their later events park behind them.
#[derive(Debug, Default)]
pub struct ParkedStreams(pub HashSet<Uuid>);
