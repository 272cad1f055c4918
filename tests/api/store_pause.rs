//! A store that stops answering (the Jepsen "pause" fault, issue 29): under a steady load
//! of commands and reads, one server of the test's own is frozen with SIGSTOP for
//! `PAUSE`, then thawed with SIGCONT. During the pause no request to either API takes
//! longer than its deadline plus a second, reads that need the frozen store answer 503,
//! the other stores keep up and `murima-admin status` answers; after it every projection
//! catches up alone, nothing acknowledged is missing, and every store equals a replay.

use std::time::{Duration, Instant};

use murima_tests::{env_or, test_settings, PrivateBroker, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// How long each server stays frozen.
const PAUSE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Postgres,
    Mongo,
    Elastic,
    Redis,
    Broker,
}

/// A server process of the test's own, to freeze and thaw.
struct Server {
    child: tokio::process::Child,
    port: u16,
    _dir: Option<TempDir>,
}

/// A directory removed when the test ends.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("address").port()
}

impl Server {
    async fn start(store: Store) -> Server {
        let port = free_port();
        let cache = env_or("MURIMA_CACHE", &format!("{}/.cache/murima", std::env::var("HOME").unwrap_or_default()));
        let (program, args, dir): (String, Vec<String>, Option<TempDir>) = match store {
            Store::Redis => (
                "redis-server".into(),
                ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
                    .map(str::to_owned)
                    .to_vec(),
                None,
            ),
            Store::Mongo => {
                let dir = std::env::temp_dir().join(format!("murima-pause-mongo-{port}"));
                std::fs::create_dir_all(&dir).expect("a data directory");
                let args = vec![
                    "--host".into(),
                    "127.0.0.1".into(),
                    "--port".into(),
                    port.to_string(),
                    "--storage-path".into(),
                    dir.display().to_string(),
                    "--log-level".into(),
                    "WARNING".into(),
                ];
                (format!("{cache}/secantusdb-0.7.0b3/bin/secantusd-py"), args, Some(TempDir(dir)))
            }
            Store::Elastic => (
                format!("{cache}/osmem-server-0.1.6/lib/python3.11/site-packages/osmem_server/bin/osmem-server"),
                vec!["-addr".into(), format!("127.0.0.1:{port}"), "-no-stdin-watch".into()],
                None,
            ),
            Store::Postgres => return Server::postgres(port).await,
            Store::Broker => unreachable!("the broker is a PrivateBroker"),
        };
        let child = tokio::process::Command::new(&program)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{program} starts (scripts/stack.sh installs it): {e}"));
        murima_tests::eventually("the private server to listen", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(drop)
        })
        .await;
        Server { child, port, _dir: dir }
    }
}

