//! Sends the webhook deliveries the relational read model queued
//! (`projections::postgres::webhooks`): each to its subscription's URL, signed, retried
//! with a doubling wait, and dead-lettered after the last attempt
//! (`runtime::webhook::Policy`). Every projector runs this; a delivery is claimed for a
//! lease before it is sent (`FOR UPDATE SKIP LOCKED`), so two projectors never send one
//! at the same time, and one that dies mid-send leaves it to be tried again after the
//! lease: a receiver may see an event twice then, and tells by its `Murima-Event-Id`.
//! Each round takes every tenant's due deliveries in turns (`PER_TENANT`), so no
//! tenant's backlog delays another's deliveries by more than a round (while fewer than
//! `BATCH` tenants have deliveries due at once).
//!
//! Deliveries go only to the URL the tenant registered, never along a redirect, and only
//! to public addresses unless the operator allows private ones: the host is resolved here
//! and checked at each delivery (a name that resolved to a public address when it was
//! registered may not any more).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use runtime::webhook::{self, Policy};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// Deliveries claimed (and sent at once) per round.
pub const BATCH: i64 = 20;
/// At most this many deliveries of one tenant per round, and every tenant's first due
/// delivery before any tenant's second: a tenant with a backlog for slow receivers (on
/// any number of its webhooks) takes its turn beside the others instead of ahead of them.
pub const PER_TENANT: i64 = 5;
/// How long a claimed delivery is left to its sender before another may try it.
pub const LEASE_SECS: f64 = 60.0;
/// Claims a round's deliveries (`$1` at most, leased for `$2` s, `$3` per tenant): each
/// tenant's first due ones, in turns. The tenants with pending deliveries are found by a
/// skip scan, and each is read only up to its share along `webhook_deliveries_pending`, so
/// a receiver that is down with 50,000 deliveries queued costs a claim 5 rows, not a
/// ranking of all of them (80-130 ms a claim, every 200 ms, when it was written that way).
/// Only the chosen rows are locked, found again by their row address (a join back to the
/// table by key was planned as a scan of the whole table on a small one; locking the
/// shares where they are read locked every tenant's, not the round's). A row changed
/// since it was ranked no longer has that address and waits for the next round.
pub const CLAIM_SQL: &str = "WITH RECURSIVE pending AS (
        (SELECT tenant_id FROM projector.webhook_deliveries WHERE status = 'pending' ORDER BY tenant_id LIMIT 1)
        UNION ALL
        SELECT (SELECT d.tenant_id FROM projector.webhook_deliveries d
                WHERE d.status = 'pending' AND d.tenant_id > p.tenant_id ORDER BY d.tenant_id LIMIT 1)
        FROM pending p WHERE p.tenant_id IS NOT NULL
     ), ranked AS (
        SELECT r.*, row_number() OVER (PARTITION BY r.tenant_id ORDER BY r.next_attempt_at) AS turn
        FROM pending p CROSS JOIN LATERAL (
            SELECT d.ctid AS row_at, d.next_attempt_at, d.tenant_id FROM projector.webhook_deliveries d
            WHERE d.tenant_id = p.tenant_id AND d.status = 'pending' AND d.next_attempt_at <= now()
            ORDER BY d.next_attempt_at LIMIT $3
        ) r
     ), due AS (
        SELECT d.tenant_id, d.webhook_id, d.event_id FROM projector.webhook_deliveries d
        WHERE d.ctid = ANY (ARRAY (SELECT row_at FROM ranked ORDER BY turn, next_attempt_at LIMIT $1))
          AND d.status = 'pending' AND d.next_attempt_at <= now()
        FOR UPDATE SKIP LOCKED
     ), claimed AS (
        UPDATE projector.webhook_deliveries d
        SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
        FROM due WHERE (d.tenant_id, d.webhook_id, d.event_id) = (due.tenant_id, due.webhook_id, due.event_id)
        RETURNING d.tenant_id, d.webhook_id, d.event_id, d.event_type, d.body, d.attempts
     )
     SELECT c.tenant_id, c.webhook_id, c.event_id, c.event_type, c.body, c.attempts,
            CASE WHEN w.active THEN w.url END, s.secret
     FROM claimed c
     LEFT JOIN projector.webhooks w ON (w.tenant_id, w.id) = (c.tenant_id, c.webhook_id)
     LEFT JOIN eventstore.webhook_secrets s ON (s.tenant_id, s.webhook_id) = (c.tenant_id, c.webhook_id)";
