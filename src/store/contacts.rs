//! The personal address book of each account (the webmail's contacts and its
//! autocomplete). Every change is an op (`ContactPut`, `ContactDelete`) like all durable
//! state, so it replicates with the rest.
//!
//! Invariants: a contact belongs to exactly one account and is addressed by a stable
//! random id; an edit of an id owned by another account is refused (`NotAllowed`), so a
//! forged form cannot touch someone else's book; e-mail addresses are stored trimmed,
//! names and notes without control characters (notes keep line breaks).

use crate::store::schema::Cached;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::op::Op;
use super::{Result, Store, StoreError, new_id, now};

/// One entry of an address book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub id: String,
    pub account: String,
    pub name: String,
    pub email: String,
    pub note: String,
    /// Unix seconds of the last change.
    pub updated: i64,
}

/// Longest accepted fields (bytes).
const MAX_NAME: usize = 200;
const MAX_EMAIL: usize = 320;
const MAX_NOTE: usize = 4000;
/// Most contacts one account may keep.
pub const MAX_CONTACTS: usize = 5000;

fn clean_line(s: &str) -> String {
    s.trim().chars().filter(|c| !c.is_control()).collect()
}

fn clean_note(s: &str) -> String {
    s.trim()
        .replace("\r\n", "\n")
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect()
}

/// Checks and normalises a contact's fields: `(name, email, note)`.
pub fn validate_contact(name: &str, email: &str, note: &str) -> Result<(String, String, String)> {
    let name = clean_line(name);
    let email = email.trim().to_string();
    let note = clean_note(note);
    let email_ok = email.len() <= MAX_EMAIL
        && email.rsplit_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && !d.is_empty() && !d.starts_with('.') && !d.ends_with('.')
        })
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | '"'));
    if !email_ok {
        return Err(StoreError::InvalidName(format!("e-mail address {email:?}")));
    }
    if name.len() > MAX_NAME {
        return Err(StoreError::InvalidName("name too long".into()));
    }
    if note.len() > MAX_NOTE {
        return Err(StoreError::InvalidName("note too long".into()));
    }
    Ok((name, email, note))
}

fn contact_row(r: &Row) -> rusqlite::Result<Contact> {
    Ok(Contact {
        id: r.get(0)?,
        account: r.get(1)?,
        name: r.get(2)?,
        email: r.get(3)?,
        note: r.get(4)?,
        updated: r.get(5)?,
    })
}

const COLS: &str = "id, account, name, email, note, updated";

pub(super) fn by_id(conn: &Connection, id: &str) -> Result<Option<Contact>> {
    Ok(conn
        .row(
            &format!("SELECT {COLS} FROM contacts WHERE id = ?1"),
            [id],
            contact_row,
        )
        .optional()?)
}

pub(super) fn of_account(conn: &Connection, account: &str) -> Result<Vec<Contact>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLS} FROM contacts WHERE account = ?1 ORDER BY lower(name), lower(email), id"
    ))?;
    let rows = st.query_map([account], contact_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Removes the address book of an account (it is being deleted).
pub(super) fn delete_of_account(conn: &Connection, account: &str) -> Result<()> {
    conn.exec("DELETE FROM contacts WHERE account = ?1", [account])?;
    Ok(())
}

/// Applies a contact op (called from `apply::apply`).
pub(super) fn apply(conn: &Connection, op: &Op) -> Result<()> {
    match op {
        Op::ContactPut { contact: c } => {
            conn.exec(
                "INSERT INTO contacts (id, account, name, email, note, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email,
                 note = excluded.note, updated = excluded.updated",
                params![c.id, c.account, c.name, c.email, c.note, c.updated],
            )?;
        }
        Op::ContactDelete { account, id } => {
            conn.exec(
                "DELETE FROM contacts WHERE id = ?1 AND account = ?2",
                params![id, account],
            )?;
        }
        _ => {}
    }
    Ok(())
}

impl Store {
    /// The address book of an account, ordered by name.
    pub async fn contacts(&self, account: &str) -> Result<Vec<Contact>> {
        let account = account.to_ascii_lowercase();
        self.read(move |conn| of_account(conn, &account)).await
    }

    /// One contact of an account (`None` when absent or owned by another account).
    pub async fn contact(&self, account: &str, id: &str) -> Result<Option<Contact>> {
        let account = account.to_ascii_lowercase();
        let id = id.to_string();
        self.read(move |conn| Ok(by_id(conn, &id)?.filter(|c| c.account == account)))
            .await
    }

    /// Adds (`id` = None) or replaces a contact; returns it as stored.
    pub async fn put_contact(
        &self,
        account: &str,
        id: Option<&str>,
        name: &str,
        email: &str,
        note: &str,
    ) -> Result<Contact> {
        let account = account.to_ascii_lowercase();
        let (name, email, note) = validate_contact(name, email, note)?;
        let id = id.map(str::to_string);
        let op = self
            .commit(move |conn| {
                if !super::accounts::exists(conn, &account)? {
                    return Err(StoreError::NoSuchAccount(account));
                }
                let id = match id {
                    Some(id) => match by_id(conn, &id)? {
                        Some(c) if c.account == account => id,
                        _ => return Err(StoreError::NotAllowed(format!("no contact {id}"))),
                    },
                    None => {
                        let n: i64 = conn.row(
                            "SELECT count(*) FROM contacts WHERE account = ?1",
                            [&account],
                            |r| r.get(0),
                        )?;
                        if n as usize >= MAX_CONTACTS {
                            return Err(StoreError::NotAllowed("address book is full".into()));
                        }
                        new_id()
                    }
                };
                Ok(Op::ContactPut {
                    contact: Contact {
                        id,
                        account,
                        name,
                        email,
                        note,
                        updated: now(),
                    },
                })
            })
            .await?;
        match op {
            Op::ContactPut { contact } => Ok(contact),
            _ => unreachable!(),
        }
    }

    /// Removes a contact of an account (absent ids are an error).
    pub async fn delete_contact(&self, account: &str, id: &str) -> Result<()> {
        let account = account.to_ascii_lowercase();
        let id = id.to_string();
        self.commit(move |conn| match by_id(conn, &id)? {
            Some(c) if c.account == account => Ok(Op::ContactDelete { account, id }),
            _ => Err(StoreError::NotAllowed(format!("no contact {id}"))),
        })
        .await
        .map(|_| ())
    }
}
