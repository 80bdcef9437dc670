//! A topic's message log: append-only, segmented files on disk (or a bounded ring in memory for
//! `#ephemeral` topics). One write per published batch, however many channels read it.
//!
//! A position is a byte offset across all segments of a topic (a segment is named by the
//! position of its first record), so channels can keep a plain number as their cursor. Every
//! record carries a CRC: a torn tail left by a crash is cut off at open, and a corrupt record
//! found while reading sets its segment aside (renamed `.bad`) and reading resumes at the next.
//!
//! Record: `[4B len][4B crc32(payload)][payload]`, payload =
//! `[8B timestamp ns][8B id][8B seq][2B attempts][8B deliver_at ns][body]`.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::protocol::MessageId;

const RECORD_PREFIX: usize = 8;
const PAYLOAD_HEADER: usize = 8 + 8 + 8 + 2 + 8;
/// Bytes read ahead per disk read when a channel streams the log.
const READ_CHUNK: usize = 256 * 1024;

/// One message as stored: what a channel needs to deliver it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub pos: u64,
    /// Position of the record after this one.
    pub next_pos: u64,
    /// Topic-wide sequence number: counts messages, so depths are exact.
    pub seq: u64,
    pub id: MessageId,
    pub timestamp_ns: i64,
    /// Attempts already made before this record was written (non-zero only for imported data).
    pub attempts: u16,
    /// Deferred publish: not deliverable before this time (0 = at once).
    pub deliver_at_ns: i64,
    pub body: Bytes,
}

/// A message about to be appended.
pub struct NewRecord<'a> {
    pub id: MessageId,
    pub timestamp_ns: i64,
    pub attempts: u16,
    pub deliver_at_ns: i64,
    pub body: &'a [u8],
}

/// Where the log ends: the next position and the next sequence number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogHead {
    pub pos: u64,
    pub seq: u64,
}

/// Result of reading from a position.
pub struct ReadBatch {
    pub messages: Vec<StoredMessage>,
    /// Where the next read should start (skips over set-aside segments).
    pub next_pos: u64,
    /// Sequence number at `next_pos` when known from a skip (None if derived from messages).
    pub skipped_to_seq: Option<u64>,
}

/// Bytes a record with a body of `body_len` takes in the log: positions of a batch's records
/// follow from the head after it.
pub fn stored_len(body_len: usize) -> u64 {
    (RECORD_PREFIX + PAYLOAD_HEADER + body_len) as u64
}

