//! Taking over a data directory written by Go nsqd: `nsqd.dat` plus go-diskqueue files
//! (nsq-reference §1.6–1.7). On the first start in such a directory every queued message is
//! copied into nsqrs's own logs, so nothing queued under Go nsqd is lost. The diskqueue files
//! are left in place untouched; `nsqd.dat` is rewritten in the same format.
//!
//! The takeover is atomic: the new store is built in `nsqrs.takeover/`, synced, and renamed to
//! `nsqrs-data/` as the last step. Until that rename nothing tells a later start that the takeover
//! happened, so one that failed (bad Go file, full disk) or was killed is started over from
//! scratch; after it the import never runs again.
//!
//! A channel's own diskqueue holds messages only that channel still owes; they are appended to
//! the topic log first and given to that channel alone, as a range read before its cursor.
//! Go nsqd writes deferred and in-flight messages to the channel's diskqueue when it stops,
//! without their due time, so they are delivered at once, as Go nsqd itself would after a
//! restart; attempts carry over.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use super::journal::CursorRange;
use super::log::NewRecord;
use super::topic::LogStore;
use super::{metadata, Broker, NSQ_VERSION, STORE_DIR, TOPICS_DIR};
use crate::protocol::frame::Message;
use crate::protocol::names::{is_ephemeral, is_valid_channel_name, is_valid_topic_name};
use crate::protocol::MessageId;

const META_SUFFIX: &str = ".diskqueue.meta.dat";
/// Where the new store is built before it is renamed to `nsqrs-data/`.
const STAGING_DIR: &str = "nsqrs.takeover";

/// True when the directory holds Go nsqd's metadata or queues.
pub fn has_go_data(dir: &Path) -> bool {
    dir.join(metadata::FILE_NAME).exists() || queue_names(dir).next().is_some()
}

/// Names of the diskqueues in `dir` (`topic` or `topic:channel`).
fn queue_names(dir: &Path) -> impl Iterator<Item = String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(META_SUFFIX).map(str::to_string))
}

/// A message read from a go-diskqueue.
struct GoMessage {
    id: Option<MessageId>,
    timestamp_ns: i64,
    attempts: u16,
    body: Vec<u8>,
}

/// Reads every unread message of diskqueue `name`, following its meta file's read position.
fn read_diskqueue(dir: &Path, name: &str, max_msg_size: usize) -> Result<Vec<GoMessage>, String> {
    let meta_path = dir.join(format!("{name}{META_SUFFIX}"));
    let text = match fs::read_to_string(&meta_path) {
        Ok(t) => t,
        Err(_) => return Ok(vec![]),
    };
    let nums: Vec<i64> = text
        .split(['\n', ','])
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<i64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad diskqueue metadata {} - {e}", meta_path.display()))?;
    let [_depth, read_file, read_pos, write_file, write_pos] = nums[..] else {
        return Err(format!("bad diskqueue metadata {}", meta_path.display()));
    };
    let mut out = Vec::new();
    for file_num in read_file..=write_file {
        let path = dir.join(format!("{name}.diskqueue.{file_num:06}.dat"));
        let Ok(data) = fs::read(&path) else { continue };
        let mut off = if file_num == read_file {
            read_pos as usize
        } else {
            0
        };
        let end = if file_num == write_file {
            (write_pos as usize).min(data.len())
        } else {
            data.len()
        };
        while off + 4 <= end {
            let len = u32::from_be_bytes(data[off..off + 4].try_into().unwrap()) as usize;
            // go-diskqueue's own bounds: a record outside them means the rest is corrupt.
            if !(26..=max_msg_size + 26).contains(&len) || off + 4 + len > end {
                eprintln!(
                    "[nsqd] WARNING: takeover: corrupt record in {} at {off}; rest of file skipped",
                    path.display()
                );
                break;
            }
            if let Ok(m) = Message::decode(bytes::Bytes::copy_from_slice(&data[off + 4..off + 4 + len])) {
                out.push(GoMessage {
                    id: m.message_id(),
                    timestamp_ns: m.timestamp_ns,
                    attempts: m.attempts,
                    body: m.body.to_vec(),
                });
            }
            off += 4 + len;
        }
    }
    Ok(out)
}