/// The longest a receiver may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle sender waits before looking for due deliveries again.
const IDLE: Duration = Duration::from_millis(200);
/// How much of a failed receiver's answer the delivery log keeps (and reads at most).
const ERROR_KEPT: usize = 300;
/// How long delivered and dead deliveries stay in the log, and how often the old ones go.
const KEPT_DAYS: i32 = 7;
const PURGE_EVERY: Duration = Duration::from_secs(600);

struct Claimed {
    tenant_id: Uuid,
    webhook_id: Uuid,
    event_id: Uuid,
    event_type: String,
    body: Value,
    attempt: i32,
    url: Option<String>,
    secret: Option<String>,
}

/// What one attempt came to.
enum Outcome {
    Delivered(u16),
    Failed {
        status: Option<u16>,
        error: String,
    },
    /// The subscription is gone or switched off: nothing to send, nothing to retry.
    Cancelled(&'static str),
}

pub struct Sender {
    pool: PgPool,
    http: reqwest::Client,
    policy: Policy,
}

/// Resolves hosts for deliveries, keeping only the addresses the policy allows.
struct Guarded(Policy);

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = all.iter().copied().filter(|a| policy.allows(a.ip())).collect();
            if allowed.is_empty() {
                // Which internal addresses a name has is not the tenant's to learn.
                return Err(format!("{host} resolves to no address webhooks may reach").into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

impl Sender {
    pub fn new(pool: PgPool, policy: Policy) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            // A proxy would resolve the host itself, past `Guarded`.
            .no_proxy()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(Guarded(policy)))
            .user_agent(concat!("Murima-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { pool, http, policy })
    }

    pub async fn run_until_stopped(self) {
        let mut purged = tokio::time::Instant::now();
        loop {
            if purged.elapsed() >= PURGE_EVERY {
                self.purge().await;
                purged = tokio::time::Instant::now();
            }
            match self.round().await {
                // Something was due: there may be more (a webhook past its turns).
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "webhook deliveries failed; will retry"),
            }
            tokio::time::sleep(IDLE).await;
        }
    }

    /// Claims the due deliveries, sends them at once, and records each outcome (one that
    /// cannot be recorded is sent again after its claim runs out).
    async fn round(&self) -> anyhow::Result<usize> {
        let claimed = self.claim().await?;
        let outcomes = join_all(claimed.iter().map(|c| self.send(c))).await;
        for (delivery, outcome) in claimed.iter().zip(outcomes) {
            if let Err(e) = self.record(delivery, outcome).await {
                tracing::warn!(webhook_id = %delivery.webhook_id, event_id = %delivery.event_id,
                    error = %format!("{e:#}"), "recording a webhook delivery failed; it will be sent again");
            }
        }
        Ok(claimed.len())
    }

    /// Deletes delivered and dead deliveries older than `KEPT` (a week: past
    /// `DELIVERABLE_FOR`, so a replayed event still finds its delivery and is not queued
    /// again), a bounded number at a time.
    async fn purge(&self) {
        let purged = sqlx::query(
            "DELETE FROM projector.webhook_deliveries d USING (
                SELECT tenant_id, webhook_id, event_id FROM projector.webhook_deliveries
                WHERE status <> 'pending' AND created_at < now() - make_interval(days => $1) LIMIT 10000
             ) old WHERE (d.tenant_id, d.webhook_id, d.event_id) = (old.tenant_id, old.webhook_id, old.event_id)",
        )
        .bind(KEPT_DAYS)
        .execute(&self.pool)
        .await;
        match purged {
            Ok(done) if done.rows_affected() > 0 => {
                tracing::info!(purged = done.rows_affected(), "purged old webhook deliveries")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purging old webhook deliveries failed; will retry"),
        }
    }

    async fn claim(&self) -> anyhow::Result<Vec<Claimed>> {
        type Row = (Uuid, Uuid, Uuid, String, Value, i32, Option<String>, Option<String>);
        let rows: Vec<Row> =
            sqlx::query_as(CLAIM_SQL).bind(BATCH).bind(LEASE_SECS).bind(PER_TENANT).fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|(tenant_id, webhook_id, event_id, event_type, body, attempt, url, secret)| Claimed {
                tenant_id,
                webhook_id,
                event_id,
                event_type,
                body,
                attempt,
                url,
                secret,
            })
            .collect())
    }

