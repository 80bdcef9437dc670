//! `nsqrs pub`: to_nsq's command line (nsq-reference §4.4) plus messages given as arguments,
//! `--defer` and MPUB batching. Every message goes to every `--nsqd-tcp-address`.
//!
//! Stdin is read on its own thread and batched by what is already available, so a pipe that
//! trickles (`tail -f | nsqrs pub`) publishes each line at once while a file goes out in full
//! MPUB batches.

use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use bytes::Bytes;
use clap::{ArgAction, Args};
use indicatif::{ProgressBar, ProgressStyle};
use nsqrs::client::{PendingReply, Producer, Publish};
use nsqrs::common::goflags::{parse_go_bool, parse_go_duration};
use tokio::sync::mpsc;

use crate::tools;

// Prints `OK <count> <nsqd address>` for each nsqd once everything is acknowledged.
#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct PubArgs {
    /// NSQ topic to publish to
    #[arg(long, value_name = "TOPIC", required_unless_present = "version")]
    pub topic: Option<String>,

    /// nsqd TCP address (may be given multiple times; every message goes to each)
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub nsqd_tcp_address: Vec<String>,

    /// Character that separates messages on stdin (a single byte)
    #[arg(long, value_name = "CHAR", default_value = "\n", hide_default_value = true)]
    pub delimiter: String,

    /// Throttle to this many messages per second (0 = no limit)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub rate: u64,

    /// Deliver each message only after this delay (DPUB), Go duration syntax
    #[arg(long = "defer", value_name = "DURATION", value_parser = parse_go_duration)]
    pub defer: Option<Duration>,

    /// Messages per MPUB when reading stdin (1 publishes each with PUB)
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub batch_size: usize,

    /// go-nsq producer option key,value (may be given multiple times)
    #[arg(long, value_name = "KEY,VALUE", action = ArgAction::Append)]
    pub producer_opt: Vec<String>,

    /// Print version string and exit
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub version: bool,

    /// Messages to publish instead of reading stdin
    #[arg(value_name = "MESSAGE")]
    pub messages: Vec<String>,
}

/// Replies allowed outstanding per connection before waiting for the oldest.
const PIPELINE: usize = 16;

pub fn run(args: PubArgs) -> i32 {
    if args.version {
        outln!("{}", tools::tool_version("to_nsq"));
        return 0;
    }
    let topic = args.topic.clone().unwrap_or_default();
    if !nsqrs::protocol::names::is_valid_topic_name(&topic) {
        return tools::usage(format!("--topic {topic:?} is not a valid topic name"));
    }
    if args.nsqd_tcp_address.is_empty() {
        return tools::usage("--nsqd-tcp-address required");
    }
    let delimiter = match args.delimiter.as_bytes() {
        [b] => *b,
        _ => return tools::usage("--delimiter must be a single byte"),
    };
    if args.batch_size == 0 {
        return tools::usage("--batch-size must be at least 1");
    }
    let config = match tools::client_config(&args.producer_opt) {
        Ok(c) => c,
        Err(e) => return tools::usage(format!("--producer-opt: {e}")),
    };
    tools::runtime().block_on(async move {
        match publish_all(&args, &topic, delimiter, config).await {
            Ok(done) => {
                // What was acknowledged is printed even when a later message was refused, so
                // a script knows exactly which messages the broker has.
                for line in &done.lines {
                    outln!("{line}");
                }
                match done.refused {
                    None => 0,
                    Some(e) => tools::fail(e),
                }
            }
            Err(e) => tools::fail(e),
        }
    })
}

/// What a run published: the lines to print, and the refusal that stopped it early, if any.
struct Published {
    lines: Vec<String>,
    refused: Option<String>,
}

