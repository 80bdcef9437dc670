//! Throughput modes, following NSQ's own bench_writer and bench_reader (nsq-reference §6.1):
//! writers send MPUB batches and wait for each `OK`; readers hold `RDY` open and FIN every
//! message, batching FINs with NSQ's flushing rule. Also owns `Subscriber`, the consuming
//! loop the latency mode reuses.

use super::BenchConn;
use super::Result;
use crate::protocol::command::encode;
use crate::protocol::frame::{is_non_fatal, Frame, Message, HEARTBEAT};
use crate::protocol::identify::{IdentifyRequest, IdentifyResponse};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// With nothing to read for this long, a reader sends the FINs it is holding: NSQ's rule
/// alone can leave up to three quarters of a window unacknowledged once the topic drains.
const IDLE_FLUSH: Duration = Duration::from_millis(100);
/// Upper bound on the post-run drain that FINs messages still on the wire.
const DRAIN_MAX: Duration = Duration::from_secs(1);
/// Longer than nsqd's default 250 ms output-buffer flush, so a drain sees buffered stragglers.
const DRAIN_IDLE: Duration = Duration::from_millis(300);

/// What one side (all writer or all reader connections) achieved.
#[derive(Debug, Clone, Default)]
pub struct RoleStats {
    pub connections: usize,
    pub messages: u64,
    pub bytes: u64,
    pub duration: Duration,
    pub fin_failed: u64,
    /// Writers: each batch's time from sending it to its `OK` (ns), the publish latency.
    pub ack_latency: super::latency::Histogram,
}

/// When a subscriber pushes its queued FINs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushRule {
    /// bench_reader's rule: flush whenever `count % rdy > 0.75 * rdy`.
    Nsq,
    /// Flush whenever everything read so far is handled; keeps the window wide open, which
    /// is what a latency measurement wants.
    Idle,
}

/// A subscribed connection that FINs everything it receives.
pub struct Subscriber {
    conn: BenchConn,
    rdy: u64,
    rule: FlushRule,
    pub messages: u64,
    pub bytes: u64,
    pub fin_failed: u64,
}

impl Subscriber {
    /// SUB (waiting for its OK) and open the window with `RDY`.
    pub async fn subscribe(
        mut conn: BenchConn,
        topic: &str,
        channel: &str,
        rdy: u64,
        rule: FlushRule,
    ) -> Result<Self> {
        encode::sub(conn.out(), topic, channel);
        conn.flush().await?;
        conn.expect_ok("SUB").await?;
        Ok(Subscriber {
            conn,
            rdy: rdy.max(1),
            rule,
            messages: 0,
            bytes: 0,
            fin_failed: 0,
        })
    }

    pub async fn ready(&mut self) -> Result<()> {
        encode::rdy(self.conn.out(), self.rdy);
        self.conn.flush().await
    }

    /// Handles every frame already read, then waits for more bytes until `until`.
    /// Returns false when `until` passed with nothing new to read.
    pub async fn step(&mut self, until: Instant, on_message: &mut impl FnMut(&Message)) -> Result<bool> {
        while let Some(frame) = self.conn.next_buffered()? {
            match frame {
                Frame::Message(msg) => {
                    on_message(&msg);
                    encode::fin(self.conn.out(), &msg.id);
                    self.messages += 1;
                    self.bytes += msg.body.len() as u64;
                    if self.rule == FlushRule::Nsq
                        && (self.messages % self.rdy) as f64 > 0.75 * self.rdy as f64
                    {
                        self.conn.flush().await?;
                    }
                }
                Frame::Response(r) if r == HEARTBEAT => {
                    encode::nop(self.conn.out());
                    self.conn.flush().await?;
                }
                // A stray reply (e.g. CLOSE_WAIT) needs no action from a bench consumer.
                Frame::Response(_) => {}
                Frame::Error(e) if is_non_fatal(&e) => self.fin_failed += 1,
                Frame::Error(e) => {
                    return Err(format!("{}: {}", self.conn.peer(), String::from_utf8_lossy(&e)).into())
                }
            }
        }
        if self.rule == FlushRule::Idle {
            self.conn.flush().await?;
        }
        match tokio::time::timeout_at(until, self.conn.fill()).await {
            Ok(read) => read.map(|()| true),
            Err(_) => {
                self.conn.flush().await?;
                Ok(false)
            }
        }
    }

    /// Closes the window and FINs whatever is still in flight so the next run starts from
    /// a clean channel instead of inheriting redeliveries. Bounded by `DRAIN_MAX`.
    pub async fn drain(mut self) {
        encode::rdy(self.conn.out(), 0);
        if self.conn.flush().await.is_err() {
            return;
        }
        let hard = Instant::now() + DRAIN_MAX;
        loop {
            let until = hard.min(Instant::now() + DRAIN_IDLE);
            match self.step(until, &mut |_| {}).await {
                Ok(true) if Instant::now() < hard => continue,
                _ => break,
            }
        }
        let _ = self.conn.flush().await;
    }
}

