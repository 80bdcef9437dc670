//! Finding damage in a topic's log segments and where intact records resume after it.
//!
//! A torn tail is only what a crash leaves at the END of the last segment: the beginning of a
//! record whose write was cut short, or bytes after which no intact record follows. Anything
//! else that fails its checksum is damage with intact records after it: readers skip exactly
//! the damaged stretch (resynchronising on the next offset where a record with a valid
//! checksum and a sequence number that can follow starts) and serve the rest. The damaged
//! bytes are copied to a `.bad` side file before anything is cut or skipped.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use super::files::FileCache;
use super::record::{
    decode_record, header_of, payload_len, read_full_at, Decoded, MIN_RECORD, PAYLOAD_HEADER, RECORD_PREFIX,
    SEQ_AT,
};
use crate::protocol::MessageId;

/// Bytes read per disk read while scanning.
const SCAN_CHUNK: usize = 256 * 1024;

/// Which sequence numbers an intact record after damage may carry.
#[derive(Debug, Clone, Copy)]
pub struct SeqWindow {
    min: u64,
    exact: bool,
}

impl SeqWindow {
    /// The damaged record should have carried `seq`: the next intact record carries `seq` plus
    /// at most one per `MIN_RECORD` bytes skipped, since every record is at least that long.
    pub fn after(seq: u64) -> SeqWindow {
        SeqWindow {
            min: seq,
            exact: true,
        }
    }

    /// Only a lower bound is known (damage at the start of a segment).
    pub fn at_least(seq: u64) -> SeqWindow {
        SeqWindow {
            min: seq,
            exact: false,
        }
    }

    fn admits(&self, seq: u64, skipped_bytes: u64) -> bool {
        seq >= self.min && (!self.exact || seq - self.min <= skipped_bytes / MIN_RECORD as u64)
    }
}

/// The first offset in `(from, end)` of `file` where a whole record with a valid checksum and
/// a sequence number `window` admits starts, with that sequence number.
pub fn resync(
    file: &File,
    from: u64,
    end: u64,
    window: SeqWindow,
    max_payload: usize,
) -> io::Result<Option<(u64, u64)>> {
    let mut buf = vec![0u8; SCAN_CHUNK];
    let mut payload = Vec::new();
    let mut base = from + 1;
    while base + MIN_RECORD as u64 <= end {
        let want = buf.len().min((end - base) as usize);
        let n = read_full_at(file, &mut buf[..want], base)?;
        if n < MIN_RECORD {
            break;
        }
        for i in 0..=n - MIN_RECORD {
            let at = base + i as u64;
            let len = payload_len(&buf[i..]);
            if !(PAYLOAD_HEADER..=max_payload).contains(&len) || at + (RECORD_PREFIX + len) as u64 > end {
                continue;
            }
            let seq = u64::from_be_bytes(buf[i + SEQ_AT..i + SEQ_AT + 8].try_into().unwrap());
            if !window.admits(seq, at - from) {
                continue;
            }
            let crc = u32::from_be_bytes(buf[i + 4..i + 8].try_into().unwrap());
            let body_end = i + RECORD_PREFIX + len;
            let checksum = if body_end <= n {
                crc32fast::hash(&buf[i + RECORD_PREFIX..body_end])
            } else {
                payload.resize(len, 0);
                if read_full_at(file, &mut payload, at + RECORD_PREFIX as u64)? < len {
                    continue;
                }
                crc32fast::hash(&payload)
            };
            if checksum == crc {
                return Ok(Some((at, seq)));
            }
        }
        base += (n - MIN_RECORD + 1) as u64;
    }
    Ok(None)
}

/// A damaged stretch of a segment with intact records after it.
#[derive(Debug, Clone, Copy)]
pub struct Skipped {
    /// File offsets: the damaged bytes are `[from, to)`; an intact record starts at `to`.
    pub from: u64,
    pub to: u64,
    /// Sequence number of the record at `to`.
    pub to_seq: u64,
    /// Sequence number the first damaged record should have had, when known.
    pub expected_seq: Option<u64>,
}

/// What a full scan of a segment found.
#[derive(Debug)]
pub struct SegmentScan {
    pub first_seq: Option<u64>,
    pub next_seq: Option<u64>,
    pub skipped: Vec<Skipped>,
    /// Where the intact records end: what follows is a torn tail.
    pub valid_end: u64,
    /// Whether the tail is the start of a record that runs past the end of the file (a write
    /// the crash cut short) rather than damaged bytes.
    pub tail_is_partial: bool,
}

