//! Request bodies within nsqd's limits: a body is read only as far as its limit (never held
//! beyond it, whatever `Content-Length` claims), and `/mpub` bodies are split into messages
//! the way nsqd reads them, with nsqd's error codes.
//!
//! The splitters are pure functions of the bytes, so they can be tested and fuzzed alone.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use http_body_util::BodyExt;

/// The `Content-Length` a request declares, if any.
pub fn declared_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Why reading a body stopped short of its end.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The connection failed mid-body (nsqd answers 500 `INTERNAL_ERROR`).
    Failed,
}

/// Reads `body` until it ends, `limit` bytes are held, or `enough` says the bytes so far
/// decide the answer. Memory grows with what actually arrives, never past `limit`.
pub async fn read_limited(
    body: Body,
    limit: usize,
    mut enough: impl FnMut(&[u8]) -> bool,
) -> Result<Vec<u8>, ReadError> {
    let mut body = body;
    let mut buf = Vec::new();
    while buf.len() < limit && !enough(&buf) {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.map_err(|_| ReadError::Failed)?;
        if let Ok(data) = frame.into_data() {
            let take = data.len().min(limit - buf.len());
            buf.extend_from_slice(&data[..take]);
        }
    }
    Ok(buf)
}

/// nsqd's binary `/mpub` errors, as the HTTP API names them (the TCP codes without `E_`).
pub const BAD_BODY: &str = "BAD_BODY";
pub const BAD_MESSAGE: &str = "BAD_MESSAGE";

/// Follows a binary `/mpub` body, `[4-byte count]([4-byte size][data])*`, as it arrives, so a
/// bad count or size is answered as soon as it is read (as nsqd does) and each byte is looked
/// at once however the body is chunked.
#[derive(Debug, Default)]
pub struct BinaryMpubScan {
    count: Option<usize>,
    /// Messages whose bytes are all buffered.
    complete: usize,
    /// Where the next message's size field starts.
    at: usize,
}

impl BinaryMpubScan {
    /// Checks what `buf` (the body so far) adds. `Ok(true)` once all messages are buffered;
    /// `Ok(false)` while more are needed; an error code as soon as one is certain.
    pub fn advance(&mut self, buf: &[u8], max_msg: usize, max_body: usize) -> Result<bool, &'static str> {
        let count = match self.count {
            Some(n) => n,
            None => {
                let Some(n) = i32_at(buf, 0) else {
                    return Ok(false);
                };
                // 4 bytes of count, and at least 5 (size and one byte) per message.
                let max_messages = max_body.saturating_sub(4) / 5;
                if n <= 0 || n as usize > max_messages {
                    return Err(BAD_BODY);
                }
                self.at = 4;
                self.count = Some(n as usize);
                n as usize
            }
        };
        while self.complete < count {
            let Some(size) = i32_at(buf, self.at) else {
                return Ok(false);
            };
            if size <= 0 || size as usize > max_msg {
                return Err(BAD_MESSAGE);
            }
            let end = self.at + 4 + size as usize;
            if buf.len() < end {
                return Ok(false);
            }
            self.at = end;
            self.complete += 1;
        }
        Ok(true)
    }

    /// The error for a body that ended before its messages did: a missing count is a bad
    /// body, a missing size or message a bad message.
    pub fn ended_early(&self) -> &'static str {
        if self.count.is_none() {
            BAD_BODY
        } else {
            BAD_MESSAGE
        }
    }
}

/// The messages of a whole binary `/mpub` body, as nsqd's `readMPUB` reads them (bytes after
/// the last message are ignored, as nsqd ignores them).
pub fn split_binary_mpub(body: &[u8], max_msg: usize, max_body: usize) -> Result<Vec<&[u8]>, &'static str> {
    let mut scan = BinaryMpubScan::default();
    if !scan.advance(body, max_msg, max_body)? {
        return Err(scan.ended_early());
    }
    let count = scan.count.unwrap_or(0);
    let mut messages = Vec::with_capacity(count);
    let mut at = 4;
    for _ in 0..count {
        let size = i32_at(body, at).map_or(0, |n| n as usize);
        messages.push(&body[at + 4..at + 4 + size]);
        at += 4 + size;
    }
    Ok(messages)
}

