//! Commands valid in any state (RFC 3501 6.1): CAPABILITY, NOOP, LOGOUT, plus ID
//! (RFC 2971) and ENABLE (RFC 5161: CONDSTORE and QRESYNC, RFC 7162), and the
//! capability list the greeting and LOGIN also announce.

use imap_codec::imap_types::extensions::enable::CapabilityEnable;

use super::{CmdResult, Done, ok};
use crate::imap::session::Session;

impl Session {
    pub(in crate::imap) fn capabilities(&self) -> String {
        let mut caps = String::from(
            "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE \
             SPECIAL-USE CHILDREN CONDSTORE QRESYNC QUOTA QUOTA=RES-STORAGE",
        );
        if self.user.is_some() && !self.conn.is_compressed() {
            caps.push_str(" COMPRESS=DEFLATE");
        }
        if self.user.is_none() {
            if !self.conn.is_tls() {
                caps.push_str(" STARTTLS");
            }
            if self.auth_allowed() {
                caps.push_str(" AUTH=PLAIN");
            } else {
                caps.push_str(" LOGINDISABLED");
            }
        }
        caps
    }

    pub(in crate::imap) fn capability(&mut self) -> CmdResult {
        let caps = self.capabilities();
        self.conn.line(&format!("* CAPABILITY {caps}"));
        ok("CAPABILITY completed")
    }

    pub(in crate::imap) fn noop(&mut self) -> CmdResult {
        ok("NOOP completed")
    }

    pub(in crate::imap) fn logout(&mut self, tag: &str) -> CmdResult {
        self.conn.line("* BYE clusterd logging out");
        self.conn.line(&format!("{tag} OK LOGOUT completed"));
        Ok(Done::Close)
    }

    /// ID (recognised before imap-codec, which does not parse it in this build):
    /// answers and returns true, or returns false for arguments that are not `NIL`
    /// or a parenthesised list (the command is then a syntax error).
    pub(in crate::imap) fn id(&mut self, tag: &str, args: &str) -> bool {
        if !(args.eq_ignore_ascii_case("NIL") || (args.starts_with('(') && args.ends_with(')'))) {
            return false;
        }
        self.conn.line(&format!(
            "* ID (\"name\" \"clusterd\" \"version\" \"{}\")",
            env!("CARGO_PKG_VERSION")
        ));
        self.conn.line(&format!("{tag} OK ID completed"));
        true
    }

    /// ENABLE: CONDSTORE, and QRESYNC (which implies CONDSTORE); others are ignored
    /// (RFC 5161 3.1). ENABLED names those this command enabled.
    pub(in crate::imap) async fn enable(&mut self, caps: &[CapabilityEnable<'_>]) -> CmdResult {
        let mut enabled = String::from("* ENABLED");
        for cap in caps {
            let name = cap.to_string().to_ascii_uppercase();
            match name.as_str() {
                "CONDSTORE" if !self.condstore => self.enable_condstore().await?,
                "QRESYNC" if !self.qresync => {
                    self.qresync = true;
                    self.enable_condstore().await?;
                }
                _ => continue,
            }
            enabled.push(' ');
            enabled.push_str(&name);
        }
        self.conn.line(&enabled);
        ok("ENABLE completed")
    }
}
