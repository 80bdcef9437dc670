//! Where the archive lives: a SQLite file (WAL, batched transactions) or a PostgreSQL
//! database named by a `postgres://` URL.
//!
//! The queries above this layer are written once, in the SQL both engines share, with `$n`
//! placeholders and values of four kinds; this module only carries them to the driver. SQLite
//! calls block, so they run under `block_in_place` and never stall the runtime's other tasks.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rusqlite::types::ValueRef;

use super::events::SourceSeen;
use super::schema::{self, Dialect};

/// A value bound to, or read from, a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    /// A NULL text column; the only nullable kind the schema binds.
    Null,
}

impl Value {
    pub fn int(&self) -> i64 {
        match self {
            Value::Int(i) => *i,
            _ => 0,
        }
    }

    pub fn text(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            _ => String::new(),
        }
    }

    pub fn opt_text(&self) -> Option<String> {
        match self {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn opt_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn into_text(self) -> String {
        match self {
            Value::Text(s) => s,
            _ => String::new(),
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Value::Bytes(b) => b,
            Value::Text(s) => s.into_bytes(),
            _ => Vec::new(),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Value {
        v.map_or(Value::Null, Value::Text)
    }
}

pub type Row = Vec<Value>;

/// One archived message.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub topic: String,
    pub id: String,
    pub nsqd: String,
    /// Publish time, ns.
    pub ts: i64,
    pub attempts: i64,
    pub body: Vec<u8>,
    pub archived_at: i64,
}

pub const MESSAGE_COLUMNS: &str = "topic, id, nsqd, ts, attempts, body, archived_at";

impl MessageRow {
    pub fn from_row(row: Row) -> MessageRow {
        let mut it = row.into_iter();
        let mut next = || it.next().unwrap_or(Value::Null);
        MessageRow {
            topic: next().into_text(),
            id: next().into_text(),
            nsqd: next().into_text(),
            ts: next().int(),
            attempts: next().int(),
            body: next().into_bytes(),
            archived_at: next().int(),
        }
    }

    fn into_row(self) -> Row {
        vec![
            self.topic.into(),
            self.id.into(),
            self.nsqd.into(),
            self.ts.into(),
            self.attempts.into(),
            Value::Bytes(self.body),
            self.archived_at.into(),
        ]
    }
}

/// One lifecycle event of one message (a group from `nsqrs.events`, exploded).
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub id: String,
    pub topic: String,
    /// Empty for topic-level events (`published`).
    pub channel: String,
    pub kind: String,
    pub ts: i64,
    pub nsqd: String,
    pub client: String,
    /// The delivery attempt, where the event says (0 otherwise).
    pub attempt: i64,
    /// The group's other fields, per-message arrays reduced to this message's value.
    pub detail: String,
}

pub const EVENT_COLUMNS: &str = "id, topic, channel, kind, ts, nsqd, client, attempt, detail";

impl EventRow {
    pub fn from_row(row: Row) -> EventRow {
        let mut it = row.into_iter();
        let mut next = || it.next().unwrap_or(Value::Null);
        EventRow {
            id: next().into_text(),
            topic: next().into_text(),
            channel: next().into_text(),
            kind: next().into_text(),
            ts: next().int(),
            nsqd: next().into_text(),
            client: next().into_text(),
            attempt: next().int(),
            detail: next().into_text(),
        }
    }

    fn into_row(self) -> Row {
        vec![
            self.id.into(),
            self.topic.into(),
            self.channel.into(),
            self.kind.into(),
            self.ts.into(),
            self.nsqd.into(),
            self.client.into(),
            self.attempt.into(),
            self.detail.into(),
        ]
    }
}

/// How `open` treats an archive that is not there yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// `to-db`: create it.
    Create,
    /// `trace`, `replay`: a missing archive is an error, not an empty one.
    Existing,
}

/// An open archive.
pub enum Store {
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(tokio::sync::Mutex<tokio_postgres::Client>),
}

