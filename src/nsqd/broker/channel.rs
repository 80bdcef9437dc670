//! A channel: a cursor into its topic's log plus the messages it has read but not finished
//! (in flight to a client, requeued, deferred). Clients of the channel pull from it, which is
//! what load-balances a channel over its clients.
//!
//! Only this small state is the channel's own; bodies stay in the topic log. It is persisted as
//! a snapshot every checkpoint interval plus a journal of delayed requeues, so a crash
//! redelivers at most one checkpoint interval of finished messages, never loses one, and keeps
//! every delay. A message held for a long time (deferred, stuck in flight) never holds the
//! cursor back: it is an entry of its own.
//!
//! Order, as in nsqd, where a timed-out, requeued or due message is put at the back of the
//! channel's queue: a message that becomes ready again (REQ, in-flight timeout, a deferred
//! message coming due, a disconnected consumer's in-flight message) is delivered after every
//! message that was already queued on the channel at that moment, i.e. after the unread
//! messages the topic log held then. Messages published later do not overtake it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::client::ClientHandle;
use super::events::OwnedPlace;
use super::journal::{ChannelSnapshot, ChannelStore, CursorRange, JournalRecord, OutstandingEntry};
use super::log::{LogReader, StoredMessage};
use super::topic::TopicCore;
use crate::common::time::now_ns;
use crate::protocol::events::{Detail, Kind, Place};
use crate::protocol::MessageId;

/// A message handed to a client.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: MessageId,
    pub timestamp_ns: i64,
    pub attempts: u16,
    pub body: Bytes,
}

#[derive(Debug, Clone)]
struct InFlight {
    pos: u64,
    attempts: u16,
    client_id: u64,
    deadline_ns: i64,
    delivered_ns: i64,
    timestamp_ns: i64,
}

/// A message ready to be delivered again, waiting behind what was queued when it became ready.
#[derive(Debug, Clone, Copy)]
struct Ready {
    pos: u64,
    /// Deliveries so far.
    attempts: u16,
    /// The topic's visible head sequence when it became ready: unread messages below it were
    /// queued first and go first.
    behind_seq: u64,
}

/// What a FIN found: enough for e2e latency and, later, lifecycle events.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    pub timestamp_ns: i64,
    pub attempts: u16,
}

struct ChannelState {
    /// Stretches of the log still to read; the last one is open-ended.
    ranges: VecDeque<CursorRange>,
    base_seq: u64,
    reader: LogReader,
    /// Ready again, in the order they became ready.
    ready: VecDeque<Ready>,
    /// Deferred until a time: (due ns, position) → (attempts so far, ID).
    deferred: BTreeMap<(i64, u64), (u16, MessageId)>,
    in_flight: HashMap<MessageId, InFlight>,
    deadlines: BTreeSet<(i64, MessageId)>,
    /// Positions referenced by ready/deferred/in-flight, with counts: the oldest one bounds
    /// which log segments may be deleted.
    held: BTreeMap<u64, u32>,
    store: Option<ChannelStore>,
    dirty: bool,
}

impl ChannelState {
    fn new(ranges: VecDeque<CursorRange>, base_seq: u64) -> ChannelState {
        ChannelState {
            ranges,
            base_seq,
            reader: LogReader::default(),
            ready: VecDeque::new(),
            deferred: BTreeMap::new(),
            in_flight: HashMap::new(),
            deadlines: BTreeSet::new(),
            held: BTreeMap::new(),
            store: None,
            dirty: false,
        }
    }

    fn hold(&mut self, pos: u64) {
        *self.held.entry(pos).or_insert(0) += 1;
    }

    fn unhold(&mut self, pos: u64) {
        if let Some(n) = self.held.get_mut(&pos) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&pos);
            }
        }
    }

    fn journal(&mut self, record: JournalRecord) {
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.append(record) {
                eprintln!("[nsqd] ERROR: channel journal write failed: {e}");
            }
        }
    }

    fn snapshot(&self) -> ChannelSnapshot {
        let mut entries: Vec<OutstandingEntry> = Vec::with_capacity(self.held.len());
        for r in &self.ready {
            entries.push(OutstandingEntry {
                pos: r.pos,
                attempts: r.attempts,
                due_ns: 0,
            });
        }
        for f in self.in_flight.values() {
            entries.push(OutstandingEntry {
                pos: f.pos,
                attempts: f.attempts,
                due_ns: 0,
            });
        }
        for (&(due_ns, pos), &(attempts, _)) in &self.deferred {
            entries.push(OutstandingEntry {
                pos,
                attempts,
                due_ns,
            });
        }
        entries.sort_by_key(|e| (e.due_ns, e.pos));
        ChannelSnapshot {
            generation: 0,
            base_seq: self.base_seq,
            ranges: self.ranges.iter().copied().collect(),
            entries,
        }
    }
}

