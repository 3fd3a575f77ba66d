//! APPEND (RFC 3501 6.3.11) with the APPENDUID response code of UIDPLUS (RFC 4315):
//! stores the literal as a new message of the named mailbox (a large one was written
//! to its body file while it arrived, see `imap/conn.rs`); a missing mailbox answers
//! `[TRYCREATE]`, and one beyond the account's quota `[OVERQUOTA]` (RFC 9208).

use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;

use super::{CmdResult, Done, Fail, mailbox_name};
use crate::imap::session::Session;

impl Session {
    pub(in crate::imap) async fn append(
        &mut self,
        mailbox: &Mailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<DateTime>,
        message: LiteralOrLiteral8<'_>,
    ) -> CmdResult {
        let name = mailbox_name(mailbox)?;
        // Below the free-space floor nothing new is written (reads go on).
        self.srv.ctx.store.check_space()?;
        let Some(info) = self.srv.ctx.store.mailbox(self.user(), &name).await? else {
            return Err(Fail::No(format!("[TRYCREATE] No such mailbox: {name}")));
        };
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let date = date.map(|d| d.as_ref().timestamp());
        let data = match &message {
            LiteralOrLiteral8::Literal(l) => l.as_ref(),
            LiteralOrLiteral8::Literal8(l) => l.data.as_ref(),
        };
        let store = &self.srv.ctx.store;
        // A large literal was written to its file as it arrived (imap/conn.rs).
        let spooled = if data.is_empty() {
            self.conn.take_spooled()
        } else {
            None
        };
        // RFC 9208 5.1: over the quota, nothing is stored.
        let size = match &spooled {
            Some(Ok(sink)) => sink.len(),
            _ => data.len() as u64,
        };
        store.check_quota(self.user(), size).await?;
        let done = match spooled {
            Some(sink) => {
                let body = sink?.finish().await?;
                store
                    .append_blob(&info.id, body.blob, body.size, &flags, date)
                    .await?
            }
            None => store.append(&info.id, data.to_vec(), &flags, date).await?,
        };
        self.mark_dirty(&info.id);
        Ok(Done::Ok(format!(
            "[APPENDUID {} {}] APPEND completed",
            done.uidvalidity, done.uid
        )))
    }
}
