//! The nsqd engine: the registry of topics and channels, their persistence in the data
//! directory, and the background work that keeps it honest (in-flight timeouts, deferred
//! messages coming due, channel checkpoints, fsync policy, deleting consumed log segments).
//!
//! Front ends (TCP, HTTP) call into `Broker`; `Broker` calls into topics, channels and logs.

pub mod channel;
pub mod client;
pub mod damage;
#[cfg(test)]
mod engine_tests;
pub mod events;
pub mod files;
pub mod journal;
pub mod log;
pub mod metadata;
pub mod record;
pub mod repairs;
mod restore;
pub mod stats;
pub mod takeover;
pub mod topic;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};

use crate::nsqd::options::NsqdOptions;
use crate::protocol::events::{Detail, Kind, Place, EVENTS_TOPIC};
use crate::protocol::names::is_ephemeral;
use channel::Channel;
use log::{DiskLog, MemLog};
use topic::{LogStore, PublishError, Topic};

/// The version nsqrs speaks as: NSQ's, so clients enable the same features.
pub const NSQ_VERSION: &str = "1.3.0";

/// A change lookupd must hear about (nsq-reference §1.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    Register {
        topic: String,
        channel: Option<String>,
    },
    Unregister {
        topic: String,
        channel: Option<String>,
    },
    /// A topic created at runtime (not loaded at start-up): lookupd may know its channels.
    TopicCreated {
        topic: String,
    },
}

/// The topics' folders inside the store.
const TOPICS_DIR: &str = "topics";

/// How often channel state is checkpointed; bounds redelivery after a crash.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);
/// How often recorded lifecycle events are published.
const EVENTS_INTERVAL: Duration = Duration::from_millis(50);
/// How often in-flight deadlines and deferred due times are checked.
const TIMER_INTERVAL: Duration = Duration::from_millis(20);
/// How often files unused since the previous sweep are closed: an idle topic or channel holds
/// no descriptor after one to two of these.
const FILE_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

pub struct Broker {
    pub opts: NsqdOptions,
    pub data_dir: PathBuf,
    topics_dir: PathBuf,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    pub start_time: SystemTime,
    health: Mutex<Option<String>>,
    exiting: AtomicBool,
    next_client_id: AtomicU64,
    metadata_lock: Mutex<()>,
    clients: Mutex<BTreeMap<u64, Arc<client::ClientHandle>>>,
    registrations: tokio::sync::broadcast::Sender<Registration>,
    /// Lifecycle events (docs/events.md), published on `nsqrs.events`.
    pub events: Arc<events::EventSink>,
    /// Replication (src/replication), set once by the serve runner: a publish waits for
    /// the peers' acknowledgements through it.
    pub replication: std::sync::OnceLock<Arc<crate::replication::Replication>>,
    /// Every open file of the data directory goes through this bounded cache.
    pub files: Arc<files::FileCache>,
    /// Damage found and contained (listed on `/stats`).
    pub repairs: Arc<repairs::Repairs>,
    /// Topics and channels that could not be opened: not served, kept in `nsqd.dat`.
    set_aside: Mutex<restore::SetAside>,
    _dir_lock: fs::File,
}

/// Why a topic cannot be had.
#[derive(Debug)]
pub enum TopicError {
    /// The broker is shutting down.
    Exiting,
    /// Its files cannot be opened or created (the reason, for the log and the client).
    Unavailable(String),
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicError::Exiting => write!(f, "exiting"),
            TopicError::Unavailable(why) => write!(f, "{why}"),
        }
    }
}

impl From<TopicError> for String {
    fn from(e: TopicError) -> String {
        e.to_string()
    }
}

/// Where a topic's files live; prefixed so names like `..` stay inside the data directory.
fn topic_dir(topics_dir: &Path, name: &str) -> PathBuf {
    topics_dir.join(format!("t_{name}"))
}

/// The folder in the data directory that holds nsqrs's own files (topic logs, channel
/// journals). It was once `nsqrs`, the binary's own name, which made `./nsqrs serve` fail
/// where the binary lives; such a folder is renamed on the first start that finds it.
const STORE_DIR: &str = "nsqrs-data";
const LEGACY_STORE_DIR: &str = "nsqrs";

