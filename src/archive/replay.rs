//! Queries behind `nsqrs replay`: the archived messages of a window in publish order, read
//! in keyset-paged batches, the per-run checkpoint that makes an interrupted replay resume
//! where it stopped, and the record of what each message was replayed as.
//!
//! A published batch is recorded in the transaction that moves the run's cursor past it, as
//! one `replay_batches` row per stretch of it (the original IDs in order and the new IDs in
//! the same order) rather than one row per message: per-message rows were most of what a
//! replay cost. Batches are read into one buffer each for the same reason.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use base64::Engine;
use bytes::{Bytes, BytesMut};

use super::schema::RECORD_SPAN_NS;
use super::store::{Row, Store, Value};
use super::trace::valid_id;
use super::MessageRow;
use crate::protocol::MessageId;

/// Where a batch ends in publish order: (publish ts, id, nsqd), unique in the archive.
pub type Cursor = (i64, String, String);

/// What to replay.
#[derive(Debug, Clone)]
pub struct Window {
    pub topic: String,
    /// Publish time, ns, inclusive.
    pub since_ns: i64,
    /// Publish time, ns, exclusive.
    pub until_ns: i64,
    /// Only these IDs, when not empty.
    pub ids: Vec<String>,
}

/// `2h` (that long ago) or an RFC 3339 time, as ns since the epoch; `flag` names the
/// option in the error.
pub fn parse_when(s: &str, now: i64, flag: &str) -> Result<i64, String> {
    if let Ok(d) = crate::common::goflags::parse_go_duration(s) {
        return Ok(now - d.as_nanos() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| format!("{flag} {s:?} is neither a duration (2h) nor an RFC 3339 time"))
}

/// The cursor just past `m`.
pub fn cursor_of(m: &MessageRow) -> Cursor {
    (m.ts, m.id.clone(), m.nsqd.clone())
}

/// How much one read may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    pub messages: usize,
    /// Bodies plus MPUB's 4-byte length each; a lone message above it is still taken.
    pub bytes: usize,
    /// Nothing past this cursor.
    pub upto: Option<&'a Cursor>,
}

/// Messages read for one MPUB. Bodies share one buffer and the IDs are kept the way
/// `replay_batches` stores them, so a batch costs a few allocations rather than a few per
/// message.
#[derive(Debug, Default)]
pub struct Batch {
    /// Original IDs, lowercase, space-separated; `-` stands for one that is not nsqd's 16 hex
    /// characters (trace cannot ask for it, and a space inside would shift the rest).
    ids: String,
    /// Where each ID ends in `ids`.
    id_ends: Vec<usize>,
    /// Publish time of each message, ascending.
    ts: Vec<i64>,
    bodies: BytesMut,
    /// Where each body ends in `bodies`.
    body_ends: Vec<usize>,
    /// The cursor of the last message; meaningless while empty.
    last: Cursor,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    pub fn first_ts(&self) -> Option<i64> {
        self.ts.first().copied()
    }

    /// The cursor just past the batch.
    pub fn last(&self) -> Option<&Cursor> {
        (!self.is_empty()).then_some(&self.last)
    }

    /// Adds a message unless `limits` leave no room for it; false ends the read.
    fn push(&mut self, ts: i64, id: &str, nsqd: &str, body: &[u8], limits: &Limits) -> bool {
        if let Some(upto) = limits.upto {
            if (ts, id, nsqd) > (upto.0, upto.1.as_str(), upto.2.as_str()) {
                return false;
            }
        }
        let bytes = self.bodies.len() + 4 * self.len();
        if self.len() >= limits.messages || (!self.is_empty() && bytes + body.len() + 4 > limits.bytes) {
            return false;
        }
        if !self.is_empty() {
            self.ids.push(' ');
        }
        if valid_id(id) {
            self.ids.extend(id.chars().map(|c| c.to_ascii_lowercase()));
        } else {
            self.ids.push('-');
        }
        self.id_ends.push(self.ids.len());
        self.ts.push(ts);
        self.bodies.extend_from_slice(body);
        self.body_ends.push(self.bodies.len());
        // Reusing the cursor's strings keeps the read free of per-message allocations.
        self.last.0 = ts;
        self.last.1.clear();
        self.last.1.push_str(id);
        self.last.2.clear();
        self.last.2.push_str(nsqd);
        true
    }

    /// The bodies, for MPUB; they keep sharing the batch's one buffer.
    pub fn take_bodies(&mut self) -> Vec<Bytes> {
        let all = std::mem::take(&mut self.bodies).freeze();
        let mut start = 0;
        self.body_ends
            .iter()
            .map(|&end| {
                let body = all.slice(start..end);
                start = end;
                body
            })
            .collect()
    }

