//! The last hour of every topic and channel, kept in memory for the charts: every
//! `--stats-sample-interval` the admin reads each broker's `/stats` (as the pages do) and
//! appends the cluster-wide sums to a ring per topic and per channel.
//!
//! Memory is bounded: a ring holds one hour of samples and drops the oldest, and a topic or
//! channel not seen for an hour is forgotten. Rates are differences of the message counters
//! between neighbouring samples, so a restarted broker (counters back to zero) shows a gap,
//! not a negative rate.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::stats::TopicStats;
use super::Admin;

/// How far back the charts reach.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// One sample of a topic or channel, summed over the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub at: i64,
    pub depth: i64,
    pub in_flight: i64,
    pub deferred: i64,
    pub message_count: i64,
    pub requeued: i64,
    pub timed_out: i64,
    pub clients: i64,
}

/// What a ring is of: a topic, or a topic's channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub topic: String,
    pub channel: Option<String>,
}

pub struct History {
    capacity: usize,
    rings: Mutex<HashMap<Key, VecDeque<Sample>>>,
}

impl History {
    pub fn new(interval: Duration) -> History {
        let capacity = (WINDOW.as_secs_f64() / interval.as_secs_f64().max(0.001)).ceil() as usize;
        History {
            capacity: capacity.clamp(2, 100_000),
            rings: Mutex::new(HashMap::new()),
        }
    }

    /// Appends one round of samples taken at `at` (unix seconds) and forgets what has not
    /// been seen for the whole window.
    pub fn record(&self, at: i64, samples: Vec<(Key, Sample)>) {
        let mut rings = self.rings.lock();
        for (key, mut s) in samples {
            s.at = at;
            let ring = rings.entry(key).or_default();
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(s);
        }
        let oldest = at - WINDOW.as_secs() as i64;
        rings.retain(|_, ring| ring.back().is_some_and(|s| s.at >= oldest));
    }

    /// The samples of `key`, oldest first.
    pub fn series(&self, key: &Key) -> Vec<Sample> {
        self.rings
            .lock()
            .get(key)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }

    /// How many rings are kept (for the memory bound's test).
    pub fn len(&self) -> usize {
        self.rings.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Messages per second between neighbouring samples, at the later one's time; a counter that
/// went down (a restarted broker) leaves that step out.
pub fn rates(samples: &[Sample]) -> Vec<(i64, f64)> {
    samples
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (w[0], w[1]);
            let secs = (b.at - a.at) as f64;
            (secs > 0.0 && b.message_count >= a.message_count)
                .then(|| (b.at, (b.message_count - a.message_count) as f64 / secs))
        })
        .collect()
}

/// The samples one round of `/stats` gives: a sum per topic and per channel.
pub fn round(rows: &[TopicStats]) -> Vec<(Key, Sample)> {
    let mut sums: HashMap<Key, Sample> = HashMap::new();
    for t in rows {
        let topic = sums
            .entry(Key {
                topic: t.topic_name.clone(),
                channel: None,
            })
            .or_default();
        topic.depth += t.depth;
        topic.message_count += t.message_count;
        for c in &t.channels {
            let s = sums
                .entry(Key {
                    topic: t.topic_name.clone(),
                    channel: Some(c.channel_name.clone()),
                })
                .or_default();
            s.depth += c.depth;
            s.in_flight += c.in_flight_count;
            s.deferred += c.deferred_count;
            s.message_count += c.message_count;
            s.requeued += c.requeue_count;
            s.timed_out += c.timeout_count;
            s.clients += c.client_count;
        }
    }
    sums.into_iter().collect()
}

/// Samples the cluster every interval until the admin stops.
pub async fn sample_forever(admin: Arc<Admin>) {
    let interval = admin.opts().sample_interval;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let cluster = admin.cluster();
        let Ok(producers) = cluster.producers().await else {
            continue;
        };
        let Ok(rows) = cluster.node_stats(&producers.value, None, None, false).await else {
            continue;
        };
        let now = crate::common::time::now_ns() / 1_000_000_000;
        admin.history.record(now, round(&rows.value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: &str) -> Key {
        Key {
            topic: t.into(),
            channel: None,
        }
    }

    #[test]
    fn rings_hold_one_window_and_forget_the_unseen() {
        let h = History::new(Duration::from_secs(600));
        assert_eq!(h.capacity, 6);
        for i in 0..10 {
            h.record(i * 600, vec![(key("a"), Sample::default())]);
        }
        assert_eq!(h.series(&key("a")).len(), 6);
        assert_eq!(h.series(&key("a"))[0].at, 4 * 600);
        h.record(10 * 600, vec![(key("b"), Sample::default())]);
        h.record(10 * 600 + 3601, vec![(key("b"), Sample::default())]);
        assert!(h.series(&key("a")).is_empty());
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn rates_skip_counter_resets() {
        let s = |at, message_count| Sample {
            at,
            message_count,
            ..Sample::default()
        };
        let r = rates(&[s(0, 0), s(5, 50), s(10, 10), s(20, 30)]);
        assert_eq!(r, vec![(5, 10.0), (20, 2.0)]);
    }
}
