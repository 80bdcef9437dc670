//! `nsqrs to-nsq`: nsq_to_nsq's command line and behaviour (nsq-reference §4.5). Topics are
//! consumed from one set of nsqd and republished, one PUB per message, to one of the
//! `--destination-nsqd-tcp-address` chosen by `--mode`.
//!
//! A message is finished only once the destination answered OK; a refusal or a lost
//! connection requeues it with the consumer's backoff. Unlike go-nsq's default, nothing is
//! given up after some number of attempts (`--consumer-opt max_attempts,N` asks for that), so
//! an outage of the destination delays messages but drops none. The destination gives each
//! message a new ID, as nsqd does for any publish.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use clap::{ArgAction, Args};
use nsqrs::client::{Config, Consumer, Message, Producer, Publish};
use nsqrs::common::goflags::parse_go_bool;
use nsqrs::common::process::wait_for_signal;
use nsqrs::errln;
use nsqrs::protocol::names::{is_valid_channel_name, is_valid_topic_name};
use nsqrs::tools::forward::filter::{JsonFilter, SkipReason, Verdict};
use nsqrs::tools::forward::pool::{Mode, Pool};
use nsqrs::tools::forward::status::Progress;

use crate::tools;

#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct ToNsqArgs {
    /// Topic to consume (may be given multiple times)
    #[arg(long, value_name = "TOPIC", action = ArgAction::Append)]
    pub topic: Vec<String>,

    /// Channel to consume each topic on
    #[arg(long, value_name = "CHANNEL", default_value = "nsq_to_nsq")]
    pub channel: String,

    /// nsqd TCP address to consume from (may be given multiple times)
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub nsqd_tcp_address: Vec<String>,

    /// nsqlookupd HTTP address that finds the nsqd to consume from, host:port or
    /// http://host:port (may be given multiple times)
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub lookupd_http_address: Vec<String>,

    /// nsqd TCP address to publish to (may be given multiple times; --mode picks one per
    /// message)
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub destination_nsqd_tcp_address: Vec<String>,

    /// Publish every message to this topic [default: the topic it was consumed from]
    #[arg(long, value_name = "TOPIC")]
    pub destination_topic: Option<String>,

    /// How each message's destination is chosen: hostpool (in turn among those that work; one
    /// that failed rests 30 s, then longer), round-robin (in turn, regardless), epsilon-greedy
    /// (mostly the fastest)
    #[arg(long, value_name = "MODE", default_value = "hostpool")]
    pub mode: String,

    /// Messages in flight at once (consumed, not yet answered by a destination)
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub max_in_flight: u64,

    /// Forward only JSON objects that have this field; others are finished unsent
    #[arg(long, value_name = "FIELD")]
    pub require_json_field: Option<String>,

    /// With --require-json-field: forward only when the field has this value (a string equal
    /// to it, or a number equal to it read as a number)
    #[arg(long, value_name = "VALUE")]
    pub require_json_value: Option<String>,

    /// Forward JSON objects rewritten to only these fields (may be given multiple times);
    /// bodies that are not JSON objects are finished unsent
    #[arg(long, value_name = "FIELD", action = ArgAction::Append)]
    pub whitelist_json_field: Vec<String>,

    /// Print a status line on stderr every N messages sent, per destination and in all
    /// (0 = never)
    #[arg(long, value_name = "N", default_value_t = 250)]
    pub status_every: u64,

    /// go-nsq consumer option key,value (may be given multiple times)
    #[arg(long, value_name = "KEY,VALUE", action = ArgAction::Append)]
    pub consumer_opt: Vec<String>,

    /// go-nsq producer option key,value for the destinations (may be given multiple times)
    #[arg(long, value_name = "KEY,VALUE", action = ArgAction::Append)]
    pub producer_opt: Vec<String>,

    /// Print version string and exit
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub version: bool,
}

/// Everything checked before anything connects.
struct Plan {
    mode: Mode,
    filter: JsonFilter,
    consumer: Config,
    producer: Config,
}

fn plan(args: &ToNsqArgs) -> Result<Plan, String> {
    if args.topic.is_empty() {
        return Err("--topic is required".into());
    }
    for t in args.topic.iter().chain(&args.destination_topic) {
        if !is_valid_topic_name(t) {
            return Err(format!("topic {t:?} is not a valid topic name"));
        }
    }
    if !is_valid_channel_name(&args.channel) {
        return Err(format!(
            "--channel {:?} is not a valid channel name",
            args.channel
        ));
    }
    tools::check_sources(&args.nsqd_tcp_address, &args.lookupd_http_address)?;
    if args.destination_nsqd_tcp_address.is_empty() {
        return Err("--destination-nsqd-tcp-address required".into());
    }
    if args.max_in_flight == 0 {
        return Err("--max-in-flight must be at least 1".into());
    }
    let mode = Mode::parse(&args.mode, false)?;
    let filter = JsonFilter {
        require_field: args.require_json_field.clone(),
        require_value: args.require_json_value.clone(),
        whitelist: args.whitelist_json_field.clone(),
    };
    filter.check()?;
    let user_agent = format!("nsqrs-to-nsq/{}", env!("CARGO_PKG_VERSION"));
    let mut consumer = tools::relay_config(&args.consumer_opt).map_err(|e| format!("--consumer-opt: {e}"))?;
    consumer.max_in_flight = args.max_in_flight;
    consumer.user_agent = user_agent.clone();
    let mut producer =
        tools::client_config(&args.producer_opt).map_err(|e| format!("--producer-opt: {e}"))?;
    producer.user_agent = user_agent;
    Ok(Plan {
        mode,
        filter,
        consumer,
        producer,
    })
}

