//! Adoption: a holder turns a lost broker's copy into live topics and channels of its own, so
//! its messages are delivered with their original IDs, timestamps, attempts and due times
//! (the Go takeover's mechanism, src/broker/takeover.rs, applied to a copy). Also the claim
//! and pull among several holders, and automatic adoption after `--adopt-after`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::copies::{ClaimPhase, Copy, CopyTopic};
use super::link::{self, FrameReader, IDLE_TIMEOUT};
use super::wire::{AdoptionRecord, Claim, Frame};
use super::Replication;
use crate::common::time::now_ns;
use crate::nsqd::broker::journal::{ChannelSnapshot, CursorRange, OutstandingEntry};
use crate::nsqd::broker::log::{LogHead, LogReader, NewRecord};
use crate::nsqd::broker::Broker;

/// What one adoption did.
#[derive(Debug, Clone, Serialize)]
pub struct AdoptReport {
    pub owner: String,
    pub name: String,
    pub epoch: u64,
    /// Topic → messages appended to this broker's log.
    pub topics: BTreeMap<String, u64>,
    pub messages: u64,
    /// Other holders whose copies were pulled from first.
    pub pulled_from: Vec<String>,
}

/// Adopts every copy whose owner matches `selector` (node id, name or TCP address).
pub async fn adopt(repl: &Arc<Replication>, selector: &str) -> Result<Vec<AdoptReport>, String> {
    let copies: Vec<Arc<Copy>> = repl
        .copies
        .find(selector)
        .into_iter()
        .filter(|c| c.adopted.lock().is_none())
        .collect();
    if copies.is_empty() {
        return Err(format!("no copy of {selector:?} is held here"));
    }
    let mut reports = Vec::new();
    for copy in copies {
        if copy.connected.load(Ordering::Acquire) > 0 {
            return Err(format!(
                "{} ({}) is connected to this broker: it is alive, nothing to adopt",
                copy.info.lock().name,
                copy.owner
            ));
        }
        if let Some(report) = adopt_copy(repl, &copy, false).await? {
            reports.push(report);
        }
    }
    Ok(reports)
}

/// Adopts one copy. With `claim`, other holders may deny it (automatic adoption): then
/// nothing happens and None is returned.
async fn adopt_copy(
    repl: &Arc<Replication>,
    copy: &Arc<Copy>,
    claim: bool,
) -> Result<Option<AdoptReport>, String> {
    let _guard = repl.adoption.lock().await;
    if copy.adopted.lock().is_some() {
        return Ok(None);
    }
    let broker = repl.broker().ok_or("broker is shutting down")?;
    let info = copy.info.lock().clone();
    {
        let mut phase = copy.phase.lock();
        let granted_elsewhere = copy
            .grant
            .lock()
            .as_ref()
            .is_some_and(|g| g.epoch >= info.epoch && g.claimant != repl.node);
        if claim && granted_elsewhere {
            return Ok(None);
        }
        // An explicit adoption is the operator's decision: it never yields.
        *phase = if claim {
            ClaimPhase::Claiming
        } else {
            ClaimPhase::Committed
        };
    }
    copy.set_adopting(true);
    let abort = |copy: &Copy| {
        *copy.phase.lock() = ClaimPhase::Idle;
        copy.set_adopting(false);
    };
    let mut pulled_from = Vec::new();
    let own_address = repl.tcp_address.lock().clone();
    for peer in info.peers.iter().filter(|p| **p != own_address) {
        match pull(repl, copy, peer, claim).await {
            Ok(Some(true)) => pulled_from.push(peer.clone()),
            Ok(Some(false)) => {
                abort(copy);
                crate::common::log::log(
                    &repl.log_prefix,
                    "INFO",
                    &format!(
                        "replication: {peer} holds the claim on {}; not adopting",
                        info.name
                    ),
                );
                return Ok(None);
            }
            Ok(None) => {}
            Err(e) => crate::common::log::log(
                &repl.log_prefix,
                "WARNING",
                &format!("replication: pulling the copy of {} from {peer}: {e}", info.name),
            ),
        }
        if *copy.phase.lock() == ClaimPhase::Yielded {
            abort(copy);
            return Ok(None);
        }
    }
    {
        let mut phase = copy.phase.lock();
        if *phase == ClaimPhase::Yielded {
            drop(phase);
            abort(copy);
            return Ok(None);
        }
        *phase = ClaimPhase::Committed;
    }
    let ends = copy.ends();
    let work = {
        let (broker, copy) = (broker.clone(), copy.clone());
        tokio::task::spawn_blocking(move || adopt_into(&broker, &copy))
    };
    let topics = match work.await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            abort(copy);
            return Err(e);
        }
        Err(e) => {
            abort(copy);
            return Err(e.to_string());
        }
    };
    let record = AdoptionRecord {
        owner: copy.owner.clone(),
        epoch: info.epoch,
        adopter: repl.node.clone(),
        ends,
        at_ns: now_ns(),
    };
    copy.mark_adopted(record.clone());
    *copy.phase.lock() = ClaimPhase::Idle;
    for peer in info.peers.iter().filter(|p| **p != own_address) {
        let _ = tokio::time::timeout(Duration::from_secs(3), tell_adopted(repl, peer, &record)).await;
    }
    let messages = topics.values().sum();
    crate::common::log::log(
        &repl.log_prefix,
        "INFO",
        &format!(
            "replication: adopted {} ({}, epoch {}): {messages} messages on {} topics",
            info.name,
            copy.owner,
            info.epoch,
            topics.len()
        ),
    );
    Ok(Some(AdoptReport {
        owner: copy.owner.clone(),
        name: info.name,
        epoch: info.epoch,
        topics,
        messages,
        pulled_from,
    }))
}

