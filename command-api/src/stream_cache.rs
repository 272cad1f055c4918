//! Folded stream states kept between commands, so a command reads only the events appended
//! since a stream was last folded instead of its whole history.
//!
//! Entries are keyed by (tenant, stream id): a stream is identified by both, and two
//! tenants may use the same id for streams of their own, which never share an entry.
//! Each entry holds `events::Folded`, so a state is only ever handed out as the aggregate
//! it is (an id of another kind of stream reads as not cached).
//!
//! Why it is correct: journal rows are immutable and unique per (tenant, stream, version),
//! and only committed rows are ever folded, so a cached (version, state) is a true prefix
//! of the stream forever. Two kinds of streams are read in two ways:
//! - *Busy streams* (cases, notes, tasks...): every load asks the journal for the events
//!   after the cached version (an index probe that usually finds nothing), so a command
//!   never decides on a stale state, whichever process appended the newer events.
//! - *Facts* (`is_fact`: tenants, users, case types, workflows, teams...), which other
//!   commands check on every request and which change rarely: a cached fact is used as it
//!   is while the cache is `following` the journal's `murima_facts` notifications, which
//!   `eventstore.append` sends when such a stream changes (`invalidate`). The command's
//!   own stream is checked again by its append (its expected version), so a stale fact
//!   costs at most the moment between another process's commit and its notification.
//!   Without the notifications (not yet listening, connection lost) facts are read like
//!   busy streams, and the cache is emptied when they come back.
//!
//! Which facts of one kind a tenant has (every field definition, for a case's form) is
//! kept too (`members`), trusted the same way; any change of one of the tenant's facts
//! drops the tenant's lists, since a notification does not say whether it began a stream.
//!
//! A load that read the journal keeps what it read only if no invalidation came in
//! meanwhile (`epoch`): otherwise it could put back a state a notification had just
//! dropped.
//!
//! Bounded by moka: past `capacity` streams the least likely to be used again are
//! evicted (TinyLFU), so hot streams (the tenant, its users, case types, workflows and
//! field definitions) stay while a burst of one-off streams passes through.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use events::{Aggregate, Folded, StreamType};
use moka::sync::Cache;
use uuid::Uuid;

/// What a cached entry holds: the stream's state after `version`.
struct Entry {
    version: i64,
    state: Folded,
}

pub struct StreamCache {
    /// (tenant, stream id) -> the stream's folded state.
    entries: Cache<(Uuid, Uuid), Arc<Entry>>,
    /// Whether the notifications of changed facts are being received.
    following: AtomicBool,
    /// Counts invalidations, so a load can tell one came in while it read.
    epoch: AtomicU64,
    /// (tenant, kind of fact) -> the ids of the tenant's streams of that kind.
    members: Cache<(Uuid, StreamType), Arc<Vec<Uuid>>>,
}

/// Streams other commands read as facts on their hot path, changed rarely: their cached
/// states are trusted while the cache follows the journal's notifications.
pub fn is_fact(kind: StreamType) -> bool {
    match kind {
        StreamType::Tenant
        | StreamType::User
        | StreamType::Team
        | StreamType::CaseType
        | StreamType::Workflow
        | StreamType::Channel
        | StreamType::MessageTemplate
        | StreamType::CustomField => true,
        StreamType::Case
        | StreamType::Interaction
        | StreamType::Task
        | StreamType::Note
        | StreamType::Document
        | StreamType::Webhook
        | StreamType::DataSubject => false,
    }
}

