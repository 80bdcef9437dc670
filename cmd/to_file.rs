//! `nsqrs to-file`: nsq_to_file's command line (nsq-reference §4.2), resolved into the
//! settings of `nsqrs::tools::to_file`, which does the archiving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Args};
use nsqrs::common::goflags::{parse_go_bool, parse_go_duration};
use nsqrs::common::http_client::HttpTimeouts;
use nsqrs::tools::to_file::{check_datetime_format, ArchiveError, FileFormat, Settings, Sources};
use regex::Regex;

use crate::tools;

#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct ToFileArgs {
    /// NSQ topic (may be given multiple times)
    #[arg(long, value_name = "TOPIC", action = ArgAction::Append)]
    pub topic: Vec<String>,

    /// Regex of topics to archive, found through lookupd [default: every topic]
    #[arg(long, value_name = "REGEX")]
    pub topic_pattern: Option<String>,

    /// How often lookupd is asked for new topics (without --topic)
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_go_duration)]
    pub topic_refresh: Duration,

    /// NSQ channel
    #[arg(long, value_name = "CHANNEL", default_value = "nsq_to_file")]
    pub channel: String,

    /// nsqd TCP address (may be given multiple times)
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub nsqd_tcp_address: Vec<String>,

    /// nsqlookupd HTTP address, host:port or http://host:port (may be given multiple times)
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub lookupd_http_address: Vec<String>,

    /// go-nsq consumer option key,value (may be given multiple times)
    #[arg(long, value_name = "KEY,VALUE", action = ArgAction::Append)]
    pub consumer_opt: Vec<String>,

    /// Max messages in flight; also how many are written before an fsync and FIN
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub max_in_flight: u64,

    /// Directory for finished files
    #[arg(long, value_name = "DIR", default_value = "/tmp")]
    pub output_dir: PathBuf,

    /// Directory for files being written, moved to --output-dir when closed [default: --output-dir]
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,

    /// strftime format for <DATETIME> (%Y %y %m %d %H %I %M %S %p %A %a %B %b %Z %z %%)
    #[arg(long, value_name = "FORMAT", default_value = "%Y-%m-%d_%H")]
    pub datetime_format: String,

    /// File name template: <TOPIC> <HOST> <PID> <DATETIME> <REV>
    #[arg(
        long,
        value_name = "TEMPLATE",
        default_value = "<TOPIC>.<HOST><REV>.<DATETIME>.log"
    )]
    pub filename_format: String,

    /// Replaces <HOST>; may use <SHORT_HOST> and <HOSTNAME> [default: short hostname]
    #[arg(long, value_name = "ID")]
    pub host_identifier: Option<String>,

    /// gzip the files (".gz" is appended to the name if missing)
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub gzip: bool,

    /// gzip compression level, 1 (fastest) to 9 (best)
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub gzip_level: u32,

    /// Do not create files for intervals without messages
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub skip_empty_files: bool,

    /// Rotate a file once it holds more than this many bytes (0 = never)
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub rotate_size: u64,

    /// Rotate a file after this long (0 = never)
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_go_duration)]
    pub rotate_interval: Duration,

    /// fsync (and FIN what was written) at least this often
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_go_duration)]
    pub sync_interval: Duration,

    /// Time allowed to connect to lookupd
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_go_duration)]
    pub http_client_connect_timeout: Duration,

    /// Time allowed for each lookupd request
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_go_duration)]
    pub http_client_request_timeout: Duration,

    /// Log verbosity: debug, info, warn, error, or fatal
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log message prefix
    #[arg(long, value_name = "PREFIX", default_value = "[nsq_to_file] ")]
    pub log_prefix: String,

    /// What each message becomes in the file
    #[arg(long, value_enum, default_value_t = FileFormat::Raw)]
    pub format: FileFormat,

    /// Print version string and exit
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub version: bool,
}

