//! The broker's lifecycle events sink: what happened to which messages, collected into groups
//! and written in the events format (`protocol::events`, docs/events.md) for the reserved
//! topic `nsqrs.events`, which any NSQ consumer can read.
//!
//! The hot paths only append message IDs to an in-memory group; a line is written when the
//! group changes (another kind, channel or client) and a flusher publishes the buffer every
//! few milliseconds. FINs from one client on one channel therefore cost one line per run, not
//! one per message.

use std::sync::OnceLock;

use parking_lot::Mutex;

use crate::common::time::now_ns;
use crate::protocol::events::{write_batch, write_group, Detail, Kind, Place};
use crate::protocol::MessageId;

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
    /// fields of their own; these are never merged.
    pub fn record_line(&self, kind: Kind, place: &Place, ids: &[MessageId], detail: &Detail) {
        let mut st = self.state.lock();
        self.close_group(&mut st);
        write_group(&mut st.out, kind, now_ns(), self.nsqd(), place, ids, detail);
    }

    fn nsqd(&self) -> &str {
        self.nsqd.get().map(String::as_str).unwrap_or("")
    }

    fn close_group(&self, st: &mut SinkState) {
        if let Some(g) = st.open.take() {
            let place = Place {
                topic: &g.topic,
                channel: g.channel.as_deref(),
                client: g.client.as_deref(),
            };
            write_group(
                &mut st.out,
                g.kind,
                g.ts,
                self.nsqd(),
                &place,
                &g.ids,
                &Detail::None,
            );
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

    /// The `batch` line opening each body: this broker and its mode.
    fn batch_header(&self) -> String {
        let mode = match self.mode {
            EventMode::Off => "off",
            EventMode::Publish => "publish",
            EventMode::All => "all",
        };
        let mut line = String::new();
        write_batch(
            &mut line,
            now_ns(),
            self.nsqd.get().map(String::as_str).unwrap_or(""),
            mode,
            self.topics.as_ref().map(|re| re.as_str()),
        );
        line
    }

    pub fn is_on(&self) -> bool {
        self.mode != EventMode::Off
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::events::EVENTS_TOPIC;

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
            &Detail::Delivered { attempts: &[2] },
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
            let published = Detail::Published {
                ua: "",
                sizes: &[1],
                deliver_at: 0,
            };
            sink.record_line(Kind::Published, &place, &[MessageId(i * 2)], &published);
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
