//! The copies this broker holds of other brokers (owners): per owner, its topics' log records
//! at the owner's own positions, each channel's latest shipped state, the topics' metadata,
//! and who the owner is. Copies are written by the replication receiver, read by adoption,
//! and never served to clients.
//!
//! ```text
//! <data>/nsqrs-data/copies/<owner>/owner.json              identity, epoch, peers
//! <data>/nsqrs-data/copies/<owner>/t_<topic>/*.seg          records, as in the owner's log
//! <data>/nsqrs-data/copies/<owner>/t_<topic>/meta.json      paused, orphan start, channels
//! <data>/nsqrs-data/copies/<owner>/t_<topic>/channels/      channel snapshots (engine format)
//! <data>/nsqrs-data/copies/<owner>/adopted.json             once adopted
//! <data>/nsqrs-data/copies/<owner>/granted.json             a claim granted to another holder
//! <data>/nsqrs-data/copies/<owner>/adopting                 adoption under way (redone at start)
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::wire::{AdoptionRecord, ChannelState, End, Hello, TopicState};
use crate::common::time::now_ns;
use crate::nsqd::broker::files::FileCache;
use crate::nsqd::broker::journal::{ChannelSnapshot, ChannelStore, Stored};
use crate::nsqd::broker::log::{check_records, DiskLog};
use crate::nsqd::broker::record::max_payload;
use crate::nsqd::broker::repairs::Repairs;

/// What this broker knows of an owner (`owner.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OwnerInfo {
    pub node: String,
    pub name: String,
    pub tcp_address: String,
    pub epoch: u64,
    pub peers: Vec<String>,
    pub replicas: u32,
    pub max_msg_size: u64,
}

/// A claim this holder granted to another holder (`granted.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    pub epoch: u64,
    pub claimant: String,
}

/// A topic's metadata in a copy (`meta.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicMeta {
    pub version: u64,
    pub paused: bool,
    pub orphan_start: Option<End>,
    /// Channel name → (state version, paused).
    pub channels: BTreeMap<String, (u64, bool)>,
}

/// One topic of a copy.
pub struct CopyTopic {
    dir: PathBuf,
    files: Arc<FileCache>,
    repairs: Arc<Repairs>,
    pub log: Arc<Mutex<DiskLog>>,
    pub meta: TopicMeta,
    meta_dirty: bool,
}

impl CopyTopic {
    pub fn end(&self) -> End {
        let head = self.log.lock().head();
        End {
            pos: head.pos,
            seq: head.seq,
        }
    }

    pub fn channels_dir(&self) -> PathBuf {
        self.dir.join("channels")
    }

    /// A channel's last shipped snapshot.
    pub fn snapshot(&self, channel: &str) -> Option<ChannelSnapshot> {
        match ChannelStore::load(&self.channels_dir(), channel, &self.files, &self.repairs) {
            Ok(Stored::Intact(snap, _)) => Some(snap),
            _ => None,
        }
    }
}

/// Everything held for one owner.
pub struct Copy {
    pub owner: String,
    dir: PathBuf,
    max_bytes_per_file: u64,
    fsync: bool,
    /// The broker's file cache and repair record: a copy's segments count like its own.
    files: Arc<FileCache>,
    repairs: Arc<Repairs>,
    pub info: Mutex<OwnerInfo>,
    pub topics: Mutex<BTreeMap<String, CopyTopic>>,
    pub adopted: Mutex<Option<AdoptionRecord>>,
    pub grant: Mutex<Option<Grant>>,
    /// The owner's live connections to this broker.
    pub connected: AtomicUsize,
    /// When the owner was last heard from (ns); start-up time until then.
    pub last_contact_ns: AtomicU64,
    /// Bumped by every HELLO: frames of an older session are ignored.
    session: AtomicU64,
    pub adopting: AtomicBool,
    /// Where this holder stands in claiming the copy; claims from other holders are decided
    /// under the same lock, so two holders never both go ahead.
    pub phase: Mutex<ClaimPhase>,
}

