//! A topic: its message log, its channels, and the fan-out between them. Publishing appends to
//! the log once; every channel reads the same bytes at its own cursor.
//!
//! A topic with no channel keeps what is published to it (its backlog) for the first channel,
//! as nsqd does. In nsqd every channel that exists while the topic is still handing that
//! backlog out receives the rest of it; here a channel created while some channel is still
//! reading the backlog (has not read past its end) starts where the first one did, at the
//! backlog's start. Once every channel has read past its end, new channels start at the head.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use super::channel::Channel;
use super::files::FileCache;
use super::log::{DiskLog, LogHead, LogReader, MemLog, NewRecord, ReadBatch, StoredMessage};
use crate::common::time::now_ns;
use crate::protocol::guid::GuidFactory;
use crate::protocol::MessageId;

pub enum LogStore {
    Disk(Mutex<DiskLog>),
    Memory(Mutex<MemLog>),
}

/// The part of a topic its channels read from.
pub struct TopicCore {
    pub name: String,
    pub ephemeral: bool,
    pub log: LogStore,
    head: Mutex<LogHead>,
    paused: AtomicBool,
    /// While paused, channels see the log only up to here.
    paused_at: Mutex<Option<LogHead>>,
    /// Deferred messages (sequence → due time) that some channel has not read yet: nsqd counts
    /// a deferred message as deferred from the moment it is published, so channel counts
    /// subtract these from the unread stretch instead of reading ahead.
    unread_deferred: Mutex<BTreeMap<u64, UnreadDeferred>>,
    /// `--mem-queue-size`: how far an `#ephemeral` channel may lag before it drops messages.
    pub mem_queue_size: u64,
    pub events: Arc<super::events::EventSink>,
    reports_publish: bool,
    reports_all: bool,
    /// e2e latency tracking for this topic's channels.
    pub e2e: super::stats::E2eConfig,
}

/// A deferred-publish message some channel has not read yet, by sequence number.
#[derive(Debug, Clone, Copy)]
pub struct UnreadDeferred {
    pub due_ns: i64,
    pub id: MessageId,
    pub pos: u64,
}

impl TopicCore {
    pub fn head(&self) -> LogHead {
        *self.head.lock()
    }

