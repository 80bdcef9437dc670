//! Queries behind `nsqrs trace`: one message's archived rows, its events and replays, and
//! the search by body text or JSON field used when the ID is not known.

use serde_json::Value as Json;

use super::schema::RECORD_SPAN_NS;
use super::store::{Row, Store, Value, EVENT_COLUMNS, MESSAGE_COLUMNS};
use super::{EventRow, MessageRow};

/// A replay of an archived message, as `replay` recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayRow {
    pub run_id: String,
    pub original_id: String,
    /// `None` when the broker did not return the IDs of what it accepted.
    pub new_id: Option<String>,
    pub from_topic: String,
    pub to_topic: String,
    pub replayed_at: i64,
    /// Sent again by a run resumed after it was killed before recording the broker's reply,
    /// so the target topic may have it twice.
    pub resent: bool,
}

impl ReplayRow {
    /// A row of `replays`, where replays were recorded one per message before
    /// `replay_batches`.
    fn from_row(r: Row) -> ReplayRow {
        ReplayRow {
            run_id: r[0].text(),
            original_id: r[1].text(),
            new_id: r[2].opt_text(),
            from_topic: r[3].text(),
            to_topic: r[4].text(),
            replayed_at: r[5].int(),
            resent: false,
        }
    }
}

/// Everything the archive knows about one message ID.
#[derive(Debug, Clone)]
pub struct Trace {
    /// One row per (topic, nsqd) that holds the ID; IDs are only unique per nsqd.
    pub messages: Vec<MessageRow>,
    /// In timeline order.
    pub events: Vec<EventRow>,
    pub replays: Vec<ReplayRow>,
}

/// A message ID as nsqd writes it: 16 lowercase or uppercase hex characters.
pub fn valid_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

pub async fn by_id(store: &Store, id: &str) -> Result<Trace, String> {
    let id = id.to_ascii_lowercase();
    let messages: Vec<MessageRow> = store
        .query(
            &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1 ORDER BY ts, topic, nsqd"),
            vec![Value::from(id.as_str())],
        )
        .await?
        .into_iter()
        .map(MessageRow::from_row)
        .collect();
    let events: Vec<EventRow> = store
        .query(
            // Ties on the same nanosecond keep the lifecycle's order: a message is delivered
            // before it can be finished.
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 ORDER BY ts, attempt, CASE kind \
                 WHEN 'published' THEN 0 WHEN 'deferred' THEN 1 WHEN 'delivered' THEN 2 \
                 WHEN 'touched' THEN 3 ELSE 4 END"
            ),
            vec![Value::from(id.as_str())],
        )
        .await?
        .into_iter()
        .map(EventRow::from_row)
        .collect();
    if messages.is_empty() && events.is_empty() {
        return Err(format!("message {id} is not in the archive"));
    }
    let mut replays: Vec<ReplayRow> = store
        .query(
            "SELECT run_id, original_id, new_id, from_topic, to_topic, replayed_at FROM replays \
             WHERE original_id = $1",
            vec![Value::from(id.as_str())],
        )
        .await?
        .into_iter()
        .map(ReplayRow::from_row)
        .collect();
    replays.extend(batched_replays(store, &id, &messages, &events).await?);
    replays.sort_by_key(|r| r.replayed_at);
    Ok(Trace {
        messages,
        events,
        replays,
    })
}

