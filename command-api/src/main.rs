//! `command-api` serves commands; `command-api token ...` mints a bearer token with the
//! configured secret (for operators, the run script and curl examples).

use clap::{Parser, Subcommand};
use murima_command_api::Application;
use runtime::auth::{JwtKeys, Role};
use runtime::Settings;
use uuid::Uuid;

/// mimalloc, not glibc's malloc: under load glibc's allocator took a quarter of the
/// command API's CPU (`perf`, BENCHMARKS.md, session 23).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The command API; with no subcommand it serves (configured by the MURIMA_* environment).
#[derive(Parser)]
#[command(name = "command-api", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Task>,
}

#[derive(Subcommand)]
enum Task {
    /// Mints an operator's bearer token with the configured secret (MURIMA_JWT_SECRET).
    Token {
        /// The tenant the token acts in (the nil UUID: none, as a platform token).
        #[arg(long, default_value_t = Uuid::nil())]
        tenant: Uuid,
        /// The user the token names (a new UUID when not given).
        #[arg(long)]
        user: Option<Uuid>,
        /// agent, supervisor, admin or platform_admin.
        #[arg(long, default_value = "agent", value_parser = parse_role)]
        role: Role,
        /// How long the token is valid.
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(i64).range(1..=8760))]
        hours: i64,
    },
    /// Applies the migrations and sets the services' passwords, then exits.
    Migrate,
}

fn parse_role(raw: &str) -> Result<Role, String> {
    serde_json::from_value(serde_json::Value::String(raw.to_owned()))
        .map_err(|_| format!("{raw:?} is not a role: agent, supervisor, admin or platform_admin"))
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let settings = runtime::config::exit_on_error("command-api", Settings::from_env());
    runtime::config::exit_on_error("command-api", run(cli, settings).await)
}

async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    match cli.command {
        Some(Task::Token { tenant, user, role, hours }) => {
            let user = user.unwrap_or_else(Uuid::now_v7);
            let token = JwtKeys::new(&settings.jwt_secret).issue(user, tenant, role, chrono::Duration::hours(hours));
            println!("{token}");
            Ok(())
        }
        Some(Task::Migrate) => migrate(&settings).await,
        None => {
            runtime::telemetry::init("command-api");
            Application::build(&settings).await?.run_until_stopped().await
        }
    }
}

/// `migrate`: applies the migrations with MURIMA_MIGRATION_DATABASE_URL (an owner of the
/// database) and sets the services' login passwords from MURIMA_COMMAND_DB_PASSWORD,
/// MURIMA_PROJECTOR_DB_PASSWORD and MURIMA_QUERY_DB_PASSWORD, when given: the one-shot job
/// that lets the services run as their own roles with MURIMA_MIGRATION_DATABASE_URL=none.
async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let runtime::Migrations::With(owner) = &settings.migrations else {
        anyhow::bail!("migrate needs MURIMA_MIGRATION_DATABASE_URL: the URL of a role that owns the database");
    };
    let pool = runtime::db::connect_and_migrate(owner, 2).await?;
    for (role, var) in [
        ("murima_command", "MURIMA_COMMAND_DB_PASSWORD"),
        ("murima_projector", "MURIMA_PROJECTOR_DB_PASSWORD"),
        ("murima_query", "MURIMA_QUERY_DB_PASSWORD"),
    ] {
        if let Ok(password) = std::env::var(var) {
            // ALTER ROLE takes no parameters; quote the password as a literal.
            let literal: String =
                sqlx::query_scalar("SELECT quote_literal($1)").bind(&password).fetch_one(&pool).await?;
            sqlx::query(&format!("ALTER ROLE {role} WITH LOGIN PASSWORD {literal}")).execute(&pool).await?;
            println!("set the password of {role}");
        }
    }
    println!("migrated");
    Ok(())
}
