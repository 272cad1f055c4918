//! The relational read model: `public.tenants` and each tenant's `tenant_<id>.cases`.
//!
//! One transaction per batch. Each row keeps the stream `version` it reflects, and every
//! write is guarded by it (insert-if-absent for the first event, `version = v - 1` for the
//! rest), so a redelivered event changes nothing.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use events::case::CaseEvent;
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

use crate::event::{DomainEvent, Event};
use crate::projection::{ApplyError, Checkpoint, LogPosition, Placement, Projection};

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
        if self.provisioned.lock().map(|p| p.contains(&tenant)).unwrap_or(false) {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO public.tenants (id, name, slug, created_at, updated_at, version)
             VALUES ($1, '(pending)', $2, now(), now(), 0) ON CONFLICT (id) DO NOTHING",
        )
        .bind(tenant)
        .bind(format!("pending-{}", tenant.simple()))
        .execute(&mut **tx)
        .await?;
        sqlx::query("SELECT public.murima_provision_tenant($1)")
            .bind(self.schema_id(tenant))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn apply_one(&self, tx: &mut Transaction<'_, Postgres>, event: &Event) -> Result<(), sqlx::Error> {
        let env = &event.envelope;
        self.ensure_tenant(tx, env.tenant_id).await?;
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
            DomainEvent::Case(case_event) => self.apply_case(tx, event, case_event).await?,
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
                    "INSERT INTO {schema}.users (id, tenant_id, username, email, password_hash, first_name, last_name,
                        role, status, created_at, updated_at, permissions, preferences, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $9, '{{}}', '{{}}', $10)
                     ON CONFLICT (id) DO NOTHING"
                ))
                .bind(env.stream_id)
                .bind(env.tenant_id)
                .bind(&e.username)
                .bind(&e.email)
                .bind(&e.password_hash)
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

    async fn apply_case(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
        case_event: &CaseEvent,
    ) -> Result<(), sqlx::Error> {
        let env = &event.envelope;
        let schema = self.schema(env.tenant_id);
        let v = env.stream_version;
        let affected = match case_event {
            CaseEvent::Opened(e) => {
                sqlx::query(&format!(
                    "INSERT INTO {schema}.cases (id, tenant_id, case_number, title, description, status, priority,
                        case_type_id, created_by, assigned_to, created_at, updated_at, due_date, custom_fields, tags, version,
                        case_type_name, assigned_to_username)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14, $15,
                        (SELECT name FROM {schema}.case_types WHERE id = $8),
                        (SELECT username FROM {schema}.users WHERE id = $10))
                     ON CONFLICT (id) DO NOTHING"
                ))
                .bind(env.stream_id)
                .bind(env.tenant_id)
                .bind(&e.case_number)
                .bind(&e.title)
                .bind(&e.description)
                .bind(e.status.as_str())
                .bind(e.priority.as_str())
                .bind(e.case_type_id)
                .bind(e.created_by)
                .bind(e.assigned_to)
                .bind(e.opened_at)
                .bind(e.due_date)
                .bind(sqlx::types::Json(&e.custom_fields))
                .bind(&e.tags)
                .bind(v)
                .execute(&mut **tx)
                .await?
                .rows_affected()
            }
            CaseEvent::Updated(e) => {
                sqlx::query(&format!(
                    "UPDATE {schema}.cases SET
                        title = CASE WHEN $3 THEN $4 ELSE title END,
                        description = CASE WHEN $5 THEN $6 ELSE description END,
                        priority = CASE WHEN $7 THEN $8 ELSE priority END,
                        due_date = CASE WHEN $9 THEN $10 ELSE due_date END,
                        tags = CASE WHEN $11 THEN $12 ELSE tags END,
                        custom_fields = CASE WHEN $13 THEN $14 ELSE custom_fields END,
                        updated_at = $15, version = $2
                     WHERE id = $1 AND version = $2 - 1"
                ))
                .bind(env.stream_id)
                .bind(v)
                .bind(e.title.is_some())
                .bind(e.title.as_ref().map(|c| c.new.clone()))
                .bind(e.description.is_some())
                .bind(e.description.as_ref().and_then(|c| c.new.clone()))
                .bind(e.priority.is_some())
                .bind(e.priority.as_ref().map(|c| c.new.as_str()))
                .bind(e.due_date.is_some())
                .bind(e.due_date.as_ref().and_then(|c| c.new))
                .bind(e.tags.is_some())
                .bind(e.tags.as_ref().map(|c| c.new.clone()))
                .bind(e.custom_fields.is_some())
                .bind(e.custom_fields.as_ref().map(|c| sqlx::types::Json(c.new.clone())))
                .bind(e.updated_at)
                .execute(&mut **tx)
                .await?
                .rows_affected()
            }
            CaseEvent::Assigned(e) => {
                sqlx::query(&format!(
                    "UPDATE {schema}.cases SET assigned_to = $3, updated_at = $4, version = $2,
                        assigned_to_username = (SELECT username FROM {schema}.users WHERE id = $3)
                     WHERE id = $1 AND version = $2 - 1"
                ))
                .bind(env.stream_id)
                .bind(v)
                .bind(e.assigned_to.new)
                .bind(e.assigned_at)
                .execute(&mut **tx)
                .await?
                .rows_affected()
            }
            CaseEvent::StatusChanged(e) => {
                sqlx::query(&format!(
                    "UPDATE {schema}.cases SET status = $3, updated_at = $4, version = $2,
                        resolved_at = CASE WHEN $3 IN ('resolved', 'closed') THEN COALESCE(resolved_at, $4) END
                     WHERE id = $1 AND version = $2 - 1"
                ))
                .bind(env.stream_id)
                .bind(v)
                .bind(e.status.new.as_str())
                .bind(e.changed_at)
                .execute(&mut **tx)
                .await?
                .rows_affected()
            }
            CaseEvent::WorkflowStarted(e) => {
                sqlx::query(&format!(
                    "UPDATE {schema}.cases SET workflow_id = $3, current_stage_id = $4, version = $2
                     WHERE id = $1 AND version = $2 - 1"
                ))
                .bind(env.stream_id)
                .bind(v)
                .bind(e.workflow_id)
                .bind(e.stage_id)
                .execute(&mut **tx)
                .await?
                .rows_affected()
            }
            CaseEvent::StageMoved(e) => {
                sqlx::query(&format!(
                    "UPDATE {schema}.cases SET current_stage_id = $3, updated_at = $4, version = $2
                     WHERE id = $1 AND version = $2 - 1"
                ))
                .bind(env.stream_id)
                .bind(v)
                .bind(e.stage_id.new)
                .bind(e.moved_at)
                .execute(&mut **tx)
                .await?
                .rows_affected()
            }
            CaseEvent::TeamAssigned(e) => {
                sqlx::query(&format!(
                    "UPDATE {schema}.cases SET assigned_team_id = $3, updated_at = $4, version = $2
                     WHERE id = $1 AND version = $2 - 1"
                ))
                .bind(env.stream_id)
                .bind(v)
                .bind(e.team_id.new)
                .bind(e.assigned_at)
                .execute(&mut **tx)
                .await?
                .rows_affected()
            }
            CaseEvent::SlaSet(e) => {
                // The seed's cases table has no SLA columns: the due times live in metadata.sla.
                let sla = serde_json::json!({
                    "priority": e.priority,
                    "first_response_due": e.first_response_due,
                    "resolution_due": e.resolution_due,
                });
                sqlx::query(&format!(
                    "UPDATE {schema}.cases SET metadata = jsonb_set(COALESCE(metadata, '{{}}'), '{{sla}}', $3), version = $2
                     WHERE id = $1 AND version = $2 - 1"
                ))
                .bind(env.stream_id)
                .bind(v)
                .bind(sla)
                .execute(&mut **tx)
                .await?
                .rows_affected()
            }
        };
        if affected == 0 {
            let held: Option<i64> = sqlx::query_scalar(&format!("SELECT version FROM {schema}.cases WHERE id = $1"))
                .bind(env.stream_id)
                .fetch_optional(&mut **tx)
                .await?;
            if held.unwrap_or(0) < v - 1 {
                tracing::warn!(stream_id = %env.stream_id, version = v, held = ?held, "version gap; waiting for the missing event");
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Projection for PostgresProjection {
    fn name(&self) -> &'static str {
        "postgres"
    }

    #[tracing::instrument(skip_all, fields(projection = "postgres", events = events.len()))]
    async fn apply(&self, events: &[Event], checkpoint: &Checkpoint) -> Result<(), ApplyError> {
        let mut tx = self.pool.begin().await.map_err(|e| ApplyError::Transient(e.into()))?;
        let mut tenants = Vec::new();
        for event in events.iter().filter(|e| self.placement.of(e.envelope.tenant_id).is_some()) {
            if let Err(e) = self.apply_one(&mut tx, event).await {
                return Err(classify(e, event.envelope.event_id));
            }
            tenants.push(event.envelope.tenant_id);
        }
        save_checkpoint(&mut tx, checkpoint).await.map_err(|e| ApplyError::Transient(e.into()))?;
        save_tenant_positions(&mut tx, &checkpoint.group, events).await.map_err(|e| ApplyError::Transient(e.into()))?;
        tx.commit().await.map_err(|e| ApplyError::Transient(e.into()))?;
        if let Ok(mut known) = self.provisioned.lock() {
            known.extend(tenants);
        }
        Ok(())
    }

    async fn checkpoints(&self, group: &str, topic: &str) -> anyhow::Result<Option<BTreeMap<i32, LogPosition>>> {
        let rows: Vec<(i32, i64, i32)> = sqlx::query_as(
            "SELECT partition, next_offset, epoch FROM projector.checkpoints WHERE projection = $1 AND topic = $2",
        )
        .bind(group)
        .bind(topic)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(rows.into_iter().map(|(p, next_offset, epoch)| (p, LogPosition { next_offset, epoch })).collect()))
    }
}

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

