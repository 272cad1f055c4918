//! Request budgets (seed §2.3.2 `rate_limit` keys), shared by every instance through
//! Redis: one atomic script per request checks the caller's IP, tenant and user budgets
//! for its class (commands or reads, separate budgets) with GCRA, and takes from all of
//! them only when none is exhausted. A platform operator may override a tenant's budgets
//! in its settings (`{"rate_limits": {"reads_per_minute": N, "commands_per_minute": N}}`).
//!
//! Answers carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (the
//! binding budget); a refusal is a 429 problem with `Retry-After`. When Redis cannot be
//! reached the limiter lets requests through (availability over strictness), logs a
//! warning and counts `rate_limiter_unavailable_total`.

use crate::config::parse;

/// One budget: a minute's worth of requests, of which a sixth may come at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub per_minute: u32,
}

impl Budget {
    pub fn burst(self) -> u32 {
        (self.per_minute / 6).max(1)
    }
}

/// Budgets per class and scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub reads_per_ip: Budget,
    pub reads_per_tenant: Budget,
    pub reads_per_user: Budget,
    pub commands_per_ip: Budget,
    pub commands_per_tenant: Budget,
    pub commands_per_user: Budget,
    /// Failed logins from one address before it is locked out (`command-api`).
    pub failed_logins_per_ip: u32,
}

/// The largest per-minute budget a setting or a tenant override may name.
pub const MAX_PER_MINUTE: u32 = 1_000_000;

impl Limits {
    /// `MURIMA_RATE_LIMITS=off` disables them; `MURIMA_RATE_LIMIT_<CLASS>_PER_<SCOPE>`
    /// (requests per minute) sets one, e.g. `MURIMA_RATE_LIMIT_READS_PER_USER=1200`.
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        if std::env::var("MURIMA_RATE_LIMITS").is_ok_and(|v| v == "off") {
            return Ok(None);
        }
        let budget = |name: &str, default: &str| -> anyhow::Result<Budget> {
            let var = format!("MURIMA_RATE_LIMIT_{name}");
            let per_minute: u32 = parse(&var, default)?;
            anyhow::ensure!(
                (1..=MAX_PER_MINUTE).contains(&per_minute),
                "{var}={per_minute} is not valid: 1 to {MAX_PER_MINUTE} requests per minute"
            );
            Ok(Budget { per_minute })
        };
        Ok(Some(Self {
            reads_per_ip: budget("READS_PER_IP", "3000")?,
            reads_per_tenant: budget("READS_PER_TENANT", "12000")?,
            reads_per_user: budget("READS_PER_USER", "1200")?,
            commands_per_ip: budget("COMMANDS_PER_IP", "1200")?,
            commands_per_tenant: budget("COMMANDS_PER_TENANT", "6000")?,
            commands_per_user: budget("COMMANDS_PER_USER", "600")?,
            failed_logins_per_ip: budget("FAILED_LOGINS_PER_IP", "20")?.per_minute,
        }))
    }
}

/// A tenant's overrides as its settings document holds them: `Err` says what is wrong.
pub fn overrides_of(settings: &serde_json::Map<String, serde_json::Value>) -> Result<Vec<(String, u32)>, String> {
    let Some(value) = settings.get("rate_limits") else { return Ok(Vec::new()) };
    let object = value.as_object().ok_or("rate_limits must be an object")?;
    let mut out = Vec::new();
    for (key, value) in object {
        let class = match key.as_str() {
            "reads_per_minute" => "reads",
            "commands_per_minute" => "commands",
            other => {
                return Err(format!("rate_limits.{other} is not a limit; use reads_per_minute or commands_per_minute"))
            }
        };
        let n = value
            .as_u64()
            .filter(|n| (1..=u64::from(MAX_PER_MINUTE)).contains(n))
            .ok_or_else(|| format!("rate_limits.{key} must be a whole number from 1 to {MAX_PER_MINUTE}"))?;
        out.push((class.to_owned(), n as u32));
    }
    Ok(out)
}

#[cfg(feature = "sessions")]
pub use limiter::{RateLimiter, Scope};

#[cfg(feature = "sessions")]
mod limiter {
    use std::net::IpAddr;

