//! `nsqrs replay`: republishes archived messages of a time window, in publish order, with
//! MPUB batches, optionally to another topic and rate-limited.
//!
//! Each batch the broker accepts is checkpointed, with the original → new ID mapping `trace`
//! shows, in the run's row of `replay_runs`, so an interrupted replay resumes after its last
//! recorded batch. The publishing loop is `nsqrs::archive::replayer`, shared with the admin's
//! replays; this file owns the command line, the run's identity and the progress bar.
//!
//! What an interruption costs: SIGINT/SIGTERM waits for the batch on the wire and records
//! it, so nothing is sent twice. A kill -9 (or a lost connection) between handing a batch to
//! the broker and recording the reply leaves that one batch marked sent but unrecorded: the
//! broker may or may not have stored it, and no reply can tell any more. The resumed run sends
//! that batch again, alone, says so, and records it as resent so `trace` shows its messages
//! may be in the target twice; never a gap.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{ArgAction, Args};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nsqrs::archive::replay::{self, parse_when, FileSource, Limits, Run, Source, Window};
use nsqrs::archive::replayer::{self, Event, Pace, MAX_BATCH_BYTES};
use nsqrs::archive::store::{Location, OpenMode};
use nsqrs::archive::trace::{format_ts, valid_id};
use nsqrs::archive::Store;
use nsqrs::client::Producer;
use nsqrs::common::goflags::parse_go_bool;
use nsqrs::common::process::wait_for_signal;
use nsqrs::common::time::now_ns;
use nsqrs::errln;

use crate::tools;

#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct ReplayArgs {
    /// Start of the window: a duration ago (2h) or an RFC 3339 time
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,

    /// End of the window (exclusive): a duration ago or an RFC 3339 time [default: now]
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,

    /// The archived topic to replay
    #[arg(long, value_name = "TOPIC")]
    pub topic: String,

    /// Publish to this topic instead of --topic
    #[arg(long, value_name = "TOPIC")]
    pub to_topic: Option<String>,

    /// At most this many messages a second (0 = as fast as the broker takes them)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub rate: u64,

    /// Replay only this message ID (may be given multiple times)
    #[arg(long, value_name = "MSG_ID", action = ArgAction::Append)]
    pub id: Vec<String>,

    /// Say what would be replayed; publish nothing
    #[arg(long, action = ArgAction::Set, value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = parse_go_bool)]
    pub dry_run: bool,

    /// SQLite file, or a postgres:// URL (also where runs are checkpointed)
    #[arg(long, value_name = "PATH|URL", default_value = "nsqrs.db")]
    pub db: String,

    /// Read messages from `to-file --format json` files instead of the archive
    #[arg(long, value_name = "PATH", action = ArgAction::Append)]
    pub from_file: Vec<PathBuf>,

    /// The nsqd to publish to (TCP)
    #[arg(long, value_name = "ADDR")]
    pub nsqd_tcp_address: Option<String>,

    /// Messages per MPUB (and per checkpoint); batches also stop at 4 MiB of bodies
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub batch_size: usize,

    /// Continue this run (its window and target come from the run)
    #[arg(long, value_name = "RUN_ID")]
    pub resume: Option<String>,

    /// go-nsq producer option key,value (may be given multiple times)
    #[arg(long, value_name = "KEY,VALUE", action = ArgAction::Append)]
    pub producer_opt: Vec<String>,
}

pub fn run(args: ReplayArgs) -> i32 {
    if args.since.is_none() && args.id.is_empty() && args.resume.is_none() {
        return tools::usage("--since (or --id, or --resume) is required");
    }
    if args.nsqd_tcp_address.is_none() && !args.dry_run {
        return tools::usage("--nsqd-tcp-address is required (or --dry-run)");
    }
    if let Some(bad) = args.id.iter().find(|i| !valid_id(i)) {
        return tools::usage(format!("--id {bad:?} is not a message ID (16 hex characters)"));
    }
    let to = args.to_topic.as_deref().unwrap_or(&args.topic);
    for t in [&args.topic, to] {
        if !nsqrs::protocol::names::is_valid_topic_name(t) {
            return tools::usage(format!("topic {t:?} is not a valid topic name"));
        }
    }
    if args.batch_size == 0 {
        return tools::usage("--batch-size must be positive");
    }
    let now = now_ns();
    let when = |flag: &str, value: &Option<String>| value.as_deref().map(|v| parse_when(v, now, flag));
    match (when("--since", &args.since), when("--until", &args.until)) {
        (Some(Err(e)), _) | (_, Some(Err(e))) => return tools::usage(e),
        (Some(Ok(since)), Some(Ok(until))) if until <= since => {
            return tools::usage(format!(
                "--until {} is not after --since {}: the window holds nothing",
                args.until.as_deref().unwrap_or_default(),
                args.since.as_deref().unwrap_or_default()
            ))
        }
        _ => {}
    }
    if let Err(e) = Location::parse(&args.db) {
        return tools::usage(e);
    }
    // Checked before the archive is touched, so a bad option leaves no run behind.
    let config = match tools::client_config(&args.producer_opt) {
        Ok(c) => c,
        Err(e) => return tools::usage(format!("--producer-opt: {e}")),
    };
    tools::runtime().block_on(async move {
        match replay_main(args, config).await {
            Ok(()) => 0,
            Err(e) => tools::fail(e),
        }
    })
}

