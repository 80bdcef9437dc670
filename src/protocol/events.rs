//! The lifecycle events format (docs/events.md), both ways: one *group* per JSON line on the
//! reserved topic `nsqrs.events` — a kind, when, where, the message IDs (runs of consecutive
//! IDs written as one `"first-last"` element) and the kind's own fields. The broker writes
//! groups with `write_group`; the archive reads them with `Group::parse`.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::guid::MessageId;

/// The reserved topic events are published on.
pub const EVENTS_TOPIC: &str = "nsqrs.events";

/// The `ev` of the line opening each body: which broker wrote it, in which mode. Its `ids` is
/// empty, so readers that explode groups into rows per message make none of it.
pub const BATCH: &str = "batch";

/// Shortest stretch of consecutive IDs written as one `"first-last"` element of `ids`.
const MIN_RUN: usize = 3;

/// Most IDs one `"first-last"` run may stand for: a run is consecutive IDs of one ~1 ms tick
/// of a topic's GUID factory, whose sequence has 12 bits.
pub const MAX_RUN: u64 = 4096;

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
    /// The `ev` a group of this kind carries.
    pub fn name(self) -> &'static str {
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

/// Where the events of a group happened: the fields it shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place<'a> {
    pub topic: &'a str,
    pub channel: Option<&'a str>,
    /// The client's `ip:port` (or `http` for an HTTP publish).
    pub client: Option<&'a str>,
}

/// The fields a kind has besides the shared ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail<'a> {
    None,
    /// `ua` (the producer's IDENTIFY user agent), `sizes` (body bytes, per id), `deliver_at`
    /// (ns; 0 unless deferred).
    Published {
        ua: &'a str,
        sizes: &'a [u64],
        deliver_at: i64,
    },
    /// `attempts`, per id.
    Delivered {
        attempts: &'a [u16],
    },
    /// `delay_ms`.
    Requeued {
        delay_ms: i64,
    },
    /// `due` (ns): when a deferred message comes (or would have come) due.
    Due(i64),
}

/// Appends one group as a JSON line.
pub fn write_group(
    out: &mut String,
    kind: Kind,
    ts: i64,
    nsqd: &str,
    place: &Place,
    ids: &[MessageId],
    detail: &Detail,
) {
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
    write_ids(out, ids);
    match detail {
        Detail::None => {}
        Detail::Published {
            ua,
            sizes,
            deliver_at,
        } => {
            out.push_str(",\"ua\":");
            push_json_str(out, ua);
            push_int_array(out, "sizes", sizes.iter().map(|&s| s as i64));
            let _ = write!(out, ",\"deliver_at\":{deliver_at}");
        }
        Detail::Delivered { attempts } => {
            push_int_array(out, "attempts", attempts.iter().map(|&a| i64::from(a)));
        }
        Detail::Requeued { delay_ms } => {
            let _ = write!(out, ",\"delay_ms\":{delay_ms}");
        }
        Detail::Due(due) => {
            let _ = write!(out, ",\"due\":{due}");
        }
    }
    out.push_str("}\n");
}

/// Appends the `batch` line a body opens with: the broker `nsqd`, its `--lifecycle-events`
/// `mode` and, when set, its `--lifecycle-events-topics` pattern.
pub fn write_batch(out: &mut String, ts: i64, nsqd: &str, mode: &str, topics: Option<&str>) {
    let _ = write!(out, "{{\"ev\":\"{BATCH}\",\"ts\":{ts},\"nsqd\":");
    push_json_str(out, nsqd);
    out.push_str(",\"mode\":");
    push_json_str(out, mode);
    if let Some(topics) = topics {
        out.push_str(",\"topics\":");
        push_json_str(out, topics);
    }
    out.push_str(",\"ids\":[]}\n");
}

/// Writes `,"ids":[…]`. A topic's IDs count up one by one within a clock tick, and channels
/// deliver and see FINs mostly in publish order, so runs of consecutive IDs are the common
/// case under load: each is written as `"first-last"`, which keeps the events a few bytes per
/// message instead of twenty.
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
        out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
    }
}

/// `,"name":[1,2,3]` for per-message integer values.
fn push_int_array(out: &mut String, name: &str, values: impl Iterator<Item = i64>) {
    let _ = write!(out, ",\"{name}\":[");
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{v}");
    }
    out.push(']');
}

/// One group as read back. Readers must ignore kinds and fields they do not know, so `ev` stays
/// text and the kind's own fields stay JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub ev: String,
    pub ts: i64,
    /// Shared fields; empty when absent (or not text).
    pub nsqd: String,
    pub topic: String,
    pub channel: String,
    pub client: String,
    /// The `ids` elements as written: IDs and `"first-last"` runs.
    pub ids: Vec<String>,
    /// Every other field; per-message values are arrays parallel to the spelled-out IDs.
    pub fields: Map<String, Value>,
}

