//! A channel's durable state: a snapshot file rewritten atomically, plus an append-only journal
//! of the changes that must survive a crash before the next snapshot (a REQ with a delay, a
//! cancelled deferred message).
//!
//! Snapshot `<name>.snap`: `NSQRSCH1`, generation, base sequence, cursor ranges, then every
//! outstanding message as (position, attempts, due time); CRC over it all. Journal
//! `<name>.journal`: `NSQRSJ01` + generation, then fixed-size CRC'd records. A journal is only
//! applied to the snapshot of the same generation, so a crash between writing a new snapshot
//! and resetting the journal cannot apply stale records.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const SNAP_MAGIC: &[u8; 8] = b"NSQRSCH1";
const JOURNAL_MAGIC: &[u8; 8] = b"NSQRSJ01";
const JOURNAL_RECORD: usize = 1 + 8 + 2 + 8 + 4;

/// A stretch of the topic log the channel still has to read: `[pos, end_pos)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorRange {
    pub pos: u64,
    pub seq: u64,
    /// `u64::MAX` for the open range that follows the topic's head.
    pub end_pos: u64,
    pub end_seq: u64,
}

impl CursorRange {
    pub fn open(pos: u64, seq: u64) -> CursorRange {
        CursorRange {
            pos,
            seq,
            end_pos: u64::MAX,
            end_seq: u64::MAX,
        }
    }

    pub fn is_open(&self) -> bool {
        self.end_pos == u64::MAX
    }
}

/// One message the channel has read past its cursor but not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutstandingEntry {
    pub pos: u64,
    /// Deliveries already made.
    pub attempts: u16,
    /// Not to be delivered before this time (ns); 0 = ready now.
    pub due_ns: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelSnapshot {
    pub generation: u64,
    /// Topic sequence number when the channel was created (for message_count).
    pub base_seq: u64,
    pub ranges: Vec<CursorRange>,
    pub entries: Vec<OutstandingEntry>,
}

/// A journalled change. A `Set` may name a position the snapshot's cursor has not passed yet
/// (the message was read, delivered and requeued with a delay after that snapshot): restoring
/// takes such a message out of the stretches still to read, so the journal's copy is the only
/// one and the message keeps its due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalRecord {
    Set(OutstandingEntry),
    Remove { pos: u64 },
}

pub struct ChannelStore {
    snap_path: PathBuf,
    journal_path: PathBuf,
    journal: File,
    generation: u64,
}

impl ChannelStore {
    fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        (
            dir.join(format!("{name}.snap")),
            dir.join(format!("{name}.journal")),
        )
    }

    /// Loads the channel's state if it has any: the snapshot with its journal applied.
    pub fn load(dir: &Path, name: &str) -> io::Result<Option<(ChannelSnapshot, Vec<JournalRecord>)>> {
        let (snap_path, journal_path) = Self::paths(dir, name);
        let data = match fs::read(&snap_path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let snap = decode_snapshot(&data).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("corrupt channel snapshot {}", snap_path.display()),
            )
        })?;
        let records = match fs::read(&journal_path) {
            Ok(j) => decode_journal(&j, snap.generation),
            Err(e) if e.kind() == io::ErrorKind::NotFound => vec![],
            Err(e) => return Err(e),
        };
        Ok(Some((snap, records)))
    }

    /// Opens the store for writing, starting from `snapshot` (written out at once).
    pub fn create(
        dir: &Path,
        name: &str,
        snapshot: &mut ChannelSnapshot,
        fsync: bool,
    ) -> io::Result<ChannelStore> {
        fs::create_dir_all(dir)?;
        let (snap_path, journal_path) = Self::paths(dir, name);
        let journal = OpenOptions::new().create(true).append(true).open(&journal_path)?;
        let mut store = ChannelStore {
            snap_path,
            journal_path,
            journal,
            generation: snapshot.generation,
        };
        store.write_snapshot(snapshot, fsync)?;
        Ok(store)
    }

    /// Replaces the snapshot and starts an empty journal of the next generation.
    pub fn write_snapshot(&mut self, snapshot: &mut ChannelSnapshot, fsync: bool) -> io::Result<()> {
        self.generation += 1;
        snapshot.generation = self.generation;
        let tmp = self.snap_path.with_extension("snap.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&encode_snapshot(snapshot))?;
            if fsync {
                f.sync_all()?;
            }
        }
        fs::rename(&tmp, &self.snap_path)?;
        // The new snapshot already holds every journalled change; start the next journal.
        let mut journal = File::create(&self.journal_path)?;
        journal.write_all(JOURNAL_MAGIC)?;
        journal.write_all(&self.generation.to_be_bytes())?;
        if fsync {
            journal.sync_all()?;
        }
        self.journal = OpenOptions::new().append(true).open(&self.journal_path)?;
        Ok(())
    }

    pub fn append(&mut self, record: JournalRecord) -> io::Result<()> {
        let mut buf = Vec::with_capacity(JOURNAL_RECORD);
        match record {
            JournalRecord::Set(e) => {
                buf.push(1);
                buf.extend_from_slice(&e.pos.to_be_bytes());
                buf.extend_from_slice(&e.attempts.to_be_bytes());
                buf.extend_from_slice(&e.due_ns.to_be_bytes());
            }
            JournalRecord::Remove { pos } => {
                buf.push(2);
                buf.extend_from_slice(&pos.to_be_bytes());
                buf.extend_from_slice(&[0u8; 10]);
            }
        }
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_be_bytes());
        self.journal.write_all(&buf)
    }

    pub fn sync(&self) -> io::Result<()> {
        self.journal.sync_data()
    }

    /// Removes the channel's files (channel deletion).
    pub fn destroy(self) {
        let _ = fs::remove_file(&self.snap_path);
        let _ = fs::remove_file(&self.journal_path);
    }
}

