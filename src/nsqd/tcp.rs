//! The TCP front end: protocol V2 connections. Each connection has a reader task that parses
//! and executes commands, and a writer task that sends responses and, once subscribed, pulls
//! messages from the channel within the client's RDY window.
//!
//! Everything that goes out is batched: the writer collects all queued responses and as many
//! messages as the window allows into one buffer and writes it with one call, and flushes as
//! soon as nothing more is available, so an idle consumer sees a message at once and a busy
//! one gets large writes.
//!
//! IDENTIFY may upgrade the stream (TLS, then snappy or deflate, in nsqd's order). The reader
//! and writer are generic over their halves, so a plain connection runs on the socket's own
//! halves with no indirection; an upgrade stops the writer, takes its half back, performs the
//! handshake on the rejoined stream and restarts both loops on the new halves. Compression is
//! a transform on the loops' buffers (see `protocol/compress.rs`), not another stream layer.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};

use super::auth::{AuthRequest, AuthState, Authenticator};
use crate::common::time::now_ns;
use crate::nsqd::broker::channel::Channel;
use crate::nsqd::broker::client::ClientHandle;
use crate::nsqd::broker::topic::Topic;
use crate::nsqd::broker::{Broker, NSQ_VERSION};
use crate::nsqd::options::TlsRequired;
use crate::protocol::command::{parse, ClientState, ConnContext, ParseError};
use crate::protocol::compress::{Decoder, Encoder};
use crate::protocol::frame::{self, put_frame, put_message_frame};
use crate::protocol::identify::{ClientSettings, IdentifyRequest, IdentifyResponse};
use crate::protocol::MessageId;
use crate::protocol::{Command, ProtocolError};

/// Most messages pulled from a channel in one go, so one client cannot starve the others.
const MAX_TAKE: usize = 1024;
/// Message bytes one write batch aims at. The batch size follows the largest message of the
/// previous batch (the first assumes --max-msg-size), so a consumer that does not read makes
/// the writer hold about this much, not RDY x --max-msg-size; small messages still go 1024
/// at a time.
const BATCH_BYTES: usize = 1024 * 1024;
/// A message frame's bytes beyond its body: size, frame type, timestamp, attempts, ID.
const MESSAGE_FRAME_OVERHEAD: usize = 8 + frame::MESSAGE_HEADER_LEN;
const READ_BUFFER: usize = 64 * 1024;
/// A connection's first read size, doubled up to `READ_BUFFER` while reads fill it: an idle
/// connection holds a few kilobytes, a busy one reads in large batches.
const FIRST_READ: usize = 4 * 1024;
/// Beyond this, a buffer left empty is given back rather than kept for the connection's
/// lifetime: one large MPUB or delivery batch must not pin megabytes on an idle connection.
const KEEP_BUFFER: usize = 4 * READ_BUFFER;

/// Most response and error bytes queued for a client before its reader stops taking commands.
/// nsqd writes each response from its read loop, so a client that does not read stops being
/// read; this is the same back-pressure with a queue in between. Without it a client that
/// streams bad FINs and never reads would queue error frames without bound.
const MAX_QUEUED_OUTPUT: usize = 64 * 1024;

/// How long a TLS handshake inside IDENTIFY may take, as in nsqd.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What every connection shares: the broker and the optional TLS and auth services.
pub struct Services {
    pub broker: Arc<Broker>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub auth: Option<Arc<Authenticator>>,
}

pub async fn serve(listener: TcpListener, services: Arc<Services>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let services = services.clone();
                tokio::spawn(async move { handle(stream, services).await });
            }
            Err(e) => {
                eprintln!("[nsqd] ERROR: accept failed - {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if services.broker.is_exiting() {
            return;
        }
    }
}

/// State shared between a connection's reader and writer.
struct Shared {
    client: Arc<ClientHandle>,
    /// Response and error frames waiting for the writer.
    outgoing: Mutex<Vec<u8>>,
    subscription: OnceLock<(Arc<Topic>, Arc<Channel>)>,
    /// Set when the connection must end once `outgoing` is written.
    closing: AtomicBool,
    /// Set when the writer must write `outgoing` and hand its half back for an upgrade.
    handoff: AtomicBool,
    /// Signalled by the writer each time it has taken `outgoing` to write it, and at the end.
    drained: Notify,
    /// Signalled once `closing` is set, so a reader waiting for input stops at once.
    ended: Notify,
    /// `--max-msg-size`: what the writer assumes of messages it has not seen yet.
    max_msg_size: usize,
}

