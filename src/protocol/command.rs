//! Client→server commands of protocol V2, both ways: parsing a command line (and its body) out
//! of a read buffer, with every validation done in nsqd's order so each bad input gets nsqd's
//! exact error; and `encode`, which writes them as a client sends them.
//!
//! Parsing is incremental: `parse` returns `Ok(None)` until the whole command is buffered, and
//! never waits for a body that a validation already rejected.

use bytes::Bytes;

use super::error::ProtocolError;
use super::guid::MessageId;
use super::names::{go_quote, is_valid_channel_name, is_valid_topic_name};

/// nsqd reads command lines with a 16 KiB buffer; a longer line ends the connection.
pub const MAX_LINE_LEN: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Identify(Bytes),
    Auth(Bytes),
    Sub {
        topic: String,
        channel: String,
    },
    Rdy(i64),
    Fin(MessageId),
    /// `timeout_ms` is already clamped to `[0, max-req-timeout]`, as nsqd does.
    Req {
        id: MessageId,
        timeout_ms: i64,
    },
    Touch(MessageId),
    Cls,
    Nop,
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
        defer_ms: i64,
        body: Bytes,
    },
}

/// Connection state as the protocol numbers it (`state` in /stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    Init = 0,
    Subscribed = 3,
    Closing = 4,
}

/// What the parser needs to know about the server and the connection.
#[derive(Debug, Clone)]
pub struct ParseLimits {
    pub max_msg_size: i64,
    pub max_body_size: i64,
    pub max_req_timeout_ms: i64,
    pub max_rdy_count: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct ConnContext {
    pub state: ClientState,
    pub heartbeats_enabled: bool,
    /// `--tls-required` is on and this connection has not upgraded.
    pub tls_missing: bool,
}

/// Why parsing stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseError {
    /// Send this error frame (and close if fatal).
    Client(ProtocolError),
    /// The line exceeded nsqd's read buffer: close without a frame, as nsqd does.
    LineTooLong,
}

impl From<ProtocolError> for ParseError {
    fn from(e: ProtocolError) -> Self {
        ParseError::Client(e)
    }
}

type ParseResult = Result<Option<(Command, usize)>, ParseError>;

/// Parses one command from the front of `buf`, returning it with the bytes it used.
pub fn parse(buf: &[u8], limits: &ParseLimits, ctx: ConnContext) -> ParseResult {
    let Some(nl) = buf.iter().take(MAX_LINE_LEN).position(|&b| b == b'\n') else {
        if buf.len() >= MAX_LINE_LEN {
            return Err(ParseError::LineTooLong);
        }
        return Ok(None);
    };
    let mut line = &buf[..nl];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    let params: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let body = Body { buf, start: nl + 1 };
    let name = params[0];
    if name != b"IDENTIFY" && ctx.tls_missing {
        return Err(ProtocolError::invalid(format!(
            "cannot {} in current state (TLS required)",
            String::from_utf8_lossy(name)
        ))
        .into());
    }
    match name {
        b"IDENTIFY" => parse_identify(&params, body, limits, ctx),
        b"AUTH" => parse_auth(&params, body, limits, ctx),
        b"SUB" => parse_sub(&params, ctx).map(|c| Some((c, nl + 1))),
        b"RDY" => parse_rdy(&params, limits, ctx).map(|c| c.map(|c| (c, nl + 1))),
        b"FIN" => parse_fin(&params, ctx).map(|c| Some((c, nl + 1))),
        b"REQ" => parse_req(&params, limits, ctx).map(|c| Some((c, nl + 1))),
        b"TOUCH" => parse_touch(&params, ctx).map(|c| Some((c, nl + 1))),
        b"CLS" => {
            if ctx.state != ClientState::Subscribed {
                return Err(ProtocolError::invalid("cannot CLS in current state").into());
            }
            Ok(Some((Command::Cls, nl + 1)))
        }
        b"NOP" => Ok(Some((Command::Nop, nl + 1))),
        b"PUB" => parse_pub(&params, body, limits),
        b"MPUB" => parse_mpub(&params, body, limits),
        b"DPUB" => parse_dpub(&params, body, limits),
        other => {
            Err(ProtocolError::invalid(format!("invalid command {}", String::from_utf8_lossy(other))).into())
        }
    }
}

/// The bytes after the command line, read with length prefixes.
#[derive(Clone, Copy)]
struct Body<'a> {
    buf: &'a [u8],
    start: usize,
}

