//! The relational read model: `public.tenants` and each tenant's schema, one file per
//! table (`users.rs`, `teams.rs`, ..., `cases.rs`, set-based), the batch's checkpoint in
//! `checkpoint.rs`, and the webhook subscriptions and deliveries queued (`webhooks.rs`).
//!
//! One transaction per batch. Each row keeps the stream `version` it reflects, and every
//! write is guarded by it (insert-if-absent for the first event, `update_guarded!` for
//! the rest), so a redelivered event changes nothing.

/// Updates the row of the event's stream in `{schema}.{table}` only if it holds the
/// version just before the event's, so a redelivered or out-of-order event changes
/// nothing: `SET {set}, version = $2 WHERE id = $1 AND version = $2 - 1`. `$1` (the
/// stream id) and `$2` (the event's version) are bound here; `set` uses `$3` onwards,
/// bound from the values in order. Evaluates to the statement's future.
macro_rules! update_guarded {
    (($tx:expr, $schema:expr, $table:literal, $env:expr), $set:expr $(, $value:expr)* $(,)?) => {
        sqlx::query(&format!(
            "UPDATE {}.{} SET {}, version = $2 WHERE id = $1 AND version = $2 - 1",
            $schema, $table, $set
        ))
        .bind($env.stream_id)
        .bind($env.stream_version)
        $(.bind($value))*
        .execute(&mut **$tx)
    };
}

/// The transaction a batch is applied in, and what applying one event to a table gives.
type Tx<'c> = Transaction<'c, Postgres>;
type Applied = Result<(), sqlx::Error>;

mod case_types;
mod cases;
mod channels;
mod checkpoint;
mod documents;
mod interactions;
mod tasks;
mod teams;
mod tenants;
mod users;
mod webhooks;
mod workflows;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use events::data_subject::DataSubjectEvent;
use events::field_definition::FieldDefinitionEvent;
use events::interaction::InteractionEvent;
use events::note::NoteEvent;
use events::template::TemplateEvent;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::event::Event;
use crate::projection::{ApplyError, Checkpoint, Held, Placement, Projection};
use events::DomainEvent;

pub struct PostgresProjection {
    pool: PgPool,
    placement: Placement,
    /// Tenants whose schema is known to exist (saves a round trip per event).
    provisioned: Mutex<HashSet<Uuid>>,
    /// (tenant, YYYY-MM) interaction partitions known to exist.
    partitions: interactions::Partitions,
}

impl PostgresProjection {
    pub fn new(pool: PgPool) -> Self {
        Self::placed(pool, Placement::live())
    }

    /// A projection writing where `placement` says (a rebuild's copy schemas).
    pub fn placed(pool: PgPool, placement: Placement) -> Self {
        Self { pool, placement, provisioned: Mutex::new(HashSet::new()), partitions: Mutex::new(HashSet::new()) }
    }

    /// The schema a tenant's rows go to (`apply` drops events of tenants it has none for).
    fn schema(&self, tenant: Uuid) -> String {
        self.placement.of(tenant).map(|t| t.pg_schema()).unwrap_or_default()
    }

    /// The id the tenant's schema is named after (its own, or a rebuild's scratch id).
    fn schema_id(&self, tenant: Uuid) -> Uuid {
        self.placement.of(tenant).map_or(tenant, |t| t.0)
    }

