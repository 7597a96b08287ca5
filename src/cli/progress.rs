//! Progress on stderr: a bar with rate and ETA on a terminal, plain lines otherwise (logs,
//! CI), at most one every few seconds.

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    started: Instant,
    /// Bytes and messages already done when this run started (a resumed import).
    base_bytes: u64,
    last_line: Instant,
}

/// What the caller reports at each step.
pub struct Counts {
    pub bytes: u64,
    pub sessions: u64,
    pub messages: u64,
    /// Messages done by this run alone: the rate is this run's.
    pub run_messages: u64,
}

impl Progress {
    /// `total` bytes, `done` already done by an earlier run; `total == 0`: unknown length.
    pub fn new(label: &str, total: u64, done: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = if total > 0 {
                ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            } else {
                ProgressBar::new_spinner()
            };
            let template = if total > 0 {
                "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}"
            } else {
                "{prefix} {spinner} [{elapsed_precise}] {bytes} {bytes_per_sec} {msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.set_prefix(label.to_string());
            bar.set_position(done);
            bar.reset_eta();
            bar
        });
        Progress {
            bar,
            total,
            started: Instant::now(),
            base_bytes: done,
            last_line: Instant::now(),
        }
    }

    fn rate(&self, run_messages: u64) -> f64 {
        run_messages as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
    }

    pub fn update(&mut self, counts: &Counts) {
        let rate = self.rate(counts.run_messages);
        let summary = format!(
            "{} sessions, {} messages, {rate:.0} msg/s",
            counts.sessions, counts.messages
        );
        if let Some(bar) = &self.bar {
            bar.set_position(counts.bytes);
            bar.set_message(summary);
            return;
        }
        if self.last_line.elapsed() >= PLAIN_EVERY {
            self.last_line = Instant::now();
            eprintln!("{}", self.plain(counts.bytes, &summary));
        }
    }

    fn plain(&self, bytes: u64, summary: &str) -> String {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let run_bytes = bytes.saturating_sub(self.base_bytes) as f64;
        let speed = run_bytes / elapsed;
        if self.total == 0 {
            return format!("{:.1} MB, {summary}", bytes as f64 / 1e6);
        }
        let left = self.total.saturating_sub(bytes) as f64;
        let eta = if speed > 0.0 { left / speed } else { 0.0 };
        format!(
            "{:.1}% ({:.1}/{:.1} MB, {:.1} MB/s), {summary}, ETA {eta:.0}s",
            100.0 * bytes as f64 / self.total.max(1) as f64,
            bytes as f64 / 1e6,
            self.total as f64 / 1e6,
            speed / 1e6,
        )
    }

    /// A message that must not be torn by the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
