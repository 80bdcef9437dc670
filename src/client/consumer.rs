//! Consuming one topic/channel from any number of nsqd, the way go-nsq's consumer does
//! (nsq-reference §1.2, §2.5, §4.7): IDENTIFY with feature negotiation, SUB, RDY shared out
//! across connections within max-in-flight, FIN/REQ/TOUCH, backoff on failures, a maximum
//! number of attempts, heartbeats answered with NOP, and nsqd discovered through lookupd.
//!
//! Messages are handed out as values that must be answered (`finish`, `requeue`, `touch`).
//! Answering is decoupled from receiving so a caller may hold a batch and finish it later:
//! the archiver finishes only after its file is fsync'ed.
//!
//! Stopping is graceful, the part operators otherwise build by hand (seed 002): every
//! connection is sent `RDY 0` and `CLS` so no new message arrives; messages already received
//! but not yet in a handler go straight back (`REQ 0`); messages in handlers are waited for;
//! only then are the connections closed.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::protocol::names::{is_valid_channel_name, is_valid_topic_name};

use super::config::Config;
use super::conn::{self, Conn};
use super::connect::{connect, Negotiated, Transport};
use super::lookup;
use crate::common::http_client::HttpTimeouts;
use crate::protocol::command::encode;
use crate::protocol::frame::{self, is_non_fatal, Frame, HEARTBEAT};

/// nsqd's default `--max-rdy-count`, used when the IDENTIFY reply does not say.
const DEFAULT_MAX_RDY: u64 = 2500;

/// A message delivered to this consumer. Answer it exactly once; one dropped unanswered is
/// requeued at once without backoff, so nothing waits for its timeout.
pub struct Message {
    /// The message as it came: id, timestamp, attempts, body (also reached through `Deref`).
    pub message: frame::Message,
    /// The nsqd TCP address it came from.
    pub nsqd_address: String,
    responder: Option<Responder>,
}

impl std::ops::Deref for Message {
    type Target = frame::Message;

    fn deref(&self) -> &frame::Message {
        &self.message
    }
}

struct Responder {
    inner: Arc<Inner>,
    conn_id: u64,
    conn: mpsc::UnboundedSender<ConnCmd>,
}

/// What an answer says about the health of processing, for backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Success,
    Failure,
    Neutral,
}

impl Message {
    /// FIN: processed; the server forgets it.
    pub fn finish(mut self) {
        self.respond(ConnCmd::Fin(self.id), Signal::Success);
    }

    /// REQ after `delay`, or after go-nsq's default delay (grows with attempts) when `None`.
    /// Counts as a failure: the consumer backs off.
    pub fn requeue(mut self, delay: Option<Duration>) {
        let delay = self.delay(delay);
        self.respond(ConnCmd::Req(self.id, delay), Signal::Failure);
    }

    /// REQ without slowing the consumer down (for messages that are fine but not for now).
    pub fn requeue_without_backoff(mut self, delay: Option<Duration>) {
        let delay = self.delay(delay);
        self.respond(ConnCmd::Req(self.id, delay), Signal::Neutral);
    }

    /// FIN on `Ok`, default-delay REQ with backoff on `Err`: go-nsq's handler contract.
    pub fn respond_with<E>(self, result: Result<(), E>) {
        match result {
            Ok(()) => self.finish(),
            Err(_) => self.requeue(None),
        }
    }

    /// TOUCH: resets the server's in-flight timeout for a message that needs longer.
    pub fn touch(&self) {
        if let Some(r) = &self.responder {
            let _ = r.conn.send(ConnCmd::Touch(self.id));
        }
    }

    fn delay(&self, delay: Option<Duration>) -> u64 {
        let d = match (&self.responder, delay) {
            (_, Some(d)) => d,
            (Some(r), None) => r.inner.config.requeue_delay(self.attempts),
            (None, None) => Duration::ZERO,
        };
        d.as_millis() as u64
    }

    fn respond(&mut self, cmd: ConnCmd, signal: Signal) {
        if let Some(r) = self.responder.take() {
            // A send to a connection that has gone fails; the server times the message out.
            let _ = r.conn.send(cmd);
            r.inner.answered(r.conn_id, signal);
        }
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        self.respond(ConnCmd::Req(self.id, 0), Signal::Neutral);
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id_str())
            .field("timestamp", &self.timestamp_ns)
            .field("attempts", &self.attempts)
            .field("body_len", &self.body.len())
            .field("nsqd_address", &self.nsqd_address)
            .finish()
    }
}