impl Group {
    /// Reads one line; `None` for anything that is not a group (not JSON, or without `ev`,
    /// `ts` or an `ids` array of strings).
    pub fn parse(line: &[u8]) -> Option<Group> {
        let mut g: Map<String, Value> = serde_json::from_slice(line).ok()?;
        let ev = g.get("ev")?.as_str()?.to_string();
        let ts = g.get("ts")?.as_i64()?;
        let ids = g
            .get("ids")?
            .as_array()?
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<String>>>()?;
        let mut text = |k: &str| match g.remove(k) {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let (nsqd, topic, channel, client) = (text("nsqd"), text("topic"), text("channel"), text("client"));
        for shared in ["ev", "ts", "ids"] {
            g.remove(shared);
        }
        Some(Group {
            ev,
            ts,
            nsqd,
            topic,
            channel,
            client,
            ids,
            fields: g,
        })
    }

    /// How many message IDs `ids` stands for, each run counted out; `None` when an element is
    /// neither an ID nor a sane run (backwards, or longer than `MAX_RUN`).
    pub fn id_count(&self) -> Option<usize> {
        let mut count = 0usize;
        for element in &self.ids {
            count += match element.split_once('-') {
                None => 1,
                Some((first, last)) => {
                    let (first, last) = (hex_id(first)?, hex_id(last)?);
                    if last < first || last - first >= MAX_RUN {
                        return None;
                    }
                    (last - first + 1) as usize
                }
            };
        }
        Some(count)
    }

    /// The message IDs with the runs spelled out (lower-case hex); check `id_count` first.
    pub fn expanded_ids(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.ids.len());
        for element in &self.ids {
            match element.split_once('-') {
                None => out.push(element.to_ascii_lowercase()),
                Some((first, last)) => {
                    if let (Some(first), Some(last)) = (hex_id(first), hex_id(last)) {
                        out.extend((first..=last).map(|id| format!("{id:016x}")));
                    }
                }
            }
        }
        out
    }
}

fn hex_id(s: &str) -> Option<u64> {
    (s.len() == 16).then(|| u64::from_str_radix(s, 16).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_write_group_writes_parse_reads_back() {
        let ids: Vec<MessageId> = [10, 11, 12, 13, 20, 21].into_iter().map(MessageId).collect();
        let place = Place {
            topic: "t",
            channel: Some("c"),
            client: Some("1.2.3.4:5"),
        };
        let mut out = String::new();
        let attempts = [1, 1, 2, 1, 1, 3];
        write_group(
            &mut out,
            Kind::Delivered,
            7,
            "h:4150",
            &place,
            &ids,
            &Detail::Delivered { attempts: &attempts },
        );
        assert_eq!(
            out,
            "{\"ev\":\"delivered\",\"ts\":7,\"nsqd\":\"h:4150\",\"topic\":\"t\",\"channel\":\"c\",\
             \"client\":\"1.2.3.4:5\",\"ids\":[\"000000000000000a-000000000000000d\",\
             \"0000000000000014\",\"0000000000000015\"],\"attempts\":[1,1,2,1,1,3]}\n"
        );
        let g = Group::parse(out.trim_end().as_bytes()).unwrap();
        assert_eq!((g.ev.as_str(), g.ts, g.channel.as_str()), ("delivered", 7, "c"));
        assert_eq!(g.id_count(), Some(6));
        let hex: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        assert_eq!(g.expanded_ids(), hex);
        assert_eq!(g.fields["attempts"], serde_json::json!([1, 1, 2, 1, 1, 3]));
    }

    #[test]
    fn every_detail_has_its_fields() {
        let place = Place {
            topic: "t",
            channel: None,
            client: Some("http"),
        };
        let details = [
            (
                Detail::Published {
                    ua: "ua \"x\"",
                    sizes: &[3],
                    deliver_at: 0,
                },
                r#"{"ua":"ua \"x\"","sizes":[3],"deliver_at":0}"#,
            ),
            (Detail::Requeued { delay_ms: 5 }, r#"{"delay_ms":5}"#),
            (Detail::Due(9), r#"{"due":9}"#),
            (Detail::None, "{}"),
        ];
        for (detail, fields) in details {
            let mut out = String::new();
            write_group(
                &mut out,
                Kind::Published,
                1,
                "n",
                &place,
                &[MessageId(1)],
                &detail,
            );
            let g = Group::parse(out.as_bytes()).unwrap();
            let want: Map<String, Value> = serde_json::from_str(fields).unwrap();
            assert_eq!(g.fields, want, "{out}");
            assert_eq!(g.channel, "");
        }
    }

    #[test]
    fn bad_runs_and_non_groups_are_refused() {
        assert!(Group::parse(b"not json").is_none());
        assert!(Group::parse(br#"{"ev":"x","ts":1}"#).is_none());
        assert!(Group::parse(br#"{"ev":"x","ts":1,"ids":[1]}"#).is_none());
        for bad in [
            "18a3ea5e4ea69101-18a3ea5e4ea690fe",
            "0000000000000000-00000000ffffffff",
            "xyz-18a3ea5e4ea690fe",
        ] {
            let line = format!(r#"{{"ev":"finished","ts":5,"ids":["{bad}"]}}"#);
            assert_eq!(Group::parse(line.as_bytes()).unwrap().id_count(), None, "{bad}");
        }
    }
}
