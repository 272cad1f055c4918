//! Latency samples and their percentiles.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Count and p50 / p90 / p99 / max in milliseconds (nearest-rank percentiles).
    pub fn summary(&self) -> Value {
        let mut sorted = self.0.clone();
        sorted.sort();
        let at = |q: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            ms(sorted[rank - 1])
        };
        json!({
            "count": sorted.len(),
            "p50_ms": at(0.50),
            "p90_ms": at(0.90),
            "p99_ms": at(0.99),
            "max_ms": sorted.last().copied().map(ms).unwrap_or(0.0),
        })
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// Answers by HTTP status (and transport errors as "error").
#[derive(Debug, Default, Clone)]
pub struct Outcomes(pub BTreeMap<String, u64>);

impl Outcomes {
    pub fn count(&mut self, outcome: impl Into<String>) {
        *self.0.entry(outcome.into()).or_default() += 1;
    }

    pub fn merge(&mut self, other: Outcomes) {
        for (k, v) in other.0 {
            *self.0.entry(k).or_default() += v;
        }
    }

    pub fn to_json(&self) -> Value {
        json!(self.0)
    }
}

/// Prints rows of (name, summary) as an aligned table.
pub fn print_table(title: &str, rows: &[(String, Value)]) {
    println!("\n{title}");
    let width = rows.iter().map(|(name, _)| name.chars().count()).max().unwrap_or(0).max(34);
    println!("{:<width$} {:>9} {:>9} {:>9} {:>9} {:>9}", "", "count", "p50 ms", "p90 ms", "p99 ms", "max ms");
    for (name, s) in rows {
        println!(
            "{:<width$} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            name,
            s["count"].to_string(),
            s["p50_ms"].as_f64().unwrap_or(0.0),
            s["p90_ms"].as_f64().unwrap_or(0.0),
            s["p99_ms"].as_f64().unwrap_or(0.0),
            s["max_ms"].as_f64().unwrap_or(0.0)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut l = Latencies::default();
        for i in 1..=100 {
            l.record(Duration::from_millis(i));
        }
        let s = l.summary();
        assert_eq!(s["p50_ms"], 50.0);
        assert_eq!(s["p99_ms"], 99.0);
        assert_eq!(s["max_ms"], 100.0);
    }
}
