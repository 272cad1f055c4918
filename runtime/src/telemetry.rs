//! Structured JSON logs to stderr; `RUST_LOG` filters (default `info`).

use tracing_subscriber::{fmt, EnvFilter};

pub fn init(service: &'static str) {
    init_with_default(service, "info");
}

/// As `init`, with another filter when `RUST_LOG` is unset (tests default to warnings).
pub fn init_with_default(service: &'static str, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let subscriber =
        fmt().json().with_env_filter(filter).with_writer(std::io::stderr).with_current_span(false).finish();
    // A second init (tests spawn several apps in one process) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
    tracing::info!(service, "telemetry ready");
}