    /// The original IDs of messages `from..to`, as stored.
    fn ids_of(&self, from: usize, to: usize) -> &str {
        let start = if from == 0 { 0 } else { self.id_ends[from - 1] + 1 };
        &self.ids[start..self.id_ends[to - 1]]
    }
}

impl Window {
    /// The WHERE clause (after `after`) and its parameters; placeholders start at `$1`.
    fn filter(&self, after: Option<&Cursor>) -> (String, Row) {
        let (ts, id, nsqd) = after.cloned().unwrap_or((i64::MIN, String::new(), String::new()));
        // Row-value comparison spelled out: it works alike on every SQLite and PostgreSQL.
        let mut sql = String::from(
            "topic = $1 AND ts >= $2 AND ts < $3 \
             AND (ts > $4 OR (ts = $4 AND (id > $5 OR (id = $5 AND nsqd > $6))))",
        );
        let mut params: Row = vec![
            self.topic.as_str().into(),
            self.since_ns.into(),
            self.until_ns.into(),
            ts.into(),
            id.into(),
            nsqd.into(),
        ];
        if !self.ids.is_empty() {
            let marks: Vec<String> = (0..self.ids.len()).map(|i| format!("${}", i + 7)).collect();
            sql.push_str(&format!(" AND id IN ({})", marks.join(", ")));
            params.extend(self.ids.iter().map(|i| Value::from(i.as_str())));
        }
        (sql, params)
    }

    pub async fn count(&self, store: &Store, after: Option<&Cursor>) -> Result<i64, String> {
        let (filter, params) = self.filter(after);
        let rows = store
            .query(&format!("SELECT COUNT(*) FROM messages WHERE {filter}"), params)
            .await?;
        Ok(rows.first().map(|r| r[0].int()).unwrap_or(0))
    }

    /// The next messages after `after`, in publish order, as many as `limits` allow.
    pub async fn read(
        &self,
        store: &Store,
        after: Option<&Cursor>,
        limits: Limits<'_>,
    ) -> Result<Batch, String> {
        let (filter, mut params) = self.filter(after);
        let n = params.len() + 1;
        params.push(Value::Int(limits.messages as i64));
        let sql = format!(
            "SELECT ts, id, nsqd, body FROM messages WHERE {filter} ORDER BY ts, id, nsqd LIMIT ${n}"
        );
        let mut batch = Batch::default();
        store
            .query_each(&sql, params, |r| {
                batch.push(r.int(0), r.text(1), r.text(2), r.bytes(3), &limits)
            })
            .await?;
        Ok(batch)
    }
}

/// Messages read from `to-file --format json` files instead of the archive, held sorted so
/// they page exactly like the archive does.
pub struct FileSource {
    rows: Vec<MessageRow>,
    /// The `--id`s asked for (empty: all).
    ids: Vec<String>,
}

impl FileSource {
    pub fn load(paths: &[impl AsRef<Path>], w: &Window) -> Result<FileSource, String> {
        let mut rows = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
                Box::new(flate2::read::MultiGzDecoder::new(file))
            } else {
                Box::new(file)
            };
            for (n, line) in BufReader::new(reader).lines().enumerate() {
                let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let bad = || format!("{}:{}: not a to-file --format json line", path.display(), n + 1);
                let v: serde_json::Value = serde_json::from_str(&line).map_err(|_| bad())?;
                let (Some(id), Some(ts), Some(body)) =
                    (v["id"].as_str(), v["timestamp"].as_i64(), v["body"].as_str())
                else {
                    return Err(bad());
                };
                let body = if v["body_base64"].as_bool() == Some(true) {
                    base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .map_err(|_| bad())?
                } else {
                    body.as_bytes().to_vec()
                };
                let m = MessageRow {
                    topic: w.topic.clone(),
                    id: id.to_string(),
                    // Files hold no nsqd; the file keeps IDs from different nsqd apart.
                    nsqd: path.display().to_string(),
                    ts,
                    attempts: v["attempts"].as_i64().unwrap_or(1),
                    body,
                    archived_at: 0,
                };
                if m.ts >= w.since_ns && m.ts < w.until_ns && (w.ids.is_empty() || w.ids.contains(&m.id)) {
                    rows.push(m);
                }
            }
        }
        rows.sort_by_key(cursor_of);
        // to-file is at-least-once: a message written twice is replayed once.
        rows.dedup_by(|a, b| cursor_of(a) == cursor_of(b));
        Ok(FileSource {
            rows,
            ids: w.ids.clone(),
        })
    }

    fn start(&self, after: Option<&Cursor>) -> usize {
        match after {
            None => 0,
            Some(c) => self.rows.partition_point(|m| cursor_of(m) <= *c),
        }
    }

    pub fn count(&self, after: Option<&Cursor>) -> i64 {
        (self.rows.len() - self.start(after)) as i64
    }

    pub fn read(&self, after: Option<&Cursor>, limits: Limits) -> Batch {
        let mut batch = Batch::default();
        for m in &self.rows[self.start(after)..] {
            if !batch.push(m.ts, &m.id, &m.nsqd, &m.body, &limits) {
                break;
            }
        }
        batch
    }
}

