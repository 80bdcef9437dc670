//! Publishing to one nsqd: PUB, MPUB and DPUB over one connection, pipelined.
//!
//! A background task owns the connection. Requests are written in the order they are
//! submitted and nsqd answers a connection's publishes strictly in order (nsq-reference §1.2,
//! go-nsq#320), so replies are matched first-in first-out without any tag on the wire. The
//! connection is made on first use and made again on the next publish after it fails, as
//! go-nsq's producer does; a publish is never retried by the library, because a lost reply
//! cannot tell "stored" from "not stored".

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::protocol::MessageId;

use super::config::Config;
use super::conn::Conn;
use super::connect::{connect, Transport};
use crate::protocol::command::encode;
use crate::protocol::frame::{Frame, HEARTBEAT};

/// One publish command.
#[derive(Debug, Clone)]
pub enum Publish {
    Pub {
        topic: String,
        body: Bytes,
    },
    Mpub {
        topic: String,
        bodies: Vec<Bytes>,
    },
    Dpub {
        topic: String,
        delay: Duration,
        body: Bytes,
    },
}

impl Publish {
    fn count(&self) -> usize {
        match self {
            Publish::Mpub { bodies, .. } => bodies.len(),
            _ => 1,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Publish::Pub { topic, body } => encode::publish(out, topic, body),
            Publish::Mpub { topic, bodies } => encode::mpub(out, topic, bodies),
            Publish::Dpub { topic, delay, body } => encode::dpub(out, topic, delay.as_millis() as u64, body),
        }
    }
}

/// What a successful publish reports.
///
/// nsqd answers `OK`, so `ids` is empty today. A server that answers `OK <id> <id>...` (one
/// 16-hex ID per message) fills `ids`, and callers that print them need no API change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReceipt {
    /// Messages the server accepted.
    pub count: usize,
    pub ids: Vec<MessageId>,
}

impl PublishReceipt {
    fn from_reply(count: usize, reply: &[u8]) -> Option<PublishReceipt> {
        let rest = reply.strip_prefix(b"OK")?;
        let ids: Vec<MessageId> = rest
            .split(|&b| b == b' ' || b == b'\n')
            .filter(|w| !w.is_empty())
            .map(MessageId::from_hex)
            .collect::<Option<_>>()?;
        Some(PublishReceipt { count, ids })
    }
}

/// Why a publish failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// The server refused it with an error frame (`E_BAD_TOPIC ...`); the text is verbatim.
    Server(String),
    /// The connection could not be made or broke before the reply; the message may or may
    /// not have been stored.
    Connection(String),
    /// The producer was stopped.
    Stopped,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Server(e) => write!(f, "{e}"),
            PublishError::Connection(e) => write!(f, "{e}"),
            PublishError::Stopped => write!(f, "producer stopped"),
        }
    }
}

impl std::error::Error for PublishError {}

type Reply = oneshot::Sender<Result<PublishReceipt, PublishError>>;

enum Request {
    Publish(Publish, Reply),
    Connect(oneshot::Sender<Result<(), PublishError>>),
}

/// A reply still to come: submitted publishes are already queued in order, so several can be
/// outstanding on one connection (pipelining).
pub struct PendingReply(oneshot::Receiver<Result<PublishReceipt, PublishError>>);

impl Future for PendingReply {
    type Output = Result<PublishReceipt, PublishError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(PublishError::Stopped)))
    }
}

/// A producer for one nsqd TCP address. Cheap to share by reference across tasks.
pub struct Producer {
    addr: String,
    tx: mpsc::Sender<Request>,
    task: tokio::task::JoinHandle<()>,
}

/// Requests buffered ahead of the connection task; bounds memory when the server is slow.
const QUEUE: usize = 256;

