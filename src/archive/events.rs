//! Archiving `nsqrs.events` bodies (docs/events.md): each group (read by `protocol::events`)
//! exploded into one row per message ID, within bounds a hostile body cannot exceed, and the
//! `batch` lines that say which broker wrote them in which mode.

use serde_json::{Map, Value};

use super::store::EventRow;
use crate::protocol::events::{Group, BATCH};

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

/// Most rows one body may explode into. A broker flushes its groups every few milliseconds, so
/// a real body holds far fewer; the bound is what keeps a hostile or corrupt body from making
/// the archiver allocate without limit (a few bytes of `"first-last"` stand for many rows).
pub const MAX_ROWS_PER_BODY: usize = 1 << 20;

/// Most bytes the rows of one body may hold in their strings. Each row copies its group's
/// shared fields, so a long shared field times many IDs is refused before any row is built.
/// A million rows of a real group (short names and details) take under a tenth of this.
pub const MAX_ROW_BYTES_PER_BODY: usize = 128 << 20;

/// The rows and sources one body holds. Lines that are not a group (not JSON, without `ev`, `ts` or
/// `ids`, or that would take the body past `MAX_ROWS_PER_BODY` or `MAX_ROW_BYTES_PER_BODY`)
/// are skipped and counted, so one bad line cannot wedge the archiver on a message it would
/// requeue forever, nor exhaust its memory.
pub fn explode(body: &[u8]) -> Exploded {
    let budget = Budget {
        rows: MAX_ROWS_PER_BODY,
        bytes: MAX_ROW_BYTES_PER_BODY,
    };
    explode_within(body, budget)
}

fn explode_within(body: &[u8], mut budget: Budget) -> Exploded {
    let mut out = Exploded::default();
    for line in body.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Some(group) = Group::parse(line) else {
            out.skipped += 1;
            continue;
        };
        if !explode_group(&group, &mut out.rows, &mut budget) {
            out.skipped += 1;
        } else if let Some(source) = batch_source(&group) {
            out.sources.push(source);
        }
    }
    out
}

/// The source a `batch` line names (it has no IDs, so it made no rows).
fn batch_source(g: &Group) -> Option<SourceSeen> {
    if g.ev != BATCH {
        return None;
    }
    let text = |k: &str| g.fields.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Some(SourceSeen {
        nsqd: g.nsqd.clone(),
        mode: text("mode"),
        topics: text("topics"),
        ts: g.ts,
    })
}

/// What is left of a body's allowance for rows.
struct Budget {
    rows: usize,
    bytes: usize,
}

/// A parsed `"first-last"` run or a single ID.
enum IdElement<'a> {
    One(&'a str),
    Run(u64, u64),
}

/// The elements of `ids` with the number of IDs they stand for, or None when an element is
/// neither an ID nor a forward run.
fn parse_ids(ids: &[String]) -> Option<(Vec<IdElement<'_>>, u64)> {
    let hex = |s: &str| (s.len() == 16).then(|| u64::from_str_radix(s, 16).ok()).flatten();
    let mut elements = Vec::with_capacity(ids.len());
    let mut count: u64 = 0;
    for element in ids {
        let element = element.as_str();
        match element.split_once('-') {
            None => {
                elements.push(IdElement::One(element));
                count = count.saturating_add(1);
            }
            Some((first, last)) => {
                let (first, last) = (hex(first)?, hex(last)?);
                if last < first {
                    return None;
                }
                elements.push(IdElement::Run(first, last));
                count = count.saturating_add(last - first).saturating_add(1);
            }
        }
    }
    Some((elements, count))
}

/// Counts the bytes serde_json would write, without keeping them.
#[derive(Default)]
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn json_len(v: &Value) -> usize {
    let mut n = ByteCount::default();
    let _ = serde_json::to_writer(&mut n, v);
    n.0
}

/// About how many string bytes each of a group's `n` rows holds: its ID, the shared columns,
/// and its detail (shared values whole, per-message arrays one element's share).
fn row_bytes(g: &Group, n: usize) -> usize {
    let mut bytes = 16 + g.ev.len() + g.nsqd.len() + g.topic.len() + g.channel.len() + g.client.len();
    for (k, v) in &g.fields {
        bytes += match v {
            Value::Array(a) if a.len() == n => k.len() + 4 + json_len(v) / n.max(1),
            _ => k.len() + 4 + json_len(v),
        };
    }
    bytes
}

