//! Replication's wire format: the frames brokers exchange over a peer's nsqd TCP listener once
//! a connection opened with `  R1` (plain) or `  RS` (TLS) instead of `  V2`.
//!
//! A frame is `[4B length][1B type][payload]`, big-endian; the length counts the type byte
//! and the payload. Decoding is pure and works on what is buffered: every length and count is
//! checked against the bytes present (and the frame against a bound) before anything is
//! allocated, and every name is checked, so a hostile peer gets an error, never a panic or a
//! path outside the data directory. Small, rare frames (HELLO, WELCOME, CLAIM…) carry JSON;
//! the frequent ones are binary.

use std::collections::BTreeMap;

use bytes::{Buf, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::nsqd::broker::journal::{ChannelSnapshot, CursorRange, OutstandingEntry};
use crate::protocol::names::{is_ephemeral, is_valid_channel_name, is_valid_topic_name};

/// What a replicating broker sends instead of `  V2`.
pub const MAGIC_PLAIN: [u8; 4] = *b"  R1";
/// Same, and a TLS handshake follows at once.
pub const MAGIC_TLS: [u8; 4] = *b"  RS";

/// Frames may always be this large; APPEND frames hold at most 1 MiB of records unless one
/// record alone is larger, so the owner's `--max-msg-size` is added on top.
pub const BASE_FRAME_LIMIT: usize = 16 << 20;
/// No peer can make a broker buffer more than this for one frame.
pub const HARD_FRAME_LIMIT: usize = 256 << 20;

const T_HELLO: u8 = 1;
const T_WELCOME: u8 = 2;
const T_APPEND: u8 = 3;
const T_ACK: u8 = 4;
const T_STATE: u8 = 5;
const T_TOPIC: u8 = 6;
const T_RELEASE: u8 = 7;
const T_DROP: u8 = 8;
const T_SYNCED: u8 = 9;
const T_PING: u8 = 10;
const T_CLAIM: u8 = 11;
const T_CLAIMED: u8 = 12;
const T_ADOPTED: u8 = 13;
const T_END: u8 = 14;
const T_ERROR: u8 = 15;

/// Where a topic's log (or its copy) ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub pos: u64,
    pub seq: u64,
}

/// The owner introduces itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub node: String,
    /// `broadcast_address:tcp_port`, what operators call the broker.
    pub name: String,
    /// Where the owner's TCP listener can be reached (probed before automatic adoption).
    pub tcp_address: String,
    pub epoch: u64,
    /// The owner's `--replicate-to` list: the other holders of its copies.
    pub peers: Vec<String>,
    pub replicas: u32,
    pub max_msg_size: u64,
}

/// The peer's answer to HELLO.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub node: String,
    /// Where each topic's copy ends.
    pub ends: BTreeMap<String, End>,
    /// Set when this owner (at an older epoch) was adopted, or a claim on it was granted.
    pub adopted: Option<AdoptionRecord>,
}

/// That an owner's copy was adopted, and up to where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptionRecord {
    pub owner: String,
    pub epoch: u64,
    pub adopter: String,
    /// What the adopter took, per topic; for a holder that only granted a claim, its own copy
    /// ends, which the adopter's are at least.
    pub ends: BTreeMap<String, End>,
    pub at_ns: i64,
}

/// One channel's state on the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelState {
    pub topic: String,
    pub channel: String,
    /// Increases with every change the owner ships (its clock, in ns).
    pub version: u64,
    pub paused: bool,
    pub snapshot: ChannelSnapshot,
}

/// A topic's metadata on the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicState {
    pub topic: String,
    pub version: u64,
    pub paused: bool,
    /// Where the backlog kept for a first channel starts, when the topic has no channel.
    pub orphan_start: Option<End>,
    pub channels: Vec<String>,
}

/// A holder about to adopt (or pulling before it adopts) asks another holder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub owner: String,
    pub epoch: u64,
    pub claimant: String,
    /// True for a claim (automatic adoption), false for a pull before an explicit adoption.
    pub claim: bool,
    pub ends: BTreeMap<String, End>,
    /// The claimant's state versions: `topic` and `topic/channel` → version.
    pub versions: BTreeMap<String, u64>,
}

