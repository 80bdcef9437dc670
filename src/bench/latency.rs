//! Latency mode: publish at a fixed rate with the send time in each body, consume on the
//! same topic, and histogram publish→deliver latency.
//!
//! Times are wall-clock nanoseconds (the unit of NSQ's own message timestamps) because the
//! stamp travels through the broker; publisher and reader share this host's clock.

use super::load::{FlushRule, Subscriber};
use super::Result;
use crate::protocol::command::encode;
use crate::protocol::frame::Message;
use crate::protocol::identify::{IdentifyRequest, IdentifyResponse};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::time::now_ns;
use tokio::time::{Instant, MissedTickBehavior};

/// How long the reader waits, after the last publish, for messages still in the broker.
const GRACE: Duration = Duration::from_secs(2);
/// Finest pacing tick; faster rates send small batches per tick instead.
const MIN_TICK: Duration = Duration::from_millis(1);
const READER_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Default)]
pub struct LatencyStats {
    pub rate: u64,
    pub published: u64,
    pub publish_duration: Duration,
    pub received: u64,
    /// Messages on the channel that were not stamped by this run (leftovers, other producers).
    pub ignored: u64,
    pub histogram: Histogram,
}

pub struct LatencyPlan<'a> {
    pub addr: &'a str,
    pub topic: &'a str,
    pub channel: &'a str,
    pub size: usize,
    pub batch: usize,
    pub rate: u64,
    pub rdy: u64,
    pub count: Option<u64>,
    pub runfor: Duration,
    pub identify: &'a IdentifyRequest,
    pub transport: &'a crate::client::Config,
}

/// The send time a body carries, if it has room for one.
pub fn stamp_of(body: &[u8]) -> Option<i64> {
    body.get(..8)
        .map(|b| i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
}

pub async fn run(plan: LatencyPlan<'_>) -> Result<(LatencyStats, IdentifyResponse)> {
    let (reader, info) = super::open(plan.addr, plan.identify, plan.transport).await?;
    let mut sub = Subscriber::subscribe(reader, plan.topic, plan.channel, plan.rdy, FlushRule::Idle).await?;
    sub.ready().await?;
    let (mut publisher, _) = super::open(plan.addr, plan.identify, plan.transport).await?;

    // Anything stamped before this instant is a leftover from an earlier run.
    let run_start_ns = now_ns();
    let published = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let hard_stop = Instant::now() + plan.runfor + GRACE + Duration::from_secs(1);

    let reader_task = {
        let published = Arc::clone(&published);
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut hist = Histogram::default();
            let mut ours = 0u64;
            let mut ignored = 0u64;
            let mut done_at: Option<Instant> = None;
            loop {
                let now = Instant::now();
                if done.load(Ordering::Acquire) {
                    let since = *done_at.get_or_insert(now);
                    if ours >= published.load(Ordering::Acquire) || now >= since + GRACE {
                        break;
                    }
                }
                if now >= hard_stop {
                    break;
                }
                let mut on_message = |msg: &Message| {
                    let received_ns = now_ns();
                    match stamp_of(&msg.body) {
                        Some(sent) if sent >= run_start_ns && sent <= received_ns => {
                            hist.record((received_ns - sent) as u64);
                            ours += 1;
                        }
                        _ => ignored += 1,
                    }
                };
                sub.step(hard_stop.min(now + READER_POLL), &mut on_message)
                    .await?;
            }
            sub.drain().await;
            Ok::<_, super::Error>((hist, ours, ignored))
        })
    };

    let publish_result = publish_paced(&mut publisher, &plan, &published).await;
    done.store(true, Ordering::Release);
    let joined = reader_task
        .await
        .map_err(|e| format!("latency reader failed: {e}"))?;
    let publish_duration = publish_result?;
    let (histogram, received, ignored) = joined?;
    Ok((
        LatencyStats {
            rate: plan.rate,
            published: published.load(Ordering::Acquire),
            publish_duration,
            received,
            ignored,
            histogram,
        },
        info,
    ))
}

