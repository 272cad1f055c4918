//! Test harness: `TestApp::spawn()` starts the three services in-process against the
//! real servers of the local stack, with names no other test uses (its own database,
//! topic, consumer groups, Mongo database and tenant), and gives typed helpers.

use std::future::Future;
use std::time::Duration;

use reqwest::{Client, Method, Response, StatusCode};
use runtime::auth::{JwtKeys, Role};
use runtime::{Migrations, Settings};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use uuid::Uuid;

pub const SECRET: &str = "integration-test-secret-of-at-least-32-bytes";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Settings for one test: local-stack servers, private names, ports chosen by the OS.
pub fn test_settings() -> Settings {
    let id = Uuid::now_v7().simple().to_string();
    let pg = env_or("MURIMA_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432");
    Settings {
        host: "127.0.0.1".into(),
        command_port: 0,
        query_port: 0,
        projector_port: 0,
        database_url: format!("{pg}/murima_test_{id}"),
        // The test's owner applies the migrations; each service then logs in as its own
        // role (`service_settings`).
        migrations: Migrations::With(format!("{pg}/murima_test_{id}")),
        kafka_brokers: env_or("MURIMA_KAFKA_BROKERS", "127.0.0.1:9092"),
        kafka_topic: format!("murima.test.{id}"),
        kafka_partitions: 3,
        kafka_group_prefix: format!("murima.test.{id}"),
        kafka_fetch_wait: Duration::from_millis(25),
        mongo_url: env_or("MURIMA_MONGO_URL", "mongodb://127.0.0.1:27017"),
        mongo_database: format!("murima_test_{id}"),
        elastic_url: env_or("MURIMA_ELASTIC_URL", "http://127.0.0.1:9200"),
        redis_url: env_or("MURIMA_REDIS_URL", "redis://127.0.0.1:6379"),
        jwt_secret: SECRET.into(),
        read_wait: Duration::from_secs(15),
        max_body_bytes: 16 * 1024,
        relay_audit_interval: Duration::from_millis(500),
        statistics_refresh: Duration::from_secs(2),
        trusted_proxies: Vec::new(),
        // Tests send requests as fast as they can from one address; `abuse` sets limits.
        rate_limits: None,
    }
}

pub struct TestApp {
    pub settings: Settings,
    pub command_url: String,
    pub query_url: String,
    pub http: Client,
    pub keys: JwtKeys,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    /// An agent token of this test's tenant.
    pub token: String,
    /// An active case type of the tenant with an empty form.
    pub case_type_id: Uuid,
    pub pool: sqlx::PgPool,
    /// The projector's health, metrics and admin endpoints (changes when it restarts).
    pub projector_url: String,
    projector: Option<JoinHandle<()>>,
    services: Vec<JoinHandle<()>>,
    /// In process mode (`spawn_processes`), the command API and the projector run as
    /// child processes of the real binaries, so a test can SIGKILL them.
    processes: bool,
    projector_process: Option<ServiceProcess>,
    command_process: Option<ServiceProcess>,
}

/// A service binary (`target/debug/<name>`) run as a child process with a test's
/// settings; SIGKILLed when dropped. Its log goes to `$TMPDIR/murima-tests/`.
pub struct ServiceProcess {
    child: tokio::process::Child,
    pub url: String,
}

/// The MURIMA_* environment that makes a service binary use `settings`.
/// The settings a service runs with: its own login role (`migrations/*service_roles.sql`).
pub fn service_settings(settings: &Settings, service: &str) -> Settings {
    let role = match service {
        "command-api" => "murima_command",
        "projector" => "murima_projector",
        _ => "murima_query",
    };
    let mut own = settings.clone();
    own.database_url = runtime::db::as_role(&settings.database_url, role);
    own
}