impl Shared {
    fn respond(&self, data: &[u8]) {
        put_frame(&mut self.outgoing.lock(), frame::FRAME_TYPE_RESPONSE, data);
        self.client.wake.notify_one();
    }

    fn error(&self, err: &ProtocolError) {
        put_frame(
            &mut self.outgoing.lock(),
            frame::FRAME_TYPE_ERROR,
            err.to_string().as_bytes(),
        );
        self.client.wake.notify_one();
    }

    fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.client.wake.notify_one();
        self.drained.notify_waiters();
        self.ended.notify_waiters();
    }

    fn ending(&self) -> bool {
        self.closing.load(Ordering::Acquire) || self.client.is_kicked()
    }

    /// Waits until the client has drained its queued output below `MAX_QUEUED_OUTPUT`; false
    /// when the connection ends first (the writer gives up on a client that does not read).
    async fn room_for_output(&self) -> bool {
        // The common case, checked without registering for wake-ups: this runs per command.
        if self.outgoing.lock().len() < MAX_QUEUED_OUTPUT {
            return !self.ending();
        }
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            let kicked = self.client.kick_notify.notified();
            tokio::pin!(kicked);
            kicked.as_mut().enable();
            if self.ending() {
                return false;
            }
            if self.outgoing.lock().len() < MAX_QUEUED_OUTPUT {
                return true;
            }
            tokio::select! {
                _ = drained => {}
                _ = kicked => {}
            }
        }
    }
}

/// What IDENTIFY agreed to switch on, applied once its JSON reply is on the wire.
#[derive(Debug, Clone, Copy)]
struct Upgrade {
    tls: bool,
    snappy: bool,
    /// Deflate level, when deflate was negotiated.
    deflate: Option<u32>,
}

/// Why a read loop returned.
enum ReadEnd<R> {
    Closed,
    /// IDENTIFY negotiated an upgrade: the read half and the bytes read past the IDENTIFY
    /// (already the client's TLS or compressed data).
    Upgrade(R, BytesMut, Upgrade),
}

