//! The null server: a broker that stores nothing. It speaks just enough NSQ V2 for the
//! bench to run flat out (IDENTIFY, PUB/MPUB acknowledged and discarded, SUB + RDY answered
//! with synthetic messages inside the RDY window, FIN accepted), so the bench can be
//! validated without a broker and its own ceiling measured.
//!
//! Each connection is two tasks: the command reader never waits on socket writes, so a
//! client flushing FINs can never deadlock against a server busy streaming messages.

use crate::common::time::now_ns;
use crate::protocol::frame::{
    FRAME_TYPE_ERROR, FRAME_TYPE_MESSAGE, FRAME_TYPE_RESPONSE, HEARTBEAT, MAGIC_V2, MESSAGE_HEADER_LEN,
};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

/// nsqd's limit on a command line (its 16 KiB `bufio.ReadSlice`).
const MAX_LINE: u64 = 16 * 1024;
const MAX_BODY: usize = 64 << 20;
const MAX_RDY: i64 = 2500;
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// Messages generated per socket write while the window is open.
const BURST: i64 = 128;

#[derive(Debug, Clone)]
pub struct NullOptions {
    /// Body size of the synthetic messages.
    pub body_size: usize,
}

/// Accepts forever; each connection runs independently and its errors stay its own.
pub async fn serve(listener: TcpListener, opts: NullOptions) -> io::Result<()> {
    let opts = Arc::new(opts);
    // Distinct high bits per connection keep message ids unique across connections.
    let mut conn_no = 0u64;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like pass; do not spin on them.
                crate::errln!("null-server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        conn_no += 1;
        let opts = Arc::clone(&opts);
        let (rd, wr) = stream.into_split();
        tokio::spawn(handle(rd, wr, opts, conn_no << 40));
    }
}

/// Flow-control state shared by a connection's two tasks.
struct Window {
    subscribed: AtomicBool,
    rdy: AtomicI64,
    in_flight: AtomicI64,
    heartbeat_ms: AtomicU64,
    wake: Notify,
}

pub async fn handle<R, W>(rd: R, wr: W, opts: Arc<NullOptions>, id_base: u64)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let window = Arc::new(Window {
        subscribed: AtomicBool::new(false),
        rdy: AtomicI64::new(0),
        in_flight: AtomicI64::new(0),
        heartbeat_ms: AtomicU64::new(DEFAULT_HEARTBEAT.as_millis() as u64),
        wake: Notify::new(),
    });
    let (tx, rx) = mpsc::channel(64);
    let pump = tokio::spawn(pump(wr, rx, Arc::clone(&window), opts, id_base));
    // A client hanging up mid-command is normal here, so the error itself is dropped.
    let _ = read_commands(rd, &tx, &window).await;
    // Dropping the sender lets the pump write what is queued (e.g. a fatal error) and exit.
    drop(tx);
    let _ = pump.await;
}

fn frame(frame_type: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&(4 + data.len() as u32).to_be_bytes());
    out.extend_from_slice(&frame_type.to_be_bytes());
    out.extend_from_slice(data);
    out
}

fn ok() -> Vec<u8> {
    frame(FRAME_TYPE_RESPONSE, b"OK")
}

