//! `nsqrs to-http`: nsq_to_http's command line and behaviour (nsq-reference §4.6). One topic
//! is consumed, and each message is POSTed to (`--post`) or fetched in the URL of (`--get`)
//! the endpoint `--mode` picks, by `-n` concurrent handlers.
//!
//! A message is finished only once an endpoint answered 2xx (with `--mode=multicast`, every
//! endpoint, in turn: a failure requeues the message, and the retry sends it to all of them
//! again). Any other answer, a timeout or a lost connection requeues it with the consumer's
//! backoff; as in `to-nsq`, nothing is given up after some number of attempts unless
//! `--consumer-opt max_attempts,N` asks for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{ArgAction, Args};
use nsqrs::client::{Consumer, Message};
use nsqrs::common::goflags::{parse_go_bool, parse_go_duration};
use nsqrs::common::http_client::HttpTimeouts;
use nsqrs::common::process::wait_for_signal;
use nsqrs::errln;
use nsqrs::protocol::names::{is_valid_channel_name, is_valid_topic_name};
use nsqrs::tools::forward::http::{self, Method, Sender, Target};
use nsqrs::tools::forward::pool::{Mode, Pool};
use nsqrs::tools::forward::status::Progress;
use rand::Rng;

use crate::tools;

const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct ToHttpArgs {
    /// Topic to consume
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,

    /// Channel to consume it on
    #[arg(long, value_name = "CHANNEL", default_value = "nsq_to_http")]
    pub channel: String,

    /// nsqd TCP address to consume from (may be given multiple times)
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub nsqd_tcp_address: Vec<String>,

    /// nsqlookupd HTTP address that finds the nsqd to consume from, host:port or
    /// http://host:port (may be given multiple times)
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub lookupd_http_address: Vec<String>,

    /// URL (http:// or https://) to POST each message to, as the request body (may be given
    /// multiple times; --mode picks)
    #[arg(long, value_name = "URL", action = ArgAction::Append)]
    pub post: Vec<String>,

    /// URL to GET for each message, with %s where the message goes, URL-escaped (may be
    /// given multiple times; --mode picks)
    #[arg(long, value_name = "URL", action = ArgAction::Append)]
    pub get: Vec<String>,

    /// Content-Type of the POST requests
    #[arg(long, value_name = "TYPE", default_value = DEFAULT_CONTENT_TYPE)]
    pub content_type: String,

    /// Header for every request, key:value (may be given multiple times; replaces the
    /// default User-Agent or Content-Type when it names them)
    #[arg(long, value_name = "KEY:VALUE", action = ArgAction::Append)]
    pub header: Vec<String>,

    /// How each message's endpoint is chosen: hostpool (in turn among those that work; one
    /// that failed rests 30 s, then longer), round-robin (in turn, regardless),
    /// epsilon-greedy (mostly the fastest), multicast (every endpoint)
    #[arg(long, value_name = "MODE", default_value = "hostpool")]
    pub mode: String,

    /// Messages handled at once, each one request at a time
    #[arg(short = 'n', long = "n", value_name = "N", default_value_t = 100)]
    pub handlers: usize,

    /// Share of messages to send, from 0.0 to 1.0; the others are finished unsent
    #[arg(long, value_name = "FRACTION", default_value_t = 1.0)]
    pub sample: f64,

    /// Messages in flight at once (consumed, not yet answered)
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub max_in_flight: u64,

    /// Print a status line on stderr every N requests, per endpoint and in all (0 = never)
    #[arg(long, value_name = "N", default_value_t = 250)]
    pub status_every: u64,

    /// Time allowed to connect to an endpoint (TLS handshake included)
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_go_duration)]
    pub http_client_connect_timeout: Duration,

    /// Time allowed for a whole request, answer included; past it the message is requeued
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_go_duration)]
    pub http_client_request_timeout: Duration,

    /// go-nsq consumer option key,value (may be given multiple times)
    #[arg(long, value_name = "KEY,VALUE", action = ArgAction::Append)]
    pub consumer_opt: Vec<String>,

    /// Print version string and exit
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub version: bool,
}

/// Everything checked before anything connects.
struct Plan {
    topic: String,
    targets: Vec<Target>,
    sender: Sender,
    mode: Mode,
    consumer: nsqrs::client::Config,
}