/// Takes over the Go data in the broker's data directory: builds nsqrs's store aside, writes
/// the metadata, and renames the store into place.
pub fn take_over(broker: &Arc<Broker>) -> Result<(), String> {
    let dir = &broker.data_dir;
    let staging = dir.join(STAGING_DIR);
    if staging.exists() {
        eprintln!(
            "[nsqd] WARNING: takeover: {} is left from a takeover that did not finish; starting it again",
            staging.display()
        );
        fs::remove_dir_all(&staging).map_err(|e| format!("failed to remove {} - {e}", staging.display()))?;
    }
    let (meta, imported) = import(broker, &staging.join(TOPICS_DIR))
        .map_err(|e| format!("failed to take over Go nsqd data in {} - {e}", dir.display()))?;
    let store = dir.join(STORE_DIR);
    let commit = || -> std::io::Result<()> {
        sync_tree(&staging)?;
        metadata::save(dir, &meta)?;
        fs::rename(&staging, &store)?;
        fs::File::open(dir)?.sync_all()
    };
    commit().map_err(|e| format!("failed to take over Go nsqd data in {} - {e}", dir.display()))?;
    eprintln!(
        "[nsqd] INFO: took over Go nsqd data in {}: {imported} queued messages imported",
        dir.display()
    );
    Ok(())
}

/// Fsyncs every folder under `dir` (files were synced as they were written), so the rename
/// that publishes the store never points at entries a power loss could take back.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    fs::File::open(dir)?.sync_all()
}

/// Imports Go nsqd's topics, channels and queued messages into topics under `topics_dir`.
/// Returns the metadata to save and how many messages were imported.
fn import(broker: &Arc<Broker>, topics_dir: &Path) -> Result<(metadata::Metadata, usize), String> {
    let dir = broker.data_dir.clone();
    let max_msg = broker.opts.max_msg_size.max(1) as usize;
    let mut meta = metadata::load(&dir)?.unwrap_or_default();
    // Queues with no metadata entry (nsqd crashed before writing it) still hold messages.
    for name in queue_names(&dir) {
        let (topic, channel) = match name.split_once(':') {
            Some((t, c)) => (t.to_string(), Some(c.to_string())),
            None => (name.clone(), None),
        };
        let tm = match meta.topics.iter_mut().find(|t| t.name == topic) {
            Some(t) => t,
            None => {
                meta.topics.push(metadata::TopicMeta {
                    name: topic.clone(),
                    paused: false,
                    channels: vec![],
                });
                meta.topics.last_mut().unwrap()
            }
        };
        if let Some(c) = channel {
            if !tm.channels.iter().any(|x| x.name == c) {
                tm.channels.push(metadata::ChannelMeta {
                    name: c,
                    paused: false,
                });
            }
        }
    }
    meta.topics
        .retain(|t| is_valid_topic_name(&t.name) && !is_ephemeral(&t.name));
    for tm in &mut meta.topics {
        tm.channels
            .retain(|c| is_valid_channel_name(&c.name) && !is_ephemeral(&c.name));
    }
    meta.version = NSQ_VERSION.to_string();
    let mut imported = 0usize;
    for tm in &meta.topics {
        let topic = broker
            .open_topic_in(topics_dir, &tm.name)
            .map_err(|e| format!("topic {} - {e}", tm.name))?;
        let LogStore::Disk(log) = &topic.core.log else {
            continue;
        };
        let append = |msgs: &[GoMessage]| -> Result<(super::log::LogHead, super::log::LogHead), String> {
            let mut log = log.lock();
            let start = log.head();
            for chunk in msgs.chunks(1000) {
                let records: Vec<NewRecord> = chunk
                    .iter()
                    .map(|m| NewRecord {
                        id: m.id.unwrap_or(MessageId(0)),
                        timestamp_ns: m.timestamp_ns,
                        attempts: m.attempts,
                        deliver_at_ns: 0,
                        body: &m.body,
                    })
                    .collect();
                log.append(&records)
                    .map_err(|e| format!("topic {} - {e}", tm.name))?;
            }
            Ok((start, log.head()))
        };
        let mut channel_ranges = Vec::new();
        for cm in &tm.channels {
            let msgs = read_diskqueue(&dir, &format!("{}:{}", tm.name, cm.name), max_msg)?;
            imported += msgs.len();
            let (start, end) = append(&msgs)?;
            channel_ranges.push((cm, start, end));
        }
        let topic_msgs = read_diskqueue(&dir, &tm.name, max_msg)?;
        imported += topic_msgs.len();
        let (topic_start, head) = append(&topic_msgs)?;
        topic
            .sync_to(head.pos)
            .map_err(|e| format!("topic {} - {e}", tm.name))?;
        topic.refresh_head();
        // A topic without channels keeps its log for the first channel (where the log starts
        // when it is opened again); channels read their own stretch, then the topic's.
        for (cm, start, end) in channel_ranges {
            let (ch, _) = topic
                .create_channel_at(&cm.name, topic_start, true)
                .map_err(|e| format!("channel {}:{} - {e}", tm.name, cm.name))?;
            if end.pos > start.pos {
                ch.prepend_range(CursorRange {
                    pos: start.pos,
                    seq: start.seq,
                    end_pos: end.pos,
                    end_seq: end.seq,
                });
            }
            ch.persist(true);
        }
    }
    Ok((meta, imported))
}