async fn read_commands<R: AsyncRead + Unpin>(
    rd: R,
    tx: &mpsc::Sender<Vec<u8>>,
    window: &Window,
) -> io::Result<()> {
    let send = |f: Vec<u8>| async move { tx.send(f).await.map_err(|_| io::Error::other("pump gone")) };
    let fatal = |msg: String| async move {
        let _ = tx.send(frame(FRAME_TYPE_ERROR, msg.as_bytes())).await;
        Ok(())
    };
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let mut magic = [0u8; 4];
    rd.read_exact(&mut magic).await?;
    if &magic != MAGIC_V2 {
        return fatal("E_BAD_PROTOCOL client sent bad protocol magic".into()).await;
    }
    let mut line = Vec::with_capacity(128);
    let mut body = Vec::new();
    loop {
        line.clear();
        let n = (&mut rd).take(MAX_LINE).read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') {
            return fatal("E_INVALID command line too long".into()).await;
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let mut parts = line.split(|&b| b == b' ');
        let cmd = parts.next().unwrap_or_default();
        let args: Vec<&[u8]> = parts.collect();
        match cmd {
            b"IDENTIFY" => {
                if let Err(e) = read_sized(&mut rd, &mut body).await? {
                    return fatal(format!("E_BAD_BODY IDENTIFY {e}")).await;
                }
                let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
                    return fatal("E_BAD_BODY IDENTIFY failed to decode JSON body".into()).await;
                };
                if let Some(ms) = json["heartbeat_interval"].as_i64() {
                    // -1 disables heartbeats (stored as 0); 0 keeps the default.
                    let ms = match ms {
                        -1 => 0,
                        0 => DEFAULT_HEARTBEAT.as_millis() as u64,
                        ms => ms.max(1000) as u64,
                    };
                    window.heartbeat_ms.store(ms, Ordering::Relaxed);
                    window.wake.notify_one();
                }
                if json["feature_negotiation"].as_bool() == Some(true) {
                    send(frame(FRAME_TYPE_RESPONSE, identify_reply().as_bytes())).await?;
                } else {
                    send(ok()).await?;
                }
            }
            b"PUB" | b"DPUB" | b"MPUB" => {
                let name = String::from_utf8_lossy(cmd).into_owned();
                if args.is_empty() {
                    return fatal(format!("E_INVALID {name} insufficient number of parameters")).await;
                }
                if let Err(e) = read_sized(&mut rd, &mut body).await? {
                    let code = if name == "MPUB" {
                        "E_BAD_BODY"
                    } else {
                        "E_BAD_MESSAGE"
                    };
                    return fatal(format!("{code} {name} {e}")).await;
                }
                send(ok()).await?;
            }
            b"SUB" => {
                if args.len() < 2 {
                    return fatal("E_INVALID SUB insufficient number of parameters".into()).await;
                }
                window.subscribed.store(true, Ordering::Release);
                send(ok()).await?;
            }
            b"RDY" => {
                let count = match args.first() {
                    None => Some(1),
                    Some(n) => std::str::from_utf8(n).ok().and_then(|s| s.parse::<i64>().ok()),
                };
                match count {
                    Some(n) if (0..=MAX_RDY).contains(&n) => {
                        window.rdy.store(n, Ordering::Release);
                        window.wake.notify_one();
                    }
                    Some(n) => {
                        return fatal(format!("E_INVALID RDY count {n} out of range 0-{MAX_RDY}")).await
                    }
                    None => return fatal("E_INVALID could not parse RDY count".into()).await,
                }
            }
            b"FIN" | b"REQ" => {
                if args.first().map(|id| id.len()) != Some(16) {
                    return fatal(format!(
                        "E_INVALID {} invalid message ID",
                        String::from_utf8_lossy(cmd)
                    ))
                    .await;
                }
                // Ids are not tracked; only the window arithmetic matters here.
                let _ = window
                    .in_flight
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| (v > 0).then(|| v - 1));
                window.wake.notify_one();
            }
            b"TOUCH" | b"NOP" => {}
            b"CLS" => {
                window.rdy.store(0, Ordering::Release);
                send(frame(FRAME_TYPE_RESPONSE, b"CLOSE_WAIT")).await?;
            }
            other => {
                return fatal(format!(
                    "E_INVALID invalid command {}",
                    String::from_utf8_lossy(other)
                ))
                .await;
            }
        }
    }
}

/// Reads `[4-byte size][body]` into `body`. The outer error is I/O, the inner one a
/// protocol violation to report to the client.
async fn read_sized<R: AsyncRead + Unpin>(rd: &mut R, body: &mut Vec<u8>) -> io::Result<Result<(), String>> {
    let size = rd.read_i32().await?;
    if size <= 0 || size as usize > MAX_BODY {
        return Ok(Err(format!("invalid body size {size}")));
    }
    body.resize(size as usize, 0);
    rd.read_exact(body).await?;
    Ok(Ok(()))
}

fn identify_reply() -> String {
    serde_json::json!({
        "max_rdy_count": MAX_RDY,
        "version": concat!(env!("CARGO_PKG_VERSION"), "-null"),
        "max_msg_timeout": 900000,
        "msg_timeout": 60000,
        "tls_v1": false,
        "deflate": false,
        "deflate_level": 6,
        "max_deflate_level": 6,
        "snappy": false,
        "sample_rate": 0,
        "auth_required": false,
        "output_buffer_size": 16384,
        "output_buffer_timeout": 250,
    })
    .to_string()
}

