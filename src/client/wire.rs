//! The client side of NSQ's TCP protocol V2: decoding the server's frames, encoding the
//! commands a client sends, and a buffered connection that does the IDENTIFY exchange and
//! answers heartbeats. The producer, the consumer and the bench all speak through it.
//!
//! Negotiated compression is a transform on the connection's buffers (the server's own
//! snappy/deflate codec), so a plain connection pays nothing for it; TLS is a different
//! stream type, chosen by whoever opens the connection.
//!
//! Everything here is written against the protocol (nsq-reference §1.2), not against nsqrs,
//! so the same code loads Go nsqd and nsqrs alike.

use bytes::{Buf, Bytes, BytesMut};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::compress::{Decoder, Encoder};

/// The four bytes a V2 client must send before anything else.
pub const MAGIC_V2: &[u8; 4] = b"  V2";
pub const FRAME_RESPONSE: u32 = 0;
pub const FRAME_ERROR: u32 = 1;
pub const FRAME_MESSAGE: u32 = 2;
pub const HEARTBEAT: &[u8] = b"_heartbeat_";
/// timestamp (8) + attempts (2) + id (16): nsqd's `minValidMsgLength`.
pub const MESSAGE_HEADER_LEN: usize = 26;

/// Far above any sane `--max-msg-size`; a bigger announced size means the peer is not
/// speaking V2 at all (an HTTP reply starts with "HTTP", i.e. ~1.2 GB).
const MAX_FRAME_SIZE: u32 = 128 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request may wait for its `OK`; bounds every handshake and publish.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes decompressed at a time, so a small compressed input cannot balloon at once.
const DECODE_CHUNK: usize = 64 * 1024;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// One delivered message (frame type 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub timestamp: i64,
    pub attempts: u16,
    pub id: [u8; 16],
    pub body: Bytes,
}

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

/// Takes one complete frame off the front of `buf`, or returns `None` (consuming nothing)
/// when more bytes are needed.
pub fn decode_frame(buf: &mut BytesMut) -> std::result::Result<Option<Frame>, FrameError> {
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
        FRAME_RESPONSE => Ok(Some(Frame::Response(data))),
        FRAME_ERROR => Ok(Some(Frame::Error(data))),
        FRAME_MESSAGE => decode_message(data).map(|m| Some(Frame::Message(m))),
        other => Err(FrameError::UnknownType(other)),
    }
}

fn decode_message(mut data: Bytes) -> std::result::Result<Message, FrameError> {
    if data.len() < MESSAGE_HEADER_LEN {
        return Err(FrameError::ShortMessage(data.len()));
    }
    let timestamp = data.get_i64();
    let attempts = data.get_u16();
    let mut id = [0u8; 16];
    data.copy_to_slice(&mut id);
    Ok(Message {
        timestamp,
        attempts,
        id,
        body: data,
    })
}

/// Error frames that leave the connection usable (everything else is fatal in nsqd).
pub fn is_non_fatal(error: &[u8]) -> bool {
    [&b"E_FIN_FAILED"[..], b"E_REQ_FAILED", b"E_TOUCH_FAILED"]
        .iter()
        .any(|code| error.starts_with(code))
}

/// Command encoders. They append to a write buffer so callers decide when to flush, which
/// is what NSQ's bench reader relies on to batch FINs.
pub mod encode {
    pub fn identify(out: &mut Vec<u8>, json: &[u8]) {
        out.extend_from_slice(b"IDENTIFY\n");
        sized(out, json);
    }

    pub fn sub(out: &mut Vec<u8>, topic: &str, channel: &str) {
        out.extend_from_slice(b"SUB ");
        out.extend_from_slice(topic.as_bytes());
        out.push(b' ');
        out.extend_from_slice(channel.as_bytes());
        out.push(b'\n');
    }

    pub fn rdy(out: &mut Vec<u8>, count: u64) {
        out.extend_from_slice(format!("RDY {count}\n").as_bytes());
    }

    pub fn fin(out: &mut Vec<u8>, id: &[u8; 16]) {
        out.extend_from_slice(b"FIN ");
        out.extend_from_slice(id);
        out.push(b'\n');
    }

    pub fn nop(out: &mut Vec<u8>) {
        out.extend_from_slice(b"NOP\n");
    }

    pub fn auth(out: &mut Vec<u8>, secret: &[u8]) {
        out.extend_from_slice(b"AUTH\n");
        sized(out, secret);
    }