/// The replays of `id` recorded in `replay_batches`. Those rows are found by publish time
/// (see `schema::RECORD_SPAN_NS`), which the message's archived copies give, or else its
/// publish events (a message replayed from to-file files may have no archived copy).
async fn batched_replays(
    store: &Store,
    id: &str,
    messages: &[MessageRow],
    events: &[EventRow],
) -> Result<Vec<ReplayRow>, String> {
    let mut spots: Vec<(&str, i64)> = messages.iter().map(|m| (m.topic.as_str(), m.ts)).collect();
    for e in events.iter().filter(|e| e.kind == "published") {
        let detail: Json = serde_json::from_str(&e.detail).unwrap_or(Json::Null);
        if let Some(ts) = detail["timestamps"].as_i64() {
            spots.push((e.topic.as_str(), ts));
        }
    }
    spots.sort_unstable();
    spots.dedup();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (topic, ts) in spots {
        let rows = store
            .query(
                "SELECT run_id, seq, original_ids, new_ids, from_topic, to_topic, replayed_at, resent \
                 FROM replay_batches WHERE from_topic = $1 AND first_ts >= $2 AND first_ts <= $3 \
                 AND last_ts >= $3",
                vec![topic.into(), ts.saturating_sub(RECORD_SPAN_NS).into(), ts.into()],
            )
            .await?;
        for r in rows {
            if !seen.insert((r[0].text(), r[1].int())) {
                continue;
            }
            let new_ids = r[3].opt_text();
            for (i, original) in r[2].text().split(' ').enumerate() {
                if original != id {
                    continue;
                }
                out.push(ReplayRow {
                    run_id: r[0].text(),
                    original_id: id.to_string(),
                    new_id: new_ids
                        .as_deref()
                        .and_then(|n| n.split(' ').nth(i))
                        .map(str::to_string),
                    from_topic: r[4].text(),
                    to_topic: r[5].text(),
                    replayed_at: r[6].int(),
                    resent: r[7].int() != 0,
                });
            }
        }
    }
    Ok(out)
}

/// Why the archived timeline of `t` may lack steps, in words for the reader: the brokers'
/// `batch` lines (`event_sources`) say in which mode, and for which topics, they reported
/// events around the time the message lived. Empty when nothing says steps are missing.
pub async fn gaps(store: &Store, t: &Trace) -> Result<Vec<String>, String> {
    let topic = t
        .messages
        .first()
        .map(|m| m.topic.clone())
        .or_else(|| t.events.first().map(|e| e.topic.clone()))
        .unwrap_or_default();
    let published = t
        .events
        .iter()
        .find(|e| e.kind == "published")
        .map(|e| e.ts)
        .or_else(|| t.messages.first().map(|m| m.ts))
        .unwrap_or(0);
    if t.events.is_empty() {
        return Ok(vec![format!(
            "no lifecycle events are archived for this message, only its body: to-db ran without \
             --events, or the broker ran with --lifecycle-events=off or did not report topic \
             {topic} (--lifecycle-events-topics), or it is not nsqrs"
        )]);
    }
    let mut nsqds: Vec<&str> = t.events.iter().map(|e| e.nsqd.as_str()).collect();
    nsqds.sort_unstable();
    nsqds.dedup();
    let mut notes = Vec::new();
    for nsqd in nsqds {
        let spans = store
            .query(
                "SELECT mode, topics, first_ts, last_ts FROM event_sources WHERE nsqd = $1 \
                 AND last_ts >= $2 ORDER BY first_ts",
                vec![nsqd.into(), published.into()],
            )
            .await?;
        let known = !spans.is_empty()
            || !store
                .query(
                    "SELECT mode FROM event_sources WHERE nsqd = $1",
                    vec![nsqd.into()],
                )
                .await?
                .is_empty();
        for span in spans {
            let (mode, topics) = (span[0].text(), span[1].text());
            let when = format!(
                "from {} to {}",
                format_ts(span[2].int()),
                format_ts(span[3].int())
            );
            if mode != "all" {
                notes.push(format!(
                    "the timeline may be incomplete: {nsqd} ran with --lifecycle-events={mode} {when}, \
                     so deliveries, requeues, timeouts and finishes then were not reported"
                ));
            }
            let reported =
                topics.is_empty() || regex::Regex::new(&topics).is_ok_and(|re| re.is_match(&topic));
            if !reported {
                notes.push(format!(
                    "the timeline may be incomplete: {nsqd} reported only topics matching \
                     --lifecycle-events-topics={topics} {when}, which {topic} does not"
                ));
            }
        }
        let only_published = t
            .events
            .iter()
            .filter(|e| e.nsqd == nsqd)
            .all(|e| e.channel.is_empty());
        if !known && only_published {
            notes.push(format!(
                "only the publish is archived: {nsqd} may have run with --lifecycle-events=publish \
                 (the archive predates the record of the brokers' modes)"
            ));
        }
    }
    Ok(notes)
}