/// The answer to CLAIM; what the claimant lacks follows, then END.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claimed {
    pub granted: bool,
    /// Who holds the claim when it is not granted.
    pub winner: Option<String>,
    pub holder: String,
    pub has_copy: bool,
    pub ends: BTreeMap<String, End>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Hello(Hello),
    Welcome(Welcome),
    /// Encoded log records exactly as stored, starting at `pos` of the owner's log.
    Append {
        topic: String,
        pos: u64,
        records: Bytes,
    },
    Ack {
        topic: String,
        end: End,
    },
    State(ChannelState),
    Topic(TopicState),
    Release {
        topic: String,
        pos: u64,
    },
    Drop {
        topic: String,
    },
    Synced {
        version: u64,
    },
    Ping,
    Claim(Claim),
    Claimed(Claimed),
    /// The adopter tells the other holders that the copy was adopted.
    Adopted(AdoptionRecord),
    End,
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(what: impl Into<String>) -> WireError {
    WireError(what.into())
}

/// A node id is what `replication.json` holds: 1 to 64 lower-case hex digits. It names a
/// directory, so nothing else may pass.
pub fn is_valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_replicated_topic(name: &str) -> bool {
    is_valid_topic_name(name) && !is_ephemeral(name)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn begin(out: &mut Vec<u8>, kind: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, kind]);
    at
}

fn finish(out: &mut [u8], at: usize) {
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Starts an APPEND frame whose `records_len` bytes of records the caller appends next.
pub fn put_append_header(out: &mut Vec<u8>, topic: &str, pos: u64, records_len: usize) {
    let len = 1 + 2 + topic.len() + 8 + records_len;
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.push(T_APPEND);
    put_str(out, topic);
    out.extend_from_slice(&pos.to_be_bytes());
}

fn put_json<T: Serialize>(out: &mut Vec<u8>, kind: u8, value: &T) {
    let at = begin(out, kind);
    serde_json::to_writer(&mut *out, value).expect("serializable");
    finish(out, at);
}

fn put_snapshot(out: &mut Vec<u8>, s: &ChannelSnapshot) {
    out.extend_from_slice(&s.base_seq.to_be_bytes());
    out.extend_from_slice(&(s.ranges.len() as u32).to_be_bytes());
    for r in &s.ranges {
        for v in [r.pos, r.seq, r.end_pos, r.end_seq] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    out.extend_from_slice(&(s.entries.len() as u32).to_be_bytes());
    for e in &s.entries {
        out.extend_from_slice(&e.pos.to_be_bytes());
        out.extend_from_slice(&e.attempts.to_be_bytes());
        out.extend_from_slice(&e.due_ns.to_be_bytes());
    }
}

/// Appends `frame`, encoded, to `out`.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    match frame {
        Frame::Hello(h) => put_json(out, T_HELLO, h),
        Frame::Welcome(w) => put_json(out, T_WELCOME, w),
        Frame::Append { topic, pos, records } => {
            put_append_header(out, topic, *pos, records.len());
            out.extend_from_slice(records);
        }
        Frame::Ack { topic, end } => {
            let at = begin(out, T_ACK);
            put_str(out, topic);
            out.extend_from_slice(&end.pos.to_be_bytes());
            out.extend_from_slice(&end.seq.to_be_bytes());
            finish(out, at);
        }
        Frame::State(c) => {
            let at = begin(out, T_STATE);
            put_str(out, &c.topic);
            put_str(out, &c.channel);
            out.extend_from_slice(&c.version.to_be_bytes());
            out.push(c.paused as u8);
            put_snapshot(out, &c.snapshot);
            finish(out, at);
        }
        Frame::Topic(t) => {
            let at = begin(out, T_TOPIC);
            put_str(out, &t.topic);
            out.extend_from_slice(&t.version.to_be_bytes());
            out.push(t.paused as u8);
            match t.orphan_start {
                Some(e) => {
                    out.push(1);
                    out.extend_from_slice(&e.pos.to_be_bytes());
                    out.extend_from_slice(&e.seq.to_be_bytes());
                }
                None => out.push(0),
            }
            out.extend_from_slice(&(t.channels.len() as u16).to_be_bytes());
            for c in &t.channels {
                put_str(out, c);
            }
            finish(out, at);
        }
        Frame::Release { topic, pos } => {
            let at = begin(out, T_RELEASE);
            put_str(out, topic);
            out.extend_from_slice(&pos.to_be_bytes());
            finish(out, at);
        }
        Frame::Drop { topic } => {
            let at = begin(out, T_DROP);
            put_str(out, topic);
            finish(out, at);
        }
        Frame::Synced { version } => {
            let at = begin(out, T_SYNCED);
            out.extend_from_slice(&version.to_be_bytes());
            finish(out, at);
        }
        Frame::Ping => {
            let at = begin(out, T_PING);
            finish(out, at);
        }
        Frame::Claim(c) => put_json(out, T_CLAIM, c),
        Frame::Claimed(c) => put_json(out, T_CLAIMED, c),
        Frame::Adopted(a) => put_json(out, T_ADOPTED, a),
        Frame::End => {
            let at = begin(out, T_END);
            finish(out, at);
        }
        Frame::Error(text) => {
            let at = begin(out, T_ERROR);
            out.extend_from_slice(text.as_bytes());
            finish(out, at);
        }
    }
}