/// Connects and IDENTIFYs `n` connections concurrently.
pub async fn open_all(
    addr: &str,
    n: usize,
    identify: &IdentifyRequest,
    transport: &crate::client::Config,
) -> Result<(Vec<BenchConn>, IdentifyResponse)> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let addr = addr.to_string();
        let identify = identify.clone();
        let transport = transport.clone();
        set.spawn(async move { super::open(&addr, &identify, &transport).await });
    }
    let mut conns = Vec::with_capacity(n);
    let mut info = IdentifyResponse::default();
    while let Some(joined) = set.join_next().await {
        let (conn, server) = joined.map_err(|e| format!("connection task failed: {e}"))??;
        info = server;
        conns.push(conn);
    }
    Ok((conns, info))
}

/// The body every writer sends: the content is irrelevant, only its size matters.
pub fn filler_body(size: usize) -> Vec<u8> {
    vec![b'a'; size]
}

/// Writer connections run until `deadline`; with `count`, they share out that many
/// messages and stop early.
pub async fn run_writers(
    conns: Vec<BenchConn>,
    topic: &str,
    size: usize,
    batch: usize,
    count: Option<u64>,
    start: Instant,
    deadline: Instant,
) -> Result<RoleStats> {
    let n = conns.len();
    let body = filler_body(size);
    let bodies = vec![&body[..]; batch];
    let mut full = Vec::new();
    encode::publish_batch(&mut full, topic, &bodies);
    let full = Arc::new(full);

    let mut set = JoinSet::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let quota = match count {
            Some(total) => total / n as u64 + u64::from((i as u64) < total % n as u64),
            None => u64::MAX,
        };
        let full = Arc::clone(&full);
        let topic = topic.to_string();
        let body = body.clone();
        set.spawn(async move {
            let mut acked = 0u64;
            let mut latency = super::latency::Histogram::default();
            while acked < quota && Instant::now() < deadline {
                let sent = Instant::now();
                let left = (quota - acked).min(batch as u64) as usize;
                if left == batch {
                    conn.send(&full).await?;
                } else {
                    let mut partial = Vec::new();
                    encode::publish_batch(&mut partial, &topic, &vec![&body[..]; left]);
                    conn.send(&partial).await?;
                }
                conn.expect_ok(if left == 1 { "PUB" } else { "MPUB" }).await?;
                latency.record(sent.elapsed().as_nanos() as u64);
                acked += left as u64;
            }
            Ok::<_, super::Error>((acked, Instant::now(), latency))
        });
    }
    let mut stats = RoleStats {
        connections: n,
        ..Default::default()
    };
    let mut end = start;
    while let Some(joined) = set.join_next().await {
        let (acked, done, latency) = joined.map_err(|e| format!("writer task failed: {e}"))??;
        stats.ack_latency.merge(&latency);
        stats.messages += acked;
        end = end.max(done);
    }
    stats.bytes = stats.messages * size as u64;
    stats.duration = end - start;
    Ok(stats)
}

/// Reader connections consume until `deadline`, or until all of them together have
/// received `count` messages.
pub async fn run_readers(
    subs: Vec<Subscriber>,
    count: Option<u64>,
    start: Instant,
    deadline: Instant,
) -> Result<RoleStats> {
    let n = subs.len();
    let total = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    for mut sub in subs {
        let total = Arc::clone(&total);
        set.spawn(async move {
            sub.ready().await?;
            let mut reported = 0u64;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                sub.step(deadline.min(now + IDLE_FLUSH), &mut |_| {}).await?;
                // One shared add per socket read, not per message, keeps the counter off
                // the hot path.
                let seen =
                    total.fetch_add(sub.messages - reported, Ordering::Relaxed) + (sub.messages - reported);
                reported = sub.messages;
                if count.is_some_and(|c| seen >= c) {
                    break;
                }
            }
            let done = Instant::now();
            let result = (sub.messages, sub.bytes, sub.fin_failed, done);
            sub.drain().await;
            Ok::<_, super::Error>(result)
        });
    }
    let mut stats = RoleStats {
        connections: n,
        ..Default::default()
    };
    let mut end = start;
    while let Some(joined) = set.join_next().await {
        let (messages, bytes, fin_failed, done) =
            joined.map_err(|e| format!("reader task failed: {e}"))??;
        stats.messages += messages;
        stats.bytes += bytes;
        stats.fin_failed += fin_failed;
        end = end.max(done);
    }
    stats.duration = end - start;
    Ok(stats)
}