/// Writes replies from the command reader and, while the window is open, synthetic messages.
async fn pump<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut replies: mpsc::Receiver<Vec<u8>>,
    window: Arc<Window>,
    opts: Arc<NullOptions>,
    id_base: u64,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(64 * 1024);
    let mut next_id = id_base;
    let mut last_heartbeat = Instant::now();
    loop {
        loop {
            match replies.try_recv() {
                Ok(reply) => out.extend_from_slice(&reply),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    wr.write_all(&out).await?;
                    return wr.flush().await;
                }
            }
        }
        let heartbeat_ms = window.heartbeat_ms.load(Ordering::Relaxed);
        let next_heartbeat = (heartbeat_ms > 0).then(|| last_heartbeat + Duration::from_millis(heartbeat_ms));
        if next_heartbeat.is_some_and(|at| Instant::now() >= at) {
            out.extend_from_slice(&frame(FRAME_TYPE_RESPONSE, HEARTBEAT));
            last_heartbeat = Instant::now();
        }
        let open = if window.subscribed.load(Ordering::Acquire) {
            window.rdy.load(Ordering::Acquire) - window.in_flight.load(Ordering::Acquire)
        } else {
            0
        };
        if open > 0 {
            let n = open.min(BURST);
            // Counted before writing, so a quick FIN can never drive in_flight below zero.
            window.in_flight.fetch_add(n, Ordering::AcqRel);
            let ts = now_ns();
            for _ in 0..n {
                encode_message(&mut out, ts, next_id, opts.body_size);
                next_id += 1;
            }
            wr.write_all(&out).await?;
            out.clear();
            continue;
        }
        if !out.is_empty() {
            wr.write_all(&out).await?;
            out.clear();
        }
        let heartbeat_sleep = async {
            match next_heartbeat {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            reply = replies.recv() => match reply {
                Some(reply) => out.extend_from_slice(&reply),
                None => return wr.flush().await,
            },
            _ = window.wake.notified() => {}
            _ = heartbeat_sleep => {}
        }
    }
}

/// A message frame: attempts 1, a 16-hex-char id, and a body that starts with the send
/// time so the bench's latency mode also works against this server.
fn encode_message(out: &mut Vec<u8>, ts: i64, id: u64, body_size: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let size = 4 + MESSAGE_HEADER_LEN + body_size;
    out.extend_from_slice(&(size as u32).to_be_bytes());
    out.extend_from_slice(&FRAME_TYPE_MESSAGE.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    for shift in (0..16).rev() {
        out.push(HEX[((id >> (shift * 4)) & 0xf) as usize]);
    }
    let stamp = ts.to_be_bytes();
    let stamped = body_size.min(8);
    out.extend_from_slice(&stamp[..stamped]);
    out.resize(out.len() + (body_size - stamped), b'n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::encode;
    use crate::protocol::frame::{decode_frame, Frame};
    use bytes::BytesMut;

    #[test]
    fn synthetic_messages_decode() {
        let mut out = Vec::new();
        encode_message(&mut out, 1234, 0xabc, 20);
        let mut buf = BytesMut::from(&out[..]);
        match decode_frame(&mut buf).unwrap() {
            Some(Frame::Message(m)) => {
                assert_eq!(m.timestamp_ns, 1234);
                assert_eq!(m.attempts, 1);
                assert_eq!(&m.id, b"0000000000000abc");
                assert_eq!(m.body.len(), 20);
                assert_eq!(&m.body[..8], &1234i64.to_be_bytes());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(buf.is_empty());
    }

    async fn next(buf: &mut BytesMut, rd: &mut (impl AsyncRead + Unpin)) -> Frame {
        loop {
            if let Some(f) = decode_frame(buf).unwrap() {
                return f;
            }
            assert!(rd.read_buf(buf).await.unwrap() > 0, "server closed");
        }
    }

    #[tokio::test]
    async fn streams_within_the_rdy_window() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (srd, swr) = tokio::io::split(server);
        let opts = Arc::new(NullOptions { body_size: 10 });
        tokio::spawn(handle(srd, swr, opts, 0));
        let (mut crd, mut cwr) = tokio::io::split(client);
        let mut cmds = MAGIC_V2.to_vec();
        encode::identify(&mut cmds, br#"{"feature_negotiation":true}"#);
        encode::sub(&mut cmds, "t", "c");
        encode::rdy(&mut cmds, 3);
        cwr.write_all(&cmds).await.unwrap();

        let mut buf = BytesMut::new();
        match next(&mut buf, &mut crd).await {
            Frame::Response(r) => assert!(r.starts_with(b"{\"")),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            next(&mut buf, &mut crd).await,
            Frame::Response(bytes::Bytes::from_static(b"OK"))
        );
        let mut ids = Vec::new();
        for _ in 0..3 {
            match next(&mut buf, &mut crd).await {
                Frame::Message(m) => ids.push(m.id),
                other => panic!("unexpected {other:?}"),
            }
        }
        // The window is full: nothing more may arrive until a FIN.
        assert!(decode_frame(&mut buf).unwrap().is_none());
        let more = tokio::time::timeout(Duration::from_millis(100), crd.read_buf(&mut buf)).await;
        assert!(more.is_err(), "server sent past the RDY window");
        let mut fin = Vec::new();
        encode::fin(&mut fin, &ids[0]);
        cwr.write_all(&fin).await.unwrap();
        assert!(matches!(next(&mut buf, &mut crd).await, Frame::Message(_)));

        cwr.write_all(b"BOGUS\n").await.unwrap();
        match next(&mut buf, &mut crd).await {
            Frame::Error(e) => assert_eq!(&e[..], b"E_INVALID invalid command BOGUS"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