/// What `--db` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Location {
    /// A `postgres://` or `postgresql://` URL, or else a SQLite file path. A URL of another
    /// scheme is refused rather than taken for a file name.
    pub fn parse(db: &str) -> Result<Location, String> {
        if db.starts_with("postgres://") || db.starts_with("postgresql://") {
            db.parse::<tokio_postgres::Config>()
                .map_err(|e| format!("malformed database URL {db:?}: {e}"))?;
            return Ok(Location::Postgres(db.to_string()));
        }
        if let Some((scheme, _)) = db.split_once("://") {
            return Err(format!(
                "malformed database URL {db:?}: scheme {scheme:?} is not postgres:// (give a file path for SQLite)"
            ));
        }
        if db.is_empty() {
            return Err("--db is empty".into());
        }
        Ok(Location::Sqlite(PathBuf::from(db)))
    }
}

fn sqlite_sql(sql: &str) -> String {
    // `?N` is SQLite's explicit-index placeholder; `$N` would be a *named* one whose index
    // depends on the order of first appearance.
    sql.replace('$', "?")
}

fn db_err(e: impl std::fmt::Display) -> String {
    e.to_string().replace('\n', " ")
}

/// tokio-postgres shows a server error as just "db error"; the server's message is the news.
fn pg_err(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => db_err(format!("postgres: {}", d.message())),
        None => db_err(e),
    }
}