/// The file cache a channel's store uses: its topic's (only durable topics have stores).
fn store_files(topic: &TopicCore) -> std::io::Result<Arc<super::files::FileCache>> {
    topic
        .files()
        .ok_or_else(|| std::io::Error::other("an in-memory topic keeps no channel files"))
}

pub struct Channel {
    pub name: String,
    pub ephemeral: bool,
    topic: Arc<TopicCore>,
    state: Mutex<ChannelState>,
    /// Wakes the clients of this channel when something becomes deliverable.
    pub notify: Notify,
    paused: AtomicBool,
    deleted: AtomicBool,
    pub requeue_count: AtomicU64,
    pub timeout_count: AtomicU64,
    clients: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
    dir: Option<PathBuf>,
    pub e2e: Mutex<super::stats::E2eWindow>,
}

impl Channel {
    /// A new channel whose cursor starts at `start` of the topic log.
    pub fn create(
        topic: Arc<TopicCore>,
        name: &str,
        start: super::log::LogHead,
        dir: Option<PathBuf>,
        fsync: bool,
    ) -> std::io::Result<Arc<Channel>> {
        let mut state = ChannelState::new(
            VecDeque::from([CursorRange::open(start.pos, start.seq)]),
            start.seq,
        );
        if let Some(dir) = &dir {
            let mut snap = state.snapshot();
            state.store = Some(ChannelStore::create(
                dir,
                name,
                &mut snap,
                fsync,
                store_files(&topic)?,
            )?);
        }
        Ok(Self::from_state(topic, name, state, dir))
    }

    /// Rebuilds a channel from its persisted state (`ChannelStore::load`): in-flight messages
    /// become ready again, deferred ones keep their due time.
    ///
    /// The journal may hold an entry for a message the snapshot's cursor had not read yet (read,
    /// delivered and requeued with a delay after the last snapshot): that message is cut out of
    /// the stretches still to read, so it comes back once, at its due time, and not also at
    /// once through the cursor.
    pub fn restore(
        topic: Arc<TopicCore>,
        name: &str,
        dir: PathBuf,
        saved: (ChannelSnapshot, Vec<JournalRecord>),
        fallback_start: super::log::LogHead,
        fsync: bool,
    ) -> std::io::Result<Arc<Channel>> {
        let (mut snap, records) = saved;
        let mut entries: BTreeMap<u64, OutstandingEntry> = snap.entries.iter().map(|e| (e.pos, *e)).collect();
        for rec in records {
            match rec {
                JournalRecord::Set(e) => {
                    entries.insert(e.pos, e);
                }
                JournalRecord::Remove { pos } => {
                    entries.remove(&pos);
                }
            }
        }
        let mut state = ChannelState::new(snap.ranges.iter().copied().collect(), snap.base_seq);
        if state.ranges.is_empty() {
            state
                .ranges
                .push_back(CursorRange::open(fallback_start.pos, fallback_start.seq));
        }
        for e in entries.values() {
            let unread = state
                .ranges
                .iter()
                .position(|r| r.pos <= e.pos && e.pos < r.end_pos);
            let stored = (unread.is_some() || e.due_ns > 0)
                .then(|| topic.read_one(&mut state.reader, e.pos))
                .flatten();
            if let (Some(index), Some(msg)) = (unread, &stored) {
                cut_out(&mut state.ranges, index, msg);
            }
            if e.due_ns > 0 {
                // The journal keeps positions only; the ID (for listing and cancelling by ID)
                // is read back from the log.
                let id = stored.map_or(MessageId(0), |m| m.id);
                state.deferred.insert((e.due_ns, e.pos), (e.attempts, id));
            } else {
                // Ready again before the cursor: they had been delivered before the restart.
                state.ready.push_back(Ready {
                    pos: e.pos,
                    attempts: e.attempts,
                    behind_seq: 0,
                });
            }
            state.hold(e.pos);
        }
        snap = state.snapshot();
        state.store = Some(ChannelStore::create(
            &dir,
            name,
            &mut snap,
            fsync,
            store_files(&topic)?,
        )?);
        Ok(Self::from_state(topic, name, state, Some(dir)))
    }

    fn from_state(
        topic: Arc<TopicCore>,
        name: &str,
        state: ChannelState,
        dir: Option<PathBuf>,
    ) -> Arc<Channel> {
        Arc::new(Channel {
            name: name.to_string(),
            ephemeral: crate::protocol::names::is_ephemeral(name),
            state: Mutex::new(state),
            notify: Notify::new(),
            paused: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            requeue_count: AtomicU64::new(0),
            timeout_count: AtomicU64::new(0),
            clients: Mutex::new(BTreeMap::new()),
            dir,
            e2e: Mutex::new(super::stats::E2eWindow::new(&topic.e2e)),
            topic,
        })
    }

