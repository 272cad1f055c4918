//! `murima-admin`: the operator's command line. It talks to the stores directly, with the
//! same environment as the services (MURIMA_* variables), so it works while the
//! projector runs and while it does not. The projector serves the same commands over
//! HTTP under `/v1/admin` for platform administrators.

use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use murima_projector::operations::{self, From};
use murima_projector::rebuild;
use murima_projector::stores::{ProjectionName, Stores};
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "murima-admin", about = "Operate Murima's projections: status, rebuild, replay, parked events")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every projection: checkpoint, lag (events and seconds), events/s, parked, last error.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Rebuilds a projection into a fresh copy from the journal and switches reads to it.
    /// Run it again to resume an interrupted rebuild; --abandon drops the copy instead.
    Rebuild {
        projection: ProjectionName,
        #[arg(long)]
        tenant: Option<Uuid>,
        #[arg(long)]
        abandon: bool,
    },
    /// Recent rebuilds and where they are.
    Rebuilds {
        #[arg(long)]
        json: bool,
    },
    /// Re-applies the journal from a position or an RFC 3339 time (idempotent).
    Replay {
        projection: ProjectionName,
        #[arg(long)]
        from: From,
        #[arg(long)]
        tenant: Option<Uuid>,
    },
    /// Poison events, per stream.
    Parked {
        #[command(subcommand)]
        action: Parked,
    },
    /// Moves Elasticsearch indices to the current mapping (seed §7.1.3): a new versioned
    /// index per month, a reindex, an atomic alias swap.
    EsMigrate {
        #[arg(long)]
        tenant: Option<Uuid>,
        /// cases, notes, interactions, audit-logs or lookups (default: all five).
        #[arg(long)]
        entity: Option<String>,
    },
    /// Compares each read model with the journal (streams and versions per tenant) and
    /// lists missing, stale and extra streams; --repair re-applies the missing and stale.
    Verify {
        /// One projection (default: all seven).
        #[arg(long)]
        projection: Option<ProjectionName>,
        #[arg(long)]
        tenant: Option<Uuid>,
        #[arg(long)]
        repair: bool,
        /// Events younger than this are still on their way and not compared.
        #[arg(long, default_value_t = 30)]
        grace_secs: u64,
        #[arg(long)]
        json: bool,
    },
    /// Queues the journal from a position for the relay to publish again (a broker that
    /// lost its log). Idempotent.
    Republish {
        #[arg(long)]
        from: i64,
    },
    /// Archives and removes each tenant's expired months of interactions and audit
    /// entries (its `retention_days`, 365 by default); --dry-run lists them only.
    Retention {
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Restores a tenant's archived month (see `retention`).
    #[command(subcommand)]
    Archive(Archive),
}