/// A holder's own claim on a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimPhase {
    Idle,
    /// Asking the other holders; a claim from a lower node id makes it yield.
    Claiming,
    /// Yielded to a lower claimant: the own adoption stops before it commits.
    Yielded,
    /// Adopting: every other claim is denied.
    Committed,
}

fn write_json<T: Serialize>(path: &Path, value: &T, fsync: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(value)?)?;
        if fsync {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, path)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

fn topic_dir(dir: &Path, topic: &str) -> PathBuf {
    dir.join(format!("t_{topic}"))
}

impl Copy {
    fn max_msg_size(&self) -> usize {
        (self.info.lock().max_msg_size as usize).max(1)
    }

    fn open_topic(&self, name: &str) -> std::io::Result<CopyTopic> {
        let dir = topic_dir(&self.dir, name);
        let log = DiskLog::open_copy(
            &dir,
            self.files.clone(),
            self.repairs.clone(),
            self.max_bytes_per_file,
            self.max_msg_size(),
        )?;
        let meta = read_json(&dir.join("meta.json")).unwrap_or_default();
        Ok(CopyTopic {
            dir,
            files: self.files.clone(),
            repairs: self.repairs.clone(),
            log: Arc::new(Mutex::new(log)),
            meta,
            meta_dirty: false,
        })
    }

    /// Where each topic's copy ends.
    pub fn ends(&self) -> BTreeMap<String, End> {
        self.topics
            .lock()
            .iter()
            .map(|(name, t)| (name.clone(), t.end()))
            .collect()
    }

    /// The state versions held: `topic` and `topic/channel` → version.
    pub fn versions(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (name, t) in self.topics.lock().iter() {
            out.insert(name.clone(), t.meta.version);
            for (ch, (v, _)) in &t.meta.channels {
                out.insert(format!("{name}/{ch}"), *v);
            }
        }
        out
    }

    /// Bytes of log records held.
    pub fn bytes(&self) -> u64 {
        self.topics
            .lock()
            .values()
            .map(|t| {
                let l = t.log.lock();
                l.head().pos - l.tail().pos
            })
            .sum()
    }

    /// The session frames must belong to now (pulls from other holders use it too).
    pub fn current_session(&self) -> u64 {
        self.session.load(Ordering::Acquire)
    }

    pub fn is_current(&self, session: u64) -> bool {
        self.session.load(Ordering::Acquire) == session
    }

    pub fn touch(&self) {
        self.last_contact_ns.store(now_ns() as u64, Ordering::Relaxed);
    }

    /// Appends the owner's records at `pos`. Returns the copy's new end.
    pub fn append(&self, session: u64, topic: &str, pos: u64, records: &[u8]) -> Result<End, String> {
        let span = check_records(records, max_payload(self.max_msg_size()))
            .ok_or_else(|| format!("damaged records for topic {topic} at {pos}"))?;
        let mut topics = self.topics.lock();
        if !self.is_current(session) {
            return Err("superseded by a newer connection".into());
        }
        if !topics.contains_key(topic) {
            let t = self.open_topic(topic).map_err(|e| e.to_string())?;
            topics.insert(topic.to_string(), t);
        }
        let t = topics.get_mut(topic).unwrap();
        let mut log = t.log.lock();
        let head = log
            .append_raw(pos, records, span)
            .map_err(|e| format!("topic {topic}: {e}"))?;
        if self.fsync {
            log.sync_handle()
                .and_then(|(f, _)| f.sync_data())
                .map_err(|e| e.to_string())?;
        }
        Ok(End {
            pos: head.pos,
            seq: head.seq,
        })
    }

    /// Fsyncs every topic log with unsynced bytes (`--sync-timeout` on the holder).
    pub fn sync(&self) {
        for t in self.topics.lock().values() {
            let handle = {
                let mut l = t.log.lock();
                l.has_unsynced().then(|| l.sync_handle())
            };
            if let Some(Ok((f, _))) = handle {
                let _ = f.sync_data();
            }
        }
    }

