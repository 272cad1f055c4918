//! The write-side journal in PostgreSQL: one row per event, unique per (tenant, stream,
//! version), written in the same transaction as the command's idempotency record and
//! outbox entry.
//! This is what makes guarantees 1-3 hold whatever the broker does: once a command is
//! answered 2xx its events are committed here, and the relay delivers them from here.

use std::sync::Arc;

use chrono::Utc;
use events::personal::{self, SubjectKey};
use events::tenant::Tenant;
use events::{Actor, Aggregate, DomainError, EventEnvelope, RequestContext, StreamEvent, StreamType};
use runtime::position::PositionToken;
use runtime::subject_keys;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::appender::{AppendCall, Appender, Batched};
use crate::config_cache::ConfigCache;
use crate::stream_cache::{is_fact, StreamCache};

/// Something looked up (or reserved) inside the command's transaction before deciding,
/// so that it commits or rolls back with the events.
pub enum Lookup {
    Nothing,
    /// Allocate the tenant's next human case number (only when the stream is new).
    CaseNumber,
    /// Claim a tenant slug; taken slugs are a 409.
    TenantSlug(String),
    /// Claim a (normalised) username and/or email for the user stream; taken ones are a 409.
    /// A new user's password hash goes to the credentials table, never into an event.
    UserIdentity {
        username: Option<String>,
        email: Option<String>,
        password_hash: Option<String>,
    },
    /// Replace the user's password hash in the credentials table.
    Password {
        password_hash: String,
    },
    /// Claim a (normalised) name among the streams of one kind, freeing the stream's old one.
    UniqueName {
        kind: &'static str,
        name: String,
    },
    /// A channel's (normalised) name, claimed like `UniqueName`, and, when its
    /// configuration is replaced, its credentials, which live off the log in
    /// `eventstore.channel_credentials`: those neither set nor kept are deleted.
    Channel {
        name: Option<String>,
        credentials: Option<events::channel::Credentials>,
    },
    /// A webhook's signing secret, which lives off the log in `eventstore.webhook_secrets`:
    /// set or replaced, or (None) deleted with the webhook.
    WebhookSecret {
        secret: Option<String>,
    },
    /// Erase the user stream's subject (`events::personal`): their key is deleted (the row
    /// stays, as the mark that they were erased), and so are their claimed username and
    /// email and their credentials, which hold personal data off the log.
    Erasure,
    /// Erase a data subject who is not a user (`events::data_subject`): their key is
    /// deleted, the row staying as the mark.
    SubjectErasure {
        subject: Uuid,
    },
}

impl Lookup {
    /// Claims `name` (trimmed and lower-cased) among the tenant's streams of `kind`;
    /// nothing when the command names none.
    pub fn unique_name(kind: &'static str, name: Option<&str>) -> Self {
        match name {
            Some(name) => Self::UniqueName { kind, name: name.trim().to_lowercase() },
            None => Self::Nothing,
        }
    }
}

#[derive(Debug, Default)]
pub struct Looked {
    pub case_number: Option<String>,
}

/// What a command recorded: the stream, the version it is now at, how many events it
/// appended (none: it changed nothing), and the signed position token of the stream's
/// last event. Stored with the command's Idempotency-Key and replayed verbatim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub id: Uuid,
    pub version: i64,
    pub events_appended: usize,
    pub position: String,
}

/// The channel `eventstore.append` notifies when a fact's stream changes.
const FACTS_CHANNEL: &str = "murima_facts";
/// How many times a command without If-Match that lost a race is decided again.
const UNVERSIONED_RETRIES: usize = 3;
/// A `murima_facts` notification `<tenant> *`: forget every cached state of the tenant.
const FORGET_TENANT: &str = "*";

/// The SQLSTATE `eventstore.append` raises when a twin with the same key committed first.
const TWIN_COMMITTED: &str = "MU001";

/// What a new case's `decide` sees as its number; `eventstore.append` writes the real one
/// into the event as it allocates it.
const PENDING_CASE_NUMBER: &str = "CASE-000000";

/// An idempotency record's answer. Records written before `eventstore.append` hold the
/// signed token (`position`); newer ones the position, signed as they are read.
#[derive(Deserialize)]
struct StoredAnswer {
    id: Uuid,
    version: i64,
    events_appended: usize,
    #[serde(default)]
    position: Option<String>,
    #[serde(default)]
    position_at: Option<i64>,
}

/// An append's result: new events recorded (with a new case's number, if one was
/// allocated), or the answer of an earlier attempt.
enum Appended {
    New(Recorded, Option<String>),
    Replayed(Recorded),
}

impl Appended {
    fn into_recorded(self) -> Recorded {
        match self {
            Appended::New(r, _) | Appended::Replayed(r) => r,
        }
    }
}

/// The If-Match check: the stream must be at the version the caller read.
fn expect_version(cmd: &Command<'_>, current: i64) -> Result<(), JournalError> {
    match cmd.meta.expected_version {
        Some(expected) if expected != current => Err(JournalError::conflict(
            format!("If-Match expected version {expected} but the stream is at version {current}"),
            Some(current),
        )),
        _ => Ok(()),
    }
}

/// Why the journal did not record a command. The routes say what each means in HTTP.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The stream is not at the version the command expected (If-Match, or a concurrent
    /// writer), or a name, username, email or client-chosen id is taken. `current`: the
    /// version the stream is at, when known.
    #[error("{detail}")]
    Conflict { detail: String, current: Option<i64> },
    /// `decide` refused the command, with the stream at version `current`.
    #[error("{error}")]
    Rejected { error: DomainError, current: i64 },
    /// The Idempotency-Key was used before for a different request.
    #[error("this Idempotency-Key was already used for a different request; use a new key")]
    KeyReused,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// A stored event or answer this build cannot read, or an event it cannot write.
    #[error(transparent)]
    Unreadable(#[from] anyhow::Error),
}

impl JournalError {
    fn conflict(detail: impl Into<String>, current: Option<i64>) -> Self {
        Self::Conflict { detail: detail.into(), current }
    }
}

/// How many streams' folded states the command API keeps (see `stream_cache`).
const CACHED_STREAMS: u64 = 200_000;