    pub fn req(out: &mut Vec<u8>, id: &[u8; 16], delay_ms: u64) {
        out.extend_from_slice(b"REQ ");
        out.extend_from_slice(id);
        out.extend_from_slice(format!(" {delay_ms}\n").as_bytes());
    }

    pub fn touch(out: &mut Vec<u8>, id: &[u8; 16]) {
        out.extend_from_slice(b"TOUCH ");
        out.extend_from_slice(id);
        out.push(b'\n');
    }

    pub fn cls(out: &mut Vec<u8>) {
        out.extend_from_slice(b"CLS\n");
    }

    pub fn dpub(out: &mut Vec<u8>, topic: &str, defer_ms: u64, body: &[u8]) {
        out.extend_from_slice(b"DPUB ");
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(format!(" {defer_ms}\n").as_bytes());
        sized(out, body);
    }

    pub fn publish(out: &mut Vec<u8>, topic: &str, body: &[u8]) {
        out.extend_from_slice(b"PUB ");
        out.extend_from_slice(topic.as_bytes());
        out.push(b'\n');
        sized(out, body);
    }

    /// `MPUB <topic>\n[body size][count]([size][body])*`.
    pub fn mpub<B: AsRef<[u8]>>(out: &mut Vec<u8>, topic: &str, bodies: &[B]) {
        let body_size: usize = 4 + bodies.iter().map(|b| 4 + b.as_ref().len()).sum::<usize>();
        out.extend_from_slice(b"MPUB ");
        out.extend_from_slice(topic.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&(body_size as u32).to_be_bytes());
        out.extend_from_slice(&(bodies.len() as u32).to_be_bytes());
        for body in bodies {
            sized(out, body.as_ref());
        }
    }

    /// PUB for one body, MPUB for more: a batch of one is how NSQ users publish singly.
    pub fn publish_batch<B: AsRef<[u8]>>(out: &mut Vec<u8>, topic: &str, bodies: &[B]) {
        match bodies {
            [one] => publish(out, topic, one.as_ref()),
            many => mpub(out, topic, many),
        }
    }

    fn sized(out: &mut Vec<u8>, data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(data);
    }
}

/// What we ask for in IDENTIFY. Output-buffer settings are passed through untouched so a
/// latency run can opt out of nsqd's default 250 ms flush batching; `None` leaves a key out
/// so the server's default applies.
#[derive(Debug, Clone, Default)]
pub struct IdentifyOptions {
    pub output_buffer_size: Option<i64>,
    pub output_buffer_timeout_ms: Option<i64>,
    pub heartbeat_interval_ms: Option<i64>,
    pub msg_timeout_ms: Option<i64>,
    /// Shown in the server's /stats; defaults to `nsqrs-bench`.
    pub client_id: Option<String>,
    pub user_agent: Option<String>,
    /// Ask for `OK <id>…` publish replies (an nsqrs key; stock nsqd ignores it).
    pub message_id_reply: bool,
    /// Upgrades to ask for; the reply says which the server granted.
    pub tls_v1: bool,
    pub snappy: bool,
    /// Ask for deflate at this level.
    pub deflate: Option<u32>,
    /// 0 (every message) leaves the key out.
    pub sample_rate: u8,
}

/// The IDENTIFY reply under feature negotiation; every key optional because not every
/// NSQ-compatible server sends them all (and a plain `OK` sends none).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerInfo {
    pub version: Option<String>,
    pub max_rdy_count: Option<u64>,
    pub msg_timeout: Option<i64>,
    pub auth_required: Option<bool>,
    pub tls_v1: Option<bool>,
    pub snappy: Option<bool>,
    pub deflate: Option<bool>,
    pub output_buffer_size: Option<i64>,
    pub output_buffer_timeout: Option<i64>,
}

/// A V2 connection with explicit read and write buffers, driven by one task.
pub struct Conn<S> {
    stream: S,
    /// Frames as the server sent them, decompressed already when compression is on.
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    peer: String,
    codec: Option<Box<Codec>>,
}

/// Negotiated compression, both ways.
struct Codec {
    encoder: Encoder,
    decoder: Decoder,
    /// Compressed bytes as read off the stream.
    raw: BytesMut,
    /// Compressed bytes about to be written.
    out: Vec<u8>,
}

