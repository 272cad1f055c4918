//! Folded stream states kept between commands, so a command reads only the events appended
//! since a stream was last folded instead of its whole history.
//!
//! Entries are keyed by (tenant, stream id): a stream is identified by both, and two
//! tenants may use the same id for streams of their own, which never share an entry.
//! Each entry holds `events::Folded`, so a state is only ever handed out as the aggregate
//! it is (an id of another kind of stream reads as not cached).
//!
//! Why it is always correct: journal rows are immutable and unique per (tenant, stream,
//! version), and only committed rows are ever folded, so a cached (version, state) is a
//! true prefix of the stream forever. Every load still asks the journal for the events
//! after the cached version (an index probe that usually finds nothing), so a command
//! never decides on a stale state, whichever process appended the newer events. The
//! cache only saves work.
//!
//! Bounded by moka: past `capacity` streams the least likely to be used again are
//! evicted (TinyLFU), so hot streams (the tenant, its users, case types, workflows and
//! field definitions) stay while a burst of one-off streams passes through.

use std::sync::Arc;

use events::{Aggregate, Folded};
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
}

impl StreamCache {
    pub fn new(capacity: u64) -> Self {
        Self { entries: Cache::new(capacity) }
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
}
