//! The content area: the `content` table (site files under `www/`, zone files under
//! `zones/`, each a path and a blob) and the `ContentPut` and `ContentDelete` ops.
//!
//! Invariants: paths are relative and clean ([`normalize_content_path`]); unchanged
//! content is not re-committed; a `ContentPut` names the blob the path held before
//! (`base`), against which replication sends the new one as a block delta.

use crate::store::schema::Cached;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::op::Op;
use super::types::BlobId;
use super::{Result, Store, StoreError, now};

/// A file in the content area (site files under `www/`, zone files under `zones/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentEntry {
    /// Relative path, `/`-separated, no `..`, e.g. `zones/cluster.com.ec.zone`.
    pub path: String,
    pub blob: BlobId,
    pub size: u64,
    /// Unix seconds of the last change.
    pub mtime: i64,
}

/// Content paths are relative, `/`-separated, without empty, `.` or `..` segments.
pub fn normalize_content_path(path: &str) -> Result<String> {
    let p = path.trim_start_matches('/');
    let ok = !p.is_empty()
        && p.len() <= 1024
        && !p.chars().any(|c| c.is_control() || c == '\\')
        && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(p.to_string())
    } else {
        Err(StoreError::InvalidName(format!("content path {path:?}")))
    }
}

/// Applies a content op (called from `apply::apply`).
pub(super) fn apply(conn: &Connection, op: &Op) -> Result<()> {
    match op {
        Op::ContentPut {
            path,
            blob,
            size,
            mtime,
            ..
        } => {
            conn.exec(
                "INSERT INTO content (path, blob, size, mtime) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (path) DO UPDATE SET blob = excluded.blob, size = excluded.size,
                 mtime = excluded.mtime",
                params![path, blob, *size as i64, mtime],
            )?;
        }
        Op::ContentDelete { path } => {
            conn.exec("DELETE FROM content WHERE path = ?1", [path])?;
        }
        _ => {}
    }
    Ok(())
}

/// The blob a content path holds now.
pub(super) fn blob_of(conn: &Connection, path: &str) -> Result<Option<String>> {
    Ok(conn
        .row("SELECT blob FROM content WHERE path = ?1", [path], |r| {
            r.get(0)
        })
        .optional()?)
}

/// The entries whose path starts with `prefix`, by path.
pub(super) fn under(conn: &Connection, prefix: &str) -> Result<Vec<ContentEntry>> {
    let mut st = conn.prepare(
        "SELECT path, blob, size, mtime FROM content WHERE substr(path, 1, ?1) = ?2 ORDER BY path",
    )?;
    let rows = st.query_map(params![prefix.len() as i64, prefix], |r| {
        Ok(ContentEntry {
            path: r.get(0)?,
            blob: r.get(1)?,
            size: r.get::<_, i64>(2)? as u64,
            mtime: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

impl Store {
    /// Sets a file of the content area (site files, zone files). Unchanged content is
    /// not re-committed.
    pub async fn put_content(&self, path: &str, data: Vec<u8>) -> Result<ContentEntry> {
        let path = normalize_content_path(path)?;
        let (blob, size) = self.put_blob(data).await?;
        if let Some(old) = self.content_entry(&path).await?
            && old.blob == blob
        {
            return Ok(old);
        }
        let mtime = now();
        self.commit(move |conn| {
            let base = blob_of(conn, &path)?.filter(|b| *b != blob);
            Ok(Op::ContentPut {
                path,
                blob,
                size,
                mtime,
                base,
            })
        })
        .await
        .map(|op| match op {
            Op::ContentPut {
                path,
                blob,
                size,
                mtime,
                ..
            } => ContentEntry {
                path,
                blob,
                size,
                mtime,
            },
            _ => unreachable!(),
        })
    }

    pub async fn delete_content(&self, path: &str) -> Result<()> {
        let path = normalize_content_path(path)?;
        self.commit(move |_| Ok(Op::ContentDelete { path }))
            .await
            .map(|_| ())
    }

    /// The entry for one content path.
    pub async fn content_entry(&self, path: &str) -> Result<Option<ContentEntry>> {
        let path = normalize_content_path(path)?;
        self.read(move |conn| Ok(under(conn, &path)?.into_iter().find(|e| e.path == path)))
            .await
    }

    /// The bytes of one content file.
    pub async fn content(&self, path: &str) -> Result<Option<Vec<u8>>> {
        match self.content_entry(path).await? {
            Some(e) => Ok(Some(self.read_blob(&e.blob).await?)),
            None => Ok(None),
        }
    }

    /// Content entries whose path starts with `prefix` (e.g. `zones/`), by path.
    pub async fn content_list(&self, prefix: &str) -> Result<Vec<ContentEntry>> {
        let prefix = prefix.to_string();
        self.read(move |conn| under(conn, &prefix)).await
    }
}
