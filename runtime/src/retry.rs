//! The pauses between attempts, for every retry loop of the services: doubling from
//! `first` up to `cap` and staying there (backon's exponential backoff, without jitter:
//! each loop retries one thing of its own, so there is no herd to spread).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// `first`, twice that, ... up to `cap`, for as long as the caller keeps asking.
pub fn delays(first: Duration, cap: Duration) -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::new().with_min_delay(first).with_max_delay(cap).without_max_times().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        // backon multiplies by an f32 factor: 200.000003 ms, say; whole milliseconds here.
        let ms = |n| Duration::from_millis(n);
        let got: Vec<u128> = delays(ms(100), ms(500)).take(5).map(|d| d.as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 500, 500]);
    }
}
