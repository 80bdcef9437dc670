//! Reading `nsqrs.events` bodies (docs/events.md): newline-separated JSON groups, each
//! exploded into one row per message ID, and the `batch` lines that say which broker wrote
//! them in which mode.

use serde_json::{Map, Value};

use super::store::EventRow;

/// A broker's `batch` line: it reported events in `mode` (and only for topics matching
/// `topics`, when not empty) at `ts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSeen {
    pub nsqd: String,
    pub mode: String,
    pub topics: String,
    pub ts: i64,
}

/// What one body holds.
#[derive(Debug, Default, PartialEq)]
pub struct Exploded {
    pub rows: Vec<EventRow>,
    pub sources: Vec<SourceSeen>,
    /// Lines that are not a group, counted rather than failing the body.
    pub skipped: usize,
}

/// The topic the broker publishes lifecycle events on.
pub const EVENTS_TOPIC: &str = "nsqrs.events";

/// Fields that become columns rather than `detail`.
const COLUMNS: &[&str] = &["ev", "ts", "nsqd", "topic", "ids", "channel", "client"];

/// The rows and sources one body holds. Lines that are not a group (not JSON, or without
/// `ev`, `ts` or `ids`) are skipped and counted, so one bad line cannot wedge the archiver on
/// a message it would requeue forever.
pub fn explode(body: &[u8]) -> Exploded {
    let mut out = Exploded::default();
    for line in body.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(group) = serde_json::from_slice::<Map<String, Value>>(line) else {
            out.skipped += 1;
            continue;
        };
        if !explode_group(&group, &mut out.rows) {
            out.skipped += 1;
        } else if let Some(source) = batch_source(&group) {
            out.sources.push(source);
        }
    }
    out
}

/// The source a `batch` line names (it has no IDs, so it made no rows).
fn batch_source(g: &Map<String, Value>) -> Option<SourceSeen> {
    if g.get("ev").and_then(Value::as_str) != Some("batch") {
        return None;
    }
    let text = |k: &str| g.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Some(SourceSeen {
        nsqd: text("nsqd"),
        mode: text("mode"),
        topics: text("topics"),
        ts: g.get("ts").and_then(Value::as_i64)?,
    })
}

/// Most IDs one `"first-last"` run may stand for: more than any broker writes in one group,
/// few enough that a corrupt line cannot make the archiver allocate without bound.
const MAX_RUN: u64 = 1 << 20;

/// The message IDs of `ids`, with each `"first-last"` run of consecutive IDs spelled out.
/// None when an element is neither an ID nor a sane run.
fn expand_ids(ids: &[Value]) -> Option<Vec<String>> {
    let hex = |s: &str| (s.len() == 16).then(|| u64::from_str_radix(s, 16).ok()).flatten();
    let mut out = Vec::with_capacity(ids.len());
    for element in ids {
        let element = element.as_str()?;
        match element.split_once('-') {
            None => out.push(element.to_ascii_lowercase()),
            Some((first, last)) => {
                let (first, last) = (hex(first)?, hex(last)?);
                if last < first || last - first >= MAX_RUN {
                    return None;
                }
                out.extend((first..=last).map(|id| format!("{id:016x}")));
            }
        }
    }
    Some(out)
}