/// Counters for monitoring and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    pub connections: usize,
    /// Received and not yet answered.
    pub in_flight: usize,
    pub received: u64,
    pub finished: u64,
    pub requeued: u64,
    /// Finished unprocessed because `attempts > max_attempts`.
    pub gave_up: u64,
    pub backoff_level: u32,
}

/// Commands to a connection task.
#[derive(Debug)]
enum ConnCmd {
    Fin([u8; 16]),
    Req([u8; 16], u64),
    Touch([u8; 16]),
    Rdy(u64),
    Cls,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Given by the caller: reconnected after a failure.
    Direct,
    /// Found through lookupd: the next poll decides whether it comes back.
    Lookupd,
}

struct ConnEntry {
    addr: String,
    source: Source,
    tx: mpsc::UnboundedSender<ConnCmd>,
    rdy: u64,
    max_rdy: u64,
    in_flight: usize,
    /// CLS sent: closed once its in-flight messages are answered.
    closing: bool,
}

#[derive(Default)]
struct State {
    conns: BTreeMap<u64, ConnEntry>,
    connecting: HashSet<String>,
    direct: BTreeSet<String>,
    lookupds: Vec<String>,
    in_flight: usize,
    stopping: bool,
    backoff_level: u32,
    /// All RDY held at 0 until the backoff timer of this generation fires.
    backoff_timer: Option<u64>,
    backoff_generation: u64,
    /// Which connections get RDY when there is less RDY than connections.
    rotation: usize,
    stats: ConsumerStats,
}

type GiveUpHook = Box<dyn Fn(&Message) + Send + Sync>;

struct Inner {
    topic: String,
    channel: String,
    config: Config,
    state: Mutex<State>,
    queue_tx: mpsc::UnboundedSender<Message>,
    queue_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>,
    stop_tx: watch::Sender<bool>,
    give_up: Mutex<Option<GiveUpHook>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    handlers: Mutex<Vec<JoinHandle<()>>>,
    next_conn_id: AtomicU64,
    rotation_started: AtomicBool,
}

/// A consumer of one topic on one channel. Clones share the same consumer.
#[derive(Clone)]
pub struct Consumer {
    inner: Arc<Inner>,
}

impl Consumer {
    pub fn new(topic: &str, channel: &str, config: Config) -> Result<Consumer, String> {
        if !is_valid_topic_name(topic) {
            return Err(format!("invalid topic name {topic:?}"));
        }
        if !is_valid_channel_name(channel) {
            return Err(format!("invalid channel name {channel:?}"));
        }
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let (stop_tx, _) = watch::channel(false);
        Ok(Consumer {
            inner: Arc::new(Inner {
                topic: topic.to_string(),
                channel: channel.to_string(),
                config,
                state: Mutex::new(State::default()),
                queue_tx,
                queue_rx: tokio::sync::Mutex::new(queue_rx),
                stop_tx,
                give_up: Mutex::new(None),
                tasks: Mutex::new(Vec::new()),
                handlers: Mutex::new(Vec::new()),
                next_conn_id: AtomicU64::new(1),
                rotation_started: AtomicBool::new(false),
            }),
        })
    }

    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Called with each message finished unprocessed for exceeding `max_attempts` (go-nsq's
    /// `FailedMessageLogger`, NSQ's only dead-letter hook).
    pub fn on_give_up(&self, hook: impl Fn(&Message) + Send + Sync + 'static) {
        *self.inner.give_up.lock() = Some(Box::new(hook));
    }

    /// Connects to one nsqd directly. A connection lost later is made again until `stop`.
    pub async fn connect_to_nsqd(&self, addr: &str) -> Result<(), String> {
        self.start_rotation();
        self.inner.state.lock().direct.insert(addr.to_string());
        self.inner.connect(addr, Source::Direct).await
    }

    /// Adds a lookupd to poll. The first one starts polling at once and then every
    /// `lookupd_poll_interval` (after a random share of `lookupd_poll_jitter` of it).
    pub async fn connect_to_lookupd(&self, addr: &str) -> Result<(), String> {
        self.start_rotation();
        let first = {
            let mut st = self.inner.state.lock();
            if st.lookupds.iter().any(|a| a == addr) {
                return Ok(());
            }
            st.lookupds.push(addr.to_string());
            st.lookupds.len() == 1
        };
        if first {
            self.inner.query_lookupds().await;
            let inner = self.inner.clone();
            let task = tokio::spawn(async move { inner.lookupd_loop().await });
            self.inner.tasks.lock().push(task);
        }
        Ok(())
    }

    /// The next message, or `None` once `stop` has begun.
    pub async fn recv(&self) -> Option<Message> {
        let mut stop = self.inner.stop_tx.subscribe();
        let mut rx = self.inner.queue_rx.lock().await;
        if *stop.borrow_and_update() {
            return None;
        }
        tokio::select! {
            m = rx.recv() => m,
            _ = stop.changed() => None,
        }
    }

    /// Runs `concurrency` tasks that each take messages and pass them to `handler`, which
    /// answers them (or drops them to requeue). They end when the consumer stops.
    pub fn add_handlers<F, Fut>(&self, concurrency: usize, handler: F)
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let handler = Arc::new(handler);
        for _ in 0..concurrency.max(1) {
            let me = self.clone();
            let handler = handler.clone();
            let task = tokio::spawn(async move {
                while let Some(m) = me.recv().await {
                    handler(m).await;
                }
            });
            self.inner.handlers.lock().push(task);
        }
    }