    /// How far channels may read: the head, or where the topic was paused.
    pub fn visible_head(&self) -> LogHead {
        self.paused_at.lock().unwrap_or_else(|| self.head())
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Whether this topic reports events of `kind` (decided once, at creation).
    pub fn reports(&self, kind: crate::protocol::events::Kind) -> bool {
        match kind {
            crate::protocol::events::Kind::Published => self.reports_publish,
            _ => self.reports_all,
        }
    }

    /// How many unread messages in sequence range `[from, to)` are deferred past `now`.
    pub fn deferred_between(&self, from: u64, to: u64, now: i64) -> u64 {
        if from >= to {
            return 0;
        }
        let map = self.unread_deferred.lock();
        map.range(from..to).filter(|(_, d)| d.due_ns > now).count() as u64
    }

    /// The unread deferred messages in sequence range `[from, to)` still due after `now`.
    pub fn deferred_in(&self, from: u64, to: u64, now: i64) -> Vec<(u64, UnreadDeferred)> {
        if from >= to {
            return Vec::new();
        }
        let map = self.unread_deferred.lock();
        map.range(from..to)
            .filter(|(_, d)| d.due_ns > now)
            .map(|(&seq, &d)| (seq, d))
            .collect()
    }

    /// The unread deferred messages with these IDs, by ID.
    pub fn unread_deferred_by_ids(
        &self,
        ids: &std::collections::HashSet<MessageId>,
    ) -> std::collections::HashMap<MessageId, (u64, UnreadDeferred)> {
        let map = self.unread_deferred.lock();
        map.iter()
            .filter(|(_, d)| ids.contains(&d.id))
            .map(|(&seq, &d)| (d.id, (seq, d)))
            .collect()
    }

    /// Finds a message still in the log by its ID.
    pub fn find_id(&self, id: MessageId) -> Option<StoredMessage> {
        match &self.log {
            LogStore::Disk(log) => LogReader::default().find_id(log, id).unwrap_or_else(|e| {
                eprintln!("[nsqd] ERROR: searching topic {} for {id}: {e}", self.name);
                None
            }),
            LogStore::Memory(log) => log.lock().find_id(id),
        }
    }

    /// Reads up to `max` messages from `pos` (sequence `seq`), not beyond `limit`.
    pub fn read(&self, reader: &mut LogReader, pos: u64, seq: u64, limit: LogHead, max: usize) -> ReadBatch {
        match &self.log {
            LogStore::Disk(log) => reader.read(log, pos, seq, limit, max).unwrap_or_else(|e| {
                if let Some(files) = self.files() {
                    files.note_error(&e);
                }
                eprintln!("[nsqd] ERROR: reading topic {} at {pos}: {e}", self.name);
                ReadBatch {
                    messages: vec![],
                    next_pos: pos,
                    next_seq: None,
                }
            }),
            LogStore::Memory(log) => log.lock().read(pos, limit.pos, max),
        }
    }

    /// The file cache a durable topic's log and channel stores open their files through.
    pub fn files(&self) -> Option<Arc<FileCache>> {
        match &self.log {
            LogStore::Disk(log) => Some(log.lock().files().clone()),
            LogStore::Memory(_) => None,
        }
    }

    /// Position and sequence of the oldest message still in the log.
    pub fn tail(&self) -> LogHead {
        match &self.log {
            LogStore::Disk(l) => l.lock().tail(),
            LogStore::Memory(l) => l.lock().tail(),
        }
    }

    pub fn read_one(&self, reader: &mut LogReader, pos: u64) -> Option<StoredMessage> {
        match &self.log {
            LogStore::Disk(log) => reader.read_one(log, pos).ok().flatten(),
            LogStore::Memory(log) => log.lock().read_one(pos),
        }
    }
}

/// Why a publish failed.
#[derive(Debug)]
pub enum PublishError {
    Exiting,
    Io(std::io::Error),
    /// Written locally, but fewer peers than `--replicas` hold it (strict replica policy).
    Replication(String),
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::Exiting => write!(f, "exiting"),
            PublishError::Io(e) => write!(f, "{e}"),
            PublishError::Replication(e) => write!(f, "{e}"),
        }
    }
}

pub struct Topic {
    pub core: Arc<TopicCore>,
    channels: RwLock<BTreeMap<String, Arc<Channel>>>,
    guid: Mutex<GuidFactory>,
    pub message_count: AtomicU64,
    pub message_bytes: AtomicU64,
    /// Where a first channel starts reading: a topic with no channel keeps its backlog.
    orphan_start: Mutex<Option<LogHead>>,
    /// The backlog the first channel took, while some channel is still reading it: channels
    /// created meanwhile start at its start too.
    backlog: Mutex<Option<Backlog>>,
    pub dir: Option<PathBuf>,
    deleted: AtomicBool,
    /// Where the log began when this topic was opened: channels pre-created from lookupd
    /// read from here.
    start_head: LogHead,
    sync: Mutex<SyncState>,
    synced: Condvar,
}

/// A stretch of the log published while the topic had no channel: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub start: LogHead,
    pub end: LogHead,
}

/// Where an open backlog is remembered across restarts.
fn backlog_file(dir: &std::path::Path) -> PathBuf {
    dir.join("backlog")
}

#[derive(Default)]
struct SyncState {
    synced_pos: u64,
    syncing: bool,
}