    /// Adds a closed stretch of the log to read before anything else (imported backlog that
    /// belongs to this channel only).
    pub fn prepend_range(&self, range: CursorRange) {
        let mut st = self.state.lock();
        st.ranges.push_front(range);
        st.dirty = true;
    }

    /// The channel's state as a snapshot (what its checkpoint writes): replication ships it.
    pub fn export_snapshot(&self) -> ChannelSnapshot {
        self.state.lock().snapshot()
    }

    /// Adds messages this channel owes that were read elsewhere (an adopted copy's ready,
    /// in-flight and deferred messages, at their positions in this topic's log): due ones are
    /// ready with their attempts, the others deferred until their due time.
    pub fn import_outstanding(&self, entries: &[OutstandingEntry]) {
        let now = now_ns();
        let mut guard = self.state.lock();
        let st = &mut *guard;
        for e in entries {
            if e.due_ns > now {
                let id = self
                    .topic
                    .read_one(&mut st.reader, e.pos)
                    .map_or(MessageId(0), |m| m.id);
                st.deferred.insert((e.due_ns, e.pos), (e.attempts, id));
            } else {
                // Delivered before, on the owner: they go before what is unread here.
                st.ready.push_back(Ready {
                    pos: e.pos,
                    attempts: e.attempts,
                    behind_seq: 0,
                });
            }
            st.hold(e.pos);
        }
        st.dirty = true;
        drop(guard);
        self.notify.notify_waiters();
    }

    /// Forgets every message before `head` that is not in flight: unread stretches start at
    /// `head` at the earliest, ready and deferred messages before it are dropped. A broker
    /// that was adopted does this up to the adopted end, so what the adopter took is not
    /// delivered twice.
    pub fn forget_before(&self, head: super::log::LogHead) {
        let mut st = self.state.lock();
        let st = &mut *st;
        st.ranges.retain(|r| r.is_open() || r.end_pos > head.pos);
        for r in st.ranges.iter_mut() {
            if r.pos < head.pos {
                r.pos = head.pos;
                r.seq = head.seq;
            }
        }
        let dropped_ready: Vec<u64> = st
            .ready
            .iter()
            .filter(|r| r.pos < head.pos)
            .map(|r| r.pos)
            .collect();
        st.ready.retain(|r| r.pos >= head.pos);
        let dropped_deferred: Vec<(i64, u64)> = st
            .deferred
            .keys()
            .filter(|(_, pos)| *pos < head.pos)
            .copied()
            .collect();
        for key in &dropped_deferred {
            st.deferred.remove(key);
        }
        for pos in dropped_ready
            .into_iter()
            .chain(dropped_deferred.into_iter().map(|(_, pos)| pos))
        {
            st.unhold(pos);
        }
        st.dirty = true;
    }

    pub fn topic_name(&self) -> &str {
        &self.topic.name
    }

    fn wants(&self, kind: Kind) -> bool {
        self.topic.reports(kind)
    }

    /// Records a per-message event keyed by (this channel, client), resolving the client's
    /// address only when a new group starts.
    fn record_for_client(&self, kind: Kind, client_id: u64, id: MessageId) {
        let key = (self as *const Channel as usize, client_id);
        self.topic.events.record_keyed(kind, key, id, || OwnedPlace {
            topic: self.topic.name.clone(),
            channel: Some(self.name.clone()),
            client: Some(self.client_address(client_id)),
        });
    }

    fn place<'a>(&'a self, client: Option<&'a str>) -> Place<'a> {
        Place {
            topic: &self.topic.name,
            channel: Some(&self.name),
            client,
        }
    }

