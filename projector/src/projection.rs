//! The trait every read model implements.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use runtime::tenancy::Tenancy;
use uuid::Uuid;

use crate::event::Event;

/// Why a batch was not applied: what the worker does next depends on it.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The store is unreachable, busy or refusing writes for now (a connection, a timeout,
    /// back-pressure, a lock or serialization conflict, a full disk, a write block): retry
    /// the same batch later, for as long as it takes.
    #[error("transient failure: {0:#}")]
    Transient(#[from] anyhow::Error),
    /// This event can never be applied (bad data for this store): park it and its stream.
    #[error("event {event_id} cannot be applied: {reason}")]
    Poison { event_id: Uuid, reason: String },
    /// An error that says neither that the store is away nor what is wrong with which
    /// event: retried, and if it repeats while the store answers its health probe, the
    /// worker looks for the event behind it and parks that (`worker::apply_or_park`).
    #[error("unexplained failure: {0:#}")]
    Unexplained(anyhow::Error),
}

/// A place in one partition of the log: the offset to read next, in the log epoch (the
/// relay's refill count) the offsets belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    pub next_offset: i64,
    pub epoch: i32,
}

/// Where a batch ends in the log: a position for each partition it touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The consumer group, which names the projection instance (test runs use their own).
    pub group: String,
    pub topic: String,
    pub positions: BTreeMap<i32, LogPosition>,
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

    /// Applies the events in order, all or nothing where the store allows it. A store
    /// that keeps its own checkpoints records `checkpoint` with the same commit.
    async fn apply(&self, events: &[Event], checkpoint: &Checkpoint) -> Result<(), ApplyError>;

    /// Whether `apply` records the checkpoint itself, in the same commit as its writes
    /// (then the worker does not write it again).
    fn commits_checkpoint(&self) -> bool {
        false
    }

    /// Whether the projection keeps events' requests (IP address, user agent): its batches
    /// also ask whether their actors were erased (`crate::event::keys_for`).
    fn keeps_requests(&self) -> bool {
        false
    }

    /// What the store holds of one tenant's streams, for `verify` to compare with the
    /// journal: one entry per kind of record it keeps.
    async fn held(&self, tenant: Uuid) -> anyhow::Result<Vec<Held>>;

    /// Whether the store answers at all (a ping). A batch that keeps failing "transiently"
    /// while this succeeds holds an event the store will never take: the worker then
    /// finds that event and parks it (`worker::apply_or_park`).
    async fn healthy(&self) -> anyhow::Result<()>;
}

/// The versions a store holds of the streams of one kind of record.
#[derive(Debug, Clone)]
pub struct Held {
    /// What was read, for the report (`cases table`, `audit entries`, ...).
    pub what: &'static str,
    /// The stream types these records mirror; empty: every stream (a log of events).
    pub stream_types: &'static [&'static str],
    /// Stream id -> the version held. For a log with one record per event, the number of
    /// records of the stream, which equals its version when none is missing.
    pub versions: HashMap<Uuid, i64>,
}

impl Held {
    pub fn mirrors(&self, stream_type: &str) -> bool {
        self.stream_types.is_empty() || self.stream_types.contains(&stream_type)
    }
}

/// Where a projection writes each tenant's data: under the tenant's own names (live), or
/// under a rebuild's copy names (a scratch id per tenant, so `tenant_<scratch>` schemas,
/// keys and collections), which the rebuild later switches in for the live ones.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    copies: Option<Arc<HashMap<Uuid, Uuid>>>,
}

impl Placement {
    pub fn live() -> Self {
        Self::default()
    }

    /// Writes tenant `t` under the names of `copies[t]`; other tenants are not written.
    pub fn copies(copies: HashMap<Uuid, Uuid>) -> Self {
        Self { copies: Some(Arc::new(copies)) }
    }

    /// The names a tenant's data goes under, or None when this placement leaves it out.
    pub fn of(&self, tenant: Uuid) -> Option<Tenancy> {
        match &self.copies {
            None => Some(Tenancy(tenant)),
            Some(copies) => copies.get(&tenant).map(|scratch| Tenancy(*scratch)),
        }
    }

    pub fn is_live(&self) -> bool {
        self.copies.is_none()
    }
}
