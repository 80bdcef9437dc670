//! Taking over a data directory written by Go nsqd: `nsqd.dat` plus go-diskqueue files
//! (nsq-reference §1.6–1.7). On the first start in such a directory every queued message is
//! copied into nsqrs's own logs, so nothing queued under Go nsqd is lost. The Go files are
//! left in place untouched; once `nsqrs/` exists the import never runs again.
//!
//! A channel's own diskqueue holds messages only that channel still owes; they are appended to
//! the topic log first and given to that channel alone, as a range read before its cursor.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use super::journal::CursorRange;
use super::log::NewRecord;
use super::topic::LogStore;
use super::{metadata, Broker};
use crate::protocol::frame::Message;
use crate::protocol::names::{is_ephemeral, is_valid_channel_name, is_valid_topic_name};
use crate::protocol::MessageId;

const META_SUFFIX: &str = ".diskqueue.meta.dat";

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

/// Imports Go nsqd's topics, channels and queued messages into `broker`.
pub fn import(broker: &Arc<Broker>) -> Result<(), String> {
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
    let mut imported = 0usize;
    for tm in &meta.topics {
        if !is_valid_topic_name(&tm.name) || is_ephemeral(&tm.name) {
            continue;
        }
        let topic = broker.get_or_create_topic(&tm.name)?;
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
                log.append(&records).map_err(|e| e.to_string())?;
            }
            Ok((start, log.head()))
        };
        let mut channel_ranges = Vec::new();
        for cm in &tm.channels {
            if !is_valid_channel_name(&cm.name) || is_ephemeral(&cm.name) {
                continue;
            }
            let msgs = read_diskqueue(&dir, &format!("{}:{}", tm.name, cm.name), max_msg)?;
            imported += msgs.len();
            let (start, end) = append(&msgs)?;
            channel_ranges.push((cm, start, end, msgs.len() as u64));
        }
        let topic_msgs = read_diskqueue(&dir, &tm.name, max_msg)?;
        imported += topic_msgs.len();
        let (topic_start, head) = append(&topic_msgs)?;
        topic.sync_to(head.pos).map_err(|e| e.to_string())?;
        topic.refresh_head();
        if channel_ranges.is_empty() {
            topic.set_orphan_start(Some(topic_start));
        }
        for (cm, start, end, count) in channel_ranges {
            let (ch, _) = topic
                .create_channel_at(&cm.name, topic_start, true)
                .map_err(|e| e.to_string())?;
            if end.pos > start.pos {
                ch.prepend_range(
                    CursorRange {
                        pos: start.pos,
                        seq: start.seq,
                        end_pos: end.pos,
                        end_seq: end.seq,
                    },
                    count,
                );
            }
            ch.set_paused(cm.paused);
            ch.persist(true);
        }
        topic.set_paused(tm.paused);
    }
    broker.persist_metadata();
    eprintln!(
        "[nsqd] INFO: took over Go nsqd data in {}: {imported} queued messages imported",
        dir.display()
    );
    Ok(())
}
