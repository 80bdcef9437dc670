//! IDENTIFY, both ways: the JSON body a client sends (encoded by the client, decoded by the
//! broker), the limits nsqd applies to each key, and the JSON reply sent when the client asks
//! for feature negotiation (encoded by the broker, decoded by the client).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The keys of an IDENTIFY body; unknown keys are ignored, as in Go. A zero (or empty) value
/// means "the server's default" to nsqd, so a client leaves such keys out.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct IdentifyRequest {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_id: String,
    /// Deprecated pre-1.0 spelling of `client_id`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub short_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// Deprecated pre-1.0 spelling of `hostname`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub long_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(skip_serializing_if = "is_false")]
    pub feature_negotiation: bool,
    /// Milliseconds; -1 disables heartbeats.
    #[serde(skip_serializing_if = "is_zero")]
    pub heartbeat_interval: i64,
    /// Bytes; -1 disables output buffering.
    #[serde(skip_serializing_if = "is_zero")]
    pub output_buffer_size: i64,
    /// Milliseconds; -1 disables the periodic flush.
    #[serde(skip_serializing_if = "is_zero")]
    pub output_buffer_timeout: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_v1: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub snappy: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub deflate: bool,
    #[serde(skip_serializing_if = "is_zero")]
    pub deflate_level: i64,
    /// Percent of the channel's messages to receive; 0 is all of them.
    #[serde(skip_serializing_if = "is_zero")]
    pub sample_rate: i32,
    /// Milliseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub msg_timeout: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub topology_region: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub topology_zone: String,
    /// nsqrs: answer PUB/DPUB with `OK <id>` and MPUB with `OK <id> <id>...`. Stock nsqd
    /// ignores unknown keys, so a client can always ask.
    #[serde(skip_serializing_if = "is_false")]
    pub message_id_reply: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

impl IdentifyRequest {
    /// What a client announces about itself, asking for feature negotiation (so the reply is
    /// the JSON `IdentifyResponse`); the rest is left to the server's defaults.
    pub fn from_client(client_id: &str, user_agent: &str) -> IdentifyRequest {
        IdentifyRequest {
            client_id: client_id.to_string(),
            hostname: crate::common::host::local_hostname(),
            user_agent: user_agent.to_string(),
            feature_negotiation: true,
            ..IdentifyRequest::default()
        }
    }

    /// The body as a client sends it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain values serialize")
    }

    /// Decodes an IDENTIFY body the way Go's `encoding/json` does for nsqd: `null` leaves a
    /// field at its zero value and keys match case-insensitively (clients rely on both); a
    /// body of `null` is an empty request, and one that is no object is an error (serde alone
    /// would fill the fields from an array, in order).
    pub fn from_json(body: &[u8]) -> Result<IdentifyRequest, serde_json::Error> {
        let map = match serde_json::from_slice(body)? {
            serde_json::Value::Object(map) => map,
            serde_json::Value::Null => return Ok(IdentifyRequest::default()),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "cannot unmarshal {other} into an IDENTIFY object"
                )))
            }
        };
        let cleaned: serde_json::Map<String, serde_json::Value> = map
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        serde_json::from_value(serde_json::Value::Object(cleaned))
    }
}

/// What the server lets a client ask for in IDENTIFY, and what it gets when it does not ask
/// (nsqd's `--msg-timeout`, `--max-heartbeat-interval`, `--*-output-buffer-*` options).
#[derive(Debug, Clone)]
pub struct IdentifyLimits {
    pub default_output_buffer_timeout: Duration,
    pub default_msg_timeout: Duration,
    pub max_heartbeat_interval: Duration,
    pub min_output_buffer_timeout: Duration,
    pub max_output_buffer_timeout: Duration,
    pub max_output_buffer_size: i64,
    pub max_msg_timeout: Duration,
}

