//! The holder's side of replication: connections that opened the nsqd TCP listener with
//! `  R1`/`  RS`. An owner's connection (HELLO) feeds its copy and is acknowledged; another
//! holder's (CLAIM) asks for a claim on a copy and for what it lacks of it; an adopter's
//! (ADOPTED) says a copy was taken.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::copies::{ClaimPhase, Copy, Grant};
use super::link::{self, BoxIo, FrameReader, IDLE_TIMEOUT};
use super::wire::{self, Claim, Claimed, End, Frame, Hello, HARD_FRAME_LIMIT, MAGIC_TLS};
use super::Replication;
use crate::nsqd::broker::log::LogReader;

/// How long the first frame may take to arrive.
const FIRST_FRAME: Duration = Duration::from_secs(10);

/// Serves one replication connection; `magic` is what the peer sent instead of `  V2`.
pub async fn serve(
    mut stream: TcpStream,
    magic: [u8; 4],
    repl: Option<Arc<Replication>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let _ = stream.set_nodelay(true);
    let remote = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let refuse = |text: &str| {
        let mut out = Vec::new();
        wire::encode(&Frame::Error(text.to_string()), &mut out);
        out
    };
    let Some(repl) = repl else {
        let _ = link::write_all(&mut stream, &refuse("E_INVALID replication is not running here")).await;
        return;
    };
    let io: BoxIo = if magic == MAGIC_TLS {
        let Some(acceptor) = tls else {
            let _ = link::write_all(
                &mut stream,
                &refuse("E_TLS_NOT_AVAILABLE this broker has no TLS certificate"),
            )
            .await;
            return;
        };
        match tokio::time::timeout(Duration::from_secs(5), acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Box::new(tls),
            _ => return,
        }
    } else {
        if repl.tls_required {
            let _ = link::write_all(&mut stream, &refuse("E_TLS_REQUIRED replication must use TLS")).await;
            return;
        }
        Box::new(stream)
    };
    let (rd, mut wr) = tokio::io::split(io);
    let mut reader = FrameReader::new(rd);
    let result = match reader.next(FIRST_FRAME).await {
        Ok(Frame::Hello(hello)) => owner_session(&repl, hello, reader, &mut wr).await,
        Ok(Frame::Claim(claim)) => claim_session(&repl, claim, &mut wr).await,
        Ok(Frame::Adopted(record)) => {
            if record.adopter != repl.node {
                if let Some(copy) = repl.copies.get(&record.owner) {
                    if !copy.adopting.load(Ordering::Acquire) {
                        copy.mark_adopted(record);
                    }
                }
            }
            link::send(&mut wr, &Frame::End).await
        }
        Ok(other) => Err(format!("unexpected first frame {other:?}")),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        let mut out = Vec::new();
        wire::encode(&Frame::Error(e.clone()), &mut out);
        let _ = link::write_all(&mut wr, &out).await;
        crate::common::log::log(
            &repl.log_prefix,
            "WARNING",
            &format!("replication from {remote}: {e}"),
        );
    }
}

/// Feeds the copy of the owner that said HELLO, acknowledging what it wrote, until the
/// connection ends.
async fn owner_session<R, W>(
    repl: &Replication,
    hello: Hello,
    mut reader: FrameReader<R>,
    wr: &mut W,
) -> Result<(), String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if hello.node == repl.node {
        return Err("E_INVALID a broker cannot replicate to itself".into());
    }
    let copy = repl
        .copies
        .get_or_create(&hello.node)
        .map_err(|e| format!("E_INVALID cannot keep a copy - {e}"))?;
    if copy.adopting.load(Ordering::Acquire) {
        return Err("E_INVALID this broker is adopting the copy; try again".into());
    }
    let session = copy.begin_session(&hello);
    reader.max_frame = (wire::BASE_FRAME_LIMIT as u64)
        .saturating_add(hello.max_msg_size)
        .min(HARD_FRAME_LIMIT as u64) as usize;
    let welcome = wire::Welcome {
        node: repl.node.clone(),
        ends: copy.ends(),
        adopted: copy.adoption_news(hello.epoch),
    };
    link::send(wr, &Frame::Welcome(welcome)).await?;
    copy.connected.fetch_add(1, Ordering::AcqRel);
    let result = apply_owner_frames(&copy, session, &mut reader, wr).await;
    copy.connected.fetch_sub(1, Ordering::AcqRel);
    copy.touch();
    copy.flush_meta();
    result
}

async fn apply_owner_frames<R, W>(
    copy: &Copy,
    session: u64,
    reader: &mut FrameReader<R>,
    wr: &mut W,
) -> Result<(), String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut out = Vec::new();
    loop {
        let mut frame = Some(reader.next(IDLE_TIMEOUT).await?);
        let mut acks: BTreeMap<String, End> = BTreeMap::new();
        let mut synced = None;
        let mut ping = false;
        // Everything already buffered is applied before one reply goes back.
        while let Some(f) = frame {
            match f {
                Frame::Append { topic, pos, records } => {
                    let end = copy.append(session, &topic, pos, &records)?;
                    acks.insert(topic, end);
                }
                Frame::State(state) => {
                    copy.apply_state(session, &state)?;
                    synced = synced.max(Some(state.version));
                }
                Frame::Topic(state) => {
                    copy.apply_topic(session, &state)?;
                    synced = synced.max(Some(state.version));
                }
                Frame::Release { topic, pos } => copy.release(session, &topic, pos),
                Frame::Drop { topic } => {
                    copy.drop_topic(session, &topic);
                    acks.remove(&topic);
                }
                Frame::Ping => ping = true,
                other => return Err(format!("unexpected frame {other:?}")),
            }
            frame = reader.buffered()?;
        }
        if !copy.is_current(session) {
            return Err("superseded by a newer connection from the same owner".into());
        }
        if synced.is_some() {
            copy.flush_meta();
        }
        for (topic, end) in acks {
            wire::encode(&Frame::Ack { topic, end }, &mut out);
        }
        if let Some(version) = synced {
            wire::encode(&Frame::Synced { version }, &mut out);
        }
        if out.is_empty() && ping {
            wire::encode(&Frame::Ping, &mut out);
        }
        copy.touch();
        if !out.is_empty() {
            link::write_all(wr, &out).await?;
            out.clear();
        }
    }
}

