//! `murima-bench`: drives the running system (the one `scripts/run.sh` starts) over HTTP
//! the way clients do, and prints what users of an event-sourced backend care about:
//! accepted commands per second and their latency, the lag from a command's answer to
//! its visibility in each read model, read latency on a seeded data set, and the
//! ceilings (raw broker produce rate, pgbench) measured in the same run. It reports
//! numbers; it is not a test and judges nothing.

mod client;
mod rebuild;
mod scenarios;
mod statements;
mod stats;

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use scenarios::Tokens;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Every scenario, briefly (queries over a small seeded set unless --cases says more).
    All,
    /// Command throughput: --clients workers issuing a realistic mix.
    Commands,
    /// Projection lag at a fixed command rate, per store.
    Lag,
    /// Seed --cases cases (default 1,000,000), then read at --query-rate.
    Queries,
    /// Seed --cases cases only.
    Seed,
    /// The raw broker produce rate and pgbench, as ceilings.
    Ceilings,
    /// Rebuild PostgreSQL and Redis from --rebuild-events journal events, against a naive
    /// one-event-per-transaction replay of --naive-events of them.
    Rebuild,
    /// --flooders concurrent wrong logins against one tenant while --clients workers open
    /// cases in --tenants others (not part of `all`).
    LoginFlood,
}

#[derive(Debug, Parser)]
#[command(about = "Load generator and benchmarks for a running Murima")]
struct Args {
    #[arg(long, value_enum, default_value = "all")]
    scenario: Scenario,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    command_url: String,
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    query_url: String,
    /// The HS256 secret the services use (default: MURIMA_JWT_SECRET, else .murima/jwt-secret).
    #[arg(long)]
    secret: Option<String>,
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// A PostgreSQL URL for pgbench (its database is created and dropped).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    /// Concurrent clients of the command scenario.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Tenants the command and lag scenarios spread over.
    #[arg(long, default_value_t = 4)]
    tenants: usize,
    /// Seconds each timed scenario runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Commands per second of the lag scenario.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Measure visibility for every Nth command of the lag scenario. Each measured command
    /// polls five reads until it is visible, so dense sampling loads the box it measures:
    /// at 100 commands/s use about 50.
    #[arg(long, default_value_t = 100)]
    lag_sample: u64,
    /// Cases to seed for the query scenario (default 1,000,000; 10,000 under `all`).
    #[arg(long)]
    cases: Option<u64>,
    /// Tenants the seeded cases spread over.
    #[arg(long, default_value_t = 10)]
    query_tenants: usize,
    /// Seed the query scenario straight into the journal and build the relational and
    /// Redis read models with a rebuild (fast; search then covers only what
    /// Elasticsearch held before), instead of through the command API.
    #[arg(long)]
    seed_from_journal: bool,
    /// Measure the queries again on the tenants of an earlier seeding run (the name of its
    /// report, e.g. 20261128042407) instead of seeding new ones.
    #[arg(long)]
    reuse_seed: Option<String>,
    /// Reads per second of the query scenario.
    #[arg(long, default_value_t = 200)]
    query_rate: u64,
    /// Journal events the rebuild scenario seeds (default 200,000; 20,000 under `all`).
    #[arg(long)]
    rebuild_events: Option<u64>,
    /// How many of them the naive replay applies (it is slow by design).
    #[arg(long, default_value_t = 5_000)]
    naive_events: u64,
    /// Concurrent wrong-login clients of the login-flood scenario.
    #[arg(long, default_value_t = 400)]
    flooders: usize,
    /// The command API's pid, to sample its memory (default: .murima/pids/command-api.pid).
    #[arg(long)]
    command_pid: Option<u32>,
    /// Where to write the JSON report (default bench-results/<UTC time>.json).
    #[arg(long)]
    out: Option<String>,
}

fn secret(args: &Args) -> anyhow::Result<String> {
    if let Some(s) = &args.secret {
        return Ok(s.clone());
    }
    if let Ok(s) = std::env::var("MURIMA_JWT_SECRET") {
        return Ok(s);
    }
    std::fs::read_to_string(".murima/jwt-secret")
        .map(|s| s.trim().to_owned())
        .context("no --secret, MURIMA_JWT_SECRET or .murima/jwt-secret (start the system with scripts/run.sh)")
}

