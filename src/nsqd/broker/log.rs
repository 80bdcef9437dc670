//! A topic's message log: append-only, segmented files on disk (or a bounded ring in memory for
//! `#ephemeral` topics). One write per published batch, however many channels read it.
//!
//! A position is a byte offset across all segments of a topic (a segment is named by the
//! position of its first record), so channels can keep a plain number as their cursor. Every
//! record carries a CRC (format in `record.rs`). At open, the last segment is scanned whole: a
//! torn tail left by a crash is cut off, damage with intact records after it is skipped.
//! Damage found later while reading is skipped the same way, record by record
//! (`damage.rs`), so one bad byte loses one message, and sequence numbers stay exact.
//!
//! Segment files are not held open: they come from the broker's bounded file cache.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::damage::{self, FirstRecord, SeqWindow};
use super::files::{FileCache, FileKey};
use super::record::{
    check_record, decode_record, encode_record, header_of, max_payload, payload_len, read_full_at, Checked,
    Decoded, RecordHeader, MIN_RECORD, PAYLOAD_HEADER, RECORD_PREFIX,
};
pub use super::record::{check_records, stored_len, NewRecord, RecordSpan, StoredMessage};
use super::repairs::{RepairAction, Repairs};
use crate::protocol::MessageId;

/// Bytes read ahead per disk read when a channel streams the log.
const READ_CHUNK: usize = 256 * 1024;

/// Where the log ends: the next position and the next sequence number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogHead {
    pub pos: u64,
    pub seq: u64,
}

/// Result of reading from a position.
pub struct ReadBatch {
    pub messages: Vec<StoredMessage>,
    /// Where the next read should start (past the messages, and past any damage skipped).
    pub next_pos: u64,
    /// Sequence number of the record at `next_pos`; None when nothing was read or skipped.
    pub next_seq: Option<u64>,
}

#[derive(Debug, Clone)]
struct Segment {
    start: u64,
    /// Bytes of the file that belong to the log.
    len: u64,
    first_seq: u64,
}

/// A damaged stretch of the log that readers jump over, to the next intact record.
#[derive(Debug, Clone, Copy)]
struct Damage {
    end_pos: u64,
    end_seq: u64,
}

/// The on-disk log of one durable topic. Callers hold it behind a mutex.
pub struct DiskLog {
    dir: PathBuf,
    files: Arc<FileCache>,
    repairs: Arc<Repairs>,
    /// This log's files in the cache are keyed by (owner, segment start).
    owner: u64,
    segments: BTreeMap<u64, Segment>,
    /// Known damaged stretches, by the position where each starts.
    damage: BTreeMap<u64, Damage>,
    head: LogHead,
    max_segment_bytes: u64,
    max_payload: usize,
    scratch: Vec<u8>,
    /// Bytes appended since the last fsync of the active segment.
    unsynced: bool,
    appends_since_sync: u64,
    /// A replica's copy: segments may end before the next one starts (`open_copy`).
    gaps: bool,
}

fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:020}.seg"))
}

/// Where the bytes of damage found at `offset` of a segment are kept.
fn side_path(dir: &Path, start: u64, offset: u64) -> PathBuf {
    dir.join(format!("{start:020}.seg.{offset}.bad"))
}

/// Where the next read at a position goes.
enum ReadPlace {
    /// Read this segment (start, readable length, first sequence) from this file.
    Segment(Segment, Arc<File>),
    /// Nothing readable here (damage, a missing segment): continue at this position/sequence.
    Jump(u64, u64),
    End,
}

impl DiskLog {
    /// Opens (or creates) the log in `dir`: cuts a torn tail off the last segment, finds the
    /// damage in it, and checks the first record of every earlier segment. Each repair is
    /// reported once to `repairs`.
    pub fn open(
        dir: &Path,
        files: Arc<FileCache>,
        repairs: Arc<Repairs>,
        max_segment_bytes: u64,
        max_msg_size: usize,
    ) -> io::Result<DiskLog> {
        Self::open_inner(dir, files, repairs, max_segment_bytes, max_msg_size, false)
    }

    /// `open` for a replica's copy of another broker's log (`append_raw`), where a segment
    /// that ends before the next one starts is a gap the owner released or skipped, not
    /// damage.
    pub fn open_copy(
        dir: &Path,
        files: Arc<FileCache>,
        repairs: Arc<Repairs>,
        max_segment_bytes: u64,
        max_msg_size: usize,
    ) -> io::Result<DiskLog> {
        Self::open_inner(dir, files, repairs, max_segment_bytes, max_msg_size, true)
    }

    fn open_inner(
        dir: &Path,
        files: Arc<FileCache>,
        repairs: Arc<Repairs>,
        max_segment_bytes: u64,
        max_msg_size: usize,
        gaps: bool,
    ) -> io::Result<DiskLog> {
        files.with_descriptor(|| fs::create_dir_all(dir))?;
        let mut starts: Vec<u64> = files
            .with_descriptor(|| fs::read_dir(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse::<u64>().ok()
            })
            .collect();
        starts.sort_unstable();
        // A segment is created just before its first write, so an empty last segment can only
        // be left by a crash in between: drop it and keep appending to the one before.
        while starts.len() > 1 {
            let last = segment_path(dir, *starts.last().unwrap());
            if fs::metadata(&last)?.len() > 0 {
                break;
            }
            fs::remove_file(last)?;
            starts.pop();
        }
        if starts.is_empty() {
            starts.push(0);
        }
        let owner = files.new_owner();
        let mut log = DiskLog {
            dir: dir.to_path_buf(),
            files,
            repairs,
            owner,
            segments: BTreeMap::new(),
            damage: BTreeMap::new(),
            head: LogHead::default(),
            max_segment_bytes: max_segment_bytes.max(1024),
            max_payload: max_payload(max_msg_size),
            scratch: Vec::new(),
            unsynced: false,
            appends_since_sync: 0,
            gaps,
        };
        // The last segment first: when nothing in it is intact, the one before becomes last.
        let (last, next_seq) = loop {
            let start = starts.pop().unwrap();
            let (segment, next_seq) = log.open_last_segment(start)?;
            if segment.len > 0 || starts.is_empty() {
                break (segment, next_seq);
            }
            log.files.forget(log.key(start));
            fs::remove_file(segment_path(dir, start))?;
        };
        let mut lower_bound = 0;
        for (i, &start) in starts.iter().enumerate() {
            let next_start = starts.get(i + 1).copied().unwrap_or(last.start);
            if let Some(segment) = log.open_sealed_segment(start, next_start, lower_bound)? {
                lower_bound = segment.first_seq;
                log.segments.insert(start, segment);
            }
        }
        log.head = LogHead {
            pos: last.start + last.len,
            seq: next_seq.unwrap_or(last.first_seq),
        };
        log.segments.insert(last.start, last);
        Ok(log)
    }

