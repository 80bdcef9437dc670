//! nsqlookupd's TCP protocol V1 (nsq-reference §2.2), spoken by nsqd to announce itself and
//! its topics and channels.
//!
//! After the magic `"  V1"`, each request is a text line (IDENTIFY adds a length-prefixed JSON
//! body) and each reply is `[4-byte big-endian size][data]`, with no frame type. Every error
//! nsqlookupd sends is fatal: the error goes out and the connection closes. When a connection
//! ends, for whatever reason, all of its peer's registrations are removed.

use std::fmt;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::registry::{Category, PeerInfo, Registration, Registry};
use super::{Level, LookupdOptions, NSQLOOKUPD_VERSION};
use crate::protocol::guid::now_ns;
use crate::protocol::names::{is_ephemeral, is_valid_channel_name, is_valid_topic_name};

const MAGIC_V1: &[u8; 4] = b"  V1";

/// Longest request line read. nsqd's lines are two names of at most 64 characters and a verb;
/// nsqlookupd reads lines of any length, which lets a client that never sends a newline grow
/// its memory without bound, so a longer line ends the connection (as nsqd does in V2).
pub const MAX_LINE_LEN: usize = 16 * 1024;

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

/// A protocol error: sent as `"<code> <desc>"`, then the connection closes.
#[derive(Debug, PartialEq)]
pub struct ProtocolError {
    code: &'static str,
    desc: String,
    /// The underlying failure, for the log only.
    cause: Option<String>,
}

impl ProtocolError {
    fn new(code: &'static str, desc: impl Into<String>) -> ProtocolError {
        ProtocolError {
            code,
            desc: desc.into(),
            cause: None,
        }
    }

    fn caused_by(mut self, cause: impl fmt::Display) -> ProtocolError {
        self.cause = Some(cause.to_string());
        self
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.desc)
    }
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
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
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
        crate::server::reclaim::note_released();
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
            ProtocolError::new("E_BAD_BODY", "IDENTIFY failed to read body size").caused_by(e)
        };
        let size = rd.read_i32().await.map_err(|e| size_err(&e))?;
        // nsqlookupd would panic allocating a negative size; this is the closest error it has.
        let size = u64::try_from(size).map_err(|_| size_err(&format!("negative size {size}")))?;
        // nsqlookupd allocates whatever size is announced (up to 2 GiB); nsqd bounds its own
        // IDENTIFY by --max-body-size and answers the same way.
        if size > MAX_IDENTIFY_BODY {
            return Err(ProtocolError::new(
                "E_BAD_BODY",
                format!("IDENTIFY body too big {size} > {MAX_IDENTIFY_BODY}"),
            ));
        }
        // Read as it arrives rather than allocating the announced size up front.
        let mut body = Vec::new();
        let read = rd.take(size).read_to_end(&mut body).await;
        if let Err(e) = &read {
            return Err(ProtocolError::new("E_BAD_BODY", "IDENTIFY failed to read body").caused_by(e));
        }
        if body.len() as u64 != size {
            return Err(ProtocolError::new("E_BAD_BODY", "IDENTIFY failed to read body").caused_by("EOF"));
        }

        let mut peer = decode_identify(&body).map_err(|e| {
            ProtocolError::new("E_BAD_BODY", "IDENTIFY failed to decode JSON body").caused_by(e)
        })?;
        peer.id = guard.remote.clone();
        peer.remote_address = guard.remote.clone();
        if peer.broadcast_address.is_empty()
            || peer.tcp_port == 0
            || peer.http_port == 0
            || peer.version.is_empty()
        {
            return Err(ProtocolError::new("E_BAD_BODY", "IDENTIFY missing fields"));
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
            "hostname": crate::options::local_hostname(),
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
            .ok_or_else(|| ProtocolError::new("E_INVALID", "client must IDENTIFY"))
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

/// One request line of protocol V1, validated.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Ping,
    /// The length-prefixed JSON body follows the line on the wire.
    Identify,
    Register {
        topic: &'a str,
        channel: Option<&'a str>,
    },
    Unregister {
        topic: &'a str,
        channel: Option<&'a str>,
    },
}

/// Parses one request line (its newline may be included) as nsqlookupd does: surrounding
/// whitespace trimmed, parameters split on single spaces, and the checks in nsqlookupd's
/// order, which depends on whether the connection has sent IDENTIFY (`identified`).
pub fn parse_request(line: &str, identified: bool) -> Result<Request<'_>, ProtocolError> {
    let params: Vec<&str> = line.trim().split(' ').collect();
    let must_identify = || {
        if identified {
            Ok(())
        } else {
            Err(ProtocolError::new("E_INVALID", "client must IDENTIFY"))
        }
    };
    match params[0] {
        "PING" => Ok(Request::Ping),
        "IDENTIFY" if identified => Err(ProtocolError::new("E_INVALID", "cannot IDENTIFY again")),
        "IDENTIFY" => Ok(Request::Identify),
        "REGISTER" => {
            must_identify()?;
            let (topic, channel) = topic_channel("REGISTER", &params[1..])?;
            Ok(Request::Register { topic, channel })
        }
        "UNREGISTER" => {
            must_identify()?;
            let (topic, channel) = topic_channel("UNREGISTER", &params[1..])?;
            Ok(Request::Unregister { topic, channel })
        }
        other => Err(ProtocolError::new(
            "E_INVALID",
            format!("invalid command {other}"),
        )),
    }
}

