//! Snapshots: the store's logical content (every table but the op log, `meta`,
//! `marks` and the derived `mailbox_usage`) read in one transaction, with the log position and per-origin marks it
//! stands for. Replication sends one to a peer whose log no longer reaches back (a
//! compacted log, a wiped disk, the losing side of a split brain), which installs it
//! in one transaction: its tables replaced, its log emptied, its marks set to the
//! snapshot's. Blobs travel separately (the receiver fetches those it lacks first).

use crate::store::schema::Cached;
use std::collections::BTreeSet;

use rusqlite::Connection;
use rusqlite::types::Value;
use serde::{Deserialize, Serialize};

use super::marks;
use crate::store::{Change, Result};

/// Why a snapshot cannot be installed here.
#[derive(Debug, thiserror::Error)]
pub enum BadSnapshot {
    /// Its rows refer to blobs this node does not hold (they are fetched first).
    #[error("snapshot refers to {count} blobs this node lacks (e.g. {example})")]
    MissingBlobs { count: usize, example: String },
    /// From a node with a newer schema.
    #[error("snapshot has a table this node does not know: {0}")]
    UnknownTable(String),
    #[error("snapshot table {table} has an unknown column {column}")]
    UnknownColumn { table: String, column: String },
    #[error("snapshot row of {table} has {values} values for {columns} columns")]
    RowWidth {
        table: String,
        values: usize,
        columns: usize,
    },
}

/// One value of a row (the schema holds integers, text and NULL only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The log position (of the sender) the snapshot includes.
    pub seq: u64,
    /// Per origin, the highest origin_seq whose effect the snapshot includes.
    pub marks: Vec<(String, u64)>,
    /// The highest clock of the ops it includes.
    pub hlc: u64,
    pub tables: Vec<Table>,
}

/// Tables a snapshot carries: all but the log and its bookkeeping.
pub(super) fn data_tables(conn: &Connection) -> Result<Vec<String>> {
    let mut names: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT IN ('oplog', 'meta', 'marks', 'mailbox_usage') AND name NOT LIKE 'sqlite_%'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    names.sort();
    Ok(names)
}

fn columns(conn: &Connection, table: &str) -> Result<Vec<String>> {
    Ok(conn
        .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?
        .query_map([table], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?)
}

/// Reads a consistent snapshot (one read transaction).
pub fn read(conn: &Connection) -> Result<Snapshot> {
    let tx = conn.unchecked_transaction()?;
    let (seq, hlc): (i64, i64) = tx.row(
        "SELECT coalesce(max(seq), 0), coalesce(max(hlc), 0) FROM oplog",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut snap = Snapshot {
        seq: seq as u64,
        marks: marks(&tx)?,
        hlc: hlc as u64,
        tables: Vec::new(),
    };
    for name in data_tables(&tx)? {
        let columns = columns(&tx, &name)?;
        let mut st = tx.prepare(&format!("SELECT * FROM \"{name}\""))?;
        let n = columns.len();
        let rows = st
            .query_map([], |r| {
                (0..n)
                    .map(|i| {
                        Ok(match r.get::<_, Value>(i)? {
                            Value::Null => Cell::Null,
                            Value::Integer(v) => Cell::Int(v),
                            Value::Text(t) => Cell::Text(t),
                            Value::Real(f) => Cell::Text(f.to_string()),
                            Value::Blob(b) => Cell::Text(hex::encode(b)),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<Cell>>>()
            })?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        drop(st);
        snap.tables.push(Table {
            name,
            columns,
            rows,
        });
    }
    tx.commit()?;
    Ok(snap)
}

impl Snapshot {
    /// The blobs its rows refer to (every column named `blob`).
    pub fn blobs(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for t in &self.tables {
            if let Some(i) = t.columns.iter().position(|c| c == "blob") {
                for r in &t.rows {
                    if let Some(Cell::Text(b)) = r.get(i) {
                        out.insert(b.clone());
                    }
                }
            }
        }
        out
    }

    pub fn rows(&self) -> usize {
        self.tables.iter().map(|t| t.rows.len()).sum()
    }
}

/// Replaces this store's content with `snap` inside `tx`: data tables, log (emptied,
/// its positions never reused: `seq_floor`), marks. Returns the new `seq_floor` and
/// the changes to announce.
pub fn install(tx: &Connection, snap: &Snapshot, floor: u64) -> Result<(u64, Vec<Change>)> {
    let local = data_tables(tx)?;
    let mut changes = vec![Change::Accounts, Change::Queue];
    let mut paths: BTreeSet<String> = tx
        .prepare("SELECT path FROM content")?
        .query_map([], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    let old_mailboxes: Vec<String> = tx
        .prepare("SELECT id FROM mailboxes")?
        .query_map([], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    for name in &local {
        tx.exec(&format!("DELETE FROM \"{name}\""), [])?;
    }
    for t in &snap.tables {
        if !local.contains(&t.name) {
            return Err(BadSnapshot::UnknownTable(t.name.clone()).into());
        }
        let have = columns(tx, &t.name)?;
        if let Some(c) = t.columns.iter().find(|c| !have.contains(c)) {
            return Err(BadSnapshot::UnknownColumn {
                table: t.name.clone(),
                column: c.clone(),
            }
            .into());
        }
        let cols = t
            .columns
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let marks = vec!["?"; t.columns.len()].join(", ");
        let mut st = tx.prepare(&format!(
            "INSERT INTO \"{}\" ({cols}) VALUES ({marks})",
            t.name
        ))?;
        for row in &t.rows {
            if row.len() != t.columns.len() {
                return Err(BadSnapshot::RowWidth {
                    table: t.name.clone(),
                    values: row.len(),
                    columns: t.columns.len(),
                }
                .into());
            }
            let values: Vec<Value> = row
                .iter()
                .map(|c| match c {
                    Cell::Null => Value::Null,
                    Cell::Int(v) => Value::Integer(*v),
                    Cell::Text(s) => Value::Text(s.clone()),
                })
                .collect();
            st.execute(rusqlite::params_from_iter(values))?;
        }
    }
    let floor = floor.max(super::last_seq(tx)?);
    tx.exec("DELETE FROM oplog", [])?;
    tx.exec("DELETE FROM marks", [])?;
    for (origin, seq) in &snap.marks {
        tx.exec(
            "INSERT INTO marks (origin, origin_seq) VALUES (?1, ?2)",
            rusqlite::params![origin, *seq as i64],
        )?;
    }
    tx.exec(
        "INSERT INTO meta (key, value) VALUES ('seq_floor', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [floor.to_string()],
    )?;
    tx.exec("DELETE FROM meta WHERE key = 'resync_needed'", [])?;
    paths.extend(
        tx.prepare("SELECT path FROM content")?
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<std::result::Result<Vec<_>, _>>()?,
    );
    changes.extend(paths.into_iter().map(|path| Change::Content { path }));
    let accounts: Vec<String> = tx
        .prepare("SELECT name FROM accounts")?
        .query_map([], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    changes.extend(
        accounts
            .into_iter()
            .map(|account| Change::Mailboxes { account }),
    );
    changes.extend(old_mailboxes.into_iter().map(|mailbox| Change::Expunged {
        mailbox,
        uids: Vec::new(),
    }));
    Ok((floor, changes))
}