/// Where messages to replay come from.
pub enum Source {
    Archive(Window),
    Files(FileSource),
}

impl Source {
    /// Which of the window's `--id`s it does not hold, in the order given.
    pub async fn missing_ids(&self, store: &Store) -> Result<Vec<String>, String> {
        let (wanted, present): (&[String], std::collections::HashSet<String>) = match self {
            Source::Archive(w) => {
                let (filter, params) = w.filter(None);
                let rows = store
                    .query(
                        &format!("SELECT DISTINCT id FROM messages WHERE {filter}"),
                        params,
                    )
                    .await?;
                (&w.ids, rows.into_iter().map(|r| r[0].text()).collect())
            }
            Source::Files(f) => (&f.ids, f.rows.iter().map(|m| m.id.clone()).collect()),
        };
        Ok(wanted
            .iter()
            .filter(|id| !present.contains(*id))
            .cloned()
            .collect())
    }

    pub async fn count(&self, store: &Store, after: Option<&Cursor>) -> Result<i64, String> {
        match self {
            Source::Archive(w) => w.count(store, after).await,
            Source::Files(f) => Ok(f.count(after)),
        }
    }

    pub async fn read(
        &self,
        store: &Store,
        after: Option<&Cursor>,
        limits: Limits<'_>,
    ) -> Result<Batch, String> {
        match self {
            Source::Archive(w) => w.read(store, after, limits).await,
            Source::Files(f) => Ok(f.read(after, limits)),
        }
    }
}

/// A replay run's checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub run_id: String,
    /// The command as given, so the same command finds its unfinished run.
    pub identity: String,
    pub from_topic: String,
    pub to_topic: String,
    pub since_ns: i64,
    pub until_ns: i64,
    pub total: i64,
    pub done: i64,
    /// Everything up to here is published and recorded.
    pub cursor: Option<Cursor>,
    /// Everything up to here was handed to the broker; past `cursor` only while a batch
    /// awaits its reply.
    pub sent: Option<Cursor>,
    pub finished: bool,
}

const RUN_COLUMNS: &str = "run_id, identity, from_topic, to_topic, since_ns, until_ns, total, done, \
                           cursor_ts, cursor_id, cursor_nsqd, finished_at, sent_ts, sent_id, sent_nsqd";

/// A cursor stored in three columns; the "before everything" value a checkpoint binds in
/// place of NULL reads back as none.
fn stored_cursor(ts: &Value, id: &Value, nsqd: &Value) -> Option<Cursor> {
    match (ts.opt_int(), id.opt_text(), nsqd.opt_text()) {
        (Some(ts), Some(id), Some(nsqd)) if ts != i64::MIN => Some((ts, id, nsqd)),
        _ => None,
    }
}

impl Run {
    fn from_row(r: Row) -> Run {
        Run {
            run_id: r[0].text(),
            identity: r[1].text(),
            from_topic: r[2].text(),
            to_topic: r[3].text(),
            since_ns: r[4].int(),
            until_ns: r[5].int(),
            total: r[6].int(),
            done: r[7].int(),
            cursor: stored_cursor(&r[8], &r[9], &r[10]),
            sent: stored_cursor(&r[12], &r[13], &r[14]),
            finished: r[11].opt_int().is_some(),
        }
    }

    /// The end of a batch that was handed to the broker but whose reply was never recorded:
    /// the run was killed in between, and the broker may or may not hold the batch.
    pub fn unrecorded(&self) -> Option<&Cursor> {
        self.sent.as_ref().filter(|s| Some(*s) > self.cursor.as_ref())
    }
}

