//! Stream compression negotiated in IDENTIFY: snappy's framing format and raw DEFLATE, both
//! ways. The server and the client share it: each keeps reading and writing whole buffers, so
//! compression is a transform on those buffers rather than a wrapper around the socket, and
//! the plain path pays nothing.
//!
//! Decompression is incremental and bounded: each `fill` produces at most a caller-chosen
//! number of bytes, so a small compressed input cannot make the receiver allocate a lot at
//! once (the frame or command parser then limits how much can accumulate).

use std::io::{self, Write};

use bytes::{Buf, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Largest uncompressed chunk the snappy framing format allows.
const SNAPPY_MAX_BLOCK: usize = 65536;
const SNAPPY_STREAM_ID: &[u8] = b"sNaPpY";

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Compresses outgoing buffers; each call's output is self-contained up to a flush point, so
/// the client can decode everything written so far.
pub enum Encoder {
    Snappy(Box<snap::write::FrameEncoder<Vec<u8>>>),
    Deflate(Box<Compress>),
}

impl Encoder {
    pub fn snappy() -> Encoder {
        Encoder::Snappy(Box::new(snap::write::FrameEncoder::new(Vec::new())))
    }

    pub fn deflate(level: u32) -> Encoder {
        Encoder::Deflate(Box::new(Compress::new(Compression::new(level), false)))
    }

    /// Appends the compressed form of `input` to `out`.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Encoder::Snappy(enc) => {
                enc.write_all(input)?;
                enc.flush()?;
                out.append(enc.get_mut());
                Ok(())
            }
            Encoder::Deflate(c) => {
                let mut consumed = 0;
                loop {
                    out.reserve(input.len() - consumed + 64);
                    let before = c.total_in();
                    c.compress_vec(&input[consumed..], out, FlushCompress::Sync)
                        .map_err(|e| invalid(&e.to_string()))?;
                    consumed += (c.total_in() - before) as usize;
                    // A sync flush is complete once all input is taken and output had room.
                    if consumed == input.len() && out.len() < out.capacity() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Decompresses incoming bytes.
pub enum Decoder {
    Snappy(SnappyDecoder),
    Deflate(DeflateDecoder),
}

impl Decoder {
    pub fn snappy() -> Decoder {
        Decoder::Snappy(SnappyDecoder {
            raw: BytesMut::new(),
            seen_stream_id: false,
        })
    }

    pub fn deflate() -> Decoder {
        Decoder::Deflate(DeflateDecoder {
            raw: BytesMut::new(),
            inflate: Box::new(Decompress::new(false)),
            more_output: false,
        })
    }

    /// Compressed bytes as they came off the socket.
    pub fn push(&mut self, data: &[u8]) {
        match self {
            Decoder::Snappy(d) => d.raw.extend_from_slice(data),
            Decoder::Deflate(d) => d.raw.extend_from_slice(data),
        }
    }

    /// Whether `fill` may produce output without more input.
    pub fn has_pending(&self) -> bool {
        match self {
            Decoder::Snappy(d) => d.has_complete_chunk(),
            Decoder::Deflate(d) => !d.raw.is_empty() || d.more_output,
        }
    }

    /// Appends up to about `max` decompressed bytes to `out`.
    pub fn fill(&mut self, out: &mut BytesMut, max: usize) -> io::Result<()> {
        match self {
            Decoder::Snappy(d) => d.fill(out, max),
            Decoder::Deflate(d) => d.fill(out, max),
        }
    }
}

pub struct SnappyDecoder {
    raw: BytesMut,
    seen_stream_id: bool,
}

impl SnappyDecoder {
    fn chunk_len(&self) -> Option<usize> {
        let h = self.raw.get(..4)?;
        let len = h[1] as usize | (h[2] as usize) << 8 | (h[3] as usize) << 16;
        Some(len)
    }

    fn has_complete_chunk(&self) -> bool {
        self.chunk_len().is_some_and(|len| self.raw.len() >= 4 + len)
    }

    fn fill(&mut self, out: &mut BytesMut, max: usize) -> io::Result<()> {
        let mut produced = 0;
        while produced < max {
            let Some(len) = self.chunk_len() else {
                return Ok(());
            };
            // Bound chunks before buffering them: a valid one never exceeds this.
            if len > 4 + snap::raw::max_compress_len(SNAPPY_MAX_BLOCK) {
                return Err(invalid("snappy chunk too large"));
            }
            if self.raw.len() < 4 + len {
                return Ok(());
            }
            let kind = self.raw[0];
            let body = &self.raw[4..4 + len];
            if kind != 0xff && !self.seen_stream_id {
                return Err(invalid("snappy stream without identifier"));
            }
            match kind {
                0xff => {
                    if body != SNAPPY_STREAM_ID {
                        return Err(invalid("bad snappy stream identifier"));
                    }
                    self.seen_stream_id = true;
                }
                0x00 | 0x01 => {
                    if body.len() < 4 {
                        return Err(invalid("short snappy chunk"));
                    }
                    let crc = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
                    let data = &body[4..];
                    let start = out.len();
                    if kind == 0x00 {
                        let n = snap::raw::decompress_len(data).map_err(|e| invalid(&e.to_string()))?;
                        if n > SNAPPY_MAX_BLOCK {
                            return Err(invalid("snappy block too large"));
                        }
                        out.resize(start + n, 0);
                        snap::raw::Decoder::new()
                            .decompress(data, &mut out[start..])
                            .map_err(|e| invalid(&e.to_string()))?;
                    } else {
                        if data.len() > SNAPPY_MAX_BLOCK {
                            return Err(invalid("snappy block too large"));
                        }
                        out.extend_from_slice(data);
                    }
                    if masked_crc32c(&out[start..]) != crc {
                        return Err(invalid("snappy checksum mismatch"));
                    }
                    produced += out.len() - start;
                }
                0x02..=0x7f => return Err(invalid("reserved unskippable snappy chunk")),
                // Padding and skippable chunks.
                _ => {}
            }
            self.raw.advance(4 + len);
        }
        Ok(())
    }
}

pub struct DeflateDecoder {
    raw: BytesMut,
    inflate: Box<Decompress>,
    /// The last call filled its output, so more may be waiting inside the inflater.
    more_output: bool,
}

impl DeflateDecoder {
    fn fill(&mut self, out: &mut BytesMut, max: usize) -> io::Result<()> {
        let start = out.len();
        out.resize(start + max, 0);
        let before_in = self.inflate.total_in();
        let before_out = self.inflate.total_out();
        let status = self
            .inflate
            .decompress(&self.raw, &mut out[start..], FlushDecompress::Sync)
            .map_err(|e| invalid(&e.to_string()));
        let used = (self.inflate.total_in() - before_in) as usize;
        let made = (self.inflate.total_out() - before_out) as usize;
        out.truncate(start + made);
        self.raw.advance(used);
        match status? {
            Status::StreamEnd => Err(invalid("deflate stream ended")),
            _ => {
                self.more_output = made == max;
                Ok(())
            }
        }
    }
}

/// CRC-32C (Castagnoli), masked as the snappy framing format stores it.
fn masked_crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, entry) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0x82f6_3b78 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *entry = c;
        }
        t
    });
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    let crc = !crc;
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(mut enc: Encoder, mut dec: Decoder) {
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = Vec::new();
        enc.encode(&payload[..1000], &mut wire).unwrap();
        enc.encode(&payload[1000..], &mut wire).unwrap();
        let mut out = BytesMut::new();
        // Feed in awkward pieces to exercise partial chunks.
        for piece in wire.chunks(777) {
            dec.push(piece);
            while dec.has_pending() {
                let before = out.len();
                dec.fill(&mut out, 4096).unwrap();
                if out.len() == before && !dec.has_pending() {
                    break;
                }
                if out.len() == before {
                    break;
                }
            }
        }
        while dec.has_pending() {
            let before = out.len();
            dec.fill(&mut out, 4096).unwrap();
            if out.len() == before {
                break;
            }
        }
        assert_eq!(&out[..], &payload[..]);
    }

    #[test]
    fn snappy_roundtrip() {
        roundtrip(Encoder::snappy(), Decoder::snappy());
    }

    #[test]
    fn deflate_roundtrip() {
        roundtrip(Encoder::deflate(6), Decoder::deflate());
    }

    #[test]
    fn snappy_matches_reference_reader() {
        let mut enc = Encoder::snappy();
        let mut wire = Vec::new();
        enc.encode(b"hello hello hello hello", &mut wire).unwrap();
        let mut r = snap::read::FrameDecoder::new(&wire[..]);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut r, &mut s).unwrap();
        assert_eq!(s, "hello hello hello hello");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut d = Decoder::snappy();
        d.push(&[0x00, 0x05, 0x00, 0x00, 1, 2, 3, 4, 5]);
        assert!(d.fill(&mut BytesMut::new(), 100).is_err());
        let mut d = Decoder::snappy();
        d.push(&[0xff, 0x06, 0x00, 0x00]);
        d.push(SNAPPY_STREAM_ID);
        d.push(&[0x00, 0x08, 0x00, 0x00, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f]);
        assert!(d.fill(&mut BytesMut::new(), 100).is_err());
        let mut d = Decoder::deflate();
        d.push(&[0xff; 64]);
        assert!(d.fill(&mut BytesMut::new(), 100).is_err());
    }
}
