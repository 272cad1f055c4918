//! The scenarios: command throughput, projection lag, queries, and the ceilings (raw
//! broker produce rate and a pgbench TPC-B-like rate) they run against.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{Mutex, Semaphore};

use crate::client::{Answer, Api, Rng, Tenant};
use crate::stats::{print_table, Latencies, Outcomes};

const PRIORITIES: [&str; 4] = ["low", "medium", "high", "urgent"];
const STATUSES: [&str; 3] = ["in_progress", "pending", "open"];

fn open_body(tenant: &Tenant, rng: &mut Rng, title: &str) -> Value {
    json!({
        "title": title,
        "description": "Customer reports the service is down since this morning",
        "priority": PRIORITIES[rng.below(4) as usize],
        "case_type_id": tenant.case_type,
        "tags": ["bench"],
    })
}

/// Whose tokens the command scenario sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tokens {
    /// Each worker logs in as its own agent, as clients do.
    Login,
    /// Operators' tokens (`"op": true`), which skip the session check and the read of the
    /// caller's live rights: the figure earlier runs printed.
    Operator,
}

/// Scenario 1: `clients` workers issue a realistic mix for `duration`: open a case (30%),
/// update it (15%), assign it (15%), change its status (15%), add a note (15%), record an
/// interaction (10%); each worker acts on the cases it opened, as an agent of its own.
pub async fn commands(api: &Api, tenants: &[Tenant], clients: usize, duration: Duration, tokens: Tokens) -> Value {
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..clients {
        let api = api.clone();
        let mut tenant = tenants[w % tenants.len()].clone();
        let agent = tenant.agent_for(w / tenants.len()).clone();
        tenant.agent = agent.id;
        tenant.token = match tokens {
            Tokens::Login => agent.token,
            Tokens::Operator => {
                api.keys.issue(agent.id, tenant.id, runtime::auth::Role::Agent, chrono::Duration::hours(12))
            }
        };
        workers.spawn(async move {
            let mut rng = Rng::new(w as u64 + 1);
            let mut cases: Vec<String> = Vec::new();
            let mut latencies = Latencies::default();
            let mut outcomes = Outcomes::default();
            let mut per_kind: std::collections::BTreeMap<&'static str, Latencies> = Default::default();
            while started.elapsed() < duration {
                let roll = rng.below(100);
                let case = (!cases.is_empty()).then(|| cases[rng.below(cases.len() as u64) as usize].clone());
                let (kind, answer) = match (roll, case) {
                    (_, None) | (0..=29, _) => {
                        let body = open_body(&tenant, &mut rng, "Service down");
                        ("open case", api.command(Method::POST, "/v1/cases", &tenant.token, Some(body)).await)
                    }
                    (30..=44, Some(c)) => {
                        let body = json!({ "priority": PRIORITIES[rng.below(4) as usize] });
                        (
                            "update case",
                            api.command(Method::PATCH, &format!("/v1/cases/{c}"), &tenant.token, Some(body)).await,
                        )
                    }
                    (45..=59, Some(c)) => {
                        let body = json!({ "assigned_to": tenant.agent });
                        let path = format!("/v1/cases/{c}/assignment");
                        ("assign case", api.command(Method::POST, &path, &tenant.token, Some(body)).await)
                    }
                    (60..=74, Some(c)) => {
                        let body = json!({ "status": STATUSES[rng.below(3) as usize] });
                        let path = format!("/v1/cases/{c}/status");
                        ("change status", api.command(Method::POST, &path, &tenant.token, Some(body)).await)
                    }
                    (75..=89, Some(c)) => {
                        let body = json!({ "content": "Called the customer back", "is_internal": rng.below(2) == 0 });
                        (
                            "add note",
                            api.command(Method::POST, &format!("/v1/cases/{c}/notes"), &tenant.token, Some(body)).await,
                        )
                    }
                    (_, Some(c)) => {
                        let body =
                            json!({ "channel_id": tenant.channel, "direction": "inbound", "content": "Customer rang" });
                        let path = format!("/v1/cases/{c}/interactions");
                        ("record interaction", api.command(Method::POST, &path, &tenant.token, Some(body)).await)
                    }
                };
                outcomes.count(answer.outcome());
                if answer.ok() {
                    latencies.record(answer.took);
                    per_kind.entry(kind).or_default().record(answer.took);
                    if kind == "open case" {
                        if let Some(id) = answer.body["id"].as_str() {
                            cases.push(id.to_owned());
                        }
                    }
                }
            }
            (latencies, outcomes, per_kind)
        });
    }
    let mut latencies = Latencies::default();
    let mut outcomes = Outcomes::default();
    let mut per_kind: std::collections::BTreeMap<&'static str, Latencies> = Default::default();
    while let Some(Ok((l, o, k))) = workers.join_next().await {
        latencies.extend(l);
        outcomes.merge(o);
        for (kind, l) in k {
            per_kind.entry(kind).or_default().extend(l);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let accepted = latencies.len();
    let mut rows = vec![("all accepted commands".to_owned(), latencies.summary())];
    rows.extend(per_kind.iter().map(|(k, l)| (k.to_string(), l.summary())));
    let whose = match tokens {
        Tokens::Login => "login tokens",
        Tokens::Operator => "operator tokens",
    };
    print_table(
        &format!(
            "Command throughput ({whose}): {clients} clients, {} tenants, {elapsed:.1} s: {:.0} accepted commands/s",
            tenants.len(),
            accepted as f64 / elapsed
        ),
        &rows,
    );
    println!("answers by status: {}", outcomes.to_json());
    json!({
        "tokens": whose,
        "clients": clients,
        "tenants": tenants.len(),
        "seconds": elapsed,
        "accepted": accepted,
        "accepted_per_second": accepted as f64 / elapsed,
        "latency": latencies.summary(),
        "by_command": per_kind.iter().map(|(k, l)| (k.to_string(), l.summary())).collect::<serde_json::Map<_, _>>(),
        "answers_by_status": outcomes.to_json(),
    })
}

/// The reads that show a new case in each store, waiting for its position token, each
/// with the token of someone allowed to make it (audit trails need `audit:read`). The
/// PostgreSQL probe is the case list searched for the case's word: a read of that store
/// alone. (The case detail also reads the case's notes from MongoDB, so its latency is
/// MongoDB's too: until 2026-12-07 it was the "PostgreSQL" probe, and under load it
/// reported SecantusDB's read latency as PostgreSQL's lag. It is still measured, named
/// for what it reads.)
fn visibility_probes(tenant: &Tenant, id: &str, word: &str, position: &str) -> [(&'static str, String, String); 5] {
    let (agent, supervisor) = (tenant.token.clone(), tenant.supervisor.clone());
    [
        ("postgres (case list, with token)", format!("/v1/cases?q={word}&position={position}"), agent.clone()),
        ("case detail + mongodb notes (with token)", format!("/v1/cases/{id}?position={position}"), agent.clone()),
        ("mongodb (audit, with token)", format!("/v1/cases/{id}/audit?position={position}"), supervisor),
        ("elasticsearch (search, with token)", format!("/v1/search/cases?q={word}&position={position}"), agent.clone()),
        ("redis (counters, with token)", format!("/v1/counters?position={position}"), agent),
    ]
}

/// What a visibility probe's answer means.
enum Seen {
    Yes,
    /// 503: the documented answer of a read whose projection did not reach the position
    /// token within its wait (404 likewise, for a case read without a token).
    NotYet,
    /// Anything else (a 403 from a token without the right, a 400, a 5xx, no answer)
    /// would never turn into a 2xx: the scenario stops with it instead of waiting.
    Failed(String),
}

fn seen(store: &str, answer: &Answer, not_yet: &[StatusCode]) -> Seen {
    // A list that does not hold the new case yet (its `items` empty) has not shown it.
    let listed_nothing = answer.body.get("items").and_then(Value::as_array).is_some_and(Vec::is_empty);
    match answer.status {
        Some(s) if s.is_success() && listed_nothing => Seen::NotYet,
        Some(s) if s.is_success() => Seen::Yes,
        Some(s) if not_yet.contains(&s) => Seen::NotYet,
        _ => Seen::Failed(format!("{store} answered {}: {}", answer.outcome(), answer.body)),
    }
}

/// Asks `path` until it answers 2xx (Ok), or something that will not turn into one (Err),
/// or `patience` runs out (Ok(None)).
async fn until_visible(
    api: &Api,
    store: &str,
    path: &str,
    token: &str,
    patience: Duration,
    pause: Duration,
    not_yet: &[StatusCode],
) -> Result<Option<Duration>, String> {
    let started = Instant::now();
    loop {
        match seen(store, &api.query(path, token).await, not_yet) {
            Seen::Yes => return Ok(Some(started.elapsed())),
            Seen::Failed(why) => return Err(why),
            Seen::NotYet if started.elapsed() > patience => return Ok(None),
            Seen::NotYet => tokio::time::sleep(pause).await,
        }
    }
}

const WAITING: [StatusCode; 1] = [StatusCode::SERVICE_UNAVAILABLE];

/// Opens a case in every tenant and waits until every store shows it, so the lag measured
/// afterwards is not that of provisioning new tenants (schemas, collections, indices).
async fn warm_up(api: &Api, tenants: &[Tenant]) -> anyhow::Result<()> {
    for (n, tenant) in tenants.iter().enumerate() {
        let word = format!("warmup{n}x{}", uuid::Uuid::now_v7().simple());
        let body = open_body(tenant, &mut Rng::new(n as u64), &format!("Probe {word}"));
        let answer = api.command(Method::POST, "/v1/cases", &tenant.token, Some(body)).await;
        let (Some(id), Some(position)) = (answer.body["id"].as_str(), answer.body["position"].as_str()) else {
            anyhow::bail!("warming up: opening a case answered {}: {}", answer.outcome(), answer.body);
        };
        for (store, path, token) in visibility_probes(tenant, id, &word, position) {
            let patience = Duration::from_secs(120);
            match until_visible(api, store, &path, &token, patience, Duration::from_millis(100), &WAITING).await {
                Ok(Some(_)) => {}
                Ok(None) => anyhow::bail!("warming up: {store} did not show a new case within 120 s"),
                Err(why) => anyhow::bail!("warming up: {why}"),
            }
        }
    }
    Ok(())
}

/// Scenario 2: commands at a fixed rate; for every `sample`-th accepted command, how long
/// until the change is visible through the query API in each store, waiting with the
/// position token, and (PostgreSQL) polling without it.
pub async fn lag(api: &Api, tenants: &[Tenant], rate: u64, duration: Duration, sample: u64) -> anyhow::Result<Value> {
    warm_up(api, tenants).await?;
    let started = Instant::now();
    let results: Arc<Mutex<std::collections::BTreeMap<&'static str, Latencies>>> = Default::default();
    let outcomes: Arc<Mutex<Outcomes>> = Default::default();
    // A probe answer that can never turn into a 2xx stops the scenario (see `Seen`).
    let failure: Arc<Mutex<Option<String>>> = Default::default();
    let unseen: Arc<Mutex<std::collections::BTreeMap<&'static str, u64>>> = Default::default();
    let in_flight = Arc::new(Semaphore::new(512));
    let mut tasks = tokio::task::JoinSet::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n: u64 = 0;
    let mut skipped = 0u64;
    while started.elapsed() < duration {
        if let Some(why) = failure.lock().await.clone() {
            anyhow::bail!("lag: a visibility probe failed: {why}");
        }
        ticker.tick().await;
        n += 1;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let api = api.clone();
        let tenant = tenants[(n as usize) % tenants.len()].clone();
        let (results, outcomes) = (results.clone(), outcomes.clone());
        let (failure, unseen) = (failure.clone(), unseen.clone());
        let measure = n.is_multiple_of(sample);
        tasks.spawn(async move {
            let _permit = permit;
            let word = format!("lag{n}x{}", uuid::Uuid::now_v7().simple());
            let mut rng = Rng::new(n);
            let body = open_body(&tenant, &mut rng, &format!("Probe {word}"));
            let answer = api.command(Method::POST, "/v1/cases", &tenant.token, Some(body)).await;
            outcomes.lock().await.count(answer.outcome());
            if !answer.ok() || !measure {
                return;
            }
            let acked = Instant::now();
            let (Some(id), Some(position)) = (answer.body["id"].as_str(), answer.body["position"].as_str()) else {
                return;
            };
            let probes = visibility_probes(&tenant, id, &word, position);
            let patience = Duration::from_secs(30);
            let waits = probes.iter().map(|(name, path, token)| {
                let api = api.clone();
                async move {
                    let waited =
                        until_visible(&api, name, path, token, patience, Duration::from_millis(5), &WAITING).await;
                    (*name, waited.map(|d| d.map(|_| acked.elapsed())))
                }
            });
            let polled = {
                let api = api.clone();
                let token = tenant.token.clone();
                let path = format!("/v1/cases?q={word}");
                async move {
                    // Every 5 ms: finer polling would load the box it measures.
                    let not_yet = [];
                    let name = "postgres (case list, polling)";
                    let polled =
                        until_visible(&api, name, &path, &token, patience, Duration::from_millis(5), &not_yet).await;
                    (name, polled.map(|d| d.map(|_| acked.elapsed())))
                }
            };
            // Every probe runs at once: each measures its own store from the same instant.
            let (waited, polled) = tokio::join!(futures::future::join_all(waits), polled);
            let mut all = results.lock().await;
            for (name, outcome) in waited.into_iter().chain([polled]) {
                match outcome {
                    Ok(Some(d)) => all.entry(name).or_default().record(d),
                    Ok(None) => *unseen.lock().await.entry(name).or_default() += 1,
                    Err(why) => {
                        failure.lock().await.get_or_insert(why);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    if let Some(why) = failure.lock().await.clone() {
        anyhow::bail!("lag: a visibility probe failed: {why}");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let results = results.lock().await.clone();
    let unseen = unseen.lock().await.clone();
    let rows: Vec<(String, Value)> = results.iter().map(|(k, l)| (k.to_string(), l.summary())).collect();
    let outcomes = outcomes.lock().await.clone();
    let sent: u64 = outcomes.0.values().sum();
    print_table(
        &format!(
            "Projection lag at {rate} commands/s target ({:.0} sent/s over {elapsed:.1} s, {skipped} ticks skipped at 512 in flight): \
             time from the command's 2xx until visible",
            sent as f64 / elapsed
        ),
        &rows,
    );
    if !unseen.is_empty() {
        println!("not visible within 30 s (not in the table): {unseen:?}");
    }
    Ok(json!({
        "target_rate": rate,
        "sent_per_second": sent as f64 / elapsed,
        "skipped_ticks": skipped,
        "sample_every": sample,
        "lag": rows.into_iter().collect::<serde_json::Map<_, _>>(),
        "not_visible_within_30_s": unseen,
        "answers_by_status": outcomes.to_json(),
    }))
}

/// Seeds `cases` cases over the tenants through the command API (64 at a time), then
/// waits until the relational read model holds them all.
pub async fn seed(api: &Api, tenants: &[Tenant], cases: u64, concurrency: usize) -> anyhow::Result<Value> {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ids: Arc<Mutex<Vec<(usize, String)>>> = Default::default();
    let last_positions: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![None; tenants.len()]));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let (api, tenants, next, ids) = (api.clone(), tenants.to_vec(), next.clone(), ids.clone());
        let last_positions = last_positions.clone();
        workers.spawn(async move {
            let mut rng = Rng::new(7000 + w as u64);
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= cases {
                    return;
                }
                let t = (n as usize) % tenants.len();
                let words = ["printer", "router", "invoice", "refund", "password", "delivery", "boiler", "contract"];
                let title = format!("{} issue {n}", words[rng.below(8) as usize]);
                let body = open_body(&tenants[t], &mut rng, &title);
                let a = api.command(Method::POST, "/v1/cases", &tenants[t].token, Some(body)).await;
                if let Some(id) = a.body["id"].as_str() {
                    // Sample ids from every tenant (n / tenants cycles the sample over them).
                    if (n / tenants.len() as u64).is_multiple_of(50) {
                        ids.lock().await.push((t, id.to_owned()));
                    }
                    if let Some(p) = a.body["position"].as_str() {
                        last_positions.lock().await[t] = Some(p.to_owned());
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let written = started.elapsed().as_secs_f64();
    // Caught up when the relational read model holds every tenant's last write: a list
    // read with that write's position token answers 200 (503 while it is not there yet).
    let positions = last_positions.lock().await.clone();
    for (tenant, position) in tenants.iter().zip(positions) {
        let Some(position) = position else { continue };
        while !api.query(&format!("/v1/cases?limit=1&position={position}"), &tenant.token).await.ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let caught_up = started.elapsed().as_secs_f64();
    println!(
        "\nSeeded {cases} cases over {} tenants: written in {written:.1} s ({:.0} cases/s), projected by {caught_up:.1} s",
        tenants.len(),
        cases as f64 / written
    );
    let sample = ids.lock().await.clone();
    Ok(json!({ "cases": cases, "write_seconds": written, "projected_seconds": caught_up,
               "sample_ids": sample.into_iter().map(|(t, id)| json!([t, id])).collect::<Vec<_>>() }))
}

/// The tenants and a sample of the cases of an earlier seeding run (`run` is the report's
/// name, e.g. 20261128042407), found in the journal, so the queries can be measured again
/// on the same data without seeding it again.
pub async fn earlier_seed(api: &Api, pool: &sqlx::PgPool, run: &str) -> anyhow::Result<(Vec<Tenant>, Value)> {
    let found: Vec<(uuid::Uuid, uuid::Uuid)> = sqlx::query_as(
        "SELECT s.tenant_id, n.user_id FROM eventstore.tenant_slugs s
         JOIN eventstore.user_names n ON n.tenant_id = s.tenant_id AND n.username = 'bench.agent'
         WHERE s.slug LIKE $1 ORDER BY s.slug",
    )
    .bind(format!("bench-{run}q-%"))
    .fetch_all(pool)
    .await?;
    if found.is_empty() {
        anyhow::bail!("no tenants of a seeding run {run} (slugs bench-{run}q-*) in this journal");
    }
    let mut tenants = Vec::with_capacity(found.len());
    let (mut cases, mut sample) = (0i64, Vec::new());
    for (t, (id, agent)) in found.into_iter().enumerate() {
        sample.extend(crate::rebuild::sample_cases(pool, id).await?.into_iter().map(|case| json!([t, case])));
        let schema = runtime::tenancy::Tenancy(id).pg_schema();
        cases += sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {schema}.cases")).fetch_one(pool).await?;
        // Reads need only the tenant and its agent's token.
        tenants.push(Tenant::of_earlier_run(&api.keys, id, agent));
    }
    println!("\nReusing seeding run {run}: {cases} cases over {} tenants", tenants.len());
    Ok((tenants, json!({ "cases": cases, "reused_run": run, "sample_ids": sample })))
}

/// Makes a read's (tenant index, path) for a request.
type PathMaker = Box<dyn Fn(&mut Rng) -> (usize, String) + Send + Sync>;

/// Scenario 3: reads at a fixed rate over a seeded data set, p50 / p99 per endpoint.
pub async fn queries(api: &Api, tenants: &[Tenant], seeded: &Value, rate: u64, duration: Duration) -> Value {
    let sample: Vec<(usize, String)> = seeded["sample_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p[0].as_u64()? as usize, p[1].as_str()?.to_owned())))
        .collect();
    let endpoints: Vec<(&'static str, PathMaker)> = vec![
        (
            "case list (status, newest first)",
            Box::new(|r: &mut Rng| (r.below(64) as usize, "/v1/cases?status=open&limit=25".to_owned())),
        ),
        (
            "case list (priority, by due)",
            Box::new(|r: &mut Rng| (r.below(64) as usize, "/v1/cases?priority=high&sort=due&limit=25".to_owned())),
        ),
        (
            "case list (full text)",
            Box::new(|r: &mut Rng| (r.below(64) as usize, "/v1/cases?q=router&limit=25".to_owned())),
        ),
        ("case detail", {
            let sample = sample.clone();
            Box::new(move |r: &mut Rng| {
                let (t, id) = &sample[r.below(sample.len() as u64) as usize];
                (*t, format!("/v1/cases/{id}"))
            })
        }),
        ("search", Box::new(|r: &mut Rng| (r.below(64) as usize, "/v1/search/cases?q=invoice&limit=20".to_owned()))),
        ("counters", Box::new(|r: &mut Rng| (r.below(64) as usize, "/v1/counters".to_owned()))),
    ];
    let endpoints = Arc::new(endpoints);
    let results: Arc<Mutex<std::collections::BTreeMap<&'static str, Latencies>>> = Default::default();
    let outcomes: Arc<Mutex<Outcomes>> = Default::default();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0u64;
    while started.elapsed() < duration {
        ticker.tick().await;
        n += 1;
        let (api, tenants, endpoints, results, outcomes) =
            (api.clone(), tenants.to_vec(), endpoints.clone(), results.clone(), outcomes.clone());
        tasks.spawn(async move {
            let mut rng = Rng::new(n);
            let which = (n as usize) % endpoints.len();
            let (name, make) = &endpoints[which];
            let (t, path) = make(&mut rng);
            let tenant = &tenants[t % tenants.len()];
            let a = api.query(&path, &tenant.token).await;
            if !a.ok() && std::env::var_os("MURIMA_BENCH_DEBUG").is_some() {
                eprintln!("{path}: {} {}", a.outcome(), a.body);
            }
            outcomes.lock().await.count(a.outcome());
            if a.ok() {
                results.lock().await.entry(*name).or_default().record(a.took);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let results = results.lock().await.clone();
    let rows: Vec<(String, Value)> = results.iter().map(|(k, l)| (k.to_string(), l.summary())).collect();
    print_table(&format!("Queries at {rate} requests/s over {} seeded cases", seeded["cases"]), &rows);
    json!({ "rate": rate, "latency": rows.into_iter().collect::<serde_json::Map<_, _>>(),
            "answers_by_status": outcomes.lock().await.to_json() })
}

/// The ceilings: how fast the broker takes raw messages (1 KiB, acks=all) and what
/// pgbench's TPC-B-like load does on this PostgreSQL, in the same run.
pub async fn ceilings(brokers: &str, postgres: &str, seconds: u64) -> anyhow::Result<Value> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let topic = "murima.bench.ceiling";
    runtime::kafka::ensure_topic(brokers, topic, 3).await?;
    let producer: FutureProducer = runtime::kafka::client_config(brokers)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .context("creating a producer")?;
    let payload = vec![b'x'; 1024];
    let started = Instant::now();
    let mut sent = 0u64;
    let mut pending = Vec::with_capacity(1000);
    while started.elapsed() < Duration::from_secs(seconds) {
        for i in 0..1000 {
            let key = format!("k{}", (sent + i) % 64);
            let record = FutureRecord::to(topic).key(&key).payload(&payload);
            if let Ok(d) = producer.send_result(record) {
                pending.push(d);
            }
        }
        for d in pending.drain(..) {
            if matches!(d.await, Ok(Ok(_))) {
                sent += 1;
            }
        }
    }
    let produce_rate = sent as f64 / started.elapsed().as_secs_f64();
    // The scratch messages (over a gigabyte in 20 s) would stay in an in-memory broker and
    // slow the scenarios run after this one.
    if let Err(e) = runtime::kafka::delete_topic(brokers, topic).await {
        eprintln!("could not delete the scratch topic {topic}: {e}");
    }
    println!("\nCeilings\nbroker produce (1 KiB, acks=all, 1000 in flight): {produce_rate:.0} messages/s");

    let db = "murima_pgbench";
    let run = |args: Vec<String>| {
        std::process::Command::new("pgbench").args(args).output().context("running pgbench (is it installed?)")
    };
    let _ =
        std::process::Command::new("psql").args([postgres, "-qc", &format!("DROP DATABASE IF EXISTS {db}")]).output();
    std::process::Command::new("psql").args([postgres, "-qc", &format!("CREATE DATABASE {db}")]).output()?;
    let url = format!("{}/{db}", postgres.rsplit_once('/').map(|(base, _)| base).unwrap_or(postgres));
    run(vec!["-i".into(), "-q".into(), "-s".into(), "10".into(), url.clone()])?;
    let out = run(vec!["-c".into(), "16".into(), "-j".into(), "2".into(), "-T".into(), seconds.to_string(), url])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    let _ =
        std::process::Command::new("psql").args([postgres, "-qc", &format!("DROP DATABASE IF EXISTS {db}")]).output();
    println!("pgbench TPC-B-like (scale 10, 16 clients, {seconds} s): {tps:.0} transactions/s");
    Ok(json!({ "broker_produce_per_second": produce_rate, "pgbench_tps": tps }))
}

/// The command API's resident memory in MiB, from /proc (None when its pid is unknown).
fn rss_mib(pid: Option<u32>) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let kib: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

/// Opens cases in `tenants` with `clients` workers for `duration`; accepted per second.
async fn open_cases(api: &Api, tenants: &[Tenant], clients: usize, duration: Duration) -> (f64, Outcomes) {
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..clients {
        let (api, tenant) = (api.clone(), tenants[w % tenants.len()].clone());
        workers.spawn(async move {
            let (mut rng, mut outcomes) = (Rng::new(w as u64 + 7), Outcomes::default());
            while started.elapsed() < duration {
                let body = open_body(&tenant, &mut rng, "Opened during a login flood");
                outcomes.count(api.command(Method::POST, "/v1/cases", &tenant.token, Some(body)).await.outcome());
            }
            outcomes
        });
    }
    let mut outcomes = Outcomes::default();
    while let Some(Ok(o)) = workers.join_next().await {
        outcomes.merge(o);
    }
    let accepted = outcomes.0.iter().filter(|(s, _)| s.starts_with('2')).map(|(_, n)| n).sum::<u64>();
    (accepted as f64 / started.elapsed().as_secs_f64(), outcomes)
}

/// Scenario: `flooders` concurrent clients send wrong logins to one tenant (its real
/// user and made-up ones) for `duration`, while `clients` workers open cases in the other
/// tenants. Reports how the flood was answered, the command API's peak memory, and the
/// other tenants' command throughput before and during the flood.
pub async fn login_flood(
    api: &Api,
    victim: &str,
    tenants: &[Tenant],
    flooders: usize,
    clients: usize,
    duration: Duration,
    pid: Option<u32>,
) -> Value {
    let (before, _) = open_cases(api, tenants, clients, duration).await;
    let rss_before = rss_mib(pid);
    let started = Instant::now();
    let peak = Arc::new(Mutex::new(rss_before.unwrap_or(0.0)));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            while started.elapsed() < duration {
                if let Some(now) = rss_mib(pid) {
                    let mut peak = peak.lock().await;
                    *peak = peak.max(now);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut flood = tokio::task::JoinSet::new();
    for f in 0..flooders {
        let (api, victim) = (api.clone(), victim.to_owned());
        flood.spawn(async move {
            let (mut rng, mut outcomes, mut latencies) =
                (Rng::new(f as u64 + 99), Outcomes::default(), Latencies::default());
            while started.elapsed() < duration {
                let username =
                    if rng.below(2) == 0 { "bench.agent".to_owned() } else { format!("guess.{}", rng.below(1 << 20)) };
                let body = json!({ "tenant": victim, "username": username, "password": "a wrong password guess" });
                let url = format!("{}/v1/auth/login", api.command);
                let sent = Instant::now();
                let status = api.http.post(url).json(&body).send().await.ok().map(|r| r.status());
                latencies.record(sent.elapsed());
                outcomes.count(status.map(|s| s.as_u16().to_string()).unwrap_or_else(|| "error".into()));
            }
            (outcomes, latencies)
        });
    }
    let (during, others) = open_cases(api, tenants, clients, duration).await;
    let (mut outcomes, mut latencies) = (Outcomes::default(), Latencies::default());
    while let Some(Ok((o, l))) = flood.join_next().await {
        outcomes.merge(o);
        latencies.extend(l);
    }
    sampler.abort();
    let peak = *peak.lock().await;
    println!(
        "\nLogin flood: {flooders} clients for {:.0} s against one tenant, {clients} workers opening cases in {} others",
        duration.as_secs_f64(),
        tenants.len()
    );
    println!("  flood answered: {} (latency {})", outcomes.to_json(), latencies.summary());
    println!("  other tenants' accepted commands/s: {before:.1} before, {during:.1} during ({})", others.to_json());
    match rss_before {
        Some(rss) => println!("  command API resident memory: {rss:.0} MiB before, {peak:.0} MiB peak during"),
        None => println!("  command API resident memory: unknown (no --command-pid, no .murima/pids/command-api.pid)"),
    }
    json!({
        "flooders": flooders,
        "clients": clients,
        "seconds": duration.as_secs_f64(),
        "flood_answers": outcomes.to_json(),
        "flood_latency": latencies.summary(),
        "other_tenants_accepted_per_second": { "before": before, "during": during },
        "other_tenants_answers_during": others.to_json(),
        "command_api_rss_mib": { "before": rss_before, "peak": rss_before.map(|_| peak) },
    })
}
