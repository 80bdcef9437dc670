//! The copies this broker holds of other brokers (owners): per owner, its topics' log records
//! at the owner's own positions, each channel's latest shipped state, the topics' metadata,
//! and who the owner is. Copies are written by the replication receiver, read by adoption,
//! and never served to clients.
//!
//! ```text
//! <data>/nsqrs/copies/<owner>/owner.json              identity, epoch, peers
//! <data>/nsqrs/copies/<owner>/t_<topic>/*.seg          records, as in the owner's log
//! <data>/nsqrs/copies/<owner>/t_<topic>/meta.json      paused, orphan start, channels
//! <data>/nsqrs/copies/<owner>/t_<topic>/channels/      channel snapshots (engine format)
//! <data>/nsqrs/copies/<owner>/adopted.json             once adopted
//! <data>/nsqrs/copies/<owner>/granted.json             a claim granted to another holder
//! <data>/nsqrs/copies/<owner>/adopting                 adoption under way (redone at start)
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
use crate::broker::journal::{ChannelSnapshot, ChannelStore};
use crate::broker::log::{check_records, DiskLog};
use crate::protocol::guid::now_ns;

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
        ChannelStore::load(&self.channels_dir(), channel)
            .ok()
            .flatten()
            .map(|(snap, _)| snap)
    }
}

/// Everything held for one owner.
pub struct Copy {
    pub owner: String,
    dir: PathBuf,
    max_bytes_per_file: u64,
    fsync: bool,
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
        let log = DiskLog::open(&dir, self.max_bytes_per_file, self.max_msg_size())?;
        let meta = read_json(&dir.join("meta.json")).unwrap_or_default();
        Ok(CopyTopic {
            dir,
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
        let max_payload = 34 + self.max_msg_size();
        let span = check_records(records, max_payload)
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
        ChannelStore::create(&t.channels_dir(), &state.channel, &mut snap, self.fsync)
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
    copies: Mutex<BTreeMap<String, Arc<Copy>>>,
}

impl CopyStore {
    /// Opens `<data>/nsqrs/copies`, loading every copy found there.
    pub fn open(data_dir: &Path, max_bytes_per_file: u64, fsync: bool) -> Result<CopyStore, String> {
        let dir = data_dir.join("nsqrs").join("copies");
        fs::create_dir_all(&dir).map_err(|e| format!("failed to create {} - {e}", dir.display()))?;
        let store = CopyStore {
            dir,
            max_bytes_per_file: max_bytes_per_file.max(1024),
            fsync,
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
