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

/// One tenant the load runs in. Its tokens come from real logins, as clients' do: a
/// command with one pays the session check and the read of the caller's live rights,
/// which an operator's token (`"op": true`) skips.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: Uuid,
    /// The first agent (`bench.agent`) and its login token.
    pub agent: Uuid,
    pub token: String,
    /// Every agent, each worker its own (so per-user budgets are not what is measured).
    pub agents: Vec<Agent>,
    /// A supervisor's login token: audit trails need `audit:read`.
    pub supervisor: String,
    pub case_type: Uuid,
    pub channel: Uuid,
}

#[derive(Clone, Debug)]
pub struct Agent {
    pub id: Uuid,
    pub token: String,
}

impl Tenant {
    /// The agent a worker acts as (workers share agents only past `agents.len()`).
    pub fn agent_for(&self, worker: usize) -> &Agent {
        &self.agents[worker % self.agents.len()]
    }

    /// A tenant found in an earlier run's journal, read with operator tokens.
    pub fn of_earlier_run(keys: &JwtKeys, id: Uuid, agent: Uuid) -> Self {
        let token = keys.issue(agent, id, Role::Agent, chrono::Duration::hours(12));
        let supervisor = keys.issue(Uuid::now_v7(), id, Role::Supervisor, chrono::Duration::hours(12));
        Self {
            id,
            agent,
            agents: vec![Agent { id: agent, token: token.clone() }],
            token,
            supervisor,
            case_type: Uuid::nil(),
            channel: Uuid::nil(),
        }
    }
}

const PASSWORD: &str = "benchmark password";

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
        let mut request = self.http.request(method, url);
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
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

    /// A new tenant with `agents` agent users (at least one) and a supervisor, all logged
    /// in, a case type and a channel.
    pub async fn tenant(&self, run: &str, n: usize, agents: usize) -> anyhow::Result<Tenant> {
        let platform = self.keys.issue(Uuid::now_v7(), Uuid::nil(), Role::PlatformAdmin, chrono::Duration::hours(12));
        let slug = format!("bench-{run}-{n}");
        let id = self
            .must(Method::POST, "/v1/tenants", &platform, json!({ "name": format!("Bench {n}"), "slug": slug }))
            .await?;
        let admin = self.keys.issue(Uuid::now_v7(), id, Role::Admin, chrono::Duration::hours(12));
        let mut users = Vec::with_capacity(agents.max(1));
        for k in 0..agents.max(1) {
            // The first keeps the name earlier runs are found by (`earlier_seed`).
            let username = if k == 0 { "bench.agent".to_owned() } else { format!("bench.agent.{k}") };
            let agent = self.user(&admin, &username, "agent").await?;
            users.push(Agent { id: agent, token: self.login(&slug, &username).await? });
        }
        self.user(&admin, "bench.supervisor", "supervisor").await?;
        let supervisor = self.login(&slug, "bench.supervisor").await?;
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
        let (agent, token) = (users[0].id, users[0].token.clone());
        Ok(Tenant { id, agent, token, agents: users, supervisor, case_type, channel })
    }

    async fn user(&self, admin: &str, username: &str, role: &str) -> anyhow::Result<Uuid> {
        let body = json!({ "username": username, "email": format!("{username}@bench.example"), "password": PASSWORD,
                           "role": role });
        self.must(Method::POST, "/v1/users", admin, body).await
    }

    /// A login token, as a client gets one.
    async fn login(&self, slug: &str, username: &str) -> anyhow::Result<String> {
        let body = json!({ "tenant": slug, "username": username, "password": PASSWORD });
        let a = self.call(Method::POST, format!("{}/v1/auth/login", self.command), "", Some(body)).await;
        if !a.ok() {
            bail!("logging in as {username} of {slug} answered {}: {}", a.outcome(), a.body);
        }
        a.body["token"].as_str().map(str::to_owned).context("a token in the login answer")
    }

    pub async fn tenants(&self, run: &str, count: usize, agents: usize) -> anyhow::Result<Vec<Tenant>> {
        let mut all = Vec::with_capacity(count);
        for n in 0..count {
            all.push(self.tenant(run, n, agents).await?);
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
