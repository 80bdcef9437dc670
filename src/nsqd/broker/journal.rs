//! A channel's durable state: a snapshot file rewritten atomically, plus an append-only journal
//! of the changes that must survive a crash before the next snapshot (a REQ with a delay, a
//! cancelled deferred message).
//!
//! Snapshot `<name>.snap`: `NSQRSCH1`, generation, base sequence, cursor ranges, then every
//! outstanding message as (position, attempts, due time); CRC over it all. Journal
//! `<name>.journal`: `NSQRSJ01` + generation, then fixed-size CRC'd records. A journal is only
//! applied to the snapshot of the same generation, so a crash between writing a new snapshot
//! and resetting the journal cannot apply stale records.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::files::{is_out_of_descriptors, FileCache, FileKey};
use super::repairs::{RepairAction, Repairs};

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
    /// The journal is opened through the broker's file cache, so an idle channel holds no
    /// descriptor.
    files: Arc<FileCache>,
    journal_key: FileKey,
    generation: u64,
}

/// What a channel's files hold, as found at start-up.
pub enum Stored {
    /// No snapshot.
    Missing,
    /// The snapshot, and the journal records of its generation.
    Intact(ChannelSnapshot, Vec<JournalRecord>),
    /// The snapshot cannot be trusted; it (and its journal) were set aside.
    Damaged {
        snapshot: PathBuf,
        /// What is wrong with it and where it went.
        reason: String,
    },
}

impl ChannelStore {
    fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        (
            dir.join(format!("{name}.snap")),
            dir.join(format!("{name}.journal")),
        )
    }

    /// Loads the channel's state: the snapshot, with the journal records to apply to it. A
    /// snapshot that is empty, truncated or fails its checksum is renamed `.bad` (its journal
    /// too) and reported as `Damaged`; damaged journal records are skipped and reported to
    /// `repairs`.
    pub fn load(dir: &Path, name: &str, files: &FileCache, repairs: &Repairs) -> io::Result<Stored> {
        let (snap_path, journal_path) = Self::paths(dir, name);
        let data = match files.with_descriptor(|| fs::read(&snap_path)) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Stored::Missing),
            Err(e) if is_out_of_descriptors(&e) => return Err(e),
            Err(e) => return Ok(set_aside(&snap_path, &journal_path, &format!("unreadable ({e})"))),
        };
        let snap = match decode_snapshot(&data) {
            Ok(snap) => snap,
            Err(why) => return Ok(set_aside(&snap_path, &journal_path, why)),
        };
        let journal = match files.with_descriptor(|| fs::read(&journal_path)) {
            Ok(j) => j,
            Err(e) if e.kind() == io::ErrorKind::NotFound => vec![],
            Err(e) if is_out_of_descriptors(&e) => return Err(e),
            Err(e) => {
                repairs.report(
                    RepairAction::FileSetAside,
                    &journal_path,
                    None,
                    format!(
                        "channel journal unreadable ({e}): requeue delays and cancellations since \
                         the last checkpoint are not applied; the snapshot is used"
                    ),
                );
                vec![]
            }
        };
        let decoded = decode_journal(&journal, snap.generation);
        report_journal_damage(&journal_path, &decoded, repairs);
        Ok(Stored::Intact(snap, decoded.records))
    }

    /// Opens the store for writing, starting from `snapshot` (written out at once).
    pub fn create(
        dir: &Path,
        name: &str,
        snapshot: &mut ChannelSnapshot,
        fsync: bool,
        files: Arc<FileCache>,
    ) -> io::Result<ChannelStore> {
        files.with_descriptor(|| fs::create_dir_all(dir))?;
        let (snap_path, journal_path) = Self::paths(dir, name);
        let journal_key = FileKey {
            owner: files.new_owner(),
            part: 0,
        };
        let mut store = ChannelStore {
            snap_path,
            journal_path,
            files,
            journal_key,
            generation: snapshot.generation,
        };
        store.write_snapshot(snapshot, fsync)?;
        Ok(store)
    }

    fn journal(&self) -> io::Result<Arc<File>> {
        self.files
            .get(self.journal_key, true, || self.journal_path.clone())
    }

    /// Replaces the snapshot and starts an empty journal of the next generation.
    pub fn write_snapshot(&mut self, snapshot: &mut ChannelSnapshot, fsync: bool) -> io::Result<()> {
        self.generation += 1;
        snapshot.generation = self.generation;
        let tmp = self.snap_path.with_extension("snap.tmp");
        {
            let mut f = self.files.with_descriptor(|| File::create(&tmp))?;
            f.write_all(&encode_snapshot(snapshot))?;
            if fsync {
                f.sync_all()?;
            }
        }
        fs::rename(&tmp, &self.snap_path)?;
        // The new snapshot already holds every journalled change; start the next journal.
        let journal = self.journal()?;
        journal.set_len(0)?;
        let mut header = JOURNAL_MAGIC.to_vec();
        header.extend_from_slice(&self.generation.to_be_bytes());
        (&*journal).write_all(&header)?;
        if fsync {
            journal.sync_all()?;
        }
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
        (&*self.journal()?).write_all(&buf)
    }

    pub fn sync(&self) -> io::Result<()> {
        self.journal()?.sync_data()
    }

    /// Removes the channel's files (channel deletion).
    pub fn destroy(self) {
        self.files.forget(self.journal_key);
        let _ = fs::remove_file(&self.snap_path);
        let _ = fs::remove_file(&self.journal_path);
    }
}