    /// A tenant's events arrive in journal order (one partition per tenant), but an event
    /// can still precede its tenant's provisioning here (a journal from before tenant
    /// keying, or a parked TenantProvisioned): the schema is then created with a
    /// placeholder tenant row that TenantProvisioned fills in.
    async fn ensure_tenant(&self, tx: &mut Transaction<'_, Postgres>, tenant: Uuid) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO public.tenants (id, name, slug, created_at, updated_at, version)
             VALUES ($1, '(pending)', $2, now(), now(), 0) ON CONFLICT (id) DO NOTHING",
        )
        .bind(tenant)
        .bind(format!("pending-{}", tenant.simple()))
        .execute(&mut **tx)
        .await?;
        if !self.placement.is_live() {
            // A rebuild made its copy schemas and took their indexes and foreign keys off
            // for the bulk load; provisioning again would put them back.
            let made: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(self.schema(tenant))
                .fetch_one(&mut **tx)
                .await?;
            if made {
                return Ok(());
            }
        }
        sqlx::query("SELECT public.murima_provision_tenant($1)")
            .bind(self.schema_id(tenant))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn apply_one(&self, tx: &mut Transaction<'_, Postgres>, event: &Event) -> Result<(), sqlx::Error> {
        let env = &event.envelope;
        let schema = self.schema(env.tenant_id);
        match &event.data {
            DomainEvent::Tenant(tenant_event) => tenants::apply(tx, env, tenant_event).await?,
            DomainEvent::User(user_event) => users::apply(tx, &schema, env, user_event).await?,
            DomainEvent::Team(team_event) => teams::apply(tx, &schema, env, team_event).await?,
            DomainEvent::CaseType(type_event) => case_types::apply(tx, &schema, env, type_event).await?,
            DomainEvent::Channel(channel_event) => channels::apply(tx, &schema, env, channel_event).await?,
            DomainEvent::Task(task_event) => tasks::apply(tx, &schema, env, task_event).await?,
            DomainEvent::Document(document_event) => documents::apply(tx, &schema, env, document_event).await?,
            DomainEvent::Workflow(workflow_event) => workflows::apply(tx, &schema, env, workflow_event).await?,
            // Notes, message templates and field definitions live in MongoDB (seed §2.2.2).
            DomainEvent::FieldDefinition(
                FieldDefinitionEvent::Created(_)
                | FieldDefinitionEvent::Updated(_)
                | FieldDefinitionEvent::Deactivated(_)
                | FieldDefinitionEvent::Activated(_),
            ) => {}
            DomainEvent::Note(NoteEvent::Added(_) | NoteEvent::Edited(_) | NoteEvent::Deleted(_)) => {}
            DomainEvent::Template(
                TemplateEvent::Created(_)
                | TemplateEvent::Updated(_)
                | TemplateEvent::Deactivated(_)
                | TemplateEvent::Activated(_),
            ) => {}
            DomainEvent::Interaction(InteractionEvent::Recorded(_)) => {
                interactions::apply(tx, |t| self.schema(t), &[event], &self.partitions).await?
            }
            DomainEvent::Case(_) => cases::apply(tx, |t| self.schema(t), &[event]).await?,
            DomainEvent::Webhook(webhook_event) => webhooks::apply(tx, env, webhook_event).await?,
            DomainEvent::DataSubject(DataSubjectEvent::Erased(e)) => erase_customer(tx, &schema, e.subject_id).await?,
        }
        // A user may also be the customer some cases name (the same id): erased as both.
        if let DomainEvent::User(events::user::UserEvent::Erased(_)) = &event.data {
            erase_customer(tx, &schema, env.stream_id).await?;
        }
        Ok(())
    }

    /// A run of case and interaction events (and events this store does not hold),
    /// set-based: the run's cases first, then its interactions, which only name cases
    /// opened before them (cases are never removed). A data error (a refused foreign key,
    /// say) is traced to its event by applying the run event by event, each in a
    /// savepoint.
    async fn apply_run(&self, tx: &mut Transaction<'_, Postgres>, run: &[&Event]) -> Result<(), ApplyError> {
        if run.is_empty() {
            return Ok(());
        }
        let schema = |tenant| self.schema(tenant);
        let mut savepoint = sqlx::Connection::begin(&mut **tx).await.map_err(|e| ApplyError::Transient(e.into()))?;
        let applied = match cases::apply(&mut savepoint, schema, run).await {
            Ok(()) => interactions::apply(&mut savepoint, schema, run, &self.partitions).await,
            failed => failed,
        };
        match applied {
            Ok(()) => savepoint.commit().await.map_err(|e| ApplyError::Transient(e.into())),
            Err(e) if !is_data_error(&e) => Err(classify(e, run[0].envelope.event_id)),
            Err(_) => {
                savepoint.rollback().await.map_err(|e| ApplyError::Transient(e.into()))?;
                // Partitions made in the rolled-back savepoint are gone with it.
                if let Ok(mut known) = self.partitions.lock() {
                    known.clear();
                }
                for event in run {
                    let mut one =
                        sqlx::Connection::begin(&mut **tx).await.map_err(|e| ApplyError::Transient(e.into()))?;
                    if let Err(e) = self.apply_one(&mut one, event).await {
                        return Err(classify(e, event.envelope.event_id));
                    }
                    one.commit().await.map_err(|e| ApplyError::Transient(e.into()))?;
                }
                Ok(())
            }
        }
    }

