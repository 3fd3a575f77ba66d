//! APPEND (RFC 3501 6.3.11) with the APPENDUID response code of UIDPLUS (RFC 4315):
//! stores the literal as a new message of the named mailbox; a missing mailbox
//! answers `[TRYCREATE]`.

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
        let Some(info) = self.srv.ctx.store.mailbox(self.user(), &name).await? else {
            return Err(Fail::No(format!("[TRYCREATE] No such mailbox: {name}")));
        };
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let date = date.map(|d| d.as_ref().timestamp());
        let data = match message {
            LiteralOrLiteral8::Literal(l) => l.as_ref().to_vec(),
            LiteralOrLiteral8::Literal8(l) => l.data.to_vec(),
        };
        let done = self
            .srv
            .ctx
            .store
            .append(&info.id, data, &flags, date)
            .await?;
        self.mark_dirty(&info.id);
        Ok(Done::Ok(format!(
            "[APPENDUID {} {}] APPEND completed",
            done.uidvalidity, done.uid
        )))
    }
}