/// The batch's end, committed with its rows: a restart resumes exactly after it.
async fn save_checkpoint(tx: &mut Transaction<'_, Postgres>, checkpoint: &Checkpoint) -> Result<(), sqlx::Error> {
    let partitions: Vec<i32> = checkpoint.positions.keys().copied().collect();
    let offsets: Vec<i64> = checkpoint.positions.values().map(|p| p.next_offset).collect();
    let epochs: Vec<i32> = checkpoint.positions.values().map(|p| p.epoch).collect();
    sqlx::query(
        "INSERT INTO projector.checkpoints (projection, topic, partition, next_offset, epoch, updated_at)
         SELECT $1, $2, p, o, e, now() FROM UNNEST($3::int[], $4::bigint[], $5::int[]) AS t(p, o, e)
         ON CONFLICT (projection, topic, partition)
         DO UPDATE SET next_offset = EXCLUDED.next_offset, epoch = EXCLUDED.epoch, updated_at = now()",
    )
    .bind(&checkpoint.group)
    .bind(&checkpoint.topic)
    .bind(partitions)
    .bind(offsets)
    .bind(epochs)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Data and constraint errors can never succeed on retry; anything else might.
fn classify(error: sqlx::Error, event_id: Uuid) -> ApplyError {
    if let sqlx::Error::Database(db) = &error {
        let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
        if code.starts_with("22") || code.starts_with("23") {
            return ApplyError::Poison {
                event_id,
                reason: format!("PostgreSQL refused it ({code}): {}", db.message()),
            };
        }
    }
    ApplyError::Transient(error.into())
}
