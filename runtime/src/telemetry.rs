//! Structured JSON logs to stderr; `RUST_LOG` filters (default `info`).
//!
//! PostgreSQL's NOTICEs ("relation … already exists, skipping", written by every
//! idempotent provisioning and partition check, hundreds a minute under load) arrive
//! from sqlx at INFO. They are shown only when `RUST_LOG` names sqlx itself, e.g.
//! `RUST_LOG=info,sqlx::postgres::notice=info`.

use tracing_subscriber::{fmt, EnvFilter};

pub fn init(service: &'static str) {
    init_with_default(service, "info");
}

/// As `init`, with another filter when `RUST_LOG` is unset (tests default to warnings).
pub fn init_with_default(service: &'static str, default_filter: &str) {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| default_filter.to_owned());
    let filter = EnvFilter::new(with_quiet_notices(&directives));
    let subscriber =
        fmt().json().with_env_filter(filter).with_writer(std::io::stderr).with_current_span(false).finish();
    // A second init (tests spawn several apps in one process) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
    tracing::info!(service, "telemetry ready");
}

/// Adds `sqlx::postgres::notice=warn` to directives that say nothing about sqlx.
fn with_quiet_notices(directives: &str) -> String {
    if directives.contains("sqlx") {
        directives.to_owned()
    } else if directives.trim().is_empty() {
        "sqlx::postgres::notice=warn".to_owned()
    } else {
        format!("{directives},sqlx::postgres::notice=warn")
    }
}

#[cfg(test)]
mod tests {
    use super::with_quiet_notices;

    #[test]
    fn notices_are_quiet_unless_sqlx_is_named() {
        assert_eq!(with_quiet_notices("info"), "info,sqlx::postgres::notice=warn");
        assert_eq!(with_quiet_notices(""), "sqlx::postgres::notice=warn");
        assert_eq!(with_quiet_notices("debug,sqlx=trace"), "debug,sqlx=trace");
    }
}