/// Scans a whole segment of `file_len` bytes; `first` bounds the first record's sequence.
pub fn scan_segment(
    file: &File,
    file_len: u64,
    first: SeqWindow,
    max_payload: usize,
) -> io::Result<SegmentScan> {
    let mut scan = SegmentScan {
        first_seq: None,
        next_seq: None,
        skipped: Vec::new(),
        valid_end: file_len,
        tail_is_partial: false,
    };
    let mut buf = vec![0u8; SCAN_CHUNK];
    let mut off = 0u64;
    while off < file_len {
        let want = buf.len().min((file_len - off) as usize);
        let n = read_full_at(file, &mut buf[..want], off)?;
        if n == 0 {
            // The file is shorter than it was a moment ago: the log ends here.
            scan.valid_end = off;
            return Ok(scan);
        }
        let mut at = 0usize;
        let mut problem = None;
        while at < n {
            match decode_record(&buf[at..n], off + at as u64, max_payload) {
                Decoded::Record(m) => {
                    scan.first_seq.get_or_insert(m.seq);
                    scan.next_seq = Some(m.seq + 1);
                    at += (m.next_pos - m.pos) as usize;
                }
                Decoded::Incomplete(need) => {
                    if off + (at + need) as u64 > file_len {
                        problem = Some(true);
                    } else if at == 0 {
                        // One record larger than the buffer: make room and read it again.
                        buf.resize(need, 0);
                    }
                    break;
                }
                Decoded::Corrupt => {
                    problem = Some(false);
                    break;
                }
            }
        }
        off += at as u64;
        let Some(partial) = problem else {
            continue;
        };
        let window = scan.next_seq.map_or(first, SeqWindow::after);
        match resync(file, off, file_len, window, max_payload)? {
            Some((to, to_seq)) => {
                scan.skipped.push(Skipped {
                    from: off,
                    to,
                    to_seq,
                    expected_seq: scan.next_seq,
                });
                off = to;
            }
            None => {
                scan.valid_end = off;
                scan.tail_is_partial = partial;
                return Ok(scan);
            }
        }
    }
    Ok(scan)
}

/// The first record of a sealed segment, checked.
pub enum FirstRecord {
    Empty,
    Intact {
        seq: u64,
    },
    /// The segment starts with damage; intact records resume at offset `to`.
    AfterDamage {
        to: u64,
        seq: u64,
    },
    /// Nothing in the segment is intact.
    NoneIntact,
}

pub fn first_record(
    file: &File,
    file_len: u64,
    window: SeqWindow,
    max_payload: usize,
) -> io::Result<FirstRecord> {
    if file_len == 0 {
        return Ok(FirstRecord::Empty);
    }
    let mut buf = vec![0u8; 4096.min(file_len as usize)];
    let mut n = read_full_at(file, &mut buf, 0)?;
    loop {
        match decode_record(&buf[..n], 0, max_payload) {
            Decoded::Record(m) => return Ok(FirstRecord::Intact { seq: m.seq }),
            Decoded::Incomplete(need) if need as u64 <= file_len && need > n => {
                buf.resize(need, 0);
                n = read_full_at(file, &mut buf, 0)?;
            }
            _ => break,
        }
    }
    Ok(match resync(file, 0, file_len, window, max_payload)? {
        Some((to, seq)) => FirstRecord::AfterDamage { to, seq },
        None => FirstRecord::NoneIntact,
    })
}

/// The ID the damaged record at `from` claims, when its header still looks like the record
/// that should be there (its sequence number is the one expected).
pub fn claimed_id(file: &File, from: u64, expected_seq: Option<u64>) -> Option<MessageId> {
    let expected = expected_seq?;
    let mut buf = [0u8; MIN_RECORD];
    if read_full_at(file, &mut buf, from).ok()? < MIN_RECORD {
        return None;
    }
    let header = header_of(&buf, 0);
    (header.seq == expected).then_some(header.id)
}

/// What a skipped stretch lost, in words for the repair line.
pub fn lost_text(expected_seq: Option<u64>, to_seq: u64, id: Option<MessageId>) -> String {
    let id = id
        .map(|id| format!(", the first with ID {id}"))
        .unwrap_or_default();
    match expected_seq {
        Some(first) if to_seq == first + 1 => format!("lost 1 message (sequence {first}{id})"),
        Some(first) if to_seq > first => format!(
            "lost {} messages (sequence {first}..{}{id})",
            to_seq - first,
            to_seq - 1
        ),
        Some(_) => "no message lost".to_string(),
        None => format!("lost the messages before sequence {to_seq} in this segment{id}"),
    }
}

