//! Server→client framing of protocol V2, both ways: `[4B size][4B type][data]`, and the
//! message a message frame carries, `[8B timestamp ns][2B attempts][16B id][body]` (also what
//! a go-diskqueue record holds). The broker encodes with it, and the client, the bench and
//! the tests decode with it.

use bytes::{Buf, Bytes, BytesMut};
use std::fmt;

use super::guid::MessageId;

/// The magic a V2 client sends first.
pub const MAGIC_V2: &[u8; 4] = b"  V2";

pub const FRAME_TYPE_RESPONSE: u32 = 0;
pub const FRAME_TYPE_ERROR: u32 = 1;
pub const FRAME_TYPE_MESSAGE: u32 = 2;

/// Size of the message header inside a message frame: timestamp, attempts, id (nsqd's
/// `minValidMsgLength`).
pub const MESSAGE_HEADER_LEN: usize = 8 + 2 + 16;

pub const HEARTBEAT: &[u8] = b"_heartbeat_";
pub const OK: &[u8] = b"OK";
pub const CLOSE_WAIT: &[u8] = b"CLOSE_WAIT";

/// Far above any sane `--max-msg-size`; a bigger announced size means the peer is not
/// speaking V2 at all (an HTTP reply starts with "HTTP", i.e. ~1.2 GB).
const MAX_FRAME_SIZE: u32 = 128 << 20;

/// One message as it travels: in a message frame, or in a go-diskqueue record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Publish time, nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// Deliveries so far, this one included.
    pub attempts: u16,
    /// The 16 characters the server identifies the message by (hex from nsqd, but opaque to
    /// a client: Go nsqd takes back any 16 bytes).
    pub id: [u8; 16],
    pub body: Bytes,
}

impl Message {
    /// Decodes `[8B ts][2B attempts][16B id][body]`.
    pub fn decode(mut data: Bytes) -> Result<Message, FrameError> {
        if data.len() < MESSAGE_HEADER_LEN {
            return Err(FrameError::ShortMessage(data.len()));
        }
        let timestamp_ns = data.get_i64();
        let attempts = data.get_u16();
        let mut id = [0u8; 16];
        data.copy_to_slice(&mut id);
        Ok(Message {
            timestamp_ns,
            attempts,
            id,
            body: data,
        })
    }

    /// The id as text (nsqd's IDs are ASCII hex).
    pub fn id_str(&self) -> &str {
        std::str::from_utf8(&self.id).unwrap_or("????????????????")
    }

    /// The id as a number, when it is NSQ's hex format.
    pub fn message_id(&self) -> Option<MessageId> {
        MessageId::from_hex(&self.id)
    }
}

/// One frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Response(Bytes),
    Error(Bytes),
    Message(Message),
}