impl Conn<TcpStream> {
    pub async fn connect(addr: &str) -> Result<Self> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect to {addr}: timed out after {CONNECT_TIMEOUT:?}"))?
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        // Go's dialer enables TCP_NODELAY by default; match it so numbers compare with go-nsq.
        stream
            .set_nodelay(true)
            .map_err(|e| format!("{addr}: set TCP_NODELAY: {e}"))?;
        Ok(Conn::new(stream, addr.to_string()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S, peer: String) -> Self {
        Conn {
            stream,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: Vec::with_capacity(64 * 1024),
            peer,
            codec: None,
        }
    }

    /// The same connection on a stream that wraps this one without changing its bytes.
    pub fn map_stream<T>(self, wrap: impl FnOnce(S) -> T) -> Conn<T> {
        Conn {
            stream: wrap(self.stream),
            rbuf: self.rbuf,
            wbuf: self.wbuf,
            peer: self.peer,
            codec: self.codec,
        }
    }

    /// The bare stream, for a TLS handshake on it. Anything already read or queued would
    /// belong to the handshake's byte stream, so that is refused.
    pub fn into_stream(self) -> Result<S> {
        if !self.rbuf.is_empty() || !self.wbuf.is_empty() || self.codec.is_some() {
            return Err(format!("{}: unexpected data before the TLS handshake", self.peer).into());
        }
        Ok(self.stream)
    }

    /// Compresses and decompresses everything from here on. Bytes already read past the
    /// reply that granted it are the server's first compressed ones.
    pub fn start_compression(&mut self, encoder: Encoder, mut decoder: Decoder) {
        decoder.push(&self.rbuf);
        self.rbuf.clear();
        self.codec = Some(Box::new(Codec {
            encoder,
            decoder,
            raw: BytesMut::new(),
            out: Vec::new(),
        }));
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The write buffer; fill it with `encode::*` and send it with `flush`.
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.wbuf
    }

    pub fn pending(&self) -> usize {
        self.wbuf.len()
    }

    pub async fn flush(&mut self) -> Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        write_out(&mut self.stream, self.codec.as_deref_mut(), &self.wbuf)
            .await
            .map_err(|e| format!("{}: write: {e}", self.peer))?;
        self.wbuf.clear();
        Ok(())
    }

