//! `clusterd verify`: a read-only check of a store — SQLite's `PRAGMA
//! integrity_check`, the op log contiguous (no position missing between its first
//! and last, every op decodes), and every body file a row refers to (messages, the
//! queue, the content area) present with the content its name (SHA-256) says.
//!
//! It opens store.db read-only and takes no lock, so it runs beside a running node
//! without touching its writes (WAL readers never block the writer). A body the node
//! wrote after the check read the tables is not looked at; one it removed meanwhile
//! (a sweep of files no row refers to any more) is read again from the tables before
//! it is reported.

use crate::store::schema::Cached;
use std::io::Read;
use std::path::Path;

use rusqlite::Connection;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Result, StoreError, blobs, op::Op, schema};

/// What [`verify`] found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// What `PRAGMA integrity_check` said when not "ok".
    pub integrity: Vec<String>,
    /// Log positions, first and last, and the op count.
    pub log_first: Option<u64>,
    pub log_last: Option<u64>,
    pub log_ops: u64,
    /// Ranges of missing log positions (first, last).
    pub log_gaps: Vec<(u64, u64)>,
    /// Positions whose op does not decode.
    pub log_undecodable: Vec<u64>,
    /// Distinct body files referred to, and checked.
    pub blobs: u64,
    /// Referred to but absent.
    pub missing_blobs: Vec<String>,
    /// Present but their content does not hash to their name.
    pub bad_blobs: Vec<String>,
}

impl Report {
    pub fn problems(&self) -> usize {
        self.integrity.len()
            + self.log_gaps.len()
            + self.log_undecodable.len()
            + self.missing_blobs.len()
            + self.bad_blobs.len()
    }

    /// The summary `clusterd verify` prints, one finding a line.
    pub fn render(&self) -> String {
        let mut s = String::new();
        use std::fmt::Write;
        let _ = writeln!(
            s,
            "sqlite:  {}",
            if self.integrity.is_empty() {
                "integrity_check ok".to_string()
            } else {
                format!("integrity_check FAILED: {}", self.integrity.join("; "))
            }
        );
        let range = match (self.log_first, self.log_last) {
            (Some(a), Some(b)) => format!("seq {a}..{b}"),
            _ => "empty".to_string(),
        };
        let _ = writeln!(s, "op log:  {} op(s), {range}", self.log_ops);
        for (a, b) in &self.log_gaps {
            let _ = writeln!(s, "op log:  GAP: seq {a}..{b} missing");
        }
        for seq in &self.log_undecodable {
            let _ = writeln!(s, "op log:  seq {seq}: the op does not decode");
        }
        let _ = writeln!(s, "blobs:   {} referenced file(s) checked", self.blobs);
        for b in &self.missing_blobs {
            let _ = writeln!(s, "blobs:   MISSING {b}");
        }
        for b in &self.bad_blobs {
            let _ = writeln!(s, "blobs:   BAD HASH {b}");
        }
        let _ = match self.problems() {
            0 => writeln!(s, "verify:  ok"),
            n => writeln!(s, "verify:  {n} problem(s)"),
        };
        s
    }
}

/// Checks the store in `data_dir` (see the module doc). Errors only when the store
/// cannot be read at all; what is wrong inside it goes into the [`Report`].
pub fn verify(data_dir: &Path) -> Result<Report> {
    let db = data_dir.join("store.db");
    if !db.exists() {
        return Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no store in {} (no store.db)", data_dir.display()),
        )));
    }
    let conn = schema::open_ro(&db)?;
    let mut r = Report::default();

    match integrity(&conn) {
        Ok(found) if found.len() == 1 && found[0] == "ok" => {}
        Ok(found) => r.integrity = found,
        Err(e) => r.integrity = vec![e.to_string()],
    }
    // A damaged file may still answer the rest; what it cannot answer is a finding.
    if let Err(e) = log(&conn, &mut r) {
        r.integrity.push(format!("reading the op log: {e}"));
    }
    match referenced(&conn) {
        Ok(all) => {
            r.blobs = all.len() as u64;
            for b in all {
                match check_blob(data_dir, &b) {
                    Ok(true) => {}
                    Ok(false) => r.bad_blobs.push(b),
                    Err(_) if still_referenced(&conn, &b) => r.missing_blobs.push(b),
                    Err(_) => {}
                }
            }
        }
        Err(e) => r.integrity.push(format!("reading the tables: {e}")),
    }
    Ok(r)
}

fn integrity(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare("PRAGMA integrity_check(100)")?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}

fn log(conn: &Connection, r: &mut Report) -> rusqlite::Result<()> {
    let mut st = conn.prepare("SELECT seq, op FROM oplog ORDER BY seq")?;
    let mut rows = st.query([])?;
    let mut prev: Option<u64> = None;
    while let Some(row) = rows.next()? {
        let seq = row.get::<_, i64>(0)? as u64;
        let op: String = row.get(1)?;
        if let Some(p) = prev
            && seq > p + 1
        {
            r.log_gaps.push((p + 1, seq - 1));
        }
        if serde_json::from_str::<Op>(&op).is_err() {
            r.log_undecodable.push(seq);
        }
        r.log_first.get_or_insert(seq);
        r.log_last = Some(seq);
        r.log_ops += 1;
        prev = Some(seq);
    }
    Ok(())
}

const REFERENCED: &str = "SELECT blob FROM messages UNION SELECT blob FROM queue \
                          UNION SELECT blob FROM content";

fn referenced(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare(REFERENCED)?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}

fn still_referenced(conn: &Connection, blob: &str) -> bool {
    conn.row(
        &format!("SELECT EXISTS (SELECT 1 FROM ({REFERENCED}) WHERE blob = ?1)"),
        [blob],
        |r| r.get::<_, bool>(0),
    )
    .unwrap_or(true)
}

/// Whether the file of `blob` hashes to its name; an error if it cannot be read.
fn check_blob(data_dir: &Path, blob: &str) -> std::io::Result<bool> {
    let mut f = std::fs::File::open(blobs::path(data_dir, blob))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()) == blob)
}
