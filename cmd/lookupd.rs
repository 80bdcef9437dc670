//! `nsqrs lookupd` (and `nsqlookupd`): nsqlookupd's command line and `--config` file, resolved
//! into `LookupdOptions`.
//!
//! Owns every nsqlookupd flag under its exact name and nsqlookupd's defaults (nsq-reference
//! §2.1), Go flag syntax, and the TOML config layer beneath the flags, resolved the way
//! `serve` resolves nsqd's.

use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, Command, FromArgMatches};
use nsqrs::common::goflags::{parse_go_bool, parse_go_duration};
use nsqrs::nsqlookupd::LookupdOptions;

use nsqrs::common::config::{cfg_bool, cfg_duration, cfg_scalar_text, cfg_string, load_config_table};
use nsqrs::common::log::parse_log_level;

// Every nsqlookupd flag, under nsqlookupd's long name. (Plain comments: a doc comment here
// would become the `nsqlookupd --help` text.)
//
// Boolean flags take an optional `=value` as Go's do. Defaults shown in `--help` are
// nsqlookupd's; flags not given take their values from `LookupdOptions::default()` and the
// config file.
#[derive(Debug, Args)]
// Go lets any flag be repeated, the last one winning.
#[command(args_override_self = true)]
pub struct LookupdArgs {
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
    #[arg(long, value_name = "PREFIX", default_value = "[nsqlookupd] ")]
    pub log_prefix: String,

    /// [deprecated] has no effect, use --log-level
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub verbose: bool,

    /// <addr>:<port> to listen on for TCP clients
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:4160")]
    pub tcp_address: String,

    /// <addr>:<port> to listen on for HTTP clients
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:4161")]
    pub http_address: String,

    /// Address of this lookupd node [default: the OS hostname]
    #[arg(long, value_name = "ADDR")]
    pub broadcast_address: Option<String>,

    /// Duration of time a producer will remain in the active list since its last ping
    #[arg(long, value_name = "DURATION", default_value = "5m0s", value_parser = parse_go_duration)]
    pub inactive_producer_timeout: Duration,

    /// Duration of time a producer will remain tombstoned if registration remains
    #[arg(long, value_name = "DURATION", default_value = "45s", value_parser = parse_go_duration)]
    pub tombstone_lifetime: Duration,

    /// Arguments after the flags, which nsqlookupd ignores (Go stops parsing flags there).
    #[arg(hide = true, num_args = 0.., trailing_var_arg = true)]
    pub trailing: Vec<String>,
}

/// What `nsqlookupd --version` prints.
pub fn nsqlookupd_version_string() -> String {
    nsqrs::nsqlookupd::version_string()
}

/// The clap command that parses a command line given to a binary invoked as `nsqlookupd`.
pub fn nsqlookupd_command() -> Command {
    let cmd = Command::new("nsqlookupd")
        .about("nsqlookupd-compatible discovery server (nsqrs)")
        .disable_version_flag(true);
    LookupdArgs::augment_args(cmd)
}

/// Long names of the flags Go parses as booleans: those whose value is optional.
#[cfg(test)]
pub fn go_bool_flags() -> Vec<String> {
    nsqrs::common::goflags::bool_flags(&LookupdArgs::augment_args(Command::new("lookupd")))
}

/// Rewrites Go-style flags (the arguments after the program name or after `lookupd`) for clap.
pub fn normalize_lookupd_args(args: &[String]) -> Vec<String> {
    nsqrs::common::goflags::normalize_for(&LookupdArgs::augment_args(Command::new("lookupd")), args)
}

/// Parses the arguments of a binary invoked as `nsqlookupd` (without the program name).
pub fn parse_as_nsqlookupd(args: &[String]) -> Result<(LookupdArgs, ArgMatches), clap::Error> {
    let mut cmd = nsqlookupd_command();
    let argv = std::iter::once("nsqlookupd".to_string()).chain(normalize_lookupd_args(args));
    let matches = cmd.try_get_matches_from_mut(argv)?;
    let args = LookupdArgs::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    Ok((args, matches))
}