    /// Scans the segment appended to: damage with intact records after it is skipped, what
    /// follows the last intact record is cut off. Returns the segment and its next sequence.
    fn open_last_segment(&mut self, start: u64) -> io::Result<(Segment, Option<u64>)> {
        let path = segment_path(&self.dir, start);
        let file = self.files.get(self.key(start), true, || path.clone())?;
        let file_len = file.metadata()?.len();
        let scan = damage::scan_segment(&file, file_len, SeqWindow::at_least(0), self.max_payload)?;
        for skipped in &scan.skipped {
            self.damage.insert(
                start + skipped.from,
                Damage {
                    end_pos: start + skipped.to,
                    end_seq: skipped.to_seq,
                },
            );
            report_skipped(&self.files, &self.repairs, &self.dir, start, &file, *skipped);
        }
        if scan.valid_end < file_len {
            let cut = file_len - scan.valid_end;
            let next = scan.next_seq.unwrap_or(0);
            let detail = if scan.tail_is_partial {
                format!(
                    "{cut} bytes of a record whose write a crash cut short (never acknowledged) \
                     cut off; the log ends before sequence {next}"
                )
            } else {
                let bad = side_path(&self.dir, start, scan.valid_end);
                let id = damage::claimed_id(&file, scan.valid_end, scan.next_seq)
                    .map(|id| format!(", the first with ID {id}"))
                    .unwrap_or_default();
                let copied = copied_text(
                    damage::save_copy(&self.files, &file, scan.valid_end, file_len, &bad),
                    &bad,
                );
                format!(
                    "{cut} damaged bytes with no intact record after them cut off (the messages \
                     from sequence {next} on{id}); {copied}"
                )
            };
            file.set_len(scan.valid_end)?;
            file.sync_all()?;
            self.repairs
                .report(RepairAction::TornTailCut, &path, Some(scan.valid_end), detail);
        }
        let segment = Segment {
            start,
            len: scan.valid_end,
            first_seq: scan.first_seq.unwrap_or(0),
        };
        Ok((segment, scan.next_seq))
    }

    /// Checks a segment the log rolled past: it must open, and its first record tells its
    /// first sequence number (damage further in is found by the readers that get there).
    /// None when it is set aside.
    fn open_sealed_segment(
        &mut self,
        start: u64,
        next_start: u64,
        lower_bound: u64,
    ) -> io::Result<Option<Segment>> {
        let path = segment_path(&self.dir, start);
        let opened = self
            .files
            .get(self.key(start), false, || path.clone())
            .and_then(|file| Ok((file.metadata()?.len(), file)));
        let (file_len, file) = match opened {
            Ok(opened) => opened,
            Err(e) if super::files::is_out_of_descriptors(&e) => return Err(e),
            Err(e) => {
                self.set_aside(start, &format!("cannot be opened ({e})"));
                return Ok(None);
            }
        };
        let window = SeqWindow::at_least(lower_bound);
        let first = match damage::first_record(&file, file_len, window, self.max_payload) {
            Ok(first) => first,
            Err(e) if super::files::is_out_of_descriptors(&e) => return Err(e),
            Err(e) => {
                self.set_aside(start, &format!("cannot be read ({e})"));
                return Ok(None);
            }
        };
        let first_seq = match first {
            FirstRecord::Empty => {
                // Nothing in it, nothing lost.
                self.files.forget(self.key(start));
                let _ = fs::remove_file(&path);
                return Ok(None);
            }
            FirstRecord::NoneIntact => {
                self.set_aside(start, "no intact record in it");
                return Ok(None);
            }
            FirstRecord::Intact { seq } => seq,
            FirstRecord::AfterDamage { to, seq } => {
                let skipped = damage::Skipped {
                    from: 0,
                    to,
                    to_seq: seq,
                    expected_seq: None,
                };
                self.damage.insert(
                    start,
                    Damage {
                        end_pos: start + to,
                        end_seq: seq,
                    },
                );
                report_skipped(&self.files, &self.repairs, &self.dir, start, &file, skipped);
                seq
            }
        };
        let expected_len = next_start - start;
        if file_len < expected_len && !self.gaps {
            self.repairs.report(
                RepairAction::RecordsSkipped,
                &path,
                Some(file_len),
                format!(
                    "the segment is {} bytes shorter than the log needs: the messages at its end \
                     are lost, the next segment is served",
                    expected_len - file_len
                ),
            );
        }
        Ok(Some(Segment {
            start,
            len: file_len.min(expected_len),
            first_seq,
        }))
    }

    /// Leaves a segment that cannot be read out of the log (renamed `.bad` when possible);
    /// readers go on at the next segment. Never the one appended to.
    fn set_aside(&mut self, start: u64, why: &str) {
        if self.segments.keys().next_back() == Some(&start) {
            return;
        }
        self.segments.remove(&start);
        self.files.forget(self.key(start));
        let path = segment_path(&self.dir, start);
        let bad = path.with_extension("seg.bad");
        let kept = match fs::rename(&path, &bad) {
            Ok(()) => format!("renamed {}", bad.display()),
            Err(e) => format!("left in place ({e})"),
        };
        self.repairs.report(
            RepairAction::FileSetAside,
            &path,
            None,
            format!("segment {why}: its messages are skipped, the next segment is served; {kept}"),
        );
    }

    fn key(&self, start: u64) -> FileKey {
        FileKey {
            owner: self.owner,
            part: start,
        }
    }