/// Whether the archive holds any message of `topic` (an empty window of a topic it has is
/// not a typo; one of a topic it never saw probably is).
pub async fn topic_archived(store: &Store, topic: &str) -> Result<bool, String> {
    let rows = store
        .query(
            "SELECT 1 FROM messages WHERE topic = $1 LIMIT 1",
            vec![topic.into()],
        )
        .await?;
    Ok(!rows.is_empty())
}

pub async fn find_run(store: &Store, run_id: &str) -> Result<Option<Run>, String> {
    let rows = store
        .query(
            &format!("SELECT {RUN_COLUMNS} FROM replay_runs WHERE run_id = $1"),
            vec![run_id.into()],
        )
        .await?;
    Ok(rows.into_iter().next().map(Run::from_row))
}

/// The newest unfinished run of the same command, which a re-run continues.
pub async fn find_unfinished(store: &Store, identity: &str) -> Result<Option<Run>, String> {
    let rows = store
        .query(
            &format!(
                "SELECT {RUN_COLUMNS} FROM replay_runs WHERE identity = $1 AND finished_at IS NULL \
                 ORDER BY started_at DESC LIMIT 1"
            ),
            vec![identity.into()],
        )
        .await?;
    Ok(rows.into_iter().next().map(Run::from_row))
}

pub async fn create_run(store: &Store, run: &Run) -> Result<(), String> {
    let now = crate::common::time::now_ns();
    store
        .execute(
            "INSERT INTO replay_runs (run_id, identity, from_topic, to_topic, since_ns, until_ns, \
             total, done, started_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            vec![
                run.run_id.as_str().into(),
                run.identity.as_str().into(),
                run.from_topic.as_str().into(),
                run.to_topic.as_str().into(),
                run.since_ns.into(),
                run.until_ns.into(),
                run.total.into(),
                run.done.into(),
                now.into(),
            ],
        )
        .await?;
    Ok(())
}

/// A batch the broker accepted, as `checkpoint` records it.
pub struct Published<'a> {
    pub batch: &'a Batch,
    /// In the batch's order; `None` when the broker did not return them.
    pub new_ids: Option<&'a [MessageId]>,
    /// Sent again because a killed run had handed it to the broker without recording the
    /// reply: the broker may hold it twice.
    pub resent: bool,
    pub replayed_at: i64,
}

/// The `replay_batches` rows of a batch that ends at the run's cursor: a new row wherever
/// the batch has run on for `RECORD_SPAN_NS` of publish time.
fn record_rows(run: &Run, p: &Published) -> Vec<Row> {
    let b = p.batch;
    let new_ids = p.new_ids.map(|ids| {
        let mut text = String::with_capacity(ids.len() * 17);
        for id in ids {
            text.extend(id.to_hex().iter().map(|&c| c as char));
            text.push(' ');
        }
        text
    });
    let first_seq = run.done - b.len() as i64;
    let mut rows = Vec::new();
    let mut start = 0;
    while start < b.len() {
        let limit = b.ts[start].saturating_add(RECORD_SPAN_NS);
        let end = start + b.ts[start..].partition_point(|&t| t <= limit);
        rows.push(vec![
            run.run_id.as_str().into(),
            (first_seq + start as i64).into(),
            ((end - start) as i64).into(),
            run.from_topic.as_str().into(),
            run.to_topic.as_str().into(),
            b.ts[start].into(),
            b.ts[end - 1].into(),
            b.ids_of(start, end).into(),
            // Each new ID is 16 characters and a space.
            new_ids
                .as_ref()
                .map(|t| t[start * 17..end * 17 - 1].to_string())
                .into(),
            Value::Int(p.resent as i64),
            p.replayed_at.into(),
        ]);
        start = end;
    }
    rows
}

