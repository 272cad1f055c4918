//! Group append: the appends of concurrent commands go to PostgreSQL together, as one
//! statement that calls `eventstore.append` once per command (issue 18).
//!
//! A commit costs PostgreSQL more than the rows it writes: on this project's 2-core box,
//! pgbench calling `eventstore.append` for one new case per transaction gave about 3,000
//! appends/s at 4, 16 or 64 clients, and the same calls eight to a statement about
//! 24,000. So a command that appends on the fast path (`Journal::append_on_cache`) hands
//! its call to an `Appender` and waits for its row. A few workers each take what is
//! queued (up to `MAX_BATCH`) and send it as one statement: under no load a batch is one
//! command and costs what it did alone; under load each batch holds what queued while the
//! one before it ran.
//!
//! Every call keeps its own answer: `eventstore.append` returns `conflict` or `replay`
//! as a row, so one command's stale version or idempotent retry does not touch the others
//! of its batch. The calls run ordered by (tenant, stream), so two batches take the rows
//! they both need in the same order. A call that raises (a concurrent writer won the
//! unique version, a twin with the same key committed first, a deadlock) rolls back its
//! whole batch: PostgreSQL answered with an error, so nothing of it committed, and the
//! batch is split in halves and each half sent again, down to the call that raises,
//! which gets its own error as it would have alone (`Failed`): one bad call costs its
//! batch-mates about two statements per halving, not one each. A rolled-back batch
//! leaves nothing behind but unused case numbers (gaps, as any failed open leaves).
//!
//! Any other failure of a batch of several (the connection lost, the pool empty) is not
//! retried: the batch may have committed before its answer was lost, and a call made
//! again would be decided again on a stream that already holds its events. Each of its
//! commands is answered `Lost` (503, whether it was recorded unknown), as a lone call
//! that lost its connection always was; a retry with the same Idempotency-Key answers as
//! the first.
//!
//! A command waiting here holds no pool connection, so the workers' own acquisitions
//! cannot be starved by the commands they serve.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

/// What `eventstore.append` answers: outcome, version, last position, and for a replay
/// the stored request hash and answer.
pub type AppendRow = (String, Option<i64>, Option<i64>, Option<String>, Option<String>, Option<Value>);

/// The most commands in one statement.
const MAX_BATCH: usize = 64;
/// How many batches may be in flight at once.
const WORKERS: usize = 2;
/// Commands waiting for a worker before `submit` waits for room.
const QUEUE: usize = 1024;

/// One command's call of `eventstore.append`: its arguments, in the function's order.
#[derive(Debug, Clone)]
pub struct AppendCall {
    pub tenant: Uuid,
    pub stream_type: &'static str,
    pub stream: Uuid,
    pub expected: i64,
    pub event_ids: Vec<Uuid>,
    pub event_types: Vec<String>,
    pub schema_versions: Vec<i16>,
    pub occurred_at: DateTime<Utc>,
    pub envelopes: Vec<Value>,
    pub case_number: bool,
    pub key_tenant: Option<Uuid>,
    pub principal: String,
    pub key: Option<String>,
    pub request_hash: String,
    pub ttl_secs: f64,
    pub answer: Value,
    pub notify: bool,
}

impl AppendCall {
    /// The call alone, on `conn`: one statement. A database error (the unique version, a
    /// committed twin) is the caller's to read.
    pub async fn run(&self, conn: &mut sqlx::PgConnection) -> Result<AppendRow, sqlx::Error> {
        sqlx::query_as(
            "SELECT outcome, stream_version, last_position, case_number, stored_hash, stored_answer
             FROM eventstore.append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(self.tenant)
        .bind(self.stream_type)
        .bind(self.stream)
        .bind(self.expected)
        .bind(&self.event_ids)
        .bind(&self.event_types)
        .bind(&self.schema_versions)
        .bind(self.occurred_at)
        .bind(&self.envelopes)
        .bind(self.case_number)
        .bind(self.key_tenant)
        .bind(&self.principal)
        .bind(&self.key)
        .bind(&self.request_hash)
        .bind(self.ttl_secs)
        .bind(&self.answer)
        .bind(self.notify)
        .fetch_one(conn)
        .await
    }
}

/// What became of a submitted call.
pub enum Batched {
    /// Its batch committed with this answer.
    Row(AppendRow),
    /// The call failed on its own, with this error (nothing of it committed, unless the
    /// error is a lost connection's).
    Failed(sqlx::Error),
    /// The appender has stopped: nothing was sent; make the call alone.
    Alone(AppendCall),
    /// The database did not take its batch (no connection, a deadline, no room):
    /// nothing of it committed; try again later.
    Busy,
    /// Its batch's answer was lost (a connection or the pool failed, or the worker ended):
    /// whether it committed is unknown.
    Lost,
}

type Job = (AppendCall, oneshot::Sender<Batched>);

/// The queue of calls and the workers that send them in batches.
#[derive(Clone)]
pub struct Appender {
    queue: mpsc::Sender<Job>,
}

impl Appender {
    /// Starts the workers, which appends on `pool`; they stop when the last clone of
    /// the appender is dropped.
    pub fn start(pool: PgPool) -> Self {
        let (queue, jobs) = mpsc::channel::<Job>(QUEUE);
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..WORKERS {
            tokio::spawn(work(pool.clone(), jobs.clone()));
        }
        Self { queue }
    }

