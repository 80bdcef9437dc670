//! A client's connection in NSQ's TCP protocol V2: buffered reads and writes, the IDENTIFY
//! exchange, and answering heartbeats. Frames and commands are encoded and decoded by
//! `protocol`; the producer, the consumer and the bench all speak through this.
//!
//! Negotiated compression is a transform on the connection's buffers (the server's own
//! snappy/deflate codec), so a plain connection pays nothing for it; TLS is a different
//! stream type, chosen by whoever opens the connection.
//!
//! Everything here is written against the protocol (nsq-reference §1.2), not against nsqrs,
//! so the same code loads Go nsqd and nsqrs alike.

use bytes::{Bytes, BytesMut};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::command::encode;
use crate::protocol::compress::{Decoder, Encoder};
use crate::protocol::frame::{decode_frame, Frame, HEARTBEAT, MAGIC_V2};
use crate::protocol::identify::{IdentifyRequest, IdentifyResponse};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request may wait for its `OK`; bounds every handshake and publish.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes decompressed at a time, so a small compressed input cannot balloon at once.
const DECODE_CHUNK: usize = 64 * 1024;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

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
    pub async fn identify(&mut self, request: &IdentifyRequest) -> Result<IdentifyResponse> {
        self.wbuf.extend_from_slice(MAGIC_V2);
        encode::identify(&mut self.wbuf, &request.to_json());
        self.flush().await?;
        let reply = tokio::time::timeout(REPLY_TIMEOUT, self.read_reply("IDENTIFY"))
            .await
            .map_err(|_| format!("{}: no reply to IDENTIFY within {REPLY_TIMEOUT:?}", self.peer))??;
        if reply.as_ref() == b"OK" {
            return Ok(IdentifyResponse::default());
        }
        let info: IdentifyResponse = serde_json::from_slice(&reply).map_err(|e| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{FRAME_TYPE_ERROR, FRAME_TYPE_MESSAGE, FRAME_TYPE_RESPONSE};
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

    #[tokio::test]
    async fn identify_accepts_json_and_answers_heartbeats() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut conn = Conn::new(client, "test".into());
        let server_side = tokio::spawn(async move {
            let mut got = vec![0u8; 4];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, MAGIC_V2);
            server
                .write_all(&frame(FRAME_TYPE_RESPONSE, HEARTBEAT))
                .await
                .unwrap();
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
            server
                .write_all(&frame(FRAME_TYPE_RESPONSE, reply))
                .await
                .unwrap();
            let mut nop = vec![0u8; 4];
            server.read_exact(&mut nop).await.unwrap();
            assert_eq!(&nop, b"NOP\n");
        });
        let mut opts = IdentifyRequest::from_client("test", "test/1");
        opts.output_buffer_timeout = 25;
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
        let mut wire = frame(FRAME_TYPE_RESPONSE, br#"{"snappy":true}"#);
        let mut plain = frame(FRAME_TYPE_RESPONSE, b"OK");
        plain.extend_from_slice(&frame(
            FRAME_TYPE_MESSAGE,
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
                FRAME_TYPE_ERROR,
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