fn encode_record(out: &mut Vec<u8>, seq: u64, rec: &NewRecord) {
    let payload_len = PAYLOAD_HEADER + rec.body.len();
    let start = out.len();
    out.extend_from_slice(&(payload_len as u32).to_be_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&rec.timestamp_ns.to_be_bytes());
    out.extend_from_slice(&rec.id.0.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&rec.attempts.to_be_bytes());
    out.extend_from_slice(&rec.deliver_at_ns.to_be_bytes());
    out.extend_from_slice(rec.body);
    let crc = crc32fast::hash(&out[start + RECORD_PREFIX..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

enum Decoded {
    Record(StoredMessage),
    /// Not enough bytes buffered for the whole record; needs this many in total.
    Incomplete(usize),
    Corrupt,
}

fn decode_record(buf: &[u8], pos: u64, max_payload: usize) -> Decoded {
    if buf.len() < RECORD_PREFIX {
        return Decoded::Incomplete(RECORD_PREFIX);
    }
    let len = u32::from_be_bytes(buf[0..4].try_into().unwrap()) as usize;
    if !(PAYLOAD_HEADER..=max_payload).contains(&len) {
        return Decoded::Corrupt;
    }
    if buf.len() < RECORD_PREFIX + len {
        return Decoded::Incomplete(RECORD_PREFIX + len);
    }
    let crc = u32::from_be_bytes(buf[4..8].try_into().unwrap());
    let p = &buf[RECORD_PREFIX..RECORD_PREFIX + len];
    if crc32fast::hash(p) != crc {
        return Decoded::Corrupt;
    }
    let u64_at = |i: usize| u64::from_be_bytes(p[i..i + 8].try_into().unwrap());
    Decoded::Record(StoredMessage {
        pos,
        next_pos: pos + (RECORD_PREFIX + len) as u64,
        timestamp_ns: u64_at(0) as i64,
        id: MessageId(u64_at(8)),
        seq: u64_at(16),
        attempts: u16::from_be_bytes(p[24..26].try_into().unwrap()),
        deliver_at_ns: u64_at(26) as i64,
        body: Bytes::copy_from_slice(&p[PAYLOAD_HEADER..]),
    })
}

#[derive(Debug, Clone)]
struct Segment {
    start: u64,
    /// Bytes of valid records in the file.
    len: u64,
    first_seq: u64,
}

/// The on-disk log of one durable topic. Callers hold it behind a mutex.
pub struct DiskLog {
    dir: PathBuf,
    segments: BTreeMap<u64, Segment>,
    active: File,
    head: LogHead,
    max_segment_bytes: u64,
    max_payload: usize,
    scratch: Vec<u8>,
    /// Bytes appended since the last fsync of the active segment.
    unsynced: bool,
    appends_since_sync: u64,
}

fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:020}.seg"))
}

impl DiskLog {
    /// Opens (or creates) the log in `dir`, cutting off a torn tail in the last segment.
    pub fn open(dir: &Path, max_segment_bytes: u64, max_msg_size: usize) -> io::Result<DiskLog> {
        fs::create_dir_all(dir)?;
        let max_payload = PAYLOAD_HEADER + max_msg_size.max(1);
        let mut starts: Vec<u64> = fs::read_dir(dir)?
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
        let mut segments = BTreeMap::new();
        let mut head = LogHead::default();
        for (i, &start) in starts.iter().enumerate() {
            let path = segment_path(dir, start);
            let (len, first_seq, next_seq) = if i + 1 == starts.len() {
                // Only the last segment can have a torn tail; earlier ones were complete at roll.
                let file_len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let (len, first_seq, next_seq) = scan_valid_prefix(&path, start, max_payload)?;
                if len < file_len {
                    let f = OpenOptions::new().write(true).open(&path)?;
                    f.set_len(len)?;
                    f.sync_all()?;
                }
                if len == 0 {
                    (0, head.seq, head.seq)
                } else {
                    (len, first_seq, next_seq)
                }
            } else {
                let first_seq = read_first_seq(&path)?.unwrap_or(head.seq);
                (fs::metadata(&path)?.len(), first_seq, first_seq)
            };
            segments.insert(
                start,
                Segment {
                    start,
                    len,
                    first_seq,
                },
            );
            head = LogHead {
                pos: start + len,
                seq: next_seq,
            };
        }
        let last_start = *segments.keys().next_back().unwrap();
        let active = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(dir, last_start))?;
        Ok(DiskLog {
            dir: dir.to_path_buf(),
            segments,
            active,
            head,
            max_segment_bytes: max_segment_bytes.max(1024),
            max_payload,
            scratch: Vec::new(),
            unsynced: false,
            appends_since_sync: 0,
        })
    }

    pub fn head(&self) -> LogHead {
        self.head
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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
        if let Err(e) = self.active.write_all(&self.scratch) {
            // A partial write would leave garbage ahead of the next record: cut it off.
            let _ = self.active.set_len(self.head.pos - self.active_start());
            return Err(e);
        }
        let start = self.active_start();
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
        self.active.sync_data()?;
        let start = self.head.pos;
        self.active = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(&self.dir, start))?;
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
    pub fn sync_handle(&mut self) -> io::Result<(File, LogHead)> {
        self.unsynced = false;
        self.appends_since_sync = 0;
        Ok((self.active.try_clone()?, self.head))
    }

    /// Appends records already encoded (a replica's copy of another broker's log) at `pos`,
    /// the position they have in that log. `records` must have passed `check_records`, which
    /// gave `span`. A `pos` past the head leaves a gap: a new segment starts there, as if the
    /// segments in between had been released. A `pos` before the head is refused.
    pub fn append_raw(&mut self, pos: u64, records: &[u8], span: RecordSpan) -> io::Result<LogHead> {
        if pos < self.head.pos {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "append at {pos} overlaps the log, which ends at {}",
                    self.head.pos
                ),
            ));
        }
        let active_len = self.head.pos - self.active_start();
        if pos > self.head.pos {
            if active_len == 0 {
                // Nothing was written to the active segment: it is replaced, not kept empty.
                let start = self.active_start();
                self.segments.remove(&start);
                let _ = fs::remove_file(segment_path(&self.dir, start));
            }
            self.head = LogHead {
                pos,
                seq: span.first_seq,
            };
            self.roll()?;
        } else if active_len > 0 && active_len + records.len() as u64 > self.max_segment_bytes {
            self.roll()?;
        }
        if let Err(e) = self.active.write_all(records) {
            let _ = self.active.set_len(self.head.pos - self.active_start());
            return Err(e);
        }
        let start = self.active_start();
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
            let _ = fs::remove_file(segment_path(&self.dir, start));
        }
    }

    /// Where to read `pos` from: the segment's start and the readable length.
    fn locate(&self, pos: u64) -> Option<(u64, u64, u64)> {
        let (_, seg) = self.segments.range(..=pos).next_back()?;
        Some((seg.start, seg.len, seg.first_seq))
    }

    /// The segment after the one holding `pos`, for skipping over damage.
    fn next_segment_after(&self, pos: u64) -> Option<(u64, u64)> {
        self.segments
            .range(pos + 1..)
            .next()
            .map(|(_, s)| (s.start, s.first_seq))
    }

    fn set_aside(&mut self, start: u64) {
        if start == self.active_start() {
            return;
        }
        self.segments.remove(&start);
        let path = segment_path(&self.dir, start);
        let bad = path.with_extension("seg.bad");
        let _ = fs::rename(&path, &bad);
        eprintln!(
            "[nsqd] ERROR: corrupt log segment {} set aside as {}",
            path.display(),
            bad.display()
        );
    }

    /// Deletes every file of the log (topic deletion).
    pub fn destroy(self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// What a buffer of whole encoded records holds (see `check_records`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    pub count: u64,
    pub first_seq: u64,
    /// The sequence number after the last record.
    pub next_seq: u64,
}