impl LookupdArgs {
    /// Resolves defaults, then the `--config` file, then flags typed on the command line.
    /// `matches` must be the matches `self` was built from.
    pub fn into_options(self, matches: &ArgMatches) -> Result<LookupdOptions, String> {
        // In release builds clap answers `None` for an unknown id, which would make every
        // flag look "not given"; fail loudly instead.
        if matches.try_contains_id("tcp_address").is_err() {
            return Err("internal error: argument matches do not belong to `lookupd`".into());
        }
        let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        self.resolve(&given)
    }

    fn resolve(self, given: &dyn Fn(&str) -> bool) -> Result<LookupdOptions, String> {
        // Destructured so that adding a flag without deciding how it resolves fails to compile.
        let LookupdArgs {
            version: _,
            config,
            log_level,
            log_prefix,
            verbose: _,
            tcp_address,
            http_address,
            broadcast_address,
            inactive_producer_timeout,
            tombstone_lifetime,
            trailing: _,
        } = self;

        let mut o = LookupdOptions::default();
        if let Some(path) = config {
            for (key, value) in &load_config_table(&path)? {
                apply_config_key(&mut o, key, value)
                    .map_err(|e| format!("config file {path}: key {key:?}: {e}"))?;
            }
            o.config = Some(path);
        }
        // A typed flag wins over the config file even when it equals the default.
        macro_rules! from_flag {
            ($($arg:ident => $dst:expr),* $(,)?) => {
                $( if given(stringify!($arg)) { $dst = $arg; } )*
            };
        }
        from_flag! {
            log_level => o.log_level,
            log_prefix => o.log_prefix,
            tcp_address => o.tcp_address,
            http_address => o.http_address,
            inactive_producer_timeout => o.inactive_producer_timeout,
            tombstone_lifetime => o.tombstone_lifetime,
        }
        if let Some(addr) = broadcast_address {
            o.broadcast_address = addr;
        }
        Ok(o)
    }
}

