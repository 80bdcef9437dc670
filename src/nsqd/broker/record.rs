//! The log record format: how one message is laid out in a topic's segment files, and how it
//! is checked and decoded.
//!
//! Record: `[4B len][4B crc32(payload)][payload]`, payload =
//! `[8B timestamp ns][8B id][8B seq][2B attempts][8B deliver_at ns][body]`. Sequence numbers
//! are consecutive across a topic's whole log, so the record after one with sequence `s`
//! always carries `s + 1`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use bytes::Bytes;

use crate::protocol::MessageId;

pub const RECORD_PREFIX: usize = 8;
pub const PAYLOAD_HEADER: usize = 8 + 8 + 8 + 2 + 8;
/// The smallest a record can be (an empty body): bounds how many records fit in a stretch.
pub const MIN_RECORD: usize = RECORD_PREFIX + PAYLOAD_HEADER;
/// Offset of the sequence number within a record.
pub const SEQ_AT: usize = RECORD_PREFIX + 16;

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

/// A record's fixed fields, without its body.
#[derive(Debug, Clone, Copy)]
pub struct RecordHeader {
    pub pos: u64,
    pub seq: u64,
    pub id: MessageId,
    pub deliver_at_ns: i64,
}

/// The largest payload a log written with `--max-msg-size=max_msg_size` can hold: a longer
/// length field cannot have been written, so it is damage.
pub fn max_payload(max_msg_size: usize) -> usize {
    PAYLOAD_HEADER + max_msg_size.max(1)
}

/// Bytes a record with a body of `body_len` takes in the log: positions of a batch's records
/// follow from the head after it.
pub fn stored_len(body_len: usize) -> u64 {
    (RECORD_PREFIX + PAYLOAD_HEADER + body_len) as u64
}

pub fn encode_record(out: &mut Vec<u8>, seq: u64, rec: &NewRecord) {
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

#[derive(Debug)]
pub enum Decoded {
    Record(StoredMessage),
    /// Not enough bytes buffered for the whole record; needs this many in total.
    Incomplete(usize),
    Corrupt,
}

/// What `check_record` found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// An intact record of this many bytes (prefix included).
    Record(usize),
    /// Not enough bytes buffered for the whole record; needs this many in total.
    Incomplete(usize),
    Corrupt,
}

/// Checks the record at the start of `buf`: its length bounds and its checksum, without
/// copying anything. `decode_record` decodes only what passes this.
pub fn check_record(buf: &[u8], max_payload: usize) -> Checked {
    if buf.len() < RECORD_PREFIX {
        return Checked::Incomplete(RECORD_PREFIX);
    }
    let len = payload_len(buf);
    if !(PAYLOAD_HEADER..=max_payload).contains(&len) {
        return Checked::Corrupt;
    }
    if buf.len() < RECORD_PREFIX + len {
        return Checked::Incomplete(RECORD_PREFIX + len);
    }
    let crc = u32::from_be_bytes(buf[4..8].try_into().unwrap());
    if crc32fast::hash(&buf[RECORD_PREFIX..RECORD_PREFIX + len]) != crc {
        return Checked::Corrupt;
    }
    Checked::Record(RECORD_PREFIX + len)
}

/// What a run of whole records holds (see `check_records`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    pub count: u64,
    pub first_seq: u64,
    /// The sequence number after the last record.
    pub next_seq: u64,
}

/// Checks that `buf` is a run of whole, intact records with consecutive sequence numbers
/// (records another broker sends are checked this way before they are written). None when
/// anything is wrong or `buf` is empty.
pub fn check_records(buf: &[u8], max_payload: usize) -> Option<RecordSpan> {
    let mut at = 0usize;
    let mut span: Option<RecordSpan> = None;
    while at < buf.len() {
        let Checked::Record(len) = check_record(&buf[at..], max_payload) else {
            return None;
        };
        let seq = header_of(&buf[at..], 0).seq;
        let next_seq = seq.checked_add(1)?;
        span = match span {
            None => Some(RecordSpan {
                count: 1,
                first_seq: seq,
                next_seq,
            }),
            Some(s) if s.next_seq == seq => Some(RecordSpan {
                count: s.count + 1,
                next_seq,
                ..s
            }),
            Some(_) => return None,
        };
        at += len;
    }
    span
}

/// Decodes the record at the start of `buf` (found at log position `pos`), checking its length
/// and checksum.
pub fn decode_record(buf: &[u8], pos: u64, max_payload: usize) -> Decoded {
    let len = match check_record(buf, max_payload) {
        Checked::Record(whole) => whole - RECORD_PREFIX,
        Checked::Incomplete(need) => return Decoded::Incomplete(need),
        Checked::Corrupt => return Decoded::Corrupt,
    };
    let p = &buf[RECORD_PREFIX..RECORD_PREFIX + len];
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

/// The payload length a record's first bytes claim (`buf` holds at least 4 bytes).
pub fn payload_len(buf: &[u8]) -> usize {
    u32::from_be_bytes(buf[0..4].try_into().unwrap()) as usize
}

/// The fixed fields a record's first `MIN_RECORD` bytes claim, unchecked.
pub fn header_of(buf: &[u8], pos: u64) -> RecordHeader {
    let u64_at = |i: usize| u64::from_be_bytes(buf[i..i + 8].try_into().unwrap());
    RecordHeader {
        pos,
        id: MessageId(u64_at(RECORD_PREFIX + 8)),
        seq: u64_at(SEQ_AT),
        deliver_at_ns: u64_at(RECORD_PREFIX + 26) as i64,
    }
}

/// Reads as much of `buf` as the file has from `offset`; short only at end of file.
pub fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