    /// The address of a connected client, for events.
    fn client_address(&self, client_id: u64) -> String {
        self.clients
            .lock()
            .get(&client_id)
            .map(|c| c.remote_address.clone())
            .unwrap_or_default()
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
        if !paused {
            self.notify.notify_waiters();
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub fn add_client(&self, client: Arc<ClientHandle>) {
        self.clients.lock().insert(client.id, client);
    }

    /// Removes a client and puts its in-flight messages back at once (nsqd waits for their
    /// timeout; there is no reason to make the other consumers wait). Returns the clients left.
    pub fn remove_client(&self, client_id: u64) -> usize {
        let left = {
            let mut clients = self.clients.lock();
            clients.remove(&client_id);
            clients.len()
        };
        let mut st = self.state.lock();
        let mut mine: Vec<(MessageId, InFlight)> = st
            .in_flight
            .iter()
            .filter(|(_, f)| f.client_id == client_id)
            .map(|(id, f)| (*id, f.clone()))
            .collect();
        mine.sort_by_key(|(_, f)| f.pos);
        let behind_seq = self.topic.visible_head().seq;
        for (id, f) in mine {
            st.in_flight.remove(&id);
            st.deadlines.remove(&(f.deadline_ns, id));
            st.ready.push_back(Ready {
                pos: f.pos,
                attempts: f.attempts,
                behind_seq,
            });
        }
        st.dirty = true;
        drop(st);
        self.notify.notify_waiters();
        left
    }

    pub fn clients(&self) -> Vec<Arc<ClientHandle>> {
        self.clients.lock().values().cloned().collect()
    }

    pub fn client_count(&self) -> usize {
        self.clients.lock().len()
    }

    /// Pulls up to `max` deliverable messages for `client`, marking them in flight.
    pub fn take(
        &self,
        client: &ClientHandle,
        max: usize,
        msg_timeout: Duration,
        sample_rate: i32,
    ) -> Vec<Delivery> {
        let mut out = Vec::new();
        if max == 0 || self.is_paused() || self.is_deleted() {
            return out;
        }
        let now = now_ns();
        let mut st = self.state.lock();
        let st = &mut *st;
        while out.len() < max {
            // Unread messages queued before the first ready one go first (nsqd's order).
            let queued_before = st.ready.front().map(|r| {
                st.ranges
                    .front()
                    .map_or(0, |front| r.behind_seq.saturating_sub(front.seq))
            });
            if queued_before == Some(0) {
                self.deliver_ready(st, &mut out, client, now, msg_timeout, sample_rate);
                continue;
            }
            let budget = queued_before.map_or(max - out.len(), |n| n.min((max - out.len()) as u64) as usize);
            let progressed = self.read_cursor(st, &mut out, client, budget, now, msg_timeout, sample_rate);
            if !progressed {
                // The cursor cannot move (nothing visible to read): what is ready waits no longer.
                if st.ready.is_empty() {
                    break;
                }
                self.deliver_ready(st, &mut out, client, now, msg_timeout, sample_rate);
            }
        }
        if !out.is_empty() && self.wants(Kind::Delivered) {
            let ids: Vec<MessageId> = out.iter().map(|d| d.id).collect();
            let attempts: Vec<u16> = out.iter().map(|d| d.attempts).collect();
            let place = self.place(Some(&client.remote_address));
            self.topic.events.record_line(
                Kind::Delivered,
                &place,
                &ids,
                &Detail::Delivered { attempts: &attempts },
            );
        }
        out
    }

    /// Delivers the first message of the ready queue.
    fn deliver_ready(
        &self,
        st: &mut ChannelState,
        out: &mut Vec<Delivery>,
        client: &ClientHandle,
        now: i64,
        msg_timeout: Duration,
        sample_rate: i32,
    ) {
        let Some(ready) = st.ready.pop_front() else {
            return;
        };
        st.unhold(ready.pos);
        match self.topic.read_one(&mut st.reader, ready.pos) {
            Some(msg) => self.deliver(
                st,
                out,
                client,
                msg,
                ready.attempts,
                now,
                msg_timeout,
                sample_rate,
            ),
            None => eprintln!(
                "[nsqd] ERROR: message at {} of {} is gone from the log",
                ready.pos, self.topic.name
            ),
        }
    }

    /// Reads up to `want` messages at the cursor, delivering those due and setting aside the
    /// deferred ones. False when the cursor could not move.
    #[allow(clippy::too_many_arguments)]
    fn read_cursor(
        &self,
        st: &mut ChannelState,
        out: &mut Vec<Delivery>,
        client: &ClientHandle,
        want: usize,
        now: i64,
        msg_timeout: Duration,
        sample_rate: i32,
    ) -> bool {
        loop {
            let Some(front) = st.ranges.front().copied() else {
                return false;
            };
            let limit = if front.is_open() {
                if self.topic.is_paused() {
                    return false;
                }
                self.topic.visible_head()
            } else {
                super::log::LogHead {
                    pos: front.end_pos,
                    seq: front.end_seq,
                }
            };
            if front.pos >= limit.pos {
                if front.is_open() {
                    return false;
                }
                st.ranges.pop_front();
                st.dirty = true;
                continue;
            }
            // An #ephemeral channel keeps at most mem-queue-size messages, as in nsqd; the
            // oldest beyond that are dropped (read past without delivery), a bounded step at a time.
            let lag = self.topic.visible_head().seq.saturating_sub(front.seq);
            let overflow = if self.ephemeral && front.is_open() {
                lag.saturating_sub(self.topic.mem_queue_size.max(1))
            } else {
                0
            };
            let want = if overflow > 0 {
                overflow.min(10_000) as usize
            } else {
                want
            };
            let batch = self.topic.read(&mut st.reader, front.pos, front.seq, limit, want);
            let range = st.ranges.front_mut().unwrap();
            range.pos = batch.next_pos;
            if let Some(seq) = batch.next_seq {
                range.seq = seq;
            }
            st.dirty = true;
            if batch.messages.is_empty() && batch.next_pos == front.pos {
                return false;
            }
            if overflow > 0 {
                if self.wants(Kind::Dropped) {
                    let ids: Vec<MessageId> = batch.messages.iter().map(|m| m.id).collect();
                    self.topic.events.record(Kind::Dropped, &self.place(None), &ids);
                }
                return true;
            }
            for msg in batch.messages {
                if msg.deliver_at_ns > now {
                    st.deferred
                        .insert((msg.deliver_at_ns, msg.pos), (msg.attempts, msg.id));
                    st.hold(msg.pos);
                    if self.wants(Kind::Deferred) {
                        let due = Detail::Due(msg.deliver_at_ns);
                        self.topic
                            .events
                            .record_line(Kind::Deferred, &self.place(None), &[msg.id], &due);
                    }
                    continue;
                }
                let attempts = msg.attempts;
                self.deliver(st, out, client, msg, attempts, now, msg_timeout, sample_rate);
            }
            return true;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &self,
        st: &mut ChannelState,
        out: &mut Vec<Delivery>,
        client: &ClientHandle,
        msg: StoredMessage,
        attempts_so_far: u16,
        now: i64,
        msg_timeout: Duration,
        sample_rate: i32,
    ) {
        // nsqd's sampling drops the message for this channel.
        if sample_rate > 0 && rand::random::<u32>() % 100 > sample_rate as u32 {
            return;
        }
        let attempts = attempts_so_far.wrapping_add(1);
        let deadline_ns = now + msg_timeout.as_nanos() as i64;
        let previous = st.in_flight.insert(
            msg.id,
            InFlight {
                pos: msg.pos,
                attempts,
                client_id: client.id,
                deadline_ns,
                delivered_ns: now,
                timestamp_ns: msg.timestamp_ns,
            },
        );
        if let Some(prev) = previous {
            // The same ID twice in flight (only possible with imported duplicates): keep both
            // deliverable by forgetting the older entry's deadline.
            st.deadlines.remove(&(prev.deadline_ns, msg.id));
            st.unhold(prev.pos);
        }
        st.deadlines.insert((deadline_ns, msg.id));
        st.hold(msg.pos);
        out.push(Delivery {
            id: msg.id,
            timestamp_ns: msg.timestamp_ns,
            attempts,
            body: msg.body,
        });
    }

    fn pop_in_flight(
        &self,
        st: &mut ChannelState,
        client_id: u64,
        id: MessageId,
    ) -> Result<InFlight, &'static str> {
        match st.in_flight.get(&id) {
            None => Err("ID not in flight"),
            Some(f) if f.client_id != client_id => Err("client does not own message"),
            Some(_) => {
                let f = st.in_flight.remove(&id).unwrap();
                st.deadlines.remove(&(f.deadline_ns, id));
                Ok(f)
            }
        }
    }

    pub fn finish(&self, client_id: u64, id: MessageId) -> Result<Finished, &'static str> {
        let mut st = self.state.lock();
        let f = self.pop_in_flight(&mut st, client_id, id)?;
        st.unhold(f.pos);
        st.dirty = true;
        drop(st);
        let mut e2e = self.e2e.lock();
        if e2e.enabled() {
            e2e.record(now_ns() - f.timestamp_ns);
        }
        drop(e2e);
        Ok(Finished {
            timestamp_ns: f.timestamp_ns,
            attempts: f.attempts,
        })
    }

    /// Whether FINs on this channel are reported (the caller collects them for
    /// `report_finished`).
    pub fn reports_finished(&self) -> bool {
        self.wants(Kind::Finished)
    }

    /// Reports messages a client finished, as one `finished` group.
    pub fn report_finished(&self, client_address: &str, ids: &[MessageId]) {
        if !ids.is_empty() && self.wants(Kind::Finished) {
            self.topic
                .events
                .record(Kind::Finished, &self.place(Some(client_address)), ids);
        }
    }

    pub fn requeue(&self, client_id: u64, id: MessageId, delay_ms: i64) -> Result<(), &'static str> {
        let mut st = self.state.lock();
        let f = self.pop_in_flight(&mut st, client_id, id)?;
        if self.wants(Kind::Requeued) {
            let addr = self.client_address(client_id);
            let delay = Detail::Requeued { delay_ms };
            self.topic
                .events
                .record_line(Kind::Requeued, &self.place(Some(&addr)), &[id], &delay);
        }
        self.requeue_count.fetch_add(1, Ordering::Relaxed);
        if delay_ms <= 0 {
            st.ready.push_back(Ready {
                pos: f.pos,
                attempts: f.attempts,
                behind_seq: self.topic.visible_head().seq,
            });
        } else {
            let due_ns = now_ns() + delay_ms * 1_000_000;
            st.deferred.insert((due_ns, f.pos), (f.attempts, id));
            st.journal(JournalRecord::Set(OutstandingEntry {
                pos: f.pos,
                attempts: f.attempts,
                due_ns,
            }));
        }
        st.dirty = true;
        drop(st);
        if delay_ms <= 0 {
            self.notify.notify_waiters();
        }
        Ok(())
    }

