//! `nsqrs admin` (and `nsqadmin`): nsqadmin's command line and `--config` file, resolved into
//! `AdminOptions`, plus nsqrs's own flags (`--db`, `--http-admin-token`,
//! `--stats-sample-interval`).
//!
//! Owns every nsqadmin flag under its exact name and nsqadmin's defaults (nsq-reference §3),
//! Go flag syntax, and the TOML config layer beneath the flags, resolved as `lookupd` does.

use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, Command, FromArgMatches};
use nsqrs::admin::AdminOptions;
use nsqrs::common::goflags::{parse_go_bool, parse_go_duration};

use nsqrs::common::config::{cfg_bool, cfg_duration, cfg_scalar_text, cfg_string, load_config_table};
use nsqrs::common::log::parse_log_level;

#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct AdminArgs {
    /// Print version string and exit
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub version: bool,

    /// Path to a TOML config file; keys are flag names with '-' as '_' [default: none]
    #[arg(long, value_name = "FILE")]
    pub config: Option<String>,

    /// Log verbosity: debug, info, warn, error, or fatal
    #[arg(long, value_name = "LEVEL", default_value = "info", value_parser = parse_log_level)]
    pub log_level: String,

    /// Log message prefix
    #[arg(long, value_name = "PREFIX", default_value = "[nsqadmin] ")]
    pub log_prefix: String,

    /// [deprecated] has no effect, use --log-level
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub verbose: bool,

    /// <addr>:<port> to listen on for HTTP clients
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:4171")]
    pub http_address: String,

    /// URL base path
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub base_path: String,

    /// (development use only; nsqrs serves its assets from the binary)
    #[arg(long, value_name = "DIR", default_value = "", hide_default_value = true)]
    pub dev_static_dir: String,

    /// Graphite HTTP address (accepted for nsqadmin compatibility; the charts come from the
    /// admin's own samples of /stats) [default: none]
    #[arg(long, value_name = "URL", default_value = "", hide_default_value = true)]
    pub graphite_url: String,

    /// Proxy HTTP requests to graphite (accepted for nsqadmin compatibility)
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub proxy_graphite: bool,

    /// The counter stats key formatting of statsd (accepted for nsqadmin compatibility)
    #[arg(long, value_name = "FORMAT", default_value = "stats.counters.%s.count")]
    pub statsd_counter_format: String,

    /// The gauge stats key formatting of statsd (accepted for nsqadmin compatibility)
    #[arg(long, value_name = "FORMAT", default_value = "stats.gauges.%s")]
    pub statsd_gauge_format: String,

    /// Prefix used for keys sent to statsd (accepted for nsqadmin compatibility)
    #[arg(long, value_name = "PREFIX", default_value = "nsq.%s")]
    pub statsd_prefix: String,

    /// Time interval nsqd is configured to push to statsd (accepted for nsqadmin compatibility)
    #[arg(long, value_name = "DURATION", default_value = "1m0s", value_parser = parse_go_duration)]
    pub statsd_interval: Duration,

    /// HTTP endpoint (fully qualified) to which POST notifications of admin actions will be
    /// sent [default: none]
    #[arg(long, value_name = "URL", default_value = "", hide_default_value = true)]
    pub notification_http_endpoint: String,

    /// Timeout for HTTP connect
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_go_duration)]
    pub http_client_connect_timeout: Duration,

    /// Timeout for HTTP request
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_go_duration)]
    pub http_client_request_timeout: Duration,

    /// Configure the HTTP client to skip verification of TLS certificates (https:// addresses)
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub http_client_tls_insecure_skip_verify: bool,

    /// Path to CA file for the HTTP client [default: the system's]
    #[arg(long, value_name = "FILE", default_value = "", hide_default_value = true)]
    pub http_client_tls_root_ca_file: String,

    /// Path to certificate file for the HTTP client [default: none]
    #[arg(long, value_name = "FILE", default_value = "", hide_default_value = true)]
    pub http_client_tls_cert: String,

    /// Path to key file for the HTTP client [default: none]
    #[arg(long, value_name = "FILE", default_value = "", hide_default_value = true)]
    pub http_client_tls_key: String,

    /// A CIDR from which to allow HTTP requests to the /config endpoint
    #[arg(long, value_name = "CIDR", default_value = "127.0.0.1/8")]
    pub allow_config_from_cidr: String,

    /// HTTP header to check for authenticated admin users
    #[arg(long, value_name = "HEADER", default_value = "X-Forwarded-User")]
    pub acl_http_header: String,

    /// lookupd HTTP address (may be given multiple times)
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub lookupd_http_address: Vec<String>,

    /// nsqd HTTP address (may be given multiple times)
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub nsqd_http_address: Vec<String>,

    /// Admin user (may be given multiple times; if specified, only these users will be able
    /// to perform privileged actions; acl-http-header is used to determine the authenticated
    /// user)
    #[arg(long, value_name = "USER", action = ArgAction::Append)]
    pub admin_user: Vec<String>,

    /// nsqrs: bearer token actions must carry (Authorization: Bearer TOKEN), also sent to the
    /// brokers (their --http-admin-token) [default: none]
    #[arg(long, value_name = "TOKEN", default_value = "", hide_default_value = true)]
    pub http_admin_token: String,

    /// nsqrs: the to-db archive (SQLite file or postgres:// URL) for the messages pages and
    /// replays [default: none]
    #[arg(long, value_name = "PATH|URL", default_value = "", hide_default_value = true)]
    pub db: String,

    /// nsqrs: how often the brokers' /stats are sampled for the charts (one hour is kept)
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_go_duration)]
    pub stats_sample_interval: Duration,

    /// Arguments after the flags, which nsqadmin ignores (Go stops parsing flags there).
    #[arg(hide = true, num_args = 0.., trailing_var_arg = true)]
    pub trailing: Vec<String>,
}