/// Bytes that cannot be an NSQ V2 frame; the connection is unusable after one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    SizeTooSmall(u32),
    SizeTooLarge(u32),
    UnknownType(u32),
    ShortMessage(usize),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::SizeTooSmall(n) => write!(f, "invalid frame size {n} (must be >= 4)"),
            FrameError::SizeTooLarge(n) => write!(
                f,
                "frame size {n} is implausible; is this an NSQ TCP port (not HTTP)?"
            ),
            FrameError::UnknownType(t) => write!(f, "unknown frame type {t}"),
            FrameError::ShortMessage(n) => write!(
                f,
                "message frame of {n} bytes is shorter than the {MESSAGE_HEADER_LEN}-byte header"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Appends one response or error frame.
pub fn put_frame(out: &mut Vec<u8>, frame_type: u32, data: &[u8]) {
    out.extend_from_slice(&((data.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&frame_type.to_be_bytes());
    out.extend_from_slice(data);
}

/// Appends one message frame.
pub fn put_message_frame(out: &mut Vec<u8>, timestamp_ns: i64, attempts: u16, id: &[u8; 16], body: &[u8]) {
    let size = 4 + MESSAGE_HEADER_LEN + body.len();
    out.reserve(4 + size);
    out.extend_from_slice(&(size as u32).to_be_bytes());
    out.extend_from_slice(&FRAME_TYPE_MESSAGE.to_be_bytes());
    out.extend_from_slice(&timestamp_ns.to_be_bytes());
    out.extend_from_slice(&attempts.to_be_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(body);
}

/// Takes one complete frame off the front of `buf`, or returns `None` (consuming nothing)
/// when more bytes are needed.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 4 {
        return Err(FrameError::SizeTooSmall(size));
    }
    if size > MAX_FRAME_SIZE {
        return Err(FrameError::SizeTooLarge(size));
    }
    let total = 4 + size as usize;
    if buf.len() < total {
        // Reserve now so the next read can bring the whole frame in one go.
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let mut data = buf.split_to(size as usize);
    let frame_type = data.get_u32();
    let data = data.freeze();
    match frame_type {
        FRAME_TYPE_RESPONSE => Ok(Some(Frame::Response(data))),
        FRAME_TYPE_ERROR => Ok(Some(Frame::Error(data))),
        FRAME_TYPE_MESSAGE => Message::decode(data).map(|m| Some(Frame::Message(m))),
        other => Err(FrameError::UnknownType(other)),
    }
}

/// Error frames that leave the connection usable (everything else is fatal in nsqd).
pub fn is_non_fatal(error: &[u8]) -> bool {
    [&b"E_FIN_FAILED"[..], b"E_REQ_FAILED", b"E_TOUCH_FAILED"]
        .iter()
        .any(|code| error.starts_with(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(frame_type: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_frame(&mut v, frame_type, data);
        v
    }

    #[test]
    fn frames_round_trip() {
        let id = *b"0123456789abcdef";
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&frame(FRAME_TYPE_RESPONSE, b"OK"));
        buf.extend_from_slice(&frame(FRAME_TYPE_ERROR, b"E_INVALID nope"));
        let mut m = Vec::new();
        put_message_frame(&mut m, 42, 1, &id, b"hello");
        buf.extend_from_slice(&m);

        assert_eq!(
            decode_frame(&mut buf).unwrap(),
            Some(Frame::Response(Bytes::from_static(b"OK")))
        );
        assert_eq!(
            decode_frame(&mut buf).unwrap(),
            Some(Frame::Error(Bytes::from_static(b"E_INVALID nope")))
        );
        let expected = Message {
            timestamp_ns: 42,
            attempts: 1,
            id,
            body: Bytes::from_static(b"hello"),
        };
        assert_eq!(decode_frame(&mut buf).unwrap(), Some(Frame::Message(expected)));
        assert!(buf.is_empty());
        assert_eq!(decode_frame(&mut buf).unwrap(), None);
    }

    #[test]
    fn partial_frames_consume_nothing() {
        let whole = frame(FRAME_TYPE_RESPONSE, HEARTBEAT);
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(decode_frame(&mut buf).unwrap(), None, "cut at {cut}");
            assert_eq!(buf.len(), cut);
            buf.extend_from_slice(&whole[cut..]);
            assert_eq!(
                decode_frame(&mut buf).unwrap(),
                Some(Frame::Response(Bytes::from_static(HEARTBEAT)))
            );
        }
    }

    #[test]
    fn message_with_empty_body_is_valid() {
        let id = *b"fedcba9876543210";
        let mut buf = Vec::new();
        put_message_frame(&mut buf, -1, 65535, &id, b"");
        let mut buf = BytesMut::from(&buf[..]);
        match decode_frame(&mut buf).unwrap() {
            Some(Frame::Message(m)) => {
                assert_eq!((m.timestamp_ns, m.attempts, m.id), (-1, 65535, id));
                assert!(m.body.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_frames() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, 0, 0, 0][..]);
        assert_eq!(decode_frame(&mut buf), Err(FrameError::SizeTooSmall(3)));

        let mut buf = BytesMut::from(&b"HTTP/1.1 400 Bad Request\r\n"[..]);
        assert!(matches!(decode_frame(&mut buf), Err(FrameError::SizeTooLarge(_))));

        let mut buf = BytesMut::from(&frame(7, b"x")[..]);
        assert_eq!(decode_frame(&mut buf), Err(FrameError::UnknownType(7)));

        let mut buf = BytesMut::from(&frame(FRAME_TYPE_MESSAGE, &[0u8; 25])[..]);
        assert_eq!(decode_frame(&mut buf), Err(FrameError::ShortMessage(25)));
    }

    #[test]
    fn classifies_non_fatal_errors() {
        assert!(is_non_fatal(b"E_FIN_FAILED FIN x failed ID not in flight"));
        assert!(is_non_fatal(b"E_REQ_FAILED x"));
        assert!(!is_non_fatal(b"E_INVALID invalid command"));
    }
}
