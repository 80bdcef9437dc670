//! `nsqrs tail`: nsq_tail's command line and output (nsq-reference §4.1), plus `--format
//! json` with each message's metadata. Every printed message is finished after it has been
//! written to stdout.

use std::io::Write;
use std::sync::Arc;

use clap::{ArgAction, Args, ValueEnum};
use nsqrs::client::{Consumer, Message};
use nsqrs::common::goflags::parse_go_bool;
use rand::Rng;
use tokio::sync::mpsc;

use nsqrs::common::process::wait_for_signal;

use crate::tools;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TailFormat {
    /// The body and a newline, as nsq_tail prints it
    Raw,
    /// One JSON object a line: topic, id, timestamp, attempts, nsqd_address, body
    Json,
}

#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct TailArgs {
    /// NSQ topic (may be given multiple times)
    #[arg(long, value_name = "TOPIC", action = ArgAction::Append)]
    pub topic: Vec<String>,

    /// NSQ channel [default: tail<random 6 digits>#ephemeral]
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Option<String>,

    /// nsqd TCP address (may be given multiple times)
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub nsqd_tcp_address: Vec<String>,

    /// nsqlookupd HTTP address, host:port or http://host:port (may be given multiple times)
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub lookupd_http_address: Vec<String>,

    /// Max number of messages to allow in flight
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub max_in_flight: u64,

    /// Total messages to show, then exit (0 = forever)
    #[arg(short = 'n', long = "n", value_name = "N", default_value_t = 0)]
    pub total: u64,

    /// Prefix each message with its topic and " | "
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub print_topic: bool,

    /// How each message is printed
    #[arg(long, value_enum, default_value_t = TailFormat::Raw)]
    pub format: TailFormat,

    /// go-nsq consumer option key,value (may be given multiple times)
    #[arg(long, value_name = "KEY,VALUE", action = ArgAction::Append)]
    pub consumer_opt: Vec<String>,

    /// Print version string and exit
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub version: bool,
}

pub fn run(args: TailArgs) -> i32 {
    if args.version {
        outln!("{}", tools::tool_version("nsq_tail"));
        return 0;
    }
    if args.topic.is_empty() {
        return tools::usage("--topic is required");
    }
    if let Err(e) = tools::check_sources(&args.nsqd_tcp_address, &args.lookupd_http_address) {
        return tools::usage(e);
    }
    let channel = args
        .channel
        .clone()
        .unwrap_or_else(|| format!("tail{:06}#ephemeral", rand::thread_rng().gen_range(0..1_000_000)));
    let mut config = match tools::client_config(&args.consumer_opt) {
        Ok(c) => c,
        Err(e) => return tools::usage(format!("--consumer-opt: {e}")),
    };
    config.max_in_flight = args.max_in_flight;
    // Asking for more than will be printed would only requeue the rest.
    if args.total > 0 && args.total < config.max_in_flight {
        config.max_in_flight = args.total;
    }
    let mut consumers = Vec::new();
    for topic in &args.topic {
        match Consumer::new(topic, &channel, config.clone()) {
            Ok(c) => consumers.push(c),
            Err(e) => return tools::usage(e),
        }
    }
    tools::runtime().block_on(tail(args, consumers))
}

async fn tail(args: TailArgs, consumers: Vec<Consumer>) -> i32 {
    let (tx, mut rx) = mpsc::channel::<(Arc<str>, Message)>(1024);
    for c in &consumers {
        for addr in &args.nsqd_tcp_address {
            if let Err(e) = c.connect_to_nsqd(addr).await {
                stop_all(&consumers).await;
                return tools::fail(format!("connect to nsqd {addr}: {e}"));
            }
        }
        for addr in &args.lookupd_http_address {
            if let Err(e) = c.connect_to_lookupd(addr).await {
                stop_all(&consumers).await;
                return tools::fail(format!("lookupd {addr}: {e}"));
            }
        }
        let (c, tx) = (c.clone(), tx.clone());
        let topic: Arc<str> = c.topic().into();
        tokio::spawn(async move {
            while let Some(m) = c.recv().await {
                if tx.send((topic.clone(), m)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut shown = 0u64;
    let term = wait_for_signal();
    tokio::pin!(term);
    let code = loop {
        let m = tokio::select! {
            m = rx.recv() => m,
            signalled = &mut term => break signalled.map_or_else(tools::fail, |()| 0),
        };
        let Some((topic, m)) = m else { break 0 };
        if let Err(e) = write_message(&mut out, &args, &topic, &m) {
            // A closed pipe (`| head`) is a normal way for tail to end.
            break if e.kind() == std::io::ErrorKind::BrokenPipe {
                0
            } else {
                tools::fail(e)
            };
        }
        if rx.is_empty() {
            if let Err(e) = out.flush() {
                break if e.kind() == std::io::ErrorKind::BrokenPipe {
                    0
                } else {
                    tools::fail(e)
                };
            }
        }
        m.finish();
        shown += 1;
        if args.total > 0 && shown >= args.total {
            break 0;
        }
    };
    let _ = out.flush();
    drop(out);
    rx.close();
    // Messages already taken but not shown go back as the channel drops them.
    while rx.try_recv().is_ok() {}
    stop_all(&consumers).await;
    code
}

async fn stop_all(consumers: &[Consumer]) {
    for c in consumers {
        c.stop().await;
    }
}

fn write_message(out: &mut impl Write, args: &TailArgs, topic: &str, m: &Message) -> std::io::Result<()> {
    match args.format {
        TailFormat::Raw => {
            if args.print_topic {
                write!(out, "{topic} | ")?;
            }
            out.write_all(&m.body)?;
            out.write_all(b"\n")
        }
        TailFormat::Json => {
            let (body, is_base64) = nsqrs::protocol::body_text(&m.body);
            let v = serde_json::json!({
                "topic": topic,
                "id": m.id_str(),
                "timestamp": m.timestamp_ns,
                "attempts": m.attempts,
                "nsqd_address": m.nsqd_address,
                "body": body,
                "body_base64": is_base64,
            });
            writeln!(out, "{v}")
        }
    }
}