    use axum::extract::{Request, State};
    use axum::http::{HeaderMap, HeaderValue, Method};
    use axum::middleware::Next;
    use axum::response::{IntoResponse, Response};
    use redis::aio::ConnectionManager;
    use redis::Script;
    use uuid::Uuid;

    use super::{Budget, Limits};
    use crate::auth::JwtKeys;
    use crate::tenancy::Tenancy;
    use crate::ApiError;

    /// KEYS: the budgets' keys. ARGV[1]: the tenant's override hash ('' if none); then per
    /// key: per-minute budget, burst, override field ('' if none). GCRA: each key holds
    /// its theoretical arrival time in ms. Returns {allowed, limit, remaining, reset or
    /// retry-after in ms} of the binding budget.
    const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local overrides = ARGV[1]
local retry, limit_of, remaining_of, reset_of = 0, 0, nil, 0
local tats = {}
for i = 1, #KEYS do
  local base = 1 + (i - 1) * 3
  local limit, burst, field = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), ARGV[base + 3]
  if field ~= '' and overrides ~= '' then
    local o = tonumber(redis.call('HGET', overrides, field) or '')
    if o and o > 0 then limit = o; burst = math.max(1, math.floor(o / 6)) end
  end
  local interval = 60000 / limit
  local tau = interval * burst
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - tau
  if now < allow_at then
    if allow_at - now > retry then retry = allow_at - now; limit_of = limit end
  else
    local remaining = math.floor((tau - (new_tat - now)) / interval)
    if remaining_of == nil or remaining < remaining_of then
      remaining_of = remaining; limit_of = limit; reset_of = new_tat - now
    end
  end
  tats[i] = new_tat
