//! Typed configuration from `MURIMA_*` environment variables, with local-stack defaults.
//! compose.yaml and scripts/run.sh set the same variables.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub command_port: u16,
    pub query_port: u16,
    pub projector_port: u16,
    /// The service's own connection (its login role, `migrations/*service_roles.sql`).
    pub database_url: String,
    /// Who applies the migrations: an owner's URL (then the service connects with
    /// `database_url` afterwards), `Skip` (a separate job ran them), or the service's own
    /// connection (`SameAsService`, a single-role development set-up).
    pub migrations: Migrations,
    pub kafka_brokers: String,
    pub kafka_topic: String,
    pub kafka_partitions: i32,
    pub kafka_group_prefix: String,
    /// How long a projector's Fetch may wait at the broker for data. Kafka answers as soon
    /// as data arrives, so its default (500 ms) costs nothing there; tansu answers only when
    /// the wait runs out, so locally this bounds the projection lag of a quiet system.
    pub kafka_fetch_wait: Duration,
    pub mongo_url: String,
    pub mongo_database: String,
    pub elastic_url: String,
    pub redis_url: String,
    pub jwt_secret: String,
    /// Longest a read with a position token waits for its projection.
    pub read_wait: Duration,
    /// Longest one call to a store may take (`MURIMA_STORE_DEADLINE_MS`, 5 s): a read of
    /// the APIs answers 503 with `Retry-After` once `request_deadline` passes.
    pub store_deadline: Duration,
    /// Longest one attempt of a projection at a batch (`MURIMA_APPLY_DEADLINE_MS`, 20 s):
    /// past it the store counts as unavailable, and the worker lets go and retries.
    pub apply_deadline: Duration,
    /// Largest request body either API accepts.
    pub max_body_bytes: usize,
    /// How often the relay checks that the broker still holds what it published.
    pub relay_audit_interval: Duration,
    /// How often the projector refreshes each tenant's case_statistics view.
    pub statistics_refresh: Duration,
    /// Proxies whose `X-Forwarded-For` is believed (nobody else's is).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Request budgets (`runtime::limits`); None: no limits (tests and benchmarks).
    pub rate_limits: Option<crate::limits::Limits>,
    /// How long the command API keeps an Idempotency-Key's answer (`MURIMA_IDEMPOTENCY_HOURS`,
    /// 48 by default); older records answer nobody and are purged.
    pub idempotency_ttl: Duration,
    /// How long a case viewer stays listed after their last read or heartbeat
    /// (`MURIMA_VIEWER_WINDOW_SECS`, 60 by default).
    pub viewer_window: Duration,
    /// How often the leading SLA scheduler looks for due warnings and breaches
    /// (`MURIMA_SLA_TICK_MS`, 1000 by default): how late one may be recorded.
    pub sla_tick: Duration,
    /// Webhook deliveries (`crate::webhook`): whether URLs may point at private, loopback
    /// or other internal addresses (`MURIMA_WEBHOOK_ALLOW_PRIVATE`, off by default), how
    /// many attempts a delivery gets before it is dead-lettered
    /// (`MURIMA_WEBHOOK_MAX_ATTEMPTS`, 8) and the wait before the second attempt, doubled
    /// for each one after (`MURIMA_WEBHOOK_BACKOFF_MS`, 1000).
    pub webhooks: crate::webhook::Policy,
    /// Where the retention job writes a tenant's expired months before it removes them
    /// (`MURIMA_ARCHIVE_DIR`): compressed JSON Lines and a manifest per tenant
    /// (`projector::retention`). Unset, nothing is archived and so nothing removed.
    pub archive_dir: Option<std::path::PathBuf>,
    /// `MURIMA_SUBJECT_KEK`: the key-encryption key (32 bytes, base64) that wraps every
    /// data subject's key in `eventstore.subject_keys` (`subject_keys::use_kek`). Unset,
    /// the keys are kept as they are (a warning at start-up).
    pub subject_kek: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migrations {
    SameAsService,
    With(String),
    Skip,
}

/// HS256 needs a secret at least as long as its hash (32 bytes) to be worth its name.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

impl Settings {
    /// Longest a request to either API takes: a read may wait `read_wait` for its write,
    /// then needs its stores; past this it is answered 503 with `Retry-After`.
    pub fn request_deadline(&self) -> Duration {
        self.read_wait.saturating_add(self.store_deadline)
    }
}

