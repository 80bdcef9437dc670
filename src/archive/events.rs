//! Reading `nsqrs.events` bodies (docs/events.md): newline-separated JSON groups, each
//! exploded into one row per message ID.

use serde_json::{Map, Value};

use super::store::EventRow;

/// The topic the broker publishes lifecycle events on.
pub const EVENTS_TOPIC: &str = "nsqrs.events";

/// Fields that become columns rather than `detail`.
const COLUMNS: &[&str] = &["ev", "ts", "nsqd", "topic", "ids", "channel", "client"];

/// The rows one body holds. Lines that are not a group (not JSON, or without `ev`, `ts` or
/// `ids`) are skipped and counted, so one bad line cannot wedge the archiver on a message it
/// would requeue forever.
pub fn explode(body: &[u8]) -> (Vec<EventRow>, usize) {
    let mut rows = Vec::new();
    let mut skipped = 0;
    for line in body.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Map<String, Value>>(line) {
            Ok(group) if explode_group(&group, &mut rows) => {}
            _ => skipped += 1,
        }
    }
    (rows, skipped)
}

fn explode_group(g: &Map<String, Value>, rows: &mut Vec<EventRow>) -> bool {
    let (Some(kind), Some(ts), Some(ids)) = (
        g.get("ev").and_then(Value::as_str),
        g.get("ts").and_then(Value::as_i64),
        g.get("ids").and_then(Value::as_array),
    ) else {
        return false;
    };
    let text = |k: &str| g.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    for (i, id) in ids.iter().enumerate() {
        let Some(id) = id.as_str() else { continue };
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
            id: id.to_string(),
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
not json
"#;
        let (rows, skipped) = explode(body);
        assert_eq!(skipped, 1);
        assert_eq!(rows.len(), 3);
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
    fn empty_ids_make_no_rows() {
        let (rows, skipped) = explode(br#"{"ev":"deleted","ts":1,"nsqd":"h","topic":"t","ids":[]}"#);
        assert!(rows.is_empty());
        assert_eq!(skipped, 0);
    }
}
