//! One active worker per projection instance (consumer group) across every projector
//! process: a PostgreSQL session advisory lock held on a connection of its own.
//!
//! PostgreSQL releases the lock as soon as that connection ends, also when the process
//! holding it is killed, so a standby projector takes over within a second or two. The
//! connection is not from the pool: a pooled connection would go back to the pool, lock
//! and all, when the worker is dropped. Two workers applying the same events would still
//! be correct (every store is version-guarded); the lease only keeps them from doing the
//! work twice and from moving each other's checkpoints.
//!
//! The leases are shared out among the projector processes alive (`Share`): each process
//! holds a membership lock, so the members are counted from `pg_locks`, and takes at most
//! its fair share, `ceil(projections / members)`. A process that holds more than that
//! (because another one joined) hands leases back one at a time between batches; one
//! that holds fewer (because a member died) takes free ones. Nothing depends on the count
//! being right: a stale count only moves work later. Members are counted per projection
//! instance (group prefix and topic), so other instances on the same database do not
//! shrink this one's share, and a stopping projector leaves before it lets go of its
//! leases, so the others take them at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};
use tokio::sync::Mutex;

/// How long a check of a lease or of the membership may take: a connection that does not
/// answer in that time counts as lost (a half-open TCP connection would hang for ever).
const CHECK_DEADLINE: Duration = Duration::from_secs(5);

pub struct Lease {
    connection: PgConnection,
    share: Arc<Share>,
    projection: &'static str,
    /// Whether this lease still counts in its share (not once it is being handed back).
    counted: bool,
}

impl Lease {
    /// Takes the lease of `group` if no other worker holds it and this process is below
    /// its share. A standby keeps trying on the same connection (`connection` is kept
    /// between attempts; None: open one).
    pub async fn try_take(
        pool: &PgPool,
        group: &str,
        projection: &'static str,
        share: &Arc<Share>,
        connection: &mut Option<PgConnection>,
    ) -> sqlx::Result<Option<Lease>> {
        if !share.reserve() {
            return Ok(None);
        }
        let taken = Self::lock(pool, group, connection).await;
        match taken {
            Ok(Some(connection)) => {
                metrics::gauge!("projection_lease_held", "projection" => projection).set(1.0);
                Ok(Some(Lease { connection, share: share.clone(), projection, counted: true }))
            }
            other => {
                share.release();
                other.map(|_| None)
            }
        }
    }

    async fn lock(
        pool: &PgPool,
        group: &str,
        connection: &mut Option<PgConnection>,
    ) -> sqlx::Result<Option<PgConnection>> {
        let mut conn = match connection.take() {
            Some(conn) => conn,
            None => PgConnection::connect_with(&pool.connect_options()).await?,
        };
        let key = crate::control::lock_key(&format!("lease.{group}"));
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut conn).await?;
        if taken {
            return Ok(Some(conn));
        }
        *connection = Some(conn);
        Ok(None)
    }

    /// Whether the lease still holds: a session lock lasts as long as its connection.
    pub async fn holds(&mut self) -> bool {
        let check = sqlx::query("SELECT 1").execute(&mut self.connection);
        matches!(tokio::time::timeout(CHECK_DEADLINE, check).await, Ok(Ok(_)))
    }

    /// Whether this lease should go to another projector because this process holds more
    /// than its share. True for at most as many leases as the process holds too many; the
    /// caller then finishes its batch and drops the lease.
    pub fn hand_back(&mut self) -> bool {
        if self.counted && self.share.give_up_one() {
            self.counted = false;
        }
        !self.counted
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.counted {
            self.share.release();
        }
        metrics::gauge!("projection_lease_held", "projection" => self.projection).set(0.0);
    }
}

/// This process's part of the leases: how many it holds and how many projector processes
/// share them.
pub struct Share {
    pool: PgPool,
    /// The first key of this instance's membership locks (the two-key form, so `pg_locks`
    /// tells them apart from the one-key leases).
    class: i32,
    /// Set once the process stops: the membership is not renewed again.
    left: std::sync::atomic::AtomicBool,
    leases: usize,
    held: AtomicUsize,
    members: AtomicUsize,
    membership: Mutex<Option<PgConnection>>,
}