fn explode_group(g: &Map<String, Value>, rows: &mut Vec<EventRow>) -> bool {
    let (Some(kind), Some(ts), Some(ids)) = (
        g.get("ev").and_then(Value::as_str),
        g.get("ts").and_then(Value::as_i64),
        g.get("ids").and_then(Value::as_array),
    ) else {
        return false;
    };
    let Some(ids) = expand_ids(ids) else {
        return false;
    };
    let text = |k: &str| g.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    for (i, id) in ids.iter().enumerate() {
        let mut detail = Map::new();
        for (k, v) in g {
            if COLUMNS.contains(&k.as_str()) {
                continue;
            }
            // Per-message values are arrays parallel to `ids`; this row keeps its own.
            let v = match v {
                Value::Array(a) if a.len() == ids.len() => a[i].clone(),
                other => other.clone(),
            };
            detail.insert(k.clone(), v);
        }
        let attempt = detail.get("attempts").and_then(Value::as_i64).unwrap_or(0);
        rows.push(EventRow {
            id: id.clone(),
            topic: text("topic"),
            channel: text("channel"),
            kind: kind.to_string(),
            ts,
            nsqd: text("nsqd"),
            client: text("client"),
            attempt,
            detail: Value::Object(detail).to_string(),
        });
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example() {
        let body = br#"{"ev":"published","ts":1795324200000000000,"nsqd":"host:4150","topic":"orders","client":"127.0.0.1:50122","ua":"pynsq/0.9.1","ids":["18a3ea5e4ea69000","18a3ea5e4ea69001"],"sizes":[12,9],"timestamps":[1795324200000000000,1795324200000000000],"deliver_at":0}
{"ev":"delivered","ts":1795324200000300000,"nsqd":"host:4150","topic":"orders","channel":"billing","client":"127.0.0.1:50130","ids":["18a3ea5e4ea69000"],"attempts":[1]}
{"ev":"finished","ts":1795324200000900000,"nsqd":"host:4150","topic":"orders","channel":"billing","client":"127.0.0.1:50130","ids":["18a3ea5e4ea69000-18a3ea5e4ea69002","18a3ea5e4ea69010"]}
not json
"#;
        let Exploded {
            rows,
            sources,
            skipped,
        } = explode(body);
        assert_eq!(skipped, 1);
        assert!(sources.is_empty(), "a body from before batch lines");
        assert_eq!(rows.len(), 7);
        let finished: Vec<&str> = rows[3..].iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            finished,
            [
                "18a3ea5e4ea69000",
                "18a3ea5e4ea69001",
                "18a3ea5e4ea69002",
                "18a3ea5e4ea69010"
            ]
        );
        assert_eq!(rows[1].id, "18a3ea5e4ea69001");
        let d: Value = serde_json::from_str(&rows[1].detail).unwrap();
        assert_eq!(d["sizes"], 9);
        assert_eq!(d["ua"], "pynsq/0.9.1");
        assert_eq!(rows[0].channel, "");
        assert_eq!(rows[2].kind, "delivered");
        assert_eq!(rows[2].channel, "billing");
        assert_eq!(rows[2].attempt, 1);
    }

    #[test]
    fn runs_of_consecutive_ids_are_spelled_out() {
        let body = br#"{"ev":"delivered","ts":5,"nsqd":"h","topic":"t","channel":"c","ids":["18a3ea5e4ea690fe-18a3ea5e4ea69101","18a3ea5e4ea69200"],"attempts":[1,1,2,1,3]}"#;
        let Exploded { rows, skipped, .. } = explode(body);
        assert_eq!(skipped, 0);
        let got: Vec<(&str, i64)> = rows.iter().map(|r| (r.id.as_str(), r.attempt)).collect();
        assert_eq!(
            got,
            vec![
                ("18a3ea5e4ea690fe", 1),
                ("18a3ea5e4ea690ff", 1),
                ("18a3ea5e4ea69100", 2),
                ("18a3ea5e4ea69101", 1),
                ("18a3ea5e4ea69200", 3),
            ]
        );
        // Backwards, absurdly long or malformed runs make the line unreadable, not huge.
        for bad in [
            "18a3ea5e4ea69101-18a3ea5e4ea690fe",
            "0000000000000000-00000000ffffffff",
            "xyz-18a3ea5e4ea690fe",
        ] {
            let line = format!(r#"{{"ev":"finished","ts":5,"nsqd":"h","topic":"t","ids":["{bad}"]}}"#);
            let e = explode(line.as_bytes());
            assert_eq!((e.rows.len(), e.skipped), (0, 1), "{bad}");
        }
    }

    #[test]
    fn empty_ids_make_no_rows() {
        let e = explode(br#"{"ev":"deleted","ts":1,"nsqd":"h","topic":"t","ids":[]}"#);
        assert!(e.rows.is_empty());
        assert!(e.sources.is_empty());
        assert_eq!(e.skipped, 0);
    }

    #[test]
    fn batch_lines_name_their_source() {
        let body = br#"{"ev":"batch","ts":7,"nsqd":"h:4150","mode":"publish","topics":"^o","ids":[]}
{"ev":"published","ts":6,"nsqd":"h:4150","topic":"o","ids":["18a3ea5e4ea69000"]}
{"ev":"batch","ts":9,"nsqd":"g:4150","mode":"all","ids":[]}
"#;
        let e = explode(body);
        assert_eq!((e.rows.len(), e.skipped), (1, 0));
        assert_eq!(
            e.sources,
            vec![
                SourceSeen {
                    nsqd: "h:4150".into(),
                    mode: "publish".into(),
                    topics: "^o".into(),
                    ts: 7
                },
                SourceSeen {
                    nsqd: "g:4150".into(),
                    mode: "all".into(),
                    topics: String::new(),
                    ts: 9
                },
            ]
        );
    }
}