/// Where nsqrs keeps its files in `data_dir`, after moving a folder of the old name there.
/// Anything at the old name that is not nsqrs's folder (the `nsqrs` binary itself) is left
/// alone.
fn store_dir(data_dir: &Path) -> Result<PathBuf, String> {
    let store = data_dir.join(STORE_DIR);
    let legacy = data_dir.join(LEGACY_STORE_DIR);
    if !store.exists() && legacy.join("topics").is_dir() {
        fs::rename(&legacy, &store)
            .map_err(|e| format!("failed to move {} to {} - {e}", legacy.display(), store.display()))?;
    }
    if store.exists() && !store.is_dir() {
        return Err(format!(
            "{} is not a directory: nsqrs keeps its topic logs there (move it, or use --data-path)",
            store.display()
        ));
    }
    Ok(store)
}

fn orphan_file(dir: &Path) -> PathBuf {
    dir.join("orphan_start")
}

impl Broker {
    /// Locks the data directory, takes over a Go nsqd's data if that is what it holds, and
    /// loads every topic and channel.
    pub fn open(opts: NsqdOptions) -> Result<Arc<Broker>, String> {
        let data_dir = if opts.data_path.is_empty() {
            std::env::current_dir().map_err(|e| {
                format!("failed to find the current directory (the default --data-path) - {e}")
            })?
        } else {
            PathBuf::from(&opts.data_path)
        };
        fs::create_dir_all(&data_dir)
            .map_err(|e| format!("failed to create data path {} - {e}", data_dir.display()))?;
        let dir_lock = fs::File::open(&data_dir)
            .map_err(|e| format!("failed to open data path {} - {e}", data_dir.display()))?;
        // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
        if unsafe { libc::flock(dir_lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(format!(
                "--data-path={} in use (possibly by another instance of nsqd)",
                data_dir.display()
            ));
        }
        let store_dir = store_dir(&data_dir)?;
        let topics_dir = store_dir.join(TOPICS_DIR);
        let fresh = !store_dir.exists();
        // The command line validated both; a library caller's bad values mean "off" / "all topics".
        let events = Arc::new(events::EventSink::new(
            events::EventMode::parse(&opts.lifecycle_events).unwrap_or(events::EventMode::Off),
            regex::Regex::new(&opts.lifecycle_events_topics)
                .ok()
                .filter(|_| !opts.lifecycle_events_topics.is_empty()),
        ));
        let broker = Arc::new(Broker {
            opts,
            data_dir,
            topics_dir,
            topics: RwLock::new(BTreeMap::new()),
            start_time: SystemTime::now(),
            health: Mutex::new(None),
            exiting: AtomicBool::new(false),
            next_client_id: AtomicU64::new(0),
            metadata_lock: Mutex::new(()),
            clients: Mutex::new(BTreeMap::new()),
            registrations: tokio::sync::broadcast::channel(4096).0,
            events,
            replication: std::sync::OnceLock::new(),
            files: Arc::new(files::FileCache::for_process()),
            repairs: Arc::new(repairs::Repairs::default()),
            set_aside: Mutex::new(restore::SetAside::default()),
            _dir_lock: dir_lock,
        });
        // `nsqrs-data/` appears only once a takeover is complete (it is built aside and renamed into
        // place), so a takeover that failed or was interrupted is simply done again.
        if fresh && takeover::has_go_data(&broker.data_dir) {
            takeover::take_over(&broker)?;
        }
        fs::create_dir_all(&broker.topics_dir)
            .map_err(|e| format!("failed to create {} - {e}", broker.topics_dir.display()))?;
        broker.load()?;
        broker.persist_metadata();
        Ok(broker)
    }

    fn open_topic(&self, name: &str) -> std::io::Result<Arc<Topic>> {
        self.open_topic_in(&self.topics_dir, name)
    }

    /// Opens topic `name` with its files under `topics_dir` (the takeover builds its topics
    /// aside before they become the broker's).
    fn open_topic_in(&self, topics_dir: &Path, name: &str) -> std::io::Result<Arc<Topic>> {
        if is_ephemeral(name) {
            let log = MemLog::new(self.opts.mem_queue_size.max(1) as usize);
            return Ok(Arc::new(Topic::new(
                name,
                LogStore::Memory(Mutex::new(log)),
                self.opts.node_id,
                self.opts.mem_queue_size.max(0) as u64,
                self.events.clone(),
                self.e2e_config(),
                None,
            )));
        }
        let dir = topic_dir(topics_dir, name);
        let log = DiskLog::open(
            &dir,
            self.files.clone(),
            self.repairs.clone(),
            self.opts.max_bytes_per_file.max(1) as u64,
            self.opts.max_msg_size.max(1) as usize,
        )?;
        Ok(Arc::new(Topic::new(
            name,
            LogStore::Disk(Mutex::new(log)),
            self.opts.node_id,
            self.opts.mem_queue_size.max(0) as u64,
            self.events.clone(),
            self.e2e_config(),
            Some(dir),
        )))
    }

    fn e2e_config(&self) -> stats::E2eConfig {
        stats::E2eConfig {
            percentiles: self.opts.e2e_processing_latency_percentiles.clone(),
            window: self.opts.e2e_processing_latency_window_time,
        }
    }

    /// Whether checkpoints should be fsynced every time (`--sync-every=1`).
    fn fsync_state(&self) -> bool {
        self.opts.sync_every <= 1
    }

    pub fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registration changes, for the lookupd peers. Subscribe before taking
    /// `registration_snapshot` so nothing falls between the two.
    pub fn subscribe_registrations(&self) -> tokio::sync::broadcast::Receiver<Registration> {
        self.registrations.subscribe()
    }

    /// Everything to REGISTER on (re)connecting to a lookupd: each channel, or the topic alone
    /// when it has none.
    pub fn registration_snapshot(&self) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        for t in self.topics() {
            let channels = t.channels();
            if channels.is_empty() {
                out.push((t.name().to_string(), None));
            }
            for c in channels {
                out.push((t.name().to_string(), Some(c.name.clone())));
            }
        }
        out
    }

