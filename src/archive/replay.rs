//! Queries behind `nsqrs replay`: the archived messages of a window in publish order, read
//! in keyset-paged batches, and the per-run checkpoint that makes an interrupted replay
//! resume where it stopped.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use base64::Engine;

use super::store::{Row, Store, Value, MESSAGE_COLUMNS};
use super::trace::ReplayRow;
use super::MessageRow;

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

/// The cursor just past `m`.
pub fn cursor_of(m: &MessageRow) -> Cursor {
    (m.ts, m.id.clone(), m.nsqd.clone())
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

    /// The next `limit` messages after `after`, in publish order.
    pub async fn batch(
        &self,
        store: &Store,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<MessageRow>, String> {
        let (filter, mut params) = self.filter(after);
        let n = params.len() + 1;
        params.push(Value::Int(limit as i64));
        let sql =
            format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE {filter} ORDER BY ts, id, nsqd LIMIT ${n}");
        Ok(store
            .query(&sql, params)
            .await?
            .into_iter()
            .map(MessageRow::from_row)
            .collect())
    }
}

/// Messages read from `to-file --format json` files instead of the archive, held sorted so
/// they page exactly like the archive does.
pub struct FileSource {
    rows: Vec<MessageRow>,
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
        Ok(FileSource { rows })
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

    pub fn batch(&self, after: Option<&Cursor>, limit: usize) -> Vec<MessageRow> {
        let s = self.start(after);
        self.rows[s..(s + limit).min(self.rows.len())].to_vec()
    }
}

/// Where messages to replay come from.
pub enum Source {
    Archive(Window),
    Files(FileSource),
}

impl Source {
    pub async fn count(&self, store: &Store, after: Option<&Cursor>) -> Result<i64, String> {
        match self {
            Source::Archive(w) => w.count(store, after).await,
            Source::Files(f) => Ok(f.count(after)),
        }
    }

    pub async fn batch(
        &self,
        store: &Store,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<MessageRow>, String> {
        match self {
            Source::Archive(w) => w.batch(store, after, limit).await,
            Source::Files(f) => Ok(f.batch(after, limit)),
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
    pub cursor: Option<Cursor>,
    pub finished: bool,
}

const RUN_COLUMNS: &str = "run_id, identity, from_topic, to_topic, since_ns, until_ns, total, done, \
                           cursor_ts, cursor_id, cursor_nsqd, finished_at";

impl Run {
    fn from_row(r: Row) -> Run {
        let cursor = match (r[8].opt_int(), r[9].opt_text(), r[10].opt_text()) {
            (Some(ts), Some(id), Some(nsqd)) => Some((ts, id, nsqd)),
            _ => None,
        };
        Run {
            run_id: r[0].text(),
            identity: r[1].text(),
            from_topic: r[2].text(),
            to_topic: r[3].text(),
            since_ns: r[4].int(),
            until_ns: r[5].int(),
            total: r[6].int(),
            done: r[7].int(),
            cursor,
            finished: r[11].opt_int().is_some(),
        }
    }
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
    let now = super::now_ns();
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

/// Records a published batch and moves the run's cursor past it, in one transaction, so a
/// resumed run starts exactly after the last batch recorded.
pub async fn checkpoint(
    store: &Store,
    run: &Run,
    replays: Vec<ReplayRow>,
    finished: bool,
) -> Result<(), String> {
    let now = super::now_ns();
    let first_seq = run.done - replays.len() as i64;
    let replay_rows: Vec<Row> = replays
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            vec![
                r.run_id.into(),
                (first_seq + i as i64).into(),
                r.original_id.into(),
                r.new_id.into(),
                r.from_topic.into(),
                r.to_topic.into(),
                r.replayed_at.into(),
            ]
        })
        .collect();
    // Before everything, for a run that has published nothing yet; typed values rather than
    // NULLs keep PostgreSQL's parameter types fixed.
    let (ts, id, nsqd) = run
        .cursor
        .clone()
        .unwrap_or((i64::MIN, String::new(), String::new()));
    store
        .transaction(vec![
            (
                "INSERT INTO replays (run_id, seq, original_id, new_id, from_topic, to_topic, replayed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
                    .into(),
                replay_rows,
            ),
            (
                // finished_at is a nullable BIGINT: bind it through CASE so a text NULL never
                // meets an integer column on PostgreSQL.
                "UPDATE replay_runs SET done = $2, cursor_ts = $3, cursor_id = $4, cursor_nsqd = $5, \
                 updated_at = $6, finished_at = CASE WHEN CAST($7 AS BIGINT) > 0 THEN CAST($6 AS BIGINT) ELSE NULL END WHERE run_id = $1"
                    .into(),
                vec![vec![
                    run.run_id.as_str().into(),
                    run.done.into(),
                    ts.into(),
                    id.into(),
                    nsqd.into(),
                    now.into(),
                    Value::Int(finished as i64),
                ]],
            ),
        ])
        .await?;
    Ok(())
}

/// Advances the cursor over a batch just published.
pub fn advance(run: &mut Run, batch: &[MessageRow]) {
    if let Some(last) = batch.last() {
        run.cursor = Some(cursor_of(last));
        run.done += batch.len() as i64;
    }
}
