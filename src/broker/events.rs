//! Lifecycle events (docs/events.md): what happened to which messages, reported as batches of
//! JSON lines on the reserved topic `nsqrs.events`, which any NSQ consumer can read.
//!
//! The hot paths only append message IDs to an in-memory group; a line is written when the
//! group changes (another kind, channel or client) and a flusher publishes the buffer every
//! few milliseconds. FINs from one client on one channel therefore cost one line per run, not
//! one per message.

use std::fmt::Write as _;
use std::sync::OnceLock;

use parking_lot::Mutex;

use crate::protocol::guid::now_ns;
use crate::protocol::MessageId;

/// The reserved topic events are published on.
pub const EVENTS_TOPIC: &str = "nsqrs.events";

/// Which events are reported (`--lifecycle-events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventMode {
    Off,
    /// Only `published`: who published what, when.
    Publish,
    All,
}

impl EventMode {
    pub fn parse(s: &str) -> Result<EventMode, String> {
        match s {
            "off" => Ok(EventMode::Off),
            "publish" => Ok(EventMode::Publish),
            "all" => Ok(EventMode::All),
            other => Err(format!(
                "--lifecycle-events must be off, publish or all (got {other:?})"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Published,
    Delivered,
    Finished,
    Requeued,
    TimedOut,
    Touched,
    Deferred,
    Dropped,
    Cancelled,
    Deleted,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Published => "published",
            Kind::Delivered => "delivered",
            Kind::Finished => "finished",
            Kind::Requeued => "requeued",
            Kind::TimedOut => "timed_out",
            Kind::Touched => "touched",
            Kind::Deferred => "deferred",
            Kind::Dropped => "dropped",
            Kind::Cancelled => "cancelled",
            Kind::Deleted => "deleted",
        }
    }
}

/// Where an event happened: the fields a group shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place<'a> {
    pub topic: &'a str,
    pub channel: Option<&'a str>,
    pub client: Option<&'a str>,
}

/// A place with owned strings, built lazily by `record_keyed`.
pub struct OwnedPlace {
    pub topic: String,
    pub channel: Option<String>,
    pub client: Option<String>,
}

/// The group being accumulated: extended while events keep the same kind and place.
struct Group {
    /// Identifies the place cheaply (channel address, client id) for per-message events.
    key: Option<(usize, u64)>,
    kind: Kind,
    ts: i64,
    topic: String,
    channel: Option<String>,
    client: Option<String>,
    ids: Vec<MessageId>,
}

pub struct EventSink {
    mode: EventMode,
    topics: Option<regex::Regex>,
    /// This broker's address as events name it; set once the TCP listener is bound.
    nsqd: OnceLock<String>,
    state: Mutex<SinkState>,
}

#[derive(Default)]
struct SinkState {
    out: String,
    open: Option<Group>,
}

impl EventSink {
    pub fn new(mode: EventMode, topics: Option<regex::Regex>) -> EventSink {
        EventSink {
            mode,
            topics,
            nsqd: OnceLock::new(),
            state: Mutex::new(SinkState::default()),
        }
    }

    pub fn set_nsqd_address(&self, addr: String) {
        let _ = self.nsqd.set(addr);
    }

    /// Whether events of `kind` about `topic` are reported at all (cheap; check first).
    pub fn wants(&self, kind: Kind, topic: &str) -> bool {
        let on = match self.mode {
            EventMode::Off => false,
            EventMode::Publish => kind == Kind::Published,
            EventMode::All => true,
        };
        on && !topic.starts_with("nsqrs.") && self.topics.as_ref().is_none_or(|re| re.is_match(topic))
    }

    /// Records `kind` for `ids` at `place`, merging into the open group when it matches.
    pub fn record(&self, kind: Kind, place: &Place, ids: &[MessageId]) {
        let mut st = self.state.lock();
        let same = st.open.as_ref().is_some_and(|g| {
            g.kind == kind
                && g.topic == place.topic
                && g.channel.as_deref() == place.channel
                && g.client.as_deref() == place.client
        });
        if !same {
            self.close_group(&mut st);
            st.open = Some(Group {
                key: None,
                kind,
                ts: now_ns(),
                topic: place.topic.to_string(),
                channel: place.channel.map(str::to_string),
                client: place.client.map(str::to_string),
                ids: Vec::with_capacity(ids.len().max(16)),
            });
        }
        st.open.as_mut().unwrap().ids.extend_from_slice(ids);
    }

    /// Like `record`, for events that come one message at a time (TOUCH, timeouts; FINs come
    /// batched per read buffer through `record`): the place is only built when a new group
    /// starts; runs with the same `key` just append IDs.
    pub fn record_keyed(
        &self,
        kind: Kind,
        key: (usize, u64),
        id: MessageId,
        place: impl FnOnce() -> OwnedPlace,
    ) {
        let mut st = self.state.lock();
        if let Some(g) = st.open.as_mut() {
            if g.kind == kind && g.key == Some(key) {
                g.ids.push(id);
                return;
            }
        }
        self.close_group(&mut st);
        let p = place();
        let mut ids = Vec::with_capacity(64);
        ids.push(id);
        st.open = Some(Group {
            key: Some(key),
            kind,
            ts: now_ns(),
            topic: p.topic,
            channel: p.channel,
            client: p.client,
            ids,
        });
    }

