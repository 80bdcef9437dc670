//! Client settings with go-nsq's defaults (nsq-reference §4.7), so the tools behave like the
//! Go tools they replace, and `--consumer-opt`/`--producer-opt` `key,value` pairs under
//! go-nsq's option names, TLS, compression, AUTH and sampling included.

use std::fmt;
use std::time::Duration;

use crate::common::goflags::{parse_go_bool, parse_go_duration};

use super::tls::{MinVersion, TlsOptions};
use crate::protocol::identify::IdentifyRequest;

/// Settings shared by consumers and producers. Durations of zero for the server-side timeouts
/// mean "leave it to the server".
#[derive(Debug, Clone)]
pub struct Config {
    /// Total RDY across all connections of one consumer.
    pub max_in_flight: u64,
    /// A message delivered more often than this is finished unprocessed; 0 means no limit.
    pub max_attempts: u16,
    /// Base of a requeue without an explicit delay: multiplied by the attempt count.
    pub default_requeue_delay: Duration,
    pub max_requeue_delay: Duration,
    /// Backoff after a failed message is `backoff_multiplier * 2^(level-1)`, capped.
    pub backoff_multiplier: Duration,
    pub max_backoff_duration: Duration,
    pub heartbeat_interval: Duration,
    /// A connection silent for this long is taken as dead.
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub dial_timeout: Duration,
    pub output_buffer_size: Option<i64>,
    pub output_buffer_timeout: Option<Duration>,
    pub msg_timeout: Option<Duration>,
    pub lookupd_poll_interval: Duration,
    /// Fraction of the poll interval used as random delay, so a fleet of consumers started
    /// together does not poll lookupd in lockstep.
    pub lookupd_poll_jitter: f64,
    /// How often RDY is moved between connections when max-in-flight is below their number.
    pub rdy_redistribute_interval: Duration,
    pub client_id: String,
    pub user_agent: String,
    pub http_connect_timeout: Duration,
    pub http_request_timeout: Duration,
    /// How long a graceful stop waits for messages already in handlers.
    pub stop_timeout: Duration,
    /// Connection events (connect, disconnect, lookupd failures) go to stderr, as go-nsq logs.
    pub log_connections: bool,
    /// Ask for TLS in IDENTIFY; the server decides (nsq-reference §1.2).
    pub tls_v1: bool,
    pub tls: TlsOptions,
    /// Ask for snappy or deflate compression; nsqd refuses both at once.
    pub snappy: bool,
    pub deflate: bool,
    /// 1..=9; the server caps it at its `--max-deflate-level`.
    pub deflate_level: u32,
    /// Sent with AUTH when the server requires it, and only then.
    pub auth_secret: Option<AuthSecret>,
    /// Percentage of the channel's messages this consumer wants (0 = all), 0..=99 as go-nsq.
    pub sample_rate: u8,
}

/// The AUTH secret, kept out of `Debug` output so it never lands in a log.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthSecret(String);

