//! Message IDs in NSQ's GUID format: a time-ordered 64-bit number shown as 16 lowercase hex
//! characters. Layout (nsq-reference §1.4): 42 bits of ~1 ms ticks since NSQ's epoch, 10 bits
//! of node id, 12 bits of sequence.

use crate::common::time::now_ns;

/// NSQ's epoch in units of 2^20 ns ("pseudo-milliseconds").
const TWEPOCH: i64 = 1_288_834_974_288;
const NODE_BITS: u32 = 10;
const SEQUENCE_BITS: u32 = 12;
const SEQUENCE_MASK: i64 = (1 << SEQUENCE_BITS) - 1;

/// A message ID; displayed and sent on the wire as 16 hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

impl MessageId {
    /// The 16 ASCII hex bytes that go on the wire.
    pub fn to_hex(self) -> [u8; 16] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 16];
        for (i, byte) in self.0.to_be_bytes().iter().enumerate() {
            out[i * 2] = HEX[(byte >> 4) as usize];
            out[i * 2 + 1] = HEX[(byte & 0xf) as usize];
        }
        out
    }

    /// Parses the 16 hex bytes a client sends with FIN/REQ/TOUCH.
    pub fn from_hex(bytes: &[u8]) -> Option<MessageId> {
        if bytes.len() != 16 {
            return None;
        }
        let mut value = 0u64;
        for &b in bytes {
            let nibble = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return None,
            };
            value = (value << 4) | nibble as u64;
        }
        Some(MessageId(value))
    }

    /// The publish time encoded in the ID, in nanoseconds since the Unix epoch (±1 ms).
    pub fn publish_time_ns(self) -> i64 {
        (((self.0 >> 22) as i64) + TWEPOCH) << 20
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Generates strictly increasing IDs for one topic.
#[derive(Debug)]
pub struct GuidFactory {
    node_id: i64,
    last_tick: i64,
    sequence: i64,
    last_id: u64,
}

impl GuidFactory {
    pub fn new(node_id: u16) -> GuidFactory {
        GuidFactory {
            node_id: (node_id as i64) & ((1 << NODE_BITS) - 1),
            last_tick: -1,
            sequence: 0,
            last_id: 0,
        }
    }

    /// The next ID. When the clock stalls or steps back, or 4096 IDs were handed out in one tick,
    /// it borrows from the next tick instead of sleeping as Go does: IDs stay unique and ordered,
    /// and the embedded time runs at most a few ticks ahead under extreme load.
    pub fn next_id(&mut self) -> MessageId {
        let now_tick = now_ns() >> 20;
        if now_tick > self.last_tick {
            self.last_tick = now_tick;
            self.sequence = 0;
        } else {
            self.sequence = (self.sequence + 1) & SEQUENCE_MASK;
            if self.sequence == 0 {
                self.last_tick += 1;
            }
        }
        let id = (((self.last_tick - TWEPOCH) << (NODE_BITS + SEQUENCE_BITS))
            | (self.node_id << SEQUENCE_BITS)
            | self.sequence) as u64;
        debug_assert!(id > self.last_id);
        self.last_id = id;
        MessageId(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_round_trip() {
        let mut f = GuidFactory::new(513);
        let mut last = MessageId(0);
        for _ in 0..20_000 {
            let id = f.next_id();
            assert!(id > last);
            assert_eq!(MessageId::from_hex(&id.to_hex()), Some(id));
            assert_eq!((id.0 >> 12) & 1023, 513);
            last = id;
        }
        let drift = (last.publish_time_ns() - now_ns()).abs();
        assert!(drift < 50_000_000, "embedded time off by {drift} ns");
    }

    #[test]
    fn rejects_bad_hex() {
        assert_eq!(MessageId::from_hex(b"0123"), None);
        assert_eq!(MessageId::from_hex(b"0123456789abcdeg"), None);
    }
}
