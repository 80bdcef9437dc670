//! Client settings with go-nsq's defaults (nsq-reference §4.7), so the tools behave like the
//! Go tools they replace, and `--consumer-opt`/`--producer-opt` `key,value` pairs under
//! go-nsq's option names.

use std::time::Duration;

use crate::goflags::{parse_go_bool, parse_go_duration};

use super::wire::IdentifyOptions;

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
}

impl Default for Config {
    fn default() -> Self {
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into());
        let short = host.split('.').next().unwrap_or(&host).to_string();
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
        }
    }
}

impl Config {
    /// Applies one `key,value` option as go-nsq's `Config.Set` names it. Options nsqrs cannot
    /// honour (TLS, compression, AUTH, sampling) are refused rather than silently ignored.
    pub fn set_opt(&mut self, pair: &str) -> Result<(), String> {
        let (key, value) = pair
            .split_once(',')
            .ok_or_else(|| format!("option {pair:?} is not of the form key,value"))?;
        let dur = |v: &str| parse_go_duration(v).map_err(|e| format!("option {key}: {e}"));
        let int = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("option {key}: {v:?} is not a non-negative integer"))
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
            "tls_v1" | "snappy" | "deflate" if !parse_go_bool(value)? => {}
            "tls_v1"
            | "tls_root_ca_file"
            | "tls_insecure_skip_verify"
            | "tls_cert"
            | "tls_key"
            | "tls_min_version"
            | "snappy"
            | "deflate"
            | "deflate_level"
            | "auth_secret"
            | "sample_rate" => return Err(format!("option {key} is not supported by nsqrs clients yet")),
            _ => return Err(format!("unknown option {key:?}")),
        }
        Ok(())
    }

    /// The IDENTIFY keys these settings imply.
    pub fn identify(&self) -> IdentifyOptions {
        let ms = |d: Duration| d.as_millis() as i64;
        IdentifyOptions {
            output_buffer_size: self.output_buffer_size,
            output_buffer_timeout_ms: self.output_buffer_timeout.map(ms),
            heartbeat_interval_ms: Some(ms(self.heartbeat_interval)),
            msg_timeout_ms: self.msg_timeout.map(ms),
            client_id: Some(self.client_id.clone()),
            user_agent: Some(self.user_agent.clone()),
            message_id_reply: true,
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
        assert!(c.set_opt("tls_v1,true").unwrap_err().contains("not supported"));
        assert!(c.set_opt("bogus,1").unwrap_err().contains("unknown option"));
        assert!(c.set_opt("max_attempts").unwrap_err().contains("key,value"));
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
