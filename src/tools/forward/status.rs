//! What the forwarding tools say as they go: a status line every `--status-every` sends, per
//! destination and in aggregate (nsq_to_nsq's and nsq_to_http's timer metrics: how many, how
//! fast, how long each took, how many failed), a line when a destination starts or stops
//! failing, and the totals at the end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The running account of one forwarding tool.
#[derive(Debug)]
pub struct Progress {
    names: Vec<String>,
    aggregate: Status,
    /// Per destination; reported only when there are several (one would repeat the aggregate).
    destinations: Vec<Status>,
    failing: Vec<AtomicBool>,
    started: Instant,
    forwarded: AtomicU64,
    requeued: AtomicU64,
    skipped: AtomicU64,
}

impl Progress {
    pub fn new(names: Vec<String>, every: u64) -> Progress {
        let each = if names.len() > 1 { every } else { 0 };
        Progress {
            aggregate: Status::new("[aggregate]", every),
            destinations: names
                .iter()
                .map(|n| Status::new(format!("[{n}]"), each))
                .collect(),
            failing: names.iter().map(|_| AtomicBool::new(false)).collect(),
            names,
            started: Instant::now(),
            forwarded: AtomicU64::new(0),
            requeued: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// One send to destination `d` is over; returns the lines to print (status lines, and a
    /// destination starting or ceasing to fail).
    pub fn sent(&self, d: usize, took: Duration, result: &Result<(), String>) -> Vec<String> {
        let ok = result.is_ok();
        let mut lines: Vec<String> = [self.destinations.get(d), Some(&self.aggregate)]
            .into_iter()
            .flatten()
            .filter_map(|s| s.record(took, ok))
            .collect();
        let name = self.names.get(d).map_or("?", String::as_str);
        let was_failing = self
            .failing
            .get(d)
            .is_some_and(|f| f.swap(!ok, Ordering::Relaxed));
        match (result, was_failing) {
            (Err(e), false) => lines.push(format!(
                "warning: {name} failed ({e}); its messages are requeued and tried again"
            )),
            (Ok(()), true) => lines.push(format!("{name} accepts messages again")),
            _ => {}
        }
        lines
    }

    /// A message is finished: a destination took it.
    pub fn forwarded(&self) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }

    /// A message went back to nsqd to be tried again.
    pub fn requeued(&self) {
        self.requeued.fetch_add(1, Ordering::Relaxed);
    }

    /// A message was finished without being sent (filtered or sampled out).
    pub fn skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// The totals, for the end of the run.
    pub fn summary(&self) -> String {
        let forwarded = self.forwarded.load(Ordering::Relaxed);
        let rate = forwarded as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        format!(
            "forwarded {forwarded} ({}), requeued {}, skipped {}",
            crate::common::console::per_second(rate, "msg"),
            self.requeued.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed)
        )
    }
}

/// Durations of the last `every` sends of one destination (or of all), reported and reset
/// each time `every` have been counted.
#[derive(Debug)]
pub struct Status {
    label: String,
    every: u64,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    took: Vec<Duration>,
    failed: u64,
}

impl Status {
    /// `every` = 0 never reports.
    pub fn new(label: impl Into<String>, every: u64) -> Status {
        Status {
            label: label.into(),
            every,
            window: Mutex::new(Window {
                started: Instant::now(),
                took: Vec::new(),
                failed: 0,
            }),
        }
    }

    /// Counts one send; returns the status line when this one completes a window.
    pub fn record(&self, took: Duration, ok: bool) -> Option<String> {
        if self.every == 0 {
            return None;
        }
        let mut w = self.window.lock();
        w.took.push(took);
        if !ok {
            w.failed += 1;
        }
        if (w.took.len() as u64) < self.every {
            return None;
        }
        let line = render(&self.label, &mut w);
        w.took.clear();
        w.failed = 0;
        w.started = Instant::now();
        Some(line)
    }
}

fn render(label: &str, w: &mut Window) -> String {
    w.took.sort_unstable();
    let n = w.took.len();
    let quantile = |q: f64| w.took[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
    let avg = w.took.iter().sum::<Duration>() / n as u32;
    let rate = n as f64 / w.started.elapsed().as_secs_f64().max(1e-9);
    format!(
        "{label} {n} sent ({failed} failed), {rate} - avg {avg}, p95 {p95}, p99 {p99}",
        failed = w.failed,
        rate = crate::common::console::per_second(rate, "msg"),
        avg = ms(avg),
        p95 = ms(quantile(0.95)),
        p99 = ms(quantile(0.99)),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.2}ms", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_said_once_per_streak() {
        let p = Progress::new(vec!["a:1".into(), "b:2".into()], 0);
        let err: Result<(), String> = Err("refused".into());
        let first = p.sent(0, Duration::ZERO, &err);
        assert_eq!(first.len(), 1);
        assert!(first[0].starts_with("warning: a:1 failed (refused)"), "{first:?}");
        assert!(p.sent(0, Duration::ZERO, &err).is_empty());
        assert!(p.sent(1, Duration::ZERO, &Ok(())).is_empty());
        assert_eq!(p.sent(0, Duration::ZERO, &Ok(())), ["a:1 accepts messages again"]);
        p.forwarded();
        p.requeued();
        assert!(p.summary().starts_with("forwarded 1 ("), "{}", p.summary());
        assert!(p.summary().ends_with("requeued 1, skipped 0"), "{}", p.summary());
    }

    #[test]
    fn reports_every_n_with_quantiles() {
        let s = Status::new("[aggregate]", 4);
        for ms in [1, 2, 3] {
            assert!(s.record(Duration::from_millis(ms), true).is_none());
        }
        let line = s.record(Duration::from_millis(10), false).unwrap();
        assert!(line.starts_with("[aggregate] 4 sent (1 failed), "), "{line}");
        assert!(line.ends_with("avg 4.00ms, p95 10.00ms, p99 10.00ms"), "{line}");
        assert!(s.record(Duration::from_millis(1), true).is_none(), "a new window");
        assert!(Status::new("x", 0).record(Duration::ZERO, true).is_none());
    }
}
