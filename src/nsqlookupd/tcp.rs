//! nsqlookupd's TCP server: the protocol V1 connections (wire format in `protocol::lookup`)
//! through which nsqd announces itself and its topics and channels.
//!
//! Every error nsqlookupd sends is fatal: the error goes out and the connection closes. When
//! a connection ends, for whatever reason, all of its peer's registrations are removed.

use std::fmt;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::registry::{Category, PeerInfo, Registration, Registry};
use super::{Level, LookupdOptions, NSQLOOKUPD_VERSION};
use crate::common::time::now_ns;
use crate::protocol::lookup::{decode_identify, parse_request, put_reply, Request, MAGIC_V1, MAX_LINE_LEN};
use crate::protocol::names::is_ephemeral;
use crate::protocol::ProtocolError;

/// Accepts nsqd connections until the task is dropped or aborted; aborting it also ends every
/// connection it accepted (their registrations are removed as they go).
///
/// `http_port` is the lookupd's own HTTP port, which the IDENTIFY response reports.
pub async fn serve_tcp(
    listener: TcpListener,
    registry: Arc<Registry>,
    opts: Arc<LookupdOptions>,
    http_port: u16,
) {
    let tcp_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let conn = Connection {
                        registry: registry.clone(),
                        opts: opts.clone(),
                        tcp_port,
                        http_port,
                    };
                    conns.spawn(conn.handle(stream));
                }
                Err(e) => {
                    opts.logf(Level::Error, &format!("TCP: accept failed - {e}"));
                    // Usually out of file descriptors: give closing connections a moment.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reaps finished connections so the set does not grow without bound.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// What one connection needs from the server.
struct Connection {
    registry: Arc<Registry>,
    opts: Arc<LookupdOptions>,
    tcp_port: u16,
    http_port: u16,
}

/// Removes the peer's registrations when the connection ends, however it ends (EOF, error,
/// or the task being aborted at shutdown).
struct PeerGuard {
    registry: Arc<Registry>,
    opts: Arc<LookupdOptions>,
    remote: String,
    peer: Option<Arc<PeerInfo>>,
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        let Some(peer) = self.peer.take() else {
            return;
        };
        for r in self.registry.lookup_registrations(&peer.id) {
            if self.registry.remove_producer(&r, &peer.id).0 {
                self.opts.logf(
                    Level::Info,
                    &format!(
                        "DB: client({}) UNREGISTER category:{} key:{} subkey:{}",
                        self.remote, r.category, r.key, r.subkey
                    ),
                );
            }
        }
    }
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(4 + data.len());
    put_reply(&mut out, data);
    w.write_all(&out).await
}

/// Largest IDENTIFY body accepted. An nsqd's is a few hundred bytes of JSON; the bound keeps a
/// client from making lookupd buffer up to the 2 GiB a size field can announce.
pub const MAX_IDENTIFY_BODY: u64 = 1024 * 1024;

