//! Commands of the not-authenticated state (RFC 3501 6.2): STARTTLS, LOGIN and
//! AUTHENTICATE PLAIN (RFC 4616, with SASL-IR, RFC 4959). Plaintext credentials are
//! accepted only over TLS or from `imap.allow_plaintext_auth_from`; failures are
//! answered after a growing delay and end the session after `MAX_AUTH_FAILURES`.

use std::borrow::Cow;

use base64::Engine;
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::secret::Secret;

use super::{CmdResult, Done, Fail, trim_crlf};
use crate::imap::session::Session;

/// Failed authentications after which the session is closed.
const MAX_AUTH_FAILURES: u32 = 5;

impl Session {
    /// RFC 3501 6.2.3: plaintext passwords only over TLS or from trusted networks.
    pub(super) fn auth_allowed(&self) -> bool {
        self.conn.is_tls() || self.srv.ctx.cfg.imap.plaintext_allowed(self.peer)
    }

    pub(in crate::imap) async fn starttls(&mut self, tag: &str) -> CmdResult {
        if self.conn.is_tls() {
            return Err(Fail::Bad("TLS is already active".into()));
        }
        if self.user.is_some() {
            return Err(Fail::Bad("STARTTLS is only valid before login".into()));
        }
        self.conn
            .line(&format!("{tag} OK Begin TLS negotiation now"));
        let acceptor = self.srv.ctx.tls.clone();
        match self.conn.start_tls(&acceptor).await {
            Ok(()) => Ok(Done::Handled),
            Err(e) => {
                tracing::info!(peer = %self.peer, "imap: STARTTLS failed: {e}");
                Ok(Done::Close)
            }
        }
    }

    pub(in crate::imap) async fn login(
        &mut self,
        tag: &str,
        username: &AString<'_>,
        password: &Secret<AString<'_>>,
    ) -> CmdResult {
        if self.user.is_some() {
            return Err(Fail::Bad("Already logged in".into()));
        }
        if !self.auth_allowed() {
            return Err(Fail::No(
                "[PRIVACYREQUIRED] Use STARTTLS or the TLS port before LOGIN".into(),
            ));
        }
        let user = astring(username);
        let pass = astring(password.declassify());
        self.check_credentials(tag, &user, &pass).await
    }

    pub(in crate::imap) async fn authenticate(
        &mut self,
        tag: &str,
        mechanism: &AuthMechanism<'_>,
        initial_response: Option<Secret<Cow<'_, [u8]>>>,
    ) -> CmdResult {
        if self.user.is_some() {
            return Err(Fail::Bad("Already logged in".into()));
        }
        if !matches!(mechanism, AuthMechanism::Plain) {
            return Err(Fail::No("Unsupported authentication mechanism".into()));
        }
        if !self.auth_allowed() {
            return Err(Fail::No(
                "[PRIVACYREQUIRED] Use STARTTLS or the TLS port before AUTHENTICATE".into(),
            ));
        }
        let data = match initial_response {
            Some(ir) => ir.declassify().to_vec(),
            None => {
                self.conn.line("+ ");
                let line = match self.conn.read_line().await {
                    Ok(Some(l)) => l,
                    Ok(None) => return Err(Fail::Bad("Line too long".into())),
                    Err(_) => return Err(Fail::Io),
                };
                let line = trim_crlf(&line);
                if line == b"*" {
                    return Err(Fail::Bad("Authentication cancelled".into()));
                }
                match base64::engine::general_purpose::STANDARD.decode(line) {
                    Ok(d) => d,
                    Err(_) => return Err(Fail::Bad("Invalid base64".into())),
                }
            }
        };
        // RFC 4616: [authzid] NUL authcid NUL passwd
        let parts: Vec<&[u8]> = data.split(|&b| b == 0).collect();
        if parts.len() != 3 {
            return Err(Fail::Bad("Malformed PLAIN response".into()));
        }
        let authz = String::from_utf8_lossy(parts[0]).into_owned();
        let user = String::from_utf8_lossy(parts[1]).into_owned();
        let pass = String::from_utf8_lossy(parts[2]).into_owned();
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(&user) {
            return Err(Fail::No(
                "[AUTHORIZATIONFAILED] Proxy authorization is not supported".into(),
            ));
        }
        self.check_credentials(tag, &user, &pass).await
    }

    /// Logs in (tagged OK with the new capabilities) or answers the failure after the
    /// server's delay for this client address.
    async fn check_credentials(&mut self, tag: &str, user: &str, pass: &str) -> CmdResult {
        let ctx = &self.srv.ctx;
        // Accept the full address of a local domain as the account name.
        let account = match user.rsplit_once('@') {
            Some((local, domain)) if ctx.cfg.domain.is_local(domain) => local.to_string(),
            _ => user.to_string(),
        };
        match ctx.store.verify_password(&account, pass).await {
            Ok(Some(name)) => {
                self.srv.login_succeeded(self.peer);
                tracing::info!(peer = %self.peer, user = %name, "imap: login");
                self.user = Some(name);
                self.conn.logged_in();
                let caps = self.capabilities();
                self.conn
                    .line(&format!("{tag} OK [CAPABILITY {caps}] Logged in"));
                Ok(Done::Handled)
            }
            Ok(None) | Err(_) => {
                let delay = self.srv.login_failed(self.peer);
                tracing::info!(peer = %self.peer, user = %account, "imap: authentication failed");
                tokio::time::sleep(delay).await;
                self.auth_failures += 1;
                self.conn.line(&format!(
                    "{tag} NO [AUTHENTICATIONFAILED] Authentication failed"
                ));
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    self.conn.line("* BYE Too many failed authentications");
                    return Ok(Done::Close);
                }
                Ok(Done::Handled)
            }
        }
    }
}

fn astring(s: &AString<'_>) -> String {
    String::from_utf8_lossy(s.as_ref()).into_owned()
}
