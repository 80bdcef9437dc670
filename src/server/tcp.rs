//! The TCP front end: protocol V2 connections. Each connection has a reader task that parses
//! and executes commands, and a writer task that sends responses and, once subscribed, pulls
//! messages from the channel within the client's RDY window.
//!
//! Everything that goes out is batched: the writer collects all queued responses and as many
//! messages as the window allows into one buffer and writes it with one call, and flushes as
//! soon as nothing more is available, so an idle consumer sees a message at once and a busy
//! one gets large writes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep_until, timeout, Instant};

use crate::broker::channel::Channel;
use crate::broker::client::ClientHandle;
use crate::broker::topic::Topic;
use crate::broker::{Broker, NSQ_VERSION};
use crate::protocol::command::{parse, ClientState, ConnContext, ParseError};
use crate::protocol::frame::{self, put_frame, put_message_frame};
use crate::protocol::guid::now_ns;
use crate::protocol::identify::{ClientSettings, IdentifyRequest, IdentifyResponse};
use crate::protocol::{Command, ParseLimits, ProtocolError};

/// Most messages pulled from a channel in one go, so one client cannot starve the others.
const MAX_TAKE: usize = 1024;
const READ_BUFFER: usize = 64 * 1024;

pub async fn serve(listener: TcpListener, broker: Arc<Broker>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let broker = broker.clone();
                tokio::spawn(async move { handle(stream, broker).await });
            }
            Err(e) => {
                eprintln!("[nsqd] ERROR: accept failed - {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if broker.is_exiting() {
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
    }
}

async fn handle(mut stream: TcpStream, broker: Arc<Broker>) {
    let _ = stream.set_nodelay(true);
    let remote = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut magic = [0u8; 4];
    match timeout(Duration::from_secs(60), stream.read_exact(&mut magic)).await {
        Ok(Ok(_)) => {}
        _ => return,
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
    let settings = ClientSettings::defaults(&broker.opts, &remote_ip);
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
    });
    let (rd, wr) = stream.into_split();
    let writer = tokio::spawn(write_loop(wr, shared.clone()));
    read_loop(rd, &broker, &shared).await;
    shared.close();
    let _ = timeout(Duration::from_secs(5), writer).await;
    if let Some((topic, channel)) = shared.subscription.get() {
        broker.client_left(topic, channel, client.id);
    }
    broker.unregister_client(client.id);
}