/// Reads fields off a frame's payload, each checked against what is left.
struct Fields<'a> {
    data: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.data.len() < n {
            return Err(bad("frame ends early"));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn string(&mut self) -> Result<String, WireError> {
        let n = self.u16()? as usize;
        let raw = self.take(n)?;
        String::from_utf8(raw.to_vec()).map_err(|_| bad("name is not UTF-8"))
    }

    fn topic(&mut self) -> Result<String, WireError> {
        let t = self.string()?;
        if !is_replicated_topic(&t) {
            return Err(bad(format!("invalid topic name {t:?}")));
        }
        Ok(t)
    }

    fn channel(&mut self) -> Result<String, WireError> {
        let c = self.string()?;
        if !is_valid_channel_name(&c) || is_ephemeral(&c) {
            return Err(bad(format!("invalid channel name {c:?}")));
        }
        Ok(c)
    }

    /// A count of items each at least `item` bytes long, checked against what is left.
    fn count(&mut self, n: usize, item: usize) -> Result<usize, WireError> {
        if n.checked_mul(item).is_none_or(|need| need > self.data.len()) {
            return Err(bad("count larger than the frame"));
        }
        Ok(n)
    }

    fn done(&self) -> Result<(), WireError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(bad("trailing bytes in frame"))
        }
    }
}

fn snapshot(f: &mut Fields) -> Result<ChannelSnapshot, WireError> {
    let base_seq = f.u64()?;
    let n = f.u32()? as usize;
    let n = f.count(n, 32)?;
    let mut ranges = Vec::with_capacity(n);
    for _ in 0..n {
        let r = CursorRange {
            pos: f.u64()?,
            seq: f.u64()?,
            end_pos: f.u64()?,
            end_seq: f.u64()?,
        };
        if r.end_pos < r.pos || r.end_seq < r.seq {
            return Err(bad("cursor range ends before it starts"));
        }
        ranges.push(r);
    }
    let n = f.u32()? as usize;
    let n = f.count(n, 18)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        entries.push(OutstandingEntry {
            pos: f.u64()?,
            attempts: f.u16()?,
            due_ns: f.u64()? as i64,
        });
    }
    Ok(ChannelSnapshot {
        generation: 0,
        base_seq,
        ranges,
        entries,
    })
}

fn json<T: for<'de> Deserialize<'de>>(data: &[u8], what: &str) -> Result<T, WireError> {
    serde_json::from_slice(data).map_err(|e| bad(format!("bad {what}: {e}")))
}

fn check_ends(ends: &BTreeMap<String, End>) -> Result<(), WireError> {
    match ends.keys().find(|t| !is_replicated_topic(t)) {
        Some(t) => Err(bad(format!("invalid topic name {t:?}"))),
        None => Ok(()),
    }
}

fn check_node(id: &str) -> Result<(), WireError> {
    if is_valid_node_id(id) {
        Ok(())
    } else {
        Err(bad(format!("invalid node id {id:?}")))
    }
}

fn check_record(a: &AdoptionRecord) -> Result<(), WireError> {
    check_node(&a.owner)?;
    check_node(&a.adopter)?;
    check_ends(&a.ends)
}