    /// The segment file at `start`, open for appending.
    fn segment_writer(&self, start: u64) -> io::Result<Arc<File>> {
        self.files
            .get(self.key(start), true, || segment_path(&self.dir, start))
    }

    pub fn head(&self) -> LogHead {
        self.head
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The broker's file cache this log opens its segments through.
    pub fn files(&self) -> &Arc<FileCache> {
        &self.files
    }

    /// Position and sequence of the oldest record still on disk.
    pub fn tail(&self) -> LogHead {
        let first = self.segments.values().next().unwrap();
        LogHead {
            pos: first.start,
            seq: first.first_seq,
        }
    }

    /// Appends records with one write; returns the head after them. Sequence numbers are
    /// assigned here so they follow file order.
    pub fn append(&mut self, records: &[NewRecord]) -> io::Result<LogHead> {
        self.scratch.clear();
        let mut seq = self.head.seq;
        for rec in records {
            encode_record(&mut self.scratch, seq, rec);
            seq += 1;
        }
        let active_len = self.head.pos - self.active_start();
        if active_len > 0 && active_len + self.scratch.len() as u64 > self.max_segment_bytes {
            self.roll()?;
        }
        let start = self.active_start();
        let file = self.segment_writer(start)?;
        if let Err(e) = (&*file).write_all(&self.scratch) {
            // A partial write would leave garbage ahead of the next record: cut it off.
            let _ = file.set_len(self.head.pos - start);
            return Err(e);
        }
        self.head = LogHead {
            pos: self.head.pos + self.scratch.len() as u64,
            seq,
        };
        self.segments.get_mut(&start).unwrap().len = self.head.pos - start;
        self.unsynced = true;
        self.appends_since_sync += records.len() as u64;
        Ok(self.head)
    }

    fn active_start(&self) -> u64 {
        *self.segments.keys().next_back().unwrap()
    }

    fn roll(&mut self) -> io::Result<()> {
        self.segment_writer(self.active_start())?.sync_data()?;
        let start = self.head.pos;
        self.segment_writer(start)?;
        self.segments.insert(
            start,
            Segment {
                start,
                len: 0,
                first_seq: self.head.seq,
            },
        );
        self.unsynced = false;
        Ok(())
    }

    /// Appends since the last sync, so the caller can apply `--sync-every`.
    pub fn appends_since_sync(&self) -> u64 {
        self.appends_since_sync
    }

    /// True when bytes were appended since the last sync handle was taken.
    pub fn has_unsynced(&self) -> bool {
        self.unsynced
    }

    /// A handle to fsync the active segment outside the lock, with the head it will cover.
    pub fn sync_handle(&mut self) -> io::Result<(Arc<File>, LogHead)> {
        let file = self.segment_writer(self.active_start())?;
        self.unsynced = false;
        self.appends_since_sync = 0;
        Ok((file, self.head))
    }

    /// Appends records already encoded (a replica's copy of another broker's log) at `pos`,
    /// the position they have in that log. `records` must have passed `check_records`, which
    /// gave `span`; they must continue the log's sequence numbers when `pos` is the head. A
    /// `pos` past the head leaves a gap: a new segment starts there, as if the segments in
    /// between had been released. A `pos` before the head is refused.
    pub fn append_raw(&mut self, pos: u64, records: &[u8], span: RecordSpan) -> io::Result<LogHead> {
        let refuse = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        if pos < self.head.pos {
            return refuse(format!(
                "append at {pos} overlaps the log, which ends at {}",
                self.head.pos
            ));
        }
        let active_len = self.head.pos - self.active_start();
        if pos == self.head.pos && span.first_seq != self.head.seq {
            return refuse(format!(
                "records at {pos} start at sequence {}, the log continues with {}",
                span.first_seq, self.head.seq
            ));
        }
        if pos > self.head.pos {
            if span.first_seq < self.head.seq {
                return refuse(format!(
                    "records at {pos} start at sequence {}, before the log's next {}",
                    span.first_seq, self.head.seq
                ));
            }
            let active = self.active_start();
            if active_len == 0 {
                // Nothing was written to the active segment: it is replaced, not kept empty.
                self.segments.remove(&active);
                self.files.forget(self.key(active));
                let _ = fs::remove_file(segment_path(&self.dir, active));
            } else {
                self.segment_writer(active)?.sync_data()?;
            }
            self.segment_writer(pos)?;
            self.segments.insert(
                pos,
                Segment {
                    start: pos,
                    len: 0,
                    first_seq: span.first_seq,
                },
            );
            self.head = LogHead {
                pos,
                seq: span.first_seq,
            };
            self.unsynced = false;
        } else if active_len > 0 && active_len + records.len() as u64 > self.max_segment_bytes {
            self.roll()?;
        }
        let start = self.active_start();
        let file = self.segment_writer(start)?;
        if let Err(e) = (&*file).write_all(records) {
            // A partial write would leave garbage ahead of the next record: cut it off.
            let _ = file.set_len(self.head.pos - start);
            return Err(e);
        }
        self.head = LogHead {
            pos: self.head.pos + records.len() as u64,
            seq: span.next_seq,
        };
        self.segments.get_mut(&start).unwrap().len = self.head.pos - start;
        self.unsynced = true;
        self.appends_since_sync += span.count;
        Ok(self.head)
    }

    /// The largest record payload this log accepts (header plus `--max-msg-size`).
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Deletes whole segments that end at or before `pos` (never the active one).
    pub fn release_before(&mut self, pos: u64) {
        let active = self.active_start();
        let doomed: Vec<u64> = self
            .segments
            .values()
            .filter(|s| s.start != active && s.start + s.len <= pos)
            .map(|s| s.start)
            .collect();
        for start in doomed {
            self.segments.remove(&start);
            self.files.forget(self.key(start));
            let _ = fs::remove_file(segment_path(&self.dir, start));
        }
        let tail = self.tail().pos;
        self.damage.retain(|_, d| d.end_pos > tail);
    }

    /// The known damaged stretch that holds `pos`.
    fn damage_at(&self, pos: u64) -> Option<Damage> {
        let (_, d) = self.damage.range(..=pos).next_back()?;
        (pos < d.end_pos).then_some(*d)
    }

    /// The segment after the one holding `pos`: (start, first sequence).
    fn next_segment_after(&self, pos: u64) -> Option<(u64, u64)> {
        self.segments
            .range(pos + 1..)
            .next()
            .map(|(_, s)| (s.start, s.first_seq))
    }

    /// Where a read at `pos` goes.
    fn place_for_read(&mut self, pos: u64) -> io::Result<ReadPlace> {
        if let Some(d) = self.damage_at(pos) {
            return Ok(ReadPlace::Jump(d.end_pos, d.end_seq));
        }
        if let Some((_, seg)) = self.segments.range(..=pos).next_back() {
            if pos < seg.start + seg.len {
                let seg = seg.clone();
                let path = || segment_path(&self.dir, seg.start);
                match self.files.get(self.key(seg.start), false, path) {
                    Ok(file) => return Ok(ReadPlace::Segment(seg, file)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound && seg.start != self.active_start() => {
                        self.set_aside(seg.start, "is missing");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(match self.next_segment_after(pos) {
            Some((start, seq)) => ReadPlace::Jump(start, seq),
            None => ReadPlace::End,
        })
    }

    /// Deletes every file of the log (topic deletion).
    pub fn destroy(self) {
        self.files.forget_owner(self.owner);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for DiskLog {
    fn drop(&mut self) {
        self.files.forget_owner(self.owner);
    }
}

/// Records damage found at `skipped.from` of the segment at `start`: its bytes are copied to a
/// side file and it is reported, once.
fn report_skipped(
    files: &FileCache,
    repairs: &Repairs,
    dir: &Path,
    start: u64,
    file: &File,
    skipped: damage::Skipped,
) {
    let bad = side_path(dir, start, skipped.from);
    let id = damage::claimed_id(file, skipped.from, skipped.expected_seq);
    let copied = copied_text(
        damage::save_copy(files, file, skipped.from, skipped.to, &bad),
        &bad,
    );
    let lost = damage::lost_text(skipped.expected_seq, skipped.to_seq, id);
    repairs.report(
        RepairAction::RecordsSkipped,
        &segment_path(dir, start),
        Some(skipped.from),
        format!(
            "{} damaged bytes skipped, {lost}; the intact records after them (offset {} on) are \
             served; {copied}",
            skipped.to - skipped.from,
            skipped.to
        ),
    );
}

fn copied_text(saved: io::Result<()>, bad: &Path) -> String {
    match saved {
        Ok(()) => format!("the damaged bytes are copied to {}", bad.display()),
        Err(e) => format!("the damaged bytes could not be copied aside ({e})"),
    }
}

/// A channel's reading handle: a read buffer kept between reads. Files come from the log's
/// cache for each read, so an idle channel holds no descriptor.
#[derive(Default)]
pub struct LogReader {
    buf: Vec<u8>,
}

impl LogReader {
    /// Reads up to `max_messages` records starting at `pos` (whose sequence number is `seq`),
    /// not beyond `limit` (a head, or the end of a closed stretch).
    pub fn read(
        &mut self,
        log: &parking_lot::Mutex<DiskLog>,
        pos: u64,
        seq: u64,
        limit: LogHead,
        max_messages: usize,
    ) -> io::Result<ReadBatch> {
        self.read_chunked(log, pos, limit, Some(seq), max_messages, READ_CHUNK)
    }

    /// `read` from a record boundary whose sequence number may not be known (an adopted
    /// copy's lowest needed position).
    pub fn read_from(
        &mut self,
        log: &parking_lot::Mutex<DiskLog>,
        pos: u64,
        seq: Option<u64>,
        limit: LogHead,
        max_messages: usize,
    ) -> io::Result<ReadBatch> {
        self.read_chunked(log, pos, limit, seq, max_messages, READ_CHUNK)
    }

    /// `read` with a chosen read-ahead: streaming wants large chunks, a single record small ones.
    fn read_chunked(
        &mut self,
        log: &parking_lot::Mutex<DiskLog>,
        pos: u64,
        limit: LogHead,
        expected_seq: Option<u64>,
        max_messages: usize,
        chunk: usize,
    ) -> io::Result<ReadBatch> {
        let mut messages = Vec::new();
        let mut pos = pos;
        let mut next_seq = None;
        let mut expected = expected_seq;
        while messages.len() < max_messages && pos < limit.pos {
            let (place, max_payload) = {
                let mut l = log.lock();
                (l.place_for_read(pos)?, l.max_payload)
            };
            let (seg, file) = match place {
                ReadPlace::Jump(to, seq) => {
                    pos = to;
                    next_seq = Some(seq);
                    expected = Some(seq);
                    continue;
                }
                ReadPlace::End => break,
                ReadPlace::Segment(seg, file) => (seg, file),
            };
            let readable_end = (seg.start + seg.len).min(limit.pos);
            let readable = readable_end - pos;
            let want = (readable as usize).min(chunk.max(RECORD_PREFIX));
            self.buf.resize(want, 0);
            let n = read_full_at(&file, &mut self.buf, pos - seg.start)?;
            self.buf.truncate(n);
            let mut off = 0usize;
            // Nothing where the log says there is something: the file lost its end.
            let mut damaged = n == 0;
            while messages.len() < max_messages && off < self.buf.len() {
                match decode_record(&self.buf[off..], pos + off as u64, max_payload) {
                    Decoded::Record(m) => {
                        off = (m.next_pos - pos) as usize;
                        next_seq = Some(m.seq + 1);
                        expected = next_seq;
                        messages.push(m);
                    }
                    Decoded::Incomplete(need) => {
                        if off > 0 {
                            break;
                        }
                        if need as u64 > readable {
                            damaged = true;
                            break;
                        }
                        // One record larger than the chunk: read exactly it.
                        self.buf.resize(need, 0);
                        if read_full_at(&file, &mut self.buf, pos - seg.start)? < need {
                            damaged = true;
                            break;
                        }
                    }
                    Decoded::Corrupt => {
                        damaged = true;
                        break;
                    }
                }
            }
            pos += off as u64;
            if damaged {
                let d = contain_damage(log, &seg, &file, pos, readable_end, limit, expected)?;
                pos = d.end_pos;
                next_seq = Some(d.end_seq);
                expected = next_seq;
            } else if off == 0 {
                break;
            }
        }
        Ok(ReadBatch {
            messages,
            next_pos: pos,
            next_seq,
        })
    }

    /// Reads the single record at `pos` (a requeued or deferred message).
    pub fn read_one(
        &mut self,
        log: &parking_lot::Mutex<DiskLog>,
        pos: u64,
    ) -> io::Result<Option<StoredMessage>> {
        let limit = log.lock().head();
        // Most messages fit in one page; a larger one is completed by an exact second read.
        let batch = self.read_chunked(log, pos, limit, None, 1, 4096)?;
        Ok(batch.messages.into_iter().next().filter(|m| m.pos == pos))
    }
}

/// Damage at `at` in `seg` (readable up to `readable_end`): finds where intact records resume,
/// remembers the stretch so every reader jumps over it, and reports it the first time.
fn contain_damage(
    log: &parking_lot::Mutex<DiskLog>,
    seg: &Segment,
    file: &File,
    at: u64,
    readable_end: u64,
    limit: LogHead,
    expected: Option<u64>,
) -> io::Result<Damage> {
    let max_payload = {
        let l = log.lock();
        if let Some(known) = l.damage_at(at) {
            return Ok(known);
        }
        l.max_payload
    };
    let window = expected.map_or(SeqWindow::at_least(seg.first_seq), SeqWindow::after);
    let found = damage::resync(
        file,
        at - seg.start,
        readable_end - seg.start,
        window,
        max_payload,
    )?;
    let mut l = log.lock();
    if let Some(known) = l.damage_at(at) {
        return Ok(known);
    }
    let d = match found {
        Some((off, seq)) => Damage {
            end_pos: seg.start + off,
            end_seq: seq,
        },
        None if readable_end == limit.pos => Damage {
            end_pos: limit.pos,
            end_seq: limit.seq,
        },
        None => match l.next_segment_after(at) {
            Some((next, seq)) => Damage {
                end_pos: next,
                end_seq: seq,
            },
            None => Damage {
                end_pos: l.head.pos,
                end_seq: l.head.seq,
            },
        },
    };
    l.damage.insert(at, d);
    let (files, repairs, dir) = (l.files.clone(), l.repairs.clone(), l.dir.clone());
    drop(l);
    let skipped = damage::Skipped {
        from: at - seg.start,
        to: d.end_pos.min(seg.start + seg.len) - seg.start,
        to_seq: d.end_seq,
        expected_seq: expected,
    };
    report_skipped(&files, &repairs, &dir, seg.start, file, skipped);
    Ok(d)
}

impl LogReader {
    /// Appends to `out` the encoded records from `pos`, exactly as they are stored: what
    /// replication ships to peers. Whole, intact records only, within one segment, not beyond
    /// `limit`, at most `max_bytes` unless the first record alone is larger. Damage is skipped
    /// as channels skip it. Returns where the bytes start, which is past `pos` when `pos` lies
    /// in a released segment or in damage; None when nothing is readable before `limit`.
    pub fn read_raw(
        &mut self,
        log: &parking_lot::Mutex<DiskLog>,
        pos: u64,
        limit: LogHead,
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> io::Result<Option<u64>> {
        let mut pos = pos;
        let mut expected: Option<u64> = None;
        // Every turn moves `pos` forward (a jump, or past damage) or returns.
        while pos < limit.pos {
            let (place, max_payload) = {
                let mut l = log.lock();
                (l.place_for_read(pos)?, l.max_payload)
            };
            let (seg, file) = match place {
                ReadPlace::Jump(to, seq) => {
                    pos = to;
                    expected = Some(seq);
                    continue;
                }
                ReadPlace::End => break,
                ReadPlace::Segment(seg, file) => (seg, file),
            };
            let readable_end = (seg.start + seg.len).min(limit.pos);
            let readable = (readable_end - pos) as usize;
            let start = out.len();
            out.resize(start + readable.min(max_bytes.max(RECORD_PREFIX)), 0);
            let n = read_full_at(&file, &mut out[start..], pos - seg.start)?;
            out.truncate(start + n);
            let mut whole = 0usize;
            let mut damaged = n == 0;
            while start + whole < out.len() {
                match check_record(&out[start + whole..], max_payload) {
                    Checked::Record(len) => {
                        let seq = header_of(&out[start + whole..], 0).seq;
                        if expected.is_some_and(|e| e != seq) {
                            damaged = true;
                            break;
                        }
                        expected = Some(seq + 1);
                        whole += len;
                    }
                    Checked::Incomplete(_) if whole > 0 => break,
                    Checked::Incomplete(need) => {
                        // One record larger than `max_bytes`: read exactly it.
                        if need > readable {
                            damaged = true;
                            break;
                        }
                        out.resize(start + need, 0);
                        if read_full_at(&file, &mut out[start..], pos - seg.start)? < need {
                            damaged = true;
                            break;
                        }
                    }
                    Checked::Corrupt => {
                        damaged = true;
                        break;
                    }
                }
            }
            out.truncate(start + whole);
            if whole > 0 {
                return Ok(Some(pos));
            }
            if !damaged {
                break;
            }
            let d = contain_damage(log, &seg, &file, pos, readable_end, limit, expected)?;
            pos = d.end_pos;
            expected = Some(d.end_seq);
        }
        Ok(None)
    }

    /// Finds the record with `id`. IDs rise with position in everything a topic's GUID factory
    /// wrote, so a binary search over the segments' first IDs picks the one segment to scan,
    /// and the scan reads record headers only until it reaches or passes the ID.
    pub fn find_id(
        &mut self,
        log: &parking_lot::Mutex<DiskLog>,
        id: MessageId,
    ) -> io::Result<Option<StoredMessage>> {
        let (segments, max_payload) = {
            let l = log.lock();
            let segs: Vec<(u64, u64)> = l.segments.values().map(|s| (s.start, s.len)).collect();
            (segs, l.max_payload)
        };
        let open = |start: u64| {
            let l = log.lock();
            l.files.get(l.key(start), false, || segment_path(&l.dir, start))
        };
        let first_id = |start: u64, len: u64| -> io::Result<Option<u64>> {
            if len < MIN_RECORD as u64 {
                return Ok(None);
            }
            let mut buf = [0u8; MIN_RECORD];
            read_full_at(&*open(start)?, &mut buf, 0)?;
            Ok(Some(header_of(&buf, 0).id.0))
        };
        // The last segment whose first ID is not above `id`.
        let (mut lo, mut hi) = (0usize, segments.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (start, len) = segments[mid];
            match first_id(start, len)? {
                Some(first) if first <= id.0 => lo = mid + 1,
                Some(_) => hi = mid,
                // An empty (active) segment is always the last one.
                None => hi = mid,
            }
        }
        let Some(&(start, len)) = lo.checked_sub(1).and_then(|i| segments.get(i)) else {
            return Ok(None);
        };
        let file = open(start)?;
        let mut found = None;
        walk_headers(&file, 0, len, max_payload, |off, header| {
            let this = header.id.0;
            if this == id.0 {
                found = Some(start + off);
            }
            this < id.0
        })?;
        match found {
            Some(pos) => self.read_one(log, pos),
            None => Ok(None),
        }
    }

    /// The records in `[from, to)` deferred past `after_ns`, read from their headers alone (the
    /// index of unread deferred messages is rebuilt this way after a restart).
    pub fn scan_deferred(
        log: &parking_lot::Mutex<DiskLog>,
        from: u64,
        to: u64,
        after_ns: i64,
    ) -> io::Result<Vec<RecordHeader>> {
        let (segments, max_payload) = {
            let l = log.lock();
            let segs: Vec<(u64, u64)> = l
                .segments
                .values()
                .filter(|s| s.start + s.len > from && s.start < to)
                .map(|s| (s.start, s.len))
                .collect();
            (segs, l.max_payload)
        };
        let mut out = Vec::new();
        for (start, len) in segments {
            let opened = {
                let l = log.lock();
                l.files.get(l.key(start), false, || segment_path(&l.dir, start))
            };
            let file = match opened {
                Ok(f) => f,
                // Released or set aside meanwhile: nothing there is unread any more.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let end = len.min(to - start);
            walk_headers(
                &file,
                from.saturating_sub(start),
                end,
                max_payload,
                |off, header| {
                    if header.deliver_at_ns > after_ns {
                        out.push(RecordHeader {
                            pos: start + off,
                            ..header
                        });
                    }
                    true
                },
            )?;
        }
        Ok(out)
    }
}

/// Walks the record headers of one segment file from `from` to `end` (offsets in the file),
/// reading large chunks and skipping bodies. `visit` gets each record's offset and header and
/// says whether to go on. A header that cannot be the next record (a length out of bounds, a
/// sequence number that does not follow) is damage: the walk resumes at the next intact
/// record, found with checksums.
fn walk_headers(
    file: &File,
    from: u64,
    end: u64,
    max_payload: usize,
    mut visit: impl FnMut(u64, RecordHeader) -> bool,
) -> io::Result<()> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut off = from;
    let mut expected: Option<u64> = None;
    'chunks: while off < end {
        let n = read_full_at(file, &mut buf, off)?.min((end - off) as usize);
        let mut at = 0usize;
        while at + MIN_RECORD <= n {
            let len = payload_len(&buf[at..]);
            let header = header_of(&buf[at..], 0);
            let here = off + at as u64;
            let fits =
                (PAYLOAD_HEADER..=max_payload).contains(&len) && here + (RECORD_PREFIX + len) as u64 <= end;
            if !fits || expected.is_some_and(|seq| seq != header.seq) {
                let window = expected.map_or(SeqWindow::at_least(0), SeqWindow::after);
                match damage::resync(file, here, end, window, max_payload)? {
                    Some((resume, seq)) => {
                        off = resume;
                        expected = Some(seq);
                        continue 'chunks;
                    }
                    None => return Ok(()),
                }
            }
            if !visit(here, header) {
                return Ok(());
            }
            expected = Some(header.seq + 1);
            at += RECORD_PREFIX + len;
        }
        if at == 0 {
            // Not even a header left: the segment ends here.
            break;
        }
        // `at` may point past this chunk (a record larger than it): reading resumes at the next
        // header either way.
        off += at as u64;
    }
    Ok(())
}

/// The log of an `#ephemeral` topic: memory only, positions are sequence numbers, and the
/// oldest messages are dropped once `capacity` is exceeded (nsqd's mem-queue-size).
pub struct MemLog {
    base: u64,
    messages: VecDeque<StoredMessage>,
    capacity: usize,
}

impl MemLog {
    pub fn new(capacity: usize) -> MemLog {
        MemLog {
            base: 0,
            messages: VecDeque::new(),
            capacity,
        }
    }

    pub fn head(&self) -> LogHead {
        let end = self.base + self.messages.len() as u64;
        LogHead { pos: end, seq: end }
    }

    pub fn tail(&self) -> LogHead {
        LogHead {
            pos: self.base,
            seq: self.base,
        }
    }

    /// Appends; returns how many old messages were dropped to stay within capacity.
    pub fn append(&mut self, records: &[NewRecord]) -> (LogHead, u64) {
        for rec in records {
            let seq = self.base + self.messages.len() as u64;
            self.messages.push_back(StoredMessage {
                pos: seq,
                next_pos: seq + 1,
                seq,
                id: rec.id,
                timestamp_ns: rec.timestamp_ns,
                attempts: rec.attempts,
                deliver_at_ns: rec.deliver_at_ns,
                body: Bytes::copy_from_slice(rec.body),
            });
        }
        let mut dropped = 0;
        while self.messages.len() > self.capacity.max(1) {
            self.messages.pop_front();
            self.base += 1;
            dropped += 1;
        }
        (self.head(), dropped)
    }

    /// Drops everything before `pos`, which no channel needs any more.
    pub fn release_before(&mut self, pos: u64) {
        while self.base < pos && !self.messages.is_empty() {
            self.messages.pop_front();
            self.base += 1;
        }
    }

    pub fn read(&self, pos: u64, limit: u64, max_messages: usize) -> ReadBatch {
        let start = pos.max(self.base);
        let end = limit.min(self.base + self.messages.len() as u64);
        let mut messages = Vec::new();
        let mut p = start;
        while p < end && messages.len() < max_messages {
            messages.push(self.messages[(p - self.base) as usize].clone());
            p += 1;
        }
        // A position is its sequence number here.
        ReadBatch {
            next_pos: p,
            next_seq: (p != pos).then_some(p),
            messages,
        }
    }

    /// The message with `id`, if still held.
    pub fn find_id(&self, id: MessageId) -> Option<StoredMessage> {
        self.messages.iter().find(|m| m.id == id).cloned()
    }

    pub fn read_one(&self, pos: u64) -> Option<StoredMessage> {
        if pos < self.base {
            return None;
        }
        self.messages.get((pos - self.base) as usize).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    fn rec(body: &[u8], id: u64) -> NewRecord<'_> {
        NewRecord {
            id: MessageId(id),
            timestamp_ns: 7,
            attempts: 0,
            deliver_at_ns: 0,
            body,
        }
    }

    fn open(dir: &Path, segment_bytes: u64, max_msg: usize) -> (DiskLog, Arc<Repairs>) {
        let repairs = Arc::new(Repairs::default());
        let files = Arc::new(FileCache::new(64));
        let log = DiskLog::open(dir, files, repairs.clone(), segment_bytes, max_msg).unwrap();
        (log, repairs)
    }

    fn segments_of(dir: &Path) -> Vec<PathBuf> {
        let mut segs: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        segs.sort();
        segs
    }

    fn flip(path: &Path, at: usize) {
        let mut data = fs::read(path).unwrap();
        data[at] ^= 0x20;
        fs::write(path, data).unwrap();
    }

    /// Reads everything from the start the way a channel does; returns the IDs and the
    /// position/sequence the reader ends at.
    fn read_all(log: &Mutex<DiskLog>, reader: &mut LogReader) -> (Vec<u64>, u64, u64) {
        let head = log.lock().head();
        let (mut pos, mut seq) = (0, 0);
        let mut ids = Vec::new();
        for _ in 0..1000 {
            if pos >= head.pos {
                break;
            }
            let batch = reader.read(log, pos, seq, head, 7).unwrap();
            ids.extend(batch.messages.iter().map(|m| m.id.0));
            pos = batch.next_pos;
            seq = batch.next_seq.unwrap_or(seq);
        }
        (ids, pos, seq)
    }

    #[test]
    fn append_read_roll_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), 2048, 1024);
        let body = [b'x'; 200];
        for i in 0..30 {
            log.append(&[rec(&body, i)]).unwrap();
        }
        let head = log.head();
        assert_eq!(head.seq, 30);
        assert!(log.segments.len() > 2, "should have rolled");
        let log = Mutex::new(log);
        let mut reader = LogReader::default();
        let batch = reader.read(&log, 0, 0, head, 100).unwrap();
        assert_eq!(batch.messages.len(), 30);
        assert_eq!((batch.next_pos, batch.next_seq), (head.pos, Some(30)));
        assert!(batch
            .messages
            .iter()
            .enumerate()
            .all(|(i, m)| m.seq == i as u64 && m.id.0 == i as u64));
        drop(log);
        // A torn tail (half a record) is cut off at reopen, and reported.
        let last = segments_of(dir.path()).pop().unwrap();
        let mut f = fs::OpenOptions::new().append(true).open(&last).unwrap();
        f.write_all(&[0, 0, 0, 99, 1, 2]).unwrap();
        let (log, repairs) = open(dir.path(), 2048, 1024);
        assert_eq!(log.head(), head);
        assert_eq!(repairs.count(), 1);
        assert_eq!(repairs.recent()[0].action, RepairAction::TornTailCut);
    }

    #[test]
    fn records_larger_than_a_read_chunk_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![b'z'; READ_CHUNK + 1000];
        let (mut log, _) = open(dir.path(), 100 << 20, 1 << 20);
        for i in 0..3 {
            log.append(&[rec(&big, i)]).unwrap();
        }
        let head = log.head();
        drop(log);
        let (log, repairs) = open(dir.path(), 100 << 20, 1 << 20);
        assert_eq!(log.head(), head);
        assert_eq!(repairs.count(), 0);
        let log = Mutex::new(log);
        let batch = LogReader::default().read(&log, 0, 0, head, 10).unwrap();
        assert_eq!(batch.messages.len(), 3);
        assert!(batch.messages.iter().all(|m| m.body.len() == big.len()));
    }

    #[test]
    fn damage_in_an_earlier_segment_loses_one_record_and_keeps_sequence_exact() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, repairs) = open(dir.path(), 1024, 1024);
        let body = [b'y'; 100];
        for i in 0..40 {
            log.append(&[rec(&body, i)]).unwrap();
        }
        let head = log.head();
        let second = segments_of(dir.path())[1].clone();
        let record = stored_len(body.len()) as usize;
        // The body of the third record in the second segment.
        flip(&second, 2 * record + 60);
        let log = Mutex::new(log);
        let (ids, pos, seq) = read_all(&log, &mut LogReader::default());
        assert_eq!(ids.len(), 39, "only the damaged record is lost");
        assert_eq!((pos, seq), (head.pos, head.seq));
        assert_eq!(repairs.count(), 1);
        let repair = &repairs.recent()[0];
        assert_eq!(repair.action, RepairAction::RecordsSkipped);
        assert_eq!(repair.offset, Some(2 * record as u64));
        let lost = (0..40).find(|i| !ids.contains(i)).unwrap();
        assert!(
            repair.detail.contains(&format!("ID {}", MessageId(lost))),
            "{}",
            repair.detail
        );
        assert!(second.with_extension(format!("seg.{}.bad", 2 * record)).exists());
        // A second reader jumps over the same damage without reporting it again.
        let (again, _, _) = read_all(&log, &mut LogReader::default());
        assert_eq!(again, ids);
        assert_eq!(repairs.count(), 1);
        // Header walks find the records after the damage too.
        let mut reader = LogReader::default();
        for id in [lost + 1, 39] {
            assert_eq!(
                reader.find_id(&log, MessageId(id)).unwrap().map(|m| m.id.0),
                Some(id)
            );
        }
        assert!(reader.find_id(&log, MessageId(lost)).unwrap().is_none());
    }

    #[test]
    fn damage_mid_last_segment_is_skipped_at_open_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), 1 << 20, 1024);
        let body = [b'w'; 50];
        for i in 0..100 {
            log.append(&[rec(&body, i)]).unwrap();
        }
        let head = log.head();
        drop(log);
        let seg = segments_of(dir.path()).pop().unwrap();
        let record = stored_len(body.len()) as usize;
        flip(&seg, 50 * record + 45);
        let (log, repairs) = open(dir.path(), 1 << 20, 1024);
        assert_eq!(log.head(), head, "nothing cut");
        assert_eq!(repairs.count(), 1);
        assert_eq!(repairs.recent()[0].offset, Some(50 * record as u64));
        let log = Mutex::new(log);
        let (ids, pos, seq) = read_all(&log, &mut LogReader::default());
        assert_eq!(ids, (0..100).filter(|&i| i != 50).collect::<Vec<_>>());
        assert_eq!((pos, seq), (head.pos, head.seq));
        assert_eq!(repairs.count(), 1, "readers jump over what the open found");
        // Appends go on after the damage, with the next sequence numbers.
        assert_eq!(log.lock().append(&[rec(&body, 100)]).unwrap().seq, 101);
    }

    #[test]
    fn an_unreadable_first_record_of_a_segment_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), 1024, 1024);
        let body = [b'v'; 100];
        for i in 0..40 {
            log.append(&[rec(&body, i)]).unwrap();
        }
        let head = log.head();
        drop(log);
        let second = segments_of(dir.path())[1].clone();
        flip(&second, 2);
        let (log, repairs) = open(dir.path(), 1024, 1024);
        assert_eq!(repairs.count(), 1, "found at open");
        let log = Mutex::new(log);
        let (ids, pos, seq) = read_all(&log, &mut LogReader::default());
        assert_eq!(ids.len(), 39);
        assert_eq!((pos, seq), (head.pos, head.seq));
    }

    #[test]
    fn a_segment_with_nothing_intact_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), 1024, 1024);
        let body = [b'u'; 100];
        for i in 0..40 {
            log.append(&[rec(&body, i)]).unwrap();
        }
        let head = log.head();
        drop(log);
        let second = segments_of(dir.path())[1].clone();
        let len = fs::metadata(&second).unwrap().len() as usize;
        fs::write(&second, vec![0xAB; len]).unwrap();
        let (log, repairs) = open(dir.path(), 1024, 1024);
        assert_eq!(repairs.recent()[0].action, RepairAction::FileSetAside);
        assert!(second.with_extension("seg.bad").exists());
        let log = Mutex::new(log);
        let (ids, pos, seq) = read_all(&log, &mut LogReader::default());
        let per_segment = 40 - ids.len();
        assert!(per_segment > 0 && per_segment < 10, "{per_segment}");
        assert_eq!((pos, seq), (head.pos, head.seq));
    }

    #[test]
    fn find_id_searches_every_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), 1024, 1 << 20);
        let big = vec![b'b'; READ_CHUNK + 10];
        // Even IDs only, so odd ones are "between" records; one record bigger than a read chunk.
        for i in 0..60u64 {
            let body: &[u8] = if i == 31 { &big } else { b"small body" };
            log.append(&[rec(body, i * 2 + 10)]).unwrap();
        }
        assert!(log.segments.len() > 3);
        let log = Mutex::new(log);
        let mut reader = LogReader::default();
        for i in 0..60u64 {
            let found = reader.find_id(&log, MessageId(i * 2 + 10)).unwrap().unwrap();
            assert_eq!((found.id.0, found.seq), (i * 2 + 10, i));
        }
        for missing in [0, 9, 11, 71, 73, 1000] {
            assert!(reader.find_id(&log, MessageId(missing)).unwrap().is_none());
        }
    }

    #[test]
    fn appends_and_reads_at_the_head_reuse_one_open_file() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path(), 1 << 30, 1024);
        let files = log.files().clone();
        let log = Mutex::new(log);
        let opened = files.opens();
        let mut reader = LogReader::default();
        let (mut pos, mut seq) = (0, 0);
        for i in 0..1000 {
            let head = log.lock().append(&[rec(b"hot path", i)]).unwrap();
            let batch = reader.read(&log, pos, seq, head, 10).unwrap();
            assert_eq!(batch.messages.len(), 1);
            (pos, seq) = (batch.next_pos, batch.next_seq.unwrap());
        }
        assert_eq!(files.opens(), opened, "the active segment was opened again");
    }

    #[test]
    fn descriptors_stay_within_the_cache_bound() {
        let dir = tempfile::tempdir().unwrap();
        let files = Arc::new(FileCache::new(8));
        let repairs = Arc::new(Repairs::default());
        let mut logs = Vec::new();
        for t in 0..40 {
            let mut log = DiskLog::open(
                &dir.path().join(format!("t{t}")),
                files.clone(),
                repairs.clone(),
                4096,
                1024,
            )
            .unwrap();
            log.append(&[rec(b"hello", t)]).unwrap();
            logs.push(Mutex::new(log));
            assert!(files.open_files() <= 8);
        }
        for log in &logs {
            let (ids, _, _) = read_all(log, &mut LogReader::default());
            assert_eq!(ids.len(), 1);
        }
        assert!(files.open_files() <= 8);
        drop(logs);
        assert_eq!(files.open_files(), 0, "a dropped log closes its files");
    }

    #[test]
    fn mem_log_drops_beyond_capacity() {
        let mut log = MemLog::new(3);
        for i in 0..5 {
            log.append(&[rec(b"m", i)]);
        }
        let batch = log.read(0, log.head().pos, 10);
        assert_eq!(
            batch.messages.iter().map(|m| m.id.0).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
    }
}