/// Per-connection settings after IDENTIFY (or nsqd's defaults when a client never sends one).
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub client_id: String,
    pub hostname: String,
    pub user_agent: String,
    /// None when the client disabled heartbeats (-1).
    pub heartbeat_interval: Option<Duration>,
    pub output_buffer_size: usize,
    /// None disables the periodic flush.
    pub output_buffer_timeout: Option<Duration>,
    pub sample_rate: i32,
    pub msg_timeout: Duration,
    pub message_id_reply: bool,
}

impl ClientSettings {
    pub fn defaults(limits: &IdentifyLimits, remote_ip: &str) -> ClientSettings {
        ClientSettings {
            client_id: remote_ip.to_string(),
            hostname: remote_ip.to_string(),
            user_agent: String::new(),
            heartbeat_interval: Some(Duration::from_secs(30)),
            output_buffer_size: 16 * 1024,
            output_buffer_timeout: Some(limits.default_output_buffer_timeout),
            sample_rate: 0,
            msg_timeout: limits.default_msg_timeout,
            message_id_reply: false,
        }
    }

    /// Applies an IDENTIFY request; the error text follows "IDENTIFY " in the E_BAD_BODY frame.
    pub fn apply(&mut self, req: &IdentifyRequest, limits: &IdentifyLimits) -> Result<(), String> {
        let client_id = if req.client_id.is_empty() {
            &req.short_id
        } else {
            &req.client_id
        };
        if !client_id.is_empty() {
            self.client_id = client_id.clone();
        }
        let hostname = if req.hostname.is_empty() {
            &req.long_id
        } else {
            &req.hostname
        };
        if !hostname.is_empty() {
            self.hostname = hostname.clone();
        }
        self.message_id_reply = req.message_id_reply;
        self.user_agent = req.user_agent.clone();

        let max_hb = limits.max_heartbeat_interval.as_millis() as i64;
        match req.heartbeat_interval {
            -1 => self.heartbeat_interval = None,
            0 => {}
            ms if (1000..=max_hb).contains(&ms) => {
                self.heartbeat_interval = Some(Duration::from_millis(ms as u64))
            }
            ms => return Err(format!("heartbeat interval ({ms}) is invalid")),
        }

        let min_obt = limits.min_output_buffer_timeout.as_millis() as i64;
        let max_obt = limits.max_output_buffer_timeout.as_millis() as i64;
        match req.output_buffer_timeout {
            -1 => self.output_buffer_timeout = None,
            0 => {}
            ms if (min_obt..=max_obt).contains(&ms) => {
                self.output_buffer_timeout = Some(Duration::from_millis(ms as u64))
            }
            ms => return Err(format!("output buffer timeout ({ms}) is invalid")),
        }
        match req.output_buffer_size {
            -1 => {
                self.output_buffer_size = 1;
                self.output_buffer_timeout = None;
            }
            0 => {}
            size if (64..=limits.max_output_buffer_size).contains(&size) => {
                self.output_buffer_size = size as usize
            }
            size => return Err(format!("output buffer size ({size}) is invalid")),
        }

        if !(0..=99).contains(&req.sample_rate) {
            return Err(format!("sample rate ({}) is invalid", req.sample_rate));
        }
        self.sample_rate = req.sample_rate;

        let max_mt = limits.max_msg_timeout.as_millis() as i64;
        match req.msg_timeout {
            0 => {}
            ms if (1000..=max_mt).contains(&ms) => self.msg_timeout = Duration::from_millis(ms as u64),
            ms => return Err(format!("msg timeout ({ms}) is invalid")),
        }
        Ok(())
    }
}