fn encode_snapshot(s: &ChannelSnapshot) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + s.ranges.len() * 32 + s.entries.len() * 18);
    out.extend_from_slice(SNAP_MAGIC);
    out.extend_from_slice(&s.generation.to_be_bytes());
    out.extend_from_slice(&s.base_seq.to_be_bytes());
    out.extend_from_slice(&(s.ranges.len() as u64).to_be_bytes());
    for r in &s.ranges {
        for v in [r.pos, r.seq, r.end_pos, r.end_seq] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    out.extend_from_slice(&(s.entries.len() as u64).to_be_bytes());
    for e in &s.entries {
        out.extend_from_slice(&e.pos.to_be_bytes());
        out.extend_from_slice(&e.attempts.to_be_bytes());
        out.extend_from_slice(&e.due_ns.to_be_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u64(&mut self) -> Option<u64> {
        let v = u64::from_be_bytes(self.data.get(self.at..self.at + 8)?.try_into().ok()?);
        self.at += 8;
        Some(v)
    }

    fn u16(&mut self) -> Option<u16> {
        let v = u16::from_be_bytes(self.data.get(self.at..self.at + 2)?.try_into().ok()?);
        self.at += 2;
        Some(v)
    }
}

fn decode_snapshot(data: &[u8]) -> Option<ChannelSnapshot> {
    if data.len() < 12 || &data[..8] != SNAP_MAGIC {
        return None;
    }
    let (body, crc) = data.split_at(data.len() - 4);
    if crc32fast::hash(body) != u32::from_be_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut r = Reader { data: body, at: 8 };
    let generation = r.u64()?;
    let base_seq = r.u64()?;
    let nranges = r.u64()? as usize;
    let mut ranges = Vec::with_capacity(nranges.min(1024));
    for _ in 0..nranges {
        ranges.push(CursorRange {
            pos: r.u64()?,
            seq: r.u64()?,
            end_pos: r.u64()?,
            end_seq: r.u64()?,
        });
    }
    let nentries = r.u64()? as usize;
    let mut entries = Vec::with_capacity(nentries.min(1 << 20));
    for _ in 0..nentries {
        entries.push(OutstandingEntry {
            pos: r.u64()?,
            attempts: r.u16()?,
            due_ns: r.u64()? as i64,
        });
    }
    Some(ChannelSnapshot {
        generation,
        base_seq,
        ranges,
        entries,
    })
}

/// Records of `generation`, stopping at the first torn or corrupt one.
fn decode_journal(data: &[u8], generation: u64) -> Vec<JournalRecord> {
    if data.len() < 16 || &data[..8] != JOURNAL_MAGIC || data[8..16] != generation.to_be_bytes() {
        return vec![];
    }
    data[16..]
        .chunks_exact(JOURNAL_RECORD)
        .map_while(|rec| {
            let (body, crc) = rec.split_at(JOURNAL_RECORD - 4);
            if crc32fast::hash(body) != u32::from_be_bytes(crc.try_into().ok()?) {
                return None;
            }
            let mut r = Reader { data: body, at: 1 };
            let pos = r.u64()?;
            let attempts = r.u16()?;
            let due_ns = r.u64()? as i64;
            match body[0] {
                1 => Some(JournalRecord::Set(OutstandingEntry {
                    pos,
                    attempts,
                    due_ns,
                })),
                2 => Some(JournalRecord::Remove { pos }),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_and_journal_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut snap = ChannelSnapshot {
            generation: 0,
            base_seq: 5,
            ranges: vec![CursorRange::open(100, 7)],
            entries: vec![OutstandingEntry {
                pos: 10,
                attempts: 2,
                due_ns: 0,
            }],
        };
        let mut store = ChannelStore::create(dir.path(), "c", &mut snap, false).unwrap();
        let rec = JournalRecord::Set(OutstandingEntry {
            pos: 50,
            attempts: 1,
            due_ns: 123,
        });
        store.append(rec).unwrap();
        store.append(JournalRecord::Remove { pos: 10 }).unwrap();
        let (loaded, records) = ChannelStore::load(dir.path(), "c").unwrap().unwrap();
        assert_eq!(loaded, snap);
        assert_eq!(records, vec![rec, JournalRecord::Remove { pos: 10 }]);
        // After a new snapshot the old journal records are gone.
        store.write_snapshot(&mut snap, false).unwrap();
        let (_, records) = ChannelStore::load(dir.path(), "c").unwrap().unwrap();
        assert!(records.is_empty());
    }
}