    /// Keeps a channel's state if it is newer than the one held.
    pub fn apply_state(&self, session: u64, state: &ChannelState) -> Result<(), String> {
        let mut topics = self.topics.lock();
        if !self.is_current(session) {
            return Err("superseded by a newer connection".into());
        }
        if !topics.contains_key(&state.topic) {
            let t = self.open_topic(&state.topic).map_err(|e| e.to_string())?;
            topics.insert(state.topic.clone(), t);
        }
        let t = topics.get_mut(&state.topic).unwrap();
        if t.meta
            .channels
            .get(&state.channel)
            .is_some_and(|(v, _)| *v >= state.version)
        {
            return Ok(());
        }
        let mut snap = state.snapshot.clone();
        ChannelStore::create(
            &t.channels_dir(),
            &state.channel,
            &mut snap,
            self.fsync,
            self.files.clone(),
        )
        .map_err(|e| format!("channel {}:{}: {e}", state.topic, state.channel))?;
        t.meta
            .channels
            .insert(state.channel.clone(), (state.version, state.paused));
        t.meta_dirty = true;
        Ok(())
    }

    /// Keeps a topic's metadata if newer; channels no longer listed are removed.
    pub fn apply_topic(&self, session: u64, state: &TopicState) -> Result<(), String> {
        let mut topics = self.topics.lock();
        if !self.is_current(session) {
            return Err("superseded by a newer connection".into());
        }
        if !topics.contains_key(&state.topic) {
            let t = self.open_topic(&state.topic).map_err(|e| e.to_string())?;
            topics.insert(state.topic.clone(), t);
        }
        let t = topics.get_mut(&state.topic).unwrap();
        if t.meta.version >= state.version {
            return Ok(());
        }
        t.meta.version = state.version;
        t.meta.paused = state.paused;
        t.meta.orphan_start = state.orphan_start;
        let gone: Vec<String> = t
            .meta
            .channels
            .keys()
            .filter(|c| !state.channels.contains(c))
            .cloned()
            .collect();
        for c in gone {
            t.meta.channels.remove(&c);
            let dir = t.channels_dir();
            let _ = fs::remove_file(dir.join(format!("{c}.snap")));
            let _ = fs::remove_file(dir.join(format!("{c}.journal")));
        }
        for c in &state.channels {
            // A channel whose state has not arrived yet reads from the orphan start or the
            // copy's start: listing it keeps its messages.
            t.meta.channels.entry(c.clone()).or_insert((0, false));
        }
        t.meta_dirty = true;
        Ok(())
    }

    /// The owner deleted its segments before `pos`.
    pub fn release(&self, session: u64, topic: &str, pos: u64) {
        let topics = self.topics.lock();
        if !self.is_current(session) {
            return;
        }
        if let Some(t) = topics.get(topic) {
            t.log.lock().release_before(pos);
        }
    }

    /// The owner deleted the topic (or its copy must start over).
    pub fn drop_topic(&self, session: u64, topic: &str) {
        let mut topics = self.topics.lock();
        if !self.is_current(session) {
            return;
        }
        if let Some(t) = topics.remove(topic) {
            let _ = fs::remove_dir_all(&t.dir);
        }
    }

    /// Writes the metadata of topics whose state changed.
    pub fn flush_meta(&self) {
        for t in self.topics.lock().values_mut() {
            if t.meta_dirty {
                if let Err(e) = write_json(&t.dir.join("meta.json"), &t.meta, self.fsync) {
                    eprintln!("[nsqd] ERROR: replication: writing {} - {e}", t.dir.display());
                } else {
                    t.meta_dirty = false;
                }
            }
        }
    }

    fn save_info(&self) {
        let info = self.info.lock().clone();
        if let Err(e) = write_json(&self.dir.join("owner.json"), &info, true) {
            eprintln!(
                "[nsqd] ERROR: replication: writing owner.json of {} - {e}",
                self.owner
            );
        }
    }

    /// Deletes every topic of the copy (adopted, or superseded by a new epoch).
    fn clear_topics(&self) {
        let mut topics = self.topics.lock();
        for (_, t) in std::mem::take(&mut *topics) {
            let _ = fs::remove_dir_all(&t.dir);
        }
    }

