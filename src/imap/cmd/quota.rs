//! QUOTA (RFC 9208) with the STORAGE resource: one quota root per account, named
//! `""`, holding every mailbox of the account. GETQUOTAROOT and GETQUOTA report the
//! account's usage and limit in KiB (an account without a limit has no quota root);
//! SETQUOTA is refused: the administrator sets quotas (`clusterd user quota`).

use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::mailbox::Mailbox;

use super::{CmdResult, Fail, ok, wire_name};
use crate::imap::session::Session;
use crate::imap::{utf7, wire};

impl Session {
    /// The `* QUOTA "" (STORAGE used limit)` line, if the account has a limit.
    async fn quota_line(&self) -> Result<Option<String>, Fail> {
        let q = self.srv.ctx.store.quota(self.user()).await?;
        Ok(q.and_then(|q| {
            q.limit.map(|l| {
                format!(
                    "* QUOTA \"\" (STORAGE {} {})",
                    q.usage.div_ceil(1024),
                    l / 1024
                )
            })
        }))
    }

    pub(in crate::imap) async fn getquotaroot(&mut self, mailbox: &Mailbox<'_>) -> CmdResult {
        // RFC 9208 4.3: the mailbox need not exist; the name goes back as it came.
        let name = wire::quoted(&utf7::encode(&wire_name(mailbox)?));
        match self.quota_line().await? {
            Some(line) => {
                self.conn.line(&format!("* QUOTAROOT {name} \"\""));
                self.conn.line(&line);
            }
            None => self.conn.line(&format!("* QUOTAROOT {name}")),
        }
        ok("GETQUOTAROOT completed")
    }

    pub(in crate::imap) async fn getquota(&mut self, root: &AString<'_>) -> CmdResult {
        let root: &[u8] = root.as_ref();
        let line = match root.is_empty() {
            true => self.quota_line().await?,
            false => None,
        };
        let Some(line) = line else {
            return Err(Fail::No("[NONEXISTENT] No such quota root".into()));
        };
        self.conn.line(&line);
        ok("GETQUOTA completed")
    }
}
