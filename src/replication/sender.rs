//! The owner's side of replication: one task per peer that keeps a connection to it, streams
//! every topic's log from where the peer's copy ends (new appends as they come, a returning
//! peer's backlog from the log files), ships changed channel state every checkpoint interval,
//! and records what the peer acknowledged.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::{sleep, Instant};

use super::link::{self, FrameReader, IDLE_TIMEOUT, PING_EVERY};
use super::wire::{self, ChannelState, End, Frame, Hello, TopicState};
use super::{PeerLink, Replication};
use crate::common::time::now_ns;
use crate::nsqd::broker::journal::ChannelSnapshot;
use crate::nsqd::broker::log::LogReader;
use crate::nsqd::broker::topic::{LogStore, Topic};
use crate::nsqd::broker::Broker;

/// Most bytes of records in one APPEND frame (a single larger record goes alone).
const MAX_APPEND: usize = 1 << 20;
/// Most bytes sent to a peer and not yet acknowledged.
const WINDOW: u64 = 8 << 20;
/// How often channel state is compared and shipped (the checkpoint interval).
const STATE_EVERY: Duration = Duration::from_millis(200);

/// What `/stats` shows of a peer.
#[derive(Debug, Default, Clone)]
pub struct LinkStatus {
    pub last_error: String,
    /// State shipped and not yet confirmed: (version, when it changed, how many channels).
    pub state_pending: VecDeque<(u64, i64, usize)>,
    /// Changes seen and not shipped because the peer is away: since when.
    pub unshipped_since_ns: Option<i64>,
    pub connected_since_ns: i64,
}

impl LinkStatus {
    /// (ms since the oldest unconfirmed state change, channels and topics it covers).
    pub fn state_lag(&self, now: i64) -> (u64, usize) {
        let oldest = self
            .state_pending
            .front()
            .map(|p| p.1)
            .into_iter()
            .chain(self.unshipped_since_ns)
            .min();
        let count = self.state_pending.iter().map(|p| p.2).sum();
        (oldest.map_or(0, |t| ((now - t).max(0) / 1_000_000) as u64), count)
    }
}

/// Counts senders that finished their first attempt, so start-up can wait for them.
#[derive(Default)]
pub struct FirstRound {
    done: AtomicUsize,
    notify: Notify,
}

impl FirstRound {
    fn report(&self) {
        self.done.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    pub async fn wait_for(&self, n: usize) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.done.load(Ordering::Acquire) >= n {
                return;
            }
            notified.await;
        }
    }
}

