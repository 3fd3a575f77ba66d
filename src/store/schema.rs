//! SQLite schema, migrations and connection settings (the statement cache and the
//! query planner stability guarantee), and [`Cached`], how the store runs single
//! statements.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{Result, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS oplog (
    seq INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    origin_seq INTEGER NOT NULL,
    hlc INTEGER NOT NULL,
    op TEXT NOT NULL,
    UNIQUE (origin, origin_seq)
);
-- Per origin, the highest origin_seq this store holds the effect of although the op
-- is no longer (or never was) in its log: compacted away, installed by a snapshot, or
-- replayed under a new origin by a split-brain merge.
CREATE TABLE IF NOT EXISTS marks (origin TEXT PRIMARY KEY, origin_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    full_name TEXT NOT NULL,
    password_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS mailboxes (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    name TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL,
    highest_modseq INTEGER NOT NULL,
    special_use TEXT,
    UNIQUE (account, name)
);
CREATE TABLE IF NOT EXISTS subscriptions (
    account TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (account, name)
);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    mailbox TEXT NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    internal_date INTEGER NOT NULL,
    flags TEXT NOT NULL,
    seen INTEGER NOT NULL,
    UNIQUE (mailbox, uid)
);
CREATE INDEX IF NOT EXISTS messages_modseq ON messages (mailbox, modseq);
CREATE TABLE IF NOT EXISTS queue (
    id TEXT PRIMARY KEY,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    created INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt INTEGER NOT NULL,
    last_error TEXT,
    warned INTEGER NOT NULL DEFAULT 0,
    dsn INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS content (
    path TEXT PRIMARY KEY,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contacts (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    note TEXT NOT NULL,
    updated INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS contacts_account ON contacts (account);
";

/// Statements run through the connection's prepared-statement cache ([`tune`] sizes
/// it): `Connection::execute` and `query_row` compile their SQL at every call, which
/// took a tenth of a busy node's CPU (SQLite's parser, on every delivery's dozen
/// statements, on both nodes).
pub(super) trait Cached {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

fn tune(conn: &Connection) -> Result<()> {
    conn.set_prepared_statement_cache_capacity(256);
    // The query planner stability guarantee: a plan does not depend on the values
    // bound (the bundled SQLite has STAT4, which otherwise recompiled cached
    // statements such as the log's "ops since" whenever a bound value changed).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// The writer's connection: creates the schema, WAL, synchronous=FULL.
pub fn open_rw(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    tune(&conn)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(SCHEMA)?;
    migrate(&conn)?;
    Ok(conn)
}

/// Columns added after the first release, for stores created before them.
fn migrate(conn: &Connection) -> Result<()> {
    let has_key: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('messages') WHERE name = 'content_key')",
        [],
        |r| r.get(0),
    )?;
    if !has_key {
        conn.execute_batch("ALTER TABLE messages ADD COLUMN content_key TEXT")?;
    }
    for (column, decl) in [
        ("warned", "INTEGER NOT NULL DEFAULT 0"),
        ("dsn", "INTEGER NOT NULL DEFAULT 0"),
    ] {
        let has: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('queue') WHERE name = ?1)",
            [column],
            |r| r.get(0),
        )?;
        if !has {
            conn.execute_batch(&format!("ALTER TABLE queue ADD COLUMN {column} {decl}"))?;
        }
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS messages_content_key ON messages (mailbox, content_key)",
    )?;
    expunge_record(conn)?;
    // Per-account quotas (RFC 9208): NULL takes `store.default_quota_mb`, 0 is none.
    let has_quota: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('accounts') WHERE name = 'quota_mb')",
        [],
        |r| r.get(0),
    )?;
    if !has_quota {
        conn.execute_batch("ALTER TABLE accounts ADD COLUMN quota_mb INTEGER")?;
    }
    // An account's usage was a SUM over this index (a walk of every message of the
    // account, twice per delivered message); `mailbox_usage` replaced it.
    conn.execute_batch("DROP INDEX IF EXISTS messages_size")?;
    mailbox_usage(conn)?;
    // The monitor's history (`store::events`), added with the monitor.
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS events (
             id TEXT PRIMARY KEY,
             at INTEGER NOT NULL,
             node TEXT NOT NULL,
             service TEXT NOT NULL,
             kind TEXT NOT NULL,
             detail TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS events_at ON events (at);",
    )?;
    Ok(())
}