    /// Writes one group whose events carry per-message values (`published`, `delivered`) or
    /// extra fields; these are never merged.
    pub fn record_line(&self, kind: Kind, place: &Place, ids: &[MessageId], extra: &str) {
        let mut st = self.state.lock();
        self.close_group(&mut st);
        self.write_head(&mut st.out, kind, now_ns(), place);
        write_ids(&mut st.out, ids);
        st.out.push_str(extra);
        st.out.push_str("}\n");
    }

    /// Writes the opening of a line: the fields a group shares, up to before `ids`.
    fn write_head(&self, out: &mut String, kind: Kind, ts: i64, place: &Place) {
        let nsqd = self.nsqd.get().map(String::as_str).unwrap_or("");
        let _ = write!(out, "{{\"ev\":\"{}\",\"ts\":{ts},\"nsqd\":", kind.name());
        push_json_str(out, nsqd);
        out.push_str(",\"topic\":");
        push_json_str(out, place.topic);
        if let Some(c) = place.channel {
            out.push_str(",\"channel\":");
            push_json_str(out, c);
        }
        if let Some(c) = place.client {
            out.push_str(",\"client\":");
            push_json_str(out, c);
        }
    }

    fn close_group(&self, st: &mut SinkState) {
        if let Some(g) = st.open.take() {
            let place = Place {
                topic: &g.topic,
                channel: g.channel.as_deref(),
                client: g.client.as_deref(),
            };
            self.write_head(&mut st.out, g.kind, g.ts, &place);
            write_ids(&mut st.out, &g.ids);
            st.out.push_str("}\n");
        }
    }

    /// Takes everything recorded so far, as bodies of at most `max_body` bytes (lines whole).
    /// Each body opens with a `batch` line saying which broker wrote it and in which mode, so
    /// a reader can tell "nothing happened" from "nothing was reported" (docs/events.md).
    pub fn drain(&self, max_body: usize) -> Vec<String> {
        let text = {
            let mut st = self.state.lock();
            self.close_group(&mut st);
            std::mem::take(&mut st.out)
        };
        if text.is_empty() {
            return Vec::new();
        }
        let header = self.batch_header();
        let mut bodies = Vec::new();
        let mut current = String::new();
        for line in text.split_inclusive('\n') {
            if current.len() > header.len() && current.len() + line.len() > max_body {
                bodies.push(std::mem::take(&mut current));
            }
            if current.is_empty() {
                current.push_str(&header);
            }
            // A single line over the limit (an enormous group) is split by message count
            // upstream; here it is sent as it is and the broker's size check decides.
            current.push_str(line);
        }
        bodies.push(current);
        bodies
    }

    /// `{"ev":"batch",…}`: this broker, its `--lifecycle-events` mode and, when set, its
    /// `--lifecycle-events-topics`. `ids` is empty, so readers that explode groups into rows
    /// per message make none of it.
    fn batch_header(&self) -> String {
        let mode = match self.mode {
            EventMode::Off => "off",
            EventMode::Publish => "publish",
            EventMode::All => "all",
        };
        let mut line = format!("{{\"ev\":\"batch\",\"ts\":{},\"nsqd\":", now_ns());
        push_json_str(&mut line, self.nsqd.get().map(String::as_str).unwrap_or(""));
        let _ = write!(line, ",\"mode\":\"{mode}\"");
        if let Some(re) = &self.topics {
            line.push_str(",\"topics\":");
            push_json_str(&mut line, re.as_str());
        }
        line.push_str(",\"ids\":[]}\n");
        line
    }

    pub fn is_on(&self) -> bool {
        self.mode != EventMode::Off
    }
}

/// Shortest stretch of consecutive IDs written as one `"first-last"` element of `ids`.
const MIN_RUN: usize = 3;

/// Writes `,"ids":[…]`. A topic's IDs count up one by one within a clock tick, and channels
/// deliver and see FINs mostly in publish order, so runs of consecutive IDs are the common
/// case under load: each is written as `"first-last"` (docs/events.md), which keeps the
/// events a few bytes per message instead of twenty.
fn write_ids(out: &mut String, ids: &[MessageId]) {
    out.push_str(",\"ids\":[");
    let mut i = 0;
    while i < ids.len() {
        let mut end = i + 1;
        while end < ids.len() && ids[end].0 == ids[end - 1].0.wrapping_add(1) {
            end += 1;
        }
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        push_hex(out, ids[i]);
        if end - i >= MIN_RUN {
            out.push('-');
            push_hex(out, ids[end - 1]);
            out.push('"');
            i = end;
        } else {
            out.push('"');
            i += 1;
        }
    }
    out.push(']');
}

fn push_hex(out: &mut String, id: MessageId) {
    // Hex digits: always ASCII.
    if let Ok(text) = std::str::from_utf8(&id.to_hex()) {
        out.push_str(text);
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Appends `s` as a JSON string. Names and addresses never need escaping, so they are copied
/// as they are; anything else goes through serde_json.
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&json_str(s));
    }
}