async fn handle(mut stream: TcpStream, services: Arc<Services>) {
    let broker = &services.broker;
    let _ = stream.set_nodelay(true);
    let remote = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut magic = [0u8; 4];
    match timeout(Duration::from_secs(60), stream.read_exact(&mut magic)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    if magic == crate::replication::wire::MAGIC_PLAIN || magic == crate::replication::wire::MAGIC_TLS {
        let replication = broker.replication.get().cloned();
        let tls = services.tls.clone();
        return crate::replication::receiver::serve(stream, magic, replication, tls).await;
    }
    if &magic != frame::MAGIC_V2 {
        let mut out = Vec::new();
        put_frame(&mut out, frame::FRAME_TYPE_ERROR, b"E_BAD_PROTOCOL");
        let _ = stream.write_all(&out).await;
        return;
    }
    let remote_ip = remote
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']))
        .unwrap_or("")
        .to_string();
    let settings = ClientSettings::defaults(&broker.opts.identify_limits(), &remote_ip);
    let client = Arc::new(ClientHandle::new(
        broker.next_client_id(),
        remote,
        now_ns() / 1_000_000_000,
        settings,
    ));
    broker.register_client(client.clone());
    let shared = Arc::new(Shared {
        client: client.clone(),
        outgoing: Mutex::new(Vec::new()),
        subscription: OnceLock::new(),
        closing: AtomicBool::new(false),
        handoff: AtomicBool::new(false),
        drained: Notify::new(),
        ended: Notify::new(),
        max_msg_size: broker.opts.max_msg_size.max(1) as usize,
    });
    let mut conn = Connection {
        broker,
        services: &services,
        shared: &shared,
        state: ClientState::Init,
        identified: false,
        negotiated: false,
        tls: false,
        common_name: String::new(),
        remote_ip,
        auth: None,
        auth_secret: String::new(),
        upgrade: None,
        finished: Vec::new(),
    };
    let (rd, wr) = stream.into_split();
    let writer = tokio::spawn(write_loop(wr, shared.clone(), None));
    let end = read_loop(rd, &mut conn, BytesMut::new(), None).await;
    if let ReadEnd::Upgrade(rd, leftover, upgrade) = end {
        if let Some(wr) = take_writer(&shared, writer).await {
            upgrade_and_run(&mut conn, rd, wr, leftover, upgrade).await;
        }
    } else {
        finish_writer(&shared, writer).await;
    }
    if let Some((topic, channel)) = shared.subscription.get() {
        broker.client_left(topic, channel, client.id);
    }
    broker.unregister_client(client.id);
    crate::common::reclaim::note_released();
}

async fn finish_writer<W>(shared: &Shared, writer: JoinHandle<Option<W>>) {
    shared.close();
    let _ = timeout(Duration::from_secs(5), writer).await;
}

/// Stops the writer once it has written everything queued (the IDENTIFY reply) and returns
/// its half.
async fn take_writer<W>(shared: &Shared, writer: JoinHandle<Option<W>>) -> Option<W> {
    shared.handoff.store(true, Ordering::Release);
    shared.client.wake.notify_one();
    let wr = writer.await.ok().flatten();
    shared.handoff.store(false, Ordering::Release);
    wr
}

/// Performs the negotiated upgrades in nsqd's order (TLS, `OK`, compression, `OK`), then runs
/// the connection to its end on the upgraded stream.
async fn upgrade_and_run<R, W>(conn: &mut Connection<'_>, rd: R, wr: W, leftover: BytesMut, up: Upgrade)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    if !up.tls {
        return compress_and_run(conn, rd, wr, leftover, up).await;
    }
    let Some(acceptor) = conn.services.tls.clone() else {
        return;
    };
    // The client's handshake may already have been read with the IDENTIFY.
    let io = tokio::io::join(Prefixed::new(leftover.freeze(), rd), wr);
    let tls = match timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            log_client(conn, &format!("TLS handshake failed - {e}"));
            return;
        }
        Err(_) => {
            log_client(conn, "TLS handshake timed out");
            return;
        }
    };
    let info = super::tls::describe(tls.get_ref().1);
    conn.tls = true;
    conn.common_name = info.common_name.clone();
    {
        let mut t = conn.shared.client.transport.write();
        t.tls = true;
        t.tls_version = info.version;
        t.tls_cipher_suite = info.cipher_suite;
        t.tls_negotiated_protocol = info.negotiated_protocol;
    }
    let (rd, mut wr) = tokio::io::split(tls);
    let mut ok = Vec::new();
    put_frame(&mut ok, frame::FRAME_TYPE_RESPONSE, frame::OK);
    if !write_with_deadline(&mut wr, &ok).await {
        return;
    }
    compress_and_run(conn, rd, wr, BytesMut::new(), up).await
}

async fn compress_and_run<R, W>(conn: &mut Connection<'_>, rd: R, mut wr: W, leftover: BytesMut, up: Upgrade)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let codec = if up.snappy {
        Some((Encoder::snappy(), Decoder::snappy()))
    } else {
        up.deflate
            .map(|level| (Encoder::deflate(level), Decoder::deflate()))
    };
    let (encoder, mut decoder, buf) = match codec {
        None => (None, None, leftover),
        Some((mut encoder, mut decoder)) => {
            {
                let mut t = conn.shared.client.transport.write();
                t.snappy = up.snappy;
                t.deflate = up.deflate.is_some();
            }
            let mut ok = Vec::new();
            put_frame(&mut ok, frame::FRAME_TYPE_RESPONSE, frame::OK);
            let mut wire = Vec::new();
            if encoder.encode(&ok, &mut wire).is_err() || !write_with_deadline(&mut wr, &wire).await {
                return;
            }
            decoder.push(&leftover);
            (Some(encoder), Some(decoder), BytesMut::with_capacity(READ_BUFFER))
        }
    };
    let mut buf = buf;
    if let Some(d) = decoder.as_mut() {
        if d.fill(&mut buf, READ_BUFFER).is_err() {
            return;
        }
    }
    let writer = tokio::spawn(write_loop(wr, conn.shared.clone(), encoder));
    // A second upgrade is never negotiated, so this loop can only end in a close.
    read_loop(rd, conn, buf, decoder).await;
    finish_writer(conn.shared, writer).await;
}

async fn write_with_deadline<W: AsyncWrite + Unpin>(wr: &mut W, data: &[u8]) -> bool {
    let write = async {
        wr.write_all(data).await?;
        wr.flush().await
    };
    matches!(timeout(TLS_HANDSHAKE_TIMEOUT, write).await, Ok(Ok(())))
}