#[derive(Clone)]
pub struct Journal {
    pool: PgPool,
    /// Sends the fast path's appends in batches (`appender`).
    appender: Appender,
    published: Arc<tokio::sync::Notify>,
    cache: Arc<StreamCache>,
    /// Signs the position tokens of answers (`runtime::position`).
    keys: runtime::auth::JwtKeys,
    /// How long an idempotency record answers retries (`MURIMA_IDEMPOTENCY_HOURS`).
    idempotency_ttl: std::time::Duration,
    /// The keys of the tenant users who acted lately, (tenant, user) -> key, which seal
    /// their requests' address and user agent: dropped after an idle hour, and at once in
    /// the process that erases the user. Another process may keep an erased user's key
    /// until it idles out: an erased user no longer acts, and a request sealed meanwhile
    /// with their key is as unreadable as the rest of their data.
    actor_keys: moka::sync::Cache<(Uuid, Uuid), SubjectKey>,
    /// Tenants' folded states in Redis (`config_cache`), read by a tenant check this
    /// process's own cache cannot answer.
    config: ConfigCache,
}

/// How many actors' keys a command API keeps, and for how long unused.
const CACHED_ACTOR_KEYS: u64 = 10_000;
const ACTOR_KEY_IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Who an idempotency record belongs to: the user of a login token, or the operator of an
/// operator's token. Keys are never shared, even inside a tenant: another user reusing a
/// key neither gets the first one's answer nor learns that the key exists.
fn principal(meta: &Metadata) -> String {
    let kind = if meta.operator { "operator" } else { "user" };
    format!("{kind}:{}", meta.actor.user_id)
}

/// Who runs a command and what its request asked for, as the journal records it: plain
/// data, made from an HTTP request by the routes (`context`) or by the system's own
/// schedulers (`Metadata::system`).
#[derive(Debug, Clone)]
pub struct Metadata {
    /// Whom the events name.
    pub actor: Actor,
    /// An operator's token or the system, not a tenant user's login: its request is kept
    /// unsealed and its idempotency keys are the operator's.
    pub operator: bool,
    /// The caller's own tenant, which idempotency keys are scoped to (a platform
    /// operator's is the nil tenant).
    pub caller_tenant: Uuid,
    /// `If-Match`: the stream version the client last saw.
    pub expected_version: Option<i64>,
    pub idempotency_key: Option<String>,
    pub correlation_id: Uuid,
    pub request: RequestContext,
}

/// The role events of the system itself carry as their actor's (with the nil user id).
pub const SYSTEM_ROLE: &str = "system";

impl Metadata {
    /// A command the system runs on its own in `tenant` (no request, no caller): its
    /// events name the nil user in the role `system`.
    pub fn system(tenant: Uuid) -> Self {
        Self {
            actor: Actor { user_id: Uuid::nil(), role: SYSTEM_ROLE.to_owned() },
            operator: true,
            caller_tenant: tenant,
            expected_version: None,
            idempotency_key: None,
            correlation_id: Uuid::now_v7(),
            request: RequestContext::default(),
        }
    }
}

/// Where an append's statement goes.
enum Via<'c> {
    /// With other commands' appends (`appender`): the fast path, holding no connection.
    Batch,
    /// Alone, on this connection or transaction.
    Conn(&'c mut sqlx::PgConnection),
}

/// One command to run against one stream.
pub struct Command<'a> {
    pub meta: &'a Metadata,
    pub tenant_id: Uuid,
    pub stream_id: Uuid,
    /// Fingerprint of the request, so a reused Idempotency-Key with another body is refused.
    /// Keys are scoped to the caller's tenant (a platform token's is the nil tenant) and
    /// principal (`principal`), and expire after the journal's `idempotency_ttl`.
    pub request_hash: String,
    pub lookup: Lookup,
}

impl Journal {
    pub fn new(
        pool: PgPool,
        published: Arc<tokio::sync::Notify>,
        keys: runtime::auth::JwtKeys,
        idempotency_ttl: std::time::Duration,
        config: ConfigCache,
    ) -> Self {
        let cache = Arc::new(StreamCache::new(CACHED_STREAMS));
        let actor_keys =
            moka::sync::Cache::builder().max_capacity(CACHED_ACTOR_KEYS).time_to_idle(ACTOR_KEY_IDLE).build();
        let appender = Appender::start(pool.clone());
        Self { pool, appender, published, cache, keys, idempotency_ttl, actor_keys, config }
    }

    /// The request of a command: a tenant user's address and user agent sealed with their
    /// key (made on first use, then kept: no round trip after the first), an erased
    /// user's left out. A platform operator's token (whatever role it names) is not a
    /// tenant user's. The key is made on a connection of its own, committed at once, so
    /// a command whose transaction rolls back never leaves a key here that the table
    /// does not hold.
    async fn sealed_request(&self, cmd: &Command<'_>) -> Result<events::envelope::RequestContext, JournalError> {
        let actor = &cmd.meta.actor;
        let mut request = cmd.meta.request.clone();
        let tenant = cmd.tenant_id;
        let nothing_to_seal = request.ip_address.is_none() && request.user_agent.is_none();
        if !actor.is_tenant_user() || cmd.meta.operator || nothing_to_seal {
            return Ok(request);
        }
        let key = match self.actor_keys.get(&(tenant, actor.user_id)) {
            Some(key) => key,
            None => match subject_keys::for_sealing(&mut *self.pool.acquire().await?, tenant, actor.user_id).await? {
                Some(key) => {
                    self.actor_keys.insert((tenant, actor.user_id), key.clone());
                    key
                }
                None => {
                    request.erase();
                    return Ok(request);
                }
            },
        };
        request.seal(tenant, actor.user_id, &key);
        Ok(request)
    }

    /// The retention of idempotency records, in whole seconds, as PostgreSQL takes it.
    fn ttl_secs(&self) -> f64 {
        self.idempotency_ttl.as_secs_f64()
    }