/// What `nsqadmin --version` prints.
pub fn nsqadmin_version_string() -> String {
    format!("nsqadmin v1.3.0 (built w/nsqrs-{})", env!("CARGO_PKG_VERSION"))
}

/// The clap command that parses a command line given to a binary invoked as `nsqadmin`.
pub fn nsqadmin_command() -> Command {
    let cmd = Command::new("nsqadmin")
        .about("nsqadmin-compatible web UI (nsqrs)")
        .disable_version_flag(true);
    AdminArgs::augment_args(cmd)
}

/// Rewrites Go-style flags (the arguments after the program name or after `admin`) for clap.
pub fn normalize_admin_args(args: &[String]) -> Vec<String> {
    nsqrs::common::goflags::normalize_for(&AdminArgs::augment_args(Command::new("admin")), args)
}

/// Parses the arguments of a binary invoked as `nsqadmin` (without the program name).
pub fn parse_as_nsqadmin(args: &[String]) -> Result<(AdminArgs, ArgMatches), clap::Error> {
    let mut cmd = nsqadmin_command();
    let argv = std::iter::once("nsqadmin".to_string()).chain(normalize_admin_args(args));
    let matches = cmd.try_get_matches_from_mut(argv)?;
    let args = AdminArgs::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    Ok((args, matches))
}

impl AdminArgs {
    /// Resolves defaults, then the `--config` file, then flags typed on the command line, and
    /// nsqadmin's start-up checks. `matches` must be the matches `self` was built from.
    pub fn into_options(self, matches: &ArgMatches) -> Result<AdminOptions, String> {
        if matches.try_contains_id("http_address").is_err() {
            return Err("internal error: argument matches do not belong to `admin`".into());
        }
        let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        let mut o = self.resolve(&given)?;
        o.validate()?;
        Ok(o)
    }