impl Share {
    /// Joins the projectors of one projection instance (`instance`: its group prefix and
    /// topic) that share `leases` leases, and counts them.
    pub async fn join(pool: PgPool, instance: &str, leases: usize) -> anyhow::Result<Arc<Share>> {
        let key = crate::control::lock_key(&format!("members.{instance}")).to_be_bytes();
        let share = Arc::new(Share {
            pool,
            class: i32::from_be_bytes([key[0], key[1], key[2], key[3]]),
            left: std::sync::atomic::AtomicBool::new(false),
            leases,
            held: AtomicUsize::new(0),
            members: AtomicUsize::new(1),
            membership: Mutex::new(None),
        });
        share.renew().await?;
        Ok(share)
    }

    /// Leaves the membership (a stopping projector, before its workers let go of their
    /// leases): the others count one member fewer and take the leases as they come free.
    pub async fn leave(&self) {
        self.left.store(true, Ordering::Release);
        if let Some(conn) = self.membership.lock().await.take() {
            let _ = tokio::time::timeout(CHECK_DEADLINE, conn.close()).await;
        }
    }

    /// Keeps the membership and the count of members current (a maintenance task).
    pub async fn keep_up(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            if self.left.load(Ordering::Acquire) {
                return;
            }
            if let Err(e) = self.renew().await {
                tracing::warn!(error = %e, "cannot count the projectors sharing the leases");
            }
        }
    }

    /// Holds the membership lock (again, if its connection was lost) and counts members,
    /// within `CHECK_DEADLINE`.
    async fn renew(&self) -> anyhow::Result<()> {
        match tokio::time::timeout(CHECK_DEADLINE, self.try_renew()).await {
            Ok(renewed) => renewed.map_err(Into::into),
            Err(_) => {
                // The connection may be wedged: the next renewal opens another.
                if let Ok(mut membership) = self.membership.try_lock() {
                    *membership = None;
                }
                anyhow::bail!("the membership check did not answer within {CHECK_DEADLINE:?}")
            }
        }
    }

    async fn try_renew(&self) -> sqlx::Result<()> {
        let mut membership = self.membership.lock().await;
        if self.left.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(conn) = membership.as_mut() {
            if sqlx::query("SELECT 1").execute(&mut *conn).await.is_err() {
                *membership = None;
            }
        }
        if membership.is_none() {
            let mut conn = PgConnection::connect_with(&self.pool.connect_options()).await?;
            loop {
                let random = *uuid::Uuid::new_v4().as_bytes();
                let member = i32::from_be_bytes([random[0], random[1], random[2], random[3]]);
                let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                    .bind(self.class)
                    .bind(member)
                    .fetch_one(&mut conn)
                    .await?;
                if taken {
                    break;
                }
            }
            *membership = Some(conn);
        }
        let conn = membership.as_mut().expect("held above");
        let members: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks
             WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = $1::oid
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .bind(self.class)
        .fetch_one(&mut *conn)
        .await?;
        let members = usize::try_from(members).unwrap_or(1).max(1);
        self.members.store(members, Ordering::Relaxed);
        metrics::gauge!("projector_members").set(members as f64);
        Ok(())
    }

    /// The most leases this process should hold.
    fn fair(&self) -> usize {
        self.leases.div_ceil(self.members.load(Ordering::Relaxed).max(1))
    }

    /// Counts one more lease if this process is below its share.
    fn reserve(&self) -> bool {
        self.step(|held, fair| if held < fair { held.checked_add(1) } else { None })
    }

    /// Counts one lease fewer if this process is above its share.
    fn give_up_one(&self) -> bool {
        self.step(|held, fair| if held > fair { held.checked_sub(1) } else { None })
    }

    /// Moves the count of held leases as `next(held, fair)` says, atomically (None: not).
    fn step(&self, next: impl Fn(usize, usize) -> Option<usize>) -> bool {
        let fair = self.fair();
        self.held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| next(held, fair)).is_ok()
    }

    fn release(&self) {
        let _ = self.held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| held.checked_sub(1));
    }
}
