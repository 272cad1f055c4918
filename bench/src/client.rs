//! The system as clients see it: tenants with an agent, a case type and a channel,
//! created through the command API, and typed calls.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::{Client, Method, StatusCode};
use runtime::auth::{JwtKeys, Role};
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Clone)]
pub struct Api {
    pub http: Client,
    pub command: String,
    pub query: String,
    pub keys: JwtKeys,
}

/// One tenant the load runs in.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: Uuid,
    pub agent: Uuid,
    pub token: String,
    pub case_type: Uuid,
    pub channel: Uuid,
}

/// A command's answer: status, latency, and (when accepted) its id, version and position.
pub struct Answer {
    pub status: Option<StatusCode>,
    pub took: Duration,
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.is_success())
    }

    pub fn outcome(&self) -> String {
        self.status.map(|s| s.as_u16().to_string()).unwrap_or_else(|| "error".into())
    }
}

impl Api {
    pub fn new(command: &str, query: &str, secret: &str, concurrency: usize) -> anyhow::Result<Self> {
        let http = Client::builder()
            .pool_max_idle_per_host(concurrency)
            .timeout(Duration::from_secs(30))
            // Below hyper's 30 s server-side idle close, so a reused connection is never
            // one the server is closing (see tests/lib.rs).
            .pool_idle_timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            command: command.trim_end_matches('/').to_owned(),
            query: query.trim_end_matches('/').to_owned(),
            keys: JwtKeys::new(secret),
        })
    }

    pub async fn call(&self, method: Method, url: String, token: &str, body: Option<Value>) -> Answer {
        let started = Instant::now();
        let mut request = self.http.request(method, url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(r) => {
                let status = r.status();
                let body = r.json::<Value>().await.unwrap_or(Value::Null);
                Answer { status: Some(status), took: started.elapsed(), body }
            }
            Err(_) => Answer { status: None, took: started.elapsed(), body: Value::Null },
        }
    }

    pub async fn command(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Answer {
        self.call(method, format!("{}{path}", self.command), token, body).await
    }

    pub async fn query(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, format!("{}{path}", self.query), token, None).await
    }

    async fn must(&self, method: Method, path: &str, token: &str, body: Value) -> anyhow::Result<Uuid> {
        let a = self.command(method, path, token, Some(body)).await;
        if !a.ok() {
            bail!("{path} answered {}: {}", a.outcome(), a.body);
        }
        a.body["id"].as_str().and_then(|s| s.parse().ok()).context("an id in the answer")
    }

    /// A new tenant with an agent user, a case type and a channel.
    pub async fn tenant(&self, run: &str, n: usize) -> anyhow::Result<Tenant> {
        let platform = self.keys.issue(Uuid::now_v7(), Uuid::nil(), Role::PlatformAdmin, chrono::Duration::hours(12));
        let slug = format!("bench-{run}-{n}");
        let id = self
            .must(Method::POST, "/v1/tenants", &platform, json!({ "name": format!("Bench {n}"), "slug": slug }))
            .await?;
        let admin = self.keys.issue(Uuid::now_v7(), id, Role::Admin, chrono::Duration::hours(12));
        let agent = self
            .must(
                Method::POST,
                "/v1/users",
                &admin,
                json!({ "username": "bench.agent", "email": "agent@bench.example", "password": "benchmark password",
                        "role": "agent" }),
            )
            .await?;
        let case_type = self
            .must(
                Method::POST,
                "/v1/case-types",
                &admin,
                json!({ "name": "Support", "form_definition": { "fields": [] } }),
            )
            .await?;
        let channel =
            self.must(Method::POST, "/v1/channels", &admin, json!({ "name": "Phone", "type": "voice" })).await?;
        let token = self.keys.issue(agent, id, Role::Agent, chrono::Duration::hours(12));
        Ok(Tenant { id, agent, token, case_type, channel })
    }

    pub async fn tenants(&self, run: &str, count: usize) -> anyhow::Result<Vec<Tenant>> {
        let mut all = Vec::with_capacity(count);
        for n in 0..count {
            all.push(self.tenant(run, n).await?);
        }
        Ok(all)
    }
}

/// A small deterministic generator (xorshift), one per worker.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
