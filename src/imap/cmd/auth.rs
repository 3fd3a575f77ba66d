//! Commands of the not-authenticated state (RFC 3501 6.2): STARTTLS, LOGIN and
//! AUTHENTICATE PLAIN (RFC 4616, with SASL-IR, RFC 4959). Plaintext credentials are
//! accepted only over TLS or from `imap.allow_plaintext_auth_from`; every password
//! goes through the node's limiter (`crate::authlimit`: delays, refusals), and
//! `auth.session_max_failures` wrong ones end the session.

use std::borrow::Cow;

use base64::Engine;
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::secret::Secret;

use super::{CmdResult, Done, Fail, trim_crlf};
use crate::authlimit::{Protocol, Verdict, log_name};
use crate::imap::session::Session;

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
    /// limiter's delay; refused by the limiter or at the session's last failure, the
    /// session ends.
    async fn check_credentials(&mut self, tag: &str, user: &str, pass: &str) -> CmdResult {
        let ctx = &self.srv.ctx;
        // Accept the full address of a local domain as the account name.
        let account = match user.rsplit_once('@') {
            Some((local, domain)) if ctx.cfg.domain.is_local(domain) => local.to_string(),
            _ => user.to_string(),
        };
        let verdict = ctx
            .auth
            .verify(&ctx.store, Protocol::Imap, self.peer, &account, pass)
            .await;
        match verdict {
            Verdict::Ok(name) => {
                tracing::info!(peer = %self.peer, user = %name, "imap: login");
                self.user = Some(name);
                self.conn.logged_in();
                let caps = self.capabilities();
                self.conn
                    .line(&format!("{tag} OK [CAPABILITY {caps}] Logged in"));
                Ok(Done::Handled)
            }
            Verdict::Refused(wait) => {
                tracing::debug!(peer = %self.peer, "imap: authentication refused (limit)");
                self.conn.line(&format!(
                    "{tag} NO [UNAVAILABLE] Too many failed authentications from your address; try again in {} s",
                    wait.as_secs().max(1)
                ));
                self.conn.line("* BYE Too many failed authentications");
                Ok(Done::Close)
            }
            Verdict::Wrong | Verdict::Error(_) => {
                if let Verdict::Error(e) = &verdict {
                    tracing::warn!(error = %e, "imap auth: store failure");
                }
                tracing::info!(peer = %self.peer, user = %log_name(&account), "imap: authentication failed");
                self.auth_failures += 1;
                self.conn.line(&format!(
                    "{tag} NO [AUTHENTICATIONFAILED] Authentication failed"
                ));
                if self.auth_failures >= ctx.cfg.auth.session_max_failures {
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
