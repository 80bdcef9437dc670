//! `nsqrs to-db`: the archiver's command line; the archiving is `nsqrs::tools::to_db`.

use std::time::Duration;

use clap::{ArgAction, Args};
use nsqrs::common::goflags::{parse_go_bool, parse_go_duration};
use nsqrs::tools::to_db::ArchivePlan;

use crate::tools;

#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct ToDbArgs {
    /// NSQ topic to archive
    #[arg(long, value_name = "TOPIC")]
    pub topic: String,

    /// The archiver's channel on --topic [default: nsqrs_to_db.<topic>.<hash of the topic and
    /// the archive's identity>, the same on every restart and for no other archive]
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Option<String>,

    /// With --events, the archiver's channel on nsqrs.events [default: as --channel's default]
    #[arg(long, value_name = "CHANNEL")]
    pub events_channel: Option<String>,

    /// nsqd TCP address (may be given multiple times)
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub nsqd_tcp_address: Vec<String>,

    /// nsqlookupd HTTP address, host:port or http://host:port (may be given multiple times);
    /// follows the topic on every nsqd it knows
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub lookupd_http_address: Vec<String>,

    /// SQLite file, or a postgres:// URL
    #[arg(long, value_name = "PATH|URL", default_value = "nsqrs.db")]
    pub db: String,

    /// Also archive the lifecycle events nsqrs brokers publish on nsqrs.events about this topic
    /// (what trace shows: deliveries, requeues, timeouts, finishes)
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub events: bool,

    /// Messages per transaction
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub batch_size: usize,

    /// Commit a partial batch after this long
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_go_duration)]
    pub flush_interval: Duration,

    /// Max messages in flight [default: twice --batch-size, so one batch fills while another commits]
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<u64>,

    /// go-nsq consumer option key,value (may be given multiple times)
    #[arg(long, value_name = "KEY,VALUE", action = ArgAction::Append)]
    pub consumer_opt: Vec<String>,
}

pub fn run(args: ToDbArgs) -> i32 {
    if let Err(e) = tools::check_sources(&args.nsqd_tcp_address, &args.lookupd_http_address) {
        return tools::usage(e);
    }
    if !nsqrs::protocol::names::is_valid_topic_name(&args.topic) {
        return tools::usage(format!("--topic {:?} is not a valid topic name", args.topic));
    }
    for (flag, channel) in [
        ("--channel", &args.channel),
        ("--events-channel", &args.events_channel),
    ] {
        if let Some(c) = channel.as_deref() {
            if !nsqrs::protocol::names::is_valid_channel_name(c) {
                return tools::usage(format!("{flag} {c:?} is not a valid channel name"));
            }
        }
    }
    if args.batch_size == 0 || args.flush_interval.is_zero() {
        return tools::usage("--batch-size and --flush-interval must be positive");
    }
    if let Err(e) = nsqrs::archive::store::Location::parse(&args.db) {
        return tools::usage(e);
    }
    let mut config = match tools::client_config(&args.consumer_opt) {
        Ok(c) => c,
        Err(e) => return tools::usage(format!("--consumer-opt: {e}")),
    };
    config.max_in_flight = args.max_in_flight.unwrap_or(2 * args.batch_size as u64).max(1);
    let plan = ArchivePlan {
        topic: args.topic,
        channel: args.channel,
        events_channel: args.events_channel,
        nsqd_tcp_address: args.nsqd_tcp_address,
        lookupd_http_address: args.lookupd_http_address,
        db: args.db,
        events: args.events,
        batch_size: args.batch_size,
        flush_interval: args.flush_interval,
    };
    tools::runtime().block_on(async move {
        match nsqrs::tools::to_db::archive(plan, config).await {
            Ok(()) => 0,
            Err(e) => tools::fail(e),
        }
    })
}
