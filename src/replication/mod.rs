//! Replication (docs/replication.md): a broker ships every appended batch and its channels'
//! state to K peers before it answers `OK`, holds copies of other brokers in turn, and adopts
//! a lost broker's copy so its messages are delivered.
//!
//! This file owns the running state shared by every part: this broker's node identity and
//! epoch, the peers it replicates to with what each has acknowledged (`Replication::await_replicas`
//! is what a publish waits on), and the copies it holds. The wire format is in `wire.rs`, the
//! connections in `link.rs`, the owner's side in `sender.rs`, the holder's in `receiver.rs`
//! and `copies.rs`, adoption in `adopt.rs`, reporting in `status.rs`.

pub mod adopt;
pub mod copies;
pub mod link;
pub mod receiver;
pub mod sender;
pub mod status;
pub mod wire;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::nsqd::broker::log::LogHead;
use crate::nsqd::broker::topic::LogStore;
use crate::nsqd::broker::topic::Topic;
use crate::nsqd::broker::Broker;
use crate::nsqd::options::NsqdOptions;
use copies::CopyStore;
use wire::{AdoptionRecord, End};

/// This broker's identity as a replication node (`<data>/nsqrs-data/replication.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Identity {
    node: String,
    epoch: u64,
}

fn identity_path(store_dir: &Path) -> PathBuf {
    store_dir.join("replication.json")
}

fn save_identity(store_dir: &Path, id: &Identity) -> Result<(), String> {
    let path = identity_path(store_dir);
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(id)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| format!("failed to write {} - {e}", path.display()))
}

fn load_or_create_identity(store_dir: &Path) -> Result<Identity, String> {
    let path = identity_path(store_dir);
    if let Ok(bytes) = std::fs::read(&path) {
        let id: Identity = serde_json::from_slice(&bytes)
            .map_err(|e| format!("failed to parse {} - {e}", path.display()))?;
        if wire::is_valid_node_id(&id.node) {
            return Ok(id);
        }
    }
    let id = Identity {
        node: format!("{:032x}", rand::random::<u128>()),
        epoch: 1,
    };
    save_identity(store_dir, &id)?;
    Ok(id)
}

/// What happens to a publish when fewer than `--replicas` peers hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Refuse it (`E_PUB_FAILED`, HTTP 503).
    Strict,
    /// Accept it, and say so in `/ping`, `/stats` and the log.
    BestEffort,
}