impl AuthSecret {
    pub fn new(secret: impl Into<String>) -> AuthSecret {
        AuthSecret(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthSecret(..)")
    }
}

impl Default for Config {
    fn default() -> Self {
        let short = crate::common::host::short_hostname();
        Config {
            max_in_flight: 1,
            max_attempts: 5,
            default_requeue_delay: Duration::from_secs(90),
            max_requeue_delay: Duration::from_secs(15 * 60),
            backoff_multiplier: Duration::from_secs(1),
            max_backoff_duration: Duration::from_secs(120),
            heartbeat_interval: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(1),
            dial_timeout: Duration::from_secs(1),
            output_buffer_size: None,
            output_buffer_timeout: None,
            msg_timeout: None,
            lookupd_poll_interval: Duration::from_secs(60),
            lookupd_poll_jitter: 0.3,
            rdy_redistribute_interval: Duration::from_secs(5),
            client_id: short,
            user_agent: concat!("nsqrs/", env!("CARGO_PKG_VERSION")).into(),
            http_connect_timeout: Duration::from_secs(2),
            http_request_timeout: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(60),
            log_connections: true,
            tls_v1: false,
            tls: TlsOptions::default(),
            snappy: false,
            deflate: false,
            deflate_level: 6,
            auth_secret: None,
            sample_rate: 0,
        }
    }
}

impl Config {
    /// Applies one `key,value` option as go-nsq's `Config.Set` names it. Options nsqrs does not
    /// know are refused rather than silently ignored. Call `validate` once all are applied.
    pub fn set_opt(&mut self, pair: &str) -> Result<(), String> {
        let (key, value) = pair
            .split_once(',')
            .ok_or_else(|| format!("option {pair:?} is not of the form key,value"))?;
        let dur = |v: &str| parse_go_duration(v).map_err(|e| format!("option {key}: {e}"));
        let int = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("option {key}: {v:?} is not a non-negative integer"))
        };
        let bool = |v: &str| parse_go_bool(v).map_err(|e| format!("option {key}: {e}"));
        let in_range = |v: &str, lo: u64, hi: u64| {
            let n = int(v)?;
            if (lo..=hi).contains(&n) {
                Ok(n)
            } else {
                Err(format!("option {key}: {n} is outside {lo}..{hi}"))
            }
        };
        let path = |v: &str| {
            if v.is_empty() {
                Err(format!("option {key} needs a file path"))
            } else {
                Ok(Some(v.into()))
            }
        };
        match key {
            "max_in_flight" => self.max_in_flight = int(value)?,
            "max_attempts" => {
                self.max_attempts = int(value)?
                    .try_into()
                    .map_err(|_| format!("option max_attempts: {value} is above 65535"))?
            }
            "default_requeue_delay" => self.default_requeue_delay = dur(value)?,
            "max_requeue_delay" => self.max_requeue_delay = dur(value)?,
            "backoff_multiplier" => self.backoff_multiplier = dur(value)?,
            "max_backoff_duration" => self.max_backoff_duration = dur(value)?,
            "heartbeat_interval" => self.heartbeat_interval = dur(value)?,
            "read_timeout" => self.read_timeout = dur(value)?,
            "write_timeout" => self.write_timeout = dur(value)?,
            "dial_timeout" => self.dial_timeout = dur(value)?,
            "output_buffer_size" => {
                self.output_buffer_size = Some(
                    value
                        .parse()
                        .map_err(|_| format!("option {key}: {value:?} is not an integer"))?,
                )
            }
            "output_buffer_timeout" => self.output_buffer_timeout = Some(dur(value)?),
            "msg_timeout" => self.msg_timeout = Some(dur(value)?),
            "lookupd_poll_interval" => self.lookupd_poll_interval = dur(value)?,
            "lookupd_poll_jitter" => {
                let j: f64 = value
                    .parse()
                    .map_err(|_| format!("option {key}: {value:?} is not a number"))?;
                if !(0.0..=1.0).contains(&j) {
                    return Err(format!("option {key}: {j} is outside 0..1"));
                }
                self.lookupd_poll_jitter = j;
            }
            "client_id" => self.client_id = value.to_string(),
            "user_agent" => self.user_agent = value.to_string(),
            "tls_v1" => self.tls_v1 = bool(value)?,
            "tls_root_ca_file" => self.tls.root_ca_file = path(value)?,
            "tls_insecure_skip_verify" => self.tls.insecure_skip_verify = bool(value)?,
            "tls_cert" => self.tls.cert = path(value)?,
            "tls_key" => self.tls.key = path(value)?,
            "tls_min_version" => {
                self.tls.min_version = MinVersion::parse(value).map_err(|e| format!("option {key}: {e}"))?
            }
            "snappy" => self.snappy = bool(value)?,
            "deflate" => self.deflate = bool(value)?,
            "deflate_level" => self.deflate_level = in_range(value, 1, 9)? as u32,
            // go-nsq treats an empty secret as none.
            "auth_secret" => self.auth_secret = (!value.is_empty()).then(|| AuthSecret::new(value)),
            "sample_rate" => self.sample_rate = in_range(value, 0, 99)? as u8,
            _ => return Err(format!("unknown option {key:?}")),
        }
        Ok(())
    }

    /// Checks the options together, once all are set: combinations nsqd would refuse, TLS
    /// options that would silently go unused, and the TLS files themselves (read now so a
    /// wrong path fails at startup, not at the first connection).
    pub fn validate(&self) -> Result<(), String> {
        if self.snappy && self.deflate {
            return Err("options snappy and deflate cannot both be enabled".into());
        }
        if !(1..=9).contains(&self.deflate_level) {
            return Err(format!(
                "option deflate_level: {} is outside 1..9",
                self.deflate_level
            ));
        }
        if self.sample_rate > 99 {
            return Err(format!(
                "option sample_rate: {} is outside 0..99",
                self.sample_rate
            ));
        }
        if self.tls.is_set() && !self.tls_v1 {
            // go-nsq would connect in plain text here; an operator who named a CA or a
            // certificate surely meant TLS.
            return Err("tls_* options have no effect without tls_v1,true".into());
        }
        if self.tls_v1 {
            self.tls.client_config()?;
        }
        Ok(())
    }

    /// The IDENTIFY keys these settings imply.
    pub fn identify(&self) -> IdentifyRequest {
        let ms = |d: Duration| d.as_millis() as i64;
        let request = IdentifyRequest {
            output_buffer_size: self.output_buffer_size.unwrap_or(0),
            output_buffer_timeout: self.output_buffer_timeout.map_or(0, ms),
            heartbeat_interval: ms(self.heartbeat_interval),
            msg_timeout: self.msg_timeout.map_or(0, ms),
            message_id_reply: true,
            ..IdentifyRequest::from_client(&self.client_id, &self.user_agent)
        };
        self.with_transport(request)
    }

    /// `request` asking for the TLS, compression and sampling these settings want.
    pub fn with_transport(&self, request: IdentifyRequest) -> IdentifyRequest {
        IdentifyRequest {
            tls_v1: self.tls_v1,
            snappy: self.snappy,
            deflate: self.deflate,
            deflate_level: if self.deflate {
                i64::from(self.deflate_level)
            } else {
                0
            },
            sample_rate: i32::from(self.sample_rate),
            ..request
        }
    }

    /// The delay go-nsq gives a requeue that names none: grows with the attempt count.
    pub fn requeue_delay(&self, attempts: u16) -> Duration {
        (self.default_requeue_delay * u32::from(attempts.max(1))).min(self.max_requeue_delay)
    }

    /// How long to hold all connections at RDY 0 at a given backoff level (1-based).
    pub fn backoff_duration(&self, level: u32) -> Duration {
        let factor = 1u32 << level.saturating_sub(1).min(20);
        (self.backoff_multiplier * factor).min(self.max_backoff_duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_use_go_nsq_names() {
        let mut c = Config::default();
        c.set_opt("max_attempts,3").unwrap();
        c.set_opt("lookupd_poll_interval,2s").unwrap();
        c.set_opt("tls_v1,false").unwrap();
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.lookupd_poll_interval, Duration::from_secs(2));
        assert!(!c.tls_v1);
        assert!(c.set_opt("bogus,1").unwrap_err().contains("unknown option"));
        assert!(c.set_opt("max_attempts").unwrap_err().contains("key,value"));
    }

    #[test]
    fn tls_options_parse() {
        let mut c = Config::default();
        for pair in [
            "tls_v1,true",
            "tls_root_ca_file,/etc/ca,with-comma.pem",
            "tls_insecure_skip_verify,1",
            "tls_cert,/c.pem",
            "tls_key,/c.key",
            "tls_min_version,tls1.3",
        ] {
            c.set_opt(pair).unwrap();
        }
        assert!(c.tls_v1);
        assert_eq!(
            c.tls.root_ca_file.as_deref(),
            Some("/etc/ca,with-comma.pem".as_ref())
        );
        assert!(c.tls.insecure_skip_verify);
        assert_eq!(c.tls.cert.as_deref(), Some("/c.pem".as_ref()));
        assert_eq!(c.tls.key.as_deref(), Some("/c.key".as_ref()));
        assert_eq!(c.tls.min_version, MinVersion::Tls13);
        assert!(c.identify().tls_v1);

        let err = c.set_opt("tls_min_version,ssl3.0").unwrap_err();
        assert_eq!(
            err,
            "option tls_min_version: ssl3.0 is not available: nsqrs speaks TLS 1.2 and 1.3 only \
             (use tls1.0 or later)"
        );
        assert!(c
            .set_opt("tls_v1,maybe")
            .unwrap_err()
            .starts_with("option tls_v1: invalid boolean"));
        assert!(c.set_opt("tls_cert,").unwrap_err().contains("needs a file path"));
    }

    #[test]
    fn compression_auth_and_sampling_parse() {
        let mut c = Config::default();
        assert!(!c.identify().deflate);
        c.set_opt("deflate,true").unwrap();
        c.set_opt("deflate_level,9").unwrap();
        c.set_opt("sample_rate,99").unwrap();
        c.set_opt("auth_secret,s3cret,with,commas").unwrap();
        let id = c.identify();
        assert_eq!(
            (id.deflate, id.deflate_level, id.snappy, id.sample_rate),
            (true, 9, false, 99)
        );
        assert_eq!(
            c.auth_secret.as_ref().map(AuthSecret::expose),
            Some("s3cret,with,commas")
        );
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the secret must not reach Debug output"
        );
        c.set_opt("auth_secret,").unwrap();
        assert!(c.auth_secret.is_none());

        assert_eq!(
            c.set_opt("deflate_level,0").unwrap_err(),
            "option deflate_level: 0 is outside 1..9"
        );
        assert_eq!(
            c.set_opt("deflate_level,10").unwrap_err(),
            "option deflate_level: 10 is outside 1..9"
        );
        assert_eq!(
            c.set_opt("sample_rate,100").unwrap_err(),
            "option sample_rate: 100 is outside 0..99"
        );
        assert!(c
            .set_opt("sample_rate,-1")
            .unwrap_err()
            .contains("not a non-negative integer"));
        assert_eq!(c.deflate_level, 9);
        assert_eq!(c.sample_rate, 99);
    }

    #[test]
    fn validate_refuses_what_would_fail_or_go_unused() {
        let mut c = Config::default();
        c.validate().unwrap();
        c.set_opt("snappy,true").unwrap();
        c.set_opt("deflate,true").unwrap();
        assert!(c.validate().unwrap_err().contains("cannot both be enabled"));

        let mut c = Config::default();
        c.set_opt("tls_root_ca_file,/nonexistent/ca.pem").unwrap();
        assert_eq!(
            c.validate().unwrap_err(),
            "tls_* options have no effect without tls_v1,true"
        );
        c.set_opt("tls_v1,true").unwrap();
        let err = c.validate().unwrap_err();
        assert!(
            err.starts_with("tls_root_ca_file: cannot read /nonexistent/ca.pem: "),
            "{err}"
        );
    }

    #[test]
    fn delays_grow_and_cap() {
        let c = Config::default();
        assert_eq!(c.requeue_delay(1), Duration::from_secs(90));
        assert_eq!(c.requeue_delay(3), Duration::from_secs(270));
        assert_eq!(c.requeue_delay(100), Duration::from_secs(900));
        assert_eq!(c.backoff_duration(1), Duration::from_secs(1));
        assert_eq!(c.backoff_duration(3), Duration::from_secs(4));
        assert_eq!(c.backoff_duration(30), Duration::from_secs(120));
    }
}
