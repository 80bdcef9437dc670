//! IDENTIFY: the JSON a client sends, the limits nsqd applies to each key, and the JSON reply
//! sent when the client asks for feature negotiation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::options::NsqdOptions;

/// The keys nsqd reads from an IDENTIFY body; unknown keys are ignored, as in Go.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct IdentifyRequest {
    pub client_id: String,
    /// Deprecated pre-1.0 spelling of `client_id`.
    pub short_id: String,
    pub hostname: String,
    /// Deprecated pre-1.0 spelling of `hostname`.
    pub long_id: String,
    pub user_agent: String,
    pub feature_negotiation: bool,
    pub heartbeat_interval: i64,
    pub output_buffer_size: i64,
    pub output_buffer_timeout: i64,
    pub tls_v1: bool,
    pub snappy: bool,
    pub deflate: bool,
    pub deflate_level: i64,
    pub sample_rate: i32,
    pub msg_timeout: i64,
    pub topology_region: String,
    pub topology_zone: String,
    /// nsqrs: answer PUB/DPUB with `OK <id>` and MPUB with `OK <id> <id>...`. Stock nsqd
    /// ignores unknown keys, so a client can always ask.
    pub message_id_reply: bool,
}

impl IdentifyRequest {
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
    pub fn defaults(opts: &NsqdOptions, remote_ip: &str) -> ClientSettings {
        ClientSettings {
            client_id: remote_ip.to_string(),
            hostname: remote_ip.to_string(),
            user_agent: String::new(),
            heartbeat_interval: Some(Duration::from_secs(30)),
            output_buffer_size: 16 * 1024,
            output_buffer_timeout: Some(opts.output_buffer_timeout),
            sample_rate: 0,
            msg_timeout: opts.msg_timeout,
            message_id_reply: false,
        }
    }

    /// Applies an IDENTIFY request; the error text follows "IDENTIFY " in the E_BAD_BODY frame.
    pub fn apply(&mut self, req: &IdentifyRequest, opts: &NsqdOptions) -> Result<(), String> {
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

        let max_hb = opts.max_heartbeat_interval.as_millis() as i64;
        match req.heartbeat_interval {
            -1 => self.heartbeat_interval = None,
            0 => {}
            ms if (1000..=max_hb).contains(&ms) => {
                self.heartbeat_interval = Some(Duration::from_millis(ms as u64))
            }
            ms => return Err(format!("heartbeat interval ({ms}) is invalid")),
        }

        let min_obt = opts.min_output_buffer_timeout.as_millis() as i64;
        let max_obt = opts.max_output_buffer_timeout.as_millis() as i64;
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
            size if (64..=opts.max_output_buffer_size).contains(&size) => {
                self.output_buffer_size = size as usize
            }
            size => return Err(format!("output buffer size ({size}) is invalid")),
        }

        if !(0..=99).contains(&req.sample_rate) {
            return Err(format!("sample rate ({}) is invalid", req.sample_rate));
        }
        self.sample_rate = req.sample_rate;

        let max_mt = opts.max_msg_timeout.as_millis() as i64;
        match req.msg_timeout {
            0 => {}
            ms if (1000..=max_mt).contains(&ms) => self.msg_timeout = Duration::from_millis(ms as u64),
            ms => return Err(format!("msg timeout ({ms}) is invalid")),
        }
        Ok(())
    }
}

/// The JSON reply to IDENTIFY with `feature_negotiation: true` (durations in ms).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdentifyResponse {
    pub max_rdy_count: i64,
    pub version: String,
    pub max_msg_timeout: i64,
    pub msg_timeout: i64,
    pub tls_v1: bool,
    pub deflate: bool,
    pub deflate_level: i64,
    pub max_deflate_level: i64,
    pub snappy: bool,
    pub sample_rate: i32,
    pub auth_required: bool,
    pub output_buffer_size: i64,
    pub output_buffer_timeout: i64,
    pub topology_region: String,
    pub topology_zone: String,
    /// Present only for clients that asked, so everyone else sees nsqd's exact reply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub message_id_reply: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(json: &str) -> Result<ClientSettings, String> {
        let opts = NsqdOptions::default();
        let mut s = ClientSettings::defaults(&opts, "127.0.0.1");
        let req: IdentifyRequest = serde_json::from_str(json).unwrap();
        s.apply(&req, &opts).map(|_| s)
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
}
