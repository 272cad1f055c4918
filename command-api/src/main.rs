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
    runtime::telemetry::init("command-api");
    Application::build(&settings).await?.run_until_stopped().await
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