fn plan(args: &ToHttpArgs) -> Result<Plan, String> {
    let topic = args.topic.clone().ok_or("--topic is required")?;
    if !is_valid_topic_name(&topic) {
        return Err(format!("--topic {topic:?} is not a valid topic name"));
    }
    if !is_valid_channel_name(&args.channel) {
        return Err(format!(
            "--channel {:?} is not a valid channel name",
            args.channel
        ));
    }
    tools::check_sources(&args.nsqd_tcp_address, &args.lookupd_http_address)?;
    let (method, urls) = match (args.post.is_empty(), args.get.is_empty()) {
        (true, true) => return Err("--get or --post required".into()),
        (false, false) => return Err("use --get or --post not both".into()),
        (false, true) => (Method::Post, &args.post),
        (true, false) => (Method::Get, &args.get),
    };
    if args.content_type != DEFAULT_CONTENT_TYPE && method != Method::Post {
        return Err("--content-type only applies to --post".into());
    }
    if args.content_type.is_empty() {
        return Err("--content-type is empty".into());
    }
    if !(0.0..=1.0).contains(&args.sample) {
        return Err(format!("--sample {} must be between 0.0 and 1.0", args.sample));
    }
    if args.handlers == 0 || args.max_in_flight == 0 {
        return Err("-n and --max-in-flight must be at least 1".into());
    }
    let targets = urls
        .iter()
        .map(|u| Target::parse(u, method))
        .collect::<Result<Vec<_>, _>>()?;
    let headers = args
        .header
        .iter()
        .map(|h| http::parse_header(h))
        .collect::<Result<Vec<_>, _>>()?;
    // Checked now: a machine without certificate authorities fails here, not per message.
    let tls = match targets.iter().any(Target::is_https) {
        true => Some(http::tls_connector()?),
        false => None,
    };
    let sender = Sender::new(
        method,
        &args.content_type,
        &format!("nsq_to_http v1.3.0 (built w/nsqrs-{})", env!("CARGO_PKG_VERSION")),
        headers,
        HttpTimeouts {
            connect: args.http_client_connect_timeout,
            request: args.http_client_request_timeout,
        },
        tls,
    )?;
    let mut consumer = tools::relay_config(&args.consumer_opt).map_err(|e| format!("--consumer-opt: {e}"))?;
    consumer.max_in_flight = args.max_in_flight;
    consumer.user_agent = format!("nsqrs-to-http/{}", env!("CARGO_PKG_VERSION"));
    Ok(Plan {
        topic,
        targets,
        sender,
        mode: Mode::parse(&args.mode, true)?,
        consumer,
    })
}

pub fn run(args: ToHttpArgs) -> i32 {
    if args.version {
        outln!("{}", tools::tool_version("nsq_to_http"));
        return 0;
    }
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(e) => return tools::usage(e),
    };
    tools::runtime().block_on(forward(args, plan))
}

struct Shared {
    targets: Vec<Target>,
    sender: Sender,
    pool: Pool,
    progress: Progress,
    sample: f64,
}

async fn forward(args: ToHttpArgs, plan: Plan) -> i32 {
    let consumer = match Consumer::new(&plan.topic, &args.channel, plan.consumer) {
        Ok(c) => c,
        Err(e) => return tools::usage(e),
    };
    consumer.on_give_up(|m| {
        errln!(
            "warning: message {} finished unsent after {} attempts (max_attempts)",
            m.id_str(),
            m.attempts
        )
    });
    let shared = Arc::new(Shared {
        pool: Pool::new(plan.mode, plan.targets.len()),
        progress: Progress::new(
            plan.targets.iter().map(|t| t.url.clone()).collect(),
            args.status_every,
        ),
        targets: plan.targets,
        sender: plan.sender,
        sample: args.sample,
    });
    let handlers: Vec<_> = (0..args.handlers)
        .map(|_| {
            let (consumer, shared) = (consumer.clone(), shared.clone());
            tokio::spawn(async move {
                while let Some(m) = consumer.recv().await {
                    handle(&shared, m).await;
                }
            })
        })
        .collect();
    let mut failure = None;
    for addr in &args.nsqd_tcp_address {
        if let Err(e) = consumer.connect_to_nsqd(addr).await {
            failure = Some(format!("connect to nsqd {addr}: {e}"));
            break;
        }
    }
    for addr in &args.lookupd_http_address {
        if failure.is_none() {
            if let Err(e) = consumer.connect_to_lookupd(addr).await {
                failure = Some(format!("lookupd {addr}: {e}"));
            }
        }
    }
    if failure.is_none() {
        failure = wait_for_signal()
            .await
            .err()
            .map(|e| format!("signal handlers: {e}"));
    }
    // No new messages; those in the handlers finish their requests first.
    consumer.stop().await;
    for h in handlers {
        let _ = h.await;
    }
    errln!("to-http: {}", shared.progress.summary());
    failure.map_or(0, tools::fail)
}

/// Sends `m` where the pool says and answers it: finished when every chosen endpoint took
/// it, requeued at the first that did not.
async fn handle(shared: &Shared, m: Message) {
    if shared.sample < 1.0 && rand::thread_rng().gen::<f64>() >= shared.sample {
        shared.progress.skipped();
        m.finish();
        return;
    }
    for d in shared.pool.choose() {
        let started = Instant::now();
        let result = shared.sender.send(d, &shared.targets[d], &m.body).await;
        let took = started.elapsed();
        shared.pool.mark(d, result.is_ok(), took);
        for line in shared.progress.sent(d, took, &result) {
            errln!("{line}");
        }
        if result.is_err() {
            shared.progress.requeued();
            m.requeue(None);
            return;
        }
    }
    shared.progress.forwarded();
    m.finish();
}