    /// Extends a message's deadline by the client's msg_timeout, capped at max-msg-timeout
    /// after its delivery.
    pub fn touch(
        &self,
        client_id: u64,
        id: MessageId,
        msg_timeout: Duration,
        max_msg_timeout: Duration,
    ) -> Result<(), &'static str> {
        let mut st = self.state.lock();
        let f = match st.in_flight.get(&id) {
            None => return Err("ID not in flight"),
            Some(f) if f.client_id != client_id => return Err("client does not own message"),
            Some(f) => f.clone(),
        };
        let cap = f.delivered_ns + max_msg_timeout.as_nanos() as i64;
        let deadline = (now_ns() + msg_timeout.as_nanos() as i64).min(cap);
        st.deadlines.remove(&(f.deadline_ns, id));
        st.deadlines.insert((deadline, id));
        st.in_flight.get_mut(&id).unwrap().deadline_ns = deadline;
        if self.wants(Kind::Touched) {
            drop(st);
            self.record_for_client(Kind::Touched, client_id, id);
        }
        Ok(())
    }

    /// Moves timed-out in-flight messages and due deferred ones to the ready queue.
    /// Returns the clients whose in-flight count dropped.
    pub fn process_timers(&self, now: i64) -> Vec<u64> {
        let mut timed_out_clients = Vec::new();
        let mut timed_out_ids = Vec::new();
        let mut woke = false;
        {
            let mut st = self.state.lock();
            let behind_seq = self.topic.visible_head().seq;
            while let Some(&(deadline, id)) = st.deadlines.first() {
                if deadline > now {
                    break;
                }
                st.deadlines.pop_first();
                if let Some(f) = st.in_flight.remove(&id) {
                    st.ready.push_back(Ready {
                        pos: f.pos,
                        attempts: f.attempts,
                        behind_seq,
                    });
                    timed_out_clients.push(f.client_id);
                    timed_out_ids.push((id, f.client_id));
                    self.timeout_count.fetch_add(1, Ordering::Relaxed);
                    woke = true;
                }
            }
            while let Some((&(due, pos), &(attempts, _))) = st.deferred.first_key_value() {
                if due > now {
                    break;
                }
                st.deferred.pop_first();
                st.ready.push_back(Ready {
                    pos,
                    attempts,
                    behind_seq,
                });
                woke = true;
            }
            if woke {
                st.dirty = true;
            }
        }
        if woke {
            self.notify.notify_waiters();
        }
        if !timed_out_ids.is_empty() && self.wants(Kind::TimedOut) {
            for (id, client_id) in timed_out_ids {
                self.record_for_client(Kind::TimedOut, client_id, id);
            }
        }
        timed_out_clients
    }

    /// The earliest time at which `process_timers` has work.
    pub fn next_timer(&self) -> Option<i64> {
        let st = self.state.lock();
        let a = st.deadlines.first().map(|d| d.0);
        let b = st.deferred.first_key_value().map(|(k, _)| k.0);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Drops everything queued, deferred and in flight (`/channel/empty`).
    pub fn empty(&self) {
        let head = self.topic.visible_head();
        let mut st = self.state.lock();
        st.ready.clear();
        st.deferred.clear();
        st.in_flight.clear();
        st.deadlines.clear();
        st.held.clear();
        st.ranges.clear();
        st.ranges.push_back(CursorRange::open(head.pos, head.seq));
        st.dirty = true;
        drop(st);
        for c in self.clients() {
            c.reset_in_flight();
        }
        self.persist(true);
    }

    /// Skips the stretch `[from, to)` of the log that the channel has not read yet.
    pub fn skip(&self, from: super::log::LogHead, to: super::log::LogHead) {
        let mut st = self.state.lock();
        if let Some(open) = st.ranges.back_mut() {
            if open.is_open() && open.pos <= from.pos {
                *open = CursorRange {
                    pos: open.pos,
                    seq: open.seq,
                    end_pos: from.pos,
                    end_seq: from.seq,
                };
                st.ranges.push_back(CursorRange::open(to.pos, to.seq));
                st.dirty = true;
            }
        }
    }

    /// Sequence number of the oldest message this channel has not read yet.
    pub fn unread_seq(&self) -> u64 {
        let st = self.state.lock();
        st.ranges.iter().map(|r| r.seq).min().unwrap_or(u64::MAX)
    }

    /// The lowest log position this channel has not read yet.
    pub fn unread_from(&self) -> u64 {
        let st = self.state.lock();
        st.ranges.iter().map(|r| r.pos).min().unwrap_or(u64::MAX)
    }

    /// The oldest log position this channel still needs.
    pub fn low_water(&self) -> u64 {
        let st = self.state.lock();
        let cursor = st.ranges.front().map(|r| r.pos).unwrap_or(u64::MAX);
        let held = st.held.keys().next().copied().unwrap_or(u64::MAX);
        cursor.min(held)
    }

    /// Writes a snapshot if anything changed since the last one.
    pub fn persist(&self, fsync: bool) {
        let mut st = self.state.lock();
        self.persist_locked(&mut st, fsync);
    }

    fn persist_locked(&self, st: &mut ChannelState, fsync: bool) {
        if !st.dirty || st.store.is_none() {
            return;
        }
        let mut snap = st.snapshot();
        st.dirty = false;
        if let Err(e) = st.store.as_mut().unwrap().write_snapshot(&mut snap, fsync) {
            st.dirty = true;
            eprintln!(
                "[nsqd] ERROR: failed to persist channel {}:{} - {e}",
                self.topic.name, self.name
            );
        }
    }

    /// Marks the channel deleted, disconnects its clients and removes its files.
    pub fn destroy(&self) {
        self.deleted.store(true, Ordering::Release);
        if self.wants(Kind::Deleted) {
            self.topic
                .events
                .record_line(Kind::Deleted, &self.place(None), &[], &Detail::None);
        }
        for c in self.clients() {
            c.kick();
        }
        let mut st = self.state.lock();
        if let Some(store) = st.store.take() {
            store.destroy();
        }
        drop(st);
        self.notify.notify_waiters();
        let _ = &self.dir;
    }

    pub fn counts(&self) -> ChannelCounts {
        let head = self.topic.visible_head();
        let now = now_ns();
        let st = self.state.lock();
        let mut depth = st.ready.len() as u64;
        let mut unread_deferred = 0;
        for r in &st.ranges {
            let end = if r.is_open() { head.seq } else { r.end_seq };
            depth += end.saturating_sub(r.seq);
            unread_deferred += self.topic.deferred_between(r.seq, end, now);
        }
        ChannelCounts {
            depth: depth.saturating_sub(unread_deferred),
            in_flight: st.in_flight.len() as u64,
            deferred: st.deferred.len() as u64 + unread_deferred,
            message_count: head.seq.saturating_sub(st.base_seq),
        }
    }

    /// In-flight messages per client (for `/stats` and live state).
    pub fn in_flight_of(&self, client_id: u64) -> usize {
        self.state
            .lock()
            .in_flight
            .values()
            .filter(|f| f.client_id == client_id)
            .count()
    }
}