/// Publishes `rate` messages per second until `runfor` or `count`. Pacing is by elapsed
/// time, so a slow reply is caught up with a larger batch rather than lowering the rate.
async fn publish_paced(
    conn: &mut super::BenchConn,
    plan: &LatencyPlan<'_>,
    published: &AtomicU64,
) -> Result<Duration> {
    let rate = plan.rate.max(1);
    let limit = plan.count.unwrap_or(u64::MAX);
    let tick = (Duration::from_secs(1) / rate.min(u32::MAX as u64) as u32).max(MIN_TICK);
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let padding = vec![b'a'; plan.size.saturating_sub(8)];
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let mut cmd = Vec::new();
    let start = Instant::now();
    let deadline = start + plan.runfor;
    let mut sent = 0u64;
    'run: loop {
        ticker.tick().await;
        let now = Instant::now();
        if now >= deadline || sent >= limit {
            break;
        }
        let due = ((now - start).as_secs_f64() * rate as f64) as u64 + 1;
        while sent < due.min(limit) {
            if Instant::now() >= deadline {
                break 'run;
            }
            let n = (due.min(limit) - sent).min(plan.batch as u64) as usize;
            let stamp = now_ns().to_be_bytes();
            bodies.resize_with(n, Vec::new);
            for body in bodies.iter_mut() {
                body.clear();
                body.extend_from_slice(&stamp);
                body.extend_from_slice(&padding);
            }
            cmd.clear();
            encode::publish_batch(&mut cmd, plan.topic, &bodies);
            conn.send(&cmd).await?;
            conn.expect_ok(if n == 1 { "PUB" } else { "MPUB" }).await?;
            sent += n as u64;
            published.store(sent, Ordering::Release);
        }
    }
    Ok(start.elapsed())
}

/// Log-linear histogram of nanosecond values: exact below 128, then 128 sub-buckets per
/// power of two (under 0.8 % error). Fixed 58 KiB whatever the run length.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    min: u64,
    max: u64,
}

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = (SUB + (64 - SUB_BITS as u64) * SUB) as usize;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros();
        let mantissa = (v >> (exp - SUB_BITS)) - SUB;
        (SUB + (exp - SUB_BITS) as u64 * SUB + mantissa) as usize
    }

    /// The range of values that land in bucket `i`, as (low, width).
    fn bucket(i: usize) -> (u64, u64) {
        let i = i as u64;
        if i < SUB {
            return (i, 1);
        }
        let exp = (i - SUB) / SUB + SUB_BITS as u64;
        let mantissa = (i - SUB) % SUB;
        let width = 1u64 << (exp - SUB_BITS as u64);
        ((SUB + mantissa) * width, width)
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.sum += v as u128;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn min(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            self.min
        }
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` (0..=1): the midpoint of the bucket holding the
    /// ceil(q·n)-th smallest sample, clamped to the exact min and max.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        // The extremes are known exactly; no need to approximate them by a bucket.
        if rank == self.total {
            return self.max;
        }
        if rank == 1 {
            return self.min;
        }
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = Self::bucket(i);
                return (low + width / 2).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip() {
        for v in [0u64, 1, 127, 128, 129, 255, 256, 1000, 123_456, 1 << 40, u64::MAX] {
            let (low, width) = Histogram::bucket(Histogram::index(v));
            assert!(low <= v && v - low < width, "v={v} low={low} width={width}");
        }
        assert_eq!(Histogram::index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        assert_eq!(h.count(), 100_000);
        assert_eq!(h.max(), 100_000_000);
        assert_eq!(h.min(), 1000);
        for (q, exact) in [(0.5, 50_000_000f64), (0.99, 99_000_000.0), (0.999, 99_900_000.0)] {
            let got = h.quantile(q) as f64;
            assert!(
                (got - exact).abs() / exact < 0.01,
                "q={q} got={got} exact={exact}"
            );
        }
        assert_eq!(h.quantile(1.0), 100_000_000);
        assert!((h.mean() - 50_000_500.0).abs() < 1.0);
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let h = Histogram::default();
        assert_eq!((h.quantile(0.5), h.min(), h.max(), h.mean()), (0, 0, 0, 0.0));
    }

    #[test]
    fn stamps_read_back() {
        let mut body = 1_700_000_000_123_456_789i64.to_be_bytes().to_vec();
        body.extend_from_slice(b"padding");
        assert_eq!(stamp_of(&body), Some(1_700_000_000_123_456_789));
        assert_eq!(stamp_of(b"short"), None);
    }
}