/// `mailbox_usage`: the bytes of each mailbox's messages, kept by triggers on
/// `messages` whatever writes it (local ops, replicated ops, a merge, a snapshot's
/// install), so an account's usage (quotas, RFC 9208) is a sum over its few mailboxes.
/// Derived, so neither snapshots nor the digest carry it (`replica::snapshot`). Filled
/// from `messages` when created, in one transaction with its triggers.
fn mailbox_usage(conn: &Connection) -> Result<()> {
    let has: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'mailbox_usage')",
        [],
        |r| r.get(0),
    )?;
    if has {
        return Ok(());
    }
    conn.execute_batch(
        "BEGIN;
         CREATE TABLE mailbox_usage (mailbox TEXT PRIMARY KEY, bytes INTEGER NOT NULL);
         INSERT INTO mailbox_usage (mailbox, bytes)
             SELECT mailbox, SUM(size) FROM messages GROUP BY mailbox;
         CREATE TRIGGER mailbox_usage_insert AFTER INSERT ON messages BEGIN
             INSERT INTO mailbox_usage (mailbox, bytes) VALUES (NEW.mailbox, NEW.size)
                 ON CONFLICT (mailbox) DO UPDATE SET bytes = bytes + excluded.bytes;
         END;
         CREATE TRIGGER mailbox_usage_delete AFTER DELETE ON messages BEGIN
             UPDATE mailbox_usage SET bytes = bytes - OLD.size WHERE mailbox = OLD.mailbox;
         END;
         CREATE TRIGGER mailbox_usage_update AFTER UPDATE OF mailbox, size ON messages BEGIN
             UPDATE mailbox_usage SET bytes = bytes - OLD.size WHERE mailbox = OLD.mailbox;
             INSERT INTO mailbox_usage (mailbox, bytes) VALUES (NEW.mailbox, NEW.size)
                 ON CONFLICT (mailbox) DO UPDATE SET bytes = bytes + excluded.bytes;
         END;
         CREATE TRIGGER mailbox_usage_forget AFTER DELETE ON mailboxes BEGIN
             DELETE FROM mailbox_usage WHERE mailbox = OLD.id;
         END;
         COMMIT;",
    )?;
    Ok(())
}

/// The record of expunged UIDs for QRESYNC (`store::messages`). A store made before it
/// existed knows nothing of earlier expunges: each mailbox it already has gets its
/// HIGHESTMODSEQ of that moment as the floor below which VANISHED answers are
/// incomplete. In one transaction, so a crash cannot leave the table without floors.
fn expunge_record(conn: &Connection) -> Result<()> {
    let has: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'expunged')",
        [],
        |r| r.get(0),
    )?;
    if !has {
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE expunged (
                 mailbox TEXT NOT NULL,
                 uid INTEGER NOT NULL,
                 modseq INTEGER NOT NULL,
                 PRIMARY KEY (mailbox, uid)
             );
             CREATE INDEX expunged_modseq ON expunged (mailbox, modseq);
             CREATE TABLE expunge_floor (mailbox TEXT PRIMARY KEY, modseq INTEGER NOT NULL);
             INSERT INTO expunge_floor (mailbox, modseq)
                 SELECT id, highest_modseq FROM mailboxes WHERE highest_modseq > 0;
             COMMIT;",
        )?;
    }
    Ok(())
}

/// A reader's connection.
pub fn open_ro(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    tune(&conn)?;
    Ok(conn)
}

/// `PRAGMA quick_check` on the store's database: [`StoreError::Corrupt`] naming the
/// file, what SQLite found and the recovery, instead of a node that fails on some
/// later query (or restarts in a loop).
pub fn quick_check(conn: &Connection, path: &Path) -> Result<()> {
    let found: Vec<String> = (|| -> rusqlite::Result<Vec<String>> {
        let mut st = conn.prepare("PRAGMA quick_check(20)")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect()
    })()
    .map_err(|e| corrupt_or(e, path))?;
    if found.len() == 1 && found[0] == "ok" {
        return Ok(());
    }
    Err(corrupt(path, &found.join("; ")))
}

/// An error of opening or checking the database: [`StoreError::Corrupt`] when SQLite
/// says the file is damaged or not a database, else the error as it is.
pub fn corrupt_or(e: rusqlite::Error, path: &Path) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ) =>
        {
            corrupt(path, &e.to_string())
        }
        _ => StoreError::Db(e),
    }
}

/// The message of a damaged store: the file, what was found, and the documented
/// recovery (ARCHITECTURE.md, "Recovering a damaged store").
pub fn corrupt(path: &Path, found: &str) -> StoreError {
    let dir = path
        .parent()
        .unwrap_or(Path::new("."))
        .display()
        .to_string();
    StoreError::Corrupt(format!(
        "the store database {} is damaged (PRAGMA quick_check: {found}); the node will not \
         start on it. Recovery, while the peer runs and is active: stop this node \
         (systemctl stop clusterd), move the data directory aside (mv {dir} {dir}.damaged), \
         start it again (systemctl start clusterd): it starts with an empty store as \
         standby and takes the peer's log or a snapshot; check with `clusterd status` and \
         `clusterd digest` on both nodes. Without a healthy peer, restore a backup instead",
        path.display()
    ))
}