    /// Sends queued commands and then `bytes` without copying them into the buffer, so a
    /// prebuilt MPUB can be reused for every batch.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.flush().await?;
        write_out(&mut self.stream, self.codec.as_deref_mut(), bytes)
            .await
            .map_err(|e| format!("{}: write: {e}", self.peer).into())
    }

    /// The next frame already read, if any; never touches the socket.
    pub fn next_buffered(&mut self) -> Result<Option<Frame>> {
        loop {
            if let Some(frame) = decode_frame(&mut self.rbuf).map_err(|e| format!("{}: {e}", self.peer))? {
                return Ok(Some(frame));
            }
            if !self.decode_pending()? {
                return Ok(None);
            }
        }
    }

    /// Decompresses more of what was already read; false when that gave nothing new.
    fn decode_pending(&mut self) -> Result<bool> {
        let Some(c) = self.codec.as_deref_mut() else {
            return Ok(false);
        };
        if !c.decoder.has_pending() {
            return Ok(false);
        }
        let before = self.rbuf.len();
        c.decoder
            .fill(&mut self.rbuf, DECODE_CHUNK)
            .map_err(|e| format!("{}: decompress: {e}", self.peer))?;
        Ok(self.rbuf.len() > before)
    }

    /// One read from the socket into the read buffer (through the decompressor, if any).
    pub async fn fill(&mut self) -> Result<()> {
        if self.decode_pending()? {
            return Ok(());
        }
        let target = match self.codec.as_deref_mut() {
            Some(c) => &mut c.raw,
            None => &mut self.rbuf,
        };
        if target.capacity() - target.len() < 16 * 1024 {
            target.reserve(64 * 1024);
        }
        let n = self
            .stream
            .read_buf(target)
            .await
            .map_err(|e| format!("{}: read: {e}", self.peer))?;
        if n == 0 {
            return Err(format!("{}: connection closed by server", self.peer).into());
        }
        if let Some(c) = self.codec.as_deref_mut() {
            c.decoder.push(&c.raw);
            c.raw.clear();
            c.decoder
                .fill(&mut self.rbuf, DECODE_CHUNK)
                .map_err(|e| format!("{}: decompress: {e}", self.peer))?;
        }
        Ok(())
    }

    pub async fn read_frame(&mut self) -> Result<Frame> {
        loop {
            if let Some(frame) = self.next_buffered()? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    /// Waits for the reply to `what`, answering heartbeats on the way: nsqd sends them to
    /// publishers too and drops a client that stays silent.
    pub async fn read_reply(&mut self, what: &str) -> Result<Bytes> {
        loop {
            match self.read_frame().await? {
                Frame::Response(r) if r == HEARTBEAT => {
                    encode::nop(&mut self.wbuf);
                    self.flush().await?;
                }
                Frame::Response(r) => return Ok(r),
                Frame::Error(e) => {
                    return Err(
                        format!("{}: {what} failed: {}", self.peer, String::from_utf8_lossy(&e)).into(),
                    )
                }
                Frame::Message(_) => {
                    return Err(format!("{}: unexpected message while awaiting {what}", self.peer).into())
                }
            }
        }
    }

    /// `read_reply` bounded by `REPLY_TIMEOUT` and required to be `OK`.
    pub async fn expect_ok(&mut self, what: &str) -> Result<()> {
        let reply = tokio::time::timeout(REPLY_TIMEOUT, self.read_reply(what))
            .await
            .map_err(|_| format!("{}: no reply to {what} within {REPLY_TIMEOUT:?}", self.peer))??;
        if reply.as_ref() == b"OK" {
            Ok(())
        } else {
            Err(format!(
                "{}: {what}: expected OK, got {:?}",
                self.peer,
                String::from_utf8_lossy(&reply)
            )
            .into())
        }
    }

    /// Magic + IDENTIFY with feature negotiation, returning the server's reply; acting on the
    /// upgrades it grants is the caller's job, and must come next. A plain `OK` reply is
    /// accepted too: it is what a server without feature negotiation sends.
    pub async fn identify(&mut self, opts: &IdentifyOptions) -> Result<ServerInfo> {
        self.wbuf.extend_from_slice(MAGIC_V2);
        encode::identify(&mut self.wbuf, &identify_body(opts));
        self.flush().await?;
        let reply = tokio::time::timeout(REPLY_TIMEOUT, self.read_reply("IDENTIFY"))
            .await
            .map_err(|_| format!("{}: no reply to IDENTIFY within {REPLY_TIMEOUT:?}", self.peer))??;
        if reply.as_ref() == b"OK" {
            return Ok(ServerInfo::default());
        }
        let info: ServerInfo = serde_json::from_slice(&reply).map_err(|e| {
            format!(
                "{}: IDENTIFY reply is neither OK nor JSON ({e}): {:?}",
                self.peer,
                String::from_utf8_lossy(&reply)
            )
        })?;
        Ok(info)
    }
}

/// Writes `data` (compressed when `codec` is set) and flushes: TLS holds records in its
/// writer until flushed, and on a bare socket flushing costs nothing.
async fn write_out<S: AsyncWrite + Unpin>(
    stream: &mut S,
    codec: Option<&mut Codec>,
    data: &[u8],
) -> std::io::Result<()> {
    match codec {
        None => stream.write_all(data).await?,
        Some(c) => {
            c.out.clear();
            c.encoder.encode(data, &mut c.out)?;
            stream.write_all(&c.out).await?;
        }
    }
    stream.flush().await
}

fn identify_body(opts: &IdentifyOptions) -> Vec<u8> {
    let host = crate::common::host::local_hostname();
    let mut body = serde_json::json!({
        "client_id": opts.client_id.as_deref().unwrap_or("nsqrs-bench"),
        "hostname": host,
        "user_agent": opts.user_agent.clone()
            .unwrap_or_else(|| concat!("nsqrs-bench/", env!("CARGO_PKG_VERSION")).to_string()),
        "feature_negotiation": true,
    });
    if opts.message_id_reply {
        body["message_id_reply"] = true.into();
    }
    if opts.tls_v1 {
        body["tls_v1"] = true.into();
    }
    if opts.snappy {
        body["snappy"] = true.into();
    }
    if let Some(level) = opts.deflate {
        body["deflate"] = true.into();
        body["deflate_level"] = level.into();
    }
    if opts.sample_rate > 0 {
        body["sample_rate"] = opts.sample_rate.into();
    }
    let extra = [
        ("output_buffer_size", opts.output_buffer_size),
        ("output_buffer_timeout", opts.output_buffer_timeout_ms),
        ("heartbeat_interval", opts.heartbeat_interval_ms),
        ("msg_timeout", opts.msg_timeout_ms),
    ];
    for (key, value) in extra {
        if let Some(v) = value {
            body[key] = v.into();
        }
    }
    body.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn frame(frame_type: u32, data: &[u8]) -> Vec<u8> {
        let mut v = ((data.len() + 4) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(&frame_type.to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn message_data(ts: i64, attempts: u16, id: &[u8; 16], body: &[u8]) -> Vec<u8> {
        let mut v = ts.to_be_bytes().to_vec();
        v.extend_from_slice(&attempts.to_be_bytes());
        v.extend_from_slice(id);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn decodes_response_error_and_message() {
        let id = *b"0123456789abcdef";
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&frame(FRAME_RESPONSE, b"OK"));
        buf.extend_from_slice(&frame(FRAME_ERROR, b"E_INVALID nope"));
        buf.extend_from_slice(&frame(FRAME_MESSAGE, &message_data(42, 1, &id, b"hello")));

        assert_eq!(
            decode_frame(&mut buf).unwrap(),
            Some(Frame::Response(Bytes::from_static(b"OK")))
        );
        assert_eq!(
            decode_frame(&mut buf).unwrap(),
            Some(Frame::Error(Bytes::from_static(b"E_INVALID nope")))
        );
        let expected = Message {
            timestamp: 42,
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
        let whole = frame(FRAME_RESPONSE, b"_heartbeat_");
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
        let mut buf = BytesMut::from(&frame(FRAME_MESSAGE, &message_data(-1, 65535, &id, b""))[..]);
        match decode_frame(&mut buf).unwrap() {
            Some(Frame::Message(m)) => {
                assert_eq!((m.timestamp, m.attempts, m.id), (-1, 65535, id));
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

        let mut buf = BytesMut::from(&frame(FRAME_MESSAGE, &[0u8; 25])[..]);
        assert_eq!(decode_frame(&mut buf), Err(FrameError::ShortMessage(25)));
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode::sub(&mut out, "t", "c");
        encode::rdy(&mut out, 2500);
        encode::fin(&mut out, b"0000000000000001");
        encode::nop(&mut out);
        assert_eq!(out, b"SUB t c\nRDY 2500\nFIN 0000000000000001\nNOP\n");

        let mut out = Vec::new();
        encode::req(&mut out, b"0000000000000002", 1500);
        encode::touch(&mut out, b"0000000000000003");
        encode::cls(&mut out);
        encode::dpub(&mut out, "t", 250, b"x");
        assert_eq!(
            out,
            b"REQ 0000000000000002 1500\nTOUCH 0000000000000003\nCLS\nDPUB t 250\n\0\0\0\x01x"
        );

        let mut out = Vec::new();
        encode::publish_batch(&mut out, "t", &[b"ab"]);
        assert_eq!(out, b"PUB t\n\0\0\0\x02ab");

        let mut out = Vec::new();
        encode::publish_batch(&mut out, "t", &[&b"ab"[..], b"c"]);
        let mut expected = b"MPUB t\n".to_vec();
        expected.extend_from_slice(&(4u32 + 6 + 5).to_be_bytes());
        expected.extend_from_slice(&2u32.to_be_bytes());
        expected.extend_from_slice(b"\0\0\0\x02ab\0\0\0\x01c");
        assert_eq!(out, expected);
    }

    #[test]
    fn classifies_non_fatal_errors() {
        assert!(is_non_fatal(b"E_FIN_FAILED FIN x failed ID not in flight"));
        assert!(is_non_fatal(b"E_REQ_FAILED x"));
        assert!(!is_non_fatal(b"E_INVALID invalid command"));
    }

    #[test]
    fn identify_asks_for_upgrades_and_sampling_only_when_wanted() {
        let plain: serde_json::Value =
            serde_json::from_slice(&identify_body(&IdentifyOptions::default())).unwrap();
        for key in ["tls_v1", "snappy", "deflate", "deflate_level", "sample_rate"] {
            assert!(plain.get(key).is_none(), "{key} in {plain}");
        }
        let opts = IdentifyOptions {
            tls_v1: true,
            deflate: Some(3),
            sample_rate: 40,
            ..Default::default()
        };
        let body: serde_json::Value = serde_json::from_slice(&identify_body(&opts)).unwrap();
        assert_eq!(
            (
                &body["tls_v1"],
                &body["deflate"],
                &body["deflate_level"],
                &body["sample_rate"]
            ),
            (&true.into(), &true.into(), &3.into(), &40.into())
        );
        assert!(body.get("snappy").is_none());
    }

    #[tokio::test]
    async fn identify_accepts_json_and_answers_heartbeats() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut conn = Conn::new(client, "test".into());
        let server_side = tokio::spawn(async move {
            let mut got = vec![0u8; 4];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, MAGIC_V2);
            server.write_all(&frame(FRAME_RESPONSE, HEARTBEAT)).await.unwrap();
            let mut line = vec![0u8; 9];
            server.read_exact(&mut line).await.unwrap();
            assert_eq!(&line, b"IDENTIFY\n");
            let mut size = [0u8; 4];
            server.read_exact(&mut size).await.unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(size) as usize];
            server.read_exact(&mut body).await.unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["feature_negotiation"], true);
            assert_eq!(json["output_buffer_timeout"], 25);
            let reply = br#"{"max_rdy_count":2500,"version":"1.3.0","tls_v1":false}"#;
            server.write_all(&frame(FRAME_RESPONSE, reply)).await.unwrap();
            let mut nop = vec![0u8; 4];
            server.read_exact(&mut nop).await.unwrap();
            assert_eq!(&nop, b"NOP\n");
        });
        let opts = IdentifyOptions {
            output_buffer_timeout_ms: Some(25),
            ..Default::default()
        };
        let info = conn.identify(&opts).await.unwrap();
        assert_eq!(info.version.as_deref(), Some("1.3.0"));
        assert_eq!(info.max_rdy_count, Some(2500));
        server_side.await.unwrap();
    }

    /// The server writes its compressed `OK` right behind the IDENTIFY reply, so one read
    /// may bring both: what was read past the reply must go through the decompressor.
    async fn compressed_stream(make: fn() -> (Encoder, Decoder, Encoder, Decoder)) {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let mut conn = Conn::new(client, "test".into());
        let (mut server_enc, mut server_dec, client_enc, client_dec) = make();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = frame(FRAME_RESPONSE, br#"{"snappy":true}"#);
        let mut plain = frame(FRAME_RESPONSE, b"OK");
        plain.extend_from_slice(&frame(
            FRAME_MESSAGE,
            &message_data(7, 1, b"0123456789abcdef", &big),
        ));
        server_enc.encode(&plain, &mut wire).unwrap();
        server.write_all(&wire).await.unwrap();

        let reply = conn.read_reply("IDENTIFY").await.unwrap();
        assert_eq!(&reply[..], br#"{"snappy":true}"#);
        conn.start_compression(client_enc, client_dec);
        conn.expect_ok("upgrade").await.unwrap();
        match conn.read_frame().await.unwrap() {
            Frame::Message(m) => assert_eq!(m.body, big),
            other => panic!("unexpected {other:?}"),
        }

        encode::auth(conn.out(), b"secret");
        conn.flush().await.unwrap();
        let mut raw = vec![0u8; 4096];
        let n = server.read(&mut raw).await.unwrap();
        server_dec.push(&raw[..n]);
        let mut got = BytesMut::new();
        server_dec.fill(&mut got, 4096).unwrap();
        assert_eq!(&got[..], b"AUTH\n\0\0\0\x06secret");
    }

    #[tokio::test]
    async fn snappy_reads_what_came_with_the_identify_reply() {
        compressed_stream(|| {
            (
                Encoder::snappy(),
                Decoder::snappy(),
                Encoder::snappy(),
                Decoder::snappy(),
            )
        })
        .await;
    }

    #[tokio::test]
    async fn deflate_reads_what_came_with_the_identify_reply() {
        compressed_stream(|| {
            (
                Encoder::deflate(6),
                Decoder::deflate(),
                Encoder::deflate(1),
                Decoder::deflate(),
            )
        })
        .await;
    }

    #[tokio::test]
    async fn error_frame_becomes_a_clear_error() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut conn = Conn::new(client, "peer:1".into());
        server
            .write_all(&frame(
                FRAME_ERROR,
                b"E_BAD_TOPIC PUB topic name \"a b\" is not valid",
            ))
            .await
            .unwrap();
        let err = conn.expect_ok("PUB").await.unwrap_err().to_string();
        assert_eq!(
            err,
            "peer:1: PUB failed: E_BAD_TOPIC PUB topic name \"a b\" is not valid"
        );
    }
}
