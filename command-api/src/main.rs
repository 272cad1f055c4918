//! `command-api` serves commands; `command-api token ...` mints a bearer token with the
//! configured secret (for operators, the run script and curl examples).

use anyhow::Context;
use murima_command_api::Application;
use runtime::auth::{JwtKeys, Role};
use runtime::Settings;
use uuid::Uuid;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = Settings::from_env()?;
    if args.first().map(String::as_str) == Some("token") {
        return mint_token(&settings, &args[1..]);
    }
    if args.first().map(String::as_str) == Some("migrate") {
        return migrate(&settings).await;
    }
    runtime::telemetry::init("command-api");
    Application::build(&settings).await?.run_until_stopped().await
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

/// `token --tenant <uuid> --user <uuid> --role agent|supervisor|admin|platform_admin [--hours N]`
fn mint_token(settings: &Settings, args: &[String]) -> anyhow::Result<()> {
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let tenant: Uuid =
        value("--tenant").unwrap_or_else(|| Uuid::nil().to_string()).parse().context("--tenant must be a UUID")?;
    let user: Uuid =
        value("--user").map(|u| u.parse()).transpose().context("--user must be a UUID")?.unwrap_or_else(Uuid::now_v7);
    let role: Role =
        serde_json::from_value(serde_json::Value::String(value("--role").unwrap_or_else(|| "agent".into())))
            .context("--role must be agent, supervisor, admin or platform_admin")?;
    let hours: i64 = value("--hours").unwrap_or_else(|| "24".into()).parse().context("--hours must be a number")?;
    println!("{}", JwtKeys::new(&settings.jwt_secret).issue(user, tenant, role, chrono::Duration::hours(hours)));
    Ok(())
}