pub fn settings_env(settings: &Settings) -> Vec<(&'static str, String)> {
    let migrations = match &settings.migrations {
        Migrations::With(url) => url.clone(),
        Migrations::Skip => "none".into(),
        Migrations::SameAsService => String::new(),
    };
    vec![
        ("MURIMA_HOST", settings.host.clone()),
        ("MURIMA_DATABASE_URL", settings.database_url.clone()),
        ("MURIMA_MIGRATION_DATABASE_URL", migrations),
        ("MURIMA_KAFKA_BROKERS", settings.kafka_brokers.clone()),
        ("MURIMA_KAFKA_TOPIC", settings.kafka_topic.clone()),
        ("MURIMA_KAFKA_PARTITIONS", settings.kafka_partitions.to_string()),
        ("MURIMA_KAFKA_GROUP_PREFIX", settings.kafka_group_prefix.clone()),
        ("MURIMA_KAFKA_FETCH_WAIT_MS", settings.kafka_fetch_wait.as_millis().to_string()),
        ("MURIMA_MONGO_URL", settings.mongo_url.clone()),
        ("MURIMA_MONGO_DATABASE", settings.mongo_database.clone()),
        ("MURIMA_ELASTIC_URL", settings.elastic_url.clone()),
        ("MURIMA_REDIS_URL", settings.redis_url.clone()),
        ("MURIMA_JWT_SECRET", settings.jwt_secret.clone()),
        ("MURIMA_READ_WAIT_MS", settings.read_wait.as_millis().to_string()),
        ("MURIMA_MAX_BODY_BYTES", settings.max_body_bytes.to_string()),
        ("MURIMA_RELAY_AUDIT_MS", settings.relay_audit_interval.as_millis().to_string()),
        ("MURIMA_STATISTICS_REFRESH_SECS", settings.statistics_refresh.as_secs().to_string()),
        ("MURIMA_RATE_LIMITS", if settings.rate_limits.is_some() { "on" } else { "off" }.to_owned()),
    ]
}

/// A workspace binary in the target directory the tests were built into.
pub fn binary(name: &str) -> std::path::PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug").join(name);
    assert!(path.exists(), "{} is missing: build the binaries first (scripts/test.sh does)", path.display());
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("address").port()
}

impl ServiceProcess {
    /// Starts `bin` (`command-api` or `projector`) and waits for its `/healthz`.
    pub async fn start(bin: &str, settings: &Settings) -> ServiceProcess {
        Self::start_on(bin, settings, free_port()).await
    }

    /// Like `start`, on a given port (a restarted service keeps its address).
    pub async fn start_on(bin: &str, settings: &Settings, port: u16) -> ServiceProcess {
        let path = binary(bin);
        let port_var = if bin == "projector" { "MURIMA_PROJECTOR_PORT" } else { "MURIMA_COMMAND_PORT" };
        let logs = std::env::temp_dir().join("murima-tests");
        std::fs::create_dir_all(&logs).expect("log directory");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join(format!("{}-{bin}.log", settings.kafka_topic)))
            .expect("log file");
        let child = tokio::process::Command::new(path)
            .envs(settings_env(&service_settings(settings, bin)))
            .env(port_var, port.to_string())
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start a service binary");
        let url = format!("http://127.0.0.1:{port}");
        let http = Client::new();
        eventually(&format!("{bin} to answer /healthz"), || async {
            http.get(format!("{url}/healthz")).send().await.ok().filter(|r| r.status().is_success()).map(|_| ())
        })
        .await;
        ServiceProcess { child, url }
    }

    /// SIGKILL: the process ends wherever it is, without a chance to clean up.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill a service process");
    }
}

/// A tansu broker of the test's own, so a test can kill and restart it.
pub struct PrivateBroker {
    pub port: u16,
    child: tokio::process::Child,
}

impl PrivateBroker {
    pub async fn start(port: Option<u16>) -> PrivateBroker {
        let port = port.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("address").port()
        });
        let home = std::env::var("HOME").unwrap_or_default();
        let cache = env_or("MURIMA_CACHE", &format!("{home}/.cache/murima"));
        let bin = env_or("MURIMA_TANSU_BIN", &format!("{cache}/tansu-0.6.0/bin/tansu"));
        let url = format!("tcp://127.0.0.1:{port}");
        let child = tokio::process::Command::new(bin)
            .args([
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tansu starts (scripts/stack.sh install builds it)");
        eventually("the private broker to listen", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
        })
        .await;
        PrivateBroker { port, child }
    }

    /// Kills the broker outright: its in-memory log, topics and group offsets are gone.
    pub async fn kill(mut self) -> u16 {
        self.child.kill().await.expect("kill tansu");
        self.port
    }
}

