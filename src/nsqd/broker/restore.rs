//! Loading the data directory at start-up without letting one damaged file stop the broker.
//!
//! Each topic and channel is restored on its own: a damaged or missing channel snapshot is
//! rebuilt from the topic log (from the oldest message still in it, so it redelivers rather than
//! loses), a cursor past the end of the log is moved back to it, a damaged `orphan_start` makes
//! the topic keep its whole log, an unparseable `nsqd.dat` is rebuilt from the topic
//! directories, and a topic or channel that cannot be opened at all is set aside (not served,
//! kept in `nsqd.dat`, tried again when a client asks for it) while everything else is served.
//! Every repair is reported once (see `repairs.rs`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use super::channel::Channel;
use super::journal::{ChannelSnapshot, ChannelStore, JournalRecord, Stored};
use super::log::LogHead;
use super::metadata::{self, ChannelMeta, Metadata, TopicMeta};
use super::repairs::RepairAction;
use super::topic::Topic;
use super::{files, orphan_file, topic_dir, Broker, TopicError};
use crate::protocol::names::{is_ephemeral, is_valid_channel_name, is_valid_topic_name};

/// Topics and channels that could not be opened at start-up: kept (and listed in `nsqd.dat`)
/// until they open or are deleted.
#[derive(Default)]
pub struct SetAside {
    topics: BTreeMap<String, TopicMeta>,
    /// Channels of served topics, by topic name.
    channels: BTreeMap<String, Vec<ChannelMeta>>,
}

impl SetAside {
    /// Adds what is set aside to the metadata about to be saved.
    pub fn add_to(&self, meta: &mut Metadata) {
        for tm in self.topics.values() {
            if !meta.topics.iter().any(|t| t.name == tm.name) {
                meta.topics.push(tm.clone());
            }
        }
        for (topic, channels) in &self.channels {
            if let Some(tm) = meta.topics.iter_mut().find(|t| &t.name == topic) {
                for cm in channels {
                    if !tm.channels.iter().any(|c| c.name == cm.name) {
                        tm.channels.push(cm.clone());
                    }
                }
            }
        }
    }
}

impl Broker {
    /// Restores every topic and channel `nsqd.dat` lists.
    pub(super) fn load(self: &Arc<Self>) -> Result<(), String> {
        let Some(meta) = self.load_metadata() else {
            return Ok(());
        };
        for tm in &meta.topics {
            if !is_valid_topic_name(&tm.name) || is_ephemeral(&tm.name) {
                continue;
            }
            match self.restore_topic(tm) {
                Ok(topic) => {
                    self.topics.write().insert(tm.name.clone(), topic);
                }
                Err(e) if files::is_out_of_descriptors(&e) => {
                    return Err(format!("failed to open topic {} - {e}", tm.name));
                }
                Err(e) => {
                    self.repairs.report(
                        RepairAction::TopicSetAside,
                        &topic_dir(&self.topics_dir, &tm.name),
                        None,
                        format!(
                            "topic {} cannot be opened ({e}): it is not served and its files are \
                             kept; every other topic is served",
                            tm.name
                        ),
                    );
                    self.set_aside.lock().topics.insert(tm.name.clone(), tm.clone());
                }
            }
        }
        // Deferred messages nobody has read yet are only known from the log: find them while
        // the broker already serves (until then they count as queued, not deferred).
        let topics = self.topics();
        std::thread::Builder::new()
            .name("nsqrs-deferred-index".into())
            .spawn(move || topics.iter().for_each(|t| t.rebuild_unread_deferred()))
            .map_err(|e| format!("failed to start a thread - {e}"))?;
        Ok(())
    }