/// Why a text `/mpub` body was refused: status and nsqd's message.
pub type TextMpubError = (u16, &'static str);

/// The messages of a text `/mpub` body: its lines, empty ones dropped, `\r` kept, as nsqd reads
/// them. `body` is what was read of the request, at most `max_body + 1` bytes: reaching that
/// many is `BODY_TOO_BIG`, checked line by line in nsqd's order, so a too long line before the
/// limit is `MSG_TOO_BIG`.
pub fn split_text_mpub(body: &[u8], max_msg: usize, max_body: usize) -> Result<Vec<&[u8]>, TextMpubError> {
    let read_max = max_body.saturating_add(1);
    let mut messages = Vec::new();
    let mut total = 0usize;
    for block in body.split_inclusive(|&b| b == b'\n') {
        total += block.len();
        if total == read_max {
            return Err((413, "BODY_TOO_BIG"));
        }
        let line = block.strip_suffix(b"\n").unwrap_or(block);
        if line.is_empty() {
            continue;
        }
        if line.len() > max_msg {
            return Err((413, "MSG_TOO_BIG"));
        }
        messages.push(line);
    }
    Ok(messages)
}

fn i32_at(buf: &[u8], at: usize) -> Option<i32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(i32::from_be_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(count: i32, sizes_and_bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = count.to_be_bytes().to_vec();
        for b in sizes_and_bodies {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
        out
    }

    #[test]
    fn binary_bodies_get_nsqds_codes() {
        let (max_msg, max_body) = (10, 100);
        let ok = binary(2, &[b"ab", b"c"]);
        assert_eq!(
            split_binary_mpub(&ok, max_msg, max_body),
            Ok(vec![&b"ab"[..], b"c"])
        );
        // A huge count is refused from its four bytes alone, before anything is allocated.
        assert_eq!(
            split_binary_mpub(&i32::MAX.to_be_bytes(), max_msg, max_body),
            Err(BAD_BODY)
        );
        assert_eq!(
            split_binary_mpub(&0i32.to_be_bytes(), max_msg, max_body),
            Err(BAD_BODY)
        );
        assert_eq!(split_binary_mpub(&[0, 0], max_msg, max_body), Err(BAD_BODY));
        assert_eq!(
            split_binary_mpub(&binary(2, &[b"ab"]), max_msg, max_body),
            Err(BAD_MESSAGE)
        );
        assert_eq!(
            split_binary_mpub(&binary(1, &[b""]), max_msg, max_body),
            Err(BAD_MESSAGE)
        );
        let big = [b'x'; 11];
        assert_eq!(
            split_binary_mpub(&binary(1, &[&big]), max_msg, max_body),
            Err(BAD_MESSAGE)
        );
        let mut short = binary(1, &[b"abc"]);
        short.pop();
        assert_eq!(split_binary_mpub(&short, max_msg, max_body), Err(BAD_MESSAGE));
    }

    #[test]
    fn binary_scan_decides_as_bytes_arrive() {
        let body = binary(3, &[b"ab", b"c", b"def"]);
        let mut scan = BinaryMpubScan::default();
        for end in 0..body.len() {
            assert_eq!(scan.advance(&body[..end], 10, 100), Ok(false), "at {end}");
        }
        assert_eq!(scan.advance(&body, 10, 100), Ok(true));
        // A bad size is known before the message's bytes come.
        let mut scan = BinaryMpubScan::default();
        let bad = [&1i32.to_be_bytes()[..], &(-1i32).to_be_bytes()].concat();
        assert_eq!(scan.advance(&bad, 10, 100), Err(BAD_MESSAGE));
    }

    #[test]
    fn text_bodies_are_read_as_nsqd_reads_them() {
        assert_eq!(
            split_text_mpub(b"a\n\nbc\r\nd", 10, 100),
            Ok(vec![&b"a"[..], b"bc\r", b"d"])
        );
        assert_eq!(
            split_text_mpub(b"a\n0123456789x\n", 10, 100),
            Err((413, "MSG_TOO_BIG"))
        );
        // Read stops at max_body + 1 bytes: that many is too big, whatever the lines.
        let body = [b'a'; 101];
        assert_eq!(split_text_mpub(&body, 200, 100), Err((413, "BODY_TOO_BIG")));
        let mut body = vec![b'a'; 100];
        body.push(b'\n');
        assert_eq!(split_text_mpub(&body, 200, 100), Err((413, "BODY_TOO_BIG")));
        assert_eq!(split_text_mpub(&body[..100], 200, 100).map(|m| m.len()), Ok(1));
    }
}
