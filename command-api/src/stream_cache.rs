//! Folded stream states kept between commands, so a command reads only the events appended
//! since a stream was last folded instead of its whole history.
//!
//! Entries are keyed by (tenant, stream id): a stream is identified by both, and two
//! tenants may use the same id for streams of their own, which never share an entry.
//!
//! Why it is always correct: journal rows are immutable and unique per (tenant, stream,
//! version),
//! and only committed rows are ever folded, so a cached (version, state) is a true prefix of
//! the stream forever. Every load still asks the journal for the events after the cached
//! version (an index probe that usually finds nothing), so a command never decides on a
//! stale state, whichever process appended the newer events. The cache only saves work.
//!
//! Bounded: past `capacity` streams the whole cache is emptied. Hot streams (the tenant,
//! its users, case types, workflows and field definitions) are folded again on their next
//! use, which costs one read of their history.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use events::StreamType;
use uuid::Uuid;

/// What a cached entry holds: the stream's state after `version`.
struct Entry {
    stream_type: StreamType,
    version: i64,
    state: Arc<dyn Any + Send + Sync>,
}

pub struct StreamCache {
    /// (tenant, stream id) -> the stream's folded state.
    entries: Mutex<HashMap<(Uuid, Uuid), Entry>>,
    capacity: usize,
}

impl StreamCache {
    pub fn new(capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::new()), capacity }
    }

    /// The cached state and version of a stream of this tenant and type (None: not cached;
    /// an id of another tenant or kind never matches).
    pub fn get<S: Clone + Send + Sync + 'static>(
        &self,
        tenant: Uuid,
        stream_type: StreamType,
        stream: Uuid,
    ) -> Option<(Option<S>, i64)> {
        let (state, version) = {
            let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let entry = entries.get(&(tenant, stream))?;
            if entry.stream_type != stream_type {
                return None;
            }
            (entry.state.clone(), entry.version)
        };
        // The clone of the state happens outside the lock.
        state.downcast_ref::<Option<S>>().map(|s| (s.clone(), version))
    }

    /// Remembers a stream's state after `version`, unless a newer one is already kept.
    pub fn put<S: Clone + Send + Sync + 'static>(
        &self,
        tenant: Uuid,
        stream_type: StreamType,
        stream: Uuid,
        version: i64,
        state: Option<S>,
    ) {
        if version == 0 {
            return; // nothing to save: the stream has no events yet
        }
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (tenant, stream);
        if let Some(kept) = entries.get(&key) {
            if kept.stream_type == stream_type && kept.version >= version {
                return;
            }
        }
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, Entry { stream_type, version, state: Arc::new(state) });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_state_is_found_only_for_its_tenant_and_kind() {
        let cache = StreamCache::new(10);
        let (tenant, stream) = (Uuid::now_v7(), Uuid::now_v7());
        cache.put(tenant, StreamType::Case, stream, 3, Some(String::from("three")));
        assert_eq!(cache.get::<String>(tenant, StreamType::Case, stream), Some((Some("three".into()), 3)));
        assert_eq!(cache.get::<String>(Uuid::now_v7(), StreamType::Case, stream), None);
        assert_eq!(cache.get::<String>(tenant, StreamType::User, stream), None);
        // A state of another Rust type under the same kind is never handed out.
        assert_eq!(cache.get::<u32>(tenant, StreamType::Case, stream), None);
    }

    #[test]
    fn tenants_using_the_same_id_keep_their_own_states() {
        let cache = StreamCache::new(10);
        let (a, b, stream) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        cache.put(a, StreamType::Case, stream, 4, Some(String::from("a's case")));
        cache.put(b, StreamType::User, stream, 1, Some(String::from("b's user")));
        // Neither evicts nor answers for the other, whatever the kinds and versions.
        assert_eq!(cache.get::<String>(a, StreamType::Case, stream), Some((Some("a's case".into()), 4)));
        assert_eq!(cache.get::<String>(b, StreamType::User, stream), Some((Some("b's user".into()), 1)));
        assert_eq!(cache.get::<String>(b, StreamType::Case, stream), None);
        assert_eq!(cache.get::<String>(a, StreamType::User, stream), None);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn an_older_fold_never_replaces_a_newer_one() {
        let cache = StreamCache::new(10);
        let (tenant, stream) = (Uuid::now_v7(), Uuid::now_v7());
        cache.put(tenant, StreamType::Case, stream, 5, Some(5u32));
        cache.put(tenant, StreamType::Case, stream, 4, Some(4u32));
        assert_eq!(cache.get::<u32>(tenant, StreamType::Case, stream), Some((Some(5), 5)));
        cache.put(tenant, StreamType::Case, stream, 6, Some(6u32));
        assert_eq!(cache.get::<u32>(tenant, StreamType::Case, stream), Some((Some(6), 6)));
    }

    #[test]
    fn empty_streams_are_not_kept_and_a_full_cache_starts_again() {
        let cache = StreamCache::new(2);
        let tenant = Uuid::now_v7();
        cache.put(tenant, StreamType::Case, Uuid::now_v7(), 0, Some(0u32));
        assert_eq!(cache.len(), 0);
        cache.put(tenant, StreamType::Case, Uuid::now_v7(), 1, Some(1u32));
        cache.put(tenant, StreamType::Case, Uuid::now_v7(), 1, Some(2u32));
        let third = Uuid::now_v7();
        cache.put(tenant, StreamType::Case, third, 1, Some(3u32));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get::<u32>(tenant, StreamType::Case, third), Some((Some(3), 1)));
    }
}