    /// `nsqd.dat`, or what the topic directories say when it is missing or cannot be parsed.
    fn load_metadata(&self) -> Option<Metadata> {
        let path = self.data_dir.join(metadata::FILE_NAME);
        let why = match metadata::load(&self.data_dir) {
            Ok(Some(meta)) => return Some(meta),
            Ok(None) => "is missing".to_string(),
            Err(e) => e,
        };
        let found = self.metadata_from_directories();
        if found.topics.is_empty() && !path.exists() {
            return None;
        }
        let kept = if path.exists() {
            let bad = path.with_extension("dat.bad");
            match fs::rename(&path, &bad) {
                Ok(()) => format!("; the old file is kept as {}", bad.display()),
                Err(e) => format!("; the old file could not be set aside ({e})"),
            }
        } else {
            String::new()
        };
        let channels: usize = found.topics.iter().map(|t| t.channels.len()).sum();
        self.repairs.report(
            RepairAction::MetadataRebuilt,
            &path,
            None,
            format!(
                "{why}: the {} topics and {channels} channels found in the data directory are \
                 served (paused flags are lost){kept}",
                found.topics.len()
            ),
        );
        Some(found)
    }

    /// Topics (`t_<name>/`) and their channels (`channels/<name>.snap`) as found on disk.
    fn metadata_from_directories(&self) -> Metadata {
        let mut meta = Metadata {
            version: super::NSQ_VERSION.into(),
            topics: Vec::new(),
        };
        let Ok(entries) = fs::read_dir(&self.topics_dir) else {
            return meta;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .into_string()
                    .ok()?
                    .strip_prefix("t_")
                    .map(String::from)
            })
            .filter(|name| is_valid_topic_name(name) && !is_ephemeral(name))
            .collect();
        names.sort();
        for name in names {
            let mut channels: Vec<String> = fs::read_dir(topic_dir(&self.topics_dir, &name).join("channels"))
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    let file = e.ok()?.file_name().into_string().ok()?;
                    let stem = file
                        .strip_suffix(".snap")
                        .or_else(|| file.strip_suffix(".journal"))?;
                    Some(stem.to_string())
                })
                .filter(|c| is_valid_channel_name(c) && !is_ephemeral(c))
                .collect();
            channels.sort();
            channels.dedup();
            meta.topics.push(TopicMeta {
                name,
                paused: false,
                channels: channels
                    .into_iter()
                    .map(|name| ChannelMeta { name, paused: false })
                    .collect(),
            });
        }
        meta
    }

    /// Opens a topic and restores its channels; a channel that cannot be restored is set
    /// aside on its own. Fails only when the topic's log cannot be opened.
    fn restore_topic(&self, tm: &TopicMeta) -> std::io::Result<Arc<Topic>> {
        let topic = self.open_topic(&tm.name)?;
        topic.set_paused(tm.paused);
        topic.load_backlog();
        let Some(dir) = topic.dir.clone() else {
            return Ok(topic);
        };
        self.restore_orphan_start(&topic, &dir);
        for cm in &tm.channels {
            if !is_valid_channel_name(&cm.name) || is_ephemeral(&cm.name) {
                continue;
            }
            match self.restore_channel(&topic, &dir, &cm.name) {
                Ok(ch) => {
                    ch.set_paused(cm.paused);
                    topic.insert_channel(ch);
                }
                Err(e) if files::is_out_of_descriptors(&e) => return Err(e),
                Err(e) => {
                    self.repairs.report(
                        RepairAction::FileSetAside,
                        &dir.join("channels").join(format!("{}.snap", cm.name)),
                        None,
                        format!(
                            "channel {}:{} cannot be restored ({e}): it is not served and its \
                             files are kept; the topic's other channels are served",
                            tm.name, cm.name
                        ),
                    );
                    let mut set_aside = self.set_aside.lock();
                    set_aside
                        .channels
                        .entry(tm.name.clone())
                        .or_default()
                        .push(cm.clone());
                }
            }
        }
        Ok(topic)
    }

    /// Where the first channel of a topic without channels starts reading (`orphan_start`).
    /// A file that cannot be read or points outside the log makes the topic keep its whole
    /// log instead: a first channel may get messages again, none is lost.
    fn restore_orphan_start(&self, topic: &Topic, dir: &Path) {
        let path = orphan_file(dir);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => format!("unreadable ({e})"),
        };
        let (tail, head) = (topic.core.tail(), topic.core.head());
        let mut parts = text.split_whitespace().map(|v| v.parse::<u64>());
        if let (Some(Ok(pos)), Some(Ok(seq)), None) = (parts.next(), parts.next(), parts.next()) {
            if (tail.pos..=head.pos).contains(&pos) && (tail.seq..=head.seq).contains(&seq) {
                topic.set_orphan_start(Some(LogHead { pos, seq }));
                return;
            }
        }
        topic.set_orphan_start(Some(tail));
        let bad = path.with_extension("bad");
        let _ = fs::rename(&path, &bad);
        self.repairs.report(
            RepairAction::FileSetAside,
            &path,
            None,
            format!(
                "damaged ({:?}), set aside as {}: topic {} keeps its whole log (from position {}, \
                 sequence {}) for its first channel, which may get messages again",
                text.chars().take(60).collect::<String>(),
                bad.display(),
                topic.name(),
                tail.pos,
                tail.seq
            ),
        );
    }

    /// Restores one channel from its snapshot and journal, or rebuilds it from the log.
    fn restore_channel(&self, topic: &Arc<Topic>, dir: &Path, name: &str) -> std::io::Result<Arc<Channel>> {
        let channels_dir = dir.join("channels");
        let fsync = self.fsync_state();
        let rebuild = |file: &Path, why: String| {
            let tail = topic.core.tail();
            let ch = Channel::create(topic.core.clone(), name, tail, Some(channels_dir.clone()), fsync)?;
            self.repairs.report(
                RepairAction::ChannelRebuilt,
                file,
                None,
                format!(
                    "{why}; channel {}:{name} rebuilt from the oldest message still in the log \
                     (position {}, sequence {}): what it had finished since is delivered again, \
                     nothing is lost",
                    topic.name(),
                    tail.pos,
                    tail.seq
                ),
            );
            Ok(ch)
        };
        match ChannelStore::load(&channels_dir, name, &self.files, &self.repairs)? {
            Stored::Missing => rebuild(
                &channels_dir.join(format!("{name}.snap")),
                "channel snapshot missing".to_string(),
            ),
            Stored::Damaged { snapshot, reason } => rebuild(&snapshot, reason),
            Stored::Intact(mut snap, mut records) => {
                let head = topic.core.head();
                if let Some(what) = clamp_to_log(&mut snap, &mut records, head) {
                    self.repairs.report(
                        RepairAction::CursorClamped,
                        &channels_dir.join(format!("{name}.snap")),
                        None,
                        format!("channel {}:{name}: {what}", topic.name()),
                    );
                }
                let start = topic.orphan_start().unwrap_or(head);
                Channel::restore(
                    topic.core.clone(),
                    name,
                    channels_dir,
                    (snap, records),
                    start,
                    fsync,
                )
            }
        }
    }

    /// A topic set aside at start-up, opened now that a client asks for it.
    pub(super) fn retry_set_aside_topic(&self, name: &str) -> Result<Option<Arc<Topic>>, TopicError> {
        let Some(tm) = self.set_aside.lock().topics.get(name).cloned() else {
            return Ok(None);
        };
        let mut topics = self.topics.write();
        if let Some(t) = topics.get(name) {
            return Ok(Some(t.clone()));
        }
        let topic = self.restore_topic(&tm).map_err(|e| {
            self.files.note_error(&e);
            TopicError::Unavailable(format!("topic {name} is set aside: it cannot be opened - {e}"))
        })?;
        topics.insert(name.to_string(), topic.clone());
        drop(topics);
        self.set_aside.lock().topics.remove(name);
        eprintln!("[nsqd] INFO: topic {name}, set aside at start-up, is open again");
        Ok(Some(topic))
    }

    /// A channel set aside at start-up, restored now that a client asks for it.
    pub(super) fn retry_set_aside_channel(
        &self,
        topic: &Arc<Topic>,
        name: &str,
    ) -> Result<Option<Arc<Channel>>, String> {
        let mut set_aside = self.set_aside.lock();
        let Some(list) = set_aside.channels.get_mut(topic.name()) else {
            return Ok(None);
        };
        let Some(index) = list.iter().position(|c| c.name == name) else {
            return Ok(None);
        };
        let Some(dir) = topic.dir.clone() else {
            return Ok(None);
        };
        let ch = self.restore_channel(topic, &dir, name).map_err(|e| {
            self.files.note_error(&e);
            format!(
                "channel {}:{name} is set aside: it cannot be restored - {e}",
                topic.name()
            )
        })?;
        ch.set_paused(list[index].paused);
        list.remove(index);
        drop(set_aside);
        topic.insert_channel(ch.clone());
        eprintln!(
            "[nsqd] INFO: channel {}:{name}, set aside at start-up, is open again",
            topic.name()
        );
        Ok(Some(ch))
    }

    /// `/topic/delete` of a topic that was set aside: its files go.
    pub(super) fn delete_set_aside_topic(&self, name: &str) -> bool {
        if self.set_aside.lock().topics.remove(name).is_none() {
            return false;
        }
        let _ = fs::remove_dir_all(topic_dir(&self.topics_dir, name));
        self.persist_metadata();
        true
    }

    /// `/channel/delete` of a channel that was set aside: its files go.
    pub(super) fn delete_set_aside_channel(&self, topic: &Topic, name: &str) -> bool {
        let removed = {
            let mut set_aside = self.set_aside.lock();
            let list = set_aside.channels.entry(topic.name().to_string()).or_default();
            let before = list.len();
            list.retain(|c| c.name != name);
            before != list.len()
        };
        if !removed {
            return false;
        }
        if let Some(dir) = &topic.dir {
            for ext in ["snap", "journal", "snap.bad", "journal.bad"] {
                let _ = fs::remove_file(dir.join("channels").join(format!("{name}.{ext}")));
            }
        }
        self.persist_metadata();
        true
    }
}