/// `<topic> [<channel>]` of REGISTER and UNREGISTER, validated.
fn topic_channel<'a>(command: &str, params: &[&'a str]) -> Result<(&'a str, Option<&'a str>), ProtocolError> {
    let Some(&topic) = params.first() else {
        return Err(ProtocolError::new(
            "E_INVALID",
            format!("{command} insufficient number of params"),
        ));
    };
    // An empty channel (e.g. a trailing space inside the line) means "no channel", as in Go.
    let channel = params.get(1).copied().filter(|c| !c.is_empty());
    if !is_valid_topic_name(topic) {
        return Err(ProtocolError::new(
            "E_BAD_TOPIC",
            format!("{command} topic name '{topic}' is not valid"),
        ));
    }
    if let Some(channel) = channel {
        if !is_valid_channel_name(channel) {
            return Err(ProtocolError::new(
                "E_BAD_CHANNEL",
                format!("{command} channel name '{channel}' is not valid"),
            ));
        }
    }
    Ok((topic, channel))
}

/// Decodes an IDENTIFY body the way Go's `encoding/json` fills nsqlookupd's `PeerInfo`: a
/// JSON object (or `null`), keys matched exactly or else case-insensitively, unknown keys
/// ignored, `null` values skipped, and a value of the wrong type an error.
pub fn decode_identify(body: &[u8]) -> Result<PeerInfo, String> {
    // Go replaces invalid UTF-8 inside strings rather than rejecting the document.
    let text = String::from_utf8_lossy(body);
    let value: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let obj = match value {
        Value::Object(obj) => obj,
        Value::Null => Map::new(),
        other => return Err(format!("cannot unmarshal {} into PeerInfo", json_kind(&other))),
    };
    let get = |name: &str| {
        obj.get(name)
            .or_else(|| {
                obj.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            })
            .filter(|v| !v.is_null())
    };
    let string = |name: &str| match get(name) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(format!(
            "cannot unmarshal {} into field {name} of type string",
            json_kind(v)
        )),
    };
    let int = |name: &str| match get(name) {
        None => Ok(0),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| format!("cannot unmarshal {v} into field {name} of type int")),
    };
    Ok(PeerInfo {
        id: String::new(),
        remote_address: String::new(),
        hostname: string("hostname")?,
        broadcast_address: string("broadcast_address")?,
        tcp_port: int("tcp_port")?,
        http_port: int("http_port")?,
        version: string("version")?,
        topology_zone: string("topology_zone")?,
        topology_region: string("topology_region")?,
        last_update: AtomicI64::new(0),
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identify_body_decodes_like_go() {
        let p = decode_identify(
            br#"{"broadcast_address":"h","TCP_PORT":4150,"http_port":4151,"version":"1.3.0",
                 "hostname":null,"topology_zone":"z","extra":[1]}"#,
        )
        .unwrap();
        assert_eq!(
            (p.broadcast_address.as_str(), p.tcp_port, p.http_port),
            ("h", 4150, 4151)
        );
        assert_eq!((p.hostname.as_str(), p.topology_zone.as_str()), ("", "z"));
        assert_eq!(decode_identify(b"null").unwrap().tcp_port, 0);
        for bad in [
            &b""[..],
            b"[]",
            b"{",
            b"{} x",
            br#"{"tcp_port":"4150"}"#,
            br#"{"tcp_port":4150.5}"#,
            br#"{"tcp_port":1e3}"#,
            br#"{"tcp_port":99999999999999999999}"#,
            br#"{"version":1}"#,
        ] {
            assert!(decode_identify(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn topic_channel_params() {
        assert_eq!(topic_channel("REGISTER", &["t"]), Ok(("t", None)));
        assert_eq!(topic_channel("REGISTER", &["t", "c", "x"]), Ok(("t", Some("c"))));
        assert_eq!(topic_channel("REGISTER", &["t", ""]), Ok(("t", None)));
        let e = topic_channel("UNREGISTER", &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "E_INVALID UNREGISTER insufficient number of params"
        );
        let e = topic_channel("REGISTER", &["", "c"]).unwrap_err();
        assert_eq!(e.to_string(), "E_BAD_TOPIC REGISTER topic name '' is not valid");
        let e = topic_channel("REGISTER", &["t", "c!"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "E_BAD_CHANNEL REGISTER channel name 'c!' is not valid"
        );
    }
}
