//! Archiving `nsqrs.events` bodies: each group (read by `protocol::events`) exploded into
//! one row per message ID, within bounds a hostile body cannot exceed.

use serde_json::{Map, Value};

use super::store::EventRow;
use crate::protocol::events::Group;

/// The rows one body holds. Lines that are not a group (not JSON, or without `ev`, `ts` or
/// `ids`) are skipped and counted, so one bad line cannot wedge the archiver on a message it
/// would requeue forever. So are lines that would take the body past `MAX_ROWS_PER_BODY` rows
/// or `MAX_COPIED_BYTES_PER_BODY` bytes: a few hundred bytes of runs can stand for millions
/// of rows, and each row copies the group's shared fields.
pub fn explode(body: &[u8]) -> (Vec<EventRow>, usize) {
    let mut rows = Vec::new();
    let mut skipped = 0;
    let mut budget = Budget {
        rows: MAX_ROWS_PER_BODY,
        bytes: MAX_COPIED_BYTES_PER_BODY,
    };
    for line in body.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let exploded = Group::parse(line).is_some_and(|group| explode_group(group, &mut budget, &mut rows));
        if !exploded {
            skipped += 1;
        }
    }
    (rows, skipped)
}

/// Most rows one body may explode into: far more than a broker writes in one flush (50 ms of
/// events), few enough that a hostile body cannot exhaust the archiver's memory.
pub const MAX_ROWS_PER_BODY: usize = 1 << 20;

/// Most bytes the rows of one body may copy from their groups (the shared fields and columns
/// each row repeats), for the same reason.
pub const MAX_COPIED_BYTES_PER_BODY: usize = 256 << 20;

/// What is left of a body's allowance of rows and copied bytes.
struct Budget {
    rows: usize,
    bytes: usize,
}

fn explode_group(g: Group, budget: &mut Budget, rows: &mut Vec<EventRow>) -> bool {
    let Some(count) = g.id_count().filter(|&n| n <= budget.rows) else {
        return false;
    };
    // Every row repeats the columns and the fields that are not per-message arrays.
    let columns = g.ev.len() + g.nsqd.len() + g.topic.len() + g.channel.len() + g.client.len();
    let copied_per_row: usize = g
        .fields
        .iter()
        .map(|(k, v)| match v {
            Value::Array(a) if a.len() == count => k.len(),
            other => k.len() + json_len(other),
        })
        .sum::<usize>()
        + columns
        + std::mem::size_of::<EventRow>();
    let copied = copied_per_row.saturating_mul(count);
    if copied > budget.bytes {
        return false;
    }
    budget.rows -= count;
    budget.bytes -= copied;
    let ids = g.expanded_ids();
    for (i, id) in ids.iter().enumerate() {
        let mut detail = Map::new();
        for (k, v) in &g.fields {
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
            topic: g.topic.clone(),
            channel: g.channel.clone(),
            kind: g.ev.clone(),
            ts: g.ts,
            nsqd: g.nsqd.clone(),
            client: g.client.clone(),
            attempt,
            detail: Value::Object(detail).to_string(),
        });
    }
    true
}

/// Bytes `v` takes as JSON text, without writing it out.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, v);
    count.0
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
        let (rows, skipped) = explode(body);
        assert_eq!(skipped, 1);
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
        let (rows, skipped) = explode(body);
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
            assert_eq!(explode(line.as_bytes()), (vec![], 1), "{bad}");
        }
    }

    #[test]
    fn empty_ids_make_no_rows() {
        let (rows, skipped) = explode(br#"{"ev":"deleted","ts":1,"nsqd":"h","topic":"t","ids":[]}"#);
        assert!(rows.is_empty());
        assert_eq!(skipped, 0);
    }
}
