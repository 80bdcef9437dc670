//! A replication connection's transport: dialing a peer's TCP listener (plain, or TLS with
//! this broker's own certificate), and reading and writing whole frames with deadlines.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::wire::{self, Frame, MAGIC_PLAIN, MAGIC_TLS};

/// A byte stream a replication connection runs on: a socket or TLS over one.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type BoxIo = Box<dyn Io>;

/// How long to wait for a peer to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection silent for this long is dead; each side sends PING after `PING_EVERY` idle.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// How long one write may block before the peer counts as gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to a peer's nsqd TCP address and announces replication (`  RS` and a TLS
/// handshake when `tls` is given, else `  R1`).
pub async fn dial(addr: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<BoxIo, String> {
    let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connect {addr}: {e}")),
        Err(_) => return Err(format!("connect {addr}: timed out")),
    };
    let _ = stream.set_nodelay(true);
    let mut stream = stream;
    match tls {
        None => {
            write_all(&mut stream, &MAGIC_PLAIN).await?;
            Ok(Box::new(stream))
        }
        Some(config) => {
            write_all(&mut stream, &MAGIC_TLS).await?;
            let name = crate::client::tls::server_name(addr)?;
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            match timeout(CONNECT_TIMEOUT * 2, connector.connect(name, stream)).await {
                Ok(Ok(tls)) => Ok(Box::new(tls)),
                Ok(Err(e)) => Err(format!("TLS with {addr}: {e}")),
                Err(_) => Err(format!("TLS with {addr}: handshake timed out")),
            }
        }
    }
}

/// Writes and flushes, bounded by `WRITE_TIMEOUT`.
pub async fn write_all<W: AsyncWrite + Unpin + ?Sized>(wr: &mut W, data: &[u8]) -> Result<(), String> {
    let write = async {
        wr.write_all(data).await?;
        wr.flush().await
    };
    match timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write: {e}")),
        Err(_) => Err("write timed out".into()),
    }
}

/// Sends one frame.
pub async fn send<W: AsyncWrite + Unpin + ?Sized>(wr: &mut W, frame: &Frame) -> Result<(), String> {
    let mut out = Vec::new();
    wire::encode(frame, &mut out);
    write_all(wr, &out).await
}

/// Reads frames off a stream.
pub struct FrameReader<R> {
    rd: R,
    buf: BytesMut,
    pub max_frame: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(rd: R) -> FrameReader<R> {
        FrameReader {
            rd,
            buf: BytesMut::with_capacity(64 * 1024),
            max_frame: wire::BASE_FRAME_LIMIT,
        }
    }

    /// The next frame, waiting at most `idle` for more bytes each time. An ERROR frame from
    /// the other side is returned as an error.
    pub async fn next(&mut self, idle: Duration) -> Result<Frame, String> {
        loop {
            match self.buffered()? {
                Some(Frame::Error(text)) => return Err(format!("peer: {text}")),
                Some(frame) => return Ok(frame),
                None => self.fill(idle).await?,
            }
        }
    }

    /// A frame already buffered, if any.
    pub fn buffered(&mut self) -> Result<Option<Frame>, String> {
        wire::decode(&mut self.buf, self.max_frame).map_err(|e| format!("bad frame: {e}"))
    }

    async fn fill(&mut self, idle: Duration) -> Result<(), String> {
        self.buf.reserve(64 * 1024);
        match timeout(idle, self.rd.read_buf(&mut self.buf)).await {
            Ok(Ok(0)) => Err("connection closed".into()),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("read: {e}")),
            Err(_) => Err(format!("nothing heard for {idle:?}")),
        }
    }
}
