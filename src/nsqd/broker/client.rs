//! What the engine knows of a connected client: identity, flow-control window and counters.
//! The TCP front end owns the connection; the engine and /stats share this handle.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};

use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use crate::protocol::identify::ClientSettings;

/// How the connection is carried, as /stats reports it: set by the TCP front end when
/// IDENTIFY upgrades the stream and when AUTH succeeds.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    pub tls: bool,
    pub tls_version: String,
    pub tls_cipher_suite: String,
    pub tls_negotiated_protocol: String,
    pub snappy: bool,
    pub deflate: bool,
    pub authed: bool,
    pub auth_identity: String,
    pub auth_identity_url: String,
}

pub struct ClientHandle {
    pub id: u64,
    pub remote_address: String,
    pub connect_ts: i64,
    pub settings: RwLock<ClientSettings>,
    pub transport: RwLock<Transport>,
    /// Protocol state number as shown in /stats (0 init, 3 subscribed, 4 closing).
    pub state: AtomicU8,
    pub ready_count: AtomicI64,
    pub in_flight: AtomicI64,
    pub message_count: AtomicU64,
    pub finish_count: AtomicU64,
    pub requeue_count: AtomicU64,
    /// Messages published per topic by this connection.
    pub pub_counts: Mutex<BTreeMap<String, u64>>,
    /// Wakes the connection's writer: RDY changed, a slot in the window freed, output queued.
    pub wake: Notify,
    /// Set when the broker ends the connection (its channel or topic was deleted).
    kicked: AtomicBool,
    pub kick_notify: Notify,
}

impl ClientHandle {
    pub fn new(id: u64, remote_address: String, connect_ts: i64, settings: ClientSettings) -> ClientHandle {
        ClientHandle {
            id,
            remote_address,
            connect_ts,
            settings: RwLock::new(settings),
            transport: RwLock::new(Transport::default()),
            state: AtomicU8::new(0),
            ready_count: AtomicI64::new(0),
            in_flight: AtomicI64::new(0),
            message_count: AtomicU64::new(0),
            finish_count: AtomicU64::new(0),
            requeue_count: AtomicU64::new(0),
            pub_counts: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            kicked: AtomicBool::new(false),
            kick_notify: Notify::new(),
        }
    }

    /// Asks the connection to close, as nsqd closes consumers of a deleted channel.
    pub fn kick(&self) {
        self.kicked.store(true, Ordering::Release);
        self.kick_notify.notify_waiters();
        self.wake.notify_one();
    }

    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Ordering::Acquire)
    }

    /// How many more messages the client's RDY window allows right now.
    pub fn window(&self) -> usize {
        let rdy = self.ready_count.load(Ordering::Acquire);
        let in_flight = self.in_flight.load(Ordering::Acquire);
        (rdy - in_flight).max(0) as usize
    }

    /// A message left this client's window (FIN, REQ, timeout).
    pub fn release_one(&self) {
        let prev = self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if prev <= 0 {
            self.in_flight.store(0, Ordering::Release);
        }
        self.wake.notify_one();
    }

    pub fn reset_in_flight(&self) {
        self.in_flight.store(0, Ordering::Release);
        self.wake.notify_one();
    }

    pub fn published(&self, topic: &str, count: u64) {
        *self.pub_counts.lock().entry(topic.to_string()).or_insert(0) += count;
    }
}
