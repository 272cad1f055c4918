//! The relational read model: `public.tenants` and each tenant's `tenant_<id>.cases`.
//!
//! One transaction per batch. Each row keeps the stream `version` it reflects, and every
//! write is guarded by it (insert-if-absent for the first event, `version = v - 1` for the
//! rest), so a redelivered event changes nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use events::case_type::CaseTypeEvent;
use events::channel::ChannelEvent;
use events::document::DocumentEvent;
use events::field_definition::FieldDefinitionEvent;
use events::interaction::InteractionEvent;
use events::note::NoteEvent;
use events::task::TaskEvent;
use events::team::TeamEvent;
use events::template::TemplateEvent;
use events::tenant::TenantEvent;
use events::user::UserEvent;
use events::workflow::WorkflowEvent;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::postgres_cases;
use crate::event::Event;
use crate::projection::{ApplyError, Checkpoint, Held, Placement, Projection};
use events::DomainEvent;

pub struct PostgresProjection {
    pool: PgPool,
    placement: Placement,
    /// Tenants whose schema is known to exist (saves a round trip per event).
    provisioned: Mutex<HashSet<Uuid>>,
    /// (tenant, YYYY-MM) interaction partitions known to exist.
    partitions: Mutex<HashSet<(Uuid, String)>>,
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
        match &event.data {
            DomainEvent::Tenant(TenantEvent::Provisioned(e)) => {
                sqlx::query(
                    "UPDATE public.tenants SET name = $2, slug = $3, settings = $4, created_at = $5, updated_at = $5,
                        version = $6
                     WHERE id = $1 AND version < $6",
                )
                .bind(env.tenant_id)
                .bind(&e.name)
                .bind(&e.slug)
                .bind(sqlx::types::Json(&e.settings))
                .bind(e.provisioned_at)
                .bind(env.stream_version)
                .execute(&mut **tx)
                .await?;
            }
            DomainEvent::Tenant(TenantEvent::SettingsUpdated(e)) => {
                sqlx::query(
                    "UPDATE public.tenants SET settings = $3, updated_at = $4, version = $2
                     WHERE id = $1 AND version = $2 - 1",
                )
                .bind(env.tenant_id)
                .bind(env.stream_version)
                .bind(sqlx::types::Json(&e.settings.new))
                .bind(e.updated_at)
                .execute(&mut **tx)
                .await?;
            }
            DomainEvent::Tenant(TenantEvent::Suspended(e)) => {
                self.set_tenant_status(tx, event, "suspended", e.suspended_at).await?;
            }
            DomainEvent::Tenant(TenantEvent::Reactivated(e)) => {
                self.set_tenant_status(tx, event, "active", e.reactivated_at).await?;
            }
            DomainEvent::User(user_event) => self.apply_user(tx, event, user_event).await?,
            DomainEvent::Team(team_event) => self.apply_team(tx, event, team_event).await?,
            DomainEvent::CaseType(type_event) => self.apply_case_type(tx, event, type_event).await?,
            DomainEvent::Channel(channel_event) => self.apply_channel(tx, event, channel_event).await?,
            DomainEvent::Task(task_event) => self.apply_task(tx, event, task_event).await?,
            DomainEvent::Document(document_event) => self.apply_document(tx, event, document_event).await?,
            DomainEvent::Workflow(workflow_event) => self.apply_workflow(tx, event, workflow_event).await?,
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
            DomainEvent::Interaction(InteractionEvent::Recorded(e)) => self.apply_interaction(tx, event, e).await?,
            DomainEvent::Case(_) => postgres_cases::apply(tx, |t| self.schema(t), &[event]).await?,
        }
        Ok(())
    }

    /// A guarded status change of a tenant row.
    async fn set_tenant_status(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
        status: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE public.tenants SET status = $3, updated_at = $4, version = $2 WHERE id = $1 AND version = $2 - 1",
        )
        .bind(event.envelope.tenant_id)
        .bind(event.envelope.stream_version)
        .bind(status)
        .bind(at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn apply_user(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
        user_event: &UserEvent,
    ) -> Result<(), sqlx::Error> {
        let env = &event.envelope;
        let schema = self.schema(env.tenant_id);
        let guarded =
            |set: &str| format!("UPDATE {schema}.users SET {set}, version = $2 WHERE id = $1 AND version = $2 - 1");
        match user_event {
            UserEvent::Created(e) => {
                sqlx::query(&format!(
                    "INSERT INTO {schema}.users (id, tenant_id, username, email, first_name, last_name,
                        role, status, created_at, updated_at, permissions, preferences, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $8, '{{}}', '{{}}', $9)
                     ON CONFLICT (id) DO NOTHING"
                ))
                .bind(env.stream_id)
                .bind(env.tenant_id)
                .bind(&e.username)
                .bind(&e.email)
                .bind(&e.first_name)
                .bind(&e.last_name)
                .bind(e.role.as_str())
                .bind(e.created_at)
                .bind(env.stream_version)
                .execute(&mut **tx)
                .await?;
                // Cases that named the user before their row existed (a log from before tenant
                // keying) name them now.
                sqlx::query(&format!(
                    "UPDATE {schema}.cases SET assigned_to_username = $2
                     WHERE assigned_to = $1 AND assigned_to_username IS DISTINCT FROM $2"
                ))
                .bind(env.stream_id)
                .bind(&e.username)
                .execute(&mut **tx)
                .await?;
                return Ok(());
            }
            UserEvent::ProfileUpdated(e) => {
                sqlx::query(&guarded(
                    "first_name = CASE WHEN $3 THEN $4 ELSE first_name END,
                 last_name = CASE WHEN $5 THEN $6 ELSE last_name END,
                 email = CASE WHEN $7 THEN $8 ELSE email END, updated_at = $9",
                ))
                .bind(env.stream_id)
                .bind(env.stream_version)
                .bind(e.first_name.is_some())
                .bind(e.first_name.as_ref().and_then(|c| c.new.clone()))
                .bind(e.last_name.is_some())
                .bind(e.last_name.as_ref().and_then(|c| c.new.clone()))
                .bind(e.email.is_some())
                .bind(e.email.as_ref().map(|c| c.new.clone()))
                .bind(e.updated_at)
                .execute(&mut **tx)
                .await?
            }
            UserEvent::RoleChanged(e) => {
                sqlx::query(&guarded("role = $3, updated_at = $4"))
                    .bind(env.stream_id)
                    .bind(env.stream_version)
                    .bind(e.role.new.as_str())
                    .bind(e.changed_at)
                    .execute(&mut **tx)
                    .await?
            }
            UserEvent::StatusChanged(e) => {
                sqlx::query(&guarded("status = $3, updated_at = $4"))
                    .bind(env.stream_id)
                    .bind(env.stream_version)
                    .bind(e.status.new.as_str())
                    .bind(e.changed_at)
                    .execute(&mut **tx)
                    .await?
            }
            UserEvent::PermissionsSet(e) => {
                sqlx::query(&guarded("permissions = $3, updated_at = $4"))
                    .bind(env.stream_id)
                    .bind(env.stream_version)
                    .bind(sqlx::types::Json(&e.permissions.new))
                    .bind(e.set_at)
                    .execute(&mut **tx)
                    .await?
            }
            UserEvent::PreferencesSet(e) => {
                sqlx::query(&guarded("preferences = $3, updated_at = $4"))
                    .bind(env.stream_id)
                    .bind(env.stream_version)
                    .bind(sqlx::types::Json(&e.preferences.new))
                    .bind(e.set_at)
                    .execute(&mut **tx)
                    .await?
            }
            UserEvent::LoggedIn(e) => {
                sqlx::query(&guarded("last_login = $3"))
                    .bind(env.stream_id)
                    .bind(env.stream_version)
                    .bind(e.logged_in_at)
                    .execute(&mut **tx)
                    .await?
            }
            UserEvent::PasswordChanged(e) => {
                sqlx::query(&guarded("updated_at = $3"))
                    .bind(env.stream_id)
                    .bind(env.stream_version)
                    .bind(e.changed_at)
                    .execute(&mut **tx)
                    .await?
            }
        };
        Ok(())
    }

    /// Teams keep a stream version; membership rows are keyed by (team, user), and the
    /// team row's version guard decides whether a membership event is new.
    async fn apply_team(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
        team_event: &TeamEvent,
    ) -> Result<(), sqlx::Error> {
        let env = &event.envelope;
        let schema = self.schema(env.tenant_id);
        if let TeamEvent::Created(e) = team_event {
            sqlx::query(&format!(
                "INSERT INTO {schema}.teams (id, tenant_id, name, description, created_at, updated_at, version)
                 VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT (id) DO NOTHING"
            ))
            .bind(env.stream_id)
            .bind(env.tenant_id)
            .bind(&e.name)
            .bind(&e.description)
            .bind(e.created_at)
            .bind(env.stream_version)
            .execute(&mut **tx)
            .await?;
            return Ok(());
        }
        // Claim the version first: if this event was applied already, nothing else runs.
        let claimed = sqlx::query(&format!(
            "UPDATE {schema}.teams SET version = $2, updated_at = $3 WHERE id = $1 AND version = $2 - 1"
        ))
        .bind(env.stream_id)
        .bind(env.stream_version)
        .bind(env.occurred_at)
        .execute(&mut **tx)
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(());
        }
        match team_event {
            TeamEvent::Created(_) => {}
            TeamEvent::Renamed(e) => {
                sqlx::query(&format!("UPDATE {schema}.teams SET name = $2, updated_at = $3 WHERE id = $1"))
                    .bind(env.stream_id)
                    .bind(&e.name.new)
                    .bind(e.renamed_at)
                    .execute(&mut **tx)
                    .await?;
            }
            TeamEvent::MemberAdded(e) => {
                sqlx::query(&format!(
                    "INSERT INTO {schema}.team_members (team_id, user_id, tenant_id, role, joined_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (team_id, user_id) DO UPDATE SET role = EXCLUDED.role"
                ))
                .bind(env.stream_id)
                .bind(e.user_id)
                .bind(env.tenant_id)
                .bind(e.role.as_str())
                .bind(e.joined_at)
                .execute(&mut **tx)
                .await?;
            }
            TeamEvent::MemberRemoved(e) => {
                sqlx::query(&format!("DELETE FROM {schema}.team_members WHERE team_id = $1 AND user_id = $2"))
                    .bind(env.stream_id)
                    .bind(e.user_id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    async fn apply_case_type(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
        type_event: &CaseTypeEvent,
    ) -> Result<(), sqlx::Error> {
        let env = &event.envelope;
        let schema = self.schema(env.tenant_id);
        let guarded = |set: &str| {
            format!("UPDATE {schema}.case_types SET {set}, version = $2 WHERE id = $1 AND version = $2 - 1")
        };
        match type_event {
            CaseTypeEvent::Created(e) => {
                sqlx::query(&format!(
                    "INSERT INTO {schema}.case_types (id, tenant_id, name, description, form_definition,
                        validation_rules, workflow_id, created_at, updated_at, is_active, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, TRUE, $9) ON CONFLICT (id) DO NOTHING"
                ))
                .bind(env.stream_id)
                .bind(env.tenant_id)
                .bind(&e.name)
                .bind(&e.description)
                .bind(sqlx::types::Json(&e.form_definition))
                .bind(&e.validation_rules)
                .bind(e.workflow_id)
                .bind(e.created_at)
                .bind(env.stream_version)
                .execute(&mut **tx)
                .await?;
            }
            CaseTypeEvent::Updated(e) => {
                sqlx::query(&guarded(
                    "name = CASE WHEN $3 THEN $4 ELSE name END,
                     description = CASE WHEN $5 THEN $6 ELSE description END,
                     form_definition = CASE WHEN $7 THEN $8 ELSE form_definition END,
                     validation_rules = CASE WHEN $9 THEN $10 ELSE validation_rules END, updated_at = $11",
                ))
                .bind(env.stream_id)
                .bind(env.stream_version)
                .bind(e.name.is_some())
                .bind(e.name.as_ref().map(|c| c.new.clone()))
                .bind(e.description.is_some())
                .bind(e.description.as_ref().and_then(|c| c.new.clone()))
                .bind(e.form_definition.is_some())
                .bind(e.form_definition.as_ref().map(|c| sqlx::types::Json(c.new.clone())))
                .bind(e.validation_rules.is_some())
                .bind(e.validation_rules.as_ref().map(|c| c.new.clone()))
                .bind(e.updated_at)
                .execute(&mut **tx)
                .await?;
            }
            CaseTypeEvent::Deactivated(e) | CaseTypeEvent::Activated(e) => {
                let active = matches!(type_event, CaseTypeEvent::Activated(_));
                sqlx::query(&guarded("is_active = $3, updated_at = $4"))
                    .bind(env.stream_id)
                    .bind(env.stream_version)
                    .bind(active)
                    .bind(e.at)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        let renamed = match type_event {
            CaseTypeEvent::Created(_) => true,
            CaseTypeEvent::Updated(e) => e.name.is_some(),
            CaseTypeEvent::Deactivated(_) | CaseTypeEvent::Activated(_) => false,
        };
        if renamed {
            // The denormalised name on the type's cases follows the type's current name.
            sqlx::query(&format!(
                "UPDATE {schema}.cases c SET case_type_name = ct.name FROM {schema}.case_types ct
                 WHERE ct.id = $1 AND c.case_type_id = $1 AND c.case_type_name IS DISTINCT FROM ct.name"
            ))
            .bind(env.stream_id)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    async fn apply_channel(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
        channel_event: &ChannelEvent,
    ) -> Result<(), sqlx::Error> {
        let env = &event.envelope;
        let schema = self.schema(env.tenant_id);
        let guarded =
            |set: &str| format!("UPDATE {schema}.channels SET {set}, version = $2 WHERE id = $1 AND version = $2 - 1");
        match channel_event {
            ChannelEvent::Created(e) => {
                sqlx::query(&format!(
                    "INSERT INTO {schema}.channels (id, tenant_id, name, type, configuration, created_at, updated_at,
                        is_active, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $6, TRUE, $7) ON CONFLICT (id) DO NOTHING"
                ))
                .bind(env.stream_id)
                .bind(env.tenant_id)
                .bind(&e.name)
                .bind(e.channel_type.as_str())
                .bind(sqlx::types::Json(&e.configuration))
                .bind(e.created_at)
                .bind(env.stream_version)
                .execute(&mut **tx)
                .await?;
            }
            ChannelEvent::Updated(e) => {
                sqlx::query(&guarded(
                    "name = CASE WHEN $3 THEN $4 ELSE name END,
                     configuration = CASE WHEN $5 THEN $6 ELSE configuration END, updated_at = $7",
                ))
                .bind(env.stream_id)
                .bind(env.stream_version)
                .bind(e.name.is_some())
                .bind(e.name.as_ref().map(|c| c.new.clone()))
                .bind(e.configuration.is_some())
                .bind(e.configuration.as_ref().map(|c| sqlx::types::Json(c.new.clone())))
                .bind(e.updated_at)
                .execute(&mut **tx)
                .await?;
            }
            ChannelEvent::Deactivated(e) | ChannelEvent::Activated(e) => {
                let active = matches!(channel_event, ChannelEvent::Activated(_));
                sqlx::query(&guarded("is_active = $3, updated_at = $4"))
                    .bind(env.stream_id)
                    .bind(env.stream_version)
                    .bind(active)
                    .bind(e.at)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    async fn apply_task(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
        task_event: &TaskEvent,
    ) -> Result<(), sqlx::Error> {
        let env = &event.envelope;
        let schema = self.schema(env.tenant_id);
        let guarded =
            |set: &str| format!("UPDATE {schema}.tasks SET {set}, version = $2 WHERE id = $1 AND version = $2 - 1");
        match task_event {
            TaskEvent::Created(e) => {
                sqlx::query(&format!(
                    "INSERT INTO {schema}.tasks (id, tenant_id, case_id, title, description, status, priority,
                        assigned_to, created_by, created_at, updated_at, due_date, version)
                     VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $9, $10, $11) ON CONFLICT (id) DO NOTHING"
                ))
                .bind(env.stream_id)
                .bind(env.tenant_id)
                .bind(e.case_id)
                .bind(&e.title)
                .bind(&e.description)
                .bind(e.priority.as_str())
                .bind(e.assigned_to)
                .bind(e.created_by)
                .bind(e.created_at)
                .bind(e.due_date)
                .bind(env.stream_version)
                .execute(&mut **tx)
                .await?;
            }
            TaskEvent::Assigned(e) => {
                sqlx::query(&guarded("assigned_to = $3, updated_at = $4"))
                    .bind(env.stream_id)
                    .bind(env.stream_version)
                    .bind(e.assigned_to.new)
                    .bind(e.assigned_at)
                    .execute(&mut **tx)
                    .await?;
            }
            TaskEvent::StatusChanged(e) => {
                sqlx::query(&guarded("status = $3, completed_at = $4, updated_at = $5"))
                    .bind(env.stream_id)
                    .bind(env.stream_version)
                    .bind(e.status.new.as_str())
                    .bind(e.completed_at)
                    .bind(e.changed_at)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    async fn apply_document(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
        document_event: &DocumentEvent,
    ) -> Result<(), sqlx::Error> {
        let env = &event.envelope;
        let schema = self.schema(env.tenant_id);
        match document_event {
            DocumentEvent::Attached(e) => {
                sqlx::query(&format!(
                    "INSERT INTO {schema}.documents (id, tenant_id, case_id, filename, mime_type, size, storage_path,
                        uploaded_by, uploaded_at, metadata, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING"
                ))
                .bind(env.stream_id)
                .bind(env.tenant_id)
                .bind(e.case_id)
                .bind(&e.filename)
                .bind(&e.mime_type)
                .bind(e.size)
                .bind(&e.storage_path)
                .bind(e.uploaded_by)
                .bind(e.uploaded_at)
                .bind(sqlx::types::Json(&e.metadata))
                .bind(env.stream_version)
                .execute(&mut **tx)
                .await?;
            }
            DocumentEvent::Deleted(_) => {
                sqlx::query(&format!(
                    "UPDATE {schema}.documents SET is_deleted = TRUE, version = $2 WHERE id = $1 AND version = $2 - 1"
                ))
                .bind(env.stream_id)
                .bind(env.stream_version)
                .execute(&mut **tx)
                .await?;
            }
        }
        Ok(())
    }

    async fn apply_workflow(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
        workflow_event: &WorkflowEvent,
    ) -> Result<(), sqlx::Error> {
        let env = &event.envelope;
        let schema = self.schema(env.tenant_id);
        let guarded =
            |set: &str| format!("UPDATE {schema}.workflows SET {set}, version = $2 WHERE id = $1 AND version = $2 - 1");
        match workflow_event {
            WorkflowEvent::Created(e) => {
                let d = &e.definition;
                sqlx::query(&format!(
                    "INSERT INTO {schema}.workflows (id, tenant_id, name, description, active, created_at, updated_at,
                        stages, transitions, actions, sla_definitions, initial_stage_id, version)
                     VALUES ($1, $2, $3, $4, TRUE, $5, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING"
                ))
                .bind(env.stream_id)
                .bind(env.tenant_id)
                .bind(&e.name)
                .bind(&e.description)
                .bind(e.created_at)
                .bind(sqlx::types::Json(&d.stages))
                .bind(sqlx::types::Json(&d.transitions))
                .bind(sqlx::types::Json(&d.actions))
                .bind(sqlx::types::Json(&d.sla))
                .bind(d.initial_stage)
                .bind(env.stream_version)
                .execute(&mut **tx)
                .await?;
            }
            WorkflowEvent::Updated(e) => {
                let d = e.definition.as_ref().map(|c| &c.new);
                sqlx::query(&guarded(
                    "name = CASE WHEN $3 THEN $4 ELSE name END,
                     description = CASE WHEN $5 THEN $6 ELSE description END,
                     stages = COALESCE($7, stages), transitions = COALESCE($8, transitions),
                     actions = COALESCE($9, actions), sla_definitions = COALESCE($10, sla_definitions),
                     initial_stage_id = COALESCE($11, initial_stage_id), updated_at = $12",
                ))
                .bind(env.stream_id)
                .bind(env.stream_version)
                .bind(e.name.is_some())
                .bind(e.name.as_ref().map(|c| c.new.clone()))
                .bind(e.description.is_some())
                .bind(e.description.as_ref().and_then(|c| c.new.clone()))
                .bind(d.map(|d| sqlx::types::Json(d.stages.clone())))
                .bind(d.map(|d| sqlx::types::Json(d.transitions.clone())))
                .bind(d.map(|d| sqlx::types::Json(d.actions.clone())))
                .bind(d.map(|d| sqlx::types::Json(d.sla.clone())))
                .bind(d.map(|d| d.initial_stage))
                .bind(e.updated_at)
                .execute(&mut **tx)
                .await?;
            }
            WorkflowEvent::Deactivated(e) | WorkflowEvent::Activated(e) => {
                let active = matches!(workflow_event, WorkflowEvent::Activated(_));
                sqlx::query(&guarded("active = $3, updated_at = $4"))
                    .bind(env.stream_id)
                    .bind(env.stream_version)
                    .bind(active)
                    .bind(e.at)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    /// Interactions are recorded once (version 1), into their month's partition, which is
    /// created first when the maintenance has not made it yet.
    async fn apply_interaction(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
        e: &events::interaction::InteractionRecorded,
    ) -> Result<(), sqlx::Error> {
        let env = &event.envelope;
        let schema = self.schema(env.tenant_id);
        let month = (env.tenant_id, e.timestamp.format("%Y-%m").to_string());
        let known = self.partitions.lock().map(|p| p.contains(&month)).unwrap_or(false);
        if !known {
            sqlx::query("SELECT public.murima_interaction_partition($1, $2)")
                .bind(&schema)
                .bind(e.timestamp)
                .execute(&mut **tx)
                .await?;
        }
        sqlx::query(&format!(
            "INSERT INTO {schema}.interactions (id, tenant_id, case_id, channel_id, user_id, direction, content,
                timestamp, metadata, external_id, tags, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (tenant_id, timestamp, id) DO NOTHING"
        ))
        .bind(env.stream_id)
        .bind(env.tenant_id)
        .bind(e.case_id)
        .bind(e.channel_id)
        .bind(e.user_id)
        .bind(e.direction.as_str())
        .bind(&e.content)
        .bind(e.timestamp)
        .bind(sqlx::types::Json(&e.metadata))
        .bind(&e.external_id)
        .bind(&e.tags)
        .bind(env.stream_version)
        .execute(&mut **tx)
        .await?;
        if let Ok(mut p) = self.partitions.lock() {
            p.insert(month);
        }
        Ok(())
    }

    /// A run of case events, set-based. A data error (a refused foreign key, say) is
    /// traced to its event by applying the run event by event, each in a savepoint.
    async fn apply_case_run(&self, tx: &mut Transaction<'_, Postgres>, run: &[&Event]) -> Result<(), ApplyError> {
        if run.is_empty() {
            return Ok(());
        }
        let schema = |tenant| self.schema(tenant);
        let mut savepoint = sqlx::Connection::begin(&mut **tx).await.map_err(|e| ApplyError::Transient(e.into()))?;
        match postgres_cases::apply(&mut savepoint, schema, run).await {
            Ok(()) => savepoint.commit().await.map_err(|e| ApplyError::Transient(e.into())),
            Err(e) if !is_data_error(&e) => Err(classify(e, run[0].envelope.event_id)),
            Err(_) => {
                savepoint.rollback().await.map_err(|e| ApplyError::Transient(e.into()))?;
                for event in run {
                    let mut one =
                        sqlx::Connection::begin(&mut **tx).await.map_err(|e| ApplyError::Transient(e.into()))?;
                    if let Err(e) = postgres_cases::apply(&mut one, schema, std::slice::from_ref(event)).await {
                        return Err(classify(e, event.envelope.event_id));
                    }
                    one.commit().await.map_err(|e| ApplyError::Transient(e.into()))?;
                }
                Ok(())
            }
        }
    }
}

#[async_trait::async_trait]
impl Projection for PostgresProjection {
    fn name(&self) -> &'static str {
        crate::stores::ProjectionName::Postgres.as_str()
    }

    #[tracing::instrument(skip_all, fields(projection = "postgres", events = events.len()))]
    async fn apply(&self, events: &[Event], checkpoint: &Checkpoint) -> Result<(), ApplyError> {
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
        // Runs of consecutive case events go set-based (see postgres_cases); the rest one
        // by one, in journal order.
        let mut run: Vec<&Event> = Vec::new();
        for event in events.iter().filter(|e| self.placement.of(e.envelope.tenant_id).is_some()) {
            if matches!(event.data, DomainEvent::Case(_)) {
                run.push(event);
                continue;
            }
            self.apply_case_run(&mut tx, &run).await?;
            run.clear();
            if let Err(e) = self.apply_one(&mut tx, event).await {
                return Err(classify(e, event.envelope.event_id));
            }
        }
        self.apply_case_run(&mut tx, &run).await?;
        crate::checkpoint::save(&mut tx, checkpoint).await.map_err(|e| ApplyError::Transient(e.into()))?;
        save_tenant_positions(&mut tx, &checkpoint.group, events).await.map_err(|e| ApplyError::Transient(e.into()))?;
        tx.commit().await.map_err(|e| ApplyError::Transient(e.into()))?;
        Ok(())
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

/// The highest journal position applied per tenant, committed with the rows: reads wait
/// on it for a command's position token (a tenant's events arrive in journal order).
async fn save_tenant_positions(
    tx: &mut Transaction<'_, Postgres>,
    group: &str,
    events: &[Event],
) -> Result<(), sqlx::Error> {
    let mut highest: std::collections::BTreeMap<Uuid, i64> = std::collections::BTreeMap::new();
    for event in events {
        let entry = highest.entry(event.envelope.tenant_id).or_insert(0);
        *entry = (*entry).max(event.envelope.position);
    }
    let (tenants, positions): (Vec<Uuid>, Vec<i64>) = highest.into_iter().unzip();
    sqlx::query(
        "INSERT INTO projector.tenant_positions (projection, tenant_id, position, updated_at)
         SELECT $1, t, p, now() FROM UNNEST($2::uuid[], $3::bigint[]) AS x(t, p)
         ON CONFLICT (projection, tenant_id)
         DO UPDATE SET position = GREATEST(projector.tenant_positions.position, EXCLUDED.position), updated_at = now()",
    )
    .bind(group)
    .bind(tenants)
    .bind(positions)
    .execute(&mut **tx)
    .await?;
    Ok(())
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
