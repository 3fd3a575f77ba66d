//! Settings: the `settings` table (key/value pairs such as the TLS identity) and the
//! `SettingSet` op. A setting is last writer wins by clock: a replicated change older
//! than one the log holds is logged but not applied ([`newer`]), so both nodes keep the
//! same value whatever order they applied the changes in.

use crate::store::schema::Cached;
use rusqlite::{Connection, OptionalExtension, params};

use super::op::Op;
use super::{Result, Store, StoreError};

/// Applies a setting op (called from `apply::apply`).
pub(super) fn apply(conn: &Connection, op: &Op) -> Result<()> {
    if let Op::SettingSet { key, value } = op {
        conn.exec(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
    }
    Ok(())
}

/// Whether the log holds a change of setting `key` with a clock after `hlc`.
pub(super) fn newer(tx: &Connection, key: &str, hlc: u64) -> Result<bool> {
    // Ops are stored as JSON with the tag first (`{"type":"setting_set","key":...`).
    let key_json = serde_json::to_string(key).map_err(StoreError::Encode)?;
    let pattern = format!(
        "{{\"type\":\"setting_set\",\"key\":{}%",
        key_json
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let newer: bool = tx.row(
        "SELECT EXISTS (SELECT 1 FROM oplog WHERE hlc > ?1 AND op LIKE ?2 ESCAPE '\\')",
        params![hlc as i64, pattern],
        |r| r.get(0),
    )?;
    Ok(newer)
}

impl Store {
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.read(move |conn| {
            Ok(conn
                .row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()?)
        })
        .await
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let key = key.to_string();
        let value = value.to_string();
        self.commit(move |_| Ok(Op::SettingSet { key, value }))
            .await
            .map(|_| ())
    }
}