impl<'a> Body<'a> {
    /// A big-endian i32 at `at`, or None if not yet buffered.
    fn i32_at(&self, at: usize) -> Option<i32> {
        let b = self.buf.get(at..at + 4)?;
        Some(i32::from_be_bytes(b.try_into().ok()?))
    }

    fn bytes(&self, at: usize, len: usize) -> Option<&'a [u8]> {
        self.buf.get(at..at + len)
    }
}

/// Go's `protocol.ByteToBase10`: digits only, empty is 0, wraps on overflow.
fn base10(b: &[u8]) -> Option<u64> {
    let mut n: u64 = 0;
    for &d in b {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.wrapping_mul(10).wrapping_add((d - b'0') as u64);
    }
    Some(n)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn message_id(b: &[u8]) -> Result<MessageId, ParseError> {
    MessageId::from_hex(b).ok_or_else(|| ProtocolError::invalid("invalid message ID").into())
}

fn topic_param(cmd: &str, name: &[u8], doubled_code: bool) -> Result<String, ParseError> {
    let topic = text(name);
    if !is_valid_topic_name(&topic) {
        let prefix = if doubled_code { "E_BAD_TOPIC " } else { "" };
        return Err(ProtocolError::fatal(
            "E_BAD_TOPIC",
            format!("{prefix}{cmd} topic name {} is not valid", go_quote(&topic)),
        )
        .into());
    }
    Ok(topic)
}

/// A length-prefixed body for IDENTIFY and AUTH: checked against max-body-size first.
fn sized_body(cmd: &str, body: Body, limits: &ParseLimits) -> Result<Option<(Bytes, usize)>, ParseError> {
    let Some(len) = body.i32_at(body.start) else {
        return Ok(None);
    };
    if len as i64 > limits.max_body_size {
        return Err(ProtocolError::fatal(
            "E_BAD_BODY",
            format!("{cmd} body too big {len} > {}", limits.max_body_size),
        )
        .into());
    }
    if len <= 0 {
        return Err(ProtocolError::fatal("E_BAD_BODY", format!("{cmd} invalid body size {len}")).into());
    }
    let at = body.start + 4;
    Ok(body
        .bytes(at, len as usize)
        .map(|b| (Bytes::copy_from_slice(b), at + len as usize)))
}

fn parse_identify(params: &[&[u8]], body: Body, limits: &ParseLimits, ctx: ConnContext) -> ParseResult {
    let _ = params;
    if ctx.state != ClientState::Init {
        return Err(ProtocolError::invalid("cannot IDENTIFY in current state").into());
    }
    Ok(sized_body("IDENTIFY", body, limits)?.map(|(b, used)| (Command::Identify(b), used)))
}

fn parse_auth(params: &[&[u8]], body: Body, limits: &ParseLimits, ctx: ConnContext) -> ParseResult {
    if ctx.state != ClientState::Init {
        return Err(ProtocolError::invalid("cannot AUTH in current state").into());
    }
    if params.len() != 1 {
        return Err(ProtocolError::invalid("AUTH invalid number of parameters").into());
    }
    Ok(sized_body("AUTH", body, limits)?.map(|(b, used)| (Command::Auth(b), used)))
}

fn parse_sub(params: &[&[u8]], ctx: ConnContext) -> Result<Command, ParseError> {
    if ctx.state != ClientState::Init {
        return Err(ProtocolError::invalid("cannot SUB in current state").into());
    }
    if !ctx.heartbeats_enabled {
        return Err(ProtocolError::invalid("cannot SUB with heartbeats disabled").into());
    }
    if params.len() < 3 {
        return Err(ProtocolError::invalid("SUB insufficient number of parameters").into());
    }
    let topic = text(params[1]);
    if !is_valid_topic_name(&topic) {
        return Err(ProtocolError::fatal(
            "E_BAD_TOPIC",
            format!("SUB topic name {} is not valid", go_quote(&topic)),
        )
        .into());
    }
    let channel = text(params[2]);
    if !is_valid_channel_name(&channel) {
        return Err(ProtocolError::fatal(
            "E_BAD_CHANNEL",
            format!("SUB channel name {} is not valid", go_quote(&channel)),
        )
        .into());
    }
    Ok(Command::Sub { topic, channel })
}

/// RDY after CLS is silently ignored (`Ok(None)` with the line consumed by the caller).
fn parse_rdy(
    params: &[&[u8]],
    limits: &ParseLimits,
    ctx: ConnContext,
) -> Result<Option<Command>, ParseError> {
    if ctx.state == ClientState::Closing {
        return Ok(Some(Command::Nop));
    }
    if ctx.state != ClientState::Subscribed {
        return Err(ProtocolError::invalid("cannot RDY in current state").into());
    }
    let mut count: i64 = 1;
    if params.len() > 1 {
        count = base10(params[1])
            .ok_or_else(|| ProtocolError::invalid(format!("RDY could not parse count {}", text(params[1]))))?
            as i64;
    }
    if count < 0 || count > limits.max_rdy_count {
        return Err(ProtocolError::invalid(format!(
            "RDY count {count} out of range 0-{}",
            limits.max_rdy_count
        ))
        .into());
    }
    Ok(Some(Command::Rdy(count)))
}

fn in_flight_state(cmd: &str, ctx: ConnContext) -> Result<(), ParseError> {
    if ctx.state != ClientState::Subscribed && ctx.state != ClientState::Closing {
        return Err(ProtocolError::invalid(format!("cannot {cmd} in current state")).into());
    }
    Ok(())
}

fn parse_fin(params: &[&[u8]], ctx: ConnContext) -> Result<Command, ParseError> {
    in_flight_state("FIN", ctx)?;
    if params.len() < 2 {
        return Err(ProtocolError::invalid("FIN insufficient number of params").into());
    }
    Ok(Command::Fin(message_id(params[1])?))
}

fn parse_req(params: &[&[u8]], limits: &ParseLimits, ctx: ConnContext) -> Result<Command, ParseError> {
    in_flight_state("REQ", ctx)?;
    if params.len() < 3 {
        return Err(ProtocolError::invalid("REQ insufficient number of params").into());
    }
    let id = message_id(params[1])?;
    let timeout = base10(params[2])
        .ok_or_else(|| ProtocolError::invalid(format!("REQ could not parse timeout {}", text(params[2]))))?
        as i64;
    // nsqd clamps out-of-range REQ delays rather than failing the connection.
    let timeout_ms = timeout.clamp(0, limits.max_req_timeout_ms);
    Ok(Command::Req { id, timeout_ms })
}

fn parse_touch(params: &[&[u8]], ctx: ConnContext) -> Result<Command, ParseError> {
    in_flight_state("TOUCH", ctx)?;
    if params.len() < 2 {
        return Err(ProtocolError::invalid("TOUCH insufficient number of params").into());
    }
    Ok(Command::Touch(message_id(params[1])?))
}

/// One message body of PUB/DPUB at `body.start`: size checks, then the bytes.
fn message_body(cmd: &str, body: Body, limits: &ParseLimits) -> Result<Option<(Bytes, usize)>, ParseError> {
    let Some(len) = body.i32_at(body.start) else {
        return Ok(None);
    };
    if len <= 0 {
        return Err(
            ProtocolError::fatal("E_BAD_MESSAGE", format!("{cmd} invalid message body size {len}")).into(),
        );
    }
    if len as i64 > limits.max_msg_size {
        return Err(ProtocolError::fatal(
            "E_BAD_MESSAGE",
            format!("{cmd} message too big {len} > {}", limits.max_msg_size),
        )
        .into());
    }
    let at = body.start + 4;
    Ok(body
        .bytes(at, len as usize)
        .map(|b| (Bytes::copy_from_slice(b), at + len as usize)))
}

fn parse_pub(params: &[&[u8]], body: Body, limits: &ParseLimits) -> ParseResult {
    if params.len() < 2 {
        return Err(ProtocolError::invalid("PUB insufficient number of parameters").into());
    }
    let topic = topic_param("PUB", params[1], false)?;
    Ok(message_body("PUB", body, limits)?.map(|(b, used)| (Command::Pub { topic, body: b }, used)))
}

fn parse_dpub(params: &[&[u8]], body: Body, limits: &ParseLimits) -> ParseResult {
    if params.len() < 3 {
        return Err(ProtocolError::invalid("DPUB insufficient number of parameters").into());
    }
    let topic = topic_param("DPUB", params[1], false)?;
    let defer_ms = base10(params[2])
        .ok_or_else(|| ProtocolError::invalid(format!("DPUB could not parse timeout {}", text(params[2]))))?
        as i64;
    if defer_ms < 0 || defer_ms > limits.max_req_timeout_ms {
        return Err(ProtocolError::invalid(format!(
            "DPUB timeout {defer_ms} out of range 0-{}",
            limits.max_req_timeout_ms
        ))
        .into());
    }
    Ok(message_body("DPUB", body, limits)?.map(|(b, used)| {
        (
            Command::Dpub {
                topic,
                defer_ms,
                body: b,
            },
            used,
        )
    }))
}

fn parse_mpub(params: &[&[u8]], body: Body, limits: &ParseLimits) -> ParseResult {
    if params.len() < 2 {
        return Err(ProtocolError::invalid("MPUB insufficient number of parameters").into());
    }
    let topic = topic_param("MPUB", params[1], true)?;
    let Some(body_len) = body.i32_at(body.start) else {
        return Ok(None);
    };
    if body_len <= 0 {
        return Err(ProtocolError::fatal("E_BAD_BODY", format!("MPUB invalid body size {body_len}")).into());
    }
    if body_len as i64 > limits.max_body_size {
        return Err(ProtocolError::fatal(
            "E_BAD_BODY",
            format!("MPUB body too big {body_len} > {}", limits.max_body_size),
        )
        .into());
    }
    let Some(count) = body.i32_at(body.start + 4) else {
        return Ok(None);
    };
    let max_messages = (limits.max_body_size - 4) / 5;
    if count <= 0 || count as i64 > max_messages {
        return Err(ProtocolError::fatal("E_BAD_BODY", format!("MPUB invalid message count {count}")).into());
    }
    // Messages are framed by their own sizes, as in nsqd, but each must end within the declared
    // body: Go nsqd keeps reading past it, so a client declaring 10 bytes could make it buffer
    // gigabytes. Failing at the first byte beyond it bounds what an MPUB can make us buffer.
    let body_end = body.start + 4 + body_len as usize;
    let beyond_body = || -> ParseError {
        ProtocolError::fatal(
            "E_BAD_BODY",
            format!("MPUB messages exceed the body size {body_len}"),
        )
        .into()
    };
    // Find where the messages end before copying any, so a partly buffered MPUB costs a scan
    // of its size fields per read rather than a copy of everything received so far.
    let first = body.start + 8;
    let mut at = first;
    for i in 0..count {
        if at + 4 > body_end {
            return Err(beyond_body());
        }
        let Some(len) = body.i32_at(at) else {
            return Ok(None);
        };
        if len <= 0 {
            return Err(ProtocolError::fatal(
                "E_BAD_MESSAGE",
                format!("MPUB invalid message({i}) body size {len}"),
            )
            .into());
        }
        if len as i64 > limits.max_msg_size {
            return Err(ProtocolError::fatal(
                "E_BAD_MESSAGE",
                format!("MPUB message too big {len} > {}", limits.max_msg_size),
            )
            .into());
        }
        let end = at + 4 + len as usize;
        if end > body_end {
            return Err(beyond_body());
        }
        if end > body.buf.len() {
            return Ok(None);
        }
        at = end;
    }
    // Every message is buffered: `count` is now backed by real bytes.
    let mut bodies = Vec::with_capacity(count as usize);
    let mut at = first;
    for _ in 0..count {
        let len = body.i32_at(at).map_or(0, |n| n as usize);
        bodies.push(Bytes::copy_from_slice(&body.buf[at + 4..at + 4 + len]));
        at += 4 + len;
    }
    Ok(Some((Command::Mpub { topic, bodies }, at)))
}

/// Command encoders, the inverse of `parse`. They append to a write buffer so callers decide
/// when to flush, which is what NSQ's bench reader relies on to batch FINs.
pub mod encode {
    pub fn identify(out: &mut Vec<u8>, json: &[u8]) {
        out.extend_from_slice(b"IDENTIFY\n");
        sized(out, json);
    }

    pub fn sub(out: &mut Vec<u8>, topic: &str, channel: &str) {
        out.extend_from_slice(b"SUB ");
        out.extend_from_slice(topic.as_bytes());
        out.push(b' ');
        out.extend_from_slice(channel.as_bytes());
        out.push(b'\n');
    }

    pub fn rdy(out: &mut Vec<u8>, count: u64) {
        out.extend_from_slice(format!("RDY {count}\n").as_bytes());
    }

    pub fn fin(out: &mut Vec<u8>, id: &[u8; 16]) {
        out.extend_from_slice(b"FIN ");
        out.extend_from_slice(id);
        out.push(b'\n');
    }

    pub fn nop(out: &mut Vec<u8>) {
        out.extend_from_slice(b"NOP\n");
    }

    pub fn auth(out: &mut Vec<u8>, secret: &[u8]) {
        out.extend_from_slice(b"AUTH\n");
        sized(out, secret);
    }

    pub fn req(out: &mut Vec<u8>, id: &[u8; 16], delay_ms: u64) {
        out.extend_from_slice(b"REQ ");
        out.extend_from_slice(id);
        out.extend_from_slice(format!(" {delay_ms}\n").as_bytes());
    }

    pub fn touch(out: &mut Vec<u8>, id: &[u8; 16]) {
        out.extend_from_slice(b"TOUCH ");
        out.extend_from_slice(id);
        out.push(b'\n');
    }

    pub fn cls(out: &mut Vec<u8>) {
        out.extend_from_slice(b"CLS\n");
    }

    pub fn dpub(out: &mut Vec<u8>, topic: &str, defer_ms: u64, body: &[u8]) {
        out.extend_from_slice(b"DPUB ");
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(format!(" {defer_ms}\n").as_bytes());
        sized(out, body);
    }

    pub fn publish(out: &mut Vec<u8>, topic: &str, body: &[u8]) {
        out.extend_from_slice(b"PUB ");
        out.extend_from_slice(topic.as_bytes());
        out.push(b'\n');
        sized(out, body);
    }

    /// `MPUB <topic>\n[body size][count]([size][body])*`.
    pub fn mpub<B: AsRef<[u8]>>(out: &mut Vec<u8>, topic: &str, bodies: &[B]) {
        let body_size: usize = 4 + bodies.iter().map(|b| 4 + b.as_ref().len()).sum::<usize>();
        out.extend_from_slice(b"MPUB ");
        out.extend_from_slice(topic.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&(body_size as u32).to_be_bytes());
        out.extend_from_slice(&(bodies.len() as u32).to_be_bytes());
        for body in bodies {
            sized(out, body.as_ref());
        }
    }

    /// PUB for one body, MPUB for more: a batch of one is how NSQ users publish singly.
    pub fn publish_batch<B: AsRef<[u8]>>(out: &mut Vec<u8>, topic: &str, bodies: &[B]) {
        match bodies {
            [one] => publish(out, topic, one.as_ref()),
            many => mpub(out, topic, many),
        }
    }

    fn sized(out: &mut Vec<u8>, data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ParseLimits {
        ParseLimits {
            max_msg_size: 1024,
            max_body_size: 5000,
            max_req_timeout_ms: 3_600_000,
            max_rdy_count: 2500,
        }
    }

    fn ctx(state: ClientState) -> ConnContext {
        ConnContext {
            state,
            heartbeats_enabled: true,
            tls_missing: false,
        }
    }

    fn err(buf: &[u8], state: ClientState) -> String {
        match parse(buf, &limits(), ctx(state)) {
            Err(ParseError::Client(e)) => e.to_string(),
            other => panic!("expected error, got {other:?}"),
        }
    }

    #[test]
    fn pub_waits_for_body_then_parses() {
        let mut buf = b"PUB t\n\0\0\0\x05hel".to_vec();
        assert_eq!(parse(&buf, &limits(), ctx(ClientState::Init)), Ok(None));
        buf.extend_from_slice(b"loNOP\n");
        let (cmd, used) = parse(&buf, &limits(), ctx(ClientState::Init)).unwrap().unwrap();
        assert_eq!(
            cmd,
            Command::Pub {
                topic: "t".into(),
                body: Bytes::from_static(b"hello")
            }
        );
        assert_eq!(&buf[used..], b"NOP\n");
    }

    #[test]
    fn mpub_parses_all_messages() {
        let mut buf = b"MPUB t\n".to_vec();
        buf.extend_from_slice(&17u32.to_be_bytes());
        buf.extend_from_slice(&2u32.to_be_bytes());
        buf.extend_from_slice(&1u32.to_be_bytes());
        buf.extend_from_slice(b"a");
        buf.extend_from_slice(&2u32.to_be_bytes());
        buf.extend_from_slice(b"bc");
        let (cmd, used) = parse(&buf, &limits(), ctx(ClientState::Init)).unwrap().unwrap();
        assert_eq!(used, buf.len());
        match cmd {
            Command::Mpub { bodies, .. } => assert_eq!(bodies, vec![Bytes::from("a"), Bytes::from("bc")]),
            other => panic!("{other:?}"),
        }
    }

    fn mpub_frame(declared: u32, bodies: &[&[u8]]) -> Vec<u8> {
        let mut buf = b"MPUB t\n".to_vec();
        buf.extend_from_slice(&declared.to_be_bytes());
        buf.extend_from_slice(&(bodies.len() as u32).to_be_bytes());
        for b in bodies {
            buf.extend_from_slice(&(b.len() as u32).to_be_bytes());
            buf.extend_from_slice(b);
        }
        buf
    }

    #[test]
    fn mpub_fails_once_its_declared_size_is_exceeded() {
        // Declared 10 bytes, but the first message alone needs 4 + 100: refused as soon as its
        // size field is read, before any of it is buffered.
        let big = [b'x'; 100];
        let buf = mpub_frame(10, &[&big]);
        let header_only = &buf[..b"MPUB t\n".len() + 12];
        assert_eq!(
            err(header_only, ClientState::Init),
            "E_BAD_BODY MPUB messages exceed the body size 10"
        );
        // A count whose size fields would lie beyond the declared body fails at that point.
        let buf = mpub_frame(4 + 5, &[b"a", b"b"]);
        assert_eq!(
            err(&buf, ClientState::Init),
            "E_BAD_BODY MPUB messages exceed the body size 9"
        );
        // An exact declaration parses; a partial one waits.
        let buf = mpub_frame(4 + 5 + 6, &[b"a", b"bc"]);
        assert!(matches!(
            parse(&buf, &limits(), ctx(ClientState::Init)),
            Ok(Some(_))
        ));
        assert_eq!(
            parse(&buf[..buf.len() - 1], &limits(), ctx(ClientState::Init)),
            Ok(None)
        );
    }

    #[test]
    fn mpub_count_is_not_trusted_before_the_bytes_arrive() {
        // A count of a million with nothing behind it allocates nothing and waits.
        let mut buf = b"MPUB t\n".to_vec();
        buf.extend_from_slice(&4999u32.to_be_bytes());
        buf.extend_from_slice(&999u32.to_be_bytes());
        assert_eq!(parse(&buf, &limits(), ctx(ClientState::Init)), Ok(None));
    }

    #[test]
    fn error_texts_match_nsqd() {
        assert_eq!(
            err(b"PUB bad/t\n", ClientState::Init),
            "E_BAD_TOPIC PUB topic name \"bad/t\" is not valid"
        );
        assert_eq!(
            err(b"MPUB bad/t\n", ClientState::Init),
            "E_BAD_TOPIC E_BAD_TOPIC MPUB topic name \"bad/t\" is not valid"
        );
        assert_eq!(
            err(b"PUB t\n\0\0\0\0", ClientState::Init),
            "E_BAD_MESSAGE PUB invalid message body size 0"
        );
        assert_eq!(
            err(b"PUB t\n\0\0\x04\x01", ClientState::Init),
            "E_BAD_MESSAGE PUB message too big 1025 > 1024"
        );
        assert_eq!(
            err(b"DPUB t 3600001\n", ClientState::Init),
            "E_INVALID DPUB timeout 3600001 out of range 0-3600000"
        );
        assert_eq!(
            err(b"RDY 5\n", ClientState::Init),
            "E_INVALID cannot RDY in current state"
        );
        assert_eq!(
            err(b"RDY 2501\n", ClientState::Subscribed),
            "E_INVALID RDY count 2501 out of range 0-2500"
        );
        assert_eq!(
            err(b"RDY x\n", ClientState::Subscribed),
            "E_INVALID RDY could not parse count x"
        );
        assert_eq!(
            err(b"FIN 123\n", ClientState::Subscribed),
            "E_INVALID invalid message ID"
        );
        assert_eq!(
            err(b"FIN\n", ClientState::Init),
            "E_INVALID cannot FIN in current state"
        );
        assert_eq!(
            err(b"SUB t\n", ClientState::Init),
            "E_INVALID SUB insufficient number of parameters"
        );
        assert_eq!(
            err(b"SUB t c!\n", ClientState::Init),
            "E_BAD_CHANNEL SUB channel name \"c!\" is not valid"
        );
        assert_eq!(err(b"WAT\n", ClientState::Init), "E_INVALID invalid command WAT");
        assert_eq!(
            err(b"IDENTIFY\n\0\0\x13\x89", ClientState::Init),
            "E_BAD_BODY IDENTIFY body too big 5001 > 5000"
        );
        assert_eq!(
            err(b"CLS\n", ClientState::Init),
            "E_INVALID cannot CLS in current state"
        );
    }

    #[test]
    fn req_timeout_is_clamped() {
        let (cmd, _) = parse(
            b"REQ 0000000000000001 99999999\n",
            &limits(),
            ctx(ClientState::Subscribed),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            cmd,
            Command::Req {
                id: MessageId(1),
                timeout_ms: 3_600_000
            }
        );
    }

    #[test]
    fn overlong_line_closes() {
        let buf = vec![b'A'; MAX_LINE_LEN];
        assert_eq!(
            parse(&buf, &limits(), ctx(ClientState::Init)),
            Err(ParseError::LineTooLong)
        );
    }

    #[test]
    fn what_encode_writes_parse_reads_back() {
        let id = MessageId(0xabc);
        let hex = id.to_hex();
        let mut out = Vec::new();
        encode::sub(&mut out, "t", "c");
        encode::rdy(&mut out, 2500);
        encode::fin(&mut out, &hex);
        encode::nop(&mut out);
        assert_eq!(out, b"SUB t c\nRDY 2500\nFIN 0000000000000abc\nNOP\n");
        encode::req(&mut out, &hex, 1500);
        encode::touch(&mut out, &hex);
        encode::cls(&mut out);
        encode::dpub(&mut out, "t", 250, b"x");
        encode::publish_batch(&mut out, "t", &[b"ab"]);
        encode::publish_batch(&mut out, "t", &[&b"ab"[..], b"c"]);
        encode::auth(&mut out, b"s3cret");
        encode::identify(&mut out, b"{}");
        let want = [
            Command::Sub {
                topic: "t".into(),
                channel: "c".into(),
            },
            Command::Rdy(2500),
            Command::Fin(id),
            Command::Nop,
            Command::Req { id, timeout_ms: 1500 },
            Command::Touch(id),
            Command::Cls,
            Command::Dpub {
                topic: "t".into(),
                defer_ms: 250,
                body: Bytes::from_static(b"x"),
            },
            Command::Pub {
                topic: "t".into(),
                body: Bytes::from_static(b"ab"),
            },
            Command::Mpub {
                topic: "t".into(),
                bodies: vec![Bytes::from_static(b"ab"), Bytes::from_static(b"c")],
            },
            Command::Auth(Bytes::from_static(b"s3cret")),
            Command::Identify(Bytes::from_static(b"{}")),
        ];
        let mut at = 0;
        for expected in want {
            let state = match expected {
                Command::Sub { .. } | Command::Identify(_) | Command::Auth(_) => ClientState::Init,
                _ => ClientState::Subscribed,
            };
            let (cmd, used) = parse(&out[at..], &limits(), ctx(state))
                .unwrap()
                .expect("a whole command");
            assert_eq!(cmd, expected);
            at += used;
        }
        assert_eq!(at, out.len());
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode::sub(&mut out, "t", "c");
        encode::rdy(&mut out, 2500);
        encode::fin(&mut out, b"0000000000000001");
        encode::nop(&mut out);
        assert_eq!(out, b"SUB t c\nRDY 2500\nFIN 0000000000000001\nNOP\n");

        let mut out = Vec::new();
        encode::req(&mut out, b"0000000000000002", 1500);
        encode::touch(&mut out, b"0000000000000003");
        encode::cls(&mut out);
        encode::dpub(&mut out, "t", 250, b"x");
        assert_eq!(
            out,
            b"REQ 0000000000000002 1500\nTOUCH 0000000000000003\nCLS\nDPUB t 250\n\0\0\0\x01x"
        );

        let mut out = Vec::new();
        encode::publish_batch(&mut out, "t", &[b"ab"]);
        assert_eq!(out, b"PUB t\n\0\0\0\x02ab");

        let mut out = Vec::new();
        encode::publish_batch(&mut out, "t", &[&b"ab"[..], b"c"]);
        let mut expected = b"MPUB t\n".to_vec();
        expected.extend_from_slice(&(4u32 + 6 + 5).to_be_bytes());
        expected.extend_from_slice(&2u32.to_be_bytes());
        expected.extend_from_slice(b"\0\0\0\x02ab\0\0\0\x01c");
        assert_eq!(out, expected);
    }
}