/// `,"name":[1,2,3]` for per-message integer values.
pub fn int_array(name: &str, values: impl Iterator<Item = i64>) -> String {
    let mut s = format!(",\"{name}\":[");
    for (i, v) in values.enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{v}");
    }
    s.push(']');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The groups of everything drained, without the `batch` lines that open each body.
    fn lines(sink: &EventSink) -> Vec<serde_json::Value> {
        sink.drain(1 << 20)
            .concat()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["ev"] != "batch")
            .collect()
    }

    #[test]
    fn groups_runs_and_writes_valid_json() {
        let sink = EventSink::new(EventMode::All, None);
        sink.set_nsqd_address("h:4150".into());
        let place = Place {
            topic: "t",
            channel: Some("c"),
            client: Some("1.2.3.4:5"),
        };
        sink.record(Kind::Finished, &place, &[MessageId(1)]);
        sink.record(Kind::Finished, &place, &[MessageId(2)]);
        let other = Place {
            client: Some("other"),
            ..place.clone()
        };
        sink.record(Kind::Finished, &other, &[MessageId(3)]);
        sink.record_line(
            Kind::Delivered,
            &place,
            &[MessageId(4)],
            &int_array("attempts", [2].into_iter()),
        );
        let got = lines(&sink);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0]["ev"], "finished");
        assert_eq!(
            got[0]["ids"],
            serde_json::json!(["0000000000000001", "0000000000000002"])
        );
        assert_eq!(got[1]["client"], "other");
        assert_eq!(got[2]["attempts"], serde_json::json!([2]));
        assert_eq!(got[2]["nsqd"], "h:4150");
        assert!(sink.drain(100).is_empty());
    }

    #[test]
    fn consecutive_ids_are_written_as_runs() {
        let sink = EventSink::new(EventMode::All, None);
        let place = Place {
            topic: "t",
            channel: Some("c"),
            client: None,
        };
        let ids: Vec<MessageId> = [10, 11, 12, 13, 20, 21, 30, 0x1f, 0x20, 0x21]
            .into_iter()
            .map(MessageId)
            .collect();
        sink.record(Kind::Finished, &place, &ids);
        let got = lines(&sink);
        assert_eq!(
            got[0]["ids"],
            serde_json::json!([
                "000000000000000a-000000000000000d",
                "0000000000000014",
                "0000000000000015",
                "000000000000001e-0000000000000021"
            ])
        );
    }

    #[test]
    fn modes_and_topic_filter() {
        let sink = EventSink::new(EventMode::Publish, Some(regex::Regex::new("^orders").unwrap()));
        assert!(sink.wants(Kind::Published, "orders.eu"));
        assert!(!sink.wants(Kind::Delivered, "orders.eu"));
        assert!(!sink.wants(Kind::Published, "other"));
        let all = EventSink::new(EventMode::All, None);
        assert!(
            !all.wants(Kind::Published, EVENTS_TOPIC),
            "events about events would loop"
        );
    }

    #[test]
    fn drain_splits_on_line_boundaries() {
        let sink = EventSink::new(EventMode::All, None);
        for i in 0..100 {
            let place = Place {
                topic: "t",
                channel: Some("c"),
                client: Some(if i % 2 == 0 { "a" } else { "b" }),
            };
            sink.record(Kind::Finished, &place, &[MessageId(i)]);
        }
        let bodies = sink.drain(1000);
        assert!(bodies.len() > 1);
        for b in &bodies {
            assert!(b.len() <= 1000 && b.ends_with('\n'));
        }
    }

    #[test]
    fn every_body_says_which_broker_and_mode_wrote_it() {
        let sink = EventSink::new(EventMode::Publish, Some(regex::Regex::new("^orders").unwrap()));
        sink.set_nsqd_address("h:4150".into());
        assert!(sink.drain(1000).is_empty(), "nothing recorded, nothing sent");
        let place = Place {
            topic: "orders",
            channel: None,
            client: None,
        };
        for i in 0..100 {
            sink.record_line(Kind::Published, &place, &[MessageId(i * 2)], ",\"sizes\":[1]");
        }
        let bodies = sink.drain(1000);
        assert!(bodies.len() > 1);
        for b in &bodies {
            let first: serde_json::Value = serde_json::from_str(b.lines().next().unwrap()).unwrap();
            assert_eq!(first["ev"], "batch");
            assert_eq!(first["mode"], "publish");
            assert_eq!(first["topics"], "^orders");
            assert_eq!(first["nsqd"], "h:4150");
            assert_eq!(first["ids"], serde_json::json!([]));
            assert!(b.len() <= 1000);
            assert!(b.lines().skip(1).all(|l| l.contains("\"published\"")));
        }
    }
}