/// Stores the run's progress: its cursor, what is with the broker, whether it finished, and
/// the batch just published if there is one, in one transaction, so a resumed run starts
/// exactly after the last batch recorded and knows whether one was left unanswered.
pub async fn checkpoint(store: &Store, run: &Run, published: Option<Published<'_>>) -> Result<(), String> {
    let now = crate::common::time::now_ns();
    let mut work = Vec::new();
    if let Some(p) = published {
        work.push((
            "INSERT INTO replay_batches (run_id, seq, messages, from_topic, to_topic, first_ts, last_ts, \
             original_ids, new_ids, resent, replayed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                .to_string(),
            record_rows(run, &p),
        ));
    }
    // Before everything, for a run that has published nothing yet; typed values rather than
    // NULLs keep PostgreSQL's parameter types fixed.
    let before = (i64::MIN, String::new(), String::new());
    let (ts, id, nsqd) = run.cursor.clone().unwrap_or_else(|| before.clone());
    let (sent_ts, sent_id, sent_nsqd) = run.sent.clone().or_else(|| run.cursor.clone()).unwrap_or(before);
    work.push((
        // finished_at is a nullable BIGINT: bind it through CASE so a text NULL never meets
        // an integer column on PostgreSQL.
        "UPDATE replay_runs SET done = $2, cursor_ts = $3, cursor_id = $4, cursor_nsqd = $5, \
         sent_ts = $6, sent_id = $7, sent_nsqd = $8, updated_at = $9, \
         finished_at = CASE WHEN CAST($10 AS BIGINT) > 0 THEN CAST($9 AS BIGINT) ELSE NULL END WHERE run_id = $1"
            .into(),
        vec![vec![
            run.run_id.as_str().into(),
            run.done.into(),
            ts.into(),
            id.into(),
            nsqd.into(),
            sent_ts.into(),
            sent_id.into(),
            sent_nsqd.into(),
            now.into(),
            Value::Int(run.finished as i64),
        ]],
    ));
    store.transaction(work).await?;
    Ok(())
}

/// Moves the run's cursor over a batch the broker accepted.
pub fn advance(run: &mut Run, batch: &Batch) {
    if let Some(last) = batch.last() {
        run.cursor = Some(last.clone());
        run.done += batch.len() as i64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(messages: usize, bytes: usize) -> Limits<'static> {
        Limits {
            messages,
            bytes,
            upto: None,
        }
    }

    #[test]
    fn a_batch_stops_at_its_limits_and_packs_ids_and_bodies() {
        let mut b = Batch::default();
        let l = limits(3, 100);
        assert!(b.push(1, "0123456789ABCDEF", "n", b"aa", &l));
        assert!(b.push(2, "not an id", "n", b"b", &l));
        assert!(b.push(2, "0123456789abcdee", "m", b"", &l));
        assert!(!b.push(3, "0123456789abcded", "n", b"c", &l));
        assert_eq!(b.ids_of(0, 3), "0123456789abcdef - 0123456789abcdee");
        assert_eq!(b.ids_of(1, 3), "- 0123456789abcdee");
        assert_eq!(
            b.last(),
            Some(&(2, "0123456789abcdee".to_string(), "m".to_string()))
        );
        assert_eq!(b.take_bodies(), [&b"aa"[..], b"b", b""]);

        let mut b = Batch::default();
        let l = limits(10, 10);
        // A message above the byte limit still goes out, alone.
        assert!(b.push(1, "a", "n", &[0; 20], &l));
        assert!(!b.push(2, "b", "n", b"", &l));
        let upto = (5, "x".to_string(), "n".to_string());
        let l = Limits {
            upto: Some(&upto),
            ..limits(10, 100)
        };
        let mut b = Batch::default();
        assert!(b.push(5, "x", "n", b"", &l));
        assert!(!b.push(5, "x", "o", b"", &l));
    }

    #[test]
    fn records_split_where_the_batch_spans_too_long() {
        let mut b = Batch::default();
        let l = limits(10, 1000);
        let ids = ["000000000000000a", "000000000000000b", "000000000000000c"];
        for (ts, id) in [0, RECORD_SPAN_NS, RECORD_SPAN_NS + 1].into_iter().zip(ids) {
            b.push(ts, id, "n", b"x", &l);
        }
        let run = Run {
            run_id: "r".into(),
            identity: String::new(),
            from_topic: "a".into(),
            to_topic: "b".into(),
            since_ns: 0,
            until_ns: 0,
            total: 3,
            done: 7,
            cursor: None,
            sent: None,
            finished: false,
        };
        let new = [MessageId(1), MessageId(2), MessageId(3)];
        let p = Published {
            batch: &b,
            new_ids: Some(&new),
            resent: false,
            replayed_at: 9,
        };
        let rows = record_rows(&run, &p);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][1], Value::Int(4));
        assert_eq!(rows[0][2], Value::Int(2));
        assert_eq!(rows[0][7], Value::from("000000000000000a 000000000000000b"));
        assert_eq!(rows[0][8], Value::from("0000000000000001 0000000000000002"));
        assert_eq!(rows[1][1], Value::Int(6));
        assert_eq!(rows[1][5], Value::Int(RECORD_SPAN_NS + 1));
        assert_eq!(rows[1][8], Value::from("0000000000000003"));
        let p = Published { new_ids: None, ..p };
        assert_eq!(record_rows(&run, &p)[1][8], Value::Null);
    }
}
