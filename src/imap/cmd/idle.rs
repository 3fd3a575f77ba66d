//! IDLE (RFC 2177): waits on the socket and the store's change broadcast at once, so
//! another session's change to the selected mailbox (an APPEND, say) reaches the
//! idling client as soon as it is committed; ends on DONE or the session timeout.

use tokio::sync::broadcast;

use super::{CmdResult, Done, Fail, ok, trim_crlf};
use crate::imap::conn::{MAX_LINE, ReadError};
use crate::imap::session::Session;
use crate::store::Change;

impl Session {
    pub(in crate::imap) async fn idle(&mut self) -> CmdResult {
        self.refresh(true).await?;
        self.conn.line("+ idling");
        self.conn.flush().await?;
        let deadline = tokio::time::Instant::now() + self.conn.timeout;
        enum Ev {
            Input(Result<(), ReadError>),
            Change(Result<Change, broadcast::error::RecvError>),
            Timeout,
        }
        loop {
            if let Some(line) = self.conn.take_line() {
                return if trim_crlf(&line).eq_ignore_ascii_case(b"DONE") {
                    ok("IDLE terminated")
                } else {
                    Err(Fail::Bad("Expected DONE".into()))
                };
            }
            if self.conn.buffered() > MAX_LINE {
                self.conn.line("* BYE Line too long");
                return Ok(Done::Close);
            }
            let ev = tokio::select! {
                r = self.conn.fill() => Ev::Input(r),
                c = self.changes.recv() => Ev::Change(c),
                _ = tokio::time::sleep_until(deadline) => Ev::Timeout,
            };
            match ev {
                Ev::Input(Ok(())) => {}
                Ev::Input(Err(_)) => return Err(Fail::Io),
                Ev::Timeout => {
                    self.conn.line("* BYE Autologout; idle for too long");
                    return Ok(Done::Close);
                }
                Ev::Change(c) => {
                    let relevant = match &c {
                        Ok(change) => self
                            .selected
                            .as_ref()
                            .is_some_and(|s| change.mailbox() == Some(s.id.as_str())),
                        Err(broadcast::error::RecvError::Lagged(_)) => true,
                        Err(broadcast::error::RecvError::Closed) => {
                            return Err(Fail::No("[UNAVAILABLE] Shutting down".into()));
                        }
                    };
                    if relevant {
                        if let Some(s) = &mut self.selected {
                            s.dirty = true;
                        }
                        self.refresh(true).await?;
                        self.conn.flush().await?;
                    }
                }
            }
        }
    }
}