/// Checks that `buf` is a run of whole, intact records (length bounds, CRC, consecutive
/// sequence numbers), without copying any body: records received from another broker are
/// checked this way before they are written. None when anything is wrong or `buf` is empty.
pub fn check_records(buf: &[u8], max_payload: usize) -> Option<RecordSpan> {
    let mut at = 0usize;
    let mut span: Option<RecordSpan> = None;
    while at < buf.len() {
        let rest = &buf[at..];
        if rest.len() < RECORD_PREFIX {
            return None;
        }
        let len = u32::from_be_bytes(rest[0..4].try_into().unwrap()) as usize;
        if !(PAYLOAD_HEADER..=max_payload).contains(&len) || rest.len() < RECORD_PREFIX + len {
            return None;
        }
        let payload = &rest[RECORD_PREFIX..RECORD_PREFIX + len];
        if crc32fast::hash(payload) != u32::from_be_bytes(rest[4..8].try_into().unwrap()) {
            return None;
        }
        let seq = u64::from_be_bytes(payload[16..24].try_into().unwrap());
        span = match span {
            None => Some(RecordSpan {
                count: 1,
                first_seq: seq,
                next_seq: seq.checked_add(1)?,
            }),
            Some(s) if s.next_seq == seq => Some(RecordSpan {
                count: s.count + 1,
                next_seq: seq.checked_add(1)?,
                ..s
            }),
            Some(_) => return None,
        };
        at += RECORD_PREFIX + len;
    }
    span
}