impl Topic {
    pub fn new(
        name: &str,
        log: LogStore,
        node_id: u16,
        mem_queue_size: u64,
        events: Arc<super::events::EventSink>,
        e2e: super::stats::E2eConfig,
        dir: Option<PathBuf>,
    ) -> Topic {
        let head = match &log {
            LogStore::Disk(l) => l.lock().head(),
            LogStore::Memory(l) => l.lock().head(),
        };
        let tail = match &log {
            LogStore::Disk(l) => l.lock().tail(),
            LogStore::Memory(l) => l.lock().tail(),
        };
        let core = TopicCore {
            name: name.to_string(),
            ephemeral: crate::protocol::names::is_ephemeral(name),
            log,
            head: Mutex::new(head),
            paused: AtomicBool::new(false),
            paused_at: Mutex::new(None),
            unread_deferred: Mutex::new(BTreeMap::new()),
            mem_queue_size,
            reports_publish: events.wants(crate::protocol::events::Kind::Published, name),
            reports_all: events.wants(crate::protocol::events::Kind::Finished, name),
            events,
            e2e,
        };
        Topic {
            core: Arc::new(core),
            channels: RwLock::new(BTreeMap::new()),
            guid: Mutex::new(GuidFactory::new(node_id)),
            message_count: AtomicU64::new(0),
            message_bytes: AtomicU64::new(0),
            orphan_start: Mutex::new(Some(tail)),
            backlog: Mutex::new(None),
            dir,
            deleted: AtomicBool::new(false),
            start_head: tail,
            sync: Mutex::new(SyncState {
                synced_pos: head.pos,
                syncing: false,
            }),
            synced: Condvar::new(),
        }
    }

    /// Blocks until the log is on stable storage up to `pos`. One fsync at a time runs per
    /// topic; publishers whose bytes it covers just wait for it (group commit).
    pub fn sync_to(&self, pos: u64) -> std::io::Result<()> {
        let LogStore::Disk(log) = &self.core.log else {
            return Ok(());
        };
        let mut state = self.sync.lock();
        loop {
            if state.synced_pos >= pos {
                return Ok(());
            }
            if state.syncing {
                self.synced.wait(&mut state);
                continue;
            }
            state.syncing = true;
            drop(state);
            // Taken in its own statement so the log lock is released before the fsync.
            let handle = log.lock().sync_handle();
            let result = handle.and_then(|(file, head)| file.sync_data().map(|_| head));
            state = self.sync.lock();
            state.syncing = false;
            self.synced.notify_all();
            state.synced_pos = state.synced_pos.max(result?.pos);
        }
    }

    /// Fsyncs whatever was appended since the last sync (the `--sync-timeout` path).
    pub fn sync_all(&self) -> std::io::Result<()> {
        let pending = match &self.core.log {
            LogStore::Disk(log) => {
                let log = log.lock();
                log.has_unsynced().then(|| log.head().pos)
            }
            LogStore::Memory(_) => None,
        };
        pending.map_or(Ok(()), |pos| self.sync_to(pos))
    }

    pub fn start_head(&self) -> LogHead {
        self.start_head
    }

    pub fn name(&self) -> &str {
        &self.core.name
    }

    pub fn is_ephemeral(&self) -> bool {
        self.core.ephemeral
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }

    /// Appends messages (one write) and wakes every channel. Returns their IDs.
    pub fn publish(&self, bodies: &[&[u8]], deliver_at_ns: i64) -> Result<Vec<MessageId>, PublishError> {
        if self.is_deleted() {
            return Err(PublishError::Exiting);
        }
        let now = now_ns();
        let mut ids = Vec::with_capacity(bodies.len());
        let bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();
        {
            // IDs are made under the log lock so that log order is ID order.
            let append = |ids: &mut Vec<MessageId>| {
                let mut guid = self.guid.lock();
                ids.extend(bodies.iter().map(|_| guid.next_id()));
                ids.iter()
                    .zip(bodies)
                    .map(|(&id, body)| NewRecord {
                        id,
                        timestamp_ns: now,
                        attempts: 0,
                        deliver_at_ns,
                        body,
                    })
                    .collect::<Vec<_>>()
            };
            match &self.core.log {
                LogStore::Disk(log) => {
                    let mut log = log.lock();
                    let records = append(&mut ids);
                    let head = log.append(&records).map_err(PublishError::Io)?;
                    self.note_deferred(head, &records, deliver_at_ns, true);
                    *self.core.head.lock() = head;
                }
                LogStore::Memory(log) => {
                    let mut log = log.lock();
                    let records = append(&mut ids);
                    let (head, _dropped) = log.append(&records);
                    self.note_deferred(head, &records, deliver_at_ns, false);
                    *self.core.head.lock() = head;
                }
            }
        }
        self.message_count
            .fetch_add(bodies.len() as u64, Ordering::Relaxed);
        self.message_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.wake_channels();
        Ok(ids)
    }