fn resolve(args: &ToFileArgs) -> Result<Settings, String> {
    tools::check_sources(&args.nsqd_tcp_address, &args.lookupd_http_address)?;
    if !args.topic.is_empty() && args.topic_pattern.is_some() {
        return Err("use --topic to list topics or --topic-pattern for a regex, not both".into());
    }
    if args.topic.is_empty() && !args.nsqd_tcp_address.is_empty() {
        return Err("--topic is required with --nsqd-tcp-address (topic discovery needs lookupd)".into());
    }
    for t in &args.topic {
        if !nsqrs::protocol::names::is_valid_topic_name(t) {
            return Err(format!("--topic {t:?} is not a valid topic name"));
        }
    }
    if !nsqrs::protocol::names::is_valid_channel_name(&args.channel) {
        return Err(format!(
            "--channel {:?} is not a valid channel name",
            args.channel
        ));
    }
    if !(1..=9).contains(&args.gzip_level) {
        return Err(format!("--gzip-level {} must be in 1..9", args.gzip_level));
    }
    if args.max_in_flight == 0 {
        return Err("--max-in-flight must be at least 1".into());
    }
    if args.sync_interval.is_zero() {
        return Err("--sync-interval must be positive".into());
    }
    check_datetime_format(&args.datetime_format)?;
    let level = match args.log_level.to_ascii_lowercase().as_str() {
        "debug" | "info" => true,
        "warn" | "error" | "fatal" => false,
        other => {
            return Err(format!(
                "--log-level {other:?} is not one of debug, info, warn, error, fatal"
            ))
        }
    };
    let output_dir = args.output_dir.clone();
    let work_dir = args.work_dir.clone().unwrap_or_else(|| output_dir.clone());
    let needs_rev =
        args.gzip || args.rotate_size > 0 || !args.rotate_interval.is_zero() || work_dir != output_dir;
    if needs_rev && !args.filename_format.contains("<REV>") {
        return Err(
            "--filename-format must contain <REV> with --gzip, --rotate-size, --rotate-interval or --work-dir".into(),
        );
    }
    for dir in [&output_dir, &work_dir] {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let full_host = nsqrs::common::host::local_hostname();
    let short_host = nsqrs::common::host::short_hostname();
    let host = args
        .host_identifier
        .clone()
        .unwrap_or_else(|| short_host.clone())
        .replace("<SHORT_HOST>", &short_host)
        .replace("<HOSTNAME>", &full_host);
    let filename_format = args
        .filename_format
        .replace("<HOST>", &host)
        .replace("<PID>", &std::process::id().to_string());
    Ok(Settings {
        output_dir,
        work_dir,
        datetime_format: args.datetime_format.clone(),
        filename_format,
        gzip_level: args.gzip.then_some(args.gzip_level),
        rotate_size: args.rotate_size,
        rotate_interval: (!args.rotate_interval.is_zero()).then_some(args.rotate_interval),
        skip_empty_files: args.skip_empty_files,
        sync_interval: args.sync_interval,
        max_in_flight: args.max_in_flight as usize,
        format: args.format,
        needs_rev,
        exclusive: args.gzip || !args.rotate_interval.is_zero(),
        verbose: level,
        log_prefix: args.log_prefix.clone(),
    })
}

pub fn run(args: ToFileArgs) -> i32 {
    if args.version {
        outln!("{}", tools::tool_version("nsq_to_file"));
        return 0;
    }
    let settings = match resolve(&args) {
        Ok(s) => Arc::new(s),
        Err(e) => return tools::usage(e),
    };
    let pattern = match args.topic_pattern.as_deref().map(Regex::new).transpose() {
        Ok(p) => p,
        Err(e) => return tools::usage(format!("--topic-pattern: {e}")),
    };
    let mut config = match tools::client_config(&args.consumer_opt) {
        Ok(c) => c,
        Err(e) => return tools::usage(format!("--consumer-opt: {e}")),
    };
    config.max_in_flight = args.max_in_flight;
    config.log_connections = settings.verbose;
    config.http_connect_timeout = args.http_client_connect_timeout;
    config.http_request_timeout = args.http_client_request_timeout;
    let sources = Sources {
        topics: args.topic,
        topic_refresh: args.topic_refresh,
        channel: args.channel,
        nsqd_tcp_address: args.nsqd_tcp_address,
        lookupd_http_address: args.lookupd_http_address,
        timeouts: HttpTimeouts {
            connect: args.http_client_connect_timeout,
            request: args.http_client_request_timeout,
        },
    };
    let archived =
        tools::runtime().block_on(nsqrs::tools::to_file::archive(sources, settings, pattern, config));
    match archived {
        Ok(()) => 0,
        Err(ArchiveError::Usage(e)) => tools::usage(e),
        Err(ArchiveError::Failed(e)) => tools::fail(e),
    }
}