impl Drop for ChannelStore {
    fn drop(&mut self) {
        self.files.forget(self.journal_key);
    }
}

/// Renames a snapshot that cannot be trusted (and its journal, whose records only make sense
/// on top of it) to `.bad`.
fn set_aside(snap_path: &Path, journal_path: &Path, why: &str) -> Stored {
    let bad = snap_path.with_extension("snap.bad");
    let moved = match fs::rename(snap_path, &bad) {
        Ok(()) => format!("set aside as {}", bad.display()),
        Err(e) => format!("could not be set aside ({e})"),
    };
    if journal_path.exists() {
        let _ = fs::rename(journal_path, journal_path.with_extension("journal.bad"));
    }
    Stored::Damaged {
        snapshot: snap_path.to_path_buf(),
        reason: format!("channel snapshot {why}; {moved}"),
    }
}

fn report_journal_damage(path: &Path, decoded: &DecodedJournal, repairs: &Repairs) {
    if decoded.bad_header {
        let bad = path.with_extension("journal.bad");
        let moved = match fs::rename(path, &bad) {
            Ok(()) => format!("set aside as {}", bad.display()),
            Err(e) => format!("could not be set aside ({e})"),
        };
        repairs.report(
            RepairAction::FileSetAside,
            path,
            Some(0),
            format!(
                "channel journal header damaged, {moved}: its records are not applied (requeue \
                 delays and cancellations since the last checkpoint are lost: those messages are \
                 delivered at once); the snapshot is used"
            ),
        );
    }
    for &offset in &decoded.skipped {
        repairs.report(
            RepairAction::RecordsSkipped,
            path,
            Some(offset),
            "damaged channel journal record skipped (one requeue delay or cancellation is lost); \
             the records after it are applied",
        );
    }
    if let Some((offset, bytes)) = decoded.torn_tail {
        repairs.report(
            RepairAction::TornTailCut,
            path,
            Some(offset),
            format!("{bytes} bytes of a journal record whose write a crash cut short ignored"),
        );
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

fn decode_snapshot(data: &[u8]) -> Result<ChannelSnapshot, &'static str> {
    if data.is_empty() {
        return Err("is empty");
    }
    if data.len() < 12 || &data[..8] != SNAP_MAGIC {
        return Err("is not a channel snapshot (bad header)");
    }
    let (body, crc) = data.split_at(data.len() - 4);
    if crc32fast::hash(body) != u32::from_be_bytes(crc.try_into().unwrap()) {
        return Err("is truncated or damaged (checksum mismatch)");
    }
    decode_snapshot_body(body).ok_or("is truncated or damaged (fields run past its end)")
}

fn decode_snapshot_body(body: &[u8]) -> Option<ChannelSnapshot> {
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

/// A journal as read back.
#[derive(Debug, Default)]
struct DecodedJournal {
    records: Vec<JournalRecord>,
    /// The header is not a journal header (its records cannot be matched to a snapshot).
    bad_header: bool,
    /// Offsets of whole records that failed their checksum (skipped: records are fixed-size,
    /// so the ones after them are still found).
    skipped: Vec<u64>,
    /// A partial record at the end (offset, bytes): a write a crash cut short.
    torn_tail: Option<(u64, usize)>,
}

/// The records of `generation`. A journal of another generation is one the snapshot already
/// covers (a crash between writing a snapshot and resetting the journal); a journal shorter
/// than its header was being reset: neither is damage.
fn decode_journal(data: &[u8], generation: u64) -> DecodedJournal {
    let mut out = DecodedJournal::default();
    if data.len() < 16 {
        return out;
    }
    if &data[..8] != JOURNAL_MAGIC {
        out.bad_header = true;
        return out;
    }
    if data[8..16] != generation.to_be_bytes() {
        return out;
    }
    let records = data[16..].chunks_exact(JOURNAL_RECORD);
    let rest = records.remainder().len();
    for (i, rec) in records.enumerate() {
        let offset = (16 + i * JOURNAL_RECORD) as u64;
        match decode_journal_record(rec) {
            Some(r) => out.records.push(r),
            None => out.skipped.push(offset),
        }
    }
    if rest > 0 {
        out.torn_tail = Some(((data.len() - rest) as u64, rest));
    }
    out
}

fn decode_journal_record(rec: &[u8]) -> Option<JournalRecord> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores() -> (Arc<FileCache>, Repairs) {
        (Arc::new(FileCache::new(16)), Repairs::default())
    }

    fn sample() -> ChannelSnapshot {
        ChannelSnapshot {
            generation: 0,
            base_seq: 5,
            ranges: vec![CursorRange::open(100, 7)],
            entries: vec![OutstandingEntry {
                pos: 10,
                attempts: 2,
                due_ns: 0,
            }],
        }
    }

    fn load(dir: &Path, files: &FileCache, repairs: &Repairs) -> (ChannelSnapshot, Vec<JournalRecord>) {
        match ChannelStore::load(dir, "c", files, repairs).unwrap() {
            Stored::Intact(snap, records) => (snap, records),
            _ => panic!("expected an intact snapshot"),
        }
    }

    #[test]
    fn snapshot_and_journal_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (files, repairs) = stores();
        let mut snap = sample();
        let mut store = ChannelStore::create(dir.path(), "c", &mut snap, false, files.clone()).unwrap();
        let rec = JournalRecord::Set(OutstandingEntry {
            pos: 50,
            attempts: 1,
            due_ns: 123,
        });
        store.append(rec).unwrap();
        store.append(JournalRecord::Remove { pos: 10 }).unwrap();
        let (loaded, records) = load(dir.path(), &files, &repairs);
        assert_eq!(loaded, snap);
        assert_eq!(records, vec![rec, JournalRecord::Remove { pos: 10 }]);
        // After a new snapshot the old journal records are gone.
        store.write_snapshot(&mut snap, false).unwrap();
        let (_, records) = load(dir.path(), &files, &repairs);
        assert!(records.is_empty());
        assert_eq!(repairs.count(), 0);
        drop(store);
        assert_eq!(files.open_files(), 0, "a dropped store closes its journal");
    }

    #[test]
    fn a_damaged_or_empty_snapshot_is_set_aside() {
        for damage in ["empty", "truncated", "flipped"] {
            let dir = tempfile::tempdir().unwrap();
            let (files, repairs) = stores();
            let mut snap = sample();
            drop(ChannelStore::create(dir.path(), "c", &mut snap, false, files.clone()).unwrap());
            let path = dir.path().join("c.snap");
            let mut data = fs::read(&path).unwrap();
            match damage {
                "empty" => data.clear(),
                "truncated" => data.truncate(data.len() - 9),
                _ => data[20] ^= 1,
            }
            fs::write(&path, &data).unwrap();
            match ChannelStore::load(dir.path(), "c", &files, &repairs).unwrap() {
                Stored::Damaged { reason, .. } => assert!(reason.contains("set aside"), "{reason}"),
                _ => panic!("{damage} snapshot accepted"),
            }
            assert!(dir.path().join("c.snap.bad").exists());
            assert!(dir.path().join("c.journal.bad").exists());
            assert!(!path.exists());
        }
    }

    #[test]
    fn a_damaged_journal_record_is_skipped_and_the_rest_applied() {
        let dir = tempfile::tempdir().unwrap();
        let (files, repairs) = stores();
        let mut snap = sample();
        let mut store = ChannelStore::create(dir.path(), "c", &mut snap, false, files.clone()).unwrap();
        let recs: Vec<JournalRecord> = (0..3)
            .map(|i| {
                JournalRecord::Set(OutstandingEntry {
                    pos: 100 + i,
                    attempts: 1,
                    due_ns: 5,
                })
            })
            .collect();
        for r in &recs {
            store.append(*r).unwrap();
        }
        drop(store);
        let path = dir.path().join("c.journal");
        let mut data = fs::read(&path).unwrap();
        data[16 + JOURNAL_RECORD + 3] ^= 1;
        data.extend_from_slice(&[1, 2, 3]);
        fs::write(&path, &data).unwrap();
        let (_, records) = load(dir.path(), &files, &repairs);
        assert_eq!(records, vec![recs[0], recs[2]]);
        let actions: Vec<RepairAction> = repairs.recent().iter().map(|r| r.action).collect();
        assert_eq!(
            actions,
            vec![RepairAction::RecordsSkipped, RepairAction::TornTailCut]
        );
    }
}
