//! nsqlookupd's TCP protocol V1 (nsq-reference §2.2), both ways: what nsqd sends (the magic,
//! request lines, its IDENTIFY body) and what lookupd answers (`[4-byte big-endian size][data]`,
//! with no frame type). nsqlookupd's server parses with it, nsqd's lookupd peer encodes with it.

use serde::Serialize;
use serde_json::{Map, Value};

use super::error::ProtocolError;
use super::names::{is_valid_channel_name, is_valid_topic_name};

pub const MAGIC_V1: &[u8; 4] = b"  V1";

/// Longest request line read. nsqd's lines are two names of at most 64 characters and a verb;
/// nsqlookupd reads lines of any length, which lets a client that never sends a newline grow
/// its memory without bound, so a longer line ends the connection (as nsqd does in V2).
pub const MAX_LINE_LEN: usize = 16 * 1024;

/// Largest reply nsqd accepts from lookupd: its replies are `OK`, an error, or IDENTIFY's
/// small JSON.
pub const MAX_REPLY_LEN: usize = 1024 * 1024;

/// What nsqd tells lookupd about itself in IDENTIFY. Fields are in the order Go marshals a
/// map (sorted), which is how nsqd writes the body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeerIdentity {
    pub broadcast_address: String,
    pub hostname: String,
    pub http_port: i64,
    pub tcp_port: i64,
    pub topology_region: String,
    pub topology_zone: String,
    pub version: String,
}

impl PeerIdentity {
    /// The IDENTIFY body as nsqd sends it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain values serialize")
    }
}

/// Request encoders, the inverse of `parse_request` (and `decode_identify`).
pub mod encode {
    use super::PeerIdentity;

    pub fn identify(out: &mut Vec<u8>, peer: &PeerIdentity) {
        let body = peer.to_json();
        out.extend_from_slice(b"IDENTIFY\n");
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
    }

    pub fn register(out: &mut Vec<u8>, topic: &str, channel: Option<&str>) {
        line(out, "REGISTER", topic, channel);
    }

    pub fn unregister(out: &mut Vec<u8>, topic: &str, channel: Option<&str>) {
        line(out, "UNREGISTER", topic, channel);
    }

    pub fn ping(out: &mut Vec<u8>) {
        out.extend_from_slice(b"PING\n");
    }

    fn line(out: &mut Vec<u8>, verb: &str, topic: &str, channel: Option<&str>) {
        out.extend_from_slice(verb.as_bytes());
        out.push(b' ');
        out.extend_from_slice(topic.as_bytes());
        if let Some(channel) = channel {
            out.push(b' ');
            out.extend_from_slice(channel.as_bytes());
        }
        out.push(b'\n');
    }
}

/// Appends one reply: `[4-byte big-endian size][data]`.
pub fn put_reply(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
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
            Err(ProtocolError::fatal("E_INVALID", "client must IDENTIFY"))
        }
    };
    match params[0] {
        "PING" => Ok(Request::Ping),
        "IDENTIFY" if identified => Err(ProtocolError::fatal("E_INVALID", "cannot IDENTIFY again")),
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
        other => Err(ProtocolError::fatal(
            "E_INVALID",
            format!("invalid command {other}"),
        )),
    }
}

/// `<topic> [<channel>]` of REGISTER and UNREGISTER, validated.
fn topic_channel<'a>(command: &str, params: &[&'a str]) -> Result<(&'a str, Option<&'a str>), ProtocolError> {
    let Some(&topic) = params.first() else {
        return Err(ProtocolError::fatal(
            "E_INVALID",
            format!("{command} insufficient number of params"),
        ));
    };
    // An empty channel (e.g. a trailing space inside the line) means "no channel", as in Go.
    let channel = params.get(1).copied().filter(|c| !c.is_empty());
    if !is_valid_topic_name(topic) {
        return Err(ProtocolError::fatal(
            "E_BAD_TOPIC",
            format!("{command} topic name '{topic}' is not valid"),
        ));
    }
    if let Some(channel) = channel {
        if !is_valid_channel_name(channel) {
            return Err(ProtocolError::fatal(
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
pub fn decode_identify(body: &[u8]) -> Result<PeerIdentity, String> {
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
    Ok(PeerIdentity {
        hostname: string("hostname")?,
        broadcast_address: string("broadcast_address")?,
        tcp_port: int("tcp_port")?,
        http_port: int("http_port")?,
        version: string("version")?,
        topology_zone: string("topology_zone")?,
        topology_region: string("topology_region")?,
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

    #[test]
    fn what_encode_writes_parse_reads_back() {
        let mut out = Vec::new();
        encode::register(&mut out, "t", Some("c"));
        encode::unregister(&mut out, "t", None);
        encode::ping(&mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, ["REGISTER t c", "UNREGISTER t", "PING"]);
        assert_eq!(
            parse_request(lines[0], true),
            Ok(Request::Register {
                topic: "t",
                channel: Some("c")
            })
        );
        assert_eq!(
            parse_request(lines[1], true),
            Ok(Request::Unregister {
                topic: "t",
                channel: None
            })
        );
        let peer = PeerIdentity {
            broadcast_address: "h".into(),
            hostname: "h.example".into(),
            http_port: 4151,
            tcp_port: 4150,
            topology_region: String::new(),
            topology_zone: "z".into(),
            version: "1.3.0".into(),
        };
        let mut out = Vec::new();
        encode::identify(&mut out, &peer);
        let body = &out[b"IDENTIFY\n".len() + 4..];
        assert_eq!(decode_identify(body), Ok(peer));
    }
}
