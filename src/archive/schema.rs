//! The archive's tables, as numbered migrations applied in order to SQLite or PostgreSQL.
//!
//! The logical schema is the same on both: only the byte type differs (`BLOB`/`BYTEA`). Every
//! number is `BIGINT` so one Rust type (i64) binds to every numeric column on both.

/// The SQL dialect a migration is rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Migrations by version; `{bytes}` is the dialect's byte-string type. Never edit one that has
/// shipped: add the next.
pub const MIGRATIONS: &[&str] = &[
    // 1: messages, events, replays and replay checkpoints.
    r#"
CREATE TABLE messages (
    topic       TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    nsqd        TEXT    NOT NULL,
    ts          BIGINT  NOT NULL,
    attempts    BIGINT  NOT NULL,
    body        {bytes} NOT NULL,
    archived_at BIGINT  NOT NULL,
    PRIMARY KEY (topic, id, nsqd)
);
CREATE INDEX messages_by_id ON messages (id);
CREATE INDEX messages_by_time ON messages (topic, ts, id, nsqd);
CREATE TABLE events (
    id      TEXT   NOT NULL,
    topic   TEXT   NOT NULL,
    channel TEXT   NOT NULL,
    kind    TEXT   NOT NULL,
    ts      BIGINT NOT NULL,
    nsqd    TEXT   NOT NULL,
    client  TEXT   NOT NULL,
    attempt BIGINT NOT NULL,
    detail  TEXT   NOT NULL,
    PRIMARY KEY (id, topic, channel, kind, ts, nsqd, client, attempt)
);
CREATE TABLE replays (
    run_id      TEXT   NOT NULL,
    seq         BIGINT NOT NULL,
    original_id TEXT   NOT NULL,
    new_id      TEXT,
    from_topic  TEXT   NOT NULL,
    to_topic    TEXT   NOT NULL,
    replayed_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX replays_by_original ON replays (original_id);
CREATE TABLE replay_runs (
    run_id      TEXT   NOT NULL PRIMARY KEY,
    identity    TEXT   NOT NULL,
    from_topic  TEXT   NOT NULL,
    to_topic    TEXT   NOT NULL,
    since_ns    BIGINT NOT NULL,
    until_ns    BIGINT NOT NULL,
    total       BIGINT NOT NULL,
    done        BIGINT NOT NULL,
    cursor_ts   BIGINT,
    cursor_id   TEXT,
    cursor_nsqd TEXT,
    started_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX replay_runs_by_identity ON replay_runs (identity);
"#,
    // 2: replays recorded per published stretch rather than per message, which cost replay
    // most of its time. A row holds the original IDs of up to one MPUB batch, in the order
    // sent, and the new IDs in the same order (NULL when the broker did not return them),
    // each list space-separated. `trace` reaches a message's rows through its publish time,
    // which is why a row covers at most `RECORD_SPAN_NS` of it. Rows of `replays`
    // from before stay where they are, and `trace` reads both. The run's `sent_*` cursor
    // marks the end of the batch handed to the broker before its reply was recorded.
    r#"
CREATE TABLE replay_batches (
    run_id       TEXT   NOT NULL,
    seq          BIGINT NOT NULL,
    messages     BIGINT NOT NULL,
    from_topic   TEXT   NOT NULL,
    to_topic     TEXT   NOT NULL,
    first_ts     BIGINT NOT NULL,
    last_ts      BIGINT NOT NULL,
    original_ids TEXT   NOT NULL,
    new_ids      TEXT,
    resent       BIGINT NOT NULL,
    replayed_at  BIGINT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX replay_batches_by_time ON replay_batches (from_topic, first_ts, last_ts);
ALTER TABLE replay_runs ADD COLUMN sent_ts BIGINT;
ALTER TABLE replay_runs ADD COLUMN sent_id TEXT;
ALTER TABLE replay_runs ADD COLUMN sent_nsqd TEXT;
"#,
    // 3: which brokers reported events, in which `--lifecycle-events` mode and topic filter,
    // and over which span of time (from the `batch` line opening each `nsqrs.events` body),
    // so `trace` can say when a timeline may be missing steps nobody reported. And the
    // archive's own identity, which `to-db` names its channels after, so an archiver keeps
    // its place across restarts and two archives never share a channel.
    r#"
CREATE TABLE event_sources (
    nsqd     TEXT   NOT NULL,
    mode     TEXT   NOT NULL,
    topics   TEXT   NOT NULL,
    first_ts BIGINT NOT NULL,
    last_ts  BIGINT NOT NULL,
    PRIMARY KEY (nsqd, mode, topics)
);
CREATE TABLE archive_info (
    name  TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
];

/// Longest stretch of publish time one `replay_batches` row covers. `trace` looks this far
/// back from a message's publish time for the rows that may hold it, which keeps that lookup
/// to a few index entries however much has been replayed.
pub const RECORD_SPAN_NS: i64 = 10_000_000_000;

/// Creates the version table itself; runs before any migration.
pub const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS nsqrs_schema (version BIGINT NOT NULL)";

/// A migration's statements for `dialect`, split so drivers that run one statement at a time
/// can take them.
pub fn statements(migration: &str, dialect: Dialect) -> Vec<String> {
    let bytes = match dialect {
        Dialect::Sqlite => "BLOB",
        Dialect::Postgres => "BYTEA",
    };
    migration
        .replace("{bytes}", bytes)
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_render_for_both_dialects() {
        for m in MIGRATIONS {
            let lite = statements(m, Dialect::Sqlite);
            let pg = statements(m, Dialect::Postgres);
            assert_eq!(lite.len(), pg.len());
            assert!(lite.iter().all(|s| !s.contains('{')));
            assert_eq!(m.contains("{bytes}"), pg.iter().any(|s| s.contains("BYTEA")));
        }
    }
}