    fn announce(&self, event: Registration) {
        // No receiver simply means no lookupd is configured.
        let _ = self.registrations.send(event);
    }

    /// Creates channels that lookupd knows for a new topic, reading from the topic's start so
    /// they get every message published since it was created (nsqd does this before the
    /// topic's first message reaches any channel).
    pub fn precreate_channels(&self, topic_name: &str, channels: &[String]) {
        let Some(topic) = self.topic(topic_name) else {
            return;
        };
        let mut created = false;
        for name in channels {
            if is_ephemeral(name) || !crate::protocol::names::is_valid_channel_name(name) {
                continue;
            }
            match topic.create_channel_at(name, topic.start_head(), self.fsync_state()) {
                Ok((_, true)) => {
                    created = true;
                    self.announce(Registration::Register {
                        topic: topic_name.to_string(),
                        channel: Some(name.clone()),
                    });
                }
                Ok(_) => {}
                Err(e) => eprintln!("[nsqd] ERROR: failed to pre-create channel {topic_name}:{name} - {e}"),
            }
        }
        if created {
            self.persist_metadata();
        }
    }

    pub fn register_client(&self, client: Arc<client::ClientHandle>) {
        self.clients.lock().insert(client.id, client);
    }

    pub fn unregister_client(&self, id: u64) {
        self.clients.lock().remove(&id);
    }

    /// Every connected client (producers are those that have published).
    pub fn clients(&self) -> Vec<Arc<client::ClientHandle>> {
        self.clients.lock().values().cloned().collect()
    }

    pub fn is_exiting(&self) -> bool {
        self.exiting.load(Ordering::Acquire)
    }

    /// Why `/ping` says NOK: a failed write, or descriptors running out.
    pub fn health(&self) -> Option<String> {
        self.health.lock().clone().or_else(|| self.files.exhaustion())
    }

