//! `nsqrs to-db`'s archiver: a topic (and, if asked, the broker's lifecycle events) into
//! SQLite or PostgreSQL for `trace` and `replay`.
//!
//! It is an ordinary consumer on its own channel, so it works against any nsqd. Messages are
//! collected into batches, each batch is one transaction, and a message is finished only once
//! the transaction holding it has committed: a crash can re-deliver but never lose, and the
//! archive's keys make a re-delivered insert a no-op.
//!
//! Its channels are named after what it archives: the topic and the archive's own identity
//! (stored in the archive). Two archivers of different topics or into different archives
//! never share a channel, so neither receives only a share of the messages or events; a
//! restarted archiver finds its channel where it left it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::archive::events;
use crate::archive::store::OpenMode;
use crate::archive::{EventRow, MessageRow, Store};
use crate::client::{Config, Consumer, Message};
use crate::common::process::wait_for_signal;
use crate::common::time::now_ns;
use crate::errln;
use crate::protocol::events::EVENTS_TOPIC;

/// What to archive, from where, into what, in which batches.
#[derive(Debug, Clone)]
pub struct ArchivePlan {
    pub topic: String,
    /// The archiver's channel on `topic`; by default one of its own (`default_channel`).
    pub channel: Option<String>,
    /// With `events`, its channel on the events topic; by default as `channel`'s.
    pub events_channel: Option<String>,
    pub nsqd_tcp_address: Vec<String>,
    pub lookupd_http_address: Vec<String>,
    /// A SQLite file, or a postgres:// URL.
    pub db: String,
    /// Also archive the lifecycle events about the topic.
    pub events: bool,
    pub batch_size: usize,
    /// Commit a partial batch after this long.
    pub flush_interval: Duration,
}

/// The channel an archiver of `topic` into the archive `archive_id` uses by default: the same
/// name on every restart, a different one for any other topic or archive. The topic is in the
/// name for the operator reading /stats (cut to fit NSQ's 64 characters); the hash is what
/// keeps two names apart.
fn default_channel(topic: &str, archive_id: &str) -> String {
    let hash = crc32fast::hash(format!("{topic}\n{archive_id}").as_bytes());
    // A topic may end in `#ephemeral`; a channel may hold `#` only there.
    let readable: String = topic.chars().filter(|c| *c != '#').take(42).collect();
    format!("nsqrs_to_db.{readable}.{hash:08x}")
}

/// Archives until SIGINT/SIGTERM or a failure of the archive; what was taken is committed
/// and finished before it returns.
pub async fn archive(plan: ArchivePlan, config: Config) -> Result<(), String> {
    let store = Arc::new(Store::open(&plan.db, OpenMode::Create).await?);
    let derived = default_channel(&plan.topic, &store.archive_id().await?);
    let channel = plan.channel.clone().unwrap_or_else(|| derived.clone());
    let mut consumers = vec![(
        Consumer::new(&plan.topic, &channel, config.clone())?,
        Kind::Messages(plan.topic.clone()),
    )];
    let mut said = format!("archiving topic {} on channel {channel}", plan.topic);
    if plan.events {
        let events_channel = plan.events_channel.clone().unwrap_or(derived);
        said.push_str(&format!(
            ", its events on {EVENTS_TOPIC} channel {events_channel}"
        ));
        consumers.push((
            Consumer::new(EVENTS_TOPIC, &events_channel, config)?,
            Kind::Events(plan.topic.clone()),
        ));
    }
    errln!("to-db: {said}");
    let mut tasks = Vec::new();
    let (failed_tx, mut failed_rx) = mpsc::unbounded_channel::<String>();
    for (consumer, kind) in &consumers {
        let batcher = Batcher {
            consumer: consumer.clone(),
            store: store.clone(),
            kind: kind.clone(),
            batch_size: plan.batch_size,
            flush_interval: plan.flush_interval,
        };
        let failed = failed_tx.clone();
        tasks.push(tokio::spawn(async move {
            let r = batcher.run().await;
            if let Err(e) = &r {
                let _ = failed.send(e.clone());
            }
            r
        }));
        for addr in &plan.nsqd_tcp_address {
            consumer
                .connect_to_nsqd(addr)
                .await
                .map_err(|e| format!("connect to nsqd {addr}: {e}"))?;
        }
        for addr in &plan.lookupd_http_address {
            consumer
                .connect_to_lookupd(addr)
                .await
                .map_err(|e| format!("lookupd {addr}: {e}"))?;
        }
    }
    // A batcher ends early only when the archive fails (a write error); that ends the run.
    let mut failure: Option<String> = tokio::select! {
        signalled = wait_for_signal() => signalled.err().map(|e| format!("signal handlers: {e}")),
        e = failed_rx.recv() => e,
    };
    // Stop taking messages; each batcher commits and finishes what it holds once its
    // consumer reports the stop, and only then do we exit.
    let stops: Vec<_> = consumers
        .iter()
        .map(|(c, _)| {
            let c = c.clone();
            tokio::spawn(async move { c.stop().await })
        })
        .collect();
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            failure.get_or_insert(e);
        }
    }
    for s in stops {
        let _ = s.await;
    }
    failure.map_or(Ok(()), Err)
}