fn log_client(conn: &Connection<'_>, msg: &str) {
    super::log(
        &conn.broker.opts.log_prefix,
        "WARNING",
        &format!("PROTOCOL(V2): [{}] {msg}", conn.shared.client.remote_address),
    );
}

/// A reader that first yields bytes already taken off the socket.
struct Prefixed<R> {
    prefix: Bytes,
    inner: R,
}

impl<R> Prefixed<R> {
    fn new(prefix: Bytes, inner: R) -> Prefixed<R> {
        Prefixed { prefix, inner }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Prefixed<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    rd: R,
    conn: &mut Connection<'_>,
    buf: BytesMut,
    decoder: Option<Decoder>,
) -> ReadEnd<R> {
    let end = read_commands(rd, conn, buf, decoder).await;
    conn.report_finished();
    end
}

async fn read_commands<R: AsyncRead + Unpin>(
    mut rd: R,
    conn: &mut Connection<'_>,
    mut buf: BytesMut,
    mut decoder: Option<Decoder>,
) -> ReadEnd<R> {
    let shared = conn.shared;
    let opts = &conn.broker.opts;
    let limits = opts.parse_limits();
    let tls_required = opts.tls_required != TlsRequired::No;
    let mut raw = BytesMut::new();
    let mut read_size = FIRST_READ;
    loop {
        loop {
            if !shared.room_for_output().await {
                return ReadEnd::Closed;
            }
            let ctx = ConnContext {
                state: conn.state,
                heartbeats_enabled: shared.client.settings.read().heartbeat_interval.is_some(),
                tls_missing: tls_required && !conn.tls,
            };
            match parse(&buf, &limits, ctx) {
                Ok(Some((cmd, used))) => {
                    let result = conn.execute(cmd).await;
                    buf.advance(used);
                    if let Err(e) = result {
                        shared.error(&e);
                        if e.fatal {
                            return ReadEnd::Closed;
                        }
                    }
                    if let Some(up) = conn.upgrade.take() {
                        return ReadEnd::Upgrade(rd, buf, up);
                    }
                }
                Ok(None) => break,
                Err(ParseError::LineTooLong) => return ReadEnd::Closed,
                Err(ParseError::Client(e)) => {
                    shared.error(&e);
                    return ReadEnd::Closed;
                }
            }
        }
        conn.report_finished();
        if shared.closing.load(Ordering::Acquire) {
            return ReadEnd::Closed;
        }
        // Decompress what is already here before reading more, a bounded piece at a time.
        if let Some(d) = decoder.as_mut() {
            if d.has_pending() {
                let before = buf.len();
                if d.fill(&mut buf, READ_BUFFER).is_err() {
                    return ReadEnd::Closed;
                }
                if buf.len() > before {
                    continue;
                }
            }
        }
        if buf.is_empty() && buf.capacity() > KEEP_BUFFER {
            buf = BytesMut::new();
        }
        // A silent client is dropped after two missed heartbeats, as nsqd does.
        let deadline = shared.client.settings.read().heartbeat_interval.map(|hb| hb * 2);
        let target = if decoder.is_some() { &mut raw } else { &mut buf };
        target.reserve(read_size);
        let kicked = shared.client.kick_notify.notified();
        tokio::pin!(kicked);
        kicked.as_mut().enable();
        let ended = shared.ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        if shared.ending() {
            return ReadEnd::Closed;
        }
        let read = async {
            match deadline {
                Some(d) => timeout(d, rd.read_buf(target)).await.ok(),
                None => Some(rd.read_buf(target).await),
            }
        };
        let n = tokio::select! {
            r = read => match r {
                Some(r) => r,
                None => return ReadEnd::Closed,
            },
            _ = &mut kicked => return ReadEnd::Closed,
            _ = &mut ended => return ReadEnd::Closed,
        };
        match n {
            Ok(0) | Err(_) => return ReadEnd::Closed,
            Ok(n) if n >= read_size => read_size = (read_size * 2).min(READ_BUFFER),
            Ok(_) => {}
        }
        if let Some(d) = decoder.as_mut() {
            d.push(&raw);
            raw.clear();
            if d.fill(&mut buf, READ_BUFFER).is_err() {
                return ReadEnd::Closed;
            }
        }
    }
}

struct Connection<'a> {
    broker: &'a Arc<Broker>,
    services: &'a Services,
    shared: &'a Arc<Shared>,
    state: ClientState,
    identified: bool,
    /// A feature-negotiating IDENTIFY has been answered; later ones upgrade nothing.
    negotiated: bool,
    tls: bool,
    /// The client certificate's subject CN, for the auth server.
    common_name: String,
    remote_ip: String,
    auth: Option<AuthState>,
    /// Kept to refresh the authorization when its TTL runs out, as nsqd does.
    auth_secret: String,
    /// Set by IDENTIFY; the read loop hands the stream over for it.
    upgrade: Option<Upgrade>,
    /// FINs not yet reported as a `finished` event: reported once per read buffer, so a
    /// stream of FINs costs the event sink one lock and one line per buffer, not per message.
    finished: Vec<MessageId>,
}