/// A deferred message as `/deferred` lists it.
#[derive(Debug, Clone, Copy)]
pub struct DeferredMessage {
    pub id: MessageId,
    pub due_ns: i64,
    /// Deliveries so far: 0 for a deferred publish, more for a requeue with a delay.
    pub attempts: u16,
    pub pos: u64,
}

/// Where a message stands on one channel (`/message`).
#[derive(Clone)]
pub enum MessageState {
    InFlight {
        client: Option<Arc<ClientHandle>>,
        attempts: u16,
        delivered_ns: i64,
        deadline_ns: i64,
    },
    Deferred {
        due_ns: i64,
        attempts: u16,
    },
    /// Waiting for a consumer: requeued, or not read yet.
    Queued {
        attempts: u16,
    },
    /// Published before the channel existed: it never was this channel's.
    BeforeChannel,
    /// Nothing pending: finished, cancelled, or dropped.
    Done,
}

impl Channel {
    /// Deferred messages, soonest due first: the first `limit` and how many there are in all.
    pub fn deferred_messages(&self, limit: usize) -> (usize, Vec<DeferredMessage>) {
        let head = self.topic.visible_head();
        let now = now_ns();
        let st = self.state.lock();
        let mut all: Vec<DeferredMessage> = st
            .deferred
            .iter()
            .map(|(&(due_ns, pos), &(attempts, id))| DeferredMessage {
                id,
                due_ns,
                attempts,
                pos,
            })
            .collect();
        for r in &st.ranges {
            let end = if r.is_open() { head.seq } else { r.end_seq };
            for (_, d) in self.topic.deferred_in(r.seq, end, now) {
                all.push(DeferredMessage {
                    id: d.id,
                    due_ns: d.due_ns,
                    attempts: 0,
                    pos: d.pos,
                });
            }
        }
        drop(st);
        let total = all.len();
        all.sort_unstable_by_key(|d| (d.due_ns, d.pos));
        all.truncate(limit);
        (total, all)
    }