/// The stores as the services see them (MURIMA_* variables, else the local stack).
async fn stores() -> anyhow::Result<projector::stores::Stores> {
    projector::stores::Stores::connect(&runtime::Settings::for_operator()?, 8).await
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Seeds the query scenario's cases: straight into the journal, or through the command API.
async fn seed_query_set(
    args: &Args,
    api: &client::Api,
    tenants: &[client::Tenant],
    cases: u64,
) -> anyhow::Result<serde_json::Value> {
    if args.seed_from_journal {
        rebuild::seed_through_journal(&stores().await?, tenants, cases).await
    } else {
        scenarios::seed(api, tenants, cases, 64).await
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // A run stopped from outside (a `timeout`, Ctrl-C) says so and how long it ran,
    // instead of ending without a word after its first lines (issue 29: a rebuild run
    // wedged on a store that stopped answering was ended that way).
    let started = std::time::Instant::now();
    let outcome = tokio::select! {
        outcome = run(args) => outcome,
        signal = stopped() => Err(anyhow::anyhow!(
            "stopped by {signal} after {:.0} s, before the figures were printed; a rebuild it left unfinished \
             is abandoned by the next rebuild run",
            started.elapsed().as_secs_f64()
        )),
    };
    runtime::config::exit_on_error("murima-bench", outcome)
}

/// Waits for SIGTERM or SIGINT; which one came.
async fn stopped() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Logs (JSON, stderr) only when RUST_LOG asks: the tables on stdout are the output.
    runtime::telemetry::init_with_default("murima-bench", "error");
    let api = client::Api::new(&args.command_url, &args.query_url, &secret(&args)?, args.clients.max(64))?;
    let run = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let wants = |s: Scenario| args.scenario == s || args.scenario == Scenario::All;
    let duration = Duration::from_secs(args.seconds);
    let mut results = serde_json::Map::new();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("murima-bench: scenario {:?}, commit {}, {cores} cores", args.scenario, commit());

    if wants(Scenario::Ceilings) {
        results.insert("ceilings".into(), scenarios::ceilings(&args.brokers, &args.postgres, args.seconds).await?);
    }
    if wants(Scenario::Commands) || wants(Scenario::Lag) {
        let agents = args.clients.div_ceil(args.tenants.max(1));
        let tenants = api.tenants(&format!("{run}c"), args.tenants, agents).await?;
        if wants(Scenario::Commands) {
            let statements = statements::Statements::connect(&runtime::Settings::for_operator()?.database_url).await;
            let before = match &statements {
                Some(s) => s.so_far().await,
                None => None,
            };
            let mut users = scenarios::commands(&api, &tenants, args.clients, duration, Tokens::Login).await;
            let after = match &statements {
                Some(s) => s.so_far().await,
                None => None,
            };
            let accepted = users["accepted"].as_f64().unwrap_or(0.0);
            if let (Some(before), Some(after)) = (before, after) {
                let per_command = (after - before) as f64 / accepted.max(1.0);
                println!(
                    "PostgreSQL statements of the command API per accepted command: {per_command:.2} \
                     ({} statements, relay included, {accepted:.0} commands)",
                    after - before
                );
                users["statements_per_command"] = per_command.into();
            }
            // A relay slower than the commands shows here, not in the command rate: what it
            // has not published by the end of the run.
            if let Some(unrelayed) = match &statements {
                Some(s) => s.unrelayed().await,
                None => None,
            } {
                println!("events not yet relayed to the broker at the end of the run: {unrelayed}");
                users["unrelayed_at_end"] = unrelayed.into();
            }
            let operators = scenarios::commands(&api, &tenants, args.clients, duration, Tokens::Operator).await;
            let rate = |r: &serde_json::Value| r["accepted_per_second"].as_f64().unwrap_or(0.0);
            println!(
                "\nlogin tokens: {:.0} accepted/s; operator tokens: {:.0} accepted/s ({:.2}x)",
                rate(&users),
                rate(&operators),
                rate(&users) / rate(&operators).max(f64::MIN_POSITIVE)
            );
            results.insert("commands".into(), users);
            results.insert("commands_operator_tokens".into(), operators);
        }
        if wants(Scenario::Lag) {
            results.insert("lag".into(), scenarios::lag(&api, &tenants, args.rate, duration, args.lag_sample).await?);
        }
    }
    if wants(Scenario::Queries) || args.scenario == Scenario::Seed {
        let cases = args.cases.unwrap_or(if args.scenario == Scenario::All { 10_000 } else { 1_000_000 });
        let (tenants, seeded) = match &args.reuse_seed {
            Some(earlier) => scenarios::earlier_seed(&api, &stores().await?.pool, earlier).await?,
            None => {
                let tenants = api.tenants(&format!("{run}q"), args.query_tenants, 1).await?;
                let seeded = seed_query_set(&args, &api, &tenants, cases).await?;
                (tenants, seeded)
            }
        };
        if args.scenario != Scenario::Seed {
            results
                .insert("queries".into(), scenarios::queries(&api, &tenants, &seeded, args.query_rate, duration).await);
        }
        let mut seeded = seeded;
        if let Some(s) = seeded.as_object_mut() {
            s.remove("sample_ids");
        }
        results.insert("seed".into(), seeded);
    }

    if args.scenario == Scenario::LoginFlood {
        let tenants = api.tenants(&format!("{run}f"), args.tenants + 1, 1).await?;
        let victim = format!("bench-{run}f-{}", args.tenants);
        let pid = args.command_pid.or_else(|| {
            std::fs::read_to_string(".murima/pids/command-api.pid").ok().and_then(|p| p.trim().parse().ok())
        });
        let flood =
            scenarios::login_flood(&api, &victim, &tenants[..args.tenants], args.flooders, args.clients, duration, pid)
                .await;
        results.insert("login_flood".into(), flood);
    }

    if wants(Scenario::Rebuild) {
        let events = args.rebuild_events.unwrap_or(if args.scenario == Scenario::All { 20_000 } else { 200_000 });
        let tenant = api.tenant(&format!("{run}r"), 0, 1).await?;
        results.insert("rebuild".into(), rebuild::rebuild(&stores().await?, &tenant, events, args.naive_events).await?);
    }

    let report = json!({
        "date": chrono::Utc::now(),
        "commit": commit(),
        "cores": cores,
        "parameters": {
            "scenario": format!("{:?}", args.scenario).to_lowercase(),
            "clients": args.clients, "tenants": args.tenants, "seconds": args.seconds, "rate": args.rate,
            "lag_sample": args.lag_sample, "cases": args.cases, "query_tenants": args.query_tenants,
            "query_rate": args.query_rate, "reuse_seed": args.reuse_seed, "rebuild_events": args.rebuild_events, "seed_from_journal": args.seed_from_journal, "naive_events": args.naive_events,
        },
        "results": results,
    });
    let out = args.out.clone().unwrap_or_else(|| format!("bench-results/{run}.json"));
    if let Some(dir) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&report)?).with_context(|| format!("writing {out}"))?;
    println!("\nreport written to {out}");
    Ok(())
}