impl Policy {
    pub fn parse(s: &str) -> Result<Policy, String> {
        match s {
            "strict" => Ok(Policy::Strict),
            "best-effort" => Ok(Policy::BestEffort),
            _ => Err(format!(
                "--replica-policy must be strict or best-effort, not {s:?}"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Policy::Strict => "strict",
            Policy::BestEffort => "best-effort",
        }
    }
}

/// One peer this broker replicates to, and what it has acknowledged.
pub struct PeerLink {
    pub address: String,
    connected: AtomicBool,
    /// The peer's node id, once it answered HELLO.
    pub node: Mutex<Option<String>>,
    /// Topic → the copy's acknowledged end position.
    acked: Mutex<HashMap<String, u64>>,
    /// Appends happened: the sender has bytes to ship.
    pub wake: Notify,
    pub status: Mutex<sender::LinkStatus>,
}

impl PeerLink {
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub fn acked(&self, topic: &str) -> u64 {
        self.acked.lock().get(topic).copied().unwrap_or(0)
    }
}

/// The owner's side: the peers, `--replicas`, the policy.
pub struct Owner {
    pub peers: Vec<Arc<PeerLink>>,
    pub replicas: usize,
    pub policy: Policy,
    pub timeout: Duration,
    /// Any peer acknowledged something, or a peer came or went.
    changed: Notify,
    degraded: AtomicBool,
}

impl Owner {
    fn connected(&self) -> usize {
        self.peers.iter().filter(|p| p.is_connected()).count()
    }
}

pub struct Replication {
    pub node: String,
    epoch: AtomicU64,
    /// Tells the senders to start over (a new epoch).
    epoch_changed: tokio::sync::watch::Sender<u64>,
    /// nsqrs's folder in the data directory (`Broker::store_dir`).
    store_dir: PathBuf,
    pub copies: CopyStore,
    pub owner: Option<Owner>,
    broker: Weak<Broker>,
    /// This broker's client TLS configuration for dialing peers, when it has a certificate.
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
    /// Whether plain (`  R1`) replication connections are refused.
    pub tls_required: bool,
    pub adopt_after: Duration,
    /// How this broker names itself to peers: `broadcast_address:tcp_port`, and where it listens.
    pub name: Mutex<String>,
    pub tcp_address: Mutex<String>,
    pub max_msg_size: u64,
    /// `--log-prefix`, for replication's log lines.
    pub log_prefix: String,
    /// Serializes adoptions and the handling of adoption news.
    adoption: tokio::sync::Mutex<()>,
}

impl Replication {
    /// Sets up replication for `broker`: identity, copies, peers. Started by `start`.
    pub fn open(broker: &Arc<Broker>) -> Result<Arc<Replication>, String> {
        let o: &NsqdOptions = &broker.opts;
        let id = load_or_create_identity(broker.store_dir())?;
        let copies = CopyStore::open(
            broker.store_dir(),
            o.max_bytes_per_file.max(1) as u64,
            o.sync_every <= 1,
            broker.files.clone(),
            broker.repairs.clone(),
        )?;
        let owner = (!o.replicate_to.is_empty()).then(|| Owner {
            peers: o
                .replicate_to
                .iter()
                .map(|a| {
                    Arc::new(PeerLink {
                        address: a.clone(),
                        connected: AtomicBool::new(false),
                        node: Mutex::new(None),
                        acked: Mutex::new(HashMap::new()),
                        wake: Notify::new(),
                        status: Mutex::new(sender::LinkStatus::default()),
                    })
                })
                .collect(),
            replicas: o.replicas.max(1) as usize,
            policy: Policy::parse(&o.replica_policy).unwrap_or(Policy::Strict),
            timeout: o.replica_timeout,
            changed: Notify::new(),
            degraded: AtomicBool::new(false),
        });
        let tls_client = if o.tls_cert.is_empty() {
            None
        } else {
            let tls = crate::client::tls::TlsOptions {
                root_ca_file: (!o.tls_root_ca_file.is_empty()).then(|| o.tls_root_ca_file.clone().into()),
                cert: Some(o.tls_cert.clone().into()),
                key: Some(o.tls_key.clone().into()),
                ..Default::default()
            };
            Some(
                tls.client_config()
                    .map_err(|e| format!("replication TLS - {e}"))?,
            )
        };
        Ok(Arc::new(Replication {
            node: id.node,
            epoch: AtomicU64::new(id.epoch),
            epoch_changed: tokio::sync::watch::channel(id.epoch).0,
            store_dir: broker.store_dir().to_path_buf(),
            copies,
            owner,
            broker: Arc::downgrade(broker),
            tls_client,
            tls_required: o.tls_required != crate::nsqd::options::TlsRequired::No,
            adopt_after: o.adopt_after,
            name: Mutex::new(String::new()),
            tcp_address: Mutex::new(String::new()),
            max_msg_size: o.max_msg_size.max(1) as u64,
            log_prefix: o.log_prefix.clone(),
            adoption: tokio::sync::Mutex::new(()),
        }))
    }

    /// Starts the senders (one per peer), copy fsyncs, interrupted adoptions and automatic
    /// adoption. Returns once every peer answered HELLO or failed to, at most
    /// `--replica-timeout`: a broker that was adopted learns it before it serves.
    pub async fn start(self: &Arc<Self>, name: String, tcp_address: String) {
        *self.name.lock() = name;
        *self.tcp_address.lock() = tcp_address;
        let first_round = Arc::new(sender::FirstRound::default());
        if let (Some(owner), Some(broker)) = (&self.owner, self.broker()) {
            for link in &owner.peers {
                let (repl, link, broker, first) =
                    (self.clone(), link.clone(), broker.clone(), first_round.clone());
                tokio::spawn(async move { sender::run(repl, link, broker, first).await });
            }
            let wait = first_round.wait_for(owner.peers.len());
            let _ = tokio::time::timeout(owner.timeout.max(Duration::from_millis(100)), wait).await;
        }
        let repl = self.clone();
        std::thread::Builder::new()
            .name("nsqrs-copy-sync".into())
            .spawn(move || repl.sync_loop())
            .expect("spawn copy sync thread");
        adopt::resume_interrupted(self.clone());
        if !self.adopt_after.is_zero() {
            tokio::spawn(adopt::auto_loop(self.clone()));
        }
    }

    fn sync_loop(self: Arc<Self>) {
        let every = self
            .broker()
            .map(|b| b.opts.sync_timeout)
            .unwrap_or(Duration::from_secs(2))
            .max(Duration::from_millis(100));
        loop {
            std::thread::sleep(every);
            let Some(broker) = self.broker() else { return };
            if broker.is_exiting() {
                return;
            }
            for copy in self.copies.all() {
                copy.sync();
            }
        }
    }

    pub fn broker(&self) -> Option<Arc<Broker>> {
        self.broker.upgrade()
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn subscribe_epoch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.epoch_changed.subscribe()
    }

    /// Waits until `--replicas` peers hold `topic` up to its current head. Without peers (or
    /// for an `#ephemeral` topic) it returns at once.
    pub async fn await_replicas(&self, topic: &Topic) -> Result<(), String> {
        let Some(owner) = &self.owner else {
            return Ok(());
        };
        if !matches!(topic.core.log, LogStore::Disk(_)) {
            return Ok(());
        }
        let pos = topic.core.head().pos;
        let name = topic.name();
        for p in &owner.peers {
            p.wake.notify_one();
        }
        let deadline = tokio::time::Instant::now() + owner.timeout;
        loop {
            let changed = owner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let mut connected = 0;
            let mut holding = 0;
            for p in &owner.peers {
                if p.is_connected() {
                    connected += 1;
                    if p.acked(name) >= pos {
                        holding += 1;
                    }
                }
            }
            if holding >= owner.replicas {
                return Ok(());
            }
            if connected < owner.replicas {
                return match owner.policy {
                    Policy::Strict => Err(format!(
                        "replication: {connected} of {} peers reachable, {} required",
                        owner.peers.len(),
                        owner.replicas
                    )),
                    Policy::BestEffort => Ok(()),
                };
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return match owner.policy {
                        Policy::Strict => Err(format!(
                            "replication: {holding} of {} required peers acknowledged within {:?}",
                            owner.replicas, owner.timeout
                        )),
                        Policy::BestEffort => Ok(()),
                    };
                }
            }
        }
    }

    /// A sender connected or lost its peer: wake waiting publishers, log a change of mode.
    fn peer_changed(&self) {
        let Some(owner) = &self.owner else { return };
        owner.changed.notify_waiters();
        let degraded = owner.connected() < owner.replicas;
        if owner.degraded.swap(degraded, Ordering::AcqRel) != degraded {
            let msg = match (degraded, owner.policy) {
                (true, Policy::Strict) => format!(
                    "replication degraded: {} of {} peers reachable, {} required; publishes are refused",
                    owner.connected(),
                    owner.peers.len(),
                    owner.replicas
                ),
                (true, Policy::BestEffort) => format!(
                    "replication degraded: {} of {} peers reachable, {} required; publishes are accepted unreplicated (best-effort)",
                    owner.connected(),
                    owner.peers.len(),
                    owner.replicas
                ),
                (false, _) => format!(
                    "replication restored: {} of {} peers reachable",
                    owner.connected(),
                    owner.peers.len()
                ),
            };
            crate::common::log::log(&self.log_prefix, if degraded { "WARNING" } else { "INFO" }, &msg);
        }
    }

    fn set_acked(&self, link: &PeerLink, topic: &str, end: u64) {
        link.acked.lock().insert(topic.to_string(), end);
        // The sender may be waiting for room in its window of unacknowledged bytes.
        link.wake.notify_one();
        if let Some(owner) = &self.owner {
            owner.changed.notify_waiters();
        }
    }

    /// What `/ping` reports: None when replication is fine (or off), else whether publishes
    /// are refused and why.
    pub fn degraded(&self) -> Option<(Policy, String)> {
        let owner = self.owner.as_ref()?;
        if !owner.degraded.load(Ordering::Acquire) {
            return None;
        }
        let connected = owner.connected();
        let text = match owner.policy {
            Policy::Strict => format!(
                "replication degraded: {connected} of {} peers reachable, {} required, publishes refused",
                owner.peers.len(),
                owner.replicas
            ),
            Policy::BestEffort => format!(
                "replication degraded: {connected} of {} peers reachable, {} required, publishes accepted unreplicated",
                owner.peers.len(),
                owner.replicas
            ),
        };
        Some((owner.policy, text))
    }

    /// A peer says this broker (at `record.epoch`) was adopted: forget, on every channel,
    /// what the adopter took, so it is not delivered twice; then start a new epoch.
    pub async fn apply_adoption_news(&self, record: &AdoptionRecord) {
        let _guard = self.adoption.lock().await;
        // A record of the epoch just ended may come from a second holder (one that granted the
        // adopter's claim, or answered late): forgetting up to its ends again is harmless.
        if record.epoch + 1 < self.epoch() || record.owner != self.node {
            return;
        }
        let Some(broker) = self.broker() else { return };
        let mut skipped = Vec::new();
        for (topic_name, end) in &record.ends {
            let Some(topic) = broker.topic(topic_name) else {
                continue;
            };
            let head = topic.core.head();
            let upto = if end.pos >= head.pos {
                head
            } else {
                LogHead {
                    pos: end.pos,
                    seq: end.seq,
                }
            };
            for ch in topic.channels() {
                ch.forget_before(upto);
                ch.persist(true);
            }
            if topic.orphan_start().is_some_and(|o| o.pos < upto.pos) {
                broker.set_orphan_start(&topic, upto);
            }
            skipped.push(format!("{topic_name}@{}", upto.pos));
        }
        let next = record.epoch + 1;
        if next <= self.epoch() {
            return;
        }
        if let Err(e) = save_identity(
            &self.store_dir,
            &Identity {
                node: self.node.clone(),
                epoch: next,
            },
        ) {
            crate::common::log::log(&self.log_prefix, "ERROR", &format!("replication: {e}"));
        }
        self.epoch.store(next, Ordering::Release);
        let _ = self.epoch_changed.send(next);
        crate::common::log::log(
            &self.log_prefix,
            "WARNING",
            &format!(
                "replication: this broker was adopted by {} (epoch {}); skipped what it took ({}); now epoch {next}",
                record.adopter,
                record.epoch,
                if skipped.is_empty() { "no topic".to_string() } else { skipped.join(", ") }
            ),
        );
    }

    /// The ends of each of this broker's topics, for adoption records and tests.
    pub fn local_ends(&self) -> HashMap<String, End> {
        let Some(broker) = self.broker() else {
            return HashMap::new();
        };
        broker
            .topics()
            .iter()
            .map(|t| {
                let h = t.core.head();
                (
                    t.name().to_string(),
                    End {
                        pos: h.pos,
                        seq: h.seq,
                    },
                )
            })
            .collect()
    }
}