    async fn send(&self, delivery: &Claimed) -> Outcome {
        let (Some(url), Some(secret)) = (&delivery.url, &delivery.secret) else {
            return Outcome::Cancelled("the webhook was deleted or deactivated");
        };
        let Ok(target) = events::webhook::parse_url(url) else {
            return Outcome::Cancelled("the webhook's URL is no longer accepted");
        };
        // A literal address is not resolved, so the resolver cannot refuse it: checked here.
        if let Some(ip) = target.host_str().and_then(|h| h.trim_matches(['[', ']']).parse().ok()) {
            if !self.policy.allows(ip) {
                return Outcome::Failed { status: None, error: format!("{ip} is not an address webhooks may reach") };
            }
        }
        let body = match serde_json::to_vec(&delivery.body) {
            Ok(body) => body,
            Err(e) => return Outcome::Failed { status: None, error: e.to_string() },
        };
        let timestamp = chrono::Utc::now().timestamp();
        let sent = self
            .http
            .post(target)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(webhook::SIGNATURE_HEADER, webhook::signature(secret, timestamp, &body))
            .header(webhook::EVENT_ID_HEADER, delivery.event_id.to_string())
            .header(webhook::EVENT_TYPE_HEADER, &delivery.event_type)
            .header(webhook::ATTEMPT_HEADER, delivery.attempt.to_string())
            .body(body)
            .send()
            .await;
        match sent {
            Ok(answer) if answer.status().is_success() => Outcome::Delivered(answer.status().as_u16()),
            Ok(mut answer) => {
                let status = answer.status().as_u16();
                // The start of the answer only: a receiver may send without end.
                let mut start = Vec::new();
                while start.len() < ERROR_KEPT {
                    match answer.chunk().await {
                        Ok(Some(chunk)) => start.extend_from_slice(&chunk),
                        Ok(None) | Err(_) => break,
                    }
                }
                let text = String::from_utf8_lossy(&start);
                Outcome::Failed {
                    status: Some(status),
                    error: kept(&format!("the receiver answered {status}: {text}")),
                }
            }
            // Without the URL: it may carry a token of the receiver's, and logs are read widely.
            Err(e) => Outcome::Failed { status: None, error: kept(&format!("{:#}", e.without_url())) },
        }
    }

    async fn record(&self, d: &Claimed, outcome: Outcome) -> anyhow::Result<()> {
        let attempts = u32::try_from(d.attempt).unwrap_or(u32::MAX);
        let (status, code, error, retry_in): (&str, Option<i32>, Option<String>, f64) = match outcome {
            Outcome::Delivered(code) => ("delivered", Some(i32::from(code)), None, 0.0),
            Outcome::Cancelled(why) => ("dead", None, Some(why.to_owned()), 0.0),
            Outcome::Failed { status, error } if attempts >= self.policy.max_attempts => {
                ("dead", status.map(i32::from), Some(error), 0.0)
            }
            Outcome::Failed { status, error } => {
                ("pending", status.map(i32::from), Some(error), self.policy.retry_after(attempts).as_secs_f64())
            }
        };
        metrics::counter!("webhook_deliveries_total", "outcome" => status).increment(1);
        if status == "dead" {
            tracing::warn!(tenant_id = %d.tenant_id, webhook_id = %d.webhook_id, event_id = %d.event_id,
                attempts, error = ?error, "webhook delivery dead-lettered");
        }
        sqlx::query(
            "UPDATE projector.webhook_deliveries SET status = $4, last_status = $5, last_error = $6,
                next_attempt_at = now() + make_interval(secs => $7),
                delivered_at = CASE WHEN $4 = 'delivered' THEN now() END
             WHERE tenant_id = $1 AND webhook_id = $2 AND event_id = $3 AND attempts = $8",
        )
        .bind(d.tenant_id)
        .bind(d.webhook_id)
        .bind(d.event_id)
        .bind(status)
        .bind(code)
        .bind(error)
        .bind(retry_in)
        .bind(d.attempt)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// At most `ERROR_KEPT` characters of a failure.
fn kept(text: &str) -> String {
    text.chars().take(ERROR_KEPT).collect()
}