/// Moves a channel's saved cursor back to the end of the log when it points past it (the log
/// lost its end, to a power loss, say), and drops saved messages that are no longer in the
/// log. Says what it did, if anything.
fn clamp_to_log(
    snap: &mut ChannelSnapshot,
    records: &mut Vec<JournalRecord>,
    head: LogHead,
) -> Option<String> {
    let mut moved = None;
    for r in &mut snap.ranges {
        if r.pos >= head.pos && (r.pos, r.seq) != (head.pos, head.seq) {
            moved.get_or_insert((r.pos, r.seq));
            r.pos = head.pos;
            r.seq = head.seq;
        }
        if !r.is_open() && r.end_pos > head.pos {
            r.end_pos = head.pos;
            r.end_seq = head.seq;
        }
    }
    let before = snap.entries.len() + records.len();
    snap.entries.retain(|e| e.pos < head.pos);
    records.retain(|r| match r {
        JournalRecord::Set(e) => e.pos < head.pos,
        JournalRecord::Remove { .. } => true,
    });
    let dropped = before - snap.entries.len() - records.len();
    if moved.is_none() && dropped == 0 {
        return None;
    }
    let cursor = match moved {
        Some((pos, seq)) => format!(
            "its cursor (position {pos}, sequence {seq}) was past the end of the log (position {}, \
             sequence {}), which lost its end: moved back to the end",
            head.pos, head.seq
        ),
        None => "its cursor is within the log".to_string(),
    };
    Some(format!(
        "{cursor}; {dropped} saved messages beyond the end dropped"
    ))
}
