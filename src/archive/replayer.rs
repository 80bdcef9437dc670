//! Drives one replay run: reads the window in batches (`replay.rs`), publishes each with MPUB,
//! and checkpoints it, for `nsqrs replay` and the admin's replays alike.
//!
//! The next batch is read while the broker stores the current one, and handed over only once
//! the current one is recorded, so at most one batch is ever with the broker unrecorded; the
//! checkpoint before it goes out marks it as sent. A stop request waits for the batch on the
//! wire and records it, so nothing is sent twice. A run killed between handing a batch over
//! and recording the reply leaves that batch marked sent but unrecorded; the resumed run
//! sends it again, alone, and records it as resent, so `trace` shows its messages may be in
//! the target twice; never a gap.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::replay::{self, Batch, Limits, Published, Run, Source};
use super::Store;
use crate::client::{PendingReply, Producer, Publish};
use crate::common::time::now_ns;

/// nsqd's default --max-body-size is 5 MiB; MPUB batches stay under it.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// How a run goes.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Messages per MPUB (and per checkpoint).
    pub batch_size: usize,
    /// At most this many messages a second; 0 for as fast as the broker takes them.
    pub rate: u64,
}

/// What the driver tells its caller as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A batch that a killed run left unrecorded is being sent again (this many messages).
    Resending(usize),
    /// This many messages of the run are published and recorded.
    Progress(i64),
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Stopped on request before the end; resumable.
    pub interrupted: bool,
    /// Replays recorded without their new ID (the broker did not return IDs).
    pub unknown_ids: u64,
}

/// Publishes the rest of `run` to `producer`, checkpointing each batch in `store`, until the
/// window is done or `stop` turns true. `run` must already be created in the archive.
pub async fn drive(
    store: &Store,
    source: &Source,
    run: &mut Run,
    producer: &Producer,
    pace: Pace,
    mut stop: watch::Receiver<bool>,
    mut on_event: impl FnMut(Event),
) -> Result<Outcome, String> {
    let addr = producer.addr().to_string();
    // A rate limit paces whole batches, so keep them to about a tenth of a second's worth.
    let batch_size = match pace.rate {
        0 => pace.batch_size,
        r => pace.batch_size.min((r as usize / 10).max(1)),
    };
    let started = Instant::now();
    let mut sent_here = 0u64;
    let mut unknown_ids = 0u64;
    // The batch a killed run left with the broker unrecorded goes out first and on its own,
    // so its record can say it was sent twice and the rest's need not.
    let mut resend = run.unrecorded().cloned();
    let mut read_cursor = run.cursor.clone();
    let mut inflight: Option<(Batch, PendingReply, bool)> = None;
    loop {
        let mut next = None;
        if !*stop.borrow() {
            let upto = resend.take();
            let limits = Limits {
                messages: batch_size,
                bytes: MAX_BATCH_BYTES,
                upto: upto.as_ref(),
            };
            let batch = source.read(store, read_cursor.as_ref(), limits).await?;
            if upto.is_some() && !batch.is_empty() {
                on_event(Event::Resending(batch.len()));
            }
            if pace.rate > 0 && !batch.is_empty() {
                let due = Duration::from_secs_f64(sent_here as f64 / pace.rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
            if !batch.is_empty() && !*stop.borrow() {
                read_cursor = batch.last().cloned();
                next = Some((batch, upto.is_some()));
            }
        }
        // The next batch counts as sent from this checkpoint on: it goes out right after.
        run.sent = next.as_ref().and_then(|(b, _)| b.last().cloned());
        match inflight.take() {
            Some((batch, reply, resent)) => {
                let receipt = reply.await.map_err(|e| format!("publish to {addr}: {e}"))?;
                let known = receipt.ids.len() == batch.len();
                if !known {
                    unknown_ids += batch.len() as u64;
                }
                replay::advance(run, &batch);
                let published = Published {
                    batch: &batch,
                    new_ids: known.then_some(&receipt.ids[..]),
                    resent,
                    replayed_at: now_ns(),
                };
                replay::checkpoint(store, run, Some(published)).await?;
                on_event(Event::Progress(run.done));
            }
            None if next.is_some() => replay::checkpoint(store, run, None).await?,
            None => {}
        }
        match next {
            Some((mut batch, resent)) => {
                let reply = producer
                    .submit(Publish::Mpub {
                        topic: run.to_topic.clone(),
                        bodies: batch.take_bodies(),
                    })
                    .await
                    .map_err(|e| format!("publish to {addr}: {e}"))?;
                sent_here += batch.len() as u64;
                inflight = Some((batch, reply, resent));
            }
            None if *stop.borrow() => {
                return Ok(Outcome {
                    interrupted: true,
                    unknown_ids,
                })
            }
            None => break,
        }
    }
    run.finished = true;
    replay::checkpoint(store, run, None).await?;
    Ok(Outcome {
        interrupted: false,
        unknown_ids,
    })
}