impl Server {
    /// A PostgreSQL cluster of the test's own (as the `postgres` user when run as root,
    /// as `scripts/stack.sh` does), trusting 127.0.0.1.
    async fn postgres(port: u16) -> Server {
        let bin = std::env::var("MURIMA_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
        let dir = std::env::temp_dir().join(format!("murima-pause-pg-{port}"));
        std::fs::create_dir_all(&dir).expect("a data directory");
        let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
        let as_pg = |program: String| {
            if root {
                let mut c = tokio::process::Command::new("runuser");
                c.args(["-u", "postgres", "--", &program]);
                c
            } else {
                tokio::process::Command::new(program)
            }
        };
        if root {
            let owned =
                std::process::Command::new("chown").args(["postgres:postgres", &dir.display().to_string()]).status();
            assert!(owned.is_ok_and(|s| s.success()), "chown the data directory");
        }
        let init = as_pg(format!("{bin}/initdb"))
            .args(["-D", &dir.display().to_string(), "-A", "trust", "-U", "postgres", "--no-sync"])
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .expect("initdb runs");
        assert!(init.success(), "initdb");
        let child = as_pg(format!("{bin}/postgres"))
            .args(["-D", &dir.display().to_string(), "-p", &port.to_string(), "-k", &dir.display().to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200", "-c", "fsync=off"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("postgres starts");
        murima_tests::eventually("the private PostgreSQL to answer", || async {
            sqlx::PgPool::connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres")).await.ok().map(drop)
        })
        .await;
        Server { child, port, _dir: Some(TempDir(dir)) }
    }

    /// The processes to freeze: the server, or for PostgreSQL the postmaster and every
    /// backend it forked.
    fn pids(&self) -> Vec<u32> {
        let Some(dir) = &self._dir else { return self.child.id().into_iter().collect() };
        let Ok(pid_file) = std::fs::read_to_string(dir.0.join("postmaster.pid")) else {
            return self.child.id().into_iter().collect();
        };
        let postmaster: u32 = pid_file.lines().next().and_then(|l| l.trim().parse().ok()).expect("postmaster pid");
        let children =
            std::process::Command::new("pgrep").args(["-P", &postmaster.to_string()]).output().expect("pgrep");
        let mut pids = vec![postmaster];
        pids.extend(String::from_utf8_lossy(&children.stdout).lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        pids
    }
}

/// Sends a signal to a process (STOP freezes it, CONT thaws it).
fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill").args([format!("-{name}"), pid.to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{name} {pid}");
}

/// One request's outcome during the pause.
#[derive(Debug)]
struct Answer {
    what: &'static str,
    status: StatusCode,
    took: Duration,
}

async fn timed(what: &'static str, request: impl std::future::Future<Output = reqwest::Response>) -> Answer {
    let started = Instant::now();
    let status = request.await.status();
    Answer { what, status, took: started.elapsed() }
}

async fn pause_round(store: Store) {
    let mut settings = test_settings();
    settings.read_wait = Duration::from_secs(2);
    settings.store_deadline = Duration::from_secs(2);
    settings.apply_deadline = Duration::from_secs(5);
    let (mut server, broker) = match store {
        Store::Broker => (None, Some(PrivateBroker::start(None).await)),
        other => (Some(Server::start(other).await), None),
    };
    let port = server.as_ref().map_or_else(|| broker.as_ref().map_or(0, |b| b.port), |s| s.port);
    match store {
        Store::Postgres => {
            let url = format!("postgres://postgres@127.0.0.1:{port}/murima_pause");
            settings.database_url = url.clone();
            settings.migrations = runtime::Migrations::With(url);
        }
        Store::Mongo => settings.mongo_url = format!("mongodb://127.0.0.1:{port}"),
        Store::Elastic => settings.elastic_url = format!("http://127.0.0.1:{port}"),
        Store::Redis => settings.redis_url = format!("redis://127.0.0.1:{port}"),
        Store::Broker => settings.kafka_brokers = format!("127.0.0.1:{port}"),
    }
    let mut app = TestApp::spawn_with(settings).await;
    let deadline = app.settings.request_deadline();
    let supervisor = app.token_for(app.tenant_id, runtime::auth::Role::Supervisor);
    for i in 0..5 {
        app.open_case(&format!("Before the pause {i}")).await;
    }
    app.wait_for_all_stores().await;
    // A running system's caches are warm: the tenant's status in Redis, the rules.
    for path in ["/v1/cases?limit=1", "/v1/counters", "/v1/search/cases?q=pause"] {
        assert_eq!(app.query(path, &app.token).await.status(), StatusCode::OK, "{path} before the pause");
    }

    let pids = match (&server, &broker) {
        (Some(s), _) if store == Store::Postgres => s.pids(),
        (Some(s), _) => vec![s.child.id().expect("the server's pid")],
        (None, Some(b)) => vec![b.pid()],
        (None, None) => unreachable!(),
    };
    pids.iter().for_each(|pid| signal(*pid, "STOP"));
    let paused = Instant::now();
    let mut answers = Vec::new();
    let mut accepted = Vec::new();
    let mut status_answered = None;
    while paused.elapsed() < PAUSE {
        let open = json!({ "title": "Opened while a store is frozen", "case_type_id": app.case_type_id });
        let started = Instant::now();
        let r = app.command(Method::POST, "/v1/cases", &app.token, Some(open)).await;
        answers.push(Answer { what: "open a case", status: r.status(), took: started.elapsed() });
        let position = if r.status() == StatusCode::CREATED {
            let body: Value = r.json().await.unwrap();
            accepted.push(body["id"].as_str().unwrap().to_owned());
            body["position"].as_str().map(str::to_owned)
        } else {
            None
        };
        let with = |path: &str| match &position {
            Some(p) => format!("{path}{}position={p}", if path.contains('?') { '&' } else { '?' }),
            None => path.to_owned(),
        };
        let case = accepted.last().cloned().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let paths = [
            with("/v1/cases?limit=5"),
            with("/v1/search/cases?q=frozen"),
            with(&format!("/v1/audit/case/{case}")),
            with("/v1/counters"),
        ];
        let (list, search, audit, counters) = tokio::join!(
            timed("case list (PostgreSQL)", app.query(&paths[0], &app.token)),
            timed("case search (Elasticsearch)", app.query(&paths[1], &app.token)),
            timed("audit trail (MongoDB)", app.query(&paths[2], &supervisor)),
            timed("counters (Redis)", app.query(&paths[3], &app.token)),
        );
        answers.extend([list, search, audit, counters]);
        if status_answered.is_none() && paused.elapsed() > Duration::from_secs(5) {
            let started = Instant::now();
            let (ok, out) = tokio::time::timeout(Duration::from_secs(20), app.admin_cli(&["status"]))
                .await
                .expect("murima-admin status answers during the pause");
            status_answered = Some((ok, started.elapsed(), out));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    pids.iter().for_each(|pid| signal(*pid, "CONT"));
    let thawed = Instant::now();

    eprintln!("pause of {store:?}: {} requests in {:?}", answers.len(), PAUSE);
    for what in [
        "open a case",
        "case list (PostgreSQL)",
        "case search (Elasticsearch)",
        "audit trail (MongoDB)",
        "counters (Redis)",
    ] {
        let of: Vec<&Answer> = answers.iter().filter(|a| a.what == what).collect();
        let ok = of.iter().filter(|a| a.status.is_success()).count();
        let unavailable = of.iter().filter(|a| a.status == StatusCode::SERVICE_UNAVAILABLE).count();
        let slowest = of.iter().map(|a| a.took).max().unwrap_or_default();
        eprintln!("  {what}: {ok} answered, {unavailable} 503, slowest {slowest:?}");
    }
    let late: Vec<&Answer> = answers.iter().filter(|a| a.took > deadline + Duration::from_secs(1)).collect();
    assert!(late.is_empty(), "requests past their deadline ({deadline:?} + 1 s) while {store:?} was frozen: {late:?}");
    let odd: Vec<&Answer> =
        answers.iter().filter(|a| !a.status.is_success() && a.status != StatusCode::SERVICE_UNAVAILABLE).collect();
    assert!(odd.is_empty(), "answers other than 2xx or 503: {odd:?}");
    let of = |what: &'static str| answers.iter().filter(move |a| a.what == what);
    match store {
        // Commands need the journal: refused quickly; reads of the other stores go on.
        Store::Postgres => {
            assert!(of("open a case").all(|a| a.status == StatusCode::SERVICE_UNAVAILABLE));
            assert!(of("counters (Redis)").any(|a| a.status == StatusCode::OK), "Redis reads stopped too");
        }
        // Every request checks its session in Redis: all refused quickly, nothing accepted.
        Store::Redis => assert!(of("open a case").all(|a| a.status == StatusCode::SERVICE_UNAVAILABLE)),
        // Commands go on; the relational read model keeps up with them.
        Store::Mongo | Store::Elastic => {
            assert!(of("open a case").all(|a| a.status == StatusCode::CREATED), "commands refused: {answers:?}");
            assert!(of("case list (PostgreSQL)").any(|a| a.status == StatusCode::OK), "PostgreSQL fell behind");
            let frozen = if store == Store::Mongo { "audit trail (MongoDB)" } else { "case search (Elasticsearch)" };
            assert!(of(frozen).any(|a| a.status == StatusCode::SERVICE_UNAVAILABLE), "{frozen} never noticed");
        }
        // Commands are journaled; reads of what is projected go on.
        Store::Broker => assert!(of("open a case").all(|a| a.status == StatusCode::CREATED)),
    }
    let (status_ok, status_took, status_out) = status_answered.expect("murima-admin status ran");
    eprintln!("  murima-admin status: ok={status_ok} in {status_took:?}");
    assert!(status_took < Duration::from_secs(15), "murima-admin status took {status_took:?}: {status_out}");
    // It needs only PostgreSQL (and asks the broker for offsets, within a bound).
    assert!(status_ok || store == Store::Postgres, "murima-admin status failed while {store:?} was frozen");

    // After the pause: every projection catches up alone, nothing acknowledged is missing.
    app.wait_for_all_stores().await;
    eprintln!("  caught up {:?} after the thaw", thawed.elapsed());
    for id in &accepted {
        let held: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.events WHERE stream_id = $1::uuid")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert!(held > 0, "an accepted case {id} is not in the journal");
    }
    let digest = app.store_digest().await;
    app.assert_same_as_fresh_replay(&digest).await;
    server.take();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_postgresql_costs_a_quick_503_and_nothing_else() {
    pause_round(Store::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_mongodb_costs_a_quick_503_and_nothing_else() {
    pause_round(Store::Mongo).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_elasticsearch_costs_a_quick_503_and_nothing_else() {
    pause_round(Store::Elastic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_redis_costs_a_quick_503_and_nothing_else() {
    pause_round(Store::Redis).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_broker_costs_a_quick_503_and_nothing_else() {
    pause_round(Store::Broker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_is_abandoned_while_its_store_is_frozen_and_its_copy_dropped_once_it_answers() {
    let mut settings = test_settings();
    settings.store_deadline = Duration::from_secs(2);
    settings.apply_deadline = Duration::from_secs(5);
    let server = Server::start(Store::Mongo).await;
    settings.mongo_url = format!("mongodb://127.0.0.1:{}", server.port);
    let app = TestApp::spawn_with(settings).await;
    for i in 0..3 {
        app.open_case(&format!("Before the rebuild {i}")).await;
    }
    app.wait_for_all_stores().await;
    let stores = projector::stores::Stores::connect(&app.settings, 4).await.unwrap();
    let tenant = app.tenant_id;
    // A rebuild of the audit projection, interrupted after its first batch: its copy's
    // collections are in MongoDB.
    let interrupted = {
        let stores = stores.clone();
        tokio::spawn(async move {
            projector::rebuild::run(&stores, projector::stores::ProjectionName::Mongo, Some(tenant), &|_, _| {
                panic!("interrupted")
            })
            .await
        })
    };
    assert!(interrupted.await.is_err(), "the rebuild was interrupted");
    let unfinished = projector::rebuild::list(&app.pool, 1).await.unwrap().remove(0);
    let prefix = runtime::tenancy::Tenancy(unfinished.copies.0[&tenant]).mongo_collection("");
    let db = stores.mongo.database(&app.settings.mongo_database);
    let copies = || async {
        let names = db.list_collection_names().await.unwrap();
        names.into_iter().filter(|n| n.starts_with(&prefix)).count()
    };
    assert!(copies().await > 0, "the copy exists while the rebuild is unfinished");

    // MongoDB stops answering; the operator abandons the rebuild all the same.
    let pid = server.child.id().expect("the server's pid");
    signal(pid, "STOP");
    let started = Instant::now();
    let abandoned =
        tokio::time::timeout(Duration::from_secs(60), app.admin_cli(&["rebuild", "mongo", "--abandon"])).await;
    let took = started.elapsed();
    let rebuilds = projector::rebuild::list(&app.pool, 1).await.unwrap();
    let refusal = projector::rebuild::refusal(&app.pool, projector::stores::ProjectionName::Mongo, None).await.unwrap();
    signal(pid, "CONT");
    let (ok, said) = abandoned.expect("--abandon gives up on the frozen store by itself");
    eprintln!("abandon with MongoDB frozen: {took:?}: {said}");
    assert!(ok, "--abandon failed while MongoDB was frozen: {said}");
    assert!(took < app.settings.apply_deadline + Duration::from_secs(10), "--abandon took {took:?}");
    assert!(said.contains("is still there"), "{said}");
    assert_eq!(rebuilds[0].id, unfinished.id);
    assert_eq!(rebuilds[0].state, "abandoned");
    assert_eq!(refusal, None, "a rebuild for another target is not refused any more");

    // Once MongoDB answers, the clean-up (the projector's maintenance) drops the copy. The
    // client may take a moment to see the server again: until then it fails, and says so.
    assert!(copies().await > 0, "the copy outlived the freeze, to be dropped later");
    let cleaned = murima_tests::eventually("the clean-up to reach MongoDB", || async {
        match projector::rebuild::clean_up(&stores).await {
            Ok(cleaned) => Some(cleaned),
            Err(e) => {
                eprintln!("clean-up not yet: {e:#}");
                None
            }
        }
    })
    .await;
    assert_eq!(cleaned, 1);
    assert_eq!(copies().await, 0, "the abandoned copy is dropped");
    assert_eq!(projector::rebuild::clean_up(&stores).await.unwrap(), 0, "nothing is left to clean");
    let case = app.open_case("After the abandon").await["id"].as_str().unwrap().to_owned();
    app.wait_for_all_stores().await;
    let supervisor = app.token_for(app.tenant_id, runtime::auth::Role::Supervisor);
    let trail = app.query(&format!("/v1/audit/case/{case}"), &supervisor).await;
    assert_eq!(trail.status(), StatusCode::OK, "the live audit projection is untouched");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_stuck_behind_a_lock_is_a_quick_503_and_the_server_drops_its_statement() {
    let mut settings = test_settings();
    settings.read_wait = Duration::from_secs(2);
    settings.store_deadline = Duration::from_secs(2);
    let app = TestApp::spawn_with(settings).await;
    let case = app.open_case("Behind a lock").await["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap();
    // A session that writes the case's next version and does not commit: the command's
    // append waits on it (the stream's unique version), as behind any long lock.
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO eventstore.events
            (event_id, tenant_id, stream_type, stream_id, stream_version, event_type, schema_version, occurred_at, envelope)
         VALUES ($1, $2, 'case', $3, 2, 'CaseUpdated', 1, now(), '{}')",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(app.tenant_id)
    .bind(case)
    .execute(&mut *holder)
    .await
    .unwrap();
    let started = Instant::now();
    let update = json!({ "priority": "urgent" });
    let answer = app.command(Method::PATCH, &format!("/v1/cases/{case}"), &app.token, Some(update)).await;
    let took = started.elapsed();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE, "{:?}", answer.text().await);
    assert!(took < app.settings.store_deadline + Duration::from_secs(1), "answered after {took:?}");
    // The server gave the statement up too: nothing is left waiting on the lock, holding
    // a connection (a dropped request alone leaves its statement running on the server).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    holder.rollback().await.unwrap();
    assert_eq!(waiting, 0, "a statement still waits on the lock after its request was answered");
    let urgent = json!({ "priority": "urgent" });
    let again = app.command(Method::PATCH, &format!("/v1/cases/{case}"), &app.token, Some(urgent)).await;
    assert_eq!(again.status(), StatusCode::OK, "the case is updated once the lock is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_command_behind_a_held_lock_gives_up_naming_the_holder() {
    let app = TestApp::spawn().await;
    // A session that holds the mongo projection's lock and does not let go.
    let mut stuck = app.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
        .bind(projector::control::lock_key("mongo"))
        .execute(&mut *stuck)
        .await
        .unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *stuck).await.unwrap();
    let started = Instant::now();
    let stream = uuid::Uuid::now_v7().to_string();
    let tenant = app.tenant_id.to_string();
    let run = tokio::process::Command::new(murima_tests::binary("murima-admin"))
        .args(["parked", "retry", "mongo", &stream, "--tenant", &tenant])
        .envs(murima_tests::settings_env(&app.settings))
        .env("RUST_LOG", "off")
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run).await.expect("it gives up by itself").unwrap();
    let took = started.elapsed();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "the retry ran under a lock someone else holds");
    assert!(took < Duration::from_secs(45), "gave up after {took:?}");
    assert!(said.contains(&format!("pid {pid}")) && said.contains("idle in transaction"), "{said}");
    stuck.rollback().await.unwrap();
}
