//! `nsqrs stat`: nsq_stat's command line (nsq-reference §4.3); the polling and the reports
//! are `nsqrs::tools::stat`.

use std::time::Duration;

use clap::{ArgAction, Args};
use nsqrs::common::goflags::{parse_go_bool, parse_go_duration};
use nsqrs::common::http_client::HttpTimeouts;
use nsqrs::common::process::wait_for_signal;
use nsqrs::tools::stat::{StatFormat, StatPlan};

use crate::tools;

#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct StatArgs {
    /// NSQ topic (required with --channel; filters the cluster table otherwise)
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,

    /// NSQ channel; without it, every topic and channel of the cluster is shown
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Option<String>,

    /// nsqd HTTP address, host:port or http://host:port (may be given multiple times)
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub nsqd_http_address: Vec<String>,

    /// nsqlookupd HTTP address, host:port or http://host:port (may be given multiple times)
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub lookupd_http_address: Vec<String>,

    /// Time between reports
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_go_duration)]
    pub interval: Duration,

    /// Number of reports, then exit (0 = forever)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub count: u64,

    /// How each report is printed
    #[arg(long, value_enum, default_value_t = StatFormat::Table)]
    pub format: StatFormat,

    /// Time allowed to connect to an nsqd or lookupd
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_go_duration)]
    pub http_client_connect_timeout: Duration,

    /// Time allowed for each /stats or lookupd request
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_go_duration)]
    pub http_client_request_timeout: Duration,

    /// Print version string and exit
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub version: bool,

    /// nsqrs: show each broker's replication peers and their lag (log bytes not acknowledged,
    /// age and count of channel states not confirmed) instead of topics and channels
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub replication: bool,
}

pub fn run(args: StatArgs) -> i32 {
    if args.version {
        outln!("{}", tools::tool_version("nsq_stat"));
        return 0;
    }
    if let Err(e) = validate(&args) {
        return tools::usage(e);
    }
    let replication = args.replication;
    let plan = StatPlan {
        topic: args.topic,
        channel: args.channel,
        nsqd_http_address: args.nsqd_http_address,
        lookupd_http_address: args.lookupd_http_address,
        interval: args.interval,
        count: args.count,
        format: args.format,
        timeouts: HttpTimeouts {
            connect: args.http_client_connect_timeout,
            request: args.http_client_request_timeout,
        },
    };
    tools::runtime().block_on(async move {
        tokio::select! {
            polled = async {
                if replication {
                    nsqrs::tools::stat::poll_replication(&plan).await
                } else {
                    nsqrs::tools::stat::poll(&plan).await
                }
            } => polled.map_or_else(tools::fail, |()| 0),
            signalled = wait_for_signal() => signalled.map_or_else(tools::fail, |()| 0),
        }
    })
}

fn validate(args: &StatArgs) -> Result<(), String> {
    if args.channel.is_some() && args.topic.is_none() {
        return Err("--topic is required with --channel".into());
    }
    match (
        args.nsqd_http_address.is_empty(),
        args.lookupd_http_address.is_empty(),
    ) {
        (true, true) => return Err("--nsqd-http-address or --lookupd-http-address required".into()),
        (false, false) => return Err("use --nsqd-http-address or --lookupd-http-address not both".into()),
        _ => {}
    }
    tools::check_http_addresses("--nsqd-http-address", &args.nsqd_http_address)?;
    tools::check_http_addresses("--lookupd-http-address", &args.lookupd_http_address)?;
    if args.interval.is_zero() {
        return Err("--interval must be positive".into());
    }
    Ok(())
}