/// Publishes everything, stopping at the first refusal. Errors before anything could be sent
/// (connect, stdin) are `Err`; a refusal mid-stream is reported in `Published` beside what
/// was acknowledged before it.
async fn publish_all(
    args: &PubArgs,
    topic: &str,
    delimiter: u8,
    config: nsqrs::client::Config,
) -> Result<Published, String> {
    let mut producers = Vec::new();
    for addr in &args.nsqd_tcp_address {
        let p = Producer::connect(addr, config.clone())
            .await
            .map_err(|e| format!("connect to nsqd {addr}: {e}"))?;
        producers.push(Sender {
            producer: p,
            pending: VecDeque::new(),
            count: 0,
            ids: Vec::new(),
            refused: None,
        });
    }

    let (tx, mut rx) = mpsc::channel::<Bytes>(4096);
    let (err_tx, mut err_rx) = tokio::sync::oneshot::channel::<String>();
    let progress = if args.messages.is_empty() {
        stdin_reader(delimiter, tx, err_tx)
    } else {
        let messages: Vec<Bytes> = args
            .messages
            .iter()
            .filter(|m| !m.is_empty())
            .map(|m| Bytes::from(m.clone()))
            .collect();
        tokio::spawn(async move {
            for m in messages {
                if tx.send(m).await.is_err() {
                    return;
                }
            }
        });
        None
    };

    // With a rate or a delay, messages go one by one (PUB/DPUB); otherwise in MPUB batches.
    let batch_size = if args.rate > 0 || args.defer.is_some() {
        1
    } else {
        args.batch_size
    };
    let mut ticker = (args.rate > 0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < batch_size {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        let bytes: u64 = batch.iter().map(|b| b.len() as u64 + 1).sum();
        for s in producers.iter_mut() {
            let publish = match (args.defer, batch.len()) {
                (Some(delay), _) => Publish::Dpub {
                    topic: topic.to_string(),
                    delay,
                    body: batch[0].clone(),
                },
                (None, 1) => Publish::Pub {
                    topic: topic.to_string(),
                    body: batch[0].clone(),
                },
                (None, _) => Publish::Mpub {
                    topic: topic.to_string(),
                    bodies: batch.clone(),
                },
            };
            s.send(publish).await;
        }
        if let Some(pb) = &progress {
            pb.inc(bytes);
        }
        if producers.iter().any(|s| s.refused.is_some()) {
            break;
        }
    }
    drop(rx);
    if let Ok(e) = err_rx.try_recv() {
        return Err(format!("read stdin: {e}"));
    }
    let mut lines = Vec::new();
    let mut refused = None;
    let several = producers.len() > 1;
    for mut s in producers {
        s.drain().await;
        if let Some(e) = s.refused.take() {
            refused.get_or_insert(format!(
                "{e}; stopped with {} published to {}",
                tools::count(s.count, "message"),
                s.producer.addr()
            ));
        }
        // One ID a line, in publish order; prefixed with the nsqd when there are several.
        for id in &s.ids {
            match several {
                true => lines.push(format!("{} {id}", s.producer.addr())),
                false => lines.push(id.to_string()),
            }
        }
        lines.push(format!("OK {} {}", s.count, s.producer.addr()));
        s.producer.stop().await;
    }
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    Ok(Published { lines, refused })
}

struct Sender {
    producer: Producer,
    pending: VecDeque<PendingReply>,
    count: usize,
    /// Message IDs, when the server returns them (nsqrs does; stock nsqd answers plain `OK`).
    ids: Vec<nsqrs::protocol::MessageId>,
    /// The first refusal; nothing more is sent after it.
    refused: Option<String>,
}

impl Sender {
    async fn send(&mut self, publish: Publish) {
        if self.refused.is_some() {
            return;
        }
        match self.producer.submit(publish).await {
            Ok(reply) => self.pending.push_back(reply),
            Err(e) => self.refuse(e),
        }
        while self.pending.len() > PIPELINE {
            self.wait_one().await;
        }
    }

    async fn wait_one(&mut self) {
        if let Some(reply) = self.pending.pop_front() {
            match reply.await {
                Ok(r) => {
                    self.count += r.count;
                    self.ids.extend(r.ids);
                }
                Err(e) => self.refuse(e),
            }
        }
    }

    /// Keeps the first error: what follows a fatal one (a closed connection) says nothing new.
    fn refuse(&mut self, e: nsqrs::client::PublishError) {
        if self.refused.is_none() {
            self.refused = Some(format!("publish to {}: {e}", self.producer.addr()));
        }
    }

    async fn drain(&mut self) {
        while !self.pending.is_empty() {
            self.wait_one().await;
        }
    }
}

/// Reads stdin on a thread, splitting on `delimiter` and skipping empty messages as to_nsq
/// does. Returns a byte progress bar when stdin is a regular file of known size.
fn stdin_reader(
    delimiter: u8,
    tx: mpsc::Sender<Bytes>,
    err: tokio::sync::oneshot::Sender<String>,
) -> Option<ProgressBar> {
    let size = stdin_file_size();
    let progress = size.filter(|_| std::io::stderr().is_terminal()).map(|len| {
        let pb = ProgressBar::new(len);
        pb.set_style(
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .expect("valid progress template"),
        );
        pb
    });
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut reader = stdin.lock();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(delimiter, &mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    let _ = err.send(e.to_string());
                    return;
                }
            }
            if buf.last() == Some(&delimiter) {
                buf.pop();
            }
            if buf.is_empty() {
                continue;
            }
            if tx.blocking_send(Bytes::copy_from_slice(&buf)).is_err() {
                return;
            }
        }
    });
    progress
}

fn stdin_file_size() -> Option<u64> {
    let meta = std::fs::metadata("/dev/stdin").ok()?;
    meta.is_file().then_some(meta.len())
}
