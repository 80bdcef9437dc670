//! `nsqrs trace`: one message's story from the archive `to-db` keeps — where and when it was
//! published, every delivery, requeue, timeout and finish per channel, and its replays — or
//! the messages whose body matches `--grep`/`--where` when the ID is not known.

use std::time::Duration;

use clap::{Args, ValueEnum};
use comfy_table::{presets, Table};
use nsqrs::archive::store::OpenMode;
use nsqrs::archive::trace::{self, format_duration, format_ts, Search, Trace};
use nsqrs::archive::{MessageRow, Store};
use nsqrs::common::goflags::parse_go_duration;
use nsqrs::common::http_client::{api_url, query_escape, HttpClient, HttpTimeouts, Response};
use nsqrs::common::time::now_ns;
use nsqrs::protocol::body_text;
use serde_json::json;

use crate::tools;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceFormat {
    /// The message, then a table per channel
    Table,
    /// One JSON object with every row, timeline and note
    Json,
}

#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct TraceArgs {
    /// The message ID (16 hex characters); leave out to search with --grep/--where
    #[arg(value_name = "MSG_ID")]
    pub id: Option<String>,

    /// SQLite file, or a postgres:// URL
    #[arg(long, value_name = "PATH|URL", default_value = "nsqrs.db")]
    pub db: String,

    /// How the history is printed
    #[arg(long, value_enum, default_value_t = TraceFormat::Table)]
    pub format: TraceFormat,

    /// Find messages whose body contains TEXT
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,

    /// Find messages whose JSON body has field KEY equal to VALUE
    #[arg(long = "where", value_name = "KEY=VALUE")]
    pub where_: Option<String>,

    /// Only search messages published within this long
    #[arg(long, value_name = "DURATION", value_parser = parse_go_duration)]
    pub since: Option<Duration>,

    /// Only search this topic
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,

    /// List at most this many matches, the newest (the count of all is still given) [default: 20]
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Also ask this nsqd (HTTP, host:port or http://host:port) for the message's live state
    /// (best effort)
    #[arg(long, value_name = "ADDR")]
    pub nsqd_http_address: Option<String>,
}

pub fn run(args: TraceArgs) -> i32 {
    let field = match args.where_.as_deref().map(trace::parse_where).transpose() {
        Ok(f) => f,
        Err(e) => return tools::usage(e),
    };
    if let Some(id) = &args.id {
        if !trace::valid_id(id) {
            return tools::usage(format!("{id:?} is not a message ID (16 hex characters)"));
        }
        // They narrow a search; with an ID there is nothing to search, and quietly ignoring
        // them would answer a question the user did not ask.
        let search_flags = [
            ("--grep", args.grep.is_some()),
            ("--where", field.is_some()),
            ("--since", args.since.is_some()),
            ("--limit", args.limit.is_some()),
        ];
        if let Some((flag, _)) = search_flags.iter().find(|(_, given)| *given) {
            return tools::usage(format!(
                "{flag} searches for messages when the ID is not known; give it without {id}"
            ));
        }
    } else if args.grep.is_none() && field.is_none() {
        return tools::usage("give a message ID, or --grep/--where to search for one");
    }
    if let Err(e) = nsqrs::archive::store::Location::parse(&args.db) {
        return tools::usage(e);
    }
    let live_from: Vec<String> = args.nsqd_http_address.iter().cloned().collect();
    if let Err(e) = tools::check_http_addresses("--nsqd-http-address", &live_from) {
        return tools::usage(e);
    }
    tools::runtime().block_on(async move {
        match trace_main(args, field).await {
            Ok(()) => 0,
            Err(e) => tools::fail(e),
        }
    })
}

async fn trace_main(args: TraceArgs, field: Option<(String, String)>) -> Result<(), String> {
    let store = Store::open(&args.db, OpenMode::Existing).await?;
    let id = match &args.id {
        Some(id) => id.to_ascii_lowercase(),
        None => {
            let search = Search {
                grep: args.grep.clone(),
                field,
                since_ns: args.since.map(|d| now_ns() - d.as_nanos() as i64),
                topic: args.topic.clone(),
                limit: args.limit.unwrap_or(20),
            };
            let found = trace::search(&store, &search).await?;
            match found.total {
                0 => return Err("no archived message matches".into()),
                1 => found.messages[0].id.clone(),
                _ => {
                    print_matches(&found, args.format);
                    return Ok(());
                }
            }
        }
    };
    let t = trace::by_id(&store, &id).await?;
    let notes = trace::gaps(&store, &t).await?;
    let live = match &args.nsqd_http_address {
        Some(addr) => Some((addr, live_state(addr, &t, &id, args.topic.as_deref()).await)),
        None => None,
    };
    match args.format {
        TraceFormat::Table => {
            print_table(&t, &id, &notes);
            if let Some((addr, live)) = &live {
                print_live(addr, live);
            }
        }
        TraceFormat::Json => print_json(&t, &id, &notes, live.as_ref().map(|(_, l)| l)),
    }
    Ok(())
}