impl Settings {
    /// A service's settings: the token secret is required (the services sign or check
    /// bearer tokens with it).
    pub fn from_env() -> anyhow::Result<Self> {
        Self::load(jwt_secret()?)
    }

    /// An operator tool's settings (`murima-admin`, the benchmark's store access): they
    /// serve no HTTP and check no token, so MURIMA_JWT_SECRET may be absent. The secret is
    /// then random and known to nobody, so nothing could ever verify against it.
    pub fn for_operator() -> anyhow::Result<Self> {
        let secret = match std::env::var("MURIMA_JWT_SECRET") {
            Ok(_) => jwt_secret()?,
            Err(_) => format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()),
        };
        Self::load(secret)
    }

    fn load(jwt_secret: String) -> anyhow::Result<Self> {
        Ok(Self {
            host: var("MURIMA_HOST", "127.0.0.1"),
            command_port: parse("MURIMA_COMMAND_PORT", "8080")?,
            query_port: parse("MURIMA_QUERY_PORT", "8081")?,
            projector_port: parse("MURIMA_PROJECTOR_PORT", "8082")?,
            database_url: var("MURIMA_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/murima"),
            migrations: match std::env::var("MURIMA_MIGRATION_DATABASE_URL").ok().filter(|v| !v.is_empty()) {
                None => Migrations::SameAsService,
                Some(v) if v == "none" => Migrations::Skip,
                Some(url) => Migrations::With(url),
            },
            kafka_brokers: var("MURIMA_KAFKA_BROKERS", "127.0.0.1:9092"),
            kafka_topic: var("MURIMA_KAFKA_TOPIC", "murima.events"),
            kafka_partitions: parse("MURIMA_KAFKA_PARTITIONS", "3")?,
            kafka_group_prefix: var("MURIMA_KAFKA_GROUP_PREFIX", "murima"),
            kafka_fetch_wait: Duration::from_millis(fetch_wait_ms()?),
            mongo_url: var("MURIMA_MONGO_URL", "mongodb://127.0.0.1:27017"),
            mongo_database: var("MURIMA_MONGO_DATABASE", "murima"),
            elastic_url: var("MURIMA_ELASTIC_URL", "http://127.0.0.1:9200"),
            redis_url: var("MURIMA_REDIS_URL", "redis://127.0.0.1:6379"),
            jwt_secret,
            read_wait: Duration::from_millis(parse("MURIMA_READ_WAIT_MS", "5000")?),
            store_deadline: Duration::from_millis(parse("MURIMA_STORE_DEADLINE_MS", "5000")?),
            apply_deadline: Duration::from_millis(parse("MURIMA_APPLY_DEADLINE_MS", "20000")?),
            max_body_bytes: parse("MURIMA_MAX_BODY_BYTES", "65536")?,
            relay_audit_interval: Duration::from_millis(parse("MURIMA_RELAY_AUDIT_MS", "2000")?),
            statistics_refresh: Duration::from_secs(parse("MURIMA_STATISTICS_REFRESH_SECS", "60")?),
            trusted_proxies: trusted_proxies()?,
            rate_limits: crate::limits::Limits::from_env()?,
            idempotency_ttl: idempotency_ttl()?,
            viewer_window: viewer_window()?,
            sla_tick: sla_tick()?,
            webhooks: crate::webhook::Policy::from_env()?,
            archive_dir: std::env::var("MURIMA_ARCHIVE_DIR").ok().filter(|d| !d.is_empty()).map(Into::into),
            subject_kek: std::env::var("MURIMA_SUBJECT_KEK").ok().filter(|k| !k.is_empty()),
        })
    }
}

/// `MURIMA_IDEMPOTENCY_HOURS`: 1 to 8760 hours (a year), 48 by default.
fn idempotency_ttl() -> anyhow::Result<Duration> {
    let hours: u64 = parse("MURIMA_IDEMPOTENCY_HOURS", "48")?;
    if !(1..=8760).contains(&hours) {
        anyhow::bail!("MURIMA_IDEMPOTENCY_HOURS must be 1 to 8760 hours, not {hours}");
    }
    Ok(Duration::from_secs(hours.saturating_mul(3600)))
}

