//! Choosing the destination of each message among several (`--mode`), as nsq_to_nsq and
//! nsq_to_http choose with go-hostpool:
//!
//! - `round-robin`: each destination in turn, whatever happened before;
//! - `hostpool` (the default): in turn among those that work; one that failed is left out,
//!   and tried again after 30 s, then after twice as long each time it fails again (at most
//!   15 min); when every one has failed, all are tried again;
//! - `epsilon-greedy`: mostly the destinations that answer fastest (weighted by the inverse of
//!   their recent response time), with a share of `hostpool` choices to keep measuring the
//!   others (30% at first, shrinking by a tenth each time, never below 1%);
//! - `multicast` (to-http only): every destination, each message.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;

/// How destinations are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    RoundRobin,
    HostPool,
    EpsilonGreedy,
    Multicast,
}

impl Mode {
    /// `--mode`'s values; `multicast` only where the tool can send one message to several.
    pub fn parse(s: &str, multicast: bool) -> Result<Mode, String> {
        match s {
            "round-robin" => Ok(Mode::RoundRobin),
            "hostpool" => Ok(Mode::HostPool),
            "epsilon-greedy" => Ok(Mode::EpsilonGreedy),
            "multicast" if multicast => Ok(Mode::Multicast),
            other => Err(format!(
                "--mode {other:?} is not one of round-robin, hostpool, epsilon-greedy{}",
                if multicast { ", multicast" } else { "" }
            )),
        }
    }
}

const FIRST_RETRY: Duration = Duration::from_secs(30);
const LONGEST_RETRY: Duration = Duration::from_secs(15 * 60);
const FIRST_EPSILON: f64 = 0.3;
const EPSILON_DECAY: f64 = 0.9;
const LEAST_EPSILON: f64 = 0.01;
/// Weight of the newest response time in a destination's running average.
const LATENCY_WEIGHT: f64 = 0.1;

#[derive(Debug, Clone)]
struct Destination {
    /// Failed and not yet due for another try.
    dead: bool,
    retry_at: Instant,
    retry_delay: Duration,
    /// Running average response time in seconds; 0 until measured.
    latency: f64,
}

#[derive(Debug)]
struct State {
    destinations: Vec<Destination>,
    next: usize,
    epsilon: f64,
}

/// The destinations of one tool, by index into the list it was given.
#[derive(Debug)]
pub struct Pool {
    mode: Mode,
    state: Mutex<State>,
}

impl Pool {
    pub fn new(mode: Mode, count: usize) -> Pool {
        let now = Instant::now();
        Pool {
            mode,
            state: Mutex::new(State {
                destinations: vec![
                    Destination {
                        dead: false,
                        retry_at: now,
                        retry_delay: FIRST_RETRY,
                        latency: 0.0,
                    };
                    count
                ],
                next: 0,
                epsilon: FIRST_EPSILON,
            }),
        }
    }

    /// The destinations the next message goes to: one, or all of them in `multicast`.
    pub fn choose(&self) -> Vec<usize> {
        let mut st = self.state.lock();
        let n = st.destinations.len();
        match self.mode {
            Mode::Multicast => (0..n).collect(),
            Mode::RoundRobin => {
                let i = st.next % n;
                st.next = i + 1;
                vec![i]
            }
            Mode::HostPool => vec![in_turn(&mut st)],
            Mode::EpsilonGreedy => {
                if rand::thread_rng().gen::<f64>() < st.epsilon {
                    st.epsilon = (st.epsilon * EPSILON_DECAY).max(LEAST_EPSILON);
                    return vec![in_turn(&mut st)];
                }
                vec![fastest(&mut st).unwrap_or_else(|| in_turn(&mut st))]
            }
        }
    }