/// The JSON reply to IDENTIFY with `feature_negotiation: true` (durations in ms). nsqd sends
/// every key; a client reading another server's reply takes a missing one as `None`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IdentifyResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rdy_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_msg_timeout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_timeout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_v1: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deflate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deflate_level: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_deflate_level: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snappy: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_buffer_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_buffer_timeout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topology_region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topology_zone: Option<String>,
    /// Present only for clients that asked, so everyone else sees nsqd's exact reply.
    #[serde(skip_serializing_if = "is_false")]
    pub message_id_reply: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nsqd's defaults.
    fn limits() -> IdentifyLimits {
        IdentifyLimits {
            default_output_buffer_timeout: Duration::from_millis(250),
            default_msg_timeout: Duration::from_secs(60),
            max_heartbeat_interval: Duration::from_secs(60),
            min_output_buffer_timeout: Duration::from_millis(25),
            max_output_buffer_timeout: Duration::from_secs(30),
            max_output_buffer_size: 65536,
            max_msg_timeout: Duration::from_secs(15 * 60),
        }
    }

    fn apply(json: &str) -> Result<ClientSettings, String> {
        let mut s = ClientSettings::defaults(&limits(), "127.0.0.1");
        let req: IdentifyRequest = serde_json::from_str(json).unwrap();
        s.apply(&req, &limits()).map(|_| s)
    }

    #[test]
    fn decodes_like_go() {
        let r =
            IdentifyRequest::from_json(br#"{"client_id":null,"Sample_Rate":5,"user_agent":"x"}"#).unwrap();
        assert_eq!(
            (r.client_id.as_str(), r.sample_rate, r.user_agent.as_str()),
            ("", 5, "x")
        );
        assert!(IdentifyRequest::from_json(br#"{"heartbeat_interval":"x"}"#).is_err());
    }

    #[test]
    fn validates_like_nsqd() {
        assert_eq!(
            apply(r#"{"heartbeat_interval":999}"#).unwrap_err(),
            "heartbeat interval (999) is invalid"
        );
        assert_eq!(
            apply(r#"{"output_buffer_size":65537}"#).unwrap_err(),
            "output buffer size (65537) is invalid"
        );
        assert_eq!(
            apply(r#"{"output_buffer_timeout":24}"#).unwrap_err(),
            "output buffer timeout (24) is invalid"
        );
        assert_eq!(
            apply(r#"{"sample_rate":100}"#).unwrap_err(),
            "sample rate (100) is invalid"
        );
        assert_eq!(
            apply(r#"{"msg_timeout":999}"#).unwrap_err(),
            "msg timeout (999) is invalid"
        );
        let s =
            apply(r#"{"heartbeat_interval":-1,"output_buffer_size":-1,"client_id":"x","extra":1}"#).unwrap();
        assert!(s.heartbeat_interval.is_none());
        assert_eq!(s.output_buffer_size, 1);
        assert_eq!(s.client_id, "x");
    }

    #[test]
    fn a_client_body_leaves_defaults_out_and_reads_back_the_same() {
        let mut req = IdentifyRequest::from_client("me", "ua/1");
        req.tls_v1 = true;
        req.deflate = true;
        req.deflate_level = 3;
        req.sample_rate = 40;
        let json: serde_json::Value = serde_json::from_slice(&req.to_json()).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        for key in [
            "snappy",
            "heartbeat_interval",
            "msg_timeout",
            "message_id_reply",
            "short_id",
        ] {
            assert!(!keys.contains(&key), "{key} in {json}");
        }
        assert_eq!(
            (&json["tls_v1"], &json["deflate_level"], &json["sample_rate"]),
            (&true.into(), &3.into(), &40.into())
        );
        let back = IdentifyRequest::from_json(&req.to_json()).unwrap();
        assert_eq!(
            (
                back.client_id.as_str(),
                back.hostname,
                back.feature_negotiation,
                back.deflate_level
            ),
            ("me", req.hostname.clone(), true, 3)
        );
    }

    #[test]
    fn a_reply_without_a_key_reads_as_none() {
        let r: IdentifyResponse = serde_json::from_slice(br#"{"max_rdy_count":2500,"extra":1}"#).unwrap();
        assert_eq!((r.max_rdy_count, r.tls_v1), (Some(2500), None));
        assert_eq!(serde_json::to_string(&IdentifyResponse::default()).unwrap(), "{}");
    }
}