    /// Appends records that carry their own IDs, times, attempts and due times (another
    /// broker's messages, adopted): one write, visible to channels at once unless the view is
    /// frozen (`freeze_view`). Returns the stretch of the log they occupy.
    pub fn append_records(&self, records: &[NewRecord]) -> std::io::Result<(LogHead, LogHead)> {
        let LogStore::Disk(log) = &self.core.log else {
            return Err(std::io::Error::other(
                "an #ephemeral topic keeps no adopted messages",
            ));
        };
        let stretch = {
            let mut log = log.lock();
            let start = log.head();
            let end = log.append(records)?;
            let latest_due = records.iter().map(|r| r.deliver_at_ns).max().unwrap_or(0);
            self.note_deferred(end, records, latest_due, true);
            *self.core.head.lock() = end;
            (start, end)
        };
        let bytes: u64 = records.iter().map(|r| r.body.len() as u64).sum();
        self.message_count
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        self.message_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.wake_channels();
        Ok(stretch)
    }

    /// Stops channels from reading past the current head, without pausing the topic: what is
    /// appended meanwhile stays unseen until `unfreeze_view`, so channels can be told to skip
    /// part of it first. Returns whether this call froze it (false: it was paused already).
    pub fn freeze_view(&self) -> bool {
        let mut at = self.core.paused_at.lock();
        if at.is_some() {
            return false;
        }
        *at = Some(self.core.head());
        true
    }

    /// Undoes `freeze_view` (when it froze the view and the topic was not paused since).
    pub fn unfreeze_view(&self, froze: bool) {
        if !froze || self.is_paused() {
            return;
        }
        *self.core.paused_at.lock() = None;
        self.wake_channels();
    }

    /// Remembers the sequence numbers of just-appended deferred messages (before the new head
    /// is visible, so no channel can read past them unnoticed). `latest_due_ns` is the latest
    /// due time among `records`: 0 when none is deferred.
    fn note_deferred(&self, head: LogHead, records: &[NewRecord], latest_due_ns: i64, on_disk: bool) {
        if latest_due_ns == 0 {
            return;
        }
        let mut map = self.core.unread_deferred.lock();
        // Walk back from the head: a disk record's position follows from the sizes after it,
        // a memory log's position is its sequence number.
        let (mut pos, mut seq) = (head.pos, head.seq);
        for rec in records.iter().rev() {
            seq -= 1;
            pos = if on_disk {
                pos - super::log::stored_len(rec.body.len())
            } else {
                seq
            };
            if rec.deliver_at_ns == 0 {
                continue;
            }
            let entry = UnreadDeferred {
                due_ns: rec.deliver_at_ns,
                id: rec.id,
                pos,
            };
            map.insert(seq, entry);
        }
    }

    pub fn wake_channels(&self) {
        for ch in self.channels.read().values() {
            ch.notify.notify_waiters();
        }
    }