/// Another holder claims (or pulls) a copy: answer, then send what it lacks.
async fn claim_session<W: AsyncWrite + Unpin>(
    repl: &Replication,
    claim: Claim,
    wr: &mut W,
) -> Result<(), String> {
    let copy = repl.copies.get(&claim.owner);
    let mut answer = Claimed {
        granted: true,
        winner: None,
        holder: repl.node.clone(),
        has_copy: false,
        ends: BTreeMap::new(),
    };
    if let Some(copy) = &copy {
        answer.has_copy = copy.adopted.lock().is_none();
        answer.ends = copy.ends();
        let adopted = copy.adopted.lock().clone();
        let other_grant = copy.grant.lock().clone().filter(|g| g.claimant != claim.claimant);
        // Decided under the phase lock, which this holder's own adoption takes to commit.
        let mut phase = copy.phase.lock();
        if let Some(a) = adopted {
            answer.granted = !claim.claim;
            answer.winner = Some(a.adopter);
        } else if *phase == ClaimPhase::Committed {
            answer.granted = !claim.claim;
            answer.winner = Some(repl.node.clone());
        } else if let (true, Some(g)) = (claim.claim, &other_grant) {
            answer.granted = false;
            answer.winner = Some(g.claimant.clone());
        } else if *phase == ClaimPhase::Claiming && claim.claim {
            // Both claim at once: the lower node id wins, the other yields.
            if claim.claimant.as_str() < repl.node.as_str() {
                *phase = ClaimPhase::Yielded;
            } else {
                answer.granted = false;
                answer.winner = Some(repl.node.clone());
            }
        }
        if answer.granted && *phase != ClaimPhase::Committed {
            let epoch = copy.info.lock().epoch;
            copy.set_grant(Some(Grant {
                epoch,
                claimant: claim.claimant.clone(),
            }));
        }
        drop(phase);
    }
    link::send(wr, &Frame::Claimed(answer.clone())).await?;
    if let (true, true, Some(copy)) = (answer.granted, answer.has_copy, &copy) {
        send_missing(copy, &claim, wr).await?;
    }
    link::send(wr, &Frame::End).await
}

/// Streams the records, topic metadata and channel states of `copy` that the claimant lacks.
async fn send_missing<W: AsyncWrite + Unpin>(copy: &Copy, claim: &Claim, wr: &mut W) -> Result<(), String> {
    let logs: Vec<(String, Arc<parking_lot::Mutex<crate::nsqd::broker::log::DiskLog>>)> = copy
        .topics
        .lock()
        .iter()
        .map(|(n, t)| (n.clone(), t.log.clone()))
        .collect();
    let mut out = Vec::new();
    for (name, log) in logs {
        let mut reader = LogReader::default();
        let head = log.lock().head();
        let mut pos = claim.ends.get(&name).map_or(0, |e| e.pos);
        while pos < head.pos {
            let mut records = Vec::new();
            let Some(start) = reader
                .read_raw(&log, pos, head, 1 << 20, &mut records)
                .map_err(|e| format!("reading copy of {name}: {e}"))?
            else {
                break;
            };
            wire::put_append_header(&mut out, &name, start, records.len());
            out.extend_from_slice(&records);
            pos = start + records.len() as u64;
            if out.len() >= 4 << 20 {
                link::write_all(wr, &out).await?;
                out.clear();
            }
        }
    }
    state_frames(copy, claim, &mut out);
    link::write_all(wr, &out).await
}

/// TOPIC and STATE frames of `copy` newer than the claimant's versions.
fn state_frames(copy: &Copy, claim: &Claim, out: &mut Vec<u8>) {
    let topics = copy.topics.lock();
    for (name, t) in topics.iter() {
        if claim.versions.get(name).is_none_or(|v| *v < t.meta.version) {
            wire::encode(
                &Frame::Topic(wire::TopicState {
                    topic: name.clone(),
                    version: t.meta.version,
                    paused: t.meta.paused,
                    orphan_start: t.meta.orphan_start,
                    channels: t.meta.channels.keys().cloned().collect(),
                }),
                out,
            );
        }
        for (ch, (version, paused)) in &t.meta.channels {
            let newer = claim
                .versions
                .get(&format!("{name}/{ch}"))
                .is_none_or(|v| v < version);
            if let (true, Some(snapshot)) = (newer, t.snapshot(ch)) {
                wire::encode(
                    &Frame::State(wire::ChannelState {
                        topic: name.clone(),
                        channel: ch.clone(),
                        version: *version,
                        paused: *paused,
                        snapshot,
                    }),
                    out,
                );
            }
        }
    }
}
