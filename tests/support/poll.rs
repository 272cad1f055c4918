//! Waiting for eventually consistent read models.

use std::future::Future;
use std::time::Duration;

/// Polls `check` until it returns Some or 90 s pass (read models are eventually consistent).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(Some(value)) = tokio::time::timeout_at(deadline, check()).await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