/// Finds how much of a segment holds whole, valid records, reading it in bounded chunks.
/// Returns (valid length, first sequence, next sequence).
fn scan_valid_prefix(path: &Path, start: u64, max_payload: usize) -> io::Result<(u64, u64, u64)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0, 0)),
        Err(e) => return Err(e),
    };
    let mut buf = vec![0u8; READ_CHUNK];
    let mut valid = 0u64;
    let mut first_seq = None;
    let mut next_seq = 0;
    loop {
        let n = read_full_at(&file, &mut buf, valid)?;
        let mut off = 0usize;
        let mut grow_to = None;
        loop {
            match decode_record(&buf[off..n], start + valid + off as u64, max_payload) {
                Decoded::Record(m) => {
                    first_seq.get_or_insert(m.seq);
                    next_seq = m.seq + 1;
                    off = (m.next_pos - start - valid) as usize;
                }
                Decoded::Incomplete(need) => {
                    // A record larger than the whole buffer: read again with room for it.
                    if off == 0 && n == buf.len() {
                        grow_to = Some(need);
                    }
                    break;
                }
                Decoded::Corrupt => break,
            }
        }
        if let Some(need) = grow_to {
            buf.resize(need, 0);
            continue;
        }
        if off == 0 {
            // End of file, or a torn/corrupt record: everything before `valid` is good.
            return Ok((valid, first_seq.unwrap_or(0), next_seq));
        }
        valid += off as u64;
    }
}

/// The sequence number of a segment's first record, read from its header.
fn read_first_seq(path: &Path) -> io::Result<Option<u64>> {
    let f = File::open(path)?;
    let mut buf = [0u8; RECORD_PREFIX + PAYLOAD_HEADER];
    if read_full_at(&f, &mut buf, 0)? < buf.len() {
        return Ok(None);
    }
    let seq_at = RECORD_PREFIX + 16;
    Ok(Some(u64::from_be_bytes(
        buf[seq_at..seq_at + 8].try_into().unwrap(),
    )))
}

/// A channel's reading handle: keeps segment files open between reads.
#[derive(Default)]
pub struct LogReader {
    open: Option<(u64, File)>,
    buf: Vec<u8>,
}

impl LogReader {
    /// Reads up to `max_messages` records starting at `pos`, not beyond `limit` (a head).
    pub fn read(
        &mut self,
        log: &parking_lot::Mutex<DiskLog>,
        pos: u64,
        limit: u64,
        max_messages: usize,
    ) -> io::Result<ReadBatch> {
        self.read_chunked(log, pos, limit, max_messages, READ_CHUNK)
    }