impl Store {
    pub async fn open(db: &str, mode: OpenMode) -> Result<Store, String> {
        let store = match Location::parse(db)? {
            Location::Sqlite(path) => Store::open_sqlite(&path, mode)?,
            Location::Postgres(url) => {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| format!("connect to {}: {}", redact(&url), db_err(e)))?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        crate::errln!("error: postgres connection: {}", db_err(e));
                    }
                });
                Store::Postgres(tokio::sync::Mutex::new(client))
            }
        };
        store.migrate(mode).await?;
        Ok(store)
    }

    fn open_sqlite(path: &Path, mode: OpenMode) -> Result<Store, String> {
        use rusqlite::OpenFlags;
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if mode == OpenMode::Create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        } else if !path.exists() {
            return Err(format!("archive {} does not exist", path.display()));
        }
        let conn = rusqlite::Connection::open_with_flags(path, flags)
            .map_err(|e| format!("open archive {}: {}", path.display(), db_err(e)))?;
        // WAL lets trace read while to-db writes. synchronous=FULL makes a commit durable
        // across power loss, which is what FIN-after-commit promises the broker.
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000;")
            .map_err(|e| format!("open archive {}: {}", path.display(), db_err(e)))?;
        Ok(Store::Sqlite(Mutex::new(conn)))
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Store::Sqlite(_) => Dialect::Sqlite,
            Store::Postgres(_) => Dialect::Postgres,
        }
    }

    async fn version(&self) -> Result<usize, String> {
        let rows = self
            .query("SELECT MAX(version) FROM nsqrs_schema", Vec::new())
            .await?;
        Ok(rows.first().and_then(|r| r[0].opt_int()).unwrap_or(0) as usize)
    }

    async fn migrate(&self, mode: OpenMode) -> Result<(), String> {
        let no_tables = || "the archive has no nsqrs tables yet (nsqrs to-db creates them)".to_string();
        if mode == OpenMode::Create {
            if let Err(e) = self.execute(schema::VERSION_TABLE, Vec::new()).await {
                // PostgreSQL's CREATE TABLE IF NOT EXISTS can still collide with a concurrent
                // one; by now the other has created it.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                self.execute(schema::VERSION_TABLE, Vec::new())
                    .await
                    .map_err(|_| format!("create the archive tables: {e}"))?;
            }
        }
        let current = match self.version().await {
            Ok(v) => v,
            Err(_) if mode == OpenMode::Existing => return Err(no_tables()),
            Err(e) => return Err(e),
        };
        if current > schema::MIGRATIONS.len() {
            return Err(format!(
                "archive schema version {current} is newer than this nsqrs knows ({})",
                schema::MIGRATIONS.len()
            ));
        }
        if current == 0 && mode == OpenMode::Existing {
            return Err(no_tables());
        }
        for (i, m) in schema::MIGRATIONS.iter().enumerate().skip(current) {
            let mut batch: Vec<(String, Vec<Row>)> = schema::statements(m, self.dialect())
                .into_iter()
                .map(|s| (s, vec![Vec::new()]))
                .collect();
            batch.push((
                "INSERT INTO nsqrs_schema (version) VALUES ($1)".into(),
                vec![vec![Value::Int(i as i64 + 1)]],
            ));
            if let Err(e) = self.transaction(batch).await {
                // Two archivers starting on one new archive both try; DDL is transactional on
                // both engines, so the loser's attempt left nothing behind.
                if self.version().await? <= i {
                    return Err(format!("create the archive tables: {e}"));
                }
            }
        }
        Ok(())
    }

    /// Runs one statement outside a transaction.
    pub async fn execute(&self, sql: &str, params: Row) -> Result<u64, String> {
        self.transaction(vec![(sql.to_string(), vec![params])]).await
    }

    /// Runs each statement once per parameter row, all in one transaction; returns the rows
    /// changed.
    pub async fn transaction(&self, work: Vec<(String, Vec<Row>)>) -> Result<u64, String> {
        match self {
            Store::Sqlite(conn) => tokio::task::block_in_place(|| {
                let mut conn = conn.lock();
                let tx = conn.transaction().map_err(db_err)?;
                let mut changed = 0u64;
                for (sql, rows) in &work {
                    let mut stmt = tx.prepare_cached(&sqlite_sql(sql)).map_err(db_err)?;
                    for row in rows {
                        let params = rusqlite::params_from_iter(row.iter());
                        changed += stmt.execute(params).map_err(db_err)? as u64;
                    }
                }
                tx.commit().map_err(db_err)?;
                Ok(changed)
            }),
            Store::Postgres(client) => {
                let mut client = client.lock().await;
                let tx = client.transaction().await.map_err(pg_err)?;
                let mut changed = 0u64;
                for (sql, rows) in &work {
                    let stmt = tx.prepare(sql).await.map_err(pg_err)?;
                    for row in rows {
                        let boxed = to_postgres(row);
                        let refs = param_refs(&boxed);
                        changed += tx.execute(&stmt, &refs).await.map_err(pg_err)?;
                    }
                }
                tx.commit().await.map_err(pg_err)?;
                Ok(changed)
            }
        }
    }

    pub async fn query(&self, sql: &str, params: Row) -> Result<Vec<Row>, String> {
        match self {
            Store::Sqlite(conn) => tokio::task::block_in_place(|| {
                let conn = conn.lock();
                let mut stmt = conn.prepare_cached(&sqlite_sql(sql)).map_err(db_err)?;
                let width = stmt.column_count();
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(params.iter()))
                    .map_err(db_err)?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().map_err(db_err)? {
                    let mut row = Vec::with_capacity(width);
                    for i in 0..width {
                        row.push(match r.get_ref(i).map_err(db_err)? {
                            ValueRef::Null => Value::Null,
                            ValueRef::Integer(i) => Value::Int(i),
                            ValueRef::Real(f) => Value::Int(f as i64),
                            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                            ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
                        });
                    }
                    out.push(row);
                }
                Ok(out)
            }),
            Store::Postgres(client) => {
                use tokio_postgres::types::Type;
                let client = client.lock().await;
                let boxed = to_postgres(&params);
                let refs = param_refs(&boxed);
                let rows = client.query(sql, &refs).await.map_err(pg_err)?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let mut row = Vec::with_capacity(r.len());
                    for (i, col) in r.columns().iter().enumerate() {
                        let t = col.type_();
                        let v = if *t == Type::INT8 {
                            r.try_get::<_, Option<i64>>(i).map_err(pg_err)?.map(Value::Int)
                        } else if *t == Type::INT4 {
                            r.try_get::<_, Option<i32>>(i)
                                .map_err(pg_err)?
                                .map(|v| Value::Int(v as i64))
                        } else if *t == Type::BYTEA {
                            r.try_get::<_, Option<Vec<u8>>>(i)
                                .map_err(pg_err)?
                                .map(Value::Bytes)
                        } else {
                            r.try_get::<_, Option<String>>(i)
                                .map_err(pg_err)?
                                .map(Value::Text)
                        };
                        row.push(v.unwrap_or(Value::Null));
                    }
                    out.push(row);
                }
                Ok(out)
            }
        }
    }

    /// Calls `visit` with each row of the result, in place, until it returns false. For
    /// callers that copy columns into buffers of their own: no row is built, so a large
    /// result costs no allocation per row.
    pub async fn query_each(
        &self,
        sql: &str,
        params: Row,
        mut visit: impl FnMut(&RowRef<'_>) -> bool,
    ) -> Result<(), String> {
        match self {
            Store::Sqlite(conn) => tokio::task::block_in_place(|| {
                let conn = conn.lock();
                let mut stmt = conn.prepare_cached(&sqlite_sql(sql)).map_err(db_err)?;
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(params.iter()))
                    .map_err(db_err)?;
                while let Some(r) = rows.next().map_err(db_err)? {
                    if !visit(&RowRef::Sqlite(r)) {
                        break;
                    }
                }
                Ok(())
            }),
            Store::Postgres(client) => {
                let client = client.lock().await;
                let boxed = to_postgres(&params);
                let refs = param_refs(&boxed);
                for r in client.query(sql, &refs).await.map_err(pg_err)? {
                    if !visit(&RowRef::Postgres(&r)) {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    /// Archives messages in one transaction. A message already archived (same topic, ID and
    /// nsqd: a re-delivery) is left as it is. Returns how many were new.
    pub async fn insert_messages(&self, rows: Vec<MessageRow>) -> Result<u64, String> {
        let sql = format!(
            "INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
        );
        let rows = rows.into_iter().map(MessageRow::into_row).collect();
        self.transaction(vec![(sql, rows)]).await
    }

    /// Archives events in one transaction, idempotently like `insert_messages`, with the
    /// spans of time over which each source reported them (`event_sources` grows to cover
    /// what it is given).
    pub async fn insert_events(&self, rows: Vec<EventRow>, sources: &[SourceSeen]) -> Result<u64, String> {
        let sql = format!(
            "INSERT INTO events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING"
        );
        let rows = rows.into_iter().map(EventRow::into_row).collect();
        let mut spans: std::collections::BTreeMap<(&str, &str, &str), (i64, i64)> = Default::default();
        for s in sources {
            let span = spans.entry((&s.nsqd, &s.mode, &s.topics)).or_insert((s.ts, s.ts));
            *span = (span.0.min(s.ts), span.1.max(s.ts));
        }
        let spans: Vec<Row> = spans
            .into_iter()
            .map(|((nsqd, mode, topics), (first, last))| {
                vec![nsqd.into(), mode.into(), topics.into(), first.into(), last.into()]
            })
            .collect();
        let mut work = vec![(sql, rows)];
        if !spans.is_empty() {
            // CASE rather than MIN/MAX or LEAST/GREATEST: the one spelling both engines share.
            work.push((
                "INSERT INTO event_sources (nsqd, mode, topics, first_ts, last_ts) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (nsqd, mode, topics) DO UPDATE SET \
                 first_ts = CASE WHEN excluded.first_ts < event_sources.first_ts \
                 THEN excluded.first_ts ELSE event_sources.first_ts END, \
                 last_ts = CASE WHEN excluded.last_ts > event_sources.last_ts \
                 THEN excluded.last_ts ELSE event_sources.last_ts END"
                    .to_string(),
                spans,
            ));
        }
        self.transaction(work).await
    }

    /// The archive's identity: made up by the first caller, the same for every later one
    /// (concurrent first callers agree, as only one insert wins).
    pub async fn archive_id(&self) -> Result<String, String> {
        let candidate = format!("{:016x}", rand::random::<u64>());
        self.execute(
            "INSERT INTO archive_info (name, value) VALUES ('id', $1) ON CONFLICT DO NOTHING",
            vec![candidate.into()],
        )
        .await?;
        let rows = self
            .query("SELECT value FROM archive_info WHERE name = 'id'", Vec::new())
            .await?;
        rows.first()
            .map(|r| r[0].text())
            .ok_or_else(|| "the archive has no identity row".to_string())
    }
}

/// A result row still owned by the driver, read column by column (see `Store::query_each`).
/// A column of another kind reads as 0 or empty, like `Value`'s accessors.
pub enum RowRef<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a tokio_postgres::Row),
}

impl RowRef<'_> {
    pub fn int(&self, i: usize) -> i64 {
        match self {
            RowRef::Sqlite(r) => match r.get_ref(i) {
                Ok(ValueRef::Integer(v)) => v,
                _ => 0,
            },
            RowRef::Postgres(r) => r
                .try_get::<_, i64>(i)
                .or_else(|_| r.try_get::<_, i32>(i).map(i64::from))
                .unwrap_or(0),
        }
    }

    /// A text or byte column, as bytes.
    pub fn bytes(&self, i: usize) -> &[u8] {
        match self {
            RowRef::Sqlite(r) => match r.get_ref(i) {
                Ok(ValueRef::Text(b) | ValueRef::Blob(b)) => b,
                _ => &[],
            },
            RowRef::Postgres(r) => match r.try_get::<_, &[u8]>(i) {
                Ok(b) => b,
                Err(_) => r.try_get::<_, &str>(i).map(str::as_bytes).unwrap_or(&[]),
            },
        }
    }

    /// A text column; invalid UTF-8 reads as empty.
    pub fn text(&self, i: usize) -> &str {
        std::str::from_utf8(self.bytes(i)).unwrap_or("")
    }
}

// Borrowed, so bodies are not copied again on their way into SQLite.
impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput::Borrowed;
        Ok(match self {
            Value::Int(i) => Borrowed(ValueRef::Integer(*i)),
            Value::Text(s) => Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bytes(b) => Borrowed(ValueRef::Blob(b)),
            Value::Null => Borrowed(ValueRef::Null),
        })
    }
}