    pub fn set_grant(&self, grant: Option<Grant>) {
        let path = self.dir.join("granted.json");
        match &grant {
            Some(g) => {
                if let Err(e) = write_json(&path, g, true) {
                    eprintln!("[nsqd] ERROR: replication: writing {} - {e}", path.display());
                }
            }
            None => {
                let _ = fs::remove_file(&path);
            }
        }
        *self.grant.lock() = grant;
    }

    /// Records that the copy was adopted (here or elsewhere) and drops its records.
    pub fn mark_adopted(&self, record: AdoptionRecord) {
        let path = self.dir.join("adopted.json");
        if let Err(e) = write_json(&path, &record, true) {
            eprintln!("[nsqd] ERROR: replication: writing {} - {e}", path.display());
        }
        *self.adopted.lock() = Some(record);
        self.clear_topics();
        self.set_adopting(false);
    }

    /// The `adopting` marker: adoption under way, to be redone after a crash.
    pub fn set_adopting(&self, on: bool) {
        let path = self.dir.join("adopting");
        if on {
            let _ = fs::File::create(&path).and_then(|f| f.sync_all());
        } else {
            let _ = fs::remove_file(&path);
        }
        self.adopting.store(on, Ordering::Release);
    }

    pub fn adoption_interrupted(&self) -> bool {
        self.dir.join("adopting").exists()
    }

    /// A new owner session (HELLO): returns its number. An owner at another epoch than the
    /// copy's gets a fresh copy; an adoption record of an older epoch is forgotten.
    pub fn begin_session(&self, hello: &Hello) -> u64 {
        let session = self.session.fetch_add(1, Ordering::AcqRel) + 1;
        let stored_epoch = self.info.lock().epoch;
        let adopted_epoch = self.adopted.lock().as_ref().map(|a| a.epoch);
        let granted_epoch = self.grant.lock().as_ref().map(|g| g.epoch);
        if adopted_epoch.is_some_and(|e| e < hello.epoch) {
            *self.adopted.lock() = None;
            let _ = fs::remove_file(self.dir.join("adopted.json"));
        }
        if granted_epoch.is_some_and(|e| e < hello.epoch) {
            self.set_grant(None);
        }
        if stored_epoch != hello.epoch {
            self.clear_topics();
        }
        *self.info.lock() = OwnerInfo {
            node: hello.node.clone(),
            name: hello.name.clone(),
            tcp_address: hello.tcp_address.clone(),
            epoch: hello.epoch,
            peers: hello.peers.clone(),
            replicas: hello.replicas,
            max_msg_size: hello.max_msg_size,
        };
        self.save_info();
        self.touch();
        session
    }

    /// What to tell the owner about an adoption of it: this broker's own adoption record, or,
    /// when it granted another holder's claim, that holder with this copy's ends.
    pub fn adoption_news(&self, epoch: u64) -> Option<AdoptionRecord> {
        let adopted = self.adopted.lock().clone();
        if let Some(a) = adopted {
            if a.epoch >= epoch {
                return Some(a);
            }
        }
        let grant = self.grant.lock().clone()?;
        (grant.epoch >= epoch).then(|| AdoptionRecord {
            owner: self.owner.clone(),
            epoch: grant.epoch,
            adopter: grant.claimant,
            ends: self.ends(),
            at_ns: now_ns(),
        })
    }
}

/// Every copy held by this broker.
pub struct CopyStore {
    dir: PathBuf,
    max_bytes_per_file: u64,
    fsync: bool,
    files: Arc<FileCache>,
    repairs: Arc<Repairs>,
    copies: Mutex<BTreeMap<String, Arc<Copy>>>,
}