    /// Deletes the idempotency records past their retention; how many.
    pub async fn purge_idempotency(&self) -> Result<u64, JournalError> {
        let purged =
            sqlx::query("DELETE FROM eventstore.idempotency WHERE created_at < now() - make_interval(secs => $1)")
                .bind(self.ttl_secs())
                .execute(&self.pool)
                .await?;
        Ok(purged.rows_affected())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Loads the stream, checks the expected version, decides, and appends the events,
    /// all in one transaction. Concurrent writers at the same version: the unique
    /// (tenant_id, stream_id, stream_version) constraint lets exactly one commit; the
    /// others get 409.
    ///
    /// A stream is identified by (tenant, id): every read and check here names the
    /// command's tenant, so an id another tenant uses is simply free in this one, and no
    /// answer tells whether it exists elsewhere.
    #[tracing::instrument(skip_all, fields(tenant_id = %cmd.tenant_id, stream_id = %cmd.stream_id, stream_type = A::STREAM.as_str()))]
    pub async fn execute<A: Aggregate>(
        &self,
        cmd: Command<'_>,
        mut decide: impl FnMut(Option<&A>, Looked) -> Result<Vec<A::Event>, DomainError>,
    ) -> Result<Recorded, JournalError> {
        let mut result = self.try_execute::<A>(&cmd, &mut decide).await;
        // Without If-Match the caller named no version: a writer that got in between this
        // command's read and its append (the SLA scheduler, another user) is read, and the
        // command decided again on what it wrote, a few times, before a 409.
        for _ in 0..UNVERSIONED_RETRIES {
            let raced = matches!(result, Err(JournalError::Conflict { current: None, .. }));
            if !raced || cmd.meta.expected_version.is_some() {
                break;
            }
            result = self.try_execute::<A>(&cmd, &mut decide).await;
        }
        match result {
            Err(e @ (JournalError::Conflict { .. } | JournalError::Rejected { .. })) => {
                // A retry of a command that was recorded (its stream has moved on, so it
                // may be refused now), or a concurrent twin that won the race: answer as
                // the first one was answered. The append itself answers a retry that
                // gets that far, in the same round trip.
                if let Some(key) = &cmd.meta.idempotency_key {
                    if let Some(recorded) = self.stored_reply(&cmd, A::STREAM, key).await? {
                        return Ok(recorded);
                    }
                }
                match e {
                    JournalError::Conflict { current: None, .. } => Err(self.conflict::<A>(&cmd).await),
                    other => Err(other),
                }
            }
            Ok(recorded) => {
                if A::STREAM == StreamType::Tenant && recorded.events_appended > 0 {
                    self.tenant_changed(cmd.tenant_id, recorded.version).await;
                }
                Ok(recorded)
            }
            other => other,
        }
    }

    /// A command changed the tenant at `version`: an older copy in the configuration
    /// cache goes (the next check that folds the tenant writes the new one).
    async fn tenant_changed(&self, tenant: Uuid, version: i64) {
        self.config.drop_older(tenant, version).await;
    }

    /// The 409 for a lost insert race: a concurrent writer, or an id (chosen by the
    /// client) that another kind of record of the same tenant already has. Other
    /// tenants' streams are never looked at: their ids are no business of this one.
    async fn conflict<A: Aggregate>(&self, cmd: &Command<'_>) -> JournalError {
        let other: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
            "SELECT stream_type FROM eventstore.events
             WHERE tenant_id = $1 AND stream_id = $2 AND stream_type <> $3 LIMIT 1",
        )
        .bind(cmd.tenant_id)
        .bind(cmd.stream_id)
        .bind(A::STREAM.as_str())
        .fetch_optional(&self.pool)
        .await;
        match other {
            Ok(Some(kind)) => {
                return JournalError::conflict(
                    format!("the id {} is already used by a {kind}; choose another id", cmd.stream_id),
                    None,
                )
            }
            Ok(None) => {}
            Err(e) => return e.into(),
        }
        match self.current_version(cmd.tenant_id, cmd.stream_id).await {
            Ok(v) => JournalError::conflict(
                format!("the stream was changed concurrently; it is now at version {v}: re-read and retry"),
                Some(v),
            ),
            Err(e) => e,
        }
    }

    /// Decides on the stream's state and appends. Commands that look nothing up in the
    /// journal's tables (most of them), or only want a new case's number, take two round
    /// trips: the catch-up read of the stream (`load`) and `eventstore.append`, which checks
    /// the version and writes the events, their outbox rows, the case number and the
    /// idempotency answer as one statement. The others claim names or store credentials in
    /// one transaction with the append.
    async fn try_execute<A: Aggregate>(
        &self,
        cmd: &Command<'_>,
        mut decide: impl FnMut(Option<&A>, Looked) -> Result<Vec<A::Event>, DomainError>,
    ) -> Result<Recorded, JournalError> {
        // Before taking a connection for the command: a first command of a user takes
        // another one for their key, and waiting for it while holding one could empty the
        // pool under load.
        let request = self.sealed_request(cmd).await?;
        if let Lookup::Nothing | Lookup::CaseNumber = cmd.lookup {
            if let Some(recorded) = self.append_on_cache::<A>(cmd, &request, &mut decide).await? {
                return Ok(recorded);
            }
            let mut conn = self.pool.acquire().await?;
            let epoch = self.cache.epoch();
            let (state, current) = load::<A>(&mut conn, &self.cache, cmd.tenant_id, cmd.stream_id).await?;
            expect_version(cmd, current)?;
            let number = matches!(cmd.lookup, Lookup::CaseNumber) && current == 0;
            let looked = Looked { case_number: number.then(|| PENDING_CASE_NUMBER.to_owned()) };
            let new_events =
                decide(state.as_ref(), looked).map_err(|error| JournalError::Rejected { error, current })?;
            let subject = A::data_subject(cmd.stream_id, state.as_ref(), &new_events);
            let via = Via::Conn(&mut conn);
            let appended = self.append::<A>(via, cmd, &request, current, &new_events, number, subject).await?;
            self.remember(epoch, cmd, &appended, state, &new_events);
            return Ok(appended.into_recorded());
        }
        let mut tx = self.pool.begin().await?;
        let (state, current) = load::<A>(&mut tx, &self.cache, cmd.tenant_id, cmd.stream_id).await?;
        expect_version(cmd, current)?;
        let looked = lookup(&mut tx, cmd.tenant_id, cmd.stream_id, &cmd.lookup, current).await?;
        let new_events = decide(state.as_ref(), looked).map_err(|error| JournalError::Rejected { error, current })?;
        let subject = A::data_subject(cmd.stream_id, state.as_ref(), &new_events);
        match self.append::<A>(Via::Conn(&mut tx), cmd, &request, current, &new_events, false, subject).await? {
            Appended::New(recorded, _) => {
                tx.commit().await?;
                if let Lookup::Erasure = cmd.lookup {
                    self.actor_keys.invalidate(&(cmd.tenant_id, cmd.stream_id));
                }
                // A load between the append and the commit may have kept the old state.
                self.forget_fact::<A>(cmd, recorded.version);
                Ok(recorded)
            }
            // Answered before: what this attempt claimed goes back.
            Appended::Replayed(recorded) => {
                tx.rollback().await?;
                Ok(recorded)
            }
        }
    }