async fn replay_main(args: ReplayArgs, config: nsqrs::client::Config) -> Result<(), String> {
    let now = now_ns();
    let since_ns = match &args.since {
        Some(s) => parse_when(s, now, "--since")?,
        None => i64::MIN,
    };
    let until_ns = match &args.until {
        Some(s) => parse_when(s, now, "--until")?,
        // Just past now: a message archived this instant is in.
        None => now + 1,
    };
    let to_topic = args.to_topic.clone().unwrap_or_else(|| args.topic.clone());
    let mode = if args.from_file.is_empty() {
        OpenMode::Existing
    } else {
        OpenMode::Create
    };
    let store = Store::open(&args.db, mode).await?;
    let mut ids: Vec<String> = args.id.iter().map(|i| i.to_ascii_lowercase()).collect();
    ids.sort();
    // The command as given: an identical command finds its unfinished run.
    let identity = serde_json::json!({
        "topic": args.topic, "to_topic": to_topic, "since": args.since, "until": args.until,
        "ids": ids, "files": args.from_file,
    })
    .to_string();

    let existing = match &args.resume {
        Some(id) => match replay::find_run(&store, id).await? {
            Some(r) if r.finished => return Err(format!("replay run {id} already finished")),
            Some(r) => Some(r),
            None => return Err(format!("no replay run {id} in the archive")),
        },
        None if args.dry_run => None,
        None => replay::find_unfinished(&store, &identity).await?,
    };
    let mut run = existing.clone().unwrap_or(Run {
        run_id: format!("{:016x}", now as u64),
        identity,
        from_topic: args.topic.clone(),
        to_topic,
        since_ns,
        until_ns,
        total: 0,
        done: 0,
        cursor: None,
        sent: None,
        finished: false,
    });
    let window = Window {
        topic: run.from_topic.clone(),
        since_ns: run.since_ns,
        until_ns: run.until_ns,
        ids,
    };
    let source = if args.from_file.is_empty() {
        Source::Archive(window)
    } else {
        Source::Files(FileSource::load(&args.from_file, &window)?)
    };
    let missing = source.missing_ids(&store).await?;
    if !missing.is_empty() {
        return Err(format!(
            "{} not archived for topic {} in the window: {}",
            tools::count(missing.len(), "message ID"),
            run.from_topic,
            missing.join(" ")
        ));
    }
    let remaining = source.count(&store, run.cursor.as_ref()).await?;
    if remaining == 0 && existing.is_none() {
        if let Source::Archive(_) = &source {
            if !replay::topic_archived(&store, &run.from_topic).await? {
                return Err(format!(
                    "the archive holds no message of topic {}",
                    run.from_topic
                ));
            }
        }
        errln!(
            "warning: no archived message of topic {} was published from {} to {}: nothing to replay",
            run.from_topic,
            format_ts(run.since_ns.max(0)),
            format_ts(run.until_ns)
        );
        return Ok(());
    }

    if args.dry_run {
        let one = Limits {
            messages: 1,
            bytes: MAX_BATCH_BYTES,
            upto: None,
        };
        let first = source.read(&store, run.cursor.as_ref(), one).await?;
        outln!(
            "would replay {} from topic {} to topic {}{}",
            tools::count(remaining as usize, "message"),
            run.from_topic,
            run.to_topic,
            first
                .first_ts()
                .map(|ts| format!(", the first published {}", format_ts(ts)))
                .unwrap_or_default()
        );
        return Ok(());
    }
    if existing.is_some() {
        errln!(
            "resuming replay run {} after {} of {}",
            run.run_id,
            run.done,
            tools::count(run.total as usize, "message")
        );
    } else {
        run.total = remaining;
        replay::create_run(&store, &run).await?;
    }

    let addr = args.nsqd_tcp_address.as_deref().unwrap_or_default();
    let producer = Producer::connect(addr, config)
        .await
        .map_err(|e| format!("connect to nsqd {addr}: {e}"))?;

    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(run.total as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {rate} ETA {eta}")
                .expect("static template")
                .with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&nsqrs::common::console::per_second(state.per_sec(), "msg"));
                    },
                ),
        );
        bar.set_position(run.done as u64);
        bar
    } else {
        ProgressBar::hidden()
    };
    // SIGINT/SIGTERM stops reading; the batch already submitted is awaited and recorded, so
    // an interrupted run resumes without republishing anything.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        // Without handlers the run cannot be interrupted safely, so it stops at once.
        if let Err(e) = wait_for_signal().await {
            errln!("error: signal handlers: {e}");
        }
        let _ = stop_tx.send(true);
    });
    let pace = Pace {
        batch_size: args.batch_size,
        rate: args.rate,
    };
    let outcome = replayer::drive(
        &store,
        &source,
        &mut run,
        &producer,
        pace,
        stop_rx,
        |event| match event {
            Event::Resending(n) => errln!(
                "note: the previous attempt stopped before the broker's reply to {} was \
                 recorded; sending them again (the broker may hold them twice)",
                tools::count(n, "message")
            ),
            Event::Progress(done) => bar.set_position(done as u64),
        },
    )
    .await?;
    if outcome.interrupted {
        return interrupted(&run);
    }
    let unknown_ids = outcome.unknown_ids;
    bar.finish_and_clear();
    producer.stop().await;
    outln!(
        "replayed {} from topic {} to topic {} (run {})",
        tools::count(run.done as usize, "message"),
        run.from_topic,
        run.to_topic,
        run.run_id
    );
    if unknown_ids > 0 {
        errln!(
            "note: the broker did not return the new message IDs; {unknown_ids} replays are recorded with their new ID unknown"
        );
    }
    Ok(())
}

fn interrupted(run: &Run) -> Result<(), String> {
    Err(format!(
        "interrupted after {} of {}; resume with --resume {} (or the same command)",
        run.done,
        tools::count(run.total as usize, "message"),
        run.run_id
    ))
}