type PgParam = dyn tokio_postgres::types::ToSql + Sync;

/// The borrowed form tokio-postgres takes of what `to_postgres` built.
fn param_refs(boxed: &[Box<dyn tokio_postgres::types::ToSql + Sync + Send>]) -> Vec<&PgParam> {
    boxed.iter().map(|b| b.as_ref() as &PgParam).collect()
}

fn to_postgres(row: &[Value]) -> Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> {
    row.iter()
        .map(|v| -> Box<dyn tokio_postgres::types::ToSql + Sync + Send> {
            match v {
                Value::Int(i) => Box::new(*i),
                Value::Text(s) => Box::new(s.clone()),
                Value::Bytes(b) => Box::new(b.clone()),
                Value::Null => Box::new(None::<String>),
            }
        })
        .collect()
}

/// The URL without its password, for error messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse("a.db").unwrap(),
            Location::Sqlite(PathBuf::from("a.db"))
        );
        assert!(matches!(
            Location::parse("postgres://u@localhost:5432/db").unwrap(),
            Location::Postgres(_)
        ));
        assert!(Location::parse("postgres://u@host:notaport/db")
            .unwrap_err()
            .starts_with("malformed database URL"));
        assert!(Location::parse("mysql://x/y").is_err());
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://u:***@h/db");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn sqlite_inserts_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let db = db.to_str().unwrap();
        assert!(Store::open(db, OpenMode::Existing).await.is_err());
        let store = Store::open(db, OpenMode::Create).await.unwrap();
        let m = MessageRow {
            topic: "t".into(),
            id: "0123456789abcdef".into(),
            nsqd: "h:4150".into(),
            ts: 5,
            attempts: 1,
            body: b"hi".to_vec(),
            archived_at: 6,
        };
        assert_eq!(store.insert_messages(vec![m.clone()]).await.unwrap(), 1);
        assert_eq!(store.insert_messages(vec![m.clone()]).await.unwrap(), 0);
        let rows = store
            .query(&format!("SELECT {MESSAGE_COLUMNS} FROM messages"), Vec::new())
            .await
            .unwrap();
        assert_eq!(MessageRow::from_row(rows[0].clone()), m);
        drop(store);
        // Reopening runs no migration twice.
        Store::open(db, OpenMode::Existing).await.unwrap();
    }
}