    /// The command decided on what this process already knows of the stream, its cached
    /// state or, uncached, a stream not begun (so opening one reads nothing), and
    /// appended in one round trip: `eventstore.append` checks the version, so a stale
    /// guess appends nothing. None when the guess does not hold (the stream moved on, or
    /// the command's expected version or `decide` disagree with the guess): the caller
    /// then reads the stream and decides again, so a refusal is always given on the
    /// journal's state, never on a stale one.
    async fn append_on_cache<A: Aggregate>(
        &self,
        cmd: &Command<'_>,
        request: &events::envelope::RequestContext,
        decide: &mut impl FnMut(Option<&A>, Looked) -> Result<Vec<A::Event>, DomainError>,
    ) -> Result<Option<Recorded>, JournalError> {
        let epoch = self.cache.epoch();
        let (state, current) = self.cache.get::<A>(cmd.tenant_id, cmd.stream_id).unwrap_or((None, 0));
        if expect_version(cmd, current).is_err() {
            return Ok(None);
        }
        let number = matches!(cmd.lookup, Lookup::CaseNumber) && current == 0;
        let looked = Looked { case_number: number.then(|| PENDING_CASE_NUMBER.to_owned()) };
        let Ok(new_events) = decide(state.as_ref(), looked) else { return Ok(None) };
        let subject = A::data_subject(cmd.stream_id, state.as_ref(), &new_events);
        match self.append::<A>(Via::Batch, cmd, request, current, &new_events, number, subject).await {
            Ok(appended) => {
                self.remember(epoch, cmd, &appended, state, &new_events);
                Ok(Some(appended.into_recorded()))
            }
            Err(JournalError::Conflict { current: None, .. }) => {
                metrics::counter!("command_cache_misses_total", "stream_type" => A::STREAM.as_str()).increment(1);
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    /// Keeps the stream's state after a new append, so the next command on it reads
    /// nothing (unless an invalidation came in since `epoch`).
    fn remember<A: Aggregate>(
        &self,
        epoch: u64,
        cmd: &Command<'_>,
        appended: &Appended,
        mut state: Option<A>,
        events: &[A::Event],
    ) {
        let Appended::New(recorded, case_number) = appended else { return };
        if events.is_empty() {
            return;
        }
        // A new case was decided with a placeholder for its number: its state is folded
        // from the events as the journal holds them, with the number the append wrote.
        let numbered;
        let events = match case_number {
            None => events,
            Some(number) => match numbered_as_appended::<A>(events, number.as_str()) {
                Some(events) => {
                    numbered = events;
                    &numbered
                }
                None => return,
            },
        };
        for event in events {
            state = A::evolve(state, event);
        }
        self.cache.put_unless_invalidated(epoch, cmd.tenant_id, cmd.stream_id, recorded.version, state);
    }

    /// Appends `events` at `current` with `eventstore.append` (one statement, alone on a
    /// connection or with other commands' in a batch: `via`), and the
    /// answer under the caller's Idempotency-Key; `case_number`: the first event gets the
    /// tenant's next case number. The events' personal fields are sealed with the key of
    /// `subject` (`Aggregate::data_subject`), made on first use: one more statement.
    #[allow(clippy::too_many_arguments)] // one append's parts, each decided by the caller
    async fn append<A: Aggregate>(
        &self,
        mut via: Via<'_>,
        cmd: &Command<'_>,
        request: &events::envelope::RequestContext,
        current: i64,
        events: &[A::Event],
        case_number: bool,
        subject: Option<Uuid>,
    ) -> Result<Appended, JournalError> {
        let now = Utc::now();
        let mut ids = Vec::with_capacity(events.len());
        let mut types = Vec::with_capacity(events.len());
        let mut schema_versions = Vec::with_capacity(events.len());
        let mut envelopes = Vec::with_capacity(events.len());
        let mut sealing: Option<(Uuid, SubjectKey)> = None;
        let actor = &cmd.meta.actor;
        for (version, event) in (current.saturating_add(1)..).zip(events) {
            let mut payload = event.payload();
            let mut data_subject = None;
            if let (Some(subject), true) = (subject, personal::holds_personal(A::STREAM, event.event_type(), &payload))
            {
                if sealing.is_none() {
                    let found = match &mut via {
                        Via::Conn(conn) => subject_keys::for_sealing(conn, cmd.tenant_id, subject).await?,
                        Via::Batch => {
                            subject_keys::for_sealing(&mut *self.pool.acquire().await?, cmd.tenant_id, subject).await?
                        }
                    };
                    let Some(key) = found else {
                        let error = DomainError::Conflict(format!(
                            "the data subject {subject} was erased; nothing more is recorded about them"
                        ));
                        return Err(JournalError::Rejected { error, current });
                    };
                    sealing = Some((subject, key));
                }
                if let Some((subject, key)) = &sealing {
                    personal::seal(A::STREAM, event.event_type(), &mut payload, cmd.tenant_id, *subject, key);
                    data_subject = Some(*subject);
                }
            }
            let envelope = EventEnvelope {
                event_id: Uuid::now_v7(),
                tenant_id: cmd.tenant_id,
                stream_type: A::STREAM,
                stream_id: cmd.stream_id,
                stream_version: version,
                event_type: event.event_type().to_owned(),
                schema_version: event.schema_version(),
                occurred_at: now,
                actor: actor.clone(),
                correlation_id: cmd.meta.correlation_id,
                causation_id: None,
                request: request.clone(),
                data_subject,
                position: 0,
                payload,
            };
            ids.push(envelope.event_id);
            types.push(envelope.event_type.clone());
            schema_versions.push(envelope.schema_version as i16);
            envelopes.push(serde_json::to_value(&envelope).map_err(|err| anyhow::anyhow!(err))?);
        }
        let key = cmd.meta.idempotency_key.clone();
        let call = AppendCall {
            tenant: cmd.tenant_id,
            stream_type: A::STREAM.as_str(),
            stream: cmd.stream_id,
            expected: current,
            event_ids: ids,
            event_types: types,
            schema_versions,
            occurred_at: now,
            envelopes,
            case_number,
            key_tenant: key.as_ref().map(|_| cmd.meta.caller_tenant),
            principal: principal(cmd.meta),
            key,
            request_hash: cmd.request_hash.clone(),
            ttl_secs: self.ttl_secs(),
            answer: serde_json::json!({ "id": cmd.stream_id, "events_appended": events.len() }),
            notify: is_fact(A::STREAM),
        };
        let row = match via {
            Via::Conn(conn) => call.run(conn).await,
            Via::Batch => match self.appender.submit(call).await {
                Batched::Row(row) => Ok(row),
                Batched::Failed(error) => Err(error),
                Batched::Alone(call) => call.run(&mut *self.pool.acquire().await?).await,
                Batched::Busy => Err(sqlx::Error::PoolTimedOut),
                Batched::Lost => Err(sqlx::Error::Io(std::io::Error::other(
                    "the answer of a batch of appends was lost: whether this command was recorded is unknown",
                ))),
            },
        };
        let (outcome, version, position, number, stored_hash, stored_answer) = match row {
            Ok(row) => row,
            Err(sqlx::Error::Database(db)) if db.constraint() == Some("events_tenant_stream_version_unique") => {
                return Err(JournalError::conflict("the stream was changed concurrently: re-read it and retry", None))
            }
            // A twin with the same key committed between the look and the write: answered
            // as it was by `execute`, once this command's connection is back in the pool
            // (reading it here, on a second connection while holding this one, could empty
            // the pool under a burst of retries).
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(TWIN_COMMITTED) => {
                return Err(JournalError::conflict("a retry with the same Idempotency-Key was recorded first", None));
            }
            Err(other) => return Err(other.into()),
        };
        match outcome.as_str() {
            "appended" => {
                let (version, position) = (version.unwrap_or(current), position.unwrap_or(0));
                // This process's next command sees its own change at once, before the
                // notification comes back (`try_execute` drops it again after a commit).
                self.forget_fact::<A>(cmd, version);
                metrics::counter!("events_appended_total").increment(events.len() as u64);
                if !events.is_empty() {
                    self.published.notify_one();
                }
                let recorded = self.recorded(cmd.tenant_id, A::STREAM, cmd.stream_id, version, position, events.len());
                Ok(Appended::New(recorded, number))
            }
            // Another kind of stream with this id, or a writer that got there first: the
            // caller finds out which (`conflict`).
            "conflict" => {
                Err(JournalError::conflict("the stream was changed concurrently: re-read it and retry", None))
            }
            "replay" => {
                if stored_hash.as_deref() != Some(cmd.request_hash.as_str()) {
                    return Err(JournalError::KeyReused);
                }
                let stored = stored_answer.unwrap_or_default();
                Ok(Appended::Replayed(self.stored_answer(cmd.tenant_id, A::STREAM, stored)?))
            }
            other => Err(JournalError::Unreadable(anyhow::anyhow!("eventstore.append answered {other:?}"))),
        }
    }

    /// Drops the cached state of a fact this process just changed.
    fn forget_fact<A: Aggregate>(&self, cmd: &Command<'_>, version: i64) {
        if is_fact(A::STREAM) {
            self.cache.invalidate(cmd.tenant_id, cmd.stream_id, version);
        }
    }

    /// Keeps the cached facts fresh for as long as the command API runs: listens on
    /// `murima_facts`, which `eventstore.append` notifies when a fact's stream changes,
    /// and drops the changed states. Facts are trusted only while listening; a lost
    /// connection empties the cache (a change may have gone unheard) and reads facts from
    /// the journal until listening again.
    pub async fn follow_facts(self) -> anyhow::Result<()> {
        loop {
            if let Err(e) = self.listen_for_facts().await {
                tracing::warn!(error = %e, "not following fact changes; facts are read from the journal meanwhile");
            }
            self.cache.follow(false);
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    async fn listen_for_facts(&self) -> anyhow::Result<()> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(FACTS_CHANNEL).await?;
        // Listening first, then emptied: a change after this is heard, one before is read.
        self.cache.follow(true);
        tracing::info!(channel = FACTS_CHANNEL, "following fact changes");
        // None: the connection was lost (and notifications with it).
        while let Some(notification) = listener.try_recv().await? {
            let mut parts = notification.payload().split(' ');
            if notification.payload().ends_with(FORGET_TENANT) {
                // An erasure: the states folded before it hold what it erased.
                let tenant = parts.next().and_then(|t| t.parse().ok());
                match tenant {
                    Some(tenant) => self.cache.forget_tenant(tenant),
                    None => self.cache.follow(true),
                }
                continue;
            }
            let parsed = (|| {
                let tenant = parts.next()?.parse().ok()?;
                let stream = parts.next()?.parse().ok()?;
                let version = parts.next()?.parse().ok()?;
                Some((tenant, stream, version))
            })();
            match parsed {
                Some((tenant, stream, version)) => self.cache.invalidate(tenant, stream, version),
                // Not ours to read: forget everything rather than keep what it meant to drop.
                None => self.cache.follow(true),
            }
        }
        anyhow::bail!("the connection to PostgreSQL was lost")
    }

    /// The answer to a recorded command, its position token signed.
    fn recorded(
        &self,
        tenant_id: Uuid,
        stream_type: StreamType,
        id: Uuid,
        version: i64,
        position: i64,
        events_appended: usize,
    ) -> Recorded {
        // A tenant's stream is in its own tenant: a retried provisioning that chose no id
        // (each attempt drew a fresh one) answers the tenant its first attempt made.
        let tenant_id = if stream_type == StreamType::Tenant { id } else { tenant_id };
        let token = PositionToken { tenant_id, stream_id: id, version, position, stream_type: Some(stream_type) };
        Recorded { id, version, events_appended, position: token.sign(&self.keys) }
    }

    /// A stored answer: its token is signed as it is read (older records hold it signed).
    fn stored_answer(&self, tenant: Uuid, stream_type: StreamType, stored: Value) -> Result<Recorded, JournalError> {
        let stored: StoredAnswer = serde_json::from_value(stored).map_err(anyhow::Error::from)?;
        Ok(match stored.position {
            Some(position) => {
                Recorded { id: stored.id, version: stored.version, events_appended: stored.events_appended, position }
            }
            None => self.recorded(
                tenant,
                stream_type,
                stored.id,
                stored.version,
                stored.position_at.unwrap_or(0),
                stored.events_appended,
            ),
        })
    }

    /// The answer recorded for this caller's key, unless it expired.
    async fn stored_reply(
        &self,
        cmd: &Command<'_>,
        stream_type: StreamType,
        key: &str,
    ) -> Result<Option<Recorded>, JournalError> {
        let row: Option<(String, Value)> = sqlx::query_as(
            "SELECT request_hash, response FROM eventstore.idempotency
             WHERE tenant_id = $1 AND principal = $2 AND key = $3 AND created_at >= now() - make_interval(secs => $4)",
        )
        .bind(cmd.meta.caller_tenant)
        .bind(principal(cmd.meta))
        .bind(key)
        .bind(self.ttl_secs())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(None),
            Some((stored_hash, _)) if stored_hash != cmd.request_hash => Err(JournalError::KeyReused),
            Some((_, response)) => Ok(Some(self.stored_answer(cmd.tenant_id, stream_type, response)?)),
        }
    }

    pub async fn current_version(&self, tenant: Uuid, stream: Uuid) -> Result<i64, JournalError> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT max(stream_version) FROM eventstore.events WHERE tenant_id = $1 AND stream_id = $2",
        )
        .bind(tenant)
        .bind(stream)
        .fetch_one(&self.pool)
        .await?;
        Ok(v.unwrap_or(0))
    }

    /// A stream's current state (None: no such stream in this tenant).
    pub async fn state<A: Aggregate>(&self, tenant: Uuid, stream: Uuid) -> Result<Option<A>, JournalError> {
        Ok(self.state_at::<A>(tenant, stream).await?.0)
    }

    /// A stream's current state with the version it is at (0: no such stream).
    /// A fact (`stream_cache::is_fact`) comes from the cache while it follows the journal's
    /// notifications; a command's own stream is always read up to date (`try_execute`).
    pub async fn state_at<A: Aggregate>(&self, tenant: Uuid, stream: Uuid) -> Result<(Option<A>, i64), JournalError> {
        if let Some(fact) = self.cache.trusted::<A>(tenant, stream) {
            return Ok(fact);
        }
        let mut conn = self.pool.acquire().await?;
        load::<A>(&mut conn, &self.cache, tenant, stream).await
    }

    /// A user's password hash (None: no such user in the tenant).
    pub async fn credential(&self, tenant: Uuid, user: Uuid) -> Result<Option<String>, JournalError> {
        Ok(sqlx::query_scalar("SELECT password_hash FROM eventstore.credentials WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Every stream of one kind in a tenant, folded (for small sets such as definitions).
    /// Streams are found by their first events, along a partial index of stream starts, so
    /// the cost follows the number of such streams, not the size of the tenant's journal.
    /// Facts (field definitions) are answered from the cache while it follows their
    /// notifications: no round trip on a case command's hot path.
    pub async fn all<A: Aggregate>(&self, tenant: Uuid) -> Result<Vec<A>, JournalError> {
        let ids = match self.cache.trusted_members(tenant, A::STREAM) {
            Some(ids) => ids,
            None => {
                let epoch = self.cache.epoch();
                let ids: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT stream_id FROM eventstore.events
                     WHERE tenant_id = $1 AND stream_type = $2 AND stream_version = 1 ORDER BY stream_id",
                )
                .bind(tenant)
                .bind(A::STREAM.as_str())
                .fetch_all(&self.pool)
                .await?;
                let ids = Arc::new(ids);
                self.cache.put_members_unless_invalidated(epoch, tenant, A::STREAM, ids.clone());
                ids
            }
        };
        // Trusted facts from the cache; the others read on one connection, taken once.
        let mut states = Vec::with_capacity(ids.len());
        let mut conn = None;
        for id in ids.iter() {
            let state = match self.cache.trusted::<A>(tenant, *id) {
                Some((state, _)) => state,
                None => {
                    let conn = match &mut conn {
                        Some(conn) => conn,
                        None => conn.insert(self.pool.acquire().await?),
                    };
                    load::<A>(conn, &self.cache, tenant, *id).await?.0
                }
            };
            states.extend(state);
        }
        Ok(states)
    }

    /// Whether the data subject was erased (their key deleted): one query.
    pub async fn subject_erased(&self, tenant: Uuid, subject: Uuid) -> Result<bool, JournalError> {
        Ok(subject_keys::known(&self.pool, tenant, subject).await? == Some(true))
    }

    /// The tenant's state, for the tenant checks: from this process's cache of facts while
    /// it follows their notifications; otherwise from what it holds or, holding nothing,
    /// the configuration cache's copy (`config_cache`), caught up with the journal's
    /// events after it. A copy older than the journal is thus never decided on, and is
    /// replaced by the newer fold.
    pub async fn tenant(&self, tenant: Uuid) -> Result<Option<Tenant>, JournalError> {
        if let Some((state, _)) = self.cache.trusted::<Tenant>(tenant, tenant) {
            return Ok(state);
        }
        let epoch = self.cache.epoch();
        let (base, copy) = match self.cache.get::<Tenant>(tenant, tenant) {
            Some(held) => (Base::Held(held.0, held.1), None),
            // Read before taking a connection: none is held while Redis answers.
            None => match self.config.read(tenant).await {
                Some(copy) => (Base::Copy(Some(copy.state), copy.version, copy.event_id), Some(copy.version)),
                None => (Base::Held(None, 0), Some(0)),
            },
        };
        let mut conn = self.pool.acquire().await?;
        let folded = load_from::<Tenant>(&mut conn, &self.cache, epoch, tenant, tenant, base).await?;
        drop(conn);
        // Written back when this check read the copy (or found none) and folded further,
        // or the copy was not of this journal (`replace`).
        if let (Some(state), Some(last_event), Some(copied)) = (&folded.state, folded.last_event, copy) {
            if folded.version > copied || folded.replaced {
                self.config.keep(tenant, folded.version, last_event, state, folded.replaced).await;
            }
        }
        Ok(folded.state)
    }

    /// The users of `tenant` with these (normalised) usernames, in one query.
    pub async fn users_named(&self, tenant: Uuid, usernames: &[String]) -> Result<Vec<Uuid>, JournalError> {
        if usernames.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM eventstore.user_names WHERE tenant_id = $1 AND username = ANY($2) ORDER BY username",
        )
        .bind(tenant)
        .bind(usernames)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Resolves a login: the tenant by slug, the user by username, and the user's password
    /// hash, in one query (an unknown user costs the same round trips as a known one).
    pub async fn find_user(
        &self,
        slug: &str,
        username: &str,
    ) -> Result<Option<(Uuid, Uuid, Option<String>)>, JournalError> {
        Ok(sqlx::query_as(
            "SELECT s.tenant_id, n.user_id, c.password_hash FROM eventstore.tenant_slugs s
             JOIN eventstore.user_names n ON n.tenant_id = s.tenant_id AND n.username = $2
             LEFT JOIN eventstore.credentials c ON c.tenant_id = n.tenant_id AND c.user_id = n.user_id
             WHERE s.slug = $1",
        )
        .bind(slug)
        .bind(username)
        .fetch_optional(&self.pool)
        .await?)
    }
}

/// Folds a stream's events onto its cached state: only the events after the cached version
/// are read. A stream of another tenant, or an id of another kind of stream (a case type id
/// sent as a case id), reads as empty: a 404 or 422, never a decode error.
async fn load<A: Aggregate>(
    conn: &mut sqlx::PgConnection,
    cache: &StreamCache,
    tenant: Uuid,
    stream: Uuid,
) -> Result<(Option<A>, i64), JournalError> {
    let epoch = cache.epoch();
    let (state, version) = cache.get::<A>(tenant, stream).unwrap_or((None, 0));
    let folded = load_from(conn, cache, epoch, tenant, stream, Base::Held(state, version)).await?;
    Ok((folded.state, folded.version))
}

/// What a fold starts from.
enum Base<A> {
    /// A state this process folded from the journal, after a version (0: nothing).
    Held(Option<A>, i64),
    /// A state from elsewhere (the configuration cache), after a version, claiming that
    /// version's event id: used only if the journal's event at that version is that one.
    Copy(Option<A>, i64, Uuid),
}

/// A fold's result: the state after `version`, the id of the event at `version` if the
/// fold read it or was given it, and whether a copy it started from was not the journal's.
struct Folded<A> {
    state: Option<A>,
    version: i64,
    last_event: Option<Uuid>,
    replaced: bool,
}

/// One journal row as a fold reads it.
type FoldRow = (Uuid, String, i16, Value, i64, Option<Uuid>);

/// Folds the stream's events after `base` onto it, and keeps the result in the cache
/// unless an invalidation came in since `epoch` (taken before `base` was read). A copy
/// whose event is not the journal's (a database restored behind it, another journal)
/// is dropped and the stream folded from its start.
async fn load_from<A: Aggregate>(
    conn: &mut sqlx::PgConnection,
    cache: &StreamCache,
    epoch: u64,
    tenant: Uuid,
    stream: Uuid,
    base: Base<A>,
) -> Result<Folded<A>, JournalError> {
    let (mut state, cached, mut anchor) = match base {
        Base::Held(state, version) => (state, version, None),
        Base::Copy(state, version, event_id) => (state, version, Some(event_id)),
    };
    metrics::counter!("journal_stream_reads_total", "stream_type" => A::STREAM.as_str()).increment(1);
    // A copy's own event is read again, to be compared.
    let after = if anchor.is_some() { cached.saturating_sub(1) } else { cached };
    let mut rows: Vec<FoldRow> = sqlx::query_as(
        "SELECT event_id, event_type, schema_version, envelope->'payload', stream_version,
                (envelope->>'data_subject')::uuid
         FROM eventstore.events
         WHERE stream_id = $1 AND stream_version > $4 AND tenant_id = $2 AND stream_type = $3
         ORDER BY stream_version",
    )
    .bind(stream)
    .bind(tenant)
    .bind(A::STREAM.as_str())
    .bind(after)
    .fetch_all(&mut *conn)
    .await?;
    let mut last_event = None;
    if let Some(claimed) = anchor.take() {
        if !rows.first().is_some_and(|row| row.4 == cached && row.0 == claimed) {
            tracing::warn!(%tenant, %stream, copied = cached, "a cached copy is not of this journal; folded from the start");
            let folded = Box::pin(load_from(conn, cache, epoch, tenant, stream, Base::Held(None, 0))).await?;
            return Ok(Folded { replaced: true, ..folded });
        }
        rows.remove(0);
        last_event = Some(claimed);
    }
    let from_copy = last_event.is_some();
    let keys = subject_keys::needed_by(&mut *conn, rows.iter().map(|row| (tenant, row.5))).await?;
    let mut version = cached;
    for (event_id, event_type, schema_version, mut payload, v, data_subject) in rows {
        keys.open(tenant, data_subject, A::STREAM, &event_type, &mut payload).map_err(anyhow::Error::from)?;
        let event = A::Event::decode(&event_type, schema_version as u16, payload).map_err(anyhow::Error::from)?;
        state = A::evolve(state, &event);
        version = v;
        last_event = Some(event_id);
    }
    // A copy's state is kept even when nothing was newer (a held one already is).
    if version > cached || from_copy {
        cache.put_unless_invalidated(epoch, tenant, stream, version, state.clone());
    }
    Ok(Folded { state, version, last_event, replaced: false })
}

/// A new case's events as `eventstore.append` wrote them: the first one's payload with the
/// allocated `case_number` in place of the placeholder its `decide` saw. None if they do not
/// decode again (the caller then keeps no state, and the next command reads the stream).
fn numbered_as_appended<A: Aggregate>(events: &[A::Event], number: &str) -> Option<Vec<A::Event>> {
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let mut payload = event.payload();
            if i == 0 {
                payload.as_object_mut()?.insert("case_number".to_owned(), Value::from(number));
            }
            A::Event::decode(event.event_type(), event.schema_version(), payload).ok()
        })
        .collect()
}

async fn lookup(
    tx: &mut Transaction<'_, Postgres>,
    tenant: Uuid,
    stream: Uuid,
    lookup: &Lookup,
    current_version: i64,
) -> Result<Looked, JournalError> {
    match lookup {
        Lookup::Nothing => Ok(Looked::default()),
        // A new case's number is allocated by `eventstore.append` (`try_execute` sends
        // such commands there, never into a transaction).
        Lookup::CaseNumber => Err(JournalError::Unreadable(anyhow::anyhow!(
            "a case number is allocated by eventstore.append, not inside a transaction"
        ))),
        Lookup::TenantSlug(slug) => {
            let claimed = sqlx::query(
                "INSERT INTO eventstore.tenant_slugs (slug, tenant_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(slug)
            .bind(tenant)
            .execute(&mut **tx)
            .await?;
            if claimed.rows_affected() == 0 {
                return Err(JournalError::conflict(
                    format!("the slug {slug:?} is taken or this tenant exists already"),
                    Some(current_version),
                ));
            }
            Ok(Looked::default())
        }
        Lookup::UniqueName { kind, name } => {
            claim_name(tx, tenant, stream, kind, name, current_version).await?;
            Ok(Looked::default())
        }
        Lookup::Channel { name, credentials } => {
            if let Some(name) = name {
                claim_name(tx, tenant, stream, "channel", name, current_version).await?;
            }
            if let Some(credentials) = credentials {
                store_channel_credentials(tx, tenant, stream, credentials).await?;
            }
            Ok(Looked::default())
        }
        Lookup::WebhookSecret { secret } => {
            store_webhook_secret(tx, tenant, stream, secret.as_deref()).await?;
            Ok(Looked::default())
        }
        Lookup::SubjectErasure { subject } => {
            subject_keys::erase(&mut **tx, tenant, *subject).await?;
            // Every command API drops the tenant's cached states (they hold the subject's
            // data as it was opened) when this commits.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(FACTS_CHANNEL)
                .bind(format!("{tenant} {FORGET_TENANT}"))
                .execute(&mut **tx)
                .await?;
            Ok(Looked::default())
        }
        Lookup::Erasure => {
            subject_keys::erase(&mut **tx, tenant, stream).await?;
            for table in ["eventstore.user_names", "eventstore.user_emails", "eventstore.credentials"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1 AND user_id = $2"))
                    .bind(tenant)
                    .bind(stream)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(Looked::default())
        }
        Lookup::Password { password_hash } => {
            store_credential(tx, tenant, stream, password_hash).await?;
            Ok(Looked::default())
        }
        Lookup::UserIdentity { username, email, password_hash } => {
            if let Some(hash) = password_hash {
                store_credential(tx, tenant, stream, hash).await?;
            }
            let taken = |what: &str, value: &str| {
                JournalError::conflict(
                    format!("the {what} {value:?} is already used by another user of this tenant"),
                    Some(current_version),
                )
            };
            let identities = [
                // A username is claimed once, at creation; an address changes.
                (
                    Unique {
                        table: "eventstore.user_names",
                        column: "username",
                        owner: "user_id",
                        kind: None,
                        releases: false,
                    },
                    username,
                ),
                (
                    Unique {
                        table: "eventstore.user_emails",
                        column: "email",
                        owner: "user_id",
                        kind: None,
                        releases: true,
                    },
                    email,
                ),
            ];
            for (unique, value) in identities {
                if let Some(value) = value {
                    if !unique.claim(tx, tenant, stream, value).await? {
                        return Err(taken(unique.column, value));
                    }
                }
            }
            Ok(Looked::default())
        }
    }
}

/// A uniqueness table of the journal: `column` values unique per tenant (and `kind`),
/// each held by the stream in `owner`; `releases`: a new claim frees the stream's old value.
struct Unique<'a> {
    table: &'static str,
    column: &'static str,
    owner: &'static str,
    kind: Option<&'a str>,
    releases: bool,
}

impl Unique<'_> {
    /// Claims `value` for `stream`, in the command's transaction, and frees what the
    /// stream held before (a rename, a new address) if the table `releases`. False:
    /// another stream holds it.
    /// Claiming what the stream holds already is a no-op.
    async fn claim(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        tenant: Uuid,
        stream: Uuid,
        value: &str,
    ) -> Result<bool, sqlx::Error> {
        let Self { table, column, owner, kind, releases } = self;
        let (kind_column, kind_value, kind_match) =
            if kind.is_some() { (", kind", ", $4", " AND kind = $4") } else { ("", "", "") };
        let insert = format!(
            "INSERT INTO {table} (tenant_id, {column}, {owner}{kind_column}) VALUES ($1, $2, $3{kind_value})
             ON CONFLICT (tenant_id{kind_column}, {column}) DO UPDATE SET {owner} = EXCLUDED.{owner}
             WHERE {table}.{owner} = EXCLUDED.{owner}"
        );
        let release =
            format!("DELETE FROM {table} WHERE tenant_id = $1 AND {owner} = $3 AND {column} <> $2{kind_match}");
        if self.run(tx, &insert, tenant, stream, value).await? == 0 {
            return Ok(false);
        }
        if *releases {
            self.run(tx, &release, tenant, stream, value).await?;
        }
        Ok(true)
    }

    /// One statement of a claim: `$1` the tenant, `$2` the value, `$3` the stream, `$4` the kind.
    async fn run(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        sql: &str,
        tenant: Uuid,
        stream: Uuid,
        value: &str,
    ) -> Result<u64, sqlx::Error> {
        let query = sqlx::query(sql).bind(tenant).bind(value).bind(stream);
        let query = match self.kind {
            Some(kind) => query.bind(kind),
            None => query,
        };
        Ok(query.execute(&mut **tx).await?.rows_affected())
    }
}

/// Claims a name among the streams of one kind (`eventstore.unique_names`); taken: 409.
async fn claim_name(
    tx: &mut Transaction<'_, Postgres>,
    tenant: Uuid,
    stream: Uuid,
    kind: &str,
    name: &str,
    current_version: i64,
) -> Result<(), JournalError> {
    let names = Unique {
        table: "eventstore.unique_names",
        column: "name",
        owner: "stream_id",
        kind: Some(kind),
        releases: true,
    };
    if !names.claim(tx, tenant, stream, name).await? {
        return Err(JournalError::conflict(
            format!("a {} named {name:?} already exists in this tenant", kind.replace('_', " ")),
            Some(current_version),
        ));
    }
    Ok(())
}

/// A channel's credentials, replaced in the transaction of its events: new values stored,
/// those sent back as markers kept, every other one deleted.
async fn store_channel_credentials(
    tx: &mut Transaction<'_, Postgres>,
    tenant: Uuid,
    channel: Uuid,
    credentials: &events::channel::Credentials,
) -> Result<(), JournalError> {
    let pointers: Vec<&str> =
        credentials.set.iter().map(|(p, _)| p.as_str()).chain(credentials.kept.iter().map(String::as_str)).collect();
    sqlx::query(
        "DELETE FROM eventstore.channel_credentials
         WHERE tenant_id = $1 AND channel_id = $2 AND NOT (pointer = ANY($3))",
    )
    .bind(tenant)
    .bind(channel)
    .bind(&pointers)
    .execute(&mut **tx)
    .await?;
    for (pointer, value) in &credentials.set {
        sqlx::query(
            "INSERT INTO eventstore.channel_credentials (tenant_id, channel_id, pointer, value) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, channel_id, pointer) DO UPDATE SET value = EXCLUDED.value, changed_at = now()",
        )
        .bind(tenant)
        .bind(channel)
        .bind(pointer)
        .bind(sqlx::types::Json(value))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Credentials live off the log, written in the transaction of the user's events.
async fn store_webhook_secret(
    tx: &mut Transaction<'_, Postgres>,
    tenant: Uuid,
    webhook: Uuid,
    secret: Option<&str>,
) -> Result<(), JournalError> {
    let query = match secret {
        Some(secret) => sqlx::query(
            "INSERT INTO eventstore.webhook_secrets (tenant_id, webhook_id, secret) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, webhook_id) DO UPDATE SET secret = EXCLUDED.secret, changed_at = now()",
        )
        .bind(tenant)
        .bind(webhook)
        .bind(secret),
        None => sqlx::query("DELETE FROM eventstore.webhook_secrets WHERE tenant_id = $1 AND webhook_id = $2")
            .bind(tenant)
            .bind(webhook),
    };
    query.execute(&mut **tx).await?;
    Ok(())
}

async fn store_credential(
    tx: &mut Transaction<'_, Postgres>,
    tenant: Uuid,
    user: Uuid,
    password_hash: &str,
) -> Result<(), JournalError> {
    sqlx::query(
        "INSERT INTO eventstore.credentials (tenant_id, user_id, password_hash) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, user_id) DO UPDATE SET password_hash = EXCLUDED.password_hash, changed_at = now()",
    )
    .bind(tenant)
    .bind(user)
    .bind(password_hash)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A stable fingerprint (FNV-1a) of a command request, so a reused Idempotency-Key with
/// another request is recognised.
pub fn fingerprint(command: &str, stream: Option<Uuid>, body: &impl serde::Serialize) -> String {
    let body = serde_json::to_string(body).unwrap_or_default();
    let stream = stream.map(|s| s.to_string()).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [command, &stream, &body] {
        for byte in part.bytes().chain(std::iter::once(0u8)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}