pub fn run(args: ToNsqArgs) -> i32 {
    if args.version {
        outln!("{}", tools::tool_version("nsq_to_nsq"));
        return 0;
    }
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(e) => return tools::usage(e),
    };
    tools::runtime().block_on(forward(args, plan))
}

/// What every topic's dispatcher shares.
struct Shared {
    producers: Vec<Producer>,
    pool: Pool,
    filter: JsonFilter,
    progress: Progress,
    destination_topic: Option<String>,
}

async fn forward(args: ToNsqArgs, plan: Plan) -> i32 {
    let shared = Arc::new(Shared {
        // Connected on first use, so a destination that is down at start only delays.
        producers: args
            .destination_nsqd_tcp_address
            .iter()
            .map(|a| Producer::new(a, plan.producer.clone()))
            .collect(),
        pool: Pool::new(plan.mode, args.destination_nsqd_tcp_address.len()),
        filter: plan.filter,
        progress: Progress::new(args.destination_nsqd_tcp_address.clone(), args.status_every),
        destination_topic: args.destination_topic.clone(),
    });
    let mut consumers = Vec::new();
    let mut dispatchers = Vec::new();
    for topic in &args.topic {
        let c = match Consumer::new(topic, &args.channel, plan.consumer.clone()) {
            Ok(c) => c,
            Err(e) => return tools::usage(e),
        };
        c.on_give_up(|m| {
            errln!(
                "warning: message {} finished unsent after {} attempts (max_attempts)",
                m.id_str(),
                m.attempts
            )
        });
        let (c2, shared) = (c.clone(), shared.clone());
        dispatchers.push(tokio::spawn(async move {
            while let Some(m) = c2.recv().await {
                dispatch(&shared, c2.topic(), m).await;
            }
        }));
        consumers.push(c);
    }
    let mut failure = None;
    'connect: for c in &consumers {
        for addr in &args.nsqd_tcp_address {
            if let Err(e) = c.connect_to_nsqd(addr).await {
                failure = Some(format!("connect to nsqd {addr}: {e}"));
                break 'connect;
            }
        }
        for addr in &args.lookupd_http_address {
            if let Err(e) = c.connect_to_lookupd(addr).await {
                failure = Some(format!("lookupd {addr}: {e}"));
                break 'connect;
            }
        }
    }
    if failure.is_none() {
        failure = wait_for_signal()
            .await
            .err()
            .map(|e| format!("signal handlers: {e}"));
    }
    // Stop taking messages, and wait for the destinations' answers to those in flight; the
    // producers close as the last of them is dropped.
    for c in &consumers {
        c.stop().await;
    }
    for d in dispatchers {
        let _ = d.await;
    }
    errln!("to-nsq: {}", shared.progress.summary());
    failure.map_or(0, tools::fail)
}

/// Filters `m`, hands it to a destination, and answers it when the destination has.
async fn dispatch(shared: &Arc<Shared>, topic: &str, m: Message) {
    let body = match shared.filter.apply(&m.body) {
        Verdict::Pass(body) => Bytes::from(body),
        Verdict::Skip(reason) => {
            if reason == SkipReason::NotJson {
                errln!(
                    "warning: message {} is not a JSON object: finished unsent",
                    m.id_str()
                );
            }
            shared.progress.skipped();
            m.finish();
            return;
        }
    };
    let topic = shared.destination_topic.as_deref().unwrap_or(topic).to_string();
    let d = shared.pool.choose()[0];
    let started = Instant::now();
    let submitted = shared.producers[d].submit(Publish::Pub { topic, body }).await;
    let shared = shared.clone();
    // The reply is awaited apart, so publishes to a destination are pipelined.
    tokio::spawn(async move {
        let result = match submitted {
            Ok(reply) => reply.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let took = started.elapsed();
        shared.pool.mark(d, result.is_ok(), took);
        for line in shared.progress.sent(d, took, &result) {
            errln!("{line}");
        }
        match result {
            Ok(()) => {
                shared.progress.forwarded();
                m.finish();
            }
            Err(_) => {
                shared.progress.requeued();
                m.requeue(None);
            }
        }
    });
}