async fn read_loop(mut rd: OwnedReadHalf, broker: &Arc<Broker>, shared: &Shared) {
    let opts = &broker.opts;
    let limits = ParseLimits {
        max_msg_size: opts.max_msg_size,
        max_body_size: opts.max_body_size,
        max_req_timeout_ms: opts.max_req_timeout.as_millis() as i64,
        max_rdy_count: opts.max_rdy_count,
    };
    let mut conn = Connection {
        broker,
        shared,
        state: ClientState::Init,
        identified: false,
    };
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    loop {
        loop {
            let ctx = ConnContext {
                state: conn.state,
                heartbeats_enabled: shared.client.settings.read().heartbeat_interval.is_some(),
                tls_missing: false,
            };
            match parse(&buf, &limits, ctx) {
                Ok(Some((cmd, used))) => {
                    let result = conn.execute(cmd).await;
                    buf.advance(used);
                    if let Err(e) = result {
                        shared.error(&e);
                        if e.fatal {
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(ParseError::LineTooLong) => return,
                Err(ParseError::Client(e)) => {
                    shared.error(&e);
                    return;
                }
            }
        }
        if shared.closing.load(Ordering::Acquire) {
            return;
        }
        // A silent client is dropped after two missed heartbeats, as nsqd does.
        let deadline = shared.client.settings.read().heartbeat_interval.map(|hb| hb * 2);
        buf.reserve(READ_BUFFER);
        let kicked = shared.client.kick_notify.notified();
        tokio::pin!(kicked);
        kicked.as_mut().enable();
        if shared.client.is_kicked() {
            return;
        }
        let read = async {
            match deadline {
                Some(d) => timeout(d, rd.read_buf(&mut buf)).await.ok(),
                None => Some(rd.read_buf(&mut buf).await),
            }
        };
        let n = tokio::select! {
            r = read => match r {
                Some(r) => r,
                None => return,
            },
            _ = &mut kicked => return,
        };
        match n {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

struct Connection<'a> {
    broker: &'a Arc<Broker>,
    shared: &'a Shared,
    state: ClientState,
    identified: bool,
}

impl Connection<'_> {
    async fn execute(&mut self, cmd: Command) -> Result<(), ProtocolError> {
        let client = &self.shared.client;
        match cmd {
            Command::Identify(body) => self.identify(&body),
            Command::Auth(_) => Err(ProtocolError::fatal("E_AUTH_DISABLED", "AUTH Disabled")),
            Command::Sub { topic, channel } => self.subscribe(&topic, &channel),
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
            Command::Pub { topic, body } => self.publish("PUB", "E_PUB_FAILED", &topic, &[&body], 0).await,
            Command::Mpub { topic, bodies } => {
                let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_ref()).collect();
                self.publish("MPUB", "E_MPUB_FAILED", &topic, &refs, 0).await
            }
            Command::Dpub {
                topic,
                defer_ms,
                body,
            } => {
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
                s.apply(&req, opts)
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
        if opts.snappy && req.snappy && opts.deflate && req.deflate {
            return Err(ProtocolError::fatal(
                "E_IDENTIFY_FAILED",
                "cannot enable both deflate and snappy compression",
            ));
        }
        // TLS and compression arrive with their own issue; until then they are not offered,
        // which every client handles by staying on plain TCP.
        let response = IdentifyResponse {
            max_rdy_count: opts.max_rdy_count,
            version: NSQ_VERSION.into(),
            max_msg_timeout: opts.max_msg_timeout.as_millis() as i64,
            msg_timeout: settings.msg_timeout.as_millis() as i64,
            tls_v1: false,
            deflate: false,
            deflate_level: 0,
            max_deflate_level: opts.max_deflate_level,
            snappy: false,
            sample_rate: settings.sample_rate,
            auth_required: false,
            output_buffer_size: settings.output_buffer_size as i64,
            output_buffer_timeout: settings
                .output_buffer_timeout
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            topology_region: opts.topology_region.clone(),
            topology_zone: opts.topology_zone.clone(),
        };
        let json = serde_json::to_vec(&response).expect("serializable");
        self.shared.respond(&json);
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
        let user_agent = client.settings.read().user_agent.clone();
        self.broker
            .publish(&topic, bodies, deliver_at, (&client.remote_address, &user_agent))
            .await
            .map_err(|e| ProtocolError::fatal(code, format!("{cmd} failed {e}")))?;
        self.shared.client.published(topic_name, bodies.len() as u64);
        self.shared.respond(frame::OK);
        Ok(())
    }
}

async fn write_loop(mut wr: OwnedWriteHalf, shared: Arc<Shared>) {
    let client = &shared.client;
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUFFER);
    let mut next_heartbeat = Instant::now() + heartbeat_of(client);
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

        buf.clear();
        std::mem::swap(&mut buf, &mut *shared.outgoing.lock());
        let closing = shared.closing.load(Ordering::Acquire) || client.is_kicked();
        if let (false, Some((_, channel))) = (closing, subscription) {
            if client.state.load(Ordering::Acquire) == ClientState::Subscribed as u8 {
                let window = client.window().min(MAX_TAKE);
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
                    for m in &messages {
                        put_message_frame(&mut buf, m.timestamp_ns, m.attempts, m.id, &m.body);
                    }
                }
            }
        }
        if !buf.is_empty() {
            let write_deadline = heartbeat_of(client).max(Duration::from_secs(1));
            match timeout(write_deadline, wr.write_all(&buf)).await {
                Ok(Ok(())) => {}
                _ => break,
            }
            // Swap the written buffer back if it is the larger one, to keep its capacity.
            continue;
        }
        if closing {
            break;
        }
        let has_heartbeat = client.settings.read().heartbeat_interval.is_some();
        tokio::select! {
            _ = &mut client_wake => {}
            _ = async { channel_wake.as_mut().unwrap().await }, if channel_wake.is_some() => {}
            _ = sleep_until(next_heartbeat), if has_heartbeat => {
                put_frame(&mut shared.outgoing.lock(), frame::FRAME_TYPE_RESPONSE, frame::HEARTBEAT);
                next_heartbeat = Instant::now() + heartbeat_of(client);
            }
        }
    }
    let _ = wr.shutdown().await;
}

fn heartbeat_of(client: &ClientHandle) -> Duration {
    client
        .settings
        .read()
        .heartbeat_interval
        .unwrap_or(Duration::from_secs(3600))
}
