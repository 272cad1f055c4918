//! Login protection. Failed logins are counted in Redis per (tenant slug, username,
//! client address), as identity providers do by default, and per client address; past a
//! few free failures each further one locks that key out for twice as long as the last
//! (capped), and a locked key is answered 429 with the time to wait, before any password
//! is checked. A guesser therefore locks out only their own address: the owner logging in
//! from another one is not blocked. A username attacked from many addresses is slowed
//! (each attempt waits a moment once it has many failures), never locked. A success
//! clears that address's count for the username. The current-password check of a
//! password change is counted the same way, per (user, address).
//!
//! Password hashing (Argon2, ~19 MiB and tens of milliseconds each) runs on a few
//! dedicated threads, half the cores: a flood queues for a moment and then gets 503 with
//! `Retry-After`, instead of taking every core (the other tenants' commands keep the rest)
//! and, through the allocator's per-thread arenas of a growing blocking pool, hundreds of
//! MiB that are never returned.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Failures allowed before the lock-outs start, per (username, address). Per address
/// alone it is the `failed_logins_per_ip` of the rate limits (an address may front many
/// users); with the limits off, addresses alone are not locked out.
const FREE_PER_USERNAME: i64 = 5;
/// Failures of a username (from any address) after which each of its attempts waits
/// `SLOW_DELAY` first: a spread-out attack is slowed, and the owner still gets in.
const SLOW_AFTER_PER_USERNAME: i64 = 10;
const SLOW_DELAY: Duration = Duration::from_secs(1);
/// Failures are forgotten after this long without one; no lock-out is longer.
const WINDOW_SECS: i64 = 900;
/// How long a login waits for a hashing slot before it is told to come back.
const HASHING_WAIT: Duration = Duration::from_secs(2);

/// KEYS: per scope a failure counter and a lock. ARGV: per scope its free failures (-1:
/// only counted, never locked); then the window. Counts one failure in every scope and
/// locks those past their free ones for 2^(failures - free) seconds, at most the window.
const FAIL: &str = r#"
local window = tonumber(ARGV[#ARGV])
for i = 1, #KEYS, 2 do
  local n = redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], window)
  local free = tonumber(ARGV[(i + 1) / 2])
  if free >= 0 and n > free then
    local secs = math.min(2 ^ math.min(n - free, 20), window)
    redis.call('SET', KEYS[i + 1], n, 'EX', math.floor(secs))
  end
end
return 0
"#;

#[derive(Clone)]
pub struct LoginGuard {
    redis: ConnectionManager,
    free_per_address: Option<i64>,
    fail: Arc<Script>,
    hashing: Arc<Semaphore>,
    hashers: std::sync::mpsc::SyncSender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

/// Whose password is being tried: a login's (tenant slug, username), or a user's own in
/// a password change.
pub struct Subject(String);

impl Subject {
    pub fn login(slug: &str, username: &str) -> Self {
        // Slugs and usernames are checked only after this; keep odd input out of key names.
        let clean = |s: &str| s.chars().filter(|c| c.is_ascii_graphic() && *c != ':').take(100).collect::<String>();
        Self(format!("user:{}:{}", clean(slug), clean(username)))
    }