fn apply_config_key(o: &mut LookupdOptions, key: &str, v: &toml::Value) -> Result<(), String> {
    match key {
        "log_level" => o.log_level = parse_log_level(&cfg_scalar_text(v)?)?,
        "log_prefix" => o.log_prefix = cfg_string(v)?,
        // Older sample configs still set it; accepted and ignored, like the flag.
        "verbose" => {
            cfg_bool(v)?;
        }
        "tcp_address" => o.tcp_address = cfg_string(v)?,
        "http_address" => o.http_address = cfg_string(v)?,
        "broadcast_address" => o.broadcast_address = cfg_string(v)?,
        "inactive_producer_timeout" => o.inactive_producer_timeout = cfg_duration(v)?,
        "tombstone_lifetime" => o.tombstone_lifetime = cfg_duration(v)?,
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

    fn lookupd(args: &[&str]) -> Result<LookupdOptions, String> {
        let (a, m) = parse_as_nsqlookupd(&strings(args)).map_err(|e| e.to_string())?;
        a.into_options(&m)
    }

    fn config_file(contents: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        f
    }

    #[test]
    fn clap_command_is_well_formed() {
        nsqlookupd_command().debug_assert();
    }

    #[test]
    fn no_arguments_give_nsqlookupd_defaults() {
        let o = lookupd(&[]).unwrap();
        let d = LookupdOptions::default();
        assert_eq!(o.tcp_address, d.tcp_address);
        assert_eq!(o.http_address, d.http_address);
        assert_eq!(o.broadcast_address, d.broadcast_address);
        assert_eq!(o.log_level, "info");
        assert_eq!(o.log_prefix, "[nsqlookupd] ");
        assert_eq!(o.inactive_producer_timeout, Duration::from_secs(300));
        assert_eq!(o.tombstone_lifetime, Duration::from_secs(45));
    }

    #[test]
    fn help_defaults_are_the_defaults_of_lookupd_options() {
        // The clap defaults are only what --help shows; they must not drift from the options.
        let (a, _) = parse_as_nsqlookupd(&[]).unwrap();
        let d = LookupdOptions::default();
        assert_eq!(a.tcp_address, d.tcp_address);
        assert_eq!(a.http_address, d.http_address);
        assert_eq!(a.log_prefix, d.log_prefix);
        assert_eq!(a.log_level, d.log_level);
        assert_eq!(a.inactive_producer_timeout, d.inactive_producer_timeout);
        assert_eq!(a.tombstone_lifetime, d.tombstone_lifetime);
    }

    #[test]
    fn go_bool_flags_are_exactly_nsqlookupds_bool_flags() {
        let mut flags = go_bool_flags();
        flags.sort();
        assert_eq!(flags, ["verbose", "version"]);
    }

    #[test]
    fn every_flag_reaches_its_option_in_go_syntax() {
        let o = lookupd(&[
            "-tcp-address",
            "127.0.0.1:1",
            "--http-address=127.0.0.1:2",
            "-broadcast-address=lookup.example",
            "-inactive-producer-timeout",
            "1m30s",
            "--tombstone-lifetime=1s",
            "-log-level=DEBUG",
            "-log-prefix",
            "[x] ",
            "-verbose",
        ])
        .unwrap();
        assert_eq!(o.tcp_address, "127.0.0.1:1");
        assert_eq!(o.http_address, "127.0.0.1:2");
        assert_eq!(o.broadcast_address, "lookup.example");
        assert_eq!(o.inactive_producer_timeout, Duration::from_secs(90));
        assert_eq!(o.tombstone_lifetime, Duration::from_secs(1));
        assert_eq!(o.log_level, "debug");
        assert_eq!(o.log_prefix, "[x] ");
    }

    #[test]
    fn version_flag() {
        let (a, _) = parse_as_nsqlookupd(&strings(&["-version"])).unwrap();
        assert!(a.version);
        let (a, _) = parse_as_nsqlookupd(&strings(&["--version=false"])).unwrap();
        assert!(!a.version);
        assert_eq!(
            nsqlookupd_version_string(),
            format!("nsqlookupd v1.3.0 (built w/nsqrs-{})", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, flag) in [
            (&["--tombstone-lifetime=soon"][..], "--tombstone-lifetime"),
            (
                &["--inactive-producer-timeout=-1s"],
                "--inactive-producer-timeout",
            ),
            (&["--log-level=loud"], "--log-level"),
            (&["--verbose=maybe"], "--verbose"),
            (&["--no-such-flag"], "--no-such-flag"),
        ] {
            let e = lookupd(args).unwrap_err();
            assert!(e.contains(flag), "{args:?}: {e}");
        }
    }

    #[test]
    fn config_file_sets_options_and_flags_win() {
        let f = config_file(
            r#"
            log_level = "warn"
            tcp_address = "127.0.0.1:7"
            http_address = "127.0.0.1:8"
            broadcast_address = "from-config"
            inactive_producer_timeout = "300s"
            tombstone_lifetime = 2000
            verbose = false
            "#,
        );
        let path = f.path().to_str().unwrap();
        let o = lookupd(&["--config", path]).unwrap();
        assert_eq!(o.config.as_deref(), Some(path));
        assert_eq!(o.log_level, "warn");
        assert_eq!(o.tcp_address, "127.0.0.1:7");
        assert_eq!(o.http_address, "127.0.0.1:8");
        assert_eq!(o.broadcast_address, "from-config");
        assert_eq!(o.inactive_producer_timeout, Duration::from_secs(300));
        assert_eq!(o.tombstone_lifetime, Duration::from_secs(2));
        let o = lookupd(&[
            "--config",
            path,
            "--tcp-address=0.0.0.0:4160",
            "--tombstone-lifetime=45s",
        ])
        .unwrap();
        assert_eq!(o.tcp_address, "0.0.0.0:4160");
        assert_eq!(o.tombstone_lifetime, Duration::from_secs(45));
        assert_eq!(o.http_address, "127.0.0.1:8");
    }

    #[test]
    fn config_errors_are_one_line_naming_the_key() {
        let f = config_file("max_msg_size = 5\n");
        let e = lookupd(&["--config", f.path().to_str().unwrap()]).unwrap_err();
        assert!(
            e.contains("\"max_msg_size\"") && e.contains("unknown config key"),
            "{e}"
        );
        let f = config_file("tombstone_lifetime = true\n");
        let e = lookupd(&["--config", f.path().to_str().unwrap()]).unwrap_err();
        assert!(e.contains("tombstone_lifetime"), "{e}");
        let f = config_file("tcp_address = \n");
        let e = lookupd(&["--config", f.path().to_str().unwrap()]).unwrap_err();
        assert!(
            e.starts_with("failed to load config file") && !e.contains('\n'),
            "{e}"
        );
    }
}