/// What the broker said about the message now.
enum Live {
    /// `/message`'s answer.
    State(serde_json::Value),
    /// The broker holds nothing of it: every channel is done, or it was never there.
    NotHeld,
    Unavailable(String),
}

/// The broker's view of the message now. Never an error: the archive's answer stands on its
/// own.
async fn live_state(addr: &str, t: &Trace, id: &str, topic_arg: Option<&str>) -> Live {
    let timeouts = HttpTimeouts {
        connect: Duration::from_secs(2),
        request: Duration::from_secs(3),
    };
    let topic = t
        .messages
        .first()
        .map(|m| m.topic.as_str())
        .or_else(|| t.events.first().map(|e| e.topic.as_str()))
        .or(topic_arg)
        .unwrap_or("");
    if topic.is_empty() {
        return Live::Unavailable("the archive does not say which topic it was on (give --topic)".into());
    }
    let path = format!("/message?topic={}&id={}", query_escape(topic), query_escape(id));
    match HttpClient::new(timeouts).get(&api_url(addr, &path), None).await {
        Ok(Response { status: 200, body }) => match serde_json::from_slice(&body) {
            Ok(v) => Live::State(v),
            Err(e) => Live::Unavailable(format!("{addr} answered with invalid JSON: {e}")),
        },
        // A topic the broker no longer has holds nothing either.
        Ok(Response { status: 404, body }) if is_not_held(&body) => Live::NotHeld,
        Ok(Response { status, body }) => Live::Unavailable(format!(
            "{addr} answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        )),
        Err(e) => Live::Unavailable(e),
    }
}

fn is_not_held(body: &[u8]) -> bool {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    matches!(
        v["message"].as_str(),
        Some("MESSAGE_NOT_FOUND" | "TOPIC_NOT_FOUND")
    )
}

fn print_live(addr: &str, live: &Live) {
    outln!();
    let v = match live {
        Live::NotHeld => {
            outln!("live state on {addr}: nothing pending (done on every channel, or never there)");
            return;
        }
        Live::Unavailable(why) => {
            outln!("live state unavailable: {why}");
            return;
        }
        Live::State(v) => v,
    };
    outln!("live state on {addr}");
    if v["held_by_topic"].as_bool() == Some(true) {
        outln!("  held by the topic until its first channel exists");
    }
    if v["topic_paused"].as_bool() == Some(true) {
        outln!("  the topic is paused");
    }
    let channels = v["channels"].as_array().cloned().unwrap_or_default();
    if channels.is_empty() {
        return;
    }
    let mut table = Table::new();
    table.load_style(presets::UTF8_FULL_CONDENSED);
    table.set_header(["channel", "state", "attempts", "detail"]);
    for c in &channels {
        let attempts = c["attempts"].as_u64().map(|a| a.to_string()).unwrap_or_default();
        let (state, mut detail) = match c["state"].as_str().unwrap_or("") {
            "in_flight" => {
                let client = &c["client"];
                let who = match (client["client_id"].as_str(), client["remote_address"].as_str()) {
                    (Some(id), Some(addr)) if !id.is_empty() => format!("{id} ({addr})"),
                    (_, Some(addr)) => addr.to_string(),
                    _ => "a client".to_string(),
                };
                let until = c["timeout_at"].as_i64().map(format_ts).unwrap_or_default();
                ("in flight", format!("to {who}, times out {until}"))
            }
            "deferred" => {
                let due = c["due"].as_i64().map(format_ts).unwrap_or_default();
                ("deferred", format!("until {due}"))
            }
            "queued" => ("queued", "waiting for a consumer".to_string()),
            "before_channel" => ("-", "published before the channel existed".to_string()),
            "done" => ("done", "finished, cancelled or dropped".to_string()),
            other => (other, String::new()),
        };
        if c["paused"].as_bool() == Some(true) {
            detail.push_str(" (channel paused)");
        }
        table.add_row([c["channel"].as_str().unwrap_or(""), state, &attempts, &detail]);
    }
    outln!("{table}");
}

fn live_json(live: &Live) -> serde_json::Value {
    match live {
        Live::State(v) => v.clone(),
        Live::NotHeld => json!({ "held": false }),
        Live::Unavailable(why) => json!({ "error": why }),
    }
}

fn preview(body: &[u8]) -> String {
    let (text, b64) = body_text(body);
    let mut p: String = text
        .chars()
        .take(120)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > 120 {
        p.push('…');
    }
    if b64 {
        format!("(base64) {p}")
    } else {
        p
    }
}

fn print_matches(found: &trace::Found, format: TraceFormat) {
    match format {
        TraceFormat::Json => {
            let v: Vec<_> = found.messages.iter().map(message_json).collect();
            outln!("{}", json!({ "matches": v, "total": found.total }));
        }
        TraceFormat::Table => {
            let mut table = Table::new();
            table.load_style(presets::UTF8_FULL_CONDENSED);
            table.set_header(["id", "topic", "nsqd", "published", "body"]);
            for m in &found.messages {
                table.add_row([
                    m.id.clone(),
                    m.topic.clone(),
                    m.nsqd.clone(),
                    format_ts(m.ts),
                    preview(&m.body),
                ]);
            }
            if found.messages.len() < found.total {
                outln!(
                    "{} messages match; the newest {} are listed (--limit); trace one by its id",
                    found.total,
                    found.messages.len()
                );
            } else {
                outln!("{} messages match; trace one by its id", found.total);
            }
            outln!("{table}");
        }
    }
}

fn message_json(m: &MessageRow) -> serde_json::Value {
    let (body, b64) = body_text(&m.body);
    json!({
        "id": m.id, "topic": m.topic, "nsqd": m.nsqd, "timestamp": m.ts,
        "attempts": m.attempts, "size": m.body.len(), "body": body, "body_base64": b64,
        "archived_at": m.archived_at,
    })
}

fn print_table(t: &Trace, id: &str, notes: &[String]) {
    outln!("message {id}");
    for m in &t.messages {
        outln!("  topic      {}", m.topic);
        outln!("  nsqd       {}", m.nsqd);
        outln!("  published  {}", format_ts(m.ts));
        outln!("  size       {}", tools::count(m.body.len(), "byte"));
        outln!("  body       {}", preview(&m.body));
    }
    if t.messages.is_empty() {
        outln!("  (body not archived: only its events are)");
    }
    for note in notes {
        outln!("note: {note}");
    }
    for (channel, steps) in trace::timelines(t) {
        outln!();
        if channel.is_empty() {
            outln!("timeline (no channel events archived)");
        } else {
            outln!("channel {channel}");
        }
        let mut table = Table::new();
        table.load_style(presets::UTF8_FULL_CONDENSED);
        table.set_header(["time", "+", "event", "client"]);
        for s in steps {
            table.add_row([
                format_ts(s.ts),
                s.elapsed_ns.map(format_duration).unwrap_or_default(),
                s.what,
                s.client,
            ]);
        }
        outln!("{table}");
    }
    if !t.replays.is_empty() {
        outln!();
        let mut table = Table::new();
        table.load_style(presets::UTF8_FULL_CONDENSED);
        table.set_header(["time", "event", "run"]);
        let mut unknown = false;
        for r in &t.replays {
            let new = r.new_id.clone().unwrap_or_else(|| {
                unknown = true;
                "<id unknown>".into()
            });
            let again = if r.resent {
                " (sent again after the run was killed: may be there twice)"
            } else {
                ""
            };
            table.add_row([
                format_ts(r.replayed_at),
                format!("replayed as {new} into {}{again}", r.to_topic),
                r.run_id.clone(),
            ]);
        }
        outln!("replays");
        outln!("{table}");
        if unknown {
            outln!("(the broker did not return the new IDs when these were replayed)");
        }
    }
}

fn print_json(t: &Trace, id: &str, notes: &[String], live: Option<&Live>) {
    let timelines: Vec<_> = trace::timelines(t)
        .into_iter()
        .map(|(channel, steps)| {
            let steps: Vec<_> = steps
                .into_iter()
                .map(|s| {
                    json!({"ts": s.ts, "time": format_ts(s.ts), "elapsed_ns": s.elapsed_ns,
                           "event": s.kind, "attempt": s.attempt, "client": s.client, "what": s.what})
                })
                .collect();
            json!({"channel": channel, "steps": steps})
        })
        .collect();
    let replays: Vec<_> = t
        .replays
        .iter()
        .map(|r| {
            json!({"run_id": r.run_id, "new_id": r.new_id, "from_topic": r.from_topic,
                   "to_topic": r.to_topic, "replayed_at": r.replayed_at, "resent": r.resent})
        })
        .collect();
    let mut out = json!({
        "id": id,
        "messages": t.messages.iter().map(message_json).collect::<Vec<_>>(),
        "timelines": timelines,
        "replays": replays,
        "notes": notes,
    });
    if let Some(live) = live {
        out["live"] = live_json(live);
    }
    outln!("{out}");
}
