//! Server→client framing: `[4B size][4B type][data]`, and the message frame body
//! `[8B timestamp ns][2B attempts][16B hex id][body]` (which is also what a diskqueue record holds).

use super::guid::MessageId;

pub const FRAME_TYPE_RESPONSE: i32 = 0;
pub const FRAME_TYPE_ERROR: i32 = 1;
pub const FRAME_TYPE_MESSAGE: i32 = 2;

/// The magic a V2 client sends first.
pub const MAGIC_V2: &[u8; 4] = b"  V2";

/// Size of the message header inside a message frame: timestamp, attempts, id.
pub const MESSAGE_HEADER_LEN: usize = 8 + 2 + 16;

pub const HEARTBEAT: &[u8] = b"_heartbeat_";
pub const OK: &[u8] = b"OK";
pub const CLOSE_WAIT: &[u8] = b"CLOSE_WAIT";

/// Appends one response or error frame.
pub fn put_frame(out: &mut Vec<u8>, frame_type: i32, data: &[u8]) {
    out.extend_from_slice(&((data.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&frame_type.to_be_bytes());
    out.extend_from_slice(data);
}

/// Appends one message frame.
pub fn put_message_frame(out: &mut Vec<u8>, timestamp_ns: i64, attempts: u16, id: MessageId, body: &[u8]) {
    let size = 4 + MESSAGE_HEADER_LEN + body.len();
    out.reserve(4 + size);
    out.extend_from_slice(&(size as u32).to_be_bytes());
    out.extend_from_slice(&FRAME_TYPE_MESSAGE.to_be_bytes());
    put_message_body(out, timestamp_ns, attempts, id, body);
}

/// Appends the message encoding without the frame header (diskqueue record payload).
pub fn put_message_body(out: &mut Vec<u8>, timestamp_ns: i64, attempts: u16, id: MessageId, body: &[u8]) {
    out.extend_from_slice(&timestamp_ns.to_be_bytes());
    out.extend_from_slice(&attempts.to_be_bytes());
    out.extend_from_slice(&id.to_hex());
    out.extend_from_slice(body);
}

/// A message decoded from its wire/diskqueue encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedMessage<'a> {
    pub timestamp_ns: i64,
    pub attempts: u16,
    pub id_hex: &'a [u8],
    pub body: &'a [u8],
}

/// Decodes `[8B ts][2B attempts][16B id][body]`; None when shorter than the header.
pub fn decode_message(data: &[u8]) -> Option<DecodedMessage<'_>> {
    if data.len() < MESSAGE_HEADER_LEN {
        return None;
    }
    Some(DecodedMessage {
        timestamp_ns: i64::from_be_bytes(data[0..8].try_into().ok()?),
        attempts: u16::from_be_bytes(data[8..10].try_into().ok()?),
        id_hex: &data[10..26],
        body: &data[26..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_frame_round_trips() {
        let mut out = Vec::new();
        put_message_frame(&mut out, 42, 3, MessageId(0xabc), b"hello");
        assert_eq!(
            u32::from_be_bytes(out[0..4].try_into().unwrap()) as usize,
            out.len() - 4
        );
        assert_eq!(
            i32::from_be_bytes(out[4..8].try_into().unwrap()),
            FRAME_TYPE_MESSAGE
        );
        let m = decode_message(&out[8..]).unwrap();
        assert_eq!(m.timestamp_ns, 42);
        assert_eq!(m.attempts, 3);
        assert_eq!(m.id_hex, b"0000000000000abc");
        assert_eq!(m.body, b"hello");
    }
}
