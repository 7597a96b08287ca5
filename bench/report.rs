//! The printed table. Overhead columns subtract, percentile by percentile, the baseline
//! measured in the same run at the same concurrency.

use crate::load::{Latencies, Step, highest_holding};

pub fn latency_header() {
    println!(
        "{:<44} {:>4} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "scenario", "conc", "n", "p50 ms", "p99 ms", "req/s", "ovh p50", "ovh p99"
    );
}

pub fn section(title: &str) {
    println!("{title}");
}

/// One figure of the memory and import sections.
pub fn figure(label: &str, value: String) {
    println!("  {label:<66} {value:>10}");
}

pub fn row(label: &str, concurrency: usize, latencies: &Latencies, baseline: Option<&Latencies>) {
    let overhead = baseline.map_or(String::new(), |b| {
        format!(
            " {:>8.3} {:>8.3}",
            latencies.p(0.50) - b.p(0.50),
            latencies.p(0.99) - b.p(0.99)
        )
    });
    println!(
        "  {:<42} {:>4} {:>7} {:>8.3} {:>8.3} {:>8.0}{overhead}",
        label,
        concurrency,
        latencies.samples.len(),
        latencies.p(0.50),
        latencies.p(0.99),
        latencies.rate(),
    );
}

pub fn frontier_header(thresholds: &[f64]) {
    let columns: Vec<String> = thresholds
        .iter()
        .map(|t| format!("{:>16}", format!("p99 ≤ {t} ms")))
        .collect();
    println!("{:<44}{}", "endpoint (instant upstream)", columns.concat());
}

pub fn frontier_row(label: &str, thresholds: &[f64], steps: &[Step]) {
    let columns: Vec<String> = thresholds
        .iter()
        .map(|&t| match highest_holding(steps, t) {
            Some(rate) => format!("{:>10.0} req/s", rate),
            None => format!("{:>16}", "none tried held"),
        })
        .collect();
    println!("  {:<42}{}", label, columns.concat());
}

/// Every step of the searches, so each frontier can be checked against what was measured.
pub fn steps(searches: &[(&str, &[Step])]) {
    println!(
        "  {:<32} {:>10} {:>7} {:>10} {:>8} {:>8} {:>7} {:>7}",
        "steps", "offered/s", "n", "answered/s", "p50 ms", "p99 ms", "failed", "shed"
    );
    for (label, steps) in searches {
        for step in steps.iter() {
            println!(
                "  {:<32} {:>10.0} {:>7} {:>10.0} {:>8.3} {:>8.3} {:>7} {:>7}",
                label,
                step.offered,
                step.ok,
                step.latencies.rate(),
                step.latencies.p(0.50),
                step.latencies.p(0.99),
                step.failed,
                step.shed,
            );
            if let Some(err) = &step.first_error {
                println!("    first failure: {err}");
            }
        }
    }
}