    /// Cancels deferred messages on this channel: they will never be delivered here. Returns
    /// the ones it held deferred, with when each was due. The cancellations are on disk
    /// before this returns (one snapshot for the whole batch).
    pub fn cancel_deferred(&self, ids: &[MessageId]) -> Vec<(MessageId, i64)> {
        let now = now_ns();
        let wanted: HashSet<MessageId> = ids.iter().copied().collect();
        let mut st = self.state.lock();
        let st = &mut *st;
        let read: HashMap<MessageId, (i64, u64)> = st
            .deferred
            .iter()
            .filter(|(_, (_, id))| wanted.contains(id))
            .map(|(&key, &(_, id))| (id, key))
            .collect();
        let unread = self.topic.unread_deferred_by_ids(&wanted);
        let mut cancelled = Vec::new();
        for &id in ids {
            let due_ns = if let Some(&(due_ns, pos)) = read.get(&id) {
                if st.deferred.remove(&(due_ns, pos)).is_none() {
                    continue; // the same ID twice in one request
                }
                st.unhold(pos);
                st.journal(JournalRecord::Remove { pos });
                due_ns
            } else if let Some(&(seq, entry)) = unread.get(&id) {
                if entry.due_ns <= now || !self.skip_unread(st, seq, entry.pos, id) {
                    continue;
                }
                entry.due_ns
            } else {
                continue;
            };
            cancelled.push((id, due_ns));
        }
        if cancelled.is_empty() {
            return cancelled;
        }
        st.dirty = true;
        if self.wants(Kind::Cancelled) {
            for &(id, due_ns) in &cancelled {
                let due = Detail::Due(due_ns);
                self.topic
                    .events
                    .record_line(Kind::Cancelled, &self.place(None), &[id], &due);
            }
        }
        self.persist_locked(st, true);
        cancelled
    }

