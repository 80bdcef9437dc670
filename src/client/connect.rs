//! Opening a client connection the way go-nsq does (nsq-reference §1.2): dial, IDENTIFY
//! asking for what the `Config` wants, then whatever the server's reply grants, in nsqd's
//! order: TLS (its `OK` read through TLS), then snappy or deflate (its `OK` read through the
//! decompressor), and finally AUTH when the server requires it. The consumer and the producer
//! both start here, so every tool gets the same TLS, compression and AUTH behaviour.

use std::pin::Pin;
use std::task::{Context, Poll};

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::protocol::compress::{Decoder, Encoder};

use super::config::Config;
use super::conn::{Conn, Result, REPLY_TIMEOUT};
use super::tls;
use crate::protocol::command::encode;
use crate::protocol::identify::{IdentifyRequest, IdentifyResponse};

/// The byte stream under a negotiated connection: the socket, or TLS over it. One type for
/// both so the consumer and producer loops need not be generic.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A connection ready for SUB or PUB.
pub struct Negotiated {
    pub conn: Conn<Transport>,
    pub info: IdentifyResponse,
    /// Set when the server required AUTH and accepted our secret.
    pub identity: Option<AuthIdentity>,
}

/// The AUTH reply: who the auth server says we are.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthIdentity {
    #[serde(default)]
    pub identity: String,
    #[serde(default)]
    pub identity_url: String,
    #[serde(default)]
    pub permission_count: i64,
}

impl std::fmt::Display for AuthIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // go-nsq's wording, so logs read the same.
        write!(
            f,
            "Auth accepted. Identity: {:?} {} Permissions: {}",
            self.identity, self.identity_url, self.permission_count
        )
    }
}

/// Dials `addr` and negotiates as `config` asks; `log` hears what an operator should know
/// (the AUTH identity, TLS asked for but not granted). Every step is bounded by the reply
/// timeout.
pub async fn connect(addr: &str, config: &Config, log: &(dyn Fn(&str) + Sync)) -> Result<Negotiated> {
    connect_with(addr, config, &config.identify(), log).await
}

/// `connect` with IDENTIFY keys of the caller's choosing (the bench asks for no publish IDs
/// and its own buffering); `config` still decides TLS, compression and AUTH.
pub async fn connect_with(
    addr: &str,
    config: &Config,
    identify: &IdentifyRequest,
    log: &(dyn Fn(&str) + Sync),
) -> Result<Negotiated> {
    let mut plain = Conn::connect(addr).await?;
    let identify = config.with_transport(identify.clone());
    let info = plain.identify(&identify).await?;
    let mut conn = if info.tls_v1 == Some(true) {
        // A server grants TLS only when asked, but go-nsq follows the reply either way.
        let tls_config = config.tls.client_config()?;
        let name = tls::server_name(addr)?;
        let stream = plain.into_stream()?;
        let handshake = tokio_rustls::TlsConnector::from(tls_config).connect(name, stream);
        let stream = tokio::time::timeout(REPLY_TIMEOUT, handshake)
            .await
            .map_err(|_| format!("{addr}: TLS handshake timed out after {REPLY_TIMEOUT:?}"))?
            .map_err(|e| format!("{addr}: TLS handshake: {e}"))?;
        let mut conn = Conn::new(Transport::Tls(Box::new(stream)), addr.to_string());
        conn.expect_ok("TLS upgrade").await?;
        conn
    } else {
        if config.tls_v1 {
            log("server did not enable TLS; continuing without it, as go-nsq does");
        }
        plain.map_stream(Transport::Plain)
    };
    let codec = match (info.snappy == Some(true), info.deflate == Some(true)) {
        (true, true) => return Err(format!("{addr}: server enabled both snappy and deflate").into()),
        (true, false) => Some((Encoder::snappy(), Decoder::snappy(), "snappy upgrade")),
        // Our side compresses at the level we asked for, as go-nsq does; the server's cap
        // only bounds what it spends compressing for us.
        (false, true) => Some((
            Encoder::deflate(config.deflate_level),
            Decoder::deflate(),
            "deflate upgrade",
        )),
        (false, false) => None,
    };
    if let Some((encoder, decoder, what)) = codec {
        conn.start_compression(encoder, decoder);
        conn.expect_ok(what).await?;
    }
    let identity = if info.auth_required == Some(true) {
        let secret = config
            .auth_secret
            .as_ref()
            .ok_or_else(|| format!("{addr}: server requires AUTH but no auth_secret is configured"))?;
        let identity = authenticate(&mut conn, secret.expose()).await?;
        log(&identity.to_string());
        Some(identity)
    } else {
        // A secret the server does not ask for is not sent, as go-nsq does: it stays
        // with whoever it was meant for.
        None
    };
    Ok(Negotiated { conn, info, identity })
}

async fn authenticate(conn: &mut Conn<Transport>, secret: &str) -> Result<AuthIdentity> {
    encode::auth(conn.out(), secret.as_bytes());
    conn.flush().await?;
    let peer = conn.peer().to_string();
    let reply = tokio::time::timeout(REPLY_TIMEOUT, conn.read_reply("AUTH"))
        .await
        .map_err(|_| format!("{peer}: no reply to AUTH within {REPLY_TIMEOUT:?}"))??;
    serde_json::from_slice(&reply).map_err(|e| {
        format!(
            "{peer}: AUTH reply is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&reply)
        )
        .into()
    })
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, data),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