fn explode_group(g: &Group, rows: &mut Vec<EventRow>, budget: &mut Budget) -> bool {
    let Some((elements, count)) = parse_ids(&g.ids) else {
        return false;
    };
    // Refuse the whole line before building any of it: a group is archived whole or not at all.
    if count > budget.rows as u64 {
        return false;
    }
    let count = count as usize;
    let bytes = row_bytes(g, count).saturating_mul(count);
    if bytes > budget.bytes {
        return false;
    }
    budget.rows -= count;
    budget.bytes -= bytes;
    let ids = elements.iter().flat_map(|e| {
        let (one, run) = match *e {
            IdElement::One(id) => (Some(id.to_ascii_lowercase()), None),
            IdElement::Run(first, last) => (None, Some(first..=last)),
        };
        one.into_iter()
            .chain(run.into_iter().flatten().map(|id| format!("{id:016x}")))
    });
    rows.reserve(count);
    for (i, id) in ids.enumerate() {
        let mut detail = Map::new();
        for (k, v) in &g.fields {
            // Per-message values are arrays parallel to `ids`; this row keeps its own.
            let v = match v {
                Value::Array(a) if a.len() == count => a[i].clone(),
                other => other.clone(),
            };
            detail.insert(k.clone(), v);
        }
        let attempt = detail.get("attempts").and_then(Value::as_i64).unwrap_or(0);
        rows.push(EventRow {
            id,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(e: Exploded) -> (Vec<EventRow>, usize) {
        (e.rows, e.skipped)
    }

    #[test]
    fn the_documented_example() {
        let body = br#"{"ev":"published","ts":1795324200000000000,"nsqd":"host:4150","topic":"orders","client":"127.0.0.1:50122","ua":"pynsq/0.9.1","ids":["18a3ea5e4ea69000","18a3ea5e4ea69001"],"sizes":[12,9],"timestamps":[1795324200000000000,1795324200000000000],"deliver_at":0}
{"ev":"delivered","ts":1795324200000300000,"nsqd":"host:4150","topic":"orders","channel":"billing","client":"127.0.0.1:50130","ids":["18a3ea5e4ea69000"],"attempts":[1]}
{"ev":"finished","ts":1795324200000900000,"nsqd":"host:4150","topic":"orders","channel":"billing","client":"127.0.0.1:50130","ids":["18a3ea5e4ea69000-18a3ea5e4ea69002","18a3ea5e4ea69010"]}
not json
"#;
        let (rows, skipped) = pair(explode(body));
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
        let (rows, skipped) = pair(explode(body));
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
            assert_eq!(pair(explode(line.as_bytes())), (vec![], 1), "{bad}");
        }
    }

    fn row_bytes_of(line: &str) -> usize {
        row_bytes(&Group::parse(line.as_bytes()).unwrap(), 6)
    }

    #[test]
    fn a_body_cannot_explode_past_its_budget() {
        // 64 runs of 2^20 IDs each: a few hundred bytes standing for 2^26 rows.
        let run = r#""0000000000000000-00000000000fffff""#;
        let line = format!(
            r#"{{"ev":"finished","ts":5,"nsqd":"h","topic":"t","ids":[{}]}}"#,
            vec![run; 64].join(",")
        );
        assert_eq!(pair(explode(line.as_bytes())), (vec![], 1));
        // Fewer rows, but each copies a long shared field: refused by bytes.
        let runs: Vec<String> = (0..100u64)
            .map(|i| format!(r#""{:016x}-{:016x}""#, i << 20, (i << 20) + 4095))
            .collect();
        let line = format!(
            r#"{{"ev":"finished","ts":5,"nsqd":"h","topic":"t","client":"{}","ids":[{}]}}"#,
            "c".repeat(600),
            runs.join(",")
        );
        assert_eq!(pair(explode(line.as_bytes())), (vec![], 1));
        // The budget is per body: lines that each fit but not all together keep the first ones.
        let six =
            r#"{"ev":"finished","ts":5,"nsqd":"h","topic":"t","ids":["0000000000000000-0000000000000005"]}"#;
        let body = format!("{six}\n{six}\n{six}\n");
        let budget = Budget {
            rows: 13,
            bytes: 1 << 20,
        };
        let (rows, skipped) = pair(explode_within(body.as_bytes(), budget));
        assert_eq!((rows.len(), skipped), (12, 1));
        let budget = Budget {
            rows: 100,
            bytes: 12 * row_bytes_of(six) + 1,
        };
        let (rows, skipped) = pair(explode_within(body.as_bytes(), budget));
        assert_eq!((rows.len(), skipped), (12, 1));
    }

    #[test]
    fn empty_ids_make_no_rows() {
        let (rows, skipped) = pair(explode(
            br#"{"ev":"deleted","ts":1,"nsqd":"h","topic":"t","ids":[]}"#,
        ));
        assert!(rows.is_empty());
        assert_eq!(skipped, 0);
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