    fn start_rotation(&self) {
        if !self.inner.rotation_started.swap(true, Ordering::Relaxed) {
            spawn_rdy_rotation(self);
        }
    }

    /// TCP addresses of the live connections.
    pub fn connections(&self) -> Vec<String> {
        let st = self.inner.state.lock();
        st.conns
            .values()
            .filter(|c| !c.closing)
            .map(|c| c.addr.clone())
            .collect()
    }

    pub fn stats(&self) -> ConsumerStats {
        let st = self.inner.state.lock();
        ConsumerStats {
            connections: st.conns.len(),
            in_flight: st.in_flight,
            backoff_level: st.backoff_level,
            ..st.stats.clone()
        }
    }

    /// A receiver that turns true when `stop` begins.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.inner.stop_tx.subscribe()
    }

    /// Graceful stop: no new messages (RDY 0, CLS), unclaimed ones back to the server, wait
    /// (up to `stop_timeout`) for the ones in handlers, then close every connection.
    pub async fn stop(&self) {
        let inner = &self.inner;
        {
            let mut st = inner.state.lock();
            st.stopping = true;
            for c in st.conns.values_mut() {
                c.closing = true;
                let _ = c.tx.send(ConnCmd::Rdy(0));
                c.rdy = 0;
                let _ = c.tx.send(ConnCmd::Cls);
            }
        }
        inner.stop_tx.send_replace(true);
        {
            // Nobody will take these now; dropping them requeues them at once.
            let mut rx = inner.queue_rx.lock().await;
            while let Ok(m) = rx.try_recv() {
                drop(m);
            }
        }
        let deadline = Instant::now() + inner.config.stop_timeout;
        while inner.state.lock().in_flight > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        {
            let st = inner.state.lock();
            for c in st.conns.values() {
                let _ = c.tx.send(ConnCmd::Close);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !inner.state.lock().conns.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let tasks: Vec<_> = inner.tasks.lock().drain(..).collect();
        for t in tasks {
            t.abort();
        }
        let handlers: Vec<_> = inner.handlers.lock().drain(..).collect();
        for h in handlers {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
    }
}

impl Inner {
    fn log(&self, msg: impl std::fmt::Display) {
        if self.config.log_connections {
            crate::errln!("nsqrs: [{}/{}] {msg}", self.topic, self.channel);
        }
    }

    fn http_timeouts(&self) -> HttpTimeouts {
        HttpTimeouts {
            connect: self.config.http_connect_timeout,
            request: self.config.http_request_timeout,
        }
    }

    async fn connect(self: &Arc<Self>, addr: &str, source: Source) -> Result<(), String> {
        {
            let mut st = self.state.lock();
            if st.stopping {
                return Err("consumer is stopping".into());
            }
            if st.connecting.contains(addr) || st.conns.values().any(|c| c.addr == addr && !c.closing) {
                return Ok(());
            }
            st.connecting.insert(addr.to_string());
        }
        let result = self.dial(addr).await;
        let mut st = self.state.lock();
        st.connecting.remove(addr);
        let (conn, max_rdy) = result?;
        if st.stopping {
            return Err("consumer is stopping".into());
        }
        let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        st.conns.insert(
            id,
            ConnEntry {
                addr: addr.to_string(),
                source,
                tx: tx.clone(),
                rdy: 0,
                max_rdy,
                in_flight: 0,
                closing: false,
            },
        );
        self.rebalance(&mut st);
        drop(st);
        self.log(format!("({addr}) connected"));
        let inner = self.clone();
        let addr = addr.to_string();
        tokio::spawn(async move {
            let result = inner.conn_loop(id, &addr, conn, tx, rx).await;
            inner.conn_closed(id, &addr, source, result);
        });
        Ok(())
    }

    /// TCP connect, IDENTIFY and its upgrades, AUTH, SUB; returns the connection and its
    /// max RDY.
    async fn dial(&self, addr: &str) -> Result<(Conn<Transport>, u64), String> {
        let work = async {
            let log = |m: &str| self.log(format!("({addr}) {m}"));
            let Negotiated { mut conn, info, .. } = connect(addr, &self.config, &log).await?;
            encode::sub(conn.out(), &self.topic, &self.channel);
            conn.flush().await?;
            conn.expect_ok("SUB").await?;
            Ok::<_, conn::Error>((
                conn,
                info.max_rdy_count
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(DEFAULT_MAX_RDY),
            ))
        };
        let limit = self.config.dial_timeout + conn::REPLY_TIMEOUT;
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| format!("{addr}: connect timed out after {limit:?}"))?
            .map_err(|e| e.to_string())
    }

    async fn conn_loop(
        self: &Arc<Self>,
        id: u64,
        addr: &str,
        mut conn: Conn<Transport>,
        tx: mpsc::UnboundedSender<ConnCmd>,
        mut rx: mpsc::UnboundedReceiver<ConnCmd>,
    ) -> Result<(), String> {
        loop {
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { return Ok(()) };
                    let mut close = encode_cmd(conn.out(), cmd);
                    // Answers queued together go out in one write.
                    while let Ok(cmd) = rx.try_recv() {
                        close |= encode_cmd(conn.out(), cmd);
                    }
                    self.flush(&mut conn).await?;
                    if close {
                        return Ok(());
                    }
                }
                frame = tokio::time::timeout(self.config.read_timeout, conn.read_frame()) => {
                    let frame = frame
                        .map_err(|_| format!("no data for {:?}", self.config.read_timeout))?
                        .map_err(|e| e.to_string())?;
                    match frame {
                        Frame::Response(r) if r == HEARTBEAT => {
                            encode::nop(conn.out());
                            self.flush(&mut conn).await?;
                        }
                        // CLOSE_WAIT and stray OKs need nothing: we close when drained.
                        Frame::Response(_) => {}
                        Frame::Error(e) if is_non_fatal(&e) => {
                            self.log(format!("({addr}) {}", String::from_utf8_lossy(&e)));
                        }
                        Frame::Error(e) => return Err(String::from_utf8_lossy(&e).into_owned()),
                        Frame::Message(m) => self.on_message(id, addr, &tx, m),
                    }
                }
            }
        }
    }

    async fn flush(&self, conn: &mut Conn<Transport>) -> Result<(), String> {
        let limit = self.config.write_timeout.max(Duration::from_millis(100));
        tokio::time::timeout(limit, conn.flush())
            .await
            .map_err(|_| format!("write timed out after {limit:?}"))?
            .map_err(|e| e.to_string())
    }

    fn on_message(
        self: &Arc<Self>,
        id: u64,
        addr: &str,
        tx: &mpsc::UnboundedSender<ConnCmd>,
        m: frame::Message,
    ) {
        let refuse = {
            let mut st = self.state.lock();
            st.in_flight += 1;
            st.stats.received += 1;
            let closing = match st.conns.get_mut(&id) {
                Some(c) => {
                    c.in_flight += 1;
                    c.closing
                }
                None => true,
            };
            st.stopping || closing
        };
        let msg = Message {
            message: m,
            nsqd_address: addr.to_string(),
            responder: Some(Responder {
                inner: self.clone(),
                conn_id: id,
                conn: tx.clone(),
            }),
        };
        if refuse {
            // Sent before the server saw our CLS: give it straight back.
            msg.requeue_without_backoff(Some(Duration::ZERO));
            return;
        }
        let max = self.config.max_attempts;
        if max > 0 && msg.attempts > max {
            if let Some(hook) = self.give_up.lock().as_ref() {
                hook(&msg);
            }
            self.state.lock().stats.gave_up += 1;
            let mut msg = msg;
            msg.respond(ConnCmd::Fin(msg.id), Signal::Neutral);
            return;
        }
        if let Err(e) = self.queue_tx.send(msg) {
            // Only while being torn down; the message requeues as it drops.
            drop(e);
        }
    }

    fn answered(self: &Arc<Self>, conn_id: u64, signal: Signal) {
        let mut st = self.state.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        match signal {
            Signal::Success => st.stats.finished += 1,
            Signal::Failure => st.stats.requeued += 1,
            Signal::Neutral => {}
        }
        let stopping = st.stopping;
        if let Some(c) = st.conns.get_mut(&conn_id) {
            c.in_flight = c.in_flight.saturating_sub(1);
            if c.closing && c.in_flight == 0 && !stopping {
                let _ = c.tx.send(ConnCmd::Close);
            }
        }
        if st.stopping || st.backoff_timer.is_some() {
            return;
        }
        match signal {
            Signal::Success if st.backoff_level > 0 => {
                st.backoff_level -= 1;
                if st.backoff_level == 0 {
                    self.log("backoff over");
                    self.rebalance(&mut st);
                } else {
                    self.start_backoff(&mut st);
                }
            }
            Signal::Failure => {
                // Stop growing once the delay has reached its cap.
                if self.config.backoff_duration(st.backoff_level) < self.config.max_backoff_duration {
                    st.backoff_level += 1;
                }
                self.start_backoff(&mut st);
            }
            _ => {}
        }
    }

    fn start_backoff(self: &Arc<Self>, st: &mut State) {
        let d = self.config.backoff_duration(st.backoff_level);
        st.backoff_generation += 1;
        let generation = st.backoff_generation;
        st.backoff_timer = Some(generation);
        self.rebalance(st);
        self.log(format!("backing off for {d:?} (level {})", st.backoff_level));
        let inner = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            let mut st = inner.state.lock();
            if st.backoff_timer == Some(generation) {
                st.backoff_timer = None;
                inner.rebalance(&mut st);
            }
        });
    }

    /// Sets every connection's RDY to its share of max-in-flight, as the state allows.
    fn rebalance(&self, st: &mut State) {
        let active: Vec<u64> = st
            .conns
            .iter()
            .filter(|(_, c)| !c.closing)
            .map(|(id, _)| *id)
            .collect();
        let n = active.len();
        let mut targets: BTreeMap<u64, u64> = active.iter().map(|id| (*id, 0)).collect();
        if n > 0 && !st.stopping && st.backoff_timer.is_none() {
            let mif = self.config.max_in_flight;
            if st.backoff_level > 0 {
                // Testing the water: one message on one connection.
                targets.insert(active[st.rotation % n], 1);
            } else if mif >= n as u64 {
                let per = mif / n as u64;
                let extra = (mif % n as u64) as usize;
                for (i, id) in active.iter().enumerate() {
                    targets.insert(*id, per + u64::from(i < extra));
                }
            } else {
                for i in 0..mif as usize {
                    targets.insert(active[(st.rotation + i) % n], 1);
                }
            }
        }
        for (id, target) in targets {
            let c = st.conns.get_mut(&id).expect("active connection");
            let target = target.min(c.max_rdy);
            if c.rdy != target {
                c.rdy = target;
                let _ = c.tx.send(ConnCmd::Rdy(target));
            }
        }
    }

    fn conn_closed(self: &Arc<Self>, id: u64, addr: &str, source: Source, result: Result<(), String>) {
        let reconnect = {
            let mut st = self.state.lock();
            st.conns.remove(&id);
            self.rebalance(&mut st);
            !st.stopping && source == Source::Direct && st.direct.contains(addr)
        };
        match result {
            Ok(()) => self.log(format!("({addr}) closed")),
            Err(e) => self.log(format!("({addr}) connection lost: {e}")),
        }
        if reconnect {
            let inner = self.clone();
            let addr = addr.to_string();
            let task = tokio::spawn(async move { inner.reconnect(&addr).await });
            self.tasks.lock().push(task);
        }
    }

    async fn reconnect(self: &Arc<Self>, addr: &str) {
        let mut stop = self.stop_tx.subscribe();
        let mut delay = Duration::from_millis(500);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => return,
            }
            match self.connect(addr, Source::Direct).await {
                Ok(()) => return,
                Err(e) => {
                    if self.state.lock().stopping {
                        return;
                    }
                    self.log(format!("({addr}) reconnect failed: {e}"));
                }
            }
            delay = (delay * 2).min(Duration::from_secs(15));
        }
    }

    async fn lookupd_loop(self: Arc<Self>) {
        let mut stop = self.stop_tx.subscribe();
        let interval = self.config.lookupd_poll_interval.max(Duration::from_millis(10));
        let jitter = interval.mul_f64(rand::thread_rng().gen::<f64>() * self.config.lookupd_poll_jitter);
        tokio::select! {
            _ = tokio::time::sleep(jitter) => {}
            _ = stop.changed() => return,
        }
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => self.query_lookupds().await,
                _ = stop.changed() => return,
            }
        }
    }

    /// Asks every lookupd, connects to producers not yet connected, and closes (gracefully)
    /// lookupd-found connections to producers no lookupd lists any more.
    async fn query_lookupds(self: &Arc<Self>) {
        let lookupds = self.state.lock().lookupds.clone();
        let mut found = BTreeSet::new();
        let mut all_answered = true;
        for l in &lookupds {
            match lookup::lookup(l, &self.topic, self.http_timeouts()).await {
                Ok(peers) => found.extend(peers.iter().map(lookup::Peer::tcp_addr)),
                Err(e) => {
                    all_answered = false;
                    self.log(format!("lookupd {l}: {e}"));
                }
            }
        }
        for addr in &found {
            if let Err(e) = self.connect(addr, Source::Lookupd).await {
                self.log(format!("({addr}) connect failed: {e}"));
            }
        }
        // A lookupd that did not answer might still list a producer; keep everything then.
        if !all_answered {
            return;
        }
        let mut st = self.state.lock();
        let mut dropped = false;
        for c in st.conns.values_mut() {
            if c.source == Source::Lookupd && !c.closing && !found.contains(&c.addr) {
                c.closing = true;
                dropped = true;
                let _ = c.tx.send(ConnCmd::Rdy(0));
                c.rdy = 0;
                let _ = c.tx.send(ConnCmd::Cls);
                if c.in_flight == 0 {
                    let _ = c.tx.send(ConnCmd::Close);
                }
                self.log(format!("({}) no longer listed by lookupd; closing", c.addr));
            }
        }
        if dropped {
            self.rebalance(&mut st);
        }
    }
}

/// Appends a command; true when it asks the connection to close.
fn encode_cmd(out: &mut Vec<u8>, cmd: ConnCmd) -> bool {
    match cmd {
        ConnCmd::Fin(id) => encode::fin(out, &id),
        ConnCmd::Req(id, ms) => encode::req(out, &id, ms),
        ConnCmd::Touch(id) => encode::touch(out, &id),
        ConnCmd::Rdy(n) => encode::rdy(out, n),
        ConnCmd::Cls => encode::cls(out),
        ConnCmd::Close => return true,
    }
    false
}

/// Rotates which connections hold RDY when there is less RDY than connections, so none
/// starves (go-nsq's `rdyLoop`). Started by the consumer when needed.
fn spawn_rdy_rotation(consumer: &Consumer) {
    let inner = consumer.inner.clone();
    let mut stop = inner.stop_tx.subscribe();
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(inner.config.rdy_redistribute_interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            let mut st = inner.state.lock();
            let active = st.conns.values().filter(|c| !c.closing).count();
            if active as u64 > inner.config.max_in_flight || st.backoff_level > 0 {
                st.rotation = st.rotation.wrapping_add(1);
                inner.rebalance(&mut st);
            }
        }
    });
    consumer.inner.tasks.lock().push(task);
}