/// `MURIMA_VIEWER_WINDOW_SECS`: 1 to 3600 seconds, 60 by default.
fn viewer_window() -> anyhow::Result<Duration> {
    let secs: u64 = parse("MURIMA_VIEWER_WINDOW_SECS", "60")?;
    if !(1..=3600).contains(&secs) {
        anyhow::bail!("MURIMA_VIEWER_WINDOW_SECS must be 1 to 3600 seconds, not {secs}");
    }
    Ok(Duration::from_secs(secs))
}

/// `MURIMA_SLA_TICK_MS`: 50 ms to 1 minute, 1000 by default.
fn sla_tick() -> anyhow::Result<Duration> {
    let ms: u64 = parse("MURIMA_SLA_TICK_MS", "1000")?;
    if !(50..=60_000).contains(&ms) {
        anyhow::bail!("MURIMA_SLA_TICK_MS must be 50 to 60000 milliseconds, not {ms}");
    }
    Ok(Duration::from_millis(ms))
}

fn jwt_secret() -> anyhow::Result<String> {
    let secret = std::env::var("MURIMA_JWT_SECRET").map_err(|_| {
        anyhow::anyhow!(
            "MURIMA_JWT_SECRET is not set: set it to at least {MIN_JWT_SECRET_BYTES} random bytes, the HS256 \
             secret for bearer tokens (e.g. `export MURIMA_JWT_SECRET=$(head -c 32 /dev/urandom | base64)`; \
             scripts/run.sh keeps the local stack's in .murima/jwt-secret)"
        )
    })?;
    anyhow::ensure!(
        secret.len() >= MIN_JWT_SECRET_BYTES,
        "MURIMA_JWT_SECRET is {} bytes; it must be at least {MIN_JWT_SECRET_BYTES} random bytes \
         (e.g. `head -c 32 /dev/urandom | base64`)",
        secret.len()
    );
    Ok(secret)
}

/// `MURIMA_TRUSTED_PROXIES`: comma-separated IP addresses (default: none).
fn trusted_proxies() -> anyhow::Result<Vec<std::net::IpAddr>> {
    var("MURIMA_TRUSTED_PROXIES", "")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().map_err(|e| anyhow::anyhow!("MURIMA_TRUSTED_PROXIES: {p:?} is not an IP address: {e}")))
        .collect()
}

/// librdkafka refuses a Fetch wait above 300,000 ms; say so at start-up, not when the
/// projector's consumers are made.
fn fetch_wait_ms() -> anyhow::Result<u64> {
    let ms: u64 = parse("MURIMA_KAFKA_FETCH_WAIT_MS", "500")?;
    anyhow::ensure!(ms <= 300_000, "MURIMA_KAFKA_FETCH_WAIT_MS={ms} is not valid: at most 300000 (5 minutes)");
    Ok(ms)
}

pub(crate) fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub(crate) fn parse<T: std::str::FromStr>(name: &str, default: &str) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    let raw = var(name, default);
    raw.parse().map_err(|e| anyhow::anyhow!("{name}={raw:?} is not valid: {e}"))
}

/// How a binary ends on an error before or while serving: one line on stderr naming the
/// cause chain, and exit status 1. A missing or invalid setting is not a bug, so no
/// backtrace, whatever RUST_BACKTRACE says (anyhow's `Debug`, which `main` returning
/// `Result` prints, adds one).
pub fn exit_on_error<T>(program: &str, result: anyhow::Result<T>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => {
            eprintln!("{program}: {error:#}");
            std::process::exit(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_needs_no_token_secret_and_gets_one_nobody_knows() {
        // The test environment has no MURIMA_JWT_SECRET unless a developer exported one.
        if std::env::var("MURIMA_JWT_SECRET").is_ok() {
            return;
        }
        let Err(error) = Settings::from_env() else { panic!("a service started without a token secret") };
        let message = error.to_string();
        assert!(message.starts_with("MURIMA_JWT_SECRET is not set: set it to"), "{message}");
        let (a, b) = (Settings::for_operator(), Settings::for_operator());
        let (Ok(a), Ok(b)) = (a, b) else { panic!("an operator's settings need no secret") };
        assert!(a.jwt_secret.len() >= MIN_JWT_SECRET_BYTES);
        assert_ne!(a.jwt_secret, b.jwt_secret);
    }
}