    /// `read` with a chosen read-ahead: streaming wants large chunks, a single record small ones.
    fn read_chunked(
        &mut self,
        log: &parking_lot::Mutex<DiskLog>,
        pos: u64,
        limit: u64,
        max_messages: usize,
        chunk: usize,
    ) -> io::Result<ReadBatch> {
        let mut messages = Vec::new();
        let mut pos = pos;
        let mut skipped_to_seq = None;
        while messages.len() < max_messages && pos < limit {
            let (seg_start, seg_len, dir, max_payload) = {
                let l = log.lock();
                match l.locate(pos) {
                    Some((s, len, _)) if pos < s + len => (s, len, l.dir.clone(), l.max_payload),
                    _ => match l.next_segment_after(pos) {
                        // The position fell into a removed or set-aside segment.
                        Some((next, seq)) => {
                            pos = next;
                            skipped_to_seq = Some(seq);
                            continue;
                        }
                        None => break,
                    },
                }
            };
            let readable = (seg_start + seg_len).min(limit) - pos;
            let file = match &self.open {
                Some((s, f)) if *s == seg_start => f,
                _ => {
                    let f = File::open(segment_path(&dir, seg_start))?;
                    self.open = Some((seg_start, f));
                    &self.open.as_ref().unwrap().1
                }
            };
            let want = (readable as usize).min(chunk.max(RECORD_PREFIX));
            self.buf.resize(want, 0);
            let n = read_full_at(file, &mut self.buf, pos - seg_start)?;
            self.buf.truncate(n);
            let mut off = 0usize;
            let mut corrupt = false;
            while messages.len() < max_messages && off < self.buf.len() {
                match decode_record(&self.buf[off..], pos + off as u64, max_payload) {
                    Decoded::Record(m) => {
                        off = (m.next_pos - pos) as usize;
                        messages.push(m);
                    }
                    Decoded::Incomplete(need) => {
                        if off == 0 {
                            if need as u64 > readable {
                                corrupt = true;
                            } else {
                                // One record larger than the chunk: read exactly it.
                                self.buf.resize(need, 0);
                                let n = read_full_at(file, &mut self.buf, pos - seg_start)?;
                                if n < need {
                                    corrupt = true;
                                }
                                continue;
                            }
                        }
                        break;
                    }
                    Decoded::Corrupt => {
                        corrupt = true;
                        break;
                    }
                }
            }
            pos += off as u64;
            if corrupt {
                let mut l = log.lock();
                let next = l.next_segment_after(seg_start);
                l.set_aside(seg_start);
                self.open = None;
                match next {
                    Some((next, seq)) => {
                        pos = next;
                        skipped_to_seq = Some(seq);
                    }
                    None => {
                        let head = l.head();
                        pos = head.pos;
                        skipped_to_seq = Some(head.seq);
                        break;
                    }
                }
            } else if off == 0 {
                break;
            }
        }
        if !messages.is_empty() {
            skipped_to_seq = None;
        }
        Ok(ReadBatch {
            messages,
            next_pos: pos,
            skipped_to_seq,
        })
    }

    /// Reads the single record at `pos` (a requeued or deferred message).
    pub fn read_one(
        &mut self,
        log: &parking_lot::Mutex<DiskLog>,
        pos: u64,
    ) -> io::Result<Option<StoredMessage>> {
        let limit = log.lock().head().pos;
        // Most messages fit in one page; a larger one is completed by an exact second read.
        let batch = self.read_chunked(log, pos, limit, 1, 4096)?;
        Ok(batch.messages.into_iter().next().filter(|m| m.pos == pos))
    }
}