/// Asks another holder for a claim (or, without `claim`, just for its copy) and applies what
/// it has that this copy lacks. Some(granted) from a holder, None when `peer` is this broker.
async fn pull(repl: &Replication, copy: &Copy, peer: &str, claim: bool) -> Result<Option<bool>, String> {
    let io = link::dial(peer, repl.tls_client.as_ref()).await?;
    let (rd, mut wr) = tokio::io::split(io);
    let mut reader = FrameReader::new(rd);
    let request = Claim {
        owner: copy.owner.clone(),
        epoch: copy.info.lock().epoch,
        claimant: repl.node.clone(),
        claim,
        ends: copy.ends(),
        versions: copy.versions(),
    };
    link::send(&mut wr, &Frame::Claim(request)).await?;
    let answer = match reader.next(IDLE_TIMEOUT).await? {
        Frame::Claimed(c) => c,
        other => return Err(format!("expected CLAIMED, got {other:?}")),
    };
    if answer.holder == repl.node {
        return Ok(None);
    }
    if !answer.granted {
        return Ok(Some(false));
    }
    let max = copy.info.lock().max_msg_size as usize;
    reader.max_frame = super::wire::BASE_FRAME_LIMIT + max;
    let session = copy.current_session();
    loop {
        match reader.next(IDLE_TIMEOUT * 2).await? {
            Frame::Append { topic, pos, records } => {
                copy.append(session, &topic, pos, &records)?;
            }
            Frame::Topic(t) => copy.apply_topic(session, &t)?,
            Frame::State(s) => copy.apply_state(session, &s)?,
            Frame::End => break,
            other => return Err(format!("unexpected frame {other:?}")),
        }
    }
    copy.flush_meta();
    Ok(Some(true))
}

async fn tell_adopted(repl: &Replication, peer: &str, record: &AdoptionRecord) -> Result<(), String> {
    let io = link::dial(peer, repl.tls_client.as_ref()).await?;
    let (rd, mut wr) = tokio::io::split(io);
    link::send(&mut wr, &Frame::Adopted(record.clone())).await?;
    FrameReader::new(rd).next(IDLE_TIMEOUT).await.map(|_| ())
}

/// A contiguous stretch of the copy and where it now lies in this broker's log.
#[derive(Debug, Clone, Copy)]
struct Piece {
    copy_pos: u64,
    copy_seq: u64,
    copy_end_pos: u64,
    copy_end_seq: u64,
    new: LogHead,
}

impl Piece {
    /// The part of `[from, to)` (copy positions and sequences) inside this piece, mapped.
    fn map_range(&self, from: LogHead, to: LogHead) -> Option<CursorRange> {
        let lo = if from.pos >= self.copy_pos {
            from
        } else {
            LogHead {
                pos: self.copy_pos,
                seq: self.copy_seq,
            }
        };
        let hi = if to.pos <= self.copy_end_pos {
            to
        } else {
            LogHead {
                pos: self.copy_end_pos,
                seq: self.copy_end_seq,
            }
        };
        (lo.pos < hi.pos && lo.seq >= self.copy_seq).then(|| CursorRange {
            pos: self.new.pos + (lo.pos - self.copy_pos),
            seq: self.new.seq + (lo.seq - self.copy_seq),
            end_pos: self.new.pos + (hi.pos - self.copy_pos),
            end_seq: self.new.seq + (hi.seq.max(lo.seq) - self.copy_seq),
        })
    }