impl Producer {
    /// A producer that connects on first use.
    pub fn new(addr: &str, config: Config) -> Producer {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(addr.to_string(), config, rx));
        Producer {
            addr: addr.to_string(),
            tx,
            task,
        }
    }

    /// A producer whose connection and IDENTIFY have already succeeded, so a wrong address
    /// fails here rather than at the first publish.
    pub async fn connect(addr: &str, config: Config) -> Result<Producer, PublishError> {
        let p = Producer::new(addr, config);
        let (tx, rx) = oneshot::channel();
        p.tx.send(Request::Connect(tx))
            .await
            .map_err(|_| PublishError::Stopped)?;
        rx.await.unwrap_or(Err(PublishError::Stopped))?;
        Ok(p)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Queues a publish behind those already submitted and returns its reply-to-be.
    pub async fn submit(&self, publish: Publish) -> Result<PendingReply, PublishError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Publish(publish, tx))
            .await
            .map_err(|_| PublishError::Stopped)?;
        Ok(PendingReply(rx))
    }

    pub async fn publish(&self, topic: &str, body: impl Into<Bytes>) -> Result<PublishReceipt, PublishError> {
        self.submit(Publish::Pub {
            topic: topic.to_string(),
            body: body.into(),
        })
        .await?
        .await
    }

    pub async fn multi_publish(
        &self,
        topic: &str,
        bodies: Vec<Bytes>,
    ) -> Result<PublishReceipt, PublishError> {
        self.submit(Publish::Mpub {
            topic: topic.to_string(),
            bodies,
        })
        .await?
        .await
    }

    pub async fn deferred_publish(
        &self,
        topic: &str,
        delay: Duration,
        body: impl Into<Bytes>,
    ) -> Result<PublishReceipt, PublishError> {
        self.submit(Publish::Dpub {
            topic: topic.to_string(),
            delay,
            body: body.into(),
        })
        .await?
        .await
    }

    /// Waits for every submitted publish to be answered, then closes the connection.
    pub async fn stop(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

async fn dial(addr: &str, config: &Config) -> Result<Conn<Transport>, PublishError> {
    let limit = config.dial_timeout + super::conn::REPLY_TIMEOUT;
    let log = |m: &str| {
        if config.log_connections {
            crate::errln!("nsqrs: ({addr}) {m}");
        }
    };
    let conn = tokio::time::timeout(limit, async {
        let negotiated = connect(addr, config, &log).await?;
        Ok::<_, super::conn::Error>(negotiated.conn)
    })
    .await
    .map_err(|_| PublishError::Connection(format!("{addr}: connect timed out")))?
    .map_err(|e| PublishError::Connection(e.to_string()))?;
    Ok(conn)
}

/// The connection task: writes requests as they come, matches replies in order.
async fn run(addr: String, config: Config, mut rx: mpsc::Receiver<Request>) {
    let mut conn: Option<Conn<Transport>> = None;
    let mut pending: VecDeque<(usize, Reply)> = VecDeque::new();
    let mut closing = false;
    loop {
        if closing && pending.is_empty() {
            return;
        }
        let Some(c) = conn.as_mut() else {
            let Some(req) = rx.recv().await else { return };
            match dial(&addr, &config).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    fail(req, e);
                    continue;
                }
            }
            let c = conn.as_mut().expect("just connected");
            write_request(c, req, &mut pending);
            if let Err(e) = flush(c, &config).await {
                drop_conn(&mut conn, &mut pending, e);
            }
            continue;
        };
        tokio::select! {
            req = rx.recv(), if !closing => {
                let Some(req) = req else {
                    closing = true;
                    continue;
                };
                write_request(c, req, &mut pending);
                // Everything already queued goes out in the same write.
                while let Ok(req) = rx.try_recv() {
                    write_request(c, req, &mut pending);
                }
                if let Err(e) = flush(c, &config).await {
                    drop_conn(&mut conn, &mut pending, e);
                }
            }
            frame = tokio::time::timeout(config.read_timeout, c.read_frame()) => {
                let outcome = match frame {
                    Err(_) => Err(format!("{addr}: no data for {:?}", config.read_timeout)),
                    Ok(Err(e)) => Err(e.to_string()),
                    Ok(Ok(frame)) => on_frame(c, frame, &mut pending, &config).await,
                };
                if let Err(e) = outcome {
                    drop_conn(&mut conn, &mut pending, PublishError::Connection(e));
                }
            }
        }
    }
}

fn fail(req: Request, e: PublishError) {
    match req {
        Request::Publish(_, reply) => {
            let _ = reply.send(Err(e));
        }
        Request::Connect(reply) => {
            let _ = reply.send(Err(e));
        }
    }
}

fn write_request(c: &mut Conn<Transport>, req: Request, pending: &mut VecDeque<(usize, Reply)>) {
    match req {
        Request::Publish(p, reply) => {
            p.encode(c.out());
            pending.push_back((p.count(), reply));
        }
        Request::Connect(reply) => {
            let _ = reply.send(Ok(()));
        }
    }
}

async fn flush(c: &mut Conn<Transport>, config: &Config) -> Result<(), PublishError> {
    let limit = config.write_timeout.max(Duration::from_secs(1)) * 10;
    match tokio::time::timeout(limit, c.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(PublishError::Connection(e.to_string())),
        Err(_) => Err(PublishError::Connection(format!("{}: write timed out", c.peer()))),
    }
}

async fn on_frame(
    c: &mut Conn<Transport>,
    frame: Frame,
    pending: &mut VecDeque<(usize, Reply)>,
    config: &Config,
) -> Result<(), String> {
    match frame {
        Frame::Response(r) if r == HEARTBEAT => {
            encode::nop(c.out());
            flush(c, config).await.map_err(|e| e.to_string())
        }
        Frame::Response(r) => {
            let (count, reply) = pending
                .pop_front()
                .ok_or_else(|| format!("{}: reply with nothing outstanding", c.peer()))?;
            let result = PublishReceipt::from_reply(count, &r).ok_or_else(|| {
                PublishError::Server(format!("unexpected reply {:?}", String::from_utf8_lossy(&r)))
            });
            let _ = reply.send(result);
            Ok(())
        }
        Frame::Error(e) => {
            let text = String::from_utf8_lossy(&e).into_owned();
            if let Some((_, reply)) = pending.pop_front() {
                let _ = reply.send(Err(PublishError::Server(text.clone())));
            }
            // Every publish error is fatal in nsqd: the server is closing this connection.
            Err(format!("{}: closed after {text}", c.peer()))
        }
        Frame::Message(_) => Err(format!("{}: message on a producer connection", c.peer())),
    }
}

fn drop_conn(conn: &mut Option<Conn<Transport>>, pending: &mut VecDeque<(usize, Reply)>, e: PublishError) {
    *conn = None;
    for (_, reply) in pending.drain(..) {
        let _ = reply.send(Err(e.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_carry_ids_when_the_server_sends_them() {
        assert_eq!(
            PublishReceipt::from_reply(3, b"OK"),
            Some(PublishReceipt {
                count: 3,
                ids: vec![]
            })
        );
        let r = PublishReceipt::from_reply(2, b"OK 0000000000000001 00000000000000ff").unwrap();
        assert_eq!(r.ids, vec![MessageId(1), MessageId(255)]);
        assert_eq!(PublishReceipt::from_reply(1, b"NOPE"), None);
    }
}
