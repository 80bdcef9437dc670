//! nsqd's side of discovery: one task per `--lookupd-tcp-address` that keeps this broker
//! registered (nsq-reference §1.8). It speaks protocol V1: IDENTIFY with our addresses, a
//! REGISTER for every channel (or bare topic), REGISTER/UNREGISTER as they come and go, PING
//! every 15 s, and a fresh connection with backoff whenever the lookupd goes away (a restarted
//! lookupd is re-populated this way). New topics pre-create the channels lookupd knows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::common::http_client::{HttpClient, HttpTimeouts, ACCEPT_NSQ_V1};
use crate::common::log::log;
use crate::nsqd::broker::{Broker, Registration};
use crate::protocol::lookup::{encode, PeerIdentity, MAGIC_V1, MAX_REPLY_LEN};

const PING_INTERVAL: Duration = Duration::from_secs(15);
const IO_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// The set of lookupd peers; changeable at runtime (`PUT /config/nsqlookupd_tcp_addresses`).
pub struct LookupPeers {
    broker: Arc<Broker>,
    /// What we tell lookupd about ourselves.
    identity: PeerIdentity,
    http: HttpClient,
    peers: Mutex<BTreeMap<String, JoinHandle<()>>>,
}

impl LookupPeers {
    pub fn new(broker: Arc<Broker>, identity: PeerIdentity) -> Arc<LookupPeers> {
        // A lookupd's `/channels` answer is a list of names, far below this bound, which keeps
        // a wrong or hostile server from making the broker buffer without limit.
        let http = HttpClient::new(HttpTimeouts {
            connect: broker.opts.http_client_connect_timeout,
            request: broker.opts.http_client_request_timeout,
        })
        .with_max_body(16 * 1024 * 1024);
        Arc::new(LookupPeers {
            broker,
            identity,
            http,
            peers: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn addresses(&self) -> Vec<String> {
        self.peers.lock().keys().cloned().collect()
    }

    /// Connects to exactly these lookupds: new ones are started, dropped ones stopped (which
    /// closes the connection, so that lookupd forgets this broker).
    pub fn set_addresses(self: &Arc<Self>, addresses: &[String]) {
        let mut peers = self.peers.lock();
        peers.retain(|addr, task| {
            let keep = addresses.contains(addr);
            if !keep {
                task.abort();
            }
            keep
        });
        for addr in addresses {
            if !peers.contains_key(addr) {
                let me = self.clone();
                let a = addr.clone();
                peers.insert(addr.clone(), tokio::spawn(async move { me.run_peer(a).await }));
            }
        }
    }

    async fn run_peer(self: Arc<Self>, addr: String) {
        let prefix = self.broker.opts.log_prefix.clone();
        let mut backoff = Duration::from_secs(1);
        loop {
            // Subscribe before the snapshot so no change falls between the two.
            let events = self.broker.subscribe_registrations();
            match self.session(&addr, events).await {
                Ok(()) => return,
                Err(e) => {
                    log(
                        &prefix,
                        "ERROR",
                        &format!("LOOKUPD({addr}): {e}; reconnecting in {backoff:?}"),
                    );
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            if self.broker.is_exiting() {
                return;
            }
        }
    }

    /// One connection's life; returns an error when it ends.
    async fn session(
        &self,
        addr: &str,
        mut events: tokio::sync::broadcast::Receiver<Registration>,
    ) -> Result<(), String> {
        let prefix = &self.broker.opts.log_prefix;
        let stream = timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect failed - {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut conn = PeerConn {
            stream: BufReader::new(stream),
        };
        conn.send(MAGIC_V1).await?;
        let mut identify = Vec::new();
        encode::identify(&mut identify, &self.identity);
        let reply = conn.request(&identify).await?;
        let info: serde_json::Value =
            serde_json::from_slice(&reply).map_err(|_| format!("bad IDENTIFY reply {:?}", lossy(&reply)))?;
        let lookupd_http = match (info["broadcast_address"].as_str(), info["http_port"].as_u64()) {
            (Some(host), Some(port)) => Some(format!("{host}:{port}")),
            _ => None,
        };
        log(prefix, "INFO", &format!("LOOKUPD({addr}): peer info {info}"));
        self.register_all(&mut conn).await?;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
        loop {
            tokio::select! {
                // lookupd never speaks first: anything readable here means it went away.
                gone = conn.closed() => return Err(gone),
                _ = ping.tick() => {
                    let mut request = Vec::new();
                    encode::ping(&mut request);
                    conn.request(&request).await?;
                }
                event = events.recv() => match event {
                    Ok(Registration::TopicCreated { topic }) => {
                        if let Some(http) = &lookupd_http {
                            self.precreate(http, &topic).await;
                        }
                    }
                    Ok(Registration::Register { topic, channel }) => {
                        let mut register = Vec::new();
                        encode::register(&mut register, &topic, channel.as_deref());
                        conn.request(&register).await?;
                    }
                    Ok(Registration::Unregister { topic, channel }) => {
                        let mut unregister = Vec::new();
                        encode::unregister(&mut unregister, &topic, channel.as_deref());
                        conn.request(&unregister).await?;
                    }
                    // Missed changes: register everything again (REGISTER is idempotent).
                    Err(RecvError::Lagged(_)) => self.register_all(&mut conn).await?,
                    Err(RecvError::Closed) => return Ok(()),
                },
            }
        }
    }

    async fn register_all(&self, conn: &mut PeerConn) -> Result<(), String> {
        for (topic, channel) in self.broker.registration_snapshot() {
            let mut register = Vec::new();
            encode::register(&mut register, &topic, channel.as_deref());
            conn.request(&register).await?;
        }
        Ok(())
    }

    async fn precreate(&self, lookupd_http: &str, topic: &str) {
        let url = format!("http://{lookupd_http}/channels?topic={topic}");
        match self.http.get_json(&url, Some(ACCEPT_NSQ_V1)).await {
            Ok(v) => {
                let names: Vec<String> = v["channels"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                self.broker.precreate_channels(topic, &names);
            }
            Err(e) => log(&self.broker.opts.log_prefix, "ERROR", &format!("LOOKUPD: {e}")),
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct PeerConn {
    stream: BufReader<TcpStream>,
}

impl PeerConn {
    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        timeout(IO_TIMEOUT, self.stream.get_mut().write_all(bytes))
            .await
            .map_err(|_| "write timed out".to_string())?
            .map_err(|e| format!("write failed - {e}"))
    }

    /// Resolves when the connection closes (or lookupd sends something unasked).
    async fn closed(&mut self) -> String {
        let mut probe = [0u8; 1];
        match self.stream.get_mut().peek(&mut probe).await {
            Ok(0) => "connection closed by lookupd".into(),
            Ok(_) => "unexpected data from lookupd".into(),
            Err(e) => format!("connection lost - {e}"),
        }
    }

    /// Sends a command and reads lookupd's length-prefixed reply; an `E_…` reply is an error.
    async fn request(&mut self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        self.send(bytes).await?;
        let read = async {
            let len = self.stream.read_u32().await? as usize;
            if len > MAX_REPLY_LEN {
                return Err(std::io::Error::other(format!("reply of {len} bytes")));
            }
            let mut data = vec![0u8; len];
            self.stream.read_exact(&mut data).await?;
            Ok(data)
        };
        let data = timeout(IO_TIMEOUT, read)
            .await
            .map_err(|_| "read timed out".to_string())?
            .map_err(|e| format!("read failed - {e}"))?;
        if data.starts_with(b"E_") {
            return Err(format!("lookupd replied {}", lossy(&data)));
        }
        Ok(data)
    }
}
