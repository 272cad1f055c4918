//! `TestApp`: the three services of one test (in-process, or as child processes) with
//! their own database, topic, groups, Mongo database and tenant, and typed helpers.

use std::time::Duration;

use reqwest::{Client, Method, Response, StatusCode};
use runtime::auth::{JwtKeys, Role};
use runtime::{Migrations, Settings};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::poll::eventually;

pub const SECRET: &str = "integration-test-secret-of-at-least-32-bytes";

pub fn env_or(name: &str, default: &str) -> String {
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
        store_deadline: Duration::from_secs(5),
        apply_deadline: Duration::from_secs(20),
        max_body_bytes: 16 * 1024,
        relay_audit_interval: Duration::from_millis(500),
        statistics_refresh: Duration::from_secs(2),
        idempotency_ttl: Duration::from_secs(48 * 3600),
        viewer_window: Duration::from_secs(60),
        sla_tick: Duration::from_millis(200),
        // Tests' receivers listen on loopback; they fail fast.
        webhooks: runtime::webhook::Policy {
            allow_private: true,
            max_attempts: 3,
            backoff: Duration::from_millis(100),
        },
        trusted_proxies: Vec::new(),
        archive_dir: Some(std::env::temp_dir().join(format!("murima-archive-{id}"))),
        // Every test's subject keys are wrapped, as in production.
        subject_kek: Some(TEST_SUBJECT_KEK.into()),
        // Tests send requests as fast as they can from one address; `abuse` sets limits.
        rate_limits: None,
    }
}

/// The tests' key-encryption key (32 bytes, base64): one per test process.
pub const TEST_SUBJECT_KEK: &str = "bXVyaW1hLXRlc3Qtc3ViamVjdC1rZWstMzItYnl0ZXM=";

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
        ("MURIMA_STORE_DEADLINE_MS", settings.store_deadline.as_millis().to_string()),
        ("MURIMA_APPLY_DEADLINE_MS", settings.apply_deadline.as_millis().to_string()),
        ("MURIMA_MAX_BODY_BYTES", settings.max_body_bytes.to_string()),
        ("MURIMA_RELAY_AUDIT_MS", settings.relay_audit_interval.as_millis().to_string()),
        ("MURIMA_STATISTICS_REFRESH_SECS", settings.statistics_refresh.as_secs().to_string()),
        ("MURIMA_VIEWER_WINDOW_SECS", settings.viewer_window.as_secs().to_string()),
        ("MURIMA_SLA_TICK_MS", settings.sla_tick.as_millis().to_string()),
        ("MURIMA_WEBHOOK_ALLOW_PRIVATE", if settings.webhooks.allow_private { "on" } else { "off" }.to_owned()),
        ("MURIMA_WEBHOOK_MAX_ATTEMPTS", settings.webhooks.max_attempts.to_string()),
        ("MURIMA_WEBHOOK_BACKOFF_MS", settings.webhooks.backoff.as_millis().to_string()),
        ("MURIMA_RATE_LIMITS", if settings.rate_limits.is_some() { "on" } else { "off" }.to_owned()),
        ("MURIMA_SUBJECT_KEK", settings.subject_kek.clone().unwrap_or_default()),
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

impl TestApp {
    /// Another command API in this process on the same servers (its caches start empty):
    /// its URL, and the task serving it.
    pub async fn another_command_api(&self) -> (String, JoinHandle<()>) {
        let command = command_api::Application::build(&service_settings(&self.settings, "command-api"))
            .await
            .expect("another command API starts");
        let url = format!("http://127.0.0.1:{}", command.port());
        (url, tokio::spawn(async move { command.run_until_stopped().await.expect("the other command API runs") }))
    }

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

    /// `spawn_processes` against a broker on another address (e.g. a `PrivateBroker`).
    pub async fn spawn_processes_with(settings: Settings) -> TestApp {
        Self::spawn_inner(settings, true).await
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
    /// A login to this test's tenant, answered as it is.
    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.http
            .post(format!("{}/v1/auth/login", self.command_url))
            .json(&json!({ "tenant": self.tenant_slug().await, "username": username, "password": password }))
            .send()
            .await
            .expect("command API answers")
    }

    pub async fn login_token(&self, username: &str) -> String {
        let answer: Value = self.login(username, "integration test password").await.json().await.expect("login answer");
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

    /// A POST the command API must accept (2xx); its answer.
    pub async fn post_ok(&self, path: &str, token: &str, body: Value) -> Value {
        let response = self.command(Method::POST, path, token, Some(body)).await;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path} answered {status}: {answer}");
        answer
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

    /// A table of this test's tenant's read models, schema-qualified.
    pub fn tenant_table(&self, table: &str) -> String {
        format!("{}.{table}", runtime::tenancy::Tenancy(self.tenant_id).pg_schema())
    }

    /// The `columns` of row `id` of `table` (schema-qualified), once the projection has
    /// brought the row to `version`.
    pub async fn row_at<T>(&self, table: &str, columns: &str, id: Uuid, version: i64) -> T
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        let sql = format!("SELECT {columns} FROM {table} WHERE id = $1 AND version = $2");
        eventually(&format!("{table} row {id} at version {version}"), || async {
            sqlx::query_as(&sql).bind(id).bind(version).fetch_one(&self.pool).await.ok()
        })
        .await
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