/// Runs the connection to one peer for the life of the broker.
pub async fn run(repl: Arc<Replication>, link: Arc<PeerLink>, broker: Arc<Broker>, first: Arc<FirstRound>) {
    let mut reported = false;
    let mut backoff = Duration::from_millis(100);
    let mut last_logged = String::new();
    while !broker.is_exiting() {
        let started = Instant::now();
        let result = session(&repl, &link, &broker, &first, &mut reported).await;
        let was_connected = link.connected.swap(false, Ordering::AcqRel);
        repl.peer_changed();
        {
            let mut st = link.status.lock();
            let since = st.state_pending.front().map(|p| p.1).unwrap_or_else(now_ns);
            st.unshipped_since_ns.get_or_insert(since);
        }
        if !reported {
            reported = true;
            first.report();
        }
        let err = match result {
            Ok(()) => String::new(),
            Err(e) => e,
        };
        if !err.is_empty() {
            link.status.lock().last_error = err.clone();
            if was_connected || err != last_logged {
                crate::common::log::log(
                    &broker.opts.log_prefix,
                    "WARNING",
                    &format!("replication to {}: {err}", link.address),
                );
                last_logged = err.clone();
            }
        }
        if started.elapsed() > Duration::from_secs(5) {
            backoff = Duration::from_millis(100);
        }
        let mut epoch = repl.subscribe_epoch();
        if err.is_empty() {
            continue;
        }
        tokio::select! {
            _ = sleep(backoff) => {}
            _ = epoch.changed() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Where one topic stands with this peer.
struct Shipped {
    /// Identity of the `Topic` object, so a deleted and re-created topic starts over.
    instance: usize,
    sent: u64,
    released: u64,
    reader: LogReader,
}

fn instance(topic: &Arc<Topic>) -> usize {
    Arc::as_ptr(topic) as usize
}

async fn session(
    repl: &Arc<Replication>,
    link: &Arc<PeerLink>,
    broker: &Arc<Broker>,
    first: &FirstRound,
    reported: &mut bool,
) -> Result<(), String> {
    let io = link::dial(&link.address, repl.tls_client.as_ref()).await?;
    let (rd, mut wr) = tokio::io::split(io);
    let mut reader = FrameReader::new(rd);
    let hello = Hello {
        node: repl.node.clone(),
        name: repl.name.lock().clone(),
        tcp_address: repl.tcp_address.lock().clone(),
        epoch: repl.epoch(),
        peers: broker.opts.replicate_to.clone(),
        replicas: broker.opts.replicas.max(1) as u32,
        max_msg_size: repl.max_msg_size,
    };
    let epoch = hello.epoch;
    link::send(&mut wr, &Frame::Hello(hello)).await?;
    let welcome = match reader.next(IDLE_TIMEOUT).await? {
        Frame::Welcome(w) => w,
        other => return Err(format!("expected WELCOME, got {other:?}")),
    };
    if welcome.node == repl.node {
        return Err("this address is this broker itself".into());
    }
    *link.node.lock() = Some(welcome.node.clone());
    if let Some(record) = &welcome.adopted {
        repl.apply_adoption_news(record).await;
        if repl.epoch() != epoch {
            // Start over with the new epoch: the peer then drops its record and copies afresh.
            return Ok(());
        }
    }
    let mut out = Vec::new();
    let mut shipped: HashMap<String, Shipped> = HashMap::new();
    // What an earlier connection acknowledged counts no more: the peer may have lost it.
    link.acked.lock().clear();
    for (name, end) in &welcome.ends {
        match broker
            .topic(name)
            .filter(|t| matches!(t.core.log, LogStore::Disk(_)))
        {
            Some(topic) if copy_matches(&topic, *end) => {
                link.acked.lock().insert(name.clone(), end.pos);
                shipped.insert(
                    name.clone(),
                    Shipped {
                        instance: instance(&topic),
                        sent: end.pos,
                        released: 0,
                        reader: LogReader::default(),
                    },
                );
            }
            // Deleted here while the peer was away, or a copy this log no longer agrees with.
            _ => wire::encode(&Frame::Drop { topic: name.clone() }, &mut out),
        }
    }
    link.connected.store(true, Ordering::Release);
    {
        let mut st = link.status.lock();
        st.connected_since_ns = now_ns();
        st.last_error.clear();
        st.state_pending.clear();
        // Everything is shipped afresh on this connection; its lag is tracked from here.
        st.unshipped_since_ns = None;
    }
    repl.peer_changed();
    if !*reported {
        *reported = true;
        first.report();
    }
    crate::common::log::log(
        &broker.opts.log_prefix,
        "INFO",
        &format!("replication to {} ({}) connected", link.address, welcome.node),
    );

    let reader_done = Arc::new(Notify::new());
    let reader_error = Arc::new(parking_lot::Mutex::new(None::<String>));
    let ack_task = {
        let (repl, link, done, error) = (
            repl.clone(),
            link.clone(),
            reader_done.clone(),
            reader_error.clone(),
        );
        tokio::spawn(async move {
            let e = read_acks(&repl, &link, reader).await;
            *error.lock() = Some(e);
            done.notify_one();
        })
    };
    let result = ship(
        repl,
        link,
        broker,
        &mut wr,
        &mut out,
        &mut shipped,
        &reader_done,
        &reader_error,
    )
    .await;
    ack_task.abort();
    result
}

/// Whether a peer's copy that ends at `end` is a prefix of this topic's log.
fn copy_matches(topic: &Topic, end: End) -> bool {
    let head = topic.core.head();
    if end.pos == head.pos {
        return end.seq == head.seq;
    }
    if end.pos > head.pos {
        return false;
    }
    let mut reader = LogReader::default();
    match topic.core.read_one(&mut reader, end.pos) {
        Some(m) => m.seq == end.seq,
        // Released here: the copy's end is older than anything kept, so it is a prefix.
        None => match &topic.core.log {
            LogStore::Disk(log) => end.pos < log.lock().tail().pos,
            LogStore::Memory(_) => false,
        },
    }
}

async fn read_acks<R: AsyncRead + Unpin>(
    repl: &Replication,
    link: &PeerLink,
    mut reader: FrameReader<R>,
) -> String {
    loop {
        match reader.next(IDLE_TIMEOUT).await {
            Ok(Frame::Ack { topic, end }) => repl.set_acked(link, &topic, end.pos),
            Ok(Frame::Synced { version }) => {
                let mut st = link.status.lock();
                while st.state_pending.front().is_some_and(|p| p.0 <= version) {
                    st.state_pending.pop_front();
                }
            }
            Ok(Frame::Ping) => {}
            Ok(other) => return format!("unexpected frame from peer: {other:?}"),
            Err(e) => return e,
        }
    }
}

/// What the last shipped state of each channel and topic was, per session.
#[derive(Default)]
struct ShippedState {
    channels: HashMap<(String, String), (ChannelSnapshot, bool)>,
    topics: HashMap<String, (bool, Option<End>, Vec<String>)>,
}

#[allow(clippy::too_many_arguments)]
async fn ship<W: AsyncWrite + Unpin>(
    repl: &Replication,
    link: &PeerLink,
    broker: &Arc<Broker>,
    wr: &mut W,
    out: &mut Vec<u8>,
    shipped: &mut HashMap<String, Shipped>,
    reader_done: &Notify,
    reader_error: &parking_lot::Mutex<Option<String>>,
) -> Result<(), String> {
    let mut epoch = repl.subscribe_epoch();
    let start_epoch = *epoch.borrow();
    let mut state = ShippedState::default();
    let mut next_state = Instant::now();
    let mut last_write = Instant::now();
    loop {
        let woken = link.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let done = reader_done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        let failed = reader_error.lock().take();
        if let Some(e) = failed {
            return Err(e);
        }
        if *epoch.borrow() != start_epoch || broker.is_exiting() {
            return Ok(());
        }
        let topics: Vec<Arc<Topic>> = broker
            .topics()
            .into_iter()
            .filter(|t| matches!(t.core.log, LogStore::Disk(_)))
            .collect();
        append_logs(link, &topics, shipped, out)?;
        if Instant::now() >= next_state {
            ship_state(link, &topics, &mut state, out);
            next_state = Instant::now() + STATE_EVERY;
        }
        if out.is_empty() && last_write.elapsed() >= PING_EVERY {
            wire::encode(&Frame::Ping, out);
        }
        if !out.is_empty() {
            link::write_all(wr, out).await?;
            out.clear();
            last_write = Instant::now();
            continue;
        }
        let wake_at = next_state.min(last_write + PING_EVERY);
        tokio::select! {
            _ = &mut woken => {}
            _ = &mut done => {}
            _ = epoch.changed() => {}
            _ = tokio::time::sleep_until(wake_at) => {}
        }
    }
}

/// Adds APPEND (and RELEASE, DROP) frames for what each topic has that the peer lacks, within
/// the window of unacknowledged bytes.
fn append_logs(
    link: &PeerLink,
    topics: &[Arc<Topic>],
    shipped: &mut HashMap<String, Shipped>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let mut present = std::collections::HashSet::with_capacity(topics.len());
    let mut in_flight: u64 = shipped
        .iter()
        .map(|(name, s)| s.sent.saturating_sub(link.acked(name)))
        .sum();
    for topic in topics {
        let name = topic.name();
        present.insert(name);
        let LogStore::Disk(log) = &topic.core.log else {
            continue;
        };
        let entry = shipped.entry(name.to_string()).or_insert_with(|| Shipped {
            instance: instance(topic),
            sent: 0,
            released: 0,
            reader: LogReader::default(),
        });
        if entry.instance != instance(topic) {
            // Deleted and created again: the copy starts over.
            wire::encode(
                &Frame::Drop {
                    topic: name.to_string(),
                },
                out,
            );
            link.acked.lock().remove(name);
            *entry = Shipped {
                instance: instance(topic),
                sent: 0,
                released: 0,
                reader: LogReader::default(),
            };
        }
        let head = topic.core.head();
        while entry.sent < head.pos && in_flight < WINDOW && out.len() < 4 * MAX_APPEND {
            let at = out.len();
            // Room for the header, written once the records' length is known.
            out.resize(at + 4 + 1 + 2 + name.len() + 8, 0);
            let body_at = out.len();
            let start = entry
                .reader
                .read_raw(log, entry.sent, head, MAX_APPEND, out)
                .map_err(|e| format!("reading topic {name} at {}: {e}", entry.sent))?;
            let Some(start) = start else {
                out.truncate(at);
                break;
            };
            let len = out.len() - body_at;
            let mut header = Vec::with_capacity(body_at - at);
            wire::put_append_header(&mut header, name, start, len);
            out[at..body_at].copy_from_slice(&header);
            entry.sent = start + len as u64;
            in_flight += len as u64;
        }
        let tail = log.lock().tail().pos;
        if tail > entry.released {
            if entry.released > 0 || tail > 0 {
                wire::encode(
                    &Frame::Release {
                        topic: name.to_string(),
                        pos: tail,
                    },
                    out,
                );
            }
            entry.released = tail;
        }
    }
    let gone: Vec<String> = shipped
        .keys()
        .filter(|n| !present.contains(n.as_str()))
        .cloned()
        .collect();
    for name in gone {
        shipped.remove(&name);
        link.acked.lock().remove(&name);
        wire::encode(&Frame::Drop { topic: name }, out);
    }
    Ok(())
}

/// Adds TOPIC and STATE frames for what changed since they were last shipped.
fn ship_state(link: &PeerLink, topics: &[Arc<Topic>], state: &mut ShippedState, out: &mut Vec<u8>) {
    let version = now_ns() as u64;
    let mut count = 0usize;
    let mut live = std::collections::HashSet::new();
    for topic in topics {
        let name = topic.name().to_string();
        let channels: Vec<_> = topic.channels().into_iter().filter(|c| !c.ephemeral).collect();
        let orphan = topic.orphan_start().map(|h| End {
            pos: h.pos,
            seq: h.seq,
        });
        let names: Vec<String> = channels.iter().map(|c| c.name.clone()).collect();
        let meta = (topic.is_paused(), orphan, names.clone());
        if state.topics.get(&name) != Some(&meta) {
            wire::encode(
                &Frame::Topic(TopicState {
                    topic: name.clone(),
                    version,
                    paused: meta.0,
                    orphan_start: orphan,
                    channels: names,
                }),
                out,
            );
            state.topics.insert(name.clone(), meta);
            count += 1;
        }
        for ch in channels {
            let key = (name.clone(), ch.name.clone());
            let now = (ch.export_snapshot(), ch.is_paused());
            live.insert(key.clone());
            if state.channels.get(&key) == Some(&now) {
                continue;
            }
            wire::encode(
                &Frame::State(ChannelState {
                    topic: name.clone(),
                    channel: ch.name.clone(),
                    version,
                    paused: now.1,
                    snapshot: now.0.clone(),
                }),
                out,
            );
            state.channels.insert(key, now);
            count += 1;
        }
    }
    state.channels.retain(|k, _| live.contains(k));
    state.topics.retain(|t, _| topics.iter().any(|x| x.name() == t));
    if count > 0 {
        link.status
            .lock()
            .state_pending
            .push_back((version, version as i64, count));
    }
}