impl CopyStore {
    /// Opens `<data>/nsqrs-data/copies` (`store_dir` is nsqrs's folder in the data directory),
    /// loading every copy found there.
    pub fn open(
        store_dir: &Path,
        max_bytes_per_file: u64,
        fsync: bool,
        files: Arc<FileCache>,
        repairs: Arc<Repairs>,
    ) -> Result<CopyStore, String> {
        let dir = store_dir.join("copies");
        fs::create_dir_all(&dir).map_err(|e| format!("failed to create {} - {e}", dir.display()))?;
        let store = CopyStore {
            dir,
            max_bytes_per_file: max_bytes_per_file.max(1024),
            fsync,
            files,
            repairs,
            copies: Mutex::new(BTreeMap::new()),
        };
        let entries = fs::read_dir(&store.dir).map_err(|e| e.to_string())?;
        for entry in entries.filter_map(|e| e.ok()) {
            let Some(owner) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !super::wire::is_valid_node_id(&owner) {
                continue;
            }
            let copy = store.load(&owner).map_err(|e| format!("copy of {owner}: {e}"))?;
            store.copies.lock().insert(owner, Arc::new(copy));
        }
        Ok(store)
    }

    fn new_copy(&self, owner: &str, info: OwnerInfo) -> Copy {
        Copy {
            owner: owner.to_string(),
            dir: self.dir.join(owner),
            max_bytes_per_file: self.max_bytes_per_file,
            fsync: self.fsync,
            files: self.files.clone(),
            repairs: self.repairs.clone(),
            info: Mutex::new(info),
            topics: Mutex::new(BTreeMap::new()),
            adopted: Mutex::new(None),
            grant: Mutex::new(None),
            connected: AtomicUsize::new(0),
            last_contact_ns: AtomicU64::new(now_ns() as u64),
            session: AtomicU64::new(0),
            adopting: AtomicBool::new(false),
            phase: Mutex::new(ClaimPhase::Idle),
        }
    }

    fn load(&self, owner: &str) -> std::io::Result<Copy> {
        let dir = self.dir.join(owner);
        let info: OwnerInfo = read_json(&dir.join("owner.json")).unwrap_or_default();
        let copy = self.new_copy(owner, info);
        *copy.adopted.lock() = read_json(&dir.join("adopted.json"));
        *copy.grant.lock() = read_json(&dir.join("granted.json"));
        let mut topics = BTreeMap::new();
        for entry in fs::read_dir(&dir)?.filter_map(|e| e.ok()) {
            let name = entry.file_name();
            let Some(topic) = name.to_str().and_then(|n| n.strip_prefix("t_")) else {
                continue;
            };
            if !crate::protocol::names::is_valid_topic_name(topic) {
                continue;
            }
            topics.insert(topic.to_string(), copy.open_topic(topic)?);
        }
        *copy.topics.lock() = topics;
        Ok(copy)
    }

    pub fn get(&self, owner: &str) -> Option<Arc<Copy>> {
        self.copies.lock().get(owner).cloned()
    }

    /// The copy of `owner`, created when there is none.
    pub fn get_or_create(&self, owner: &str) -> std::io::Result<Arc<Copy>> {
        let mut copies = self.copies.lock();
        if let Some(c) = copies.get(owner) {
            return Ok(c.clone());
        }
        fs::create_dir_all(self.dir.join(owner))?;
        let copy = Arc::new(self.new_copy(owner, OwnerInfo::default()));
        copies.insert(owner.to_string(), copy.clone());
        Ok(copy)
    }

    pub fn all(&self) -> Vec<Arc<Copy>> {
        self.copies.lock().values().cloned().collect()
    }