    fn resolve(self, given: &dyn Fn(&str) -> bool) -> Result<AdminOptions, String> {
        // Destructured so that adding a flag without deciding how it resolves fails to compile.
        let AdminArgs {
            version: _,
            config,
            log_level,
            log_prefix,
            verbose: _,
            http_address,
            base_path,
            dev_static_dir: _,
            graphite_url,
            proxy_graphite,
            statsd_counter_format,
            statsd_gauge_format,
            statsd_prefix,
            statsd_interval,
            notification_http_endpoint,
            http_client_connect_timeout,
            http_client_request_timeout,
            http_client_tls_insecure_skip_verify,
            http_client_tls_root_ca_file,
            http_client_tls_cert,
            http_client_tls_key,
            allow_config_from_cidr,
            acl_http_header,
            lookupd_http_address,
            nsqd_http_address,
            admin_user,
            http_admin_token,
            db,
            stats_sample_interval,
            trailing: _,
        } = self;
        let mut o = AdminOptions::default();
        if let Some(path) = config {
            for (key, value) in &load_config_table(&path)? {
                apply_config_key(&mut o, key, value)
                    .map_err(|e| format!("config file {path}: key {key:?}: {e}"))?;
            }
            o.config = Some(path);
        }
        macro_rules! from_flag {
            ($($arg:ident => $dst:expr),* $(,)?) => {
                $( if given(stringify!($arg)) { $dst = $arg; } )*
            };
        }
        from_flag! {
            log_level => o.log_level,
            log_prefix => o.log_prefix,
            http_address => o.http_address,
            base_path => o.base_path,
            graphite_url => o.graphite_url,
            proxy_graphite => o.proxy_graphite,
            statsd_counter_format => o.statsd_counter_format,
            statsd_gauge_format => o.statsd_gauge_format,
            statsd_prefix => o.statsd_prefix,
            statsd_interval => o.statsd_interval,
            notification_http_endpoint => o.notification_http_endpoint,
            http_client_connect_timeout => o.http_client_connect_timeout,
            http_client_request_timeout => o.http_client_request_timeout,
            http_client_tls_insecure_skip_verify => o.http_client_tls_insecure_skip_verify,
            http_client_tls_root_ca_file => o.http_client_tls_root_ca_file,
            http_client_tls_cert => o.http_client_tls_cert,
            http_client_tls_key => o.http_client_tls_key,
            allow_config_from_cidr => o.allow_config_from_cidr,
            acl_http_header => o.acl_http_header,
            lookupd_http_address => o.lookupd_http_addresses,
            nsqd_http_address => o.nsqd_http_addresses,
            admin_user => o.admin_users,
            http_admin_token => o.http_admin_token,
            db => o.db,
            stats_sample_interval => o.sample_interval,
        }
        Ok(o)
    }
}

fn cfg_strings(v: &toml::Value) -> Result<Vec<String>, String> {
    match v {
        toml::Value::String(s) => Ok(s.split(',').map(str::to_string).collect()),
        toml::Value::Array(items) => items.iter().map(cfg_string).collect(),
        other => Err(format!("expected an array of strings, got {}", other.type_str())),
    }
}