    pub fn password_of(tenant: uuid::Uuid, user: uuid::Uuid) -> Self {
        Self(format!("password:{tenant}:{user}"))
    }
}

struct Keys {
    /// Failures of the subject from any address: only slows it down.
    user_failures: String,
    /// Failures and lock of the subject from this address.
    pair_failures: String,
    pair_lock: String,
    /// Failures and lock of the address (when address limits are on).
    ip: Option<(String, String)>,
}

fn keys(subject: &Subject, ip: Option<IpAddr>, address_limits: bool) -> Keys {
    let subject = &subject.0;
    let from = ip.map(|ip| ip.to_string()).unwrap_or_else(|| "unknown".into());
    Keys {
        user_failures: format!("login:failures:{subject}"),
        pair_failures: format!("login:failures:{subject}:ip:{from}"),
        pair_lock: format!("login:locked:{subject}:ip:{from}"),
        ip: ip
            .filter(|_| address_limits)
            .map(|ip| (format!("login:failures:ip:{ip}"), format!("login:locked:ip:{ip}"))),
    }
}

/// Why a login (or a current-password check) is not let through.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The subject is locked out from this address, or the address is, for `retry_after` s.
    #[error(
        "too many failed attempts for this user from this address, or from this address; retry in {retry_after} s"
    )]
    LockedOut { retry_after: u64 },
    /// Every hashing slot stayed taken.
    #[error("too many logins at once; retry in a second")]
    Busy,
    #[error("the login guard cannot reach Redis: {0}")]
    Unreachable(#[from] redis::RedisError),
    /// A hashing thread lost the job (it never should).
    #[error("a password hash was lost: {0}")]
    Lost(&'static str),
}

impl LoginGuard {
    pub fn new(redis: ConnectionManager, free_per_address: Option<u32>) -> Self {
        let threads = (std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) / 2).max(1);
        let (hashers, jobs) = std::sync::mpsc::sync_channel::<Job>(threads);
        let jobs = Arc::new(std::sync::Mutex::new(jobs));
        for n in 0..threads {
            let jobs = jobs.clone();
            let spawned = std::thread::Builder::new().name(format!("password-hasher-{n}")).spawn(move || loop {
                let job = match jobs.lock() {
                    Ok(receiver) => receiver.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "starting a password hashing thread failed");
            }
        }
        Self {
            redis,
            free_per_address: free_per_address.map(i64::from),
            fail: Arc::new(Script::new(FAIL)),
            hashing: Arc::new(Semaphore::new(threads)),
            hashers,
        }
    }

    /// Runs `hash` on a hashing thread once a slot is free (503 when none frees up in
    /// time); its result.
    pub async fn hash<T: Send + 'static>(&self, hash: impl FnOnce() -> T + Send + 'static) -> Result<T, GuardError> {
        let slot = self.hashing_slot().await?;
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _slot = slot;
            let _ = done.send(hash());
        });
        // At most `threads` slots exist and the channel holds that many jobs: it has room.
        self.hashers.try_send(job).map_err(|_| GuardError::Lost("no hashing thread took it"))?;
        result.await.map_err(|_| GuardError::Lost("its thread dropped it"))
    }

    /// 429 while the subject is locked out from this address, or the address is; a
    /// subject with many failures from everywhere waits a moment first.
    pub async fn check(&self, subject: &Subject, ip: Option<IpAddr>) -> Result<(), GuardError> {
        let keys = keys(subject, ip, self.free_per_address.is_some());
        // (Without address limits the pair's lock is asked twice: one answer shape.)
        let ip_lock = keys.ip.as_ref().map_or(&keys.pair_lock, |(_, lock)| lock);
        let (failures, pair_ttl, ip_ttl): (Option<i64>, i64, i64) = redis::pipe()
            .get(&keys.user_failures)
            .pttl(&keys.pair_lock)
            .pttl(ip_lock)
            .query_async(&mut self.redis.clone())
            .await?;
        let wait_ms = pair_ttl.max(ip_ttl);
        if wait_ms > 0 {
            metrics::counter!("logins_locked_out_total").increment(1);
            let retry_after = u64::try_from(wait_ms).unwrap_or(1).div_ceil(1000);
            return Err(GuardError::LockedOut { retry_after });
        }
        if failures.unwrap_or(0) > SLOW_AFTER_PER_USERNAME {
            metrics::counter!("logins_slowed_total").increment(1);
            tokio::time::sleep(SLOW_DELAY).await;
        }
        Ok(())
    }

    pub async fn failed(&self, subject: &Subject, ip: Option<IpAddr>) -> Result<(), GuardError> {
        let keys = keys(subject, ip, self.free_per_address.is_some());
        let mut invocation = self.fail.prepare_invoke();
        invocation.key(&keys.pair_failures).key(&keys.pair_lock).arg(FREE_PER_USERNAME);
        // The username's own count is never locked on (its lock key is never read).
        invocation.key(&keys.user_failures).key(format!("{}:unused", keys.user_failures)).arg(-1);
        if let (Some((failures, lock)), Some(free)) = (&keys.ip, self.free_per_address) {
            invocation.key(failures).key(lock).arg(free);
        }
        invocation.arg(WINDOW_SECS);
        Ok(invocation.invoke_async::<i64>(&mut self.redis.clone()).await.map(drop)?)
    }

    /// Clears this address's count for the subject (not other addresses', nor the
    /// address's own).
    pub async fn succeeded(&self, subject: &Subject, ip: Option<IpAddr>) -> Result<(), GuardError> {
        let keys = keys(subject, ip, false);
        redis::pipe().del(&keys.pair_failures).del(&keys.pair_lock).query_async::<()>(&mut self.redis.clone()).await?;
        Ok(())
    }

    /// A slot to hash a password in; 503 when none frees up in time.
    async fn hashing_slot(&self) -> Result<OwnedSemaphorePermit, GuardError> {
        match tokio::time::timeout(HASHING_WAIT, self.hashing.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                metrics::counter!("password_hashing_busy_total").increment(1);
                Err(GuardError::Busy)
            }
        }
    }
}
