//! Commands valid in any state (RFC 3501 6.1): CAPABILITY, NOOP, LOGOUT, plus ID
//! (RFC 2971) and ENABLE (RFC 5161), and the capability list the greeting and LOGIN
//! also announce.

use super::{CmdResult, Done, ok};
use crate::imap::session::Session;

impl Session {
    pub(in crate::imap) fn capabilities(&self) -> String {
        let mut caps = String::from(
            "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE \
             SPECIAL-USE CHILDREN",
        );
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

    pub(in crate::imap) fn enable(&mut self) -> CmdResult {
        // Nothing this server implements needs enabling (RFC 5161).
        self.conn.line("* ENABLED");
        ok("ENABLE completed")
    }
}