/// Takes one whole frame off the front of `buf`. `Ok(None)`: more bytes are needed. A frame
/// longer than `max_frame` is an error before it is buffered.
pub fn decode(buf: &mut BytesMut, max_frame: usize) -> Result<Option<Frame>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
    if len == 0 {
        return Err(bad("empty frame"));
    }
    if len > max_frame.min(HARD_FRAME_LIMIT) {
        return Err(bad(format!(
            "frame of {len} bytes is over the limit of {max_frame}"
        )));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    buf.advance(4);
    let mut body = buf.split_to(len).freeze();
    let kind = body[0];
    body.advance(1);
    let frame = {
        let mut f = Fields { data: &body };
        let frame = match kind {
            T_HELLO => {
                let h: Hello = json(&body, "HELLO")?;
                check_node(&h.node)?;
                f.data = &[];
                Frame::Hello(h)
            }
            T_WELCOME => {
                let w: Welcome = json(&body, "WELCOME")?;
                check_node(&w.node)?;
                check_ends(&w.ends)?;
                if let Some(a) = &w.adopted {
                    check_record(a)?;
                }
                f.data = &[];
                Frame::Welcome(w)
            }
            T_APPEND => {
                let topic = f.topic()?;
                let pos = f.u64()?;
                let start = body.len() - f.data.len();
                return Ok(Some(Frame::Append {
                    topic,
                    pos,
                    records: body.slice(start..),
                }));
            }
            T_ACK => Frame::Ack {
                topic: f.topic()?,
                end: End {
                    pos: f.u64()?,
                    seq: f.u64()?,
                },
            },
            T_STATE => Frame::State(ChannelState {
                topic: f.topic()?,
                channel: f.channel()?,
                version: f.u64()?,
                paused: f.u8()? != 0,
                snapshot: snapshot(&mut f)?,
            }),
            T_TOPIC => {
                let topic = f.topic()?;
                let version = f.u64()?;
                let paused = f.u8()? != 0;
                let orphan_start = match f.u8()? {
                    0 => None,
                    _ => Some(End {
                        pos: f.u64()?,
                        seq: f.u64()?,
                    }),
                };
                let n = f.u16()? as usize;
                let n = f.count(n, 2)?;
                let mut channels = Vec::with_capacity(n);
                for _ in 0..n {
                    channels.push(f.channel()?);
                }
                Frame::Topic(TopicState {
                    topic,
                    version,
                    paused,
                    orphan_start,
                    channels,
                })
            }
            T_RELEASE => Frame::Release {
                topic: f.topic()?,
                pos: f.u64()?,
            },
            T_DROP => Frame::Drop { topic: f.topic()? },
            T_SYNCED => Frame::Synced { version: f.u64()? },
            T_PING => Frame::Ping,
            T_CLAIM => {
                let c: Claim = json(&body, "CLAIM")?;
                check_node(&c.owner)?;
                check_node(&c.claimant)?;
                check_ends(&c.ends)?;
                f.data = &[];
                Frame::Claim(c)
            }
            T_CLAIMED => {
                let c: Claimed = json(&body, "CLAIMED")?;
                check_node(&c.holder)?;
                if let Some(w) = &c.winner {
                    check_node(w)?;
                }
                check_ends(&c.ends)?;
                f.data = &[];
                Frame::Claimed(c)
            }
            T_ADOPTED => {
                let a: AdoptionRecord = json(&body, "ADOPTED")?;
                check_record(&a)?;
                f.data = &[];
                Frame::Adopted(a)
            }
            T_END => Frame::End,
            T_ERROR => {
                let text = String::from_utf8_lossy(&body).into_owned();
                f.data = &[];
                Frame::Error(text)
            }
            other => return Err(bad(format!("unknown frame type {other}"))),
        };
        f.done()?;
        frame
    };
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u8) -> String {
        format!("{n:02x}{}", "ab".repeat(15))
    }

    fn samples() -> Vec<Frame> {
        let mut ends = BTreeMap::new();
        ends.insert("orders".to_string(), End { pos: 10, seq: 2 });
        let record = AdoptionRecord {
            owner: node(1),
            epoch: 3,
            adopter: node(2),
            ends: ends.clone(),
            at_ns: 99,
        };
        vec![
            Frame::Hello(Hello {
                node: node(1),
                name: "a:4150".into(),
                tcp_address: "127.0.0.1:4150".into(),
                epoch: 2,
                peers: vec!["b:4150".into()],
                replicas: 1,
                max_msg_size: 1 << 20,
            }),
            Frame::Welcome(Welcome {
                node: node(2),
                ends: ends.clone(),
                adopted: Some(record.clone()),
            }),
            Frame::Append {
                topic: "orders".into(),
                pos: 4096,
                records: Bytes::from_static(b"0123456789"),
            },
            Frame::Ack {
                topic: "orders".into(),
                end: End { pos: 5, seq: 1 },
            },
            Frame::State(ChannelState {
                topic: "orders".into(),
                channel: "billing".into(),
                version: 77,
                paused: true,
                snapshot: ChannelSnapshot {
                    generation: 0,
                    base_seq: 3,
                    ranges: vec![CursorRange::open(100, 4)],
                    entries: vec![OutstandingEntry {
                        pos: 50,
                        attempts: 2,
                        due_ns: 123,
                    }],
                },
            }),
            Frame::Topic(TopicState {
                topic: "orders".into(),
                version: 5,
                paused: false,
                orphan_start: Some(End { pos: 0, seq: 0 }),
                channels: vec!["billing".into(), "audit".into()],
            }),
            Frame::Release {
                topic: "orders".into(),
                pos: 1 << 20,
            },
            Frame::Drop {
                topic: "orders".into(),
            },
            Frame::Synced { version: 8 },
            Frame::Ping,
            Frame::Claim(Claim {
                owner: node(1),
                epoch: 1,
                claimant: node(3),
                claim: true,
                ends: ends.clone(),
                versions: BTreeMap::from([("orders/billing".to_string(), 4)]),
            }),
            Frame::Claimed(Claimed {
                granted: false,
                winner: Some(node(2)),
                holder: node(4),
                has_copy: true,
                ends,
            }),
            Frame::Adopted(record),
            Frame::End,
            Frame::Error("no".into()),
        ]
    }

    #[test]
    fn every_frame_round_trips_whole_and_byte_by_byte() {
        for frame in samples() {
            let mut out = Vec::new();
            encode(&frame, &mut out);
            let mut buf = BytesMut::from(&out[..]);
            assert_eq!(decode(&mut buf, BASE_FRAME_LIMIT).unwrap(), Some(frame.clone()));
            assert!(buf.is_empty());
            // Fed one byte at a time, nothing is decoded early.
            let mut buf = BytesMut::new();
            for (i, b) in out.iter().enumerate() {
                buf.extend_from_slice(&[*b]);
                let got = decode(&mut buf, BASE_FRAME_LIMIT).unwrap();
                assert_eq!(got.is_some(), i + 1 == out.len(), "{frame:?} at byte {i}");
            }
        }
    }

    #[test]
    fn oversized_frames_are_refused_before_buffering() {
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, T_PING][..]);
        assert!(decode(&mut buf, BASE_FRAME_LIMIT).is_err());
        let mut buf = BytesMut::from(&[0, 0, 0, 0][..]);
        assert!(decode(&mut buf, BASE_FRAME_LIMIT).is_err());
    }

    #[test]
    fn names_that_could_escape_the_data_directory_are_refused() {
        let mut out = Vec::new();
        encode(&Frame::Drop { topic: "ok".into() }, &mut out);
        // Same length as "ok": a topic of "a/" (NSQ allows "..", which the `t_` prefix of
        // topic directories keeps inside; a slash never passes).
        let at = out.len() - 2;
        out[at..].copy_from_slice(b"a/");
        assert!(decode(&mut BytesMut::from(&out[..]), BASE_FRAME_LIMIT).is_err());
        let hello = Hello {
            node: "../../etc".into(),
            name: String::new(),
            tcp_address: String::new(),
            epoch: 0,
            peers: vec![],
            replicas: 1,
            max_msg_size: 0,
        };
        let mut out = Vec::new();
        encode(&Frame::Hello(hello), &mut out);
        assert!(decode(&mut BytesMut::from(&out[..]), BASE_FRAME_LIMIT).is_err());
    }

    #[test]
    fn counts_larger_than_the_frame_are_refused_without_allocating() {
        let mut out = Vec::new();
        let at = begin(&mut out, T_STATE);
        put_str(&mut out, "t");
        put_str(&mut out, "c");
        out.extend_from_slice(&1u64.to_be_bytes());
        out.push(0);
        out.extend_from_slice(&0u64.to_be_bytes());
        out.extend_from_slice(&u32::MAX.to_be_bytes());
        finish(&mut out, at);
        assert!(decode(&mut BytesMut::from(&out[..]), BASE_FRAME_LIMIT).is_err());
    }

    /// Random bytes and random mutations of valid frames: decoding answers, never panics.
    #[test]
    fn fuzzed_input_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let mut valid = Vec::new();
        for frame in samples() {
            let mut out = Vec::new();
            encode(&frame, &mut out);
            valid.push(out);
        }
        for round in 0..20_000 {
            let mut data = if round % 2 == 0 {
                let n = rng.gen_range(0..200);
                (0..n).map(|_| rng.gen()).collect::<Vec<u8>>()
            } else {
                valid[rng.gen_range(0..valid.len())].clone()
            };
            for _ in 0..rng.gen_range(1..4) {
                if data.is_empty() {
                    break;
                }
                let i = rng.gen_range(0..data.len());
                data[i] = rng.gen();
            }
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = decode(&mut buf, BASE_FRAME_LIMIT) {}
        }
    }
}