    /// Appends `call` with whatever else is queued.
    pub async fn submit(&self, call: AppendCall) -> Batched {
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError((call, _))) = self.queue.send((call, reply)).await {
            return Batched::Alone(call);
        }
        answer.await.unwrap_or(Batched::Lost)
    }
}

/// One worker: takes the next call and all that is queued behind it (up to `MAX_BATCH`),
/// sends them as one statement, and answers each.
async fn work(pool: PgPool, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut jobs = jobs.lock().await;
            if jobs.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
        }
        // Two batches lock what they share in the same order.
        batch.sort_by_key(|(call, _)| (call.tenant, call.stream));
        metrics::histogram!("append_batch_commands").record(batch.len() as f64);
        match pool.acquire().await {
            Ok(mut conn) => settle(&mut conn, std::mem::take(&mut batch)).await,
            Err(error) => {
                tracing::warn!(%error, commands = batch.len(), "no connection for a batch of appends");
                answer_all(batch.drain(..), || Batched::Busy);
            }
        }
    }
}

/// Sends `batch` and answers each of its calls; a batch that PostgreSQL refused because
/// of one of its calls (`one_calls_fault`) is split in halves, each sent again, until the
/// call that raises answers alone. A call whose caller has given up (its request ended)
/// is not sent again: it was not recorded, and its client may be retrying it already.
async fn settle(conn: &mut sqlx::PgConnection, batch: Vec<Job>) {
    let mut pending = vec![batch];
    while let Some(mut group) = pending.pop() {
        group.retain(|(_, reply)| !reply.is_closed());
        if group.is_empty() {
            continue;
        }
        let calls = group.iter().map(|(call, _)| call).collect::<Vec<_>>();
        match append_batch(conn, &calls).await {
            Ok(rows) if rows.len() == group.len() => {
                for ((_, reply), row) in group.into_iter().zip(rows) {
                    let _ = reply.send(Batched::Row(row));
                }
            }
            Ok(rows) => {
                tracing::error!(
                    calls = group.len(),
                    rows = rows.len(),
                    "a batch of appends answered the wrong number of rows"
                );
                answer_all(group.into_iter(), || Batched::Lost);
            }
            Err(error) if group.len() == 1 => {
                if let Some((_, reply)) = group.pop() {
                    let _ = reply.send(Batched::Failed(error));
                }
            }
            Err(sqlx::Error::Database(error)) if one_calls_fault(error.code().as_deref()) => {
                metrics::counter!("append_batches_split_total").increment(1);
                tracing::info!(%error, calls = group.len(), "a batch of appends was refused; it is sent again in halves");
                let back = group.split_off(group.len() / 2);
                pending.push(back);
                pending.push(group);
            }
            // The database's own trouble (a statement deadline, a lock wait given up, no
            // room): nothing committed, and halving would only add load. Try again later.
            Err(sqlx::Error::Database(error)) => {
                tracing::warn!(%error, code = ?error.code(), calls = group.len(), "a batch of appends was not taken");
                answer_all(group.into_iter(), || Batched::Busy);
            }
            Err(error) => {
                tracing::warn!(%error, calls = group.len(), "a batch of appends lost its answer");
                answer_all(group.into_iter(), || Batched::Lost);
            }
        }
    }
}

/// Whether PostgreSQL refused a batch for one of its calls, so that a half without that
/// call would be taken: a constraint (class 23: a unique version, an event id), bad data
/// (class 22), a deadlock between calls' rows (40P01), or an error the append raises
/// itself (P0001, and MU001: a twin's key committed first).
fn one_calls_fault(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("23") || c.starts_with("22") || matches!(c, "40P01" | "P0001" | "MU001"))
}