#[derive(Debug, Clone)]
enum Kind {
    Messages(String),
    /// Events about this topic only: `nsqrs.events` carries every topic's.
    Events(String),
}

struct Batcher {
    consumer: Consumer,
    store: Arc<Store>,
    kind: Kind,
    batch_size: usize,
    flush_interval: Duration,
}

impl Batcher {
    /// Fills batches while the previous one commits: the writer task owns committing and
    /// finishing, the loop here only receives.
    async fn run(self) -> Result<(), String> {
        let (tx, mut rx) = mpsc::channel::<Vec<Message>>(1);
        let store = self.store.clone();
        let kind = self.kind.clone();
        // Messages handed to the writer and not yet finished.
        let pending = Arc::new(AtomicUsize::new(0));
        let pending_w = pending.clone();
        let writer = tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                let n = batch.len();
                commit(&store, &kind, batch).await?;
                pending_w.fetch_sub(n, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        });
        // The broker stops sending once RDY's worth is unanswered (nsqd caps RDY at its
        // --max-rdy-count, whatever --max-in-flight asks), so a batch larger than that would
        // only ever be flushed by the timer. When everything in flight is already in our
        // hands, nothing more can come: commit now.
        let mut stall_check = tokio::time::interval(Duration::from_millis(5));
        stall_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch: Vec<Message> = Vec::with_capacity(self.batch_size);
        let timer = tokio::time::sleep(self.flush_interval);
        tokio::pin!(timer);
        loop {
            tokio::select! {
                m = self.consumer.recv() => match m {
                    Some(m) => {
                        if batch.is_empty() {
                            timer.as_mut().reset(tokio::time::Instant::now() + self.flush_interval);
                        }
                        batch.push(m);
                        if batch.len() >= self.batch_size && !send(&tx, &mut batch, &pending).await {
                            break;
                        }
                    }
                    None => break,
                },
                _ = &mut timer, if !batch.is_empty() => {
                    if !send(&tx, &mut batch, &pending).await {
                        break;
                    }
                }
                _ = stall_check.tick(), if !batch.is_empty() => {
                    let held = batch.len() + pending.load(Ordering::Relaxed);
                    if held >= self.consumer.stats().in_flight && !send(&tx, &mut batch, &pending).await {
                        break;
                    }
                }
            }
        }
        if !batch.is_empty() {
            send(&tx, &mut batch, &pending).await;
        }
        drop(tx);
        writer.await.map_err(|e| e.to_string())?
    }
}

/// Hands the batch to the writer; false once the writer has failed.
async fn send(tx: &mpsc::Sender<Vec<Message>>, batch: &mut Vec<Message>, pending: &AtomicUsize) -> bool {
    let cap = batch.capacity();
    pending.fetch_add(batch.len(), Ordering::Relaxed);
    tx.send(std::mem::replace(batch, Vec::with_capacity(cap)))
        .await
        .is_ok()
}

async fn commit(store: &Store, kind: &Kind, batch: Vec<Message>) -> Result<(), String> {
    let archived_at = now_ns();
    match kind {
        Kind::Messages(topic) => {
            let rows = batch
                .iter()
                .map(|m| MessageRow {
                    topic: topic.clone(),
                    id: m.id_str().to_string(),
                    nsqd: m.nsqd_address.clone(),
                    ts: m.timestamp_ns,
                    attempts: m.attempts as i64,
                    body: m.body.to_vec(),
                    archived_at,
                })
                .collect();
            store.insert_messages(rows).await?;
        }
        Kind::Events(topic) => {
            let mut rows: Vec<EventRow> = Vec::new();
            let mut sources = Vec::new();
            for m in &batch {
                let exploded = events::explode(&m.body);
                if exploded.skipped > 0 {
                    errln!(
                        "warning: {} unreadable line(s) in {EVENTS_TOPIC} message {}",
                        exploded.skipped,
                        m.id_str()
                    );
                }
                rows.extend(exploded.rows.into_iter().filter(|r| &r.topic == topic));
                sources.extend(exploded.sources);
            }
            store.insert_events(rows, &sources).await?;
        }
    }
    // Only now is the batch durable; a crash before this line re-delivers it.
    for m in batch {
        m.finish();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_channels_are_valid_and_tell_archivers_apart() {
        let a = default_channel("orders", "00000000000000aa");
        assert_eq!(a, default_channel("orders", "00000000000000aa"), "stable");
        assert!(a.starts_with("nsqrs_to_db.orders."));
        assert_ne!(
            a,
            default_channel("orders", "00000000000000ab"),
            "another archive"
        );
        assert_ne!(
            a,
            default_channel("payments", "00000000000000aa"),
            "another topic"
        );
        let long = "t".repeat(64);
        let eph = "x".repeat(54) + "#ephemeral";
        for t in ["orders", &long, &eph, "a.b-c_d"] {
            let c = default_channel(t, "00000000000000aa");
            assert!(
                crate::protocol::names::is_valid_channel_name(&c),
                "{c:?} from {t:?}"
            );
        }
        assert_ne!(
            default_channel(&("t".repeat(60) + "1"), "id"),
            default_channel(&("t".repeat(60) + "2"), "id"),
            "topics alike up to the cut"
        );
    }
}