impl Connection<'_> {
    async fn execute(&mut self, cmd: Command) -> Result<(), ProtocolError> {
        let client = &self.shared.client;
        match cmd {
            Command::Identify(body) => self.identify(&body),
            Command::Auth(secret) => self.authenticate(&secret).await,
            Command::Sub { topic, channel } => {
                self.check_auth("SUB", &topic, &channel).await?;
                self.subscribe(&topic, &channel)
            }
            Command::Rdy(count) => {
                if self.state == ClientState::Subscribed {
                    client.ready_count.store(count, Ordering::Release);
                    client.wake.notify_one();
                }
                Ok(())
            }
            Command::Fin(id) => {
                let (_, ch) = self.subscription();
                ch.finish(client.id, id)
                    .map_err(|e| ProtocolError::non_fatal("E_FIN_FAILED", format!("FIN {id} failed {e}")))?;
                if ch.reports_finished() {
                    self.finished.push(id);
                }
                client.finish_count.fetch_add(1, Ordering::Relaxed);
                client.release_one();
                Ok(())
            }
            Command::Req { id, timeout_ms } => {
                let (_, ch) = self.subscription();
                ch.requeue(client.id, id, timeout_ms)
                    .map_err(|e| ProtocolError::non_fatal("E_REQ_FAILED", format!("REQ {id} failed {e}")))?;
                client.requeue_count.fetch_add(1, Ordering::Relaxed);
                client.release_one();
                Ok(())
            }
            Command::Touch(id) => {
                let (_, ch) = self.subscription();
                let msg_timeout = client.settings.read().msg_timeout;
                ch.touch(client.id, id, msg_timeout, self.broker.opts.max_msg_timeout)
                    .map_err(|e| ProtocolError::non_fatal("E_TOUCH_FAILED", format!("TOUCH {id} failed {e}")))
            }
            Command::Cls => {
                self.state = ClientState::Closing;
                client.state.store(ClientState::Closing as u8, Ordering::Release);
                client.ready_count.store(0, Ordering::Release);
                self.shared.respond(frame::CLOSE_WAIT);
                Ok(())
            }
            Command::Nop => Ok(()),
            Command::Pub { topic, body } => {
                self.check_auth("PUB", &topic, "").await?;
                self.publish("PUB", "E_PUB_FAILED", &topic, &[&body], 0).await
            }
            Command::Mpub { topic, bodies } => {
                self.check_auth("MPUB", &topic, "").await?;
                let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_ref()).collect();
                self.publish("MPUB", "E_MPUB_FAILED", &topic, &refs, 0).await
            }
            Command::Dpub {
                topic,
                defer_ms,
                body,
            } => {
                self.check_auth("DPUB", &topic, "").await?;
                let deliver_at = if defer_ms > 0 {
                    now_ns() + defer_ms * 1_000_000
                } else {
                    0
                };
                self.publish("DPUB", "E_DPUB_FAILED", &topic, &[&body], deliver_at)
                    .await
            }
        }
    }

    /// FIN/REQ/TOUCH are only parsed once subscribed, so the subscription exists.
    fn report_finished(&mut self) {
        if self.finished.is_empty() {
            return;
        }
        if let Some((_, ch)) = self.shared.subscription.get() {
            ch.report_finished(&self.shared.client.remote_address, &self.finished);
        }
        self.finished.clear();
    }

    fn subscription(&self) -> &(Arc<Topic>, Arc<Channel>) {
        self.shared
            .subscription
            .get()
            .expect("parser only allows this after SUB")
    }

    fn identify(&mut self, body: &[u8]) -> Result<(), ProtocolError> {
        let req = IdentifyRequest::from_json(body)
            .map_err(|_| ProtocolError::fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body"))?;
        let opts = &self.broker.opts;
        let settings = {
            let mut s = self.shared.client.settings.write();
            if !self.identified {
                s.apply(&req, &opts.identify_limits())
                    .map_err(|e| ProtocolError::fatal("E_BAD_BODY", format!("IDENTIFY {e}")))?;
            }
            s.clone()
        };
        self.identified = true;
        self.shared.client.wake.notify_one();
        if !req.feature_negotiation {
            self.shared.respond(frame::OK);
            return Ok(());
        }
        // Upgrades happen once: a later IDENTIFY is answered without offering them again.
        let fresh = !self.negotiated;
        let tls_v1 = fresh && self.services.tls.is_some() && req.tls_v1;
        let deflate = fresh && opts.deflate && req.deflate;
        let snappy = fresh && opts.snappy && req.snappy;
        let mut deflate_level = 6;
        if deflate && req.deflate_level > 0 {
            deflate_level = req.deflate_level;
        }
        deflate_level = deflate_level.min(opts.max_deflate_level);
        if deflate && snappy {
            return Err(ProtocolError::fatal(
                "E_IDENTIFY_FAILED",
                "cannot enable both deflate and snappy compression",
            ));
        }
        self.negotiated = true;
        let response = IdentifyResponse {
            max_rdy_count: Some(opts.max_rdy_count),
            version: Some(NSQ_VERSION.into()),
            max_msg_timeout: Some(opts.max_msg_timeout.as_millis() as i64),
            msg_timeout: Some(settings.msg_timeout.as_millis() as i64),
            tls_v1: Some(tls_v1),
            deflate: Some(deflate),
            deflate_level: Some(deflate_level),
            max_deflate_level: Some(opts.max_deflate_level),
            snappy: Some(snappy),
            sample_rate: Some(settings.sample_rate),
            auth_required: Some(self.services.auth.is_some()),
            output_buffer_size: Some(settings.output_buffer_size as i64),
            output_buffer_timeout: Some(
                settings
                    .output_buffer_timeout
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0),
            ),
            topology_region: Some(opts.topology_region.clone()),
            topology_zone: Some(opts.topology_zone.clone()),
            message_id_reply: settings.message_id_reply,
        };
        if tls_v1 || snappy || deflate {
            self.upgrade = Some(Upgrade {
                tls: tls_v1,
                snappy,
                deflate: deflate.then_some(deflate_level.clamp(1, 9) as u32),
            });
        }
        let json = serde_json::to_vec(&response).expect("serializable");
        self.shared.respond(&json);
        Ok(())
    }

    /// AUTH: asks the auth server about the secret and keeps the answer for later checks.
    async fn authenticate(&mut self, secret: &[u8]) -> Result<(), ProtocolError> {
        if self.auth.as_ref().is_some_and(|a| !a.authorizations.is_empty()) {
            return Err(ProtocolError::invalid("AUTH already set"));
        }
        let Some(auth) = self.services.auth.clone() else {
            return Err(ProtocolError::fatal("E_AUTH_DISABLED", "AUTH disabled"));
        };
        let secret = String::from_utf8_lossy(secret).into_owned();
        let state = auth
            .query(&AuthRequest {
                remote_ip: &self.remote_ip,
                tls: self.tls,
                secret: &secret,
                common_name: &self.common_name,
            })
            .await
            .map_err(|e| {
                log_client(self, &format!("AUTH failed {e}"));
                ProtocolError::fatal("E_AUTH_FAILED", "AUTH failed")
            })?;
        let count = state.authorizations.len();
        let reply = serde_json::json!({
            "identity": state.identity,
            "identity_url": state.identity_url,
            "permission_count": count,
        });
        {
            let mut t = self.shared.client.transport.write();
            t.authed = count > 0;
            t.auth_identity = state.identity.clone();
            t.auth_identity_url = state.identity_url.clone();
        }
        self.auth = Some(state);
        self.auth_secret = secret;
        if count == 0 {
            return Err(ProtocolError::fatal(
                "E_UNAUTHORIZED",
                "AUTH no authorizations found",
            ));
        }
        self.shared.respond(reply.to_string().as_bytes());
        Ok(())
    }

    /// nsqd's CheckAuth: with auth enabled every PUB-type command and SUB needs a matching
    /// authorization; an expired one is fetched again with the same secret first.
    async fn check_auth(&mut self, cmd: &str, topic: &str, channel: &str) -> Result<(), ProtocolError> {
        let Some(auth) = self.services.auth.clone() else {
            return Ok(());
        };
        if self.auth.as_ref().is_none_or(|a| a.authorizations.is_empty()) {
            return Err(ProtocolError::fatal(
                "E_AUTH_FIRST",
                format!("AUTH required before {cmd}"),
            ));
        }
        if self.auth.as_ref().is_some_and(|a| a.is_expired()) {
            let state = auth
                .query(&AuthRequest {
                    remote_ip: &self.remote_ip,
                    tls: self.tls,
                    secret: &self.auth_secret,
                    common_name: &self.common_name,
                })
                .await
                .map_err(|e| {
                    log_client(self, &format!("auth failed {e}"));
                    ProtocolError::fatal("E_AUTH_FAILED", "AUTH failed")
                })?;
            self.auth = Some(state);
        }
        if !self.auth.as_ref().is_some_and(|a| a.allows(topic, channel)) {
            return Err(ProtocolError::fatal(
                "E_UNAUTHORIZED",
                format!(
                    "AUTH failed for {cmd} on {} {}",
                    crate::protocol::names::go_quote(topic),
                    crate::protocol::names::go_quote(channel)
                ),
            ));
        }
        Ok(())
    }

    fn subscribe(&mut self, topic_name: &str, channel_name: &str) -> Result<(), ProtocolError> {
        let broker = self.broker;
        // A topic or channel being deleted under us is retried, as nsqd does.
        for _ in 0..3 {
            let topic = broker
                .get_or_create_topic(topic_name)
                .map_err(|e| ProtocolError::fatal("E_SUB_FAILED", format!("SUB failed {e}")))?;
            let channel = broker
                .get_or_create_channel(&topic, channel_name)
                .map_err(|e| ProtocolError::fatal("E_SUB_FAILED", format!("SUB failed {e}")))?;
            let max = broker.opts.max_channel_consumers;
            if max > 0 && channel.client_count() as i64 >= max {
                return Err(ProtocolError::fatal(
                    "E_SUB_FAILED",
                    format!("consumers for {topic_name}:{channel_name} exceeds limit of {max}"),
                ));
            }
            if topic.is_deleted() || channel.is_deleted() {
                continue;
            }
            channel.add_client(self.shared.client.clone());
            self.state = ClientState::Subscribed;
            self.shared
                .client
                .state
                .store(ClientState::Subscribed as u8, Ordering::Release);
            let _ = self.shared.subscription.set((topic, channel));
            self.shared.respond(frame::OK);
            return Ok(());
        }
        Err(ProtocolError::fatal(
            "E_SUB_FAILED",
            format!("SUB failed to deleted topic/channel {topic_name}:{channel_name}"),
        ))
    }

    async fn publish(
        &mut self,
        cmd: &str,
        code: &'static str,
        topic_name: &str,
        bodies: &[&[u8]],
        deliver_at: i64,
    ) -> Result<(), ProtocolError> {
        let topic = self
            .broker
            .get_or_create_topic(topic_name)
            .map_err(|e| ProtocolError::fatal(code, format!("{cmd} failed {e}")))?;
        let client = &self.shared.client;
        // The user agent is only needed for a `published` event; skip the copy otherwise.
        let reports = topic.core.reports(crate::protocol::events::Kind::Published);
        let (user_agent, id_reply) = {
            let s = client.settings.read();
            let ua = if reports {
                s.user_agent.clone()
            } else {
                String::new()
            };
            (ua, s.message_id_reply)
        };
        let ids = self
            .broker
            .publish(&topic, bodies, deliver_at, (&client.remote_address, &user_agent))
            .await
            .map_err(|e| ProtocolError::fatal(code, format!("{cmd} failed {e}")))?;
        self.shared.client.published(topic_name, bodies.len() as u64);
        if id_reply {
            let mut reply = Vec::with_capacity(2 + 17 * ids.len());
            reply.extend_from_slice(frame::OK);
            for id in &ids {
                reply.push(b' ');
                reply.extend_from_slice(&id.to_hex());
            }
            self.shared.respond(&reply);
        } else {
            self.shared.respond(frame::OK);
        }
        Ok(())
    }
}