/// What to look for when the ID is not known.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// Bytes the body must contain.
    pub grep: Option<String>,
    /// A top-level field of a JSON body and the value it must have (compared as text, so
    /// `--where n=5` matches both `5` and `"5"`).
    pub field: Option<(String, String)>,
    pub since_ns: Option<i64>,
    pub topic: Option<String>,
    pub limit: usize,
}

/// Parses `key=value` for `--where`.
pub fn parse_where(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("--where {s:?} is not key=value")),
    }
}

impl Search {
    fn matches(&self, body: &[u8]) -> bool {
        if let Some(g) = &self.grep {
            let g = g.as_bytes();
            if !g.is_empty() && !body.windows(g.len()).any(|w| w == g) {
                return false;
            }
        }
        if let Some((k, v)) = &self.field {
            let Ok(Json::Object(obj)) = serde_json::from_slice::<Json>(body) else {
                return false;
            };
            match obj.get(k) {
                Some(Json::String(s)) if s == v => {}
                Some(other) if serde_json::from_str::<Json>(v).ok().as_ref() == Some(other) => {}
                _ => return false,
            }
        }
        true
    }
}

/// What a search found: the newest `limit` matches, newest first, and how many there are.
#[derive(Debug, Clone)]
pub struct Found {
    pub messages: Vec<MessageRow>,
    pub total: usize,
}

/// Newest first, at most `limit`, with the count of every match. The filters run here rather
/// than in SQL so both engines answer alike (JSON and byte functions differ between them);
/// `since` and `topic` narrow the scan through the index first.
pub async fn search(store: &Store, s: &Search) -> Result<Found, String> {
    let mut sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE ts >= $1");
    let mut params = vec![Value::Int(s.since_ns.unwrap_or(i64::MIN))];
    if let Some(t) = &s.topic {
        sql.push_str(" AND topic = $2");
        params.push(Value::from(t.as_str()));
    }
    sql.push_str(" ORDER BY ts DESC");
    let rows = store.query(&sql, params).await?;
    let mut found = Found {
        messages: Vec::new(),
        total: 0,
    };
    for m in rows.into_iter().map(MessageRow::from_row) {
        if s.matches(&m.body) {
            found.total += 1;
            if found.messages.len() < s.limit.max(1) {
                found.messages.push(m);
            }
        }
    }
    Ok(found)
}

/// One line of a channel's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub ts: i64,
    /// Since the message was published.
    pub elapsed_ns: Option<i64>,
    pub kind: String,
    pub attempt: i64,
    pub client: String,
    /// Human wording: "delivered, attempt 2", "finished, end-to-end 1.2ms".
    pub what: String,
}