    fn set_health(&self, err: Option<String>) {
        *self.health.lock() = err;
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    pub fn get_or_create_topic(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        if self.is_exiting() {
            return Err(TopicError::Exiting);
        }
        if let Some(topic) = self.retry_set_aside_topic(name)? {
            return Ok(topic);
        }
        let created = {
            let mut topics = self.topics.write();
            if let Some(t) = topics.get(name) {
                return Ok(t.clone());
            }
            let topic = self.open_topic(name).map_err(|e| {
                if files::is_out_of_descriptors(&e) {
                    self.files.note_error(&e);
                } else {
                    self.set_health(Some(e.to_string()));
                }
                eprintln!("[nsqd] ERROR: failed to create topic {name} - {e}");
                TopicError::Unavailable(format!("topic {name} cannot be created - {e}"))
            })?;
            topics.insert(name.to_string(), topic.clone());
            topic
        };
        if !created.is_ephemeral() {
            self.persist_metadata();
        }
        self.announce(Registration::Register {
            topic: name.to_string(),
            channel: None,
        });
        self.announce(Registration::TopicCreated {
            topic: name.to_string(),
        });
        Ok(created)
    }

    /// Publishes to a topic, then applies the fsync policy. Returns the message IDs.
    /// `origin` is the producer (address, user agent) for the `published` event.
    pub async fn publish(
        &self,
        topic: &Arc<Topic>,
        bodies: &[&[u8]],
        deliver_at_ns: i64,
        origin: (&str, &str),
    ) -> Result<Vec<crate::protocol::MessageId>, PublishError> {
        if self.is_exiting() {
            return Err(PublishError::Exiting);
        }
        let ids = topic.publish(bodies, deliver_at_ns).inspect_err(|e| {
            if let PublishError::Io(io) = e {
                if files::is_out_of_descriptors(io) {
                    self.files.note_error(io);
                } else {
                    self.set_health(Some(io.to_string()));
                }
            }
        })?;
        if let LogStore::Disk(log) = &topic.core.log {
            let due = log.lock().appends_since_sync() >= self.opts.sync_every.max(1) as u64;
            if due {
                let topic = topic.clone();
                let wait = self.opts.sync_every <= 1;
                let pos = topic.core.head().pos;
                let task = tokio::task::spawn_blocking(move || topic.sync_to(pos));
                if wait {
                    let synced = task
                        .await
                        .map_err(|e| PublishError::Io(std::io::Error::other(e.to_string())))?;
                    synced.map_err(PublishError::Io)?;
                }
            }
        }
        if let Some(replication) = self.replication.get() {
            replication
                .await_replicas(topic)
                .await
                .map_err(PublishError::Replication)?;
        }
        if self.health.lock().is_some() {
            self.set_health(None);
        }
        if topic.core.reports(Kind::Published) {
            let sizes: Vec<u64> = bodies.iter().map(|b| b.len() as u64).collect();
            let detail = Detail::Published {
                ua: origin.1,
                sizes: &sizes,
                deliver_at: deliver_at_ns,
            };
            let place = Place {
                topic: topic.name(),
                channel: None,
                client: Some(origin.0),
            };
            self.events.record_line(Kind::Published, &place, &ids, &detail);
        }
        Ok(ids)
    }

    /// Gets or creates a channel, persisting metadata when a durable one is created.
    pub fn get_or_create_channel(&self, topic: &Arc<Topic>, name: &str) -> Result<Arc<Channel>, String> {
        if let Some(ch) = self.retry_set_aside_channel(topic, name)? {
            return Ok(ch);
        }
        let had_channels = !topic.channels().is_empty();
        let (ch, created) = topic
            .get_or_create_channel(name, self.fsync_state())
            .map_err(|e| {
                self.files.note_error(&e);
                e.to_string()
            })?;
        if created && !had_channels {
            if let Some(dir) = &topic.dir {
                let _ = fs::remove_file(orphan_file(dir));
            }
        }
        if created && !ch.ephemeral && !topic.is_ephemeral() {
            self.persist_metadata();
        }
        if created {
            self.announce(Registration::Register {
                topic: topic.name().to_string(),
                channel: Some(name.to_string()),
            });
        }
        Ok(ch)
    }

    pub fn delete_topic(&self, name: &str) -> bool {
        let Some(topic) = self.topics.write().remove(name) else {
            return self.delete_set_aside_topic(name);
        };
        topic.mark_deleted();
        for ch in topic.channels() {
            topic.remove_channel(&ch.name);
        }
        if let Some(dir) = &topic.dir {
            let _ = fs::remove_dir_all(dir);
        }
        self.persist_metadata();
        for ch in topic.channels() {
            self.announce(Registration::Unregister {
                topic: name.to_string(),
                channel: Some(ch.name.clone()),
            });
        }
        self.announce(Registration::Unregister {
            topic: name.to_string(),
            channel: None,
        });
        true
    }

    pub fn delete_channel(&self, topic: &Arc<Topic>, name: &str) -> bool {
        if topic.remove_channel(name).is_none() {
            return self.delete_set_aside_channel(topic, name);
        }
        self.after_channel_removed(topic, name);
        true
    }

    fn after_channel_removed(&self, topic: &Arc<Topic>, channel: &str) {
        self.announce(Registration::Unregister {
            topic: topic.name().to_string(),
            channel: Some(channel.to_string()),
        });
        if topic.channels().is_empty() {
            if topic.is_ephemeral() {
                self.topics.write().remove(topic.name());
                topic.mark_deleted();
                self.announce(Registration::Unregister {
                    topic: topic.name().to_string(),
                    channel: None,
                });
                return;
            }
            if let (Some(dir), Some(start)) = (&topic.dir, topic.orphan_start()) {
                let _ = fs::write(orphan_file(dir), format!("{} {}", start.pos, start.seq));
            }
        }
        self.persist_metadata();
    }

    /// nsqrs's own folder in the data directory (`nsqrs-data`): topic logs, and what other
    /// parts of nsqrs keep beside them (replication's identity and copies).
    pub fn store_dir(&self) -> &Path {
        self.topics_dir.parent().unwrap_or(&self.data_dir)
    }

    /// Moves where a channel-less topic's backlog starts (kept for its first channel), on
    /// disk too: a broker that was adopted skips what its adopter took.
    pub fn set_orphan_start(&self, topic: &Topic, start: log::LogHead) {
        topic.set_orphan_start(Some(start));
        if let Some(dir) = &topic.dir {
            let _ = fs::write(orphan_file(dir), format!("{} {}", start.pos, start.seq));
        }
    }

    /// A client left a channel: ephemeral channels (and then topics) go with their last client.
    pub fn client_left(&self, topic: &Arc<Topic>, channel: &Arc<Channel>, client_id: u64) {
        let left = channel.remove_client(client_id);
        if left == 0
            && channel.ephemeral
            && !channel.is_deleted()
            && topic.remove_channel(&channel.name).is_some()
        {
            self.after_channel_removed(topic, &channel.name);
        }
    }

    pub fn persist_metadata(&self) {
        let _guard = self.metadata_lock.lock();
        let mut meta = metadata::Metadata {
            version: NSQ_VERSION.into(),
            topics: self
                .topics()
                .iter()
                .filter(|t| !t.is_ephemeral())
                .map(|t| metadata::TopicMeta {
                    name: t.name().to_string(),
                    paused: t.is_paused(),
                    channels: t
                        .channels()
                        .iter()
                        .filter(|c| !c.ephemeral)
                        .map(|c| metadata::ChannelMeta {
                            name: c.name.clone(),
                            paused: c.is_paused(),
                        })
                        .collect(),
                })
                .collect(),
        };
        // What could not be opened stays listed, so a later start tries it again.
        self.set_aside.lock().add_to(&mut meta);
        if let Err(e) = self
            .files
            .with_descriptor(|| metadata::save(&self.data_dir, &meta))
        {
            eprintln!("[nsqd] ERROR: failed to persist metadata - {e}");
            self.set_health(Some(format!("failed to persist metadata - {e}")));
        }
    }

    /// Starts the timer task (async) and the maintenance thread (checkpoints, fsync, cleanup).
    pub fn start_background(self: &Arc<Self>) {
        let broker = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TIMER_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while !broker.is_exiting() {
                tick.tick().await;
                broker.process_timers();
            }
        });
        if self.events.is_on() {
            let broker = self.clone();
            std::thread::Builder::new()
                .name("nsqrs-events".into())
                .spawn(move || broker.events_loop())
                .expect("spawn events thread");
        }
        let broker = self.clone();
        std::thread::Builder::new()
            .name("nsqrs-maintenance".into())
            .spawn(move || broker.maintenance_loop())
            .expect("spawn maintenance thread");
    }

    fn process_timers(&self) {
        let now = crate::common::time::now_ns();
        for topic in self.topics() {
            for ch in topic.channels() {
                if ch.next_timer().is_some_and(|t| t <= now) {
                    let timed_out = ch.process_timers(now);
                    if !timed_out.is_empty() {
                        let clients = ch.clients();
                        for cid in timed_out {
                            if let Some(c) = clients.iter().find(|c| c.id == cid) {
                                c.release_one();
                            }
                        }
                    }
                }
            }
        }
    }

    /// Publishes recorded lifecycle events on `nsqrs.events` every few milliseconds.
    fn events_loop(self: Arc<Self>) {
        let max_body = self.opts.max_msg_size.max(1024) as usize;
        loop {
            std::thread::sleep(EVENTS_INTERVAL);
            let bodies = self.events.drain(max_body);
            // Events are kept only while someone reads them (a channel exists on the events
            // topic): otherwise they would pile up on disk for nobody.
            let reader = self.topic(EVENTS_TOPIC).filter(|t| !t.channels().is_empty());
            if let (false, Some(topic)) = (bodies.is_empty(), reader) {
                let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_bytes()).collect();
                if let Err(e) = topic.publish(&refs, 0) {
                    eprintln!("[nsqd] ERROR: publishing lifecycle events failed - {e}");
                }
            }
            if self.is_exiting() {
                return;
            }
        }
    }

    fn maintenance_loop(self: Arc<Self>) {
        let sync_timeout = self.opts.sync_timeout.max(Duration::from_millis(10));
        let mut last_sync = Instant::now();
        let mut last_release = Instant::now();
        let mut last_sweep = Instant::now();
        while !self.is_exiting() {
            std::thread::sleep(CHECKPOINT_INTERVAL);
            let sync_due = last_sync.elapsed() >= sync_timeout;
            self.checkpoint(sync_due);
            if sync_due {
                last_sync = Instant::now();
            }
            if last_release.elapsed() >= Duration::from_secs(1) {
                for topic in self.topics() {
                    topic.release_unneeded();
                }
                self.files.check_descriptors();
                last_release = Instant::now();
            }
            if last_sweep.elapsed() >= FILE_SWEEP_INTERVAL {
                self.files.sweep_idle();
                last_sweep = Instant::now();
            }
        }
    }

    /// Persists every channel's state; with `fsync`, also flushes logs to stable storage.
    pub fn checkpoint(&self, fsync: bool) {
        for topic in self.topics() {
            for ch in topic.channels() {
                ch.persist(fsync || self.fsync_state());
            }
            if fsync {
                if let Err(e) = topic.sync_all() {
                    eprintln!("[nsqd] ERROR: fsync of topic {} failed - {e}", topic.name());
                    if files::is_out_of_descriptors(&e) {
                        self.files.note_error(&e);
                    } else {
                        self.set_health(Some(e.to_string()));
                    }
                }
            }
        }
    }

    /// Graceful shutdown: stop accepting work, close client connections (their in-flight
    /// messages go back to their channels), persist everything, fsync.
    pub fn shutdown(&self) {
        self.exiting.store(true, Ordering::Release);
        for c in self.clients() {
            c.kick();
        }
        self.persist_metadata();
        self.checkpoint(true);
    }

    pub fn start_time_unix(&self) -> i64 {
        self.start_time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}