    /// What became of a message sent to `destination`, and how long it took.
    pub fn mark(&self, destination: usize, ok: bool, took: Duration) {
        let mut st = self.state.lock();
        let Some(d) = st.destinations.get_mut(destination) else {
            return;
        };
        if ok {
            d.dead = false;
            let secs = took.as_secs_f64().max(1e-6);
            d.latency = match d.latency {
                0.0 => secs,
                avg => avg + LATENCY_WEIGHT * (secs - avg),
            };
        } else if !d.dead {
            d.dead = true;
            d.retry_delay = FIRST_RETRY;
            d.retry_at = Instant::now() + d.retry_delay;
        }
    }
}

/// The next destination that works, or is due for another try; all again when none is.
fn in_turn(st: &mut State) -> usize {
    let now = Instant::now();
    let n = st.destinations.len();
    for k in 0..n {
        let i = (st.next + k) % n;
        let d = &mut st.destinations[i];
        if !d.dead || d.retry_at <= now {
            if d.dead {
                // One more try; should it fail, the next one waits twice as long.
                d.retry_delay = (d.retry_delay * 2).min(LONGEST_RETRY);
                d.retry_at = now + d.retry_delay;
            }
            st.next = i + 1;
            return i;
        }
    }
    for d in &mut st.destinations {
        d.dead = false;
    }
    st.next = 1;
    0
}

/// A working destination drawn with probability proportional to 1 / its average response
/// time; None until some have been measured.
fn fastest(st: &mut State) -> Option<usize> {
    let now = Instant::now();
    let candidates: Vec<(usize, f64)> = st
        .destinations
        .iter()
        .enumerate()
        .filter(|(_, d)| (!d.dead || d.retry_at <= now) && d.latency > 0.0)
        .map(|(i, d)| (i, 1.0 / d.latency))
        .collect();
    let total: f64 = candidates.iter().map(|(_, v)| v).sum();
    if candidates.is_empty() || total <= 0.0 {
        return None;
    }
    let mut pick = rand::thread_rng().gen::<f64>() * total;
    for (i, v) in &candidates {
        if pick < *v {
            return Some(*i);
        }
        pick -= v;
    }
    candidates.last().map(|(i, _)| *i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::parse("hostpool", false).unwrap(), Mode::HostPool);
        assert!(Mode::parse("multicast", false).is_err());
        assert_eq!(Mode::parse("multicast", true).unwrap(), Mode::Multicast);
        assert!(Mode::parse("random", true).unwrap_err().contains("random"));
    }

    #[test]
    fn round_robin_ignores_failures() {
        let p = Pool::new(Mode::RoundRobin, 3);
        p.mark(1, false, Duration::ZERO);
        let got: Vec<usize> = (0..6).flat_map(|_| p.choose()).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn hostpool_leaves_out_what_failed_until_all_have() {
        let p = Pool::new(Mode::HostPool, 3);
        p.mark(1, false, Duration::ZERO);
        let got: Vec<usize> = (0..4).flat_map(|_| p.choose()).collect();
        assert_eq!(got, [0, 2, 0, 2]);
        p.mark(0, false, Duration::ZERO);
        p.mark(2, false, Duration::ZERO);
        // Every one failed: all are tried again.
        let got: Vec<usize> = (0..3).flat_map(|_| p.choose()).collect();
        assert_eq!(got, [0, 1, 2]);
        // A success brings one back at once.
        p.mark(1, false, Duration::ZERO);
        p.mark(1, true, Duration::from_millis(1));
        assert!((0..3).flat_map(|_| p.choose()).any(|i| i == 1));
    }

    #[test]
    fn epsilon_greedy_prefers_the_fast_one() {
        let p = Pool::new(Mode::EpsilonGreedy, 2);
        p.mark(0, true, Duration::from_millis(1));
        p.mark(1, true, Duration::from_millis(100));
        let fast = (0..2000).flat_map(|_| p.choose()).filter(|i| *i == 0).count();
        assert!(fast > 1500, "{fast} of 2000 to the fast one");
    }

    #[test]
    fn multicast_is_everyone() {
        assert_eq!(Pool::new(Mode::Multicast, 3).choose(), [0, 1, 2]);
    }
}