    fn map_pos(&self, pos: u64) -> Option<u64> {
        (self.copy_pos..self.copy_end_pos)
            .contains(&pos)
            .then(|| self.new.pos + (pos - self.copy_pos))
    }
}

/// Turns every topic of the copy into live messages of `broker`. Returns messages per topic.
fn adopt_into(broker: &Arc<Broker>, copy: &Copy) -> Result<BTreeMap<String, u64>, String> {
    let topics = copy.topics.lock();
    let mut out = BTreeMap::new();
    for (name, ct) in topics.iter() {
        let n = adopt_topic(broker, name, ct).map_err(|e| format!("topic {name}: {e}"))?;
        out.insert(name.clone(), n);
    }
    drop(topics);
    broker.persist_metadata();
    Ok(out)
}

fn adopt_topic(broker: &Arc<Broker>, name: &str, ct: &CopyTopic) -> Result<u64, String> {
    let (tail, end) = {
        let l = ct.log.lock();
        (l.tail(), l.head())
    };
    // Each copied channel's last shipped state; one whose state never arrived still needs
    // everything the copy has.
    let channels: Vec<(String, ChannelSnapshot, bool)> = ct
        .meta
        .channels
        .iter()
        .map(|(ch, (_, paused))| {
            let snap = ct.snapshot(ch).unwrap_or_else(|| ChannelSnapshot {
                generation: 0,
                base_seq: tail.seq,
                ranges: vec![CursorRange::open(tail.pos, tail.seq)],
                entries: vec![],
            });
            (ch.clone(), snap, *paused)
        })
        .collect();
    let low = if channels.is_empty() {
        ct.meta.orphan_start.map_or(tail.pos, |o| o.pos)
    } else {
        channels
            .iter()
            .flat_map(|(_, s, _)| {
                s.ranges
                    .iter()
                    .map(|r| r.pos)
                    .chain(s.entries.iter().map(|e| e.pos))
            })
            .min()
            .unwrap_or(end.pos)
    }
    .max(tail.pos);

    let existed = broker.topic(name).is_some();
    let topic = broker.get_or_create_topic(name)?;
    if !existed {
        topic.set_paused(ct.meta.paused);
    }
    let mut adopted_channels = Vec::new();
    for (ch_name, snap, paused) in &channels {
        let existed = topic.channel(ch_name).is_some();
        let ch = broker.get_or_create_channel(&topic, ch_name)?;
        if !existed {
            ch.set_paused(*paused);
        }
        adopted_channels.push((ch, snap));
    }

    // Nothing reads the appended stretches before the channels that must not see them skip them.
    let froze = topic.freeze_view();
    let result = append_copy(&topic, ct, low, end, !channels.is_empty());
    topic.unfreeze_view(froze);
    let (pieces, count) = result?;

    for (ch, snap) in &adopted_channels {
        let mut ranges = Vec::new();
        for r in &snap.ranges {
            let from = LogHead {
                pos: r.pos,
                seq: r.seq,
            };
            let to = if r.is_open() {
                end
            } else {
                LogHead {
                    pos: r.end_pos.min(end.pos),
                    seq: r.end_seq.min(end.seq),
                }
            };
            ranges.extend(pieces.iter().filter_map(|p| p.map_range(from, to)));
        }
        for r in ranges.iter().rev() {
            ch.prepend_range(*r);
        }
        let entries: Vec<OutstandingEntry> = snap
            .entries
            .iter()
            .filter_map(|e| {
                let pos = pieces.iter().find_map(|p| p.map_pos(e.pos))?;
                Some(OutstandingEntry { pos, ..*e })
            })
            .collect();
        ch.import_outstanding(&entries);
        ch.persist(true);
    }
    topic.sync_all().map_err(|e| e.to_string())?;
    topic.rebuild_unread_deferred();
    topic.wake_channels();
    Ok(count)
}