    /// One batch in one transaction (new tenants' schemas before it, on their own).
    async fn apply_batch(&self, events: &[Event], checkpoint: &Checkpoint) -> Result<(), ApplyError> {
        // New tenants' schemas first, committed on their own: provisioning locks
        // public.tenants (foreign keys to it), which must not be held for a whole batch.
        let tenants: HashSet<Uuid> = events
            .iter()
            .map(|e| e.envelope.tenant_id)
            .filter(|t| self.placement.of(*t).is_some())
            .filter(|t| !self.provisioned.lock().map(|p| p.contains(t)).unwrap_or(false))
            .collect();
        if !tenants.is_empty() {
            let mut tx = self.pool.begin().await.map_err(|e| ApplyError::Transient(e.into()))?;
            for tenant in &tenants {
                self.ensure_tenant(&mut tx, *tenant).await.map_err(|e| ApplyError::Transient(e.into()))?;
            }
            tx.commit().await.map_err(|e| ApplyError::Transient(e.into()))?;
            if let Ok(mut known) = self.provisioned.lock() {
                known.extend(tenants);
            }
        }
        let mut tx = self.pool.begin().await.map_err(|e| ApplyError::Transient(e.into()))?;
        // Runs of consecutive case and interaction events go set-based (`apply_run`);
        // the rest one by one, in journal order.
        let mut run: Vec<&Event> = Vec::new();
        for event in events.iter().filter(|e| self.placement.of(e.envelope.tenant_id).is_some()) {
            if joins_a_run(event) {
                run.push(event);
                continue;
            }
            self.apply_run(&mut tx, &run).await?;
            run.clear();
            if let Err(e) = self.apply_one(&mut tx, event).await {
                return Err(classify(e, event.envelope.event_id));
            }
        }
        self.apply_run(&mut tx, &run).await?;
        // Deliveries are queued by the live read model only: a rebuild's copy sends nothing.
        if self.placement.is_live() {
            webhooks::enqueue(&mut tx, events, chrono::Utc::now())
                .await
                .map_err(|e| ApplyError::Transient(e.into()))?;
            // After the batch's own deliveries are queued, so none of them escapes.
            for event in events {
                if let Some(subject) = event.erased_subject() {
                    webhooks::erase_subject(&mut tx, event.envelope.tenant_id, subject)
                        .await
                        .map_err(|e| ApplyError::Transient(e.into()))?;
                }
                if let DomainEvent::User(events::user::UserEvent::Erased(_)) = &event.data {
                    let (tenant, user) = (event.envelope.tenant_id, event.envelope.stream_id);
                    crate::parking::forget_requests_of(&mut tx, tenant, user)
                        .await
                        .map_err(|e| ApplyError::Transient(e.into()))?;
                }
            }
        }
        crate::checkpoint::save(&mut tx, checkpoint).await.map_err(|e| ApplyError::Transient(e.into()))?;
        checkpoint::save_tenant_positions(&mut tx, &checkpoint.group, events)
            .await
            .map_err(|e| ApplyError::Transient(e.into()))?;
        tx.commit().await.map_err(|e| ApplyError::Transient(e.into()))?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Projection for PostgresProjection {
    fn name(&self) -> &'static str {
        crate::stores::ProjectionName::Postgres.as_str()
    }

    #[tracing::instrument(skip_all, fields(projection = "postgres", events = events.len()))]
    async fn apply(&self, events: &[Event], checkpoint: &Checkpoint) -> Result<(), ApplyError> {
        let applied = self.apply_batch(events, checkpoint).await;
        if applied.is_err() {
            // Partitions made in the failed batch's transaction are gone with it: a retry
            // must make them again, not trust what this batch remembered.
            if let Ok(mut known) = self.partitions.lock() {
                known.clear();
            }
        }
        applied
    }

    fn commits_checkpoint(&self) -> bool {
        true
    }

    async fn healthy(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn held(&self, tenant: Uuid) -> anyhow::Result<Vec<Held>> {
        let mut held = Vec::new();
        let tenants: HashMap<Uuid, i64> = sqlx::query_as("SELECT id, version FROM public.tenants WHERE id = $1")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .collect();
        held.push(Held { what: "tenants table", stream_types: &["tenant"], versions: tenants });
        let schema = self.schema(tenant);
        for (table, stream_type) in MIRRORED_TABLES.iter() {
            let versions: HashMap<Uuid, i64> = match sqlx::query_as(&format!(
                "SELECT id, version FROM {schema}.{table}"
            ))
            .fetch_all(&self.pool)
            .await
            {
                Ok(rows) => rows.into_iter().collect(),
                // A tenant whose schema is not there yet holds nothing.
                Err(sqlx::Error::Database(db)) if matches!(db.code().as_deref(), Some("42P01" | "3F000")) => {
                    HashMap::new()
                }
                Err(e) => return Err(e.into()),
            };
            held.push(Held { what: table, stream_types: std::slice::from_ref(stream_type), versions });
        }
        Ok(held)
    }
}

/// Each tenant table that mirrors a stream, with the stream type it mirrors.
static MIRRORED_TABLES: [(&str, &str); 9] = [
    ("users", "user"),
    ("teams", "team"),
    ("case_types", "case_type"),
    ("cases", "case"),
    ("channels", "channel"),
    ("interactions", "interaction"),
    ("tasks", "task"),
    ("documents", "document"),
    ("workflows", "workflow"),
];

/// Whether the event goes into a set-based run (`apply_run`): cases and interactions, and
/// the events this store does not hold, which would otherwise cut a run short (a note
/// between two updates of a case). Every other event is applied on its own, in order.
fn joins_a_run(event: &Event) -> bool {
    match &event.data {
        DomainEvent::Case(_)
        | DomainEvent::Interaction(InteractionEvent::Recorded(_))
        | DomainEvent::Note(NoteEvent::Added(_) | NoteEvent::Edited(_) | NoteEvent::Deleted(_))
        | DomainEvent::Template(
            TemplateEvent::Created(_)
            | TemplateEvent::Updated(_)
            | TemplateEvent::Deactivated(_)
            | TemplateEvent::Activated(_),
        )
        | DomainEvent::FieldDefinition(
            FieldDefinitionEvent::Created(_)
            | FieldDefinitionEvent::Updated(_)
            | FieldDefinitionEvent::Deactivated(_)
            | FieldDefinitionEvent::Activated(_),
        ) => true,
        DomainEvent::Tenant(_)
        | DomainEvent::User(_)
        | DomainEvent::Team(_)
        | DomainEvent::CaseType(_)
        | DomainEvent::Channel(_)
        | DomainEvent::Task(_)
        | DomainEvent::Document(_)
        | DomainEvent::Workflow(_)
        | DomainEvent::Webhook(_)
        | DomainEvent::DataSubject(_) => false,
    }
}

/// Errors that the same statement with the same values meets every time: data
/// exceptions (SQLSTATE class 22: a value too long, a NUL, a bad date), integrity
/// constraint violations (23) and program limits (54: an index row over its size, say).
/// Anything else (connections, lock and statement timeouts, serialization failures, a
/// server out of resources or shutting down) may pass on retry.
fn is_data_error(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else { return false };
    db.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c.starts_with("54"))
}

/// SQLSTATE classes of a server that is away, busy or refusing writes for now:
/// connection exceptions (08), invalid transaction state such as a read-only standby
/// (25), serialization failures and deadlocks (40), insufficient resources such as a full
/// disk (53), lock timeouts (55), operator intervention such as a shutdown or a statement
/// timeout (57), system errors (58).
const STORE_SIDE_CLASSES: [&str; 7] = ["08", "25", "40", "53", "55", "57", "58"];

/// Data errors can never succeed on retry; the server's own troubles may; anything else
/// (a program error such as an undefined column) is unexplained.
fn classify(error: sqlx::Error, event_id: Uuid) -> ApplyError {
    let sqlx::Error::Database(db) = &error else { return ApplyError::Transient(error.into()) };
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    if is_data_error(&error) {
        return ApplyError::Poison { event_id, reason: format!("PostgreSQL refused it ({code}): {}", db.message()) };
    }
    if STORE_SIDE_CLASSES.iter().any(|class| code.starts_with(class)) {
        return ApplyError::Transient(error.into());
    }
    ApplyError::Unexplained(error.into())
}

/// An erased customer's data in the cases that name them and in their interactions is
/// replaced with the marker (texts) or emptied (documents); the rows stay.
async fn erase_customer(tx: &mut Tx<'_>, schema: &str, customer: Uuid) -> Applied {
    let erased = events::personal::ERASED;
    sqlx::query(&format!(
        "UPDATE {schema}.cases SET title = $2, custom_fields = '{{}}',
             description = CASE WHEN description IS NULL THEN NULL ELSE $2 END
         WHERE customer_id = $1 AND (title <> $2 OR custom_fields <> '{{}}' OR description <> $2)"
    ))
    .bind(customer)
    .bind(erased)
    .execute(&mut **tx)
    .await?;
    sqlx::query(&format!(
        "UPDATE {schema}.interactions SET metadata = '{{}}',
             content = CASE WHEN content IS NULL THEN NULL ELSE $2 END,
             external_id = CASE WHEN external_id IS NULL THEN NULL ELSE $2 END
         WHERE customer_id = $1"
    ))
    .bind(customer)
    .bind(erased)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