end
if retry > 0 then return {0, limit_of, 0, math.ceil(retry)} end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], tats[i], 'PX', math.ceil(tats[i] - now) + 1000)
end
return {1, limit_of, remaining_of or 0, math.ceil(reset_of)}
"#;

    /// Who a request is charged to.
    #[derive(Debug, Clone, Copy)]
    pub struct Scope {
        pub ip: Option<IpAddr>,
        pub tenant: Option<Uuid>,
        pub user: Option<Uuid>,
    }

    #[derive(Clone)]
    pub struct RateLimiter {
        redis: ConnectionManager,
        script: std::sync::Arc<Script>,
        limits: Limits,
        keys: JwtKeys,
        trusted: std::sync::Arc<Vec<IpAddr>>,
    }

    impl RateLimiter {
        pub fn new(redis: ConnectionManager, limits: Limits, keys: JwtKeys, trusted: Vec<IpAddr>) -> Self {
            Self { redis, script: std::sync::Arc::new(Script::new(GCRA)), limits, keys, trusted: trusted.into() }
        }

        /// Takes one request of `class` from every budget of `scope`; the verdict.
        pub async fn take(&self, commands: bool, scope: Scope) -> Result<Verdict, redis::RedisError> {
            let (class, per_ip, per_tenant, per_user) = if commands {
                (
                    "commands",
                    self.limits.commands_per_ip,
                    self.limits.commands_per_tenant,
                    self.limits.commands_per_user,
                )
            } else {
                ("reads", self.limits.reads_per_ip, self.limits.reads_per_tenant, self.limits.reads_per_user)
            };
            let mut budgets: Vec<(String, Budget, &str)> = Vec::new();
            if let Some(ip) = scope.ip {
                budgets.push((format!("rate_limit:{class}:ip:{ip}"), per_ip, ""));
            }
            let mut overrides = String::new();
            if let Some(tenant) = scope.tenant {
                let t = Tenancy(tenant);
                overrides = t.redis_key("rate_limit:overrides");
                budgets.push((t.redis_key(&format!("rate_limit:{class}")), per_tenant, class));
                if let Some(user) = scope.user {
                    budgets.push((t.redis_key(&format!("rate_limit:{class}:user:{user}")), per_user, ""));
                }
            }
            if budgets.is_empty() {
                return Ok(Verdict::Unlimited);
            }
            let mut invocation = self.script.prepare_invoke();
            invocation.arg(&overrides);
            for (key, budget, field) in &budgets {
                invocation.key(key).arg(budget.per_minute).arg(budget.burst()).arg(*field);
            }
            let (allowed, limit, remaining, ms): (i64, i64, i64, i64) =
                invocation.invoke_async(&mut self.redis.clone()).await?;
            let seconds = ms.max(0).saturating_add(999) / 1000;
            Ok(if allowed == 1 {
                Verdict::Allowed { limit, remaining, reset: seconds }
            } else {
                Verdict::Refused { limit, retry_after: seconds.max(1) }
            })
        }

        /// Who the request is charged to: its client address, and the tenant and user of
        /// a valid bearer token (an invalid one is charged to the address only).
        fn scope(&self, request: &Request) -> Scope {
            let peer = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
            let ip = crate::http::client_ip(request.headers(), peer, &self.trusted);
            let claims = request
                .headers()
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .and_then(|token| self.keys.verify(token.trim()).ok());
            Scope { ip, tenant: claims.as_ref().map(|c| c.tenant_id), user: claims.map(|c| c.sub) }
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Verdict {
        Unlimited,
        Allowed { limit: i64, remaining: i64, reset: i64 },
        Refused { limit: i64, retry_after: i64 },
    }

    fn set(headers: &mut HeaderMap, name: &'static str, value: i64) {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            headers.insert(name, v);
        }
    }

    /// The middleware: `axum::middleware::from_fn_with_state(limiter, rate_limit)`.
    pub async fn rate_limit(State(limiter): State<RateLimiter>, request: Request, next: Next) -> Response {
        let commands = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        let scope = limiter.scope(&request);
        let verdict = match limiter.take(commands, scope).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "the rate limiter cannot reach Redis; letting the request through");
                metrics::counter!("rate_limiter_unavailable_total").increment(1);
                Verdict::Unlimited
            }
        };
        match verdict {
            Verdict::Unlimited => next.run(request).await,
            Verdict::Allowed { limit, remaining, reset } => {
                let mut response = next.run(request).await;
                let headers = response.headers_mut();
                set(headers, "ratelimit-limit", limit);
                set(headers, "ratelimit-remaining", remaining);
                set(headers, "ratelimit-reset", reset);
                response
            }
            Verdict::Refused { limit, retry_after } => {
                metrics::counter!("rate_limited_total", "class" => if commands { "commands" } else { "reads" })
                    .increment(1);
                let mut response = ApiError::TooManyRequests {
                    detail: format!(
                        "too many {} from this address, tenant or user (at most {limit} a minute); retry in \
                         {retry_after} s",
                        if commands { "commands" } else { "reads" }
                    ),
                    retry_after: retry_after as u64,
                }
                .into_response();
                let headers = response.headers_mut();
                set(headers, "ratelimit-limit", limit);
                set(headers, "ratelimit-remaining", 0);
                set(headers, "ratelimit-reset", retry_after);
                response
            }
        }
    }
}

#[cfg(feature = "sessions")]
pub use limiter::rate_limit;

/// A service's API routes behind the rate limiter, when limits are configured.
#[cfg(feature = "sessions")]
pub fn layered(
    routes: axum::Router,
    redis: redis::aio::ConnectionManager,
    keys: crate::auth::JwtKeys,
    settings: &crate::Settings,
) -> axum::Router {
    match settings.rate_limits {
        Some(limits) => {
            let limiter = RateLimiter::new(redis, limits, keys, settings.trusted_proxies.clone());
            routes.layer(axum::middleware::from_fn_with_state(limiter, rate_limit))
        }
        None => routes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_overrides_are_checked() {
        let settings = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(overrides_of(&settings(serde_json::json!({ "timezone": "UTC" }))), Ok(vec![]));
        assert_eq!(
            overrides_of(&settings(serde_json::json!({ "rate_limits": { "reads_per_minute": 60 } }))),
            Ok(vec![("reads".to_owned(), 60)])
        );
        for bad in [
            serde_json::json!({ "rate_limits": { "reads_per_minute": 0 } }),
            serde_json::json!({ "rate_limits": { "reads_per_minute": "many" } }),
            serde_json::json!({ "rate_limits": { "writes": 5 } }),
            serde_json::json!({ "rate_limits": 5 }),
        ] {
            assert!(overrides_of(&settings(bad)).is_err());
        }
    }
}