    /// Cuts the unread message at (`seq`, `pos`) out of the stretches of log still to read.
    /// False when the channel has read it already (or cannot see it: a paused topic).
    fn skip_unread(&self, st: &mut ChannelState, seq: u64, pos: u64, id: MessageId) -> bool {
        let visible = self.topic.visible_head();
        let Some(index) = st.ranges.iter().position(|r| {
            let end = if r.is_open() { visible.seq } else { r.end_seq };
            r.seq <= seq && seq < end
        }) else {
            return false;
        };
        let Some(msg) = self.topic.read_one(&mut st.reader, pos).filter(|m| m.id == id) else {
            return false;
        };
        cut_out(&mut st.ranges, index, &msg);
        true
    }

    /// Where message `id` stands on this channel. `stored` is its log record when the log
    /// still has it; without it only in-flight and read deferred messages can be found.
    pub fn state_of(&self, id: MessageId, stored: Option<&StoredMessage>) -> MessageState {
        let st = self.state.lock();
        if let Some(f) = st.in_flight.get(&id) {
            let (client_id, attempts, delivered_ns, deadline_ns) =
                (f.client_id, f.attempts, f.delivered_ns, f.deadline_ns);
            drop(st);
            return MessageState::InFlight {
                client: self.clients.lock().get(&client_id).cloned(),
                attempts,
                delivered_ns,
                deadline_ns,
            };
        }
        if let Some((&(due_ns, _), &(attempts, _))) = st.deferred.iter().find(|(_, &(_, held))| held == id) {
            return MessageState::Deferred { due_ns, attempts };
        }
        let Some(msg) = stored else {
            return MessageState::Done;
        };
        if let Some(r) = st.ready.iter().find(|r| r.pos == msg.pos) {
            return MessageState::Queued { attempts: r.attempts };
        }
        // The open range holds everything after it, including what a paused topic has not
        // shown its channels yet.
        let unread = st
            .ranges
            .iter()
            .any(|r| r.seq <= msg.seq && (r.is_open() || msg.seq < r.end_seq));
        if unread {
            return if msg.deliver_at_ns > now_ns() {
                MessageState::Deferred {
                    due_ns: msg.deliver_at_ns,
                    attempts: msg.attempts,
                }
            } else {
                MessageState::Queued {
                    attempts: msg.attempts,
                }
            };
        }
        if msg.seq < st.base_seq {
            return MessageState::BeforeChannel;
        }
        MessageState::Done
    }
}

/// Cuts message `msg`, which lies in `ranges[index]`, out of the stretches still to read.
fn cut_out(ranges: &mut VecDeque<CursorRange>, index: usize, msg: &StoredMessage) {
    let range = ranges[index];
    let before = CursorRange {
        end_pos: msg.pos,
        end_seq: msg.seq,
        ..range
    };
    let after = CursorRange {
        pos: msg.next_pos,
        seq: msg.seq + 1,
        ..range
    };
    ranges.remove(index);
    if after.pos < after.end_pos {
        ranges.insert(index, after);
    }
    if before.pos < before.end_pos {
        ranges.insert(index, before);
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ChannelCounts {
    pub depth: u64,
    pub in_flight: u64,
    pub deferred: u64,
    pub message_count: u64,
}