    pub fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.channels.read().get(name).cloned()
    }

    pub fn channels(&self) -> Vec<Arc<Channel>> {
        self.channels.read().values().cloned().collect()
    }

    /// Gets or creates a channel; a topic's first channel inherits the backlog, and so do the
    /// channels created while a channel is still reading it.
    /// Returns the channel and whether it was created.
    pub fn get_or_create_channel(&self, name: &str, fsync: bool) -> std::io::Result<(Arc<Channel>, bool)> {
        if let Some(ch) = self.channel(name) {
            return Ok((ch, false));
        }
        let mut channels = self.channels.write();
        if let Some(ch) = channels.get(name) {
            return Ok((ch.clone(), false));
        }
        let head = self.core.head();
        let start = if channels.is_empty() {
            let start = self.orphan_start.lock().take().unwrap_or(head);
            if start.seq < head.seq {
                self.open_backlog(Backlog { start, end: head });
            }
            start
        } else {
            self.backlog_in_progress(&channels).map_or(head, |b| b.start)
        };
        let ch = Channel::create(self.core.clone(), name, start, self.channel_dir(name), fsync)?;
        channels.insert(name.to_string(), ch.clone());
        Ok((ch, true))
    }

    /// Remembers the backlog the first channel took (on disk too, so a restart keeps it).
    fn open_backlog(&self, backlog: Backlog) {
        *self.backlog.lock() = Some(backlog);
        if let Some(dir) = &self.dir {
            let text = format!(
                "{} {} {} {}",
                backlog.start.pos, backlog.start.seq, backlog.end.pos, backlog.end.seq
            );
            if let Err(e) = std::fs::write(backlog_file(dir), text) {
                eprintln!(
                    "[nsqd] ERROR: topic {}: failed to record its backlog - {e}",
                    self.core.name
                );
            }
        }
    }

    fn close_backlog(&self) {
        if self.backlog.lock().take().is_some() {
            if let Some(dir) = &self.dir {
                let _ = std::fs::remove_file(backlog_file(dir));
            }
        }
    }

    /// The backlog while some channel has not read past its end yet; closes it once every
    /// channel has.
    fn backlog_in_progress(&self, channels: &BTreeMap<String, Arc<Channel>>) -> Option<Backlog> {
        let backlog = (*self.backlog.lock())?;
        if channels.values().any(|c| c.unread_seq() < backlog.end.seq) {
            return Some(backlog);
        }
        self.close_backlog();
        None
    }

    /// Reads back a backlog that was still being read when the broker stopped.
    pub fn load_backlog(&self) {
        let Some(dir) = &self.dir else { return };
        let Ok(text) = std::fs::read_to_string(backlog_file(dir)) else {
            return;
        };
        let v: Vec<u64> = text.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        if let [start_pos, start_seq, end_pos, end_seq] = v[..] {
            *self.backlog.lock() = Some(Backlog {
                start: LogHead {
                    pos: start_pos,
                    seq: start_seq,
                },
                end: LogHead {
                    pos: end_pos,
                    seq: end_seq,
                },
            });
        }
    }

    /// Creates a channel reading from `start` (takeover of imported backlog).
    pub fn create_channel_at(
        &self,
        name: &str,
        start: LogHead,
        fsync: bool,
    ) -> std::io::Result<(Arc<Channel>, bool)> {
        let mut channels = self.channels.write();
        if let Some(ch) = channels.get(name) {
            return Ok((ch.clone(), false));
        }
        self.orphan_start.lock().take();
        let ch = Channel::create(self.core.clone(), name, start, self.channel_dir(name), fsync)?;
        channels.insert(name.to_string(), ch.clone());
        Ok((ch, true))
    }

    /// Re-reads the head after appends made directly to the log (takeover).
    pub fn refresh_head(&self) {
        let head = match &self.core.log {
            LogStore::Disk(l) => l.lock().head(),
            LogStore::Memory(l) => l.lock().head(),
        };
        *self.core.head.lock() = head;
    }

    /// Where a channel's files live; None for anything ephemeral.
    pub fn channel_dir(&self, channel: &str) -> Option<PathBuf> {
        if crate::protocol::names::is_ephemeral(channel) {
            return None;
        }
        self.dir.as_ref().map(|d| d.join("channels"))
    }

    /// Adds a channel rebuilt from disk at startup.
    pub fn insert_channel(&self, ch: Arc<Channel>) {
        self.orphan_start.lock().take();
        self.channels.write().insert(ch.name.clone(), ch);
    }

    /// Removes a channel. When it was the last one, the topic keeps new messages again.
    pub fn remove_channel(&self, name: &str) -> Option<Arc<Channel>> {
        let mut channels = self.channels.write();
        let ch = channels.remove(name)?;
        if channels.is_empty() {
            *self.orphan_start.lock() = Some(self.core.head());
            self.close_backlog();
        }
        drop(channels);
        ch.destroy();
        Some(ch)
    }

    pub fn set_paused(&self, paused: bool) {
        let mut at = self.core.paused_at.lock();
        if paused {
            at.get_or_insert_with(|| self.core.head());
        } else {
            *at = None;
        }
        self.core.paused.store(paused, Ordering::Release);
        drop(at);
        if !paused {
            self.wake_channels();
        }
    }

    pub fn is_paused(&self) -> bool {
        self.core.is_paused()
    }

    /// Messages held by the topic itself (no channel yet, or paused).
    pub fn depth(&self) -> u64 {
        let head = self.core.head();
        if let Some(start) = *self.orphan_start.lock() {
            return head.seq.saturating_sub(start.seq);
        }
        match *self.core.paused_at.lock() {
            Some(at) => head.seq.saturating_sub(at.seq),
            None => 0,
        }
    }

    /// Drops the messages the topic holds for channels not yet created (`/topic/empty`).
    pub fn empty(&self) {
        let head = self.core.head();
        self.close_backlog();
        let mut orphan = self.orphan_start.lock();
        if orphan.is_some() {
            *orphan = Some(head);
        }
        drop(orphan);
        let mut at = self.core.paused_at.lock();
        if let Some(paused_at) = *at {
            // Messages published while paused are the topic's own queue: channels skip them.
            for ch in self.channels() {
                ch.skip(paused_at, head);
            }
            *at = Some(head);
        }
    }

    /// Rebuilds the index of unread deferred messages after a restart (it lives in memory), by
    /// reading record headers from the oldest position any channel, or the topic itself, has
    /// not read yet up to the head.
    pub fn rebuild_unread_deferred(&self) {
        let LogStore::Disk(log) = &self.core.log else {
            return;
        };
        let head = self.core.head();
        let from = self
            .channels()
            .iter()
            .map(|ch| ch.unread_from())
            .chain(self.orphan_start().map(|h| h.pos))
            .chain(self.backlog.lock().map(|b| b.start.pos))
            .min()
            .unwrap_or(head.pos);
        match LogReader::scan_deferred(log, from, head.pos, now_ns()) {
            Ok(found) => {
                let mut map = self.core.unread_deferred.lock();
                for h in found {
                    map.entry(h.seq).or_insert(UnreadDeferred {
                        due_ns: h.deliver_at_ns,
                        id: h.id,
                        pos: h.pos,
                    });
                }
            }
            Err(e) => eprintln!(
                "[nsqd] ERROR: reading topic {} for deferred messages: {e}",
                self.core.name
            ),
        }
    }

    /// Deletes log segments no channel needs any more, and forgets deferred messages every
    /// channel has read.
    pub fn release_unneeded(&self) {
        // A channel created while the backlog is being read starts at its start: keep it.
        let backlog = self.backlog_in_progress(&self.channels.read()).map(|b| b.start);
        let orphan = (*self.orphan_start.lock()).or(backlog);
        let mut low = orphan.map(|h| h.pos).unwrap_or(u64::MAX);
        let mut low_seq = orphan.map(|h| h.seq).unwrap_or(u64::MAX);
        for ch in self.channels() {
            low = low.min(ch.low_water());
            low_seq = low_seq.min(ch.unread_seq());
        }
        {
            let mut map = self.core.unread_deferred.lock();
            if low_seq == u64::MAX {
                map.clear();
            } else {
                *map = map.split_off(&low_seq);
            }
        }
        if low == u64::MAX {
            low = self.core.head().pos;
        }
        match &self.core.log {
            LogStore::Disk(log) => log.lock().release_before(low),
            LogStore::Memory(log) => log.lock().release_before(low),
        }
    }

    pub fn orphan_start(&self) -> Option<LogHead> {
        *self.orphan_start.lock()
    }

    pub fn set_orphan_start(&self, start: Option<LogHead>) {
        *self.orphan_start.lock() = start;
    }
}
