//! Accounts: the `accounts` table (name, full name, argon2 password hash), the
//! `AccountCreate`, `AccountPassword` and `AccountDelete` ops, and the password check.
//!
//! Invariants: account names are lower-case `[a-z0-9._-]` ([`normalize_account`]); a
//! new account gets the [`DEFAULT_MAILBOXES`] in the same op; deleting an account
//! removes its mailboxes with their messages, its subscriptions and its address book.
//! A password check costs one argon2 verification whether or not the name exists.
//!
//! Quotas (RFC 9208, the STORAGE resource): an account's own limit (`quota_mb`, set
//! by the administrator with `AccountQuota`; 0: none) or, when it has none, the
//! node's default ([`Store::set_default_quota_mb`]); its usage is the sum of its
//! messages' sizes (a copy counts again, as IMAP sees it): the sum of its
//! mailboxes' rows in `mailbox_usage`, which triggers keep (`schema`).

use crate::store::schema::Cached;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::mailboxes::{self, SpecialUse, new_uidvalidity};
use super::op::{NewMailbox, Op};
use super::{Result, Store, StoreError, contacts, new_id};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub full_name: String,
}

/// Mailboxes every new account gets.
pub const DEFAULT_MAILBOXES: [(&str, Option<SpecialUse>); 5] = [
    ("INBOX", None),
    ("Sent", Some(SpecialUse::Sent)),
    ("Drafts", Some(SpecialUse::Drafts)),
    ("Trash", Some(SpecialUse::Trash)),
    ("Junk", Some(SpecialUse::Junk)),
];

/// Account names are lower-case `[a-z0-9._-]`, 1 to 64 characters, starting with a
/// letter or digit (they are also the local part of the mail address).
pub fn normalize_account(name: &str) -> Result<String> {
    let n = name.trim().to_ascii_lowercase();
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(n)
    } else {
        Err(StoreError::InvalidName(format!(
            "account name {name:?}: use 1-64 characters a-z, 0-9, '.', '_', '-'"
        )))
    }
}