impl TestApp {
    /// Starts the services and provisions a fresh tenant.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(test_settings()).await
    }

    /// Like `spawn`, against a broker on another address (e.g. a `PrivateBroker`).
    pub async fn spawn_with(settings: Settings) -> TestApp {
        Self::spawn_inner(settings, false).await
    }

    /// Like `spawn`, with the command API and the projector as child processes of the real
    /// binaries (the query API stays in-process), so a test can SIGKILL and restart them.
    pub async fn spawn_processes() -> TestApp {
        Self::spawn_inner(test_settings(), true).await
    }

    async fn spawn_inner(settings: Settings, processes: bool) -> TestApp {
        runtime::telemetry::init_with_default("tests", "warn");
        let mut services = Vec::new();
        let mut command_process = None;
        let command_url = if processes {
            let process = ServiceProcess::start("command-api", &settings).await;
            let url = process.url.clone();
            command_process = Some(process);
            url
        } else {
            let command = command_api::Application::build(&service_settings(&settings, "command-api"))
                .await
                .expect("command API starts");
            let url = format!("http://127.0.0.1:{}", command.port());
            services.push(tokio::spawn(async move { command.run_until_stopped().await.expect("command API runs") }));
            url
        };
        let query =
            query_api::Application::build(&service_settings(&settings, "query-api")).await.expect("query API starts");
        let query_url = format!("http://127.0.0.1:{}", query.port());
        services.push(tokio::spawn(async move { query.run_until_stopped().await.expect("query API runs") }));
        let pool = sqlx::PgPool::connect(&settings.database_url).await.expect("test database");
        let keys = JwtKeys::new(SECRET);
        let mut app = TestApp {
            command_url,
            query_url,
            http: Client::builder()
                .user_agent("murima-tests")
                .timeout(Duration::from_secs(20))
                // hyper's server closes a keep-alive connection idle for 30 s (its header
                // read timeout); a client that reuses one just then gets IncompleteMessage
                // (it failed a property test once). Idle connections go well before that.
                .pool_idle_timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            keys,
            tenant_id: Uuid::nil(),
            user_id: Uuid::now_v7(),
            token: String::new(),
            case_type_id: Uuid::nil(),
            pool,
            projector_url: String::new(),
            projector: None,
            services,
            processes,
            projector_process: None,
            command_process,
            settings,
        };
        app.start_projector().await;
        // The test's agent is a real user of the tenant, so it can act and be assigned work.
        let (tenant_id, agent, _) = app.provision_tenant_with_agent().await;
        app.tenant_id = tenant_id;
        app.user_id = agent;
        app.token = app.token_for(tenant_id, Role::Agent);
        app.case_type_id = app.create_case_type(tenant_id, "General enquiry", json!({ "fields": [] })).await;
        app
    }

    pub async fn start_projector(&mut self) {
        if self.processes {
            let process = ServiceProcess::start("projector", &self.settings).await;
            self.projector_url = process.url.clone();
            self.projector_process = Some(process);
            return;
        }
        let projector = projector::Application::build(&service_settings(&self.settings, "projector"))
            .await
            .expect("projector starts");
        self.projector_url = format!("http://127.0.0.1:{}", projector.port());
        self.projector =
            Some(tokio::spawn(async move { projector.run_until_stopped().await.expect("projector runs") }));
    }

    /// Kills the projector mid-flight: every task it runs is dropped wherever it is.
    pub async fn kill_projector(&mut self) {
        if let Some(process) = self.projector_process.take() {
            process.kill().await;
        }
        if let Some(handle) = self.projector.take() {
            handle.abort();
            let _ = handle.await;
        }
    }

    /// The test tenant's slug (what a login names).
    pub async fn tenant_slug(&self) -> String {
        sqlx::query_scalar("SELECT slug FROM eventstore.tenant_slugs WHERE tenant_id = $1")
            .bind(self.tenant_id)
            .fetch_one(&self.pool)
            .await
            .expect("the tenant's slug")
    }

    /// Logs a user of the test tenant in (created by `create_user`); its login token.
    pub async fn login_token(&self, username: &str) -> String {
        let body = json!({ "tenant": self.tenant_slug().await, "username": username,
                           "password": "integration test password" });
        let answer: Value = self
            .http
            .post(format!("{}/v1/auth/login", self.command_url))
            .json(&body)
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("login answer");
        answer["token"].as_str().expect("a token").to_owned()
    }

    /// A request to the projector's operator endpoints, as a platform administrator.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut request =
            self.http.request(method, format!("{}{path}", self.projector_url)).bearer_auth(self.platform_token());
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("the projector answers")
    }

    /// Runs `murima-admin` with this test's settings; its exit status and standard output.
    pub async fn admin_cli(&self, args: &[&str]) -> (bool, String) {
        let output = tokio::process::Command::new(binary("murima-admin"))
            .args(args)
            .envs(settings_env(&self.settings))
            .env("RUST_LOG", "warn")
            .output()
            .await
            .expect("run murima-admin");
        if !output.status.success() {
            eprintln!("murima-admin {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// In process mode: SIGKILLs the command API (its relay with it).
    pub async fn kill_command_api(&mut self) {
        if let Some(process) = self.command_process.take() {
            process.kill().await;
        }
    }

    /// In process mode: starts the command API again, on the port it had.
    pub async fn start_command_api(&mut self) {
        let port = self.command_url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("command API port");
        self.command_process = Some(ServiceProcess::start_on("command-api", &self.settings, port).await);
    }

    pub fn platform_token(&self) -> String {
        self.keys.issue(Uuid::now_v7(), Uuid::nil(), Role::PlatformAdmin, chrono::Duration::hours(1))
    }

    pub fn token_for(&self, tenant: Uuid, role: Role) -> String {
        self.keys.issue(self.user_id, tenant, role, chrono::Duration::hours(1))
    }

    /// Provisions another tenant; returns its id and an agent token for it.
    pub async fn provision_tenant(&self) -> (Uuid, String) {
        let (tenant, _, token) = self.provision_tenant_with_agent().await;
        (tenant, token)
    }

    /// Provisions another tenant with an agent user; returns the tenant, the agent and its token.
    pub async fn provision_tenant_with_agent(&self) -> (Uuid, Uuid, String) {
        let slug = format!("t-{}", &Uuid::now_v7().simple().to_string()[20..]);
        let response = self
            .command(
                Method::POST,
                "/v1/tenants",
                &self.platform_token(),
                Some(json!({ "name": "Test tenant", "slug": slug })),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "provisioning a tenant");
        let body: Value = response.json().await.expect("json");
        let tenant: Uuid = body["id"].as_str().and_then(|s| s.parse().ok()).expect("tenant id");
        let agent = self.create_user_in(tenant, "agent", "agent").await;
        (tenant, agent, self.keys.issue(agent, tenant, Role::Agent, chrono::Duration::hours(1)))
    }

    /// Creates a user of the test's tenant as its administrator; returns the user id.
    pub async fn create_user(&self, username: &str, role: &str) -> Uuid {
        self.create_user_in(self.tenant_id, username, role).await
    }

    /// Creates a user of `tenant` as its administrator; returns the user id.
    pub async fn create_user_in(&self, tenant: Uuid, username: &str, role: &str) -> Uuid {
        let admin = self.token_for(tenant, Role::Admin);
        let body = json!({ "username": username, "email": format!("{username}@example.org"),
                           "password": "integration test password", "role": role });
        let response = self.command(Method::POST, "/v1/users", &admin, Some(body)).await;
        assert_eq!(response.status(), StatusCode::CREATED, "creating a user");
        let body: Value = response.json().await.expect("json");
        body["id"].as_str().and_then(|s| s.parse().ok()).expect("user id")
    }

    /// Creates a case type in `tenant` as its administrator; returns its id.
    pub async fn create_case_type(&self, tenant: Uuid, name: &str, form: Value) -> Uuid {
        let admin = self.token_for(tenant, Role::Admin);
        let body = json!({ "name": name, "form_definition": form });
        let response = self.command(Method::POST, "/v1/case-types", &admin, Some(body)).await;
        assert_eq!(response.status(), StatusCode::CREATED, "creating a case type");
        let body: Value = response.json().await.expect("json");
        body["id"].as_str().and_then(|s| s.parse().ok()).expect("case type id")
    }

    pub async fn command(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Response {
        let mut request = self.http.request(method, format!("{}{path}", self.command_url)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("command API answers")
    }

    pub async fn query(&self, path: &str, token: &str) -> Response {
        self.http.get(format!("{}{path}", self.query_url)).bearer_auth(token).send().await.expect("query API answers")
    }

    /// Opens a case for this test's tenant and returns the command's answer.
    pub async fn open_case(&self, title: &str) -> Value {
        let body = json!({
            "title": title,
            "description": format!("{title}: reported by phone"),
            "priority": "high",
            "case_type_id": self.case_type_id,
            "tags": ["phone"],
        });
        let response = self.command(Method::POST, "/v1/cases", &self.token, Some(body)).await;
        assert_eq!(response.status(), StatusCode::CREATED, "opening a case");
        response.json().await.expect("json")
    }

    pub async fn journal_count(&self, stream_type: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM eventstore.events WHERE stream_type = $1 AND tenant_id = $2")
            .bind(stream_type)
            .bind(self.tenant_id)
            .fetch_one(&self.pool)
            .await
            .expect("count journal")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for s in &self.services {
            s.abort();
        }
        if let Some(p) = &self.projector {
            p.abort();
        }
    }
}

/// Appends an event straight to the journal (as a buggy or older writer could have) and
/// queues it for the relay, bypassing the command API and its validation.
#[allow(clippy::too_many_arguments)]
pub async fn append_raw_event(
    app: &TestApp,
    tenant: Uuid,
    stream_type: &str,
    stream: Uuid,
    version: i64,
    event_type: &str,
    schema_version: i64,
    payload: Value,
) {
    let event_id = Uuid::now_v7();
    let envelope = json!({
        "event_id": event_id, "tenant_id": tenant, "stream_type": stream_type, "stream_id": stream,
        "stream_version": version, "event_type": event_type, "schema_version": schema_version,
        "occurred_at": "2026-11-20T09:00:00Z", "actor": { "user_id": app.user_id, "role": "agent" },
        "correlation_id": Uuid::now_v7(), "causation_id": null, "payload": payload,
    });
    let position: i64 = sqlx::query_scalar(
        "INSERT INTO eventstore.events (event_id, tenant_id, stream_type, stream_id, stream_version, event_type,
            schema_version, occurred_at, envelope)
         VALUES ($1, $2, $7, $3, $4, $5, $8, '2026-11-20T09:00:00Z', $6) RETURNING position",
    )
    .bind(event_id)
    .bind(tenant)
    .bind(stream)
    .bind(version)
    .bind(event_type)
    .bind(&envelope)
    .bind(stream_type)
    .bind(schema_version as i16)
    .fetch_one(&app.pool)
    .await
    .expect("appending a raw event");
    sqlx::query("INSERT INTO eventstore.outbox (position) VALUES ($1)")
        .bind(position)
        .execute(&app.pool)
        .await
        .expect("queueing a raw event");
}

/// Polls `check` until it returns Some or 90 s pass (read models are eventually consistent).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(Some(value)) = tokio::time::timeout_at(deadline, check()).await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the four read models hold for the test's tenant, read straight from the stores.
#[derive(Debug, PartialEq, Eq)]
pub struct StoreCounts {
    /// Sum of case versions in PostgreSQL: equals the journal's case events when caught up.
    pub postgres_versions: i64,
    pub audit_entries: u64,
    /// Sum of case versions the Redis counters have counted.
    pub redis_versions: i64,
    pub elastic_versions: i64,
}

impl TestApp {
    pub async fn store_counts(&self) -> StoreCounts {
        use redis::AsyncCommands;
        let t = runtime::tenancy::Tenancy(self.tenant_id);
        let postgres_versions: i64 =
            sqlx::query_scalar(&format!("SELECT COALESCE(sum(version), 0)::bigint FROM {}.cases", t.pg_schema()))
                .fetch_one(&self.pool)
                .await
                .unwrap_or(0);
        let mongo = mongodb::Client::with_uri_str(&self.settings.mongo_url).await.expect("mongo");
        let audit_entries = mongo
            .database(&self.settings.mongo_database)
            .collection::<mongodb::bson::Document>(&t.mongo_collection(runtime::tenancy::AUDIT_LOGS))
            .count_documents(mongodb::bson::doc! {})
            .await
            .expect("count audit entries");
        let mut redis = redis::Client::open(self.settings.redis_url.as_str())
            .expect("redis")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection");
        let counted: std::collections::HashMap<String, String> =
            redis.hgetall(t.redis_counted_cases()).await.unwrap_or_default();
        let redis_versions = counted.values().filter_map(|v| v.split('|').next()?.parse::<i64>().ok()).sum();
        let search: Value = self
            .http
            .post(format!("{}/{}/_search", self.settings.elastic_url, t.es_alias(runtime::tenancy::CASES)))
            .json(&json!({ "size": 10000, "query": { "match_all": {} } }))
            .send()
            .await
            .expect("elasticsearch")
            .json()
            .await
            .unwrap_or(Value::Null);
        let elastic_versions = search["hits"]["hits"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h["_source"]["version"].as_i64())
            .sum();
        StoreCounts { postgres_versions, audit_entries, redis_versions, elastic_versions }
    }

    /// Waits until every read model reflects every journal event of this tenant.
    pub async fn wait_for_all_stores(&self) -> StoreCounts {
        let case_events = self.journal_count("case").await;
        let all_events: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.events WHERE tenant_id = $1")
            .bind(self.tenant_id)
            .fetch_one(&self.pool)
            .await
            .expect("count journal");
        let _ = self.http.post(format!("{}/_refresh", self.settings.elastic_url)).send().await;
        let counts = eventually("every read model to catch up with the journal", || async {
            let _ = self.http.post(format!("{}/_refresh", self.settings.elastic_url)).send().await;
            let counts = self.store_counts().await;
            let expected = StoreCounts {
                postgres_versions: case_events,
                audit_entries: all_events as u64,
                redis_versions: case_events,
                elastic_versions: case_events,
            };
            (counts == expected).then_some(counts)
        })
        .await;
        // The notes have a projection of their own: every note event applied there too.
        let note_events = self.journal_count("note").await;
        let notes = mongodb::Client::with_uri_str(&self.settings.mongo_url)
            .await
            .expect("mongo")
            .database(&self.settings.mongo_database)
            .collection::<mongodb::bson::Document>(
                &runtime::tenancy::Tenancy(self.tenant_id).mongo_collection("case_notes"),
            );
        eventually("the notes projection to catch up with the journal", || async {
            use futures::TryStreamExt;
            let docs: Vec<mongodb::bson::Document> =
                notes.find(mongodb::bson::doc! {}).await.ok()?.try_collect().await.ok()?;
            let held: i64 = docs.iter().filter_map(|d| d.get_i64("version").ok()).sum();
            (held == note_events).then_some(())
        })
        .await;
        counts
    }

    /// Redis counters must equal a count over PostgreSQL.
    pub async fn assert_counters_match_postgres(&self) {
        let schema = runtime::tenancy::Tenancy(self.tenant_id).pg_schema();
        let count = |sql: String| async move {
            let rows: Vec<(String, i64)> = sqlx::query_as(&sql).fetch_all(&self.pool).await.expect("count cases");
            Value::Object(rows.into_iter().map(|(s, n)| (s, json!(n))).collect())
        };
        let open = "status NOT IN ('resolved', 'closed')";
        let expected = [
            ("cases_by_status", count(format!("SELECT status, count(*) FROM {schema}.cases GROUP BY 1")).await),
            (
                "open_cases_by_priority",
                count(format!("SELECT priority, count(*) FROM {schema}.cases WHERE {open} GROUP BY 1")).await,
            ),
            (
                "open_cases_by_assignee",
                count(format!(
                    "SELECT assigned_to::text, count(*) FROM {schema}.cases
                     WHERE assigned_to IS NOT NULL AND {open} GROUP BY 1"
                ))
                .await,
            ),
            (
                "open_cases_by_team",
                count(format!(
                    "SELECT assigned_team_id::text, count(*) FROM {schema}.cases
                     WHERE assigned_team_id IS NOT NULL AND {open} GROUP BY 1"
                ))
                .await,
            ),
        ];
        let counters: Value = self.query("/v1/counters", &self.token).await.json().await.expect("counters");
        for (name, counted) in expected {
            assert_eq!(counters[name], counted, "{name}: Redis against PostgreSQL");
        }
    }
}

/// Every read model of one tenant, reduced to comparable fingerprints: per PostgreSQL
/// table, Mongo collection, Elasticsearch alias and Redis key, the number of rows
/// (documents, entries) and a hash over their full contents in a stable order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDigest(pub std::collections::BTreeMap<String, (usize, u64)>);

/// The tenant tables the projector fills (the statistics view holds `now()`-relative averages).
pub const TENANT_TABLES: [&str; 10] = [
    "cases",
    "users",
    "teams",
    "team_members",
    "case_types",
    "channels",
    "interactions",
    "documents",
    "tasks",
    "workflows",
];

fn fingerprint(mut rows: Vec<String>) -> (usize, u64) {
    use std::hash::{Hash, Hasher};
    rows.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    rows.hash(&mut hasher);
    (rows.len(), hasher.finish())
}

impl TestApp {
    /// Fingerprints of this tenant's contents in all four stores.
    pub async fn store_digest(&self) -> StoreDigest {
        self.store_digest_of(self.tenant_id).await
    }

    /// Fingerprints of a tenant's contents in all four stores.
    pub async fn store_digest_of(&self, tenant: Uuid) -> StoreDigest {
        let contents = self.store_contents_of(tenant, false).await;
        StoreDigest(contents.into_iter().map(|(name, rows)| (name, fingerprint(rows))).collect())
    }

    /// A tenant's contents in all four stores as text, per table, collection, index and
    /// key. `everything`: also what reads and logins write (caches, presence, sessions),
    /// which a replay does not reproduce.
    pub async fn store_contents_of(
        &self,
        tenant: Uuid,
        everything: bool,
    ) -> std::collections::BTreeMap<String, Vec<String>> {
        use futures::TryStreamExt;
        use redis::AsyncCommands;
        let t = runtime::tenancy::Tenancy(tenant);
        let mut digest = std::collections::BTreeMap::new();

        let schema = t.pg_schema();
        for table in TENANT_TABLES {
            let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {schema}.{table} t"))
                .fetch_all(&self.pool)
                .await
                .expect("read a tenant table");
            digest.insert(format!("postgres:{table}"), rows);
        }
        let tenant: Vec<String> = sqlx::query_scalar("SELECT t::text FROM public.tenants t WHERE id = $1")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await
            .expect("read the tenant row");
        digest.insert("postgres:tenants".into(), tenant);

        let mongo = mongodb::Client::with_uri_str(&self.settings.mongo_url).await.expect("mongo");
        let db = mongo.database(&self.settings.mongo_database);
        let prefix = t.mongo_collection("");
        for name in db.list_collection_names().await.expect("list collections") {
            if !name.starts_with(&prefix) {
                continue;
            }
            let docs: Vec<mongodb::bson::Document> = db
                .collection::<mongodb::bson::Document>(&name)
                .find(mongodb::bson::doc! {})
                .await
                .expect("read a collection")
                .try_collect()
                .await
                .expect("read a collection");
            let rows = docs.iter().map(|d| d.to_string()).collect();
            digest.insert(format!("mongo:{name}"), rows);
        }

        let _ = self.http.post(format!("{}/_refresh", self.settings.elastic_url)).send().await;
        for entity in [
            runtime::tenancy::CASES,
            runtime::tenancy::NOTES,
            runtime::tenancy::INTERACTIONS,
            runtime::tenancy::ES_AUDIT_LOGS,
        ] {
            let alias = t.es_alias(entity);
            let search: Value = self
                .http
                .post(format!("{}/{alias}/_search?version=true", self.settings.elastic_url))
                .json(&json!({ "size": 10000, "version": true, "query": { "match_all": {} } }))
                .send()
                .await
                .expect("elasticsearch")
                .json()
                .await
                .unwrap_or(Value::Null);
            let rows = search["hits"]["hits"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| format!("{}|{}|{}", h["_id"], h["_version"], h["_source"]))
                .collect();
            digest.insert(format!("elasticsearch:{entity}"), rows);
        }

        let mut redis = redis::Client::open(self.settings.redis_url.as_str())
            .expect("redis")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection");
        let keys: Vec<String> = redis.keys(t.redis_key("*")).await.expect("list redis keys");
        for key in keys {
            // Presence, locks, the query API's caches (a case, a user's permissions) and the
            // sessions are written by reads and logins, not projected from events.
            let cache = key.ends_with(":permissions") || (key.contains(":case:") && !key.ends_with(":viewers"));
            let session = key.contains(":session:")
                || key.ends_with(":sessions")
                || key.ends_with(":revision")
                || key.ends_with(":tenant:status")
                || key.ends_with(":tenant:status_version");
            let written_by_reads = key.contains(":locks:")
                || key.ends_with(":viewers")
                || key.ends_with(":online_users")
                || cache
                || session;
            if written_by_reads && !everything {
                continue;
            }
            let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut redis).await.expect("key type");
            let rows: Vec<String> = match kind.as_str() {
                "hash" => {
                    let h: std::collections::BTreeMap<String, String> = redis.hgetall(&key).await.expect("hash");
                    h.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
                }
                // A list's order matters: keep it by prefixing the index.
                "list" => {
                    let l: Vec<String> = redis.lrange(&key, 0, -1).await.expect("list");
                    l.into_iter().enumerate().map(|(i, v)| format!("{i:06}:{v}")).collect()
                }
                "zset" => {
                    let z: Vec<(String, f64)> = redis.zrange_withscores(&key, 0, -1).await.expect("zset");
                    z.into_iter().map(|(m, s)| format!("{m}={s}")).collect()
                }
                "set" => redis.smembers(&key).await.expect("set"),
                _ => vec![redis.get::<_, Option<String>>(&key).await.expect("string").unwrap_or_default()],
            };
            digest.insert(format!("redis:{key}"), rows);
        }
        digest
    }

    /// The reference for a rebuilt or recovered read model: wipes the tenant's read models,
    /// replays the whole log with fresh consumer groups and no interruption, and asserts
    /// every store ends exactly as `expected`.
    pub async fn assert_same_as_fresh_replay(&mut self, expected: &StoreDigest) {
        self.kill_projector().await;
        self.wipe_read_models().await;
        self.settings.kafka_group_prefix = format!("{}.replay", self.settings.kafka_group_prefix);
        self.start_projector().await;
        self.wait_for_all_stores().await;
        let mut replayed = self.store_digest().await;
        for _ in 0..40 {
            if &replayed == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            replayed = self.store_digest().await;
        }
        let differing: Vec<_> = expected
            .0
            .iter()
            .filter(|(key, value)| replayed.0.get(*key) != Some(value))
            .map(|(key, value)| (key, value, replayed.0.get(key)))
            .collect();
        assert!(differing.is_empty(), "stores differ from a fresh replay (key, expected, replayed): {differing:#?}");
        assert_eq!(replayed.0.len(), expected.0.len(), "the replay made other keys: {:?}", replayed.0.keys());
    }

    /// Deletes every read model of this tenant in all four stores (the journal stays).
    pub async fn wipe_read_models(&self) {
        use redis::AsyncCommands;
        let t = runtime::tenancy::Tenancy(self.tenant_id);
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", t.pg_schema()))
            .execute(&self.pool)
            .await
            .expect("drop the tenant schema");
        sqlx::query("DELETE FROM public.tenants WHERE id = $1")
            .bind(self.tenant_id)
            .execute(&self.pool)
            .await
            .expect("delete the tenant row");
        let mongo = mongodb::Client::with_uri_str(&self.settings.mongo_url).await.expect("mongo");
        let db = mongo.database(&self.settings.mongo_database);
        let prefix = t.mongo_collection("");
        for name in db.list_collection_names().await.expect("list collections") {
            if name.starts_with(&prefix) {
                db.collection::<mongodb::bson::Document>(&name).drop().await.expect("drop a collection");
            }
        }
        let indices: Value = self
            .http
            .get(format!("{}/_cat/indices?format=json", self.settings.elastic_url))
            .send()
            .await
            .expect("elasticsearch")
            .json()
            .await
            .expect("index list");
        let own = format!("{}-", t.es_alias("").trim_end_matches('-'));
        for index in indices.as_array().into_iter().flatten().filter_map(|i| i["index"].as_str()) {
            if index.starts_with(&own) {
                self.http.delete(format!("{}/{index}", self.settings.elastic_url)).send().await.expect("delete index");
            }
        }
        let mut redis = redis::Client::open(self.settings.redis_url.as_str())
            .expect("redis")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection");
        let keys: Vec<String> = redis.keys(t.redis_key("*")).await.expect("list redis keys");
        if !keys.is_empty() {
            let _: i64 = redis.del(keys).await.expect("delete redis keys");
        }
    }
}