    /// Copies whose owner is `selector`: its node id, its name (`broadcast_address:port`) or
    /// its TCP address.
    pub fn find(&self, selector: &str) -> Vec<Arc<Copy>> {
        self.all()
            .into_iter()
            .filter(|c| {
                let info = c.info.lock();
                c.owner == selector || info.name == selector || info.tcp_address == selector
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! The copy's log on the engine's storage: records shipped as the owner stores them are
    //! checked before they are written, gaps stay gaps, damage on the owner is skipped.

    use super::*;
    use crate::nsqd::broker::log::{LogHead, LogReader, NewRecord, RecordSpan};
    use crate::protocol::MessageId;

    const MAX_MSG: usize = 1024;

    fn logs(dir: &Path) -> (Arc<FileCache>, Arc<Repairs>) {
        fs::create_dir_all(dir).unwrap();
        (Arc::new(FileCache::new(64)), Arc::new(Repairs::default()))
    }

    /// An owner's log with `n` messages of 100 bytes (IDs 0..n), in segments of 1 KiB.
    fn owner_log(dir: &Path, n: u64) -> (Mutex<DiskLog>, Arc<Repairs>) {
        let (files, repairs) = logs(dir);
        let mut log = DiskLog::open(dir, files, repairs.clone(), 1024, MAX_MSG).unwrap();
        let body = [b'm'; 100];
        for id in 0..n {
            log.append(&[NewRecord {
                id: MessageId(id),
                timestamp_ns: 1,
                attempts: 0,
                deliver_at_ns: 0,
                body: &body,
            }])
            .unwrap();
        }
        (Mutex::new(log), repairs)
    }

    /// Everything `read_raw` ships from `from`: (start, bytes) per call.
    fn ship(log: &Mutex<DiskLog>, from: u64) -> Vec<(u64, Vec<u8>)> {
        let head = log.lock().head();
        let mut reader = LogReader::default();
        let mut out = Vec::new();
        let mut pos = from;
        for _ in 0..1000 {
            let mut bytes = Vec::new();
            let Some(start) = reader.read_raw(log, pos, head, 700, &mut bytes).unwrap() else {
                break;
            };
            pos = start + bytes.len() as u64;
            out.push((start, bytes));
        }
        out
    }

    fn ids(log: &Mutex<DiskLog>) -> Vec<u64> {
        let head = log.lock().head();
        let batch = LogReader::default()
            .read_from(log, 0, None, head, 10_000)
            .unwrap();
        let mut out: Vec<u64> = batch.messages.iter().map(|m| m.id.0).collect();
        let (mut pos, mut seq) = (batch.next_pos, batch.next_seq);
        while pos < head.pos {
            let batch = LogReader::default()
                .read_from(log, pos, seq, head, 10_000)
                .unwrap();
            if batch.next_pos <= pos {
                break;
            }
            out.extend(batch.messages.iter().map(|m| m.id.0));
            (pos, seq) = (batch.next_pos, batch.next_seq);
        }
        out
    }

    #[test]
    fn a_copy_takes_the_owners_records_at_the_owners_positions() {
        let dir = tempfile::tempdir().unwrap();
        let (owner, _) = owner_log(&dir.path().join("owner"), 30);
        let (files, repairs) = logs(&dir.path().join("copy"));
        let mut copy =
            DiskLog::open_copy(&dir.path().join("copy"), files, repairs.clone(), 1024, MAX_MSG).unwrap();
        for (start, bytes) in ship(&owner, 0) {
            let span = check_records(&bytes, max_payload(MAX_MSG)).expect("intact records");
            copy.append_raw(start, &bytes, span).unwrap();
        }
        assert_eq!(copy.head(), owner.lock().head());
        let copy = Mutex::new(copy);
        assert_eq!(ids(&copy), (0..30).collect::<Vec<_>>());
        assert_eq!(repairs.count(), 0);
    }

    #[test]
    fn records_that_fail_their_checksum_or_do_not_follow_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (owner, _) = owner_log(&dir.path().join("owner"), 10);
        let shipped = ship(&owner, 0);
        let (first_at, first) = shipped[0].clone();
        let (second_at, second) = shipped[1].clone();
        let max = max_payload(MAX_MSG);

        let mut flipped = first.clone();
        flipped[60] ^= 1;
        assert_eq!(check_records(&flipped, max), None, "a body byte changed");
        assert_eq!(
            check_records(&first[..first.len() - 1], max),
            None,
            "a record cut short"
        );
        let mut both = second.clone();
        both.extend_from_slice(&first);
        assert_eq!(check_records(&both, max), None, "sequence numbers that go back");

        let (files, repairs) = logs(&dir.path().join("copy"));
        let mut copy = DiskLog::open_copy(&dir.path().join("copy"), files, repairs, 1024, MAX_MSG).unwrap();
        let span = check_records(&first, max).unwrap();
        let head = copy.append_raw(first_at, &first, span).unwrap();
        let err = copy.append_raw(first_at, &first, span).unwrap_err();
        assert!(err.to_string().contains("overlaps"), "{err}");
        // The second batch again, claiming to follow at the head with other sequence numbers.
        let mut wrong = check_records(&second, max).unwrap();
        wrong.first_seq += 1;
        let err = copy.append_raw(head.pos, &second, wrong).unwrap_err();
        assert!(err.to_string().contains("sequence"), "{err}");
        // Records further on, with sequence numbers from before the head: refused too.
        let early = RecordSpan {
            first_seq: 0,
            ..check_records(&second, max).unwrap()
        };
        assert!(copy.append_raw(head.pos + 1000, &second, early).is_err());
        assert_eq!(copy.head(), head, "nothing refused was written");
        assert_eq!(second_at, head.pos);
        copy.append_raw(second_at, &second, check_records(&second, max).unwrap())
            .unwrap();
    }

    #[test]
    fn a_gap_stays_a_gap_and_reopens_without_a_repair() {
        let dir = tempfile::tempdir().unwrap();
        let (owner, _) = owner_log(&dir.path().join("owner"), 30);
        let shipped = ship(&owner, 0);
        let copy_dir = dir.path().join("copy");
        let (files, repairs) = logs(&copy_dir);
        let mut copy = DiskLog::open_copy(&copy_dir, files.clone(), repairs.clone(), 1024, MAX_MSG).unwrap();
        let max = max_payload(MAX_MSG);
        // The first batch, then (as if the owner released what lies between) the last two.
        let (at, bytes) = &shipped[0];
        copy.append_raw(*at, bytes, check_records(bytes, max).unwrap())
            .unwrap();
        for (at, bytes) in &shipped[shipped.len() - 2..] {
            copy.append_raw(*at, bytes, check_records(bytes, max).unwrap())
                .unwrap();
        }
        let head = copy.head();
        assert_eq!(head, owner.lock().head());
        let want: Vec<u64> = {
            let copy = Mutex::new(copy);
            let got = ids(&copy);
            assert!(
                got.len() < 30 && got[0] == 0 && *got.last().unwrap() == 29,
                "{got:?}"
            );
            got
        };
        let reopened = DiskLog::open_copy(&copy_dir, files, repairs.clone(), 1024, MAX_MSG).unwrap();
        assert_eq!(reopened.head(), head);
        assert_eq!(ids(&Mutex::new(reopened)), want);
        assert_eq!(repairs.count(), 0, "{:?}", repairs.recent());
    }

    #[test]
    fn the_owner_ships_around_damage_in_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let owner_dir = dir.path().join("owner");
        let (owner, owner_repairs) = owner_log(&owner_dir, 20);
        let head: LogHead = owner.lock().head();
        // A body byte of the third record of the first segment.
        let first = owner_dir.join(format!("{:020}.seg", 0));
        let mut data = fs::read(&first).unwrap();
        let record = crate::nsqd::broker::log::stored_len(100) as usize;
        data[2 * record + 60] ^= 0x20;
        fs::write(&first, data).unwrap();

        let copy_dir = dir.path().join("copy");
        let (files, repairs) = logs(&copy_dir);
        let mut copy = DiskLog::open_copy(&copy_dir, files, repairs, 1024, MAX_MSG).unwrap();
        for (start, bytes) in ship(&owner, 0) {
            let span = check_records(&bytes, max_payload(MAX_MSG)).expect("only intact records are shipped");
            copy.append_raw(start, &bytes, span).unwrap();
        }
        assert_eq!(copy.head(), head);
        let got = ids(&Mutex::new(copy));
        assert_eq!(got, (0..20).filter(|&i| i != 2).collect::<Vec<_>>());
        assert_eq!(owner_repairs.count(), 1, "the owner reports its damage once");
    }
}