/// `settle` for calls without callers: each call's answer, in the calls' order (tests
/// use it to see a refused batch split).
pub async fn settle_calls(conn: &mut sqlx::PgConnection, calls: Vec<AppendCall>) -> Vec<Batched> {
    let (jobs, answers): (Vec<Job>, Vec<_>) = calls
        .into_iter()
        .map(|call| {
            let (reply, answer) = oneshot::channel();
            ((call, reply), answer)
        })
        .unzip();
    settle(conn, jobs).await;
    let mut out = Vec::with_capacity(answers.len());
    for answer in answers {
        out.push(answer.await.unwrap_or(Batched::Lost));
    }
    out
}

/// Answers every job of `jobs` with what `answer` makes (called once per job).
fn answer_all(jobs: impl Iterator<Item = Job>, mut answer: impl FnMut() -> Batched) {
    for (_, reply) in jobs {
        let _ = reply.send(answer());
    }
}

/// One argument of every call, in the calls' order.
fn column<'a, T>(calls: &[&'a AppendCall], f: impl Fn(&'a AppendCall) -> T) -> Vec<T> {
    calls.iter().map(|c| f(c)).collect()
}

/// The calls as one statement (one transaction, unless `conn` is in one already), run in
/// the order given; their rows in that order.
pub async fn append_batch(conn: &mut sqlx::PgConnection, calls: &[&AppendCall]) -> Result<Vec<AppendRow>, sqlx::Error> {
    if let [call] = calls {
        return Ok(vec![call.run(conn).await?]);
    }
    // The events of all calls, flattened; each call names its slice (1-based, as in SQL).
    let (mut firsts, mut counts) = (Vec::with_capacity(calls.len()), Vec::with_capacity(calls.len()));
    let (mut ids, mut types, mut versions, mut envelopes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for call in calls {
        firsts.push(i32::try_from(ids.len()).unwrap_or(i32::MAX).saturating_add(1));
        counts.push(i32::try_from(call.event_ids.len()).unwrap_or(i32::MAX));
        ids.extend_from_slice(&call.event_ids);
        types.extend(call.event_types.iter().map(String::as_str));
        versions.extend_from_slice(&call.schema_versions);
        envelopes.extend(call.envelopes.iter());
    }
    sqlx::query_as(
        "SELECT a.outcome, a.stream_version, a.last_position, a.case_number, a.stored_hash, a.stored_answer
           FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::int8[], $5::int4[], $6::int4[],
                       $7::timestamptz[], $8::bool[], $9::uuid[], $10::text[], $11::text[], $12::text[],
                       $13::jsonb[], $14::bool[])
                WITH ORDINALITY AS b(tenant, stream_type, stream, expected, first, count, occurred_at,
                                     case_number, key_tenant, principal, key, request_hash, answer, notify, i)
          CROSS JOIN LATERAL eventstore.append(
                b.tenant, b.stream_type, b.stream, b.expected,
                ($15::uuid[])[b.first:b.first + b.count - 1],
                ($16::text[])[b.first:b.first + b.count - 1],
                ($17::int2[])[b.first:b.first + b.count - 1],
                b.occurred_at,
                ($18::jsonb[])[b.first:b.first + b.count - 1],
                b.case_number, b.key_tenant, b.principal, b.key, b.request_hash, $19, b.answer, b.notify) AS a
          ORDER BY b.i",
    )
    .bind(column(calls, |c| c.tenant))
    .bind(column(calls, |c| c.stream_type))
    .bind(column(calls, |c| c.stream))
    .bind(column(calls, |c| c.expected))
    .bind(&firsts)
    .bind(&counts)
    .bind(column(calls, |c| c.occurred_at))
    .bind(column(calls, |c| c.case_number))
    .bind(column(calls, |c| c.key_tenant))
    .bind(column(calls, |c| c.principal.as_str()))
    .bind(column(calls, |c| c.key.as_deref()))
    .bind(column(calls, |c| c.request_hash.as_str()))
    .bind(column(calls, |c| &c.answer))
    .bind(column(calls, |c| c.notify))
    .bind(&ids)
    .bind(&types)
    .bind(&versions)
    .bind(&envelopes)
    .bind(calls.first().map_or(0.0, |c| c.ttl_secs))
    .fetch_all(conn)
    .await
}