/// Appends the copy's records from `low` to `end`, contiguous stretch by contiguous stretch;
/// with `skip`, every channel of the topic skips each stretch (they are the copied channels'
/// only, handed out afterwards).
fn append_copy(
    topic: &crate::nsqd::broker::topic::Topic,
    ct: &CopyTopic,
    low: u64,
    end: LogHead,
    skip: bool,
) -> Result<(Vec<Piece>, u64), String> {
    let mut reader = LogReader::default();
    let mut pieces = Vec::new();
    let mut count = 0u64;
    let mut pos = low;
    let mut seq = None;
    while pos < end.pos {
        let batch = reader
            .read_from(&ct.log, pos, seq, end, 1000)
            .map_err(|e| format!("reading the copy at {pos}: {e}"))?;
        if batch.messages.is_empty() {
            if batch.next_pos <= pos {
                break;
            }
            pos = batch.next_pos;
            seq = batch.next_seq;
            continue;
        }
        let mut run_start = 0;
        for i in 1..=batch.messages.len() {
            let split = i == batch.messages.len() || batch.messages[i].pos != batch.messages[i - 1].next_pos;
            if !split {
                continue;
            }
            let run = &batch.messages[run_start..i];
            let records: Vec<NewRecord> = run
                .iter()
                .map(|m| NewRecord {
                    id: m.id,
                    timestamp_ns: m.timestamp_ns,
                    attempts: m.attempts,
                    deliver_at_ns: m.deliver_at_ns,
                    body: &m.body,
                })
                .collect();
            let (start, stop) = topic.append_records(&records).map_err(|e| e.to_string())?;
            if skip {
                for ch in topic.channels() {
                    ch.skip(start, stop);
                }
            }
            let last = run.last().unwrap();
            pieces.push(Piece {
                copy_pos: run[0].pos,
                copy_seq: run[0].seq,
                copy_end_pos: last.next_pos,
                copy_end_seq: last.seq + 1,
                new: start,
            });
            count += run.len() as u64;
            run_start = i;
        }
        pos = batch.next_pos;
        seq = batch.next_seq;
    }
    Ok((pieces, count))
}

/// Adoptions a crash interrupted are done again (duplicates, never loss).
pub fn resume_interrupted(repl: Arc<Replication>) {
    for copy in repl.copies.all() {
        if copy.adoption_interrupted() && copy.adopted.lock().is_none() {
            let repl = repl.clone();
            tokio::spawn(async move {
                crate::common::log::log(
                    &repl.log_prefix,
                    "INFO",
                    &format!("replication: resuming the interrupted adoption of {}", copy.owner),
                );
                if let Err(e) = adopt_copy(&repl, &copy, false).await {
                    crate::common::log::log(
                        &repl.log_prefix,
                        "ERROR",
                        &format!("replication: adoption of {}: {e}", copy.owner),
                    );
                }
            });
        }
    }
}

/// Adopts copies whose owner has been unreachable for `--adopt-after`.
pub async fn auto_loop(repl: Arc<Replication>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let Some(broker) = repl.broker() else { return };
        if broker.is_exiting() {
            return;
        }
        let now = now_ns() as u64;
        for copy in repl.copies.all() {
            let info = copy.info.lock().clone();
            let quiet_ns = now.saturating_sub(copy.last_contact_ns.load(Ordering::Relaxed));
            let claimed_elsewhere = copy
                .grant
                .lock()
                .as_ref()
                .is_some_and(|g| g.epoch >= info.epoch && g.claimant != repl.node);
            if info.node.is_empty()
                || copy.adopted.lock().is_some()
                || copy.adopting.load(Ordering::Acquire)
                || copy.connected.load(Ordering::Acquire) > 0
                || claimed_elsewhere
                || quiet_ns < repl.adopt_after.as_nanos() as u64
            {
                continue;
            }
            // An owner that still accepts connections is alive (restarting, or cut off from
            // this broker only): adopting it would only duplicate.
            let alive = !info.tcp_address.is_empty()
                && matches!(
                    tokio::time::timeout(
                        Duration::from_secs(1),
                        tokio::net::TcpStream::connect(&info.tcp_address)
                    )
                    .await,
                    Ok(Ok(_))
                );
            if alive {
                continue;
            }
            // Holders that see the owner go at the same moment should not collide at once.
            tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 200)).await;
            if copy.connected.load(Ordering::Acquire) > 0 {
                continue;
            }
            crate::common::log::log(
                &repl.log_prefix,
                "WARNING",
                &format!(
                    "replication: {} ({}) unreachable for {:?}: adopting its copy",
                    info.name, copy.owner, repl.adopt_after
                ),
            );
            if let Err(e) = adopt_copy(&repl, &copy, true).await {
                crate::common::log::log(
                    &repl.log_prefix,
                    "ERROR",
                    &format!("replication: adoption of {}: {e}", info.name),
                );
            }
        }
    }
}