pub(super) fn exists(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .row("SELECT 1 FROM accounts WHERE name = ?1", [name], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Applies an account op (called from `apply::apply`).
pub(super) fn apply(conn: &Connection, op: &Op) -> Result<()> {
    match op {
        Op::AccountCreate {
            name,
            full_name,
            password_hash,
            mailboxes,
        } => {
            conn.exec(
                "INSERT INTO accounts (name, full_name, password_hash) VALUES (?1, ?2, ?3)",
                params![name, full_name, password_hash],
            )?;
            for m in mailboxes {
                mailboxes::insert(conn, m)?;
            }
        }
        Op::AccountPassword {
            name,
            password_hash,
        } => {
            conn.exec(
                "UPDATE accounts SET password_hash = ?2 WHERE name = ?1",
                params![name, password_hash],
            )?;
        }
        Op::AccountQuota { name, quota_mb } => {
            conn.exec(
                "UPDATE accounts SET quota_mb = ?2 WHERE name = ?1",
                params![name, quota_mb.map(|q| q as i64)],
            )?;
        }
        Op::AccountDelete { name } => {
            mailboxes::delete_of_account(conn, name)?;
            contacts::delete_of_account(conn, name)?;
            conn.exec("DELETE FROM accounts WHERE name = ?1", [name])?;
        }
        _ => {}
    }
    Ok(())
}

impl Store {
    /// Creates an account with the default mailboxes. The password is hashed with argon2.
    pub async fn create_account(&self, name: &str, full_name: &str, password: &str) -> Result<()> {
        let name = normalize_account(name)?;
        let hash = hash_password(password).await?;
        let full_name = full_name.to_string();
        self.commit(move |conn| {
            if exists(conn, &name)? {
                return Err(StoreError::AccountExists(name));
            }
            let mailboxes = DEFAULT_MAILBOXES
                .iter()
                .map(|(mb, special)| NewMailbox {
                    id: new_id(),
                    account: name.clone(),
                    name: mb.to_string(),
                    uidvalidity: new_uidvalidity(),
                    special_use: *special,
                })
                .collect();
            Ok(Op::AccountCreate {
                name,
                full_name,
                password_hash: hash,
                mailboxes,
            })
        })
        .await
        .map(|_| ())
    }

    pub async fn set_password(&self, name: &str, password: &str) -> Result<()> {
        let name = normalize_account(name)?;
        let hash = hash_password(password).await?;
        self.commit(move |conn| {
            if !exists(conn, &name)? {
                return Err(StoreError::NoSuchAccount(name));
            }
            Ok(Op::AccountPassword {
                name,
                password_hash: hash,
            })
        })
        .await
        .map(|_| ())
    }

    pub async fn delete_account(&self, name: &str) -> Result<()> {
        let name = normalize_account(name)?;
        self.commit(move |conn| {
            if !exists(conn, &name)? {
                return Err(StoreError::NoSuchAccount(name));
            }
            Ok(Op::AccountDelete { name })
        })
        .await
        .map(|_| ())
    }

    pub async fn list_accounts(&self) -> Result<Vec<Account>> {
        self.read(|conn| {
            let mut st = conn.prepare("SELECT name, full_name FROM accounts ORDER BY name")?;
            let rows = st.query_map([], |r| {
                Ok(Account {
                    name: r.get(0)?,
                    full_name: r.get(1)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub async fn account(&self, name: &str) -> Result<Option<Account>> {
        let Ok(name) = normalize_account(name) else {
            return Ok(None);
        };
        self.read(move |conn| {
            Ok(conn
                .row(
                    "SELECT name, full_name FROM accounts WHERE name = ?1",
                    [&name],
                    |r| {
                        Ok(Account {
                            name: r.get(0)?,
                            full_name: r.get(1)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    /// Checks a password. Returns the canonical account name on success. Costs an
    /// argon2 verification (on the password pool, `hasher`) unless the same password
    /// was verified recently (`authcache`); callers rate-limit.
    pub async fn verify_password(&self, name: &str, password: &str) -> Result<Option<String>> {
        let Ok(name) = normalize_account(name) else {
            return Ok(None);
        };
        let stored: Option<String> = {
            let name = name.clone();
            self.read(move |conn| {
                Ok(conn
                    .row(
                        "SELECT password_hash FROM accounts WHERE name = ?1",
                        [&name],
                        |r| r.get(0),
                    )
                    .optional()?)
            })
            .await?
        };
        if let Some(hash) = &stored
            && super::authcache::hit(&name, hash, password)
        {
            return Ok(Some(name));
        }
        let password = password.to_string();
        let remembered = stored.clone().map(|h| (h, password.clone()));
        let ok = super::hasher::run(move || {
            use argon2::{PasswordHash, PasswordVerifier};
            // Verify against a dummy hash for unknown users so timing does not tell.
            let exists = stored.is_some();
            let hash = stored.unwrap_or_else(|| dummy_hash().to_string());
            let parsed = PasswordHash::new(&hash).ok();
            let good = parsed
                .map(|h| {
                    argon2::Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false);
            exists && good
        })
        .await
        .ok_or(StoreError::PasswordTask)?;
        if ok && let Some((hash, password)) = remembered {
            super::authcache::remember(&name, &hash, &password);
        }
        Ok(ok.then_some(name))
    }
}

/// An account's storage: what its messages take and its limit (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub usage: u64,
    /// None: no limit.
    pub limit: Option<u64>,
}

impl Quota {
    /// Whether `adding` more bytes would go beyond the limit.
    pub fn exceeded_by(&self, adding: u64) -> bool {
        self.limit
            .is_some_and(|l| self.usage.saturating_add(adding) > l)
    }
}

/// The sum of the sizes of `account`'s messages.
pub(super) fn usage(conn: &Connection, account: &str) -> Result<u64> {
    // `mailbox_usage` (kept by triggers, see `schema`): a row per mailbox.
    let sum: i64 = conn.row(
        "SELECT COALESCE(SUM(u.bytes), 0) FROM mailboxes b
         JOIN mailbox_usage u ON u.mailbox = b.id
         WHERE b.account = ?1",
        [account],
        |r| r.get(0),
    )?;
    Ok(sum.max(0) as u64)
}

const MIB: u64 = 1024 * 1024;

impl Store {
    /// The quota of accounts without their own (MiB; 0: none), from the config.
    pub fn set_default_quota_mb(&self, mb: u64) {
        self.inner
            .default_quota_mb
            .store(mb, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets (`Some(mb)`, 0: no quota) or clears (`None`: the default applies) an
    /// account's own quota; replicates like every account change.
    pub async fn set_quota(&self, name: &str, quota_mb: Option<u64>) -> Result<()> {
        let name = normalize_account(name)?;
        self.commit(move |conn| {
            if !exists(conn, &name)? {
                return Err(StoreError::NoSuchAccount(name));
            }
            Ok(Op::AccountQuota { name, quota_mb })
        })
        .await
        .map(|_| ())
    }

    /// An account's usage and limit; None for an unknown account.
    pub async fn quota(&self, name: &str) -> Result<Option<Quota>> {
        let Ok(name) = normalize_account(name) else {
            return Ok(None);
        };
        let default = self
            .inner
            .default_quota_mb
            .load(std::sync::atomic::Ordering::Relaxed);
        self.read(move |conn| {
            let own: Option<Option<i64>> = conn
                .row(
                    "SELECT quota_mb FROM accounts WHERE name = ?1",
                    [&name],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(own) = own else {
                return Ok(None);
            };
            let mb = own.map(|q| q.max(0) as u64).unwrap_or(default);
            Ok(Some(Quota {
                usage: usage(conn, &name)?,
                limit: (mb > 0).then(|| mb.saturating_mul(MIB)),
            }))
        })
        .await
    }

    /// `Err(OverQuota)` when storing `adding` more bytes for `account` would exceed
    /// its quota (checked on a read, before the commit: concurrent stores may each
    /// pass and end a little beyond the limit, which RFC 9208 5.1 allows).
    pub async fn check_quota(&self, account: &str, adding: u64) -> Result<()> {
        match self.quota(account).await? {
            Some(q) if q.exceeded_by(adding) => Err(StoreError::OverQuota(account.to_string())),
            _ => Ok(()),
        }
    }
}

/// A hash to verify against when the account does not exist, so that a failed login
/// costs the same whether or not the name is known.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password_blocking(&new_id()).unwrap_or_default())
}

fn hash_password_blocking(password: &str) -> Result<String> {
    use argon2::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(StoreError::PasswordHashing)
}

async fn hash_password(password: &str) -> Result<String> {
    if password.is_empty() {
        return Err(StoreError::InvalidName("empty password".into()));
    }
    let password = password.to_string();
    super::hasher::run(move || hash_password_blocking(&password))
        .await
        .ok_or(StoreError::PasswordTask)?
}