impl LogReader {
    /// Appends to `out` the encoded records from `pos` (whole records only, within one
    /// segment, not beyond `limit`, at most `max_bytes` unless the first record alone is
    /// larger), exactly as they are stored: what replication ships to peers. Returns where the
    /// bytes start, which is past `pos` when `pos` lies in a released segment; None when
    /// nothing is readable before `limit`.
    pub fn read_raw(
        &mut self,
        log: &parking_lot::Mutex<DiskLog>,
        pos: u64,
        limit: u64,
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> io::Result<Option<u64>> {
        let (pos, seg_start, seg_len, dir) = {
            let l = log.lock();
            match l.locate(pos) {
                Some((s, len, _)) if pos < s + len => (pos, s, len, l.dir.clone()),
                _ => match l.next_segment_after(pos) {
                    Some((next, _)) => {
                        let (s, len, _) = l.locate(next).unwrap();
                        (next, s, len, l.dir.clone())
                    }
                    None => return Ok(None),
                },
            }
        };
        let end = (seg_start + seg_len).min(limit);
        if pos >= end {
            return Ok(None);
        }
        let file = match &self.open {
            Some((s, f)) if *s == seg_start => f,
            _ => {
                let f = match File::open(segment_path(&dir, seg_start)) {
                    Ok(f) => f,
                    // Released meanwhile: the caller asks again and skips to what is left.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                };
                self.open = Some((seg_start, f));
                &self.open.as_ref().unwrap().1
            }
        };
        let readable = (end - pos) as usize;
        let start = out.len();
        out.resize(start + readable.min(max_bytes.max(RECORD_PREFIX)), 0);
        let n = read_full_at(file, &mut out[start..], pos - seg_start)?;
        out.truncate(start + n);
        // Keep whole records: walk the lengths, stop before a record cut short.
        let mut whole = 0usize;
        while start + whole + RECORD_PREFIX <= out.len() {
            let len = u32::from_be_bytes(out[start + whole..start + whole + 4].try_into().unwrap()) as usize;
            let next = whole + RECORD_PREFIX + len;
            if start + next > out.len() {
                if whole == 0 && next <= readable {
                    // One record larger than `max_bytes`: read exactly it.
                    out.resize(start + next, 0);
                    let n = read_full_at(file, &mut out[start..], pos - seg_start)?;
                    out.truncate(start + n);
                    if n == next {
                        whole = next;
                    }
                }
                break;
            }
            whole = next;
        }
        out.truncate(start + whole);
        if whole == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no whole record at {pos} in segment {seg_start}"),
            ));
        }
        Ok(Some(pos))
    }

    /// Finds the record with `id`. IDs rise with position in everything a topic's GUID factory
    /// wrote, so a binary search over the segments' first IDs picks the one segment to scan,
    /// and the scan reads record headers only until it reaches or passes the ID.
    pub fn find_id(
        &mut self,
        log: &parking_lot::Mutex<DiskLog>,
        id: MessageId,
    ) -> io::Result<Option<StoredMessage>> {
        let (dir, segments) = {
            let l = log.lock();
            let segs: Vec<(u64, u64)> = l.segments.values().map(|s| (s.start, s.len)).collect();
            (l.dir.clone(), segs)
        };
        let first_id = |start: u64, len: u64| -> io::Result<Option<u64>> {
            if len < (RECORD_PREFIX + PAYLOAD_HEADER) as u64 {
                return Ok(None);
            }
            let mut buf = [0u8; RECORD_PREFIX + 16];
            let f = File::open(segment_path(&dir, start))?;
            read_full_at(&f, &mut buf, 0)?;
            Ok(Some(u64::from_be_bytes(
                buf[RECORD_PREFIX + 8..].try_into().unwrap(),
            )))
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
        let file = File::open(segment_path(&dir, start))?;
        let mut found = None;
        walk_headers(&file, 0, len, |off, header| {
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
        let (dir, segments) = {
            let l = log.lock();
            let segs: Vec<(u64, u64)> = l
                .segments
                .values()
                .filter(|s| s.start + s.len > from && s.start < to)
                .map(|s| (s.start, s.len))
                .collect();
            (l.dir.clone(), segs)
        };
        let mut out = Vec::new();
        for (start, len) in segments {
            let file = match File::open(segment_path(&dir, start)) {
                Ok(f) => f,
                // Released or set aside meanwhile: nothing there is unread any more.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let end = len.min(to - start);
            walk_headers(&file, from.saturating_sub(start), end, |off, header| {
                if header.deliver_at_ns > after_ns {
                    out.push(RecordHeader {
                        pos: start + off,
                        ..header
                    });
                }
                true
            })?;
        }
        Ok(out)
    }
}

/// A record's fixed fields, without its body.
#[derive(Debug, Clone, Copy)]
pub struct RecordHeader {
    pub pos: u64,
    pub seq: u64,
    pub id: MessageId,
    pub deliver_at_ns: i64,
}

/// Walks the record headers of one segment file from `from` to `end` (offsets in the file),
/// reading large chunks and skipping bodies. `visit` gets each record's offset and header and
/// says whether to go on. A length that cannot be a record ends the walk: whoever reads that
/// record with its checksum deals with the damage.
fn walk_headers(
    file: &File,
    from: u64,
    end: u64,
    mut visit: impl FnMut(u64, RecordHeader) -> bool,
) -> io::Result<()> {
    const HEADER: usize = RECORD_PREFIX + PAYLOAD_HEADER;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut off = from;
    while off < end {
        let n = read_full_at(file, &mut buf, off)?.min((end - off) as usize);
        let mut at = 0usize;
        while at + HEADER <= n {
            let u64_at = |i: usize| u64::from_be_bytes(buf[at + i..at + i + 8].try_into().unwrap());
            let rec_len = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            if rec_len < PAYLOAD_HEADER {
                return Ok(());
            }
            let header = RecordHeader {
                pos: 0,
                id: MessageId(u64_at(RECORD_PREFIX + 8)),
                seq: u64_at(RECORD_PREFIX + 16),
                deliver_at_ns: u64_at(RECORD_PREFIX + 26) as i64,
            };
            if !visit(off + at as u64, header) {
                return Ok(());
            }
            at += RECORD_PREFIX + rec_len;
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

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
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
        ReadBatch {
            next_pos: p,
            skipped_to_seq: if messages.is_empty() && start != pos {
                Some(start)
            } else {
                None
            },
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

    #[test]
    fn append_read_roll_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = DiskLog::open(dir.path(), 2048, 1024).unwrap();
        let body = [b'x'; 200];
        for i in 0..30 {
            log.append(&[rec(&body, i)]).unwrap();
        }
        let head = log.head();
        assert_eq!(head.seq, 30);
        assert!(log.segments.len() > 2, "should have rolled");
        let log = Mutex::new(log);
        let mut reader = LogReader::default();
        let batch = reader.read(&log, 0, head.pos, 100).unwrap();
        assert_eq!(batch.messages.len(), 30);
        assert_eq!(batch.next_pos, head.pos);
        assert!(batch
            .messages
            .iter()
            .enumerate()
            .all(|(i, m)| m.seq == i as u64 && m.id.0 == i as u64));
        drop(log);
        // A torn tail (half a record) is cut off at reopen.
        let last = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .max()
            .unwrap();
        let mut f = OpenOptions::new().append(true).open(&last).unwrap();
        f.write_all(&[0, 0, 0, 99, 1, 2]).unwrap();
        let log = DiskLog::open(dir.path(), 2048, 1024).unwrap();
        assert_eq!(log.head(), head);
    }

    #[test]
    fn records_larger_than_a_read_chunk_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![b'z'; READ_CHUNK + 1000];
        let mut log = DiskLog::open(dir.path(), 100 << 20, 1 << 20).unwrap();
        for i in 0..3 {
            log.append(&[rec(&big, i)]).unwrap();
        }
        let head = log.head();
        drop(log);
        let log = DiskLog::open(dir.path(), 100 << 20, 1 << 20).unwrap();
        assert_eq!(log.head(), head);
        let log = Mutex::new(log);
        let batch = LogReader::default().read(&log, 0, head.pos, 10).unwrap();
        assert_eq!(batch.messages.len(), 3);
        assert!(batch.messages.iter().all(|m| m.body.len() == big.len()));
    }

    #[test]
    fn corrupt_segment_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = DiskLog::open(dir.path(), 1024, 1024).unwrap();
        let body = [b'y'; 300];
        for i in 0..10 {
            log.append(&[rec(&body, i)]).unwrap();
        }
        let head = log.head();
        let first = segment_path(dir.path(), 0);
        let mut data = fs::read(&first).unwrap();
        data[20] ^= 0xff;
        fs::write(&first, data).unwrap();
        let log = Mutex::new(log);
        let mut reader = LogReader::default();
        let batch = reader.read(&log, 0, head.pos, 100).unwrap();
        assert!(!batch.messages.is_empty());
        assert!(batch.messages.iter().all(|m| m.pos > 0));
        assert!(dir.path().join(format!("{:020}.seg.bad", 0)).exists());
    }

    #[test]
    fn find_id_searches_every_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = DiskLog::open(dir.path(), 1024, 1 << 20).unwrap();
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