fn apply_config_key(o: &mut AdminOptions, key: &str, v: &toml::Value) -> Result<(), String> {
    match key {
        "log_level" => o.log_level = parse_log_level(&cfg_scalar_text(v)?)?,
        "log_prefix" => o.log_prefix = cfg_string(v)?,
        "verbose" => {
            cfg_bool(v)?;
        }
        "http_address" => o.http_address = cfg_string(v)?,
        "base_path" => o.base_path = cfg_string(v)?,
        "dev_static_dir" => {
            cfg_string(v)?;
        }
        "graphite_url" => o.graphite_url = cfg_string(v)?,
        "proxy_graphite" => o.proxy_graphite = cfg_bool(v)?,
        "statsd_counter_format" => o.statsd_counter_format = cfg_string(v)?,
        "statsd_gauge_format" => o.statsd_gauge_format = cfg_string(v)?,
        "statsd_prefix" => o.statsd_prefix = cfg_string(v)?,
        "statsd_interval" => o.statsd_interval = cfg_duration(v)?,
        "notification_http_endpoint" => o.notification_http_endpoint = cfg_string(v)?,
        "http_client_connect_timeout" => o.http_client_connect_timeout = cfg_duration(v)?,
        "http_client_request_timeout" => o.http_client_request_timeout = cfg_duration(v)?,
        "http_client_tls_insecure_skip_verify" => o.http_client_tls_insecure_skip_verify = cfg_bool(v)?,
        "http_client_tls_root_ca_file" => o.http_client_tls_root_ca_file = cfg_string(v)?,
        "http_client_tls_cert" => o.http_client_tls_cert = cfg_string(v)?,
        "http_client_tls_key" => o.http_client_tls_key = cfg_string(v)?,
        "allow_config_from_cidr" => o.allow_config_from_cidr = cfg_string(v)?,
        "acl_http_header" => o.acl_http_header = cfg_string(v)?,
        // nsqadmin's config names for its repeatable flags.
        "nsqlookupd_http_addresses" => o.lookupd_http_addresses = cfg_strings(v)?,
        "nsqd_http_addresses" => o.nsqd_http_addresses = cfg_strings(v)?,
        "admin_users" => o.admin_users = cfg_strings(v)?,
        "http_admin_token" => o.http_admin_token = cfg_string(v)?,
        "db" => o.db = cfg_string(v)?,
        "stats_sample_interval" => o.sample_interval = cfg_duration(v)?,
        _ => return Err("unknown config key".into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    fn admin(args: &[&str]) -> Result<AdminOptions, String> {
        let (a, m) = parse_as_nsqadmin(&strings(args)).map_err(|e| e.to_string())?;
        a.into_options(&m)
    }

    #[test]
    fn clap_command_is_well_formed() {
        nsqadmin_command().debug_assert();
    }

    #[test]
    fn help_defaults_are_the_defaults_of_admin_options() {
        let (a, _) = parse_as_nsqadmin(&[]).unwrap();
        let o = a.resolve(&|_| true).unwrap();
        let d = AdminOptions::default();
        assert_eq!(format!("{o:?}"), format!("{d:?}"));
    }

    #[test]
    fn nsqadmins_flags_in_go_syntax() {
        let o = admin(&[
            "-lookupd-http-address",
            "127.0.0.1:4161",
            "--lookupd-http-address=127.0.0.1:5161",
            "-http-address=127.0.0.1:0",
            "-base-path",
            "admin/",
            "-admin-user=alice",
            "-acl-http-header",
            "X-User",
            "-notification-http-endpoint=http://127.0.0.1:9/n",
            "-http-client-tls-insecure-skip-verify",
            "-proxy-graphite=false",
            "-statsd-interval=30s",
            "-verbose",
        ])
        .unwrap();
        assert_eq!(o.lookupd_http_addresses, ["127.0.0.1:4161", "127.0.0.1:5161"]);
        assert_eq!(o.base_path, "/admin");
        assert_eq!(o.admin_users, ["alice"]);
        assert_eq!(o.acl_http_header, "X-User");
        assert!(o.http_client_tls_insecure_skip_verify);
        assert_eq!(o.statsd_interval, Duration::from_secs(30));
    }

    #[test]
    fn nsqadmins_checks() {
        assert_eq!(
            admin(&[]).unwrap_err(),
            "--nsqd-http-address or --lookupd-http-address required"
        );
        assert_eq!(
            admin(&["--nsqd-http-address=a:1", "--lookupd-http-address=b:1"]).unwrap_err(),
            "use --nsqd-http-address or --lookupd-http-address not both"
        );
        assert!(admin(&["--nsqd-http-address=a:1", "--allow-config-from-cidr=x"])
            .unwrap_err()
            .contains("--allow-config-from-cidr"));
        assert!(admin(&["--nsqd-http-address=a:1", "--db=mysql://x"]).is_err());
        assert!(admin(&["--nsqd-http-address=a:1", "--stats-sample-interval=5"]).is_err());
    }

    #[test]
    fn config_file_keys_are_nsqadmins() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(
            b"nsqlookupd_http_addresses = [\"a:1\", \"b:1\"]\nadmin_users = [\"bob\"]\nhttp_address = \"127.0.0.1:7\"\nstatsd_interval = \"10s\"\n",
        )
        .unwrap();
        let path = f.path().to_str().unwrap();
        let o = admin(&["--config", path, "--http-address=127.0.0.1:8"]).unwrap();
        assert_eq!(o.lookupd_http_addresses, ["a:1", "b:1"]);
        assert_eq!(o.admin_users, ["bob"]);
        assert_eq!(o.http_address, "127.0.0.1:8");
        assert_eq!(o.statsd_interval, Duration::from_secs(10));
        let mut bad = tempfile::NamedTempFile::new().unwrap();
        bad.write_all(b"nsqd_tcp_addresses = [\"a\"]\n").unwrap();
        let e = admin(&["--config", bad.path().to_str().unwrap()]).unwrap_err();
        assert!(
            e.contains("nsqd_tcp_addresses") && e.contains("unknown config key"),
            "{e}"
        );
    }

    #[test]
    fn version_string() {
        assert!(nsqadmin_version_string().starts_with("nsqadmin v1.3.0 (built w/nsqrs-"));
    }
}