/// Copies `[from, to)` of `file` to `dest` (kept if it already exists: the same damage found
/// again).
pub fn save_copy(files: &FileCache, file: &File, from: u64, to: u64, dest: &Path) -> io::Result<()> {
    if dest.exists() {
        return Ok(());
    }
    let mut out = files.with_descriptor(|| File::create(dest))?;
    let mut buf = vec![0u8; SCAN_CHUNK];
    let mut at = from;
    while at < to {
        let want = buf.len().min((to - at) as usize);
        let n = read_full_at(file, &mut buf[..want], at)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nsqd::broker::record::{encode_record, NewRecord};

    fn segment(count: u64, first_seq: u64) -> (Vec<u8>, Vec<u64>) {
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        for i in 0..count {
            offsets.push(out.len() as u64);
            let body = format!("message {i} {}", "x".repeat(50));
            let rec = NewRecord {
                id: MessageId(1000 + i),
                timestamp_ns: 1,
                attempts: 0,
                deliver_at_ns: 0,
                body: body.as_bytes(),
            };
            encode_record(&mut out, first_seq + i, &rec);
        }
        (out, offsets)
    }

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        std::fs::write(&path, bytes).unwrap();
        let f = File::open(&path).unwrap();
        (dir, f)
    }

    #[test]
    fn a_flipped_byte_mid_segment_is_skipped_and_the_rest_kept() {
        let (mut bytes, offsets) = segment(100, 7);
        bytes[offsets[40] as usize + 50] ^= 0x40;
        let (_d, f) = file_with(&bytes);
        let scan = scan_segment(&f, bytes.len() as u64, SeqWindow::at_least(0), 1 << 20).unwrap();
        assert_eq!(scan.valid_end, bytes.len() as u64);
        assert_eq!((scan.first_seq, scan.next_seq), (Some(7), Some(107)));
        assert_eq!(scan.skipped.len(), 1);
        let s = scan.skipped[0];
        assert_eq!(
            (s.from, s.to, s.to_seq, s.expected_seq),
            (offsets[40], offsets[41], 48, Some(47))
        );
        assert_eq!(claimed_id(&f, s.from, s.expected_seq), Some(MessageId(1040)));
    }

    #[test]
    fn a_damaged_length_is_skipped_too() {
        let (mut bytes, offsets) = segment(50, 0);
        bytes[offsets[10] as usize + 1] ^= 0x10;
        let (_d, f) = file_with(&bytes);
        let scan = scan_segment(&f, bytes.len() as u64, SeqWindow::at_least(0), 1 << 20).unwrap();
        assert_eq!(scan.skipped.len(), 1);
        assert_eq!((scan.skipped[0].to, scan.skipped[0].to_seq), (offsets[11], 11));
        assert_eq!(scan.next_seq, Some(50));
    }

    #[test]
    fn a_partial_last_record_is_a_torn_tail() {
        let (bytes, offsets) = segment(20, 0);
        let cut = offsets[19] as usize + 20;
        let (_d, f) = file_with(&bytes[..cut]);
        let scan = scan_segment(&f, cut as u64, SeqWindow::at_least(0), 1 << 20).unwrap();
        assert!(scan.skipped.is_empty());
        assert_eq!(scan.valid_end, offsets[19]);
        assert!(scan.tail_is_partial);
        assert_eq!(scan.next_seq, Some(19));
    }

    #[test]
    fn damage_in_the_last_record_is_a_damaged_tail() {
        let (mut bytes, offsets) = segment(20, 0);
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        let (_d, f) = file_with(&bytes);
        let scan = scan_segment(&f, bytes.len() as u64, SeqWindow::at_least(0), 1 << 20).unwrap();
        assert_eq!(scan.valid_end, offsets[19]);
        assert!(!scan.tail_is_partial);
    }

    #[test]
    fn a_record_with_a_sequence_that_cannot_follow_is_not_a_resync_point() {
        // Two segments' worth of records glued together: the second run's sequence numbers
        // are far ahead, so it is not where the first run resumes.
        let (mut bytes, offsets) = segment(10, 0);
        let (other, _) = segment(10, 5000);
        bytes.truncate(offsets[5] as usize);
        bytes.extend_from_slice(&[0xEE; 100]);
        bytes.extend_from_slice(&other);
        let (_d, f) = file_with(&bytes);
        let found = resync(&f, offsets[5], bytes.len() as u64, SeqWindow::after(5), 1 << 20).unwrap();
        assert_eq!(found, None);
        let found = resync(
            &f,
            offsets[5],
            bytes.len() as u64,
            SeqWindow::at_least(5),
            1 << 20,
        )
        .unwrap();
        assert_eq!(found.map(|(_, seq)| seq), Some(5000));
    }

    #[test]
    fn first_record_damage_is_found() {
        let (mut bytes, offsets) = segment(10, 300);
        bytes[10] ^= 0xff;
        let (_d, f) = file_with(&bytes);
        match first_record(&f, bytes.len() as u64, SeqWindow::at_least(200), 1 << 20).unwrap() {
            FirstRecord::AfterDamage { to, seq } => assert_eq!((to, seq), (offsets[1], 301)),
            _ => panic!("damage at the start not found"),
        }
    }
}