#[derive(Subcommand)]
enum Archive {
    /// Puts a tenant's archived month of interactions (PostgreSQL) or audit entries
    /// (MongoDB) back, each archive file checked against the manifest's SHA-256; refused
    /// while the month is past the tenant's retention (raise it first).
    Restore {
        #[arg(long)]
        tenant: uuid::Uuid,
        /// interactions or audit_logs
        #[arg(long)]
        kind: String,
        /// YYYY-MM
        #[arg(long)]
        month: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum Parked {
    List {
        #[arg(long)]
        projection: Option<ProjectionName>,
        #[arg(long)]
        after: Option<Uuid>,
        /// With --after: the tenant of that stream (where the last page ended).
        #[arg(long, requires = "after")]
        after_tenant: Option<Uuid>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Applies a stream's parked events again (after the cause was fixed).
    Retry {
        projection: ProjectionName,
        stream: Uuid,
        /// The tenant of the stream (default: that stream id in every tenant).
        #[arg(long)]
        tenant: Option<Uuid>,
    },
    /// Gives up on a stream's parked events (kept in projector.skipped_events).
    Skip {
        projection: ProjectionName,
        stream: Uuid,
        /// The tenant of the stream (default: that stream id in every tenant).
        #[arg(long)]
        tenant: Option<Uuid>,
    },
}

/// Output is gathered and written once at the end, so a closed pipe (`| head`) ends the
/// program quietly instead of panicking in `println!`.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

fn flush(out: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // Read-only or not, an operator's command checks no bearer token: no secret needed.
    let settings = runtime::config::exit_on_error("murima-admin", runtime::Settings::for_operator());
    // `status` answers even when a store does not: it gives up after a bound.
    let outcome = if matches!(cli.command, Command::Status { .. }) {
        match tokio::time::timeout(STATUS_DEADLINE, run(cli, settings)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow::anyhow!(
                "no answer within {STATUS_DEADLINE:?}: a store is not answering (status reads projector.progress \
                 in PostgreSQL and asks the broker for its offsets)"
            )),
        }
    } else {
        run(cli, settings).await
    };
    runtime::config::exit_on_error("murima-admin", outcome)
}

/// Longest `status` takes before it says which store does not answer.
const STATUS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

async fn run(cli: Cli, settings: runtime::Settings) -> anyhow::Result<()> {
    let mut out = String::new();
    // Logs (JSON, stderr) stay out of the tables and JSON on stdout; warnings and up.
    runtime::telemetry::init_with_default("murima-admin", "warn");
    let stores = Stores::connect_on_demand(&settings, 4).await?;
    match cli.command {
        Command::Status { json } => {
            let statuses = operations::status(&stores).await?;
            if json {
                say!(out, "{}", serde_json::to_string_pretty(&statuses)?);
            } else {
                say!(
                    out,
                    "{:<24} {:<13} {:>10} {:>10} {:>9} {:>9} {:>11} {:>8} {:>19}  last error / restart",
                    "projection",
                    "store",
                    "position",
                    "lag",
                    "lag s",
                    "events/s",
                    "parked s/e",
                    "restarts",
                    "retrying since"
                );
                for s in statuses {
                    let lag = s.lag_events.map_or("?".to_owned(), |l| l.to_string());
                    let error = match (&s.last_error, s.last_error_at) {
                        (Some(e), Some(at)) => format!(
                            "{}: {} ({})",
                            s.last_error_class.as_deref().unwrap_or("error"),
                            first_line(e),
                            at.format("%Y-%m-%d %H:%M:%S")
                        ),
                        _ => "-".to_owned(),
                    };
                    let retrying =
                        s.retrying_since.map_or("-".to_owned(), |at| at.format("%Y-%m-%d %H:%M:%S").to_string());
                    let restart = match (&s.last_restart_reason, s.last_restart_at) {
                        (Some(why), Some(at)) => format!(" / {} ({})", first_line(why), at.format("%Y-%m-%d %H:%M:%S")),
                        _ => String::new(),
                    };
                    say!(
                        out,
                        "{:<24} {:<13} {:>10} {:>10} {:>9.1} {:>9.1} {:>11} {:>8} {:>19}  {error}{restart}",
                        s.projection,
                        s.store,
                        s.last_position,
                        lag,
                        s.lag_seconds,
                        s.events_per_sec,
                        format!("{}/{}", s.parked_streams, s.parked),
                        s.restarts,
                        retrying
                    );
                }
            }
        }
        Command::Rebuild { projection, tenant, abandon } => {
            if abandon {
                let done = rebuild::abandon(&stores, projection).await?;
                match done.clean_up_pending {
                    None => say!(
                        out,
                        "abandoned rebuild {} of {projection}; its copy is dropped and the live copy untouched",
                        done.id
                    ),
                    Some(why) => say!(
                        out,
                        "abandoned rebuild {} of {projection}; the live copy is untouched. Its copy is still there ({why}): \
                         the projector drops it once the store answers, or the next rebuild does",
                        done.id
                    ),
                }
            } else {
                let bar = bar("events");
                let report = rebuild::run(&stores, projection, tenant, &|done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                })
                .await?;
                bar.finish_and_clear();
                say!(
                    out,
                    "rebuilt {} for {} tenant(s){}: {} events in {:.1} s ({:.0} events/s); live worker paused {:.0} ms for the switch",
                    report.projection,
                    report.tenants,
                    if report.resumed { " (resumed)" } else { "" },
                    report.events,
                    report.seconds,
                    report.events_per_sec,
                    report.switch_ms
                );
            }
        }
        Command::Verify { projection, tenant, repair, grace_secs, json } => {
            let reports =
                murima_projector::verify::verify(&stores, projection, tenant, Duration::from_secs(grace_secs), repair)
                    .await?;
            if json {
                say!(out, "{}", serde_json::to_string_pretty(&reports)?);
            } else {
                say!(
                    out,
                    "{:<24} {:>8} {:>9} {:>8} {:>6} {:>6} {:>9} {:>10}",
                    "projection",
                    "tenants",
                    "streams",
                    "missing",
                    "stale",
                    "extra",
                    "repaired",
                    "unrepaired"
                );
                for r in &reports {
                    say!(
                        out,
                        "{:<24} {:>8} {:>9} {:>8} {:>6} {:>6} {:>9} {:>10}",
                        r.projection,
                        r.tenants,
                        r.streams_compared,
                        r.missing,
                        r.stale,
                        r.extra,
                        r.repaired_streams,
                        r.unrepaired
                    );
                }
                for d in reports.iter().flat_map(|r| r.discrepancies.iter().map(move |d| (&r.projection, d))) {
                    say!(
                        out,
                        "{} {:?} {} {} of tenant {}: journal v{} held v{}",
                        d.0,
                        d.1.finding,
                        d.1.what,
                        d.1.stream_id,
                        d.1.tenant_id,
                        d.1.journal_version.map_or("-".into(), |v| v.to_string()),
                        d.1.held_version.map_or("-".into(), |v| v.to_string())
                    );
                }
            }
        }
        Command::Rebuilds { json } => {
            let rebuilds = rebuild::list(&stores.pool, 20).await?;
            if json {
                say!(out, "{}", serde_json::to_string_pretty(&rebuilds)?);
            } else {
                say!(
                    out,
                    "{:<36} {:<12} {:<10} {:>10} {:>10} {:>10}  tenant",
                    "id",
                    "projection",
                    "state",
                    "position",
                    "target",
                    "events"
                );
                for r in rebuilds {
                    let tenant = r.tenant_id.map_or("all".to_owned(), |t| t.to_string());
                    say!(
                        out,
                        "{:<36} {:<12} {:<10} {:>10} {:>10} {:>10}  {tenant}",
                        r.id,
                        r.projection,
                        r.state,
                        r.position,
                        r.target_position,
                        r.events_applied
                    );
                }
            }
        }
        Command::Replay { projection, from, tenant } => {
            let bar = bar("positions");
            let applied = operations::replay(&stores, projection, tenant, from, &|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .await?;
            bar.finish_and_clear();
            say!(out, "re-applied {applied} events to {projection}");
        }
        Command::Parked { action } => match action {
            Parked::List { projection, after, after_tenant, limit, json } => {
                let streams = operations::parked(&stores.pool, projection, after, after_tenant, limit).await?;
                if json {
                    say!(out, "{}", serde_json::to_string_pretty(&streams)?);
                } else {
                    say!(
                        out,
                        "{:<24} {:<36} {:<36} {:>6} {:>8}  first event / error",
                        "projection",
                        "stream",
                        "tenant",
                        "events",
                        "version"
                    );
                    for s in streams {
                        say!(
                            out,
                            "{:<24} {:<36} {:<36} {:>6} {:>8}  {} {}: {}",
                            s.projection,
                            s.stream_id,
                            s.tenant_id,
                            s.events,
                            s.first_version,
                            s.first_event_type,
                            s.first_event_id,
                            first_line(&s.error)
                        );
                    }
                }
            }
            Parked::Retry { projection, stream, tenant } => {
                let applied = operations::retry_parked(&stores, projection, stream, tenant).await?;
                say!(out, "applied {applied} parked events of stream {stream}{} to {projection}", of_tenant(tenant));
            }
            Parked::Skip { projection, stream, tenant } => {
                let skipped = operations::skip_parked(&stores, projection, stream, tenant).await?;
                say!(out, "skipped {skipped} parked events of stream {stream}{} for {projection}", of_tenant(tenant));
            }
        },
        Command::EsMigrate { tenant, entity } => {
            let migrated = murima_projector::mappings::migrate(&stores, tenant, entity.as_deref()).await?;
            for m in &migrated {
                say!(out, "{}: {} -> {} ({} documents)", m.alias, m.from, m.to, m.documents);
            }
            say!(out, "{} indices migrated", migrated.len());
        }
        Command::Republish { from } => {
            anyhow::ensure!(from >= 1, "--from must be a journal position, 1 or more");
            let queued = operations::republish(&stores.pool, from).await?;
            say!(out, "queued {queued} events from position {from} for the relay to publish");
        }
        Command::Archive(Archive::Restore { tenant, kind, month, json }) => {
            let restored = murima_projector::retention::restore(&stores, tenant, &kind, &month).await?;
            if json {
                say!(out, "{}", serde_json::to_string_pretty(&restored)?);
            } else {
                say!(
                    out,
                    "tenant {tenant} {month}: restored {} {kind} from {} archive files",
                    restored.records,
                    restored.files.len()
                );
            }
        }
        Command::Retention { dry_run, json } => {
            let expired = murima_projector::retention::run(&stores, chrono::Utc::now(), dry_run).await?;
            if json {
                say!(out, "{}", serde_json::to_string_pretty(&expired)?);
            } else {
                let verb = if dry_run { "would remove" } else { "removed" };
                for e in &expired {
                    let archive =
                        e.archive.as_ref().map(|p| format!(", archived in {}", p.display())).unwrap_or_default();
                    say!(
                        out,
                        "tenant {} {}: {verb} {} {} and {} indices{archive}",
                        e.tenant_id,
                        e.month,
                        e.records,
                        e.kind,
                        e.indices.len()
                    );
                }
                say!(out, "{} expired months", expired.len());
            }
        }
    }
    flush(&out)
}

fn bar(unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    let template =
        format!("{{spinner}} [{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}, ETA {{eta}})");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// " of tenant T" when the operator named one.
fn of_tenant(tenant: Option<Uuid>) -> String {
    tenant.map(|t| format!(" of tenant {t}")).unwrap_or_default()
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}