impl StreamCache {
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: Cache::new(capacity),
            following: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            members: Cache::new((capacity / 100).saturating_add(1)),
        }
    }

    /// The cached state of a fact, if it can be used without asking the journal.
    pub fn trusted<A: Aggregate>(&self, tenant: Uuid, stream: Uuid) -> Option<(Option<A>, i64)> {
        if !is_fact(A::STREAM) || !self.following.load(Ordering::Acquire) {
            return None;
        }
        self.get::<A>(tenant, stream)
    }

    /// The ids of the tenant's streams of a kind of fact, if they can be used without
    /// asking the journal.
    pub fn trusted_members(&self, tenant: Uuid, kind: StreamType) -> Option<Arc<Vec<Uuid>>> {
        if !is_fact(kind) || !self.following.load(Ordering::Acquire) {
            return None;
        }
        self.members.get(&(tenant, kind))
    }

    /// Remembers the ids of the tenant's streams of a kind of fact, read from the journal,
    /// unless an invalidation came in since `epoch` (taken before they were read).
    pub fn put_members_unless_invalidated(&self, epoch: u64, tenant: Uuid, kind: StreamType, ids: Arc<Vec<Uuid>>) {
        if is_fact(kind) && self.epoch() == epoch {
            self.members.insert((tenant, kind), ids);
            // An invalidation between the look at the epoch and the insert may have
            // missed this entry: it goes again.
            if self.epoch() != epoch {
                self.members.invalidate(&(tenant, kind));
            }
        }
    }

    /// Drops the tenant's lists of facts.
    fn forget_members(&self, tenant: Uuid) {
        let doomed: Vec<Arc<(Uuid, StreamType)>> =
            self.members.iter().map(|(key, _)| key).filter(|key| key.0 == tenant).collect();
        for key in doomed {
            self.members.invalidate(&*key);
        }
    }

    /// Where invalidations stand; `put_unless_invalidated` compares.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A stream changed at `version`: an older cached state goes.
    pub fn invalidate(&self, tenant: Uuid, stream: Uuid, version: i64) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.forget_members(tenant);
        let key = (tenant, stream);
        if self.entries.get(&key).is_some_and(|kept| kept.version < version) {
            self.entries.invalidate(&key);
        }
    }

    /// Every cached state of the tenant goes (and any load in flight keeps nothing).
    pub fn forget_tenant(&self, tenant: Uuid) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.forget_members(tenant);
        let doomed: Vec<Arc<(Uuid, Uuid)>> =
            self.entries.iter().map(|(key, _)| key).filter(|key| key.0 == tenant).collect();
        for key in doomed {
            self.entries.invalidate(&*key);
        }
    }

    /// Notifications are received (true) or may have been missed (false): either way
    /// everything cached before goes, since a change may have gone unheard.
    pub fn follow(&self, following: bool) {
        self.following.store(false, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
        self.members.invalidate_all();
        self.following.store(following, Ordering::Release);
    }

    /// `put`, unless an invalidation came in since `epoch`.
    pub fn put_unless_invalidated<A: Aggregate>(
        &self,
        epoch: u64,
        tenant: Uuid,
        stream: Uuid,
        version: i64,
        state: Option<A>,
    ) {
        if self.epoch() == epoch {
            self.put(tenant, stream, version, state);
            // An invalidation between the look at the epoch and the insert may have
            // missed this entry: it goes again (costing at most a read).
            if self.epoch() != epoch {
                self.entries.invalidate(&(tenant, stream));
            }
        }
    }

    /// The cached state and version of a stream of this tenant (None: not cached, or an
    /// id of another tenant or kind).
    pub fn get<A: Aggregate>(&self, tenant: Uuid, stream: Uuid) -> Option<(Option<A>, i64)> {
        let entry = self.entries.get(&(tenant, stream))?;
        A::from_folded(&entry.state).map(|state| (state.clone(), entry.version))
    }

    /// Remembers a stream's state after `version`, unless a newer one is already kept.
    /// (Two commands racing here can leave the older of their two folds: still a true
    /// prefix, and the next load reads the events after it.)
    pub fn put<A: Aggregate>(&self, tenant: Uuid, stream: Uuid, version: i64, state: Option<A>) {
        if version == 0 {
            return; // nothing to save: the stream has no events yet
        }
        let key = (tenant, stream);
        if let Some(kept) = self.entries.get(&key) {
            if A::from_folded(&kept.state).is_some() && kept.version >= version {
                return;
            }
        }
        self.entries.insert(key, Arc::new(Entry { version, state: A::into_folded(state) }));
    }

    #[cfg(test)]
    fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use events::case::Case;
    use events::team::Team;
    use events::user::User;

    use super::*;

    fn team(name: &str) -> Option<Team> {
        Some(Team { name: name.into(), description: None, members: vec![] })
    }

    fn name(found: Option<(Option<Team>, i64)>) -> Option<(String, i64)> {
        found.map(|(team, version)| (team.map(|t| t.name).unwrap_or_default(), version))
    }

    #[test]
    fn a_cached_state_is_found_only_for_its_tenant_and_kind() {
        let cache = StreamCache::new(10);
        let (tenant, stream) = (Uuid::now_v7(), Uuid::now_v7());
        cache.put(tenant, stream, 3, team("three"));
        assert_eq!(name(cache.get::<Team>(tenant, stream)), Some(("three".into(), 3)));
        assert_eq!(name(cache.get::<Team>(Uuid::now_v7(), stream)), None);
        // A team's id sent as a user's is never answered with the team.
        assert!(cache.get::<User>(tenant, stream).is_none());
    }

    #[test]
    fn tenants_using_the_same_id_keep_their_own_states() {
        let cache = StreamCache::new(10);
        let (a, b, stream) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        cache.put(a, stream, 4, team("a's team"));
        cache.put(b, stream, 1, team("b's team"));
        assert_eq!(name(cache.get::<Team>(a, stream)), Some(("a's team".into(), 4)));
        assert_eq!(name(cache.get::<Team>(b, stream)), Some(("b's team".into(), 1)));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn an_older_fold_never_replaces_a_newer_one() {
        let cache = StreamCache::new(10);
        let (tenant, stream) = (Uuid::now_v7(), Uuid::now_v7());
        cache.put(tenant, stream, 5, team("five"));
        cache.put(tenant, stream, 4, team("four"));
        assert_eq!(name(cache.get::<Team>(tenant, stream)), Some(("five".into(), 5)));
        cache.put(tenant, stream, 6, team("six"));
        assert_eq!(name(cache.get::<Team>(tenant, stream)), Some(("six".into(), 6)));
    }

    #[test]
    fn a_fact_is_trusted_only_while_notifications_are_followed_and_until_one_says_it_changed() {
        let cache = StreamCache::new(10);
        let (tenant, stream) = (Uuid::now_v7(), Uuid::now_v7());
        cache.put(tenant, stream, 2, team("two"));
        assert!(cache.trusted::<Team>(tenant, stream).is_none(), "not following yet");
        cache.follow(true);
        assert!(cache.get::<Team>(tenant, stream).is_none(), "what was cached before following goes");
        cache.put(tenant, stream, 2, team("two"));
        assert_eq!(name(cache.trusted::<Team>(tenant, stream)), Some(("two".into(), 2)));
        cache.invalidate(tenant, stream, 2);
        assert!(cache.trusted::<Team>(tenant, stream).is_some(), "a notification of what is cached keeps it");
        cache.invalidate(tenant, stream, 3);
        assert!(cache.trusted::<Team>(tenant, stream).is_none(), "a newer version drops it");
        cache.put(tenant, stream, 3, team("three"));
        cache.follow(false);
        assert!(cache.trusted::<Team>(tenant, stream).is_none(), "notifications lost: nothing is trusted");
    }

    #[test]
    fn a_busy_stream_is_never_trusted_and_a_read_overtaken_by_an_invalidation_is_not_kept() {
        let cache = StreamCache::new(10);
        cache.follow(true);
        let (tenant, case, team_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        cache.put::<Case>(tenant, case, 1, None);
        assert!(cache.trusted::<Case>(tenant, case).is_none());
        let epoch = cache.epoch();
        cache.invalidate(tenant, team_id, 4);
        cache.put_unless_invalidated(epoch, tenant, team_id, 3, team("read before the change"));
        assert!(cache.get::<Team>(tenant, team_id).is_none());
        let epoch = cache.epoch();
        cache.put_unless_invalidated(epoch, tenant, team_id, 4, team("four"));
        assert_eq!(name(cache.trusted::<Team>(tenant, team_id)), Some(("four".into(), 4)));
    }

    #[test]
    fn empty_streams_are_not_kept_and_the_cache_stays_within_its_capacity() {
        let cache = StreamCache::new(50);
        let tenant = Uuid::now_v7();
        cache.put(tenant, Uuid::now_v7(), 0, team("none"));
        assert_eq!(cache.len(), 0);
        let hot = Uuid::now_v7();
        cache.put(tenant, hot, 1, team("hot"));
        for _ in 0..500 {
            let _ = cache.get::<Team>(tenant, hot);
            cache.put(tenant, Uuid::now_v7(), 1, team("one-off"));
        }
        assert!(cache.len() <= 50, "{} entries", cache.len());
        // The stream read all along is still there; one-off streams made way.
        assert_eq!(name(cache.get::<Team>(tenant, hot)), Some(("hot".into(), 1)));
    }

    #[test]
    fn a_tenants_list_of_facts_is_trusted_only_while_following_and_goes_with_any_change() {
        let cache = StreamCache::new(100);
        let (tenant, other) = (Uuid::now_v7(), Uuid::now_v7());
        let ids = Arc::new(vec![Uuid::now_v7()]);
        cache.put_members_unless_invalidated(cache.epoch(), tenant, StreamType::CustomField, ids.clone());
        assert!(cache.trusted_members(tenant, StreamType::CustomField).is_none(), "not following");
        cache.follow(true);
        for t in [tenant, other] {
            cache.put_members_unless_invalidated(cache.epoch(), t, StreamType::CustomField, ids.clone());
        }
        assert_eq!(cache.trusted_members(tenant, StreamType::CustomField), Some(ids.clone()));
        // Busy streams' lists are never kept: they change with every command.
        cache.put_members_unless_invalidated(cache.epoch(), tenant, StreamType::Case, ids.clone());
        assert!(cache.trusted_members(tenant, StreamType::Case).is_none());
        // A change of any fact of the tenant (it may have begun a stream) drops its lists,
        // not another tenant's.
        cache.invalidate(tenant, Uuid::now_v7(), 1);
        assert!(cache.trusted_members(tenant, StreamType::CustomField).is_none());
        assert_eq!(cache.trusted_members(other, StreamType::CustomField), Some(ids.clone()));
        // A list read before a change is not kept after it.
        let epoch = cache.epoch();
        cache.invalidate(tenant, Uuid::now_v7(), 1);
        cache.put_members_unless_invalidated(epoch, tenant, StreamType::CustomField, ids.clone());
        assert!(cache.trusted_members(tenant, StreamType::CustomField).is_none());
        cache.forget_tenant(other);
        assert!(cache.trusted_members(other, StreamType::CustomField).is_none());
    }
}