/// Returns the write half when asked to hand it over for an upgrade, None when the connection
/// ended. Ending (the client closed, or did not read within the write deadline) also ends the
/// reader, which may be waiting for this writer to drain its output.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    shared: Arc<Shared>,
    mut encoder: Option<Encoder>,
) -> Option<W> {
    let client = &shared.client;
    let mut buf: Vec<u8> = Vec::new();
    let mut compressed: Vec<u8> = Vec::new();
    let mut heartbeat = heartbeat_of(client);
    let mut next_heartbeat = Instant::now() + heartbeat;
    let mut largest_frame = shared.max_msg_size + MESSAGE_FRAME_OVERHEAD;
    loop {
        let client_wake = client.wake.notified();
        tokio::pin!(client_wake);
        client_wake.as_mut().enable();
        let subscription = shared.subscription.get();
        let channel_wake = subscription.map(|(_, ch)| ch.notify.notified());
        let mut channel_wake = channel_wake.map(Box::pin);
        if let Some(w) = channel_wake.as_mut() {
            w.as_mut().enable();
        }
        // IDENTIFY may have changed the interval (it wakes this loop): nsqd restarts its
        // heartbeat ticker with the client's interval, so the first heartbeat comes one new
        // interval after IDENTIFY rather than at the 30 s default.
        let interval = heartbeat_of(client);
        if interval != heartbeat {
            heartbeat = interval;
            next_heartbeat = Instant::now() + heartbeat;
        }

        buf.clear();
        std::mem::swap(&mut buf, &mut *shared.outgoing.lock());
        if !buf.is_empty() {
            shared.drained.notify_waiters();
        }
        let closing = shared.ending();
        if let (false, Some((_, channel))) = (closing, subscription) {
            if client.state.load(Ordering::Acquire) == ClientState::Subscribed as u8 {
                let fit = (BATCH_BYTES / largest_frame).max(1);
                let window = client.window().min(MAX_TAKE).min(fit);
                if window > 0 {
                    let (msg_timeout, sample_rate) = {
                        let s = client.settings.read();
                        (s.msg_timeout, s.sample_rate)
                    };
                    let messages = channel.take(client, window, msg_timeout, sample_rate);
                    client
                        .in_flight
                        .fetch_add(messages.len() as i64, Ordering::AcqRel);
                    client
                        .message_count
                        .fetch_add(messages.len() as u64, Ordering::Relaxed);
                    if let Some(largest) = messages.iter().map(|m| m.body.len()).max() {
                        largest_frame = largest + MESSAGE_FRAME_OVERHEAD;
                    }
                    for m in &messages {
                        put_message_frame(&mut buf, m.timestamp_ns, m.attempts, &m.id.to_hex(), &m.body);
                    }
                }
            }
        }
        if !buf.is_empty() {
            let write_deadline = heartbeat.max(Duration::from_secs(1));
            let out = match encoder.as_mut() {
                None => &buf,
                Some(enc) => {
                    compressed.clear();
                    if enc.encode(&buf, &mut compressed).is_err() {
                        break;
                    }
                    &compressed
                }
            };
            // TLS buffers inside its writer, so flush; on a socket flush does nothing.
            let write = async {
                wr.write_all(out).await?;
                wr.flush().await
            };
            match timeout(write_deadline, write).await {
                Ok(Ok(())) => {}
                _ => break,
            }
            if buf.capacity() > KEEP_BUFFER {
                buf = Vec::new();
            }
            if compressed.capacity() > KEEP_BUFFER {
                compressed = Vec::new();
            }
            continue;
        }
        if closing {
            break;
        }
        if shared.handoff.load(Ordering::Acquire) {
            return Some(wr);
        }
        let has_heartbeat = client.settings.read().heartbeat_interval.is_some();
        tokio::select! {
            _ = &mut client_wake => {}
            _ = async { channel_wake.as_mut().unwrap().await }, if channel_wake.is_some() => {}
            _ = sleep_until(next_heartbeat), if has_heartbeat => {
                put_frame(&mut shared.outgoing.lock(), frame::FRAME_TYPE_RESPONSE, frame::HEARTBEAT);
                next_heartbeat = Instant::now() + heartbeat;
            }
        }
    }
    shared.close();
    let _ = wr.shutdown().await;
    None
}

fn heartbeat_of(client: &ClientHandle) -> Duration {
    client
        .settings
        .read()
        .heartbeat_interval
        .unwrap_or(Duration::from_secs(3600))
}