/// The timeline per channel (in first-seen order), each opening with the publish. Messages
/// archived without events still get their publish and the attempt to-db saw.
pub fn timelines(t: &Trace) -> Vec<(String, Vec<Step>)> {
    let published = t
        .events
        .iter()
        .find(|e| e.kind == "published")
        .map(|e| e.ts)
        .or_else(|| t.messages.first().map(|m| m.ts));
    let step = |e: &EventRow| {
        let detail: Json = serde_json::from_str(&e.detail).unwrap_or(Json::Null);
        let elapsed = published.map(|p| e.ts - p);
        let what = match e.kind.as_str() {
            "published" => match detail["deliver_at"].as_i64() {
                Some(at) if at > 0 => format!("published, deferred to {}", format_ts(at)),
                _ => "published".to_string(),
            },
            "delivered" => format!("delivered, attempt {}", e.attempt),
            "requeued" => match detail["delay_ms"].as_i64() {
                Some(ms) if ms > 0 => format!("requeued, delay {ms}ms"),
                _ => "requeued".to_string(),
            },
            "timed_out" => "timed out".to_string(),
            "finished" => match elapsed {
                Some(ns) => format!("finished, end-to-end {}", format_duration(ns)),
                None => "finished".to_string(),
            },
            "deferred" => match detail["due"].as_i64() {
                Some(due) => format!("deferred until {}", format_ts(due)),
                None => "deferred".to_string(),
            },
            "dropped" => "dropped (ephemeral channel full)".to_string(),
            "cancelled" => match detail["due"].as_i64() {
                Some(due) => format!("cancelled (was deferred until {})", format_ts(due)),
                None => "cancelled (was deferred)".to_string(),
            },
            other => other.replace('_', " "),
        };
        Step {
            ts: e.ts,
            elapsed_ns: elapsed,
            kind: e.kind.clone(),
            attempt: e.attempt,
            client: e.client.clone(),
            what,
        }
    };
    let publish_steps: Vec<Step> = match t
        .events
        .iter()
        .filter(|e| e.channel.is_empty())
        .collect::<Vec<_>>()
    {
        topic_events if !topic_events.is_empty() => topic_events.into_iter().map(step).collect(),
        _ => t
            .messages
            .first()
            .map(|m| Step {
                ts: m.ts,
                elapsed_ns: Some(0),
                kind: "published".into(),
                attempt: 0,
                client: String::new(),
                what: "published".into(),
            })
            .into_iter()
            .collect(),
    };
    let mut channels: Vec<String> = Vec::new();
    for e in &t.events {
        if !e.channel.is_empty() && !channels.contains(&e.channel) {
            channels.push(e.channel.clone());
        }
    }
    if channels.is_empty() {
        return vec![(String::new(), publish_steps)];
    }
    channels
        .into_iter()
        .map(|c| {
            let mut steps = publish_steps.clone();
            steps.extend(t.events.iter().filter(|e| e.channel == c).map(step));
            (c, steps)
        })
        .collect()
}

/// RFC 3339 in UTC with microseconds.
pub fn format_ts(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000) as u32)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_else(|| ns.to_string())
}

/// Go-style short durations: 850µs, 12.3ms, 4.5s, 2m3s.
pub fn format_duration(ns: i64) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let ns = ns.unsigned_abs();
    let s = if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1}ms", ns as f64 / 1e6)
    } else if ns < 60_000_000_000 {
        format!("{:.3}s", ns as f64 / 1e9)
    } else {
        let secs = ns / 1_000_000_000;
        format!("{}m{}s", secs / 60, secs % 60)
    };
    format!("{sign}{s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, channel: &str, ts: i64, attempt: i64) -> EventRow {
        EventRow {
            id: "0123456789abcdef".into(),
            topic: "t".into(),
            channel: channel.into(),
            kind: kind.into(),
            ts,
            nsqd: "h:4150".into(),
            client: "c".into(),
            attempt,
            detail: "{}".into(),
        }
    }

    #[test]
    fn timelines_per_channel_open_with_the_publish() {
        let t = Trace {
            messages: vec![],
            events: vec![
                ev("published", "", 100, 0),
                ev("delivered", "a", 200, 1),
                ev("delivered", "b", 210, 1),
                ev("finished", "a", 1_500_100, 0),
            ],
            replays: vec![],
        };
        let tl = timelines(&t);
        assert_eq!(tl.len(), 2);
        assert_eq!(tl[0].0, "a");
        let what: Vec<&str> = tl[0].1.iter().map(|s| s.what.as_str()).collect();
        assert_eq!(
            what,
            ["published", "delivered, attempt 1", "finished, end-to-end 1.5ms"]
        );
        assert_eq!(tl[1].1.len(), 2);
    }

    #[test]
    fn search_filters() {
        let s = Search {
            grep: Some("ord".into()),
            field: Some(("n".into(), "5".into())),
            ..Search::default()
        };
        assert!(s.matches(br#"{"ord":1,"n":5}"#));
        assert!(!s.matches(br#"{"ord":1,"n":6}"#));
        assert!(!s.matches(br#"{"x":1,"n":5}"#));
        assert!(parse_where("a=b=c").unwrap() == ("a".into(), "b=c".into()));
        assert!(parse_where("nokey").is_err());
    }
}