impl Connection {
    async fn handle(self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let remote = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        self.opts.logf(Level::Info, &format!("TCP: new client({remote})"));
        let (rd, mut wr) = stream.into_split();
        let mut rd = BufReader::new(rd);

        let mut magic = [0u8; 4];
        if let Err(e) = rd.read_exact(&mut magic).await {
            self.opts
                .logf(Level::Error, &format!("failed to read protocol version - {e}"));
            return;
        }
        let shown = String::from_utf8_lossy(&magic);
        self.opts.logf(
            Level::Info,
            &format!("CLIENT({remote}): desired protocol magic '{shown}'"),
        );
        if &magic != MAGIC_V1 {
            let _ = send(&mut wr, b"E_BAD_PROTOCOL").await;
            self.opts.logf(
                Level::Error,
                &format!("client({remote}) bad protocol magic '{shown}'"),
            );
            return;
        }

        let mut guard = PeerGuard {
            registry: self.registry.clone(),
            opts: self.opts.clone(),
            remote: remote.clone(),
            peer: None,
        };
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = (&mut rd)
                .take(MAX_LINE_LEN as u64)
                .read_until(b'\n', &mut line)
                .await;
            // A last line without '\n' is dropped unexecuted, as Go's ReadString does.
            match read {
                Ok(_) if line.last() == Some(&b'\n') => {}
                Ok(n) if n == MAX_LINE_LEN => {
                    self.opts.logf(
                        Level::Error,
                        &format!("[{remote}] - line longer than {MAX_LINE_LEN} bytes"),
                    );
                    break;
                }
                _ => break,
            }
            let text = String::from_utf8_lossy(&line);
            match self.exec(&mut guard, &mut rd, &text).await {
                Ok(reply) => {
                    if send(&mut wr, &reply).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let cause = e.cause.as_deref().map(|c| format!(" - {c}")).unwrap_or_default();
                    self.opts.logf(Level::Error, &format!("[{remote}] - {e}{cause}"));
                    let _ = send(&mut wr, e.to_string().as_bytes()).await;
                    break;
                }
            }
        }
        self.opts
            .logf(Level::Info, &format!("PROTOCOL(V1): [{remote}] exiting ioloop"));
        drop(guard);
        crate::common::reclaim::note_released();
    }

    async fn exec<R: AsyncRead + Unpin>(
        &self,
        guard: &mut PeerGuard,
        rd: &mut R,
        line: &str,
    ) -> Result<Vec<u8>, ProtocolError> {
        match parse_request(line, guard.peer.is_some())? {
            Request::Ping => Ok(self.ping(guard)),
            Request::Identify => self.identify(guard, rd).await,
            Request::Register { topic, channel } => self.register(guard, topic, channel),
            Request::Unregister { topic, channel } => self.unregister(guard, topic, channel),
        }
    }

    fn log_db(&self, guard: &PeerGuard, verb: &str, r: &Registration) {
        self.opts.logf(
            Level::Info,
            &format!(
                "DB: client({}) {verb} category:{} key:{} subkey:{}",
                guard.remote, r.category, r.key, r.subkey
            ),
        );
    }

    fn ping(&self, guard: &PeerGuard) -> Vec<u8> {
        // A PING may come before IDENTIFY; it is answered but refreshes nothing.
        if let Some(peer) = &guard.peer {
            let now = now_ns();
            let since = Duration::from_nanos(now.saturating_sub(peer.last_update()).max(0) as u64);
            self.opts.logf(
                Level::Debug,
                &format!("CLIENT({}): pinged (last ping {since:?})", peer.id),
            );
            peer.set_last_update(now);
        }
        b"OK".to_vec()
    }

    async fn identify<R: AsyncRead + Unpin>(
        &self,
        guard: &mut PeerGuard,
        rd: &mut R,
    ) -> Result<Vec<u8>, ProtocolError> {
        let size_err = |e: &dyn fmt::Display| {
            ProtocolError::fatal("E_BAD_BODY", "IDENTIFY failed to read body size").caused_by(e)
        };
        let size = rd.read_i32().await.map_err(|e| size_err(&e))?;
        // nsqlookupd would panic allocating a negative size; this is the closest error it has.
        let size = u64::try_from(size).map_err(|_| size_err(&format!("negative size {size}")))?;
        // nsqlookupd allocates whatever size is announced (up to 2 GiB); nsqd bounds its own
        // IDENTIFY by --max-body-size and answers the same way.
        if size > MAX_IDENTIFY_BODY {
            return Err(ProtocolError::fatal(
                "E_BAD_BODY",
                format!("IDENTIFY body too big {size} > {MAX_IDENTIFY_BODY}"),
            ));
        }
        // Read as it arrives rather than allocating the announced size up front.
        let mut body = Vec::new();
        let read = rd.take(size).read_to_end(&mut body).await;
        if let Err(e) = &read {
            return Err(ProtocolError::fatal("E_BAD_BODY", "IDENTIFY failed to read body").caused_by(e));
        }
        if body.len() as u64 != size {
            return Err(ProtocolError::fatal("E_BAD_BODY", "IDENTIFY failed to read body").caused_by("EOF"));
        }

        let identity = decode_identify(&body).map_err(|e| {
            ProtocolError::fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body").caused_by(e)
        })?;
        let peer = PeerInfo {
            id: guard.remote.clone(),
            remote_address: guard.remote.clone(),
            hostname: identity.hostname,
            broadcast_address: identity.broadcast_address,
            tcp_port: identity.tcp_port,
            http_port: identity.http_port,
            version: identity.version,
            topology_zone: identity.topology_zone,
            topology_region: identity.topology_region,
            last_update: AtomicI64::new(0),
        };
        if peer.broadcast_address.is_empty()
            || peer.tcp_port == 0
            || peer.http_port == 0
            || peer.version.is_empty()
        {
            return Err(ProtocolError::fatal("E_BAD_BODY", "IDENTIFY missing fields"));
        }
        peer.set_last_update(now_ns());
        self.opts.logf(
            Level::Info,
            &format!(
                "CLIENT({}): IDENTIFY Address:{} TCP:{} HTTP:{} Version:{}",
                guard.remote, peer.broadcast_address, peer.tcp_port, peer.http_port, peer.version
            ),
        );
        let peer = Arc::new(peer);
        guard.peer = Some(peer.clone());
        if self.registry.add_producer(Registration::client(), &peer) {
            self.log_db(guard, "REGISTER", &Registration::client());
        }

        // Keys in the order Go marshals a map: sorted.
        let reply = serde_json::json!({
            "broadcast_address": self.opts.broadcast_address,
            "hostname": crate::common::host::local_hostname(),
            "http_port": self.http_port,
            "tcp_port": self.tcp_port,
            "version": NSQLOOKUPD_VERSION,
        });
        Ok(reply.to_string().into_bytes())
    }

    fn identified<'g>(&self, guard: &'g PeerGuard) -> Result<&'g Arc<PeerInfo>, ProtocolError> {
        guard
            .peer
            .as_ref()
            .ok_or_else(|| ProtocolError::fatal("E_INVALID", "client must IDENTIFY"))
    }

    fn register(
        &self,
        guard: &PeerGuard,
        topic: &str,
        channel: Option<&str>,
    ) -> Result<Vec<u8>, ProtocolError> {
        let peer = self.identified(guard)?;
        if let Some(channel) = channel {
            let r = Registration::channel(topic, channel);
            if self.registry.add_producer(r.clone(), peer) {
                self.log_db(guard, "REGISTER", &r);
            }
        }
        let r = Registration::topic(topic);
        if self.registry.add_producer(r.clone(), peer) {
            self.log_db(guard, "REGISTER", &r);
        }
        Ok(b"OK".to_vec())
    }

    fn unregister(
        &self,
        guard: &PeerGuard,
        topic: &str,
        channel: Option<&str>,
    ) -> Result<Vec<u8>, ProtocolError> {
        let peer = self.identified(guard)?;
        let db = &self.registry;
        if let Some(channel) = channel {
            let r = Registration::channel(topic, channel);
            let (removed, left) = db.remove_producer(&r, &peer.id);
            if removed {
                self.log_db(guard, "UNREGISTER", &r);
            }
            // An ephemeral channel nobody produces any more is gone, not just empty.
            if left == 0 && is_ephemeral(channel) {
                db.remove_registration(&r);
            }
        } else {
            // nsqd unregisters its channels before their topic, so anything removed here
            // means the two disagreed.
            for r in db.find_registrations(Category::Channel, Some(topic), None) {
                if db.remove_producer(&r, &peer.id).0 {
                    self.opts.logf(
                        Level::Warn,
                        &format!(
                            "client({}) unexpected UNREGISTER category:{} key:{} subkey:{}",
                            guard.remote, r.category, r.key, r.subkey
                        ),
                    );
                }
            }
            let r = Registration::topic(topic);
            let (removed, left) = db.remove_producer(&r, &peer.id);
            if removed {
                self.log_db(guard, "UNREGISTER", &r);
            }
            if left == 0 && is_ephemeral(topic) {
                db.remove_registration(&r);
            }
        }
        Ok(b"OK".to_vec())
    }
}
