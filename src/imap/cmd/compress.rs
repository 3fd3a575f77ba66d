//! COMPRESS=DEFLATE (RFC 4978): after authentication the client may switch the
//! connection to raw deflate in both directions; `conn` does the compressing.

use super::{CmdResult, Done, Fail};
use crate::imap::session::Session;

impl Session {
    pub(in crate::imap) async fn compress(&mut self, tag: &str) -> CmdResult {
        if self.conn.is_compressed() {
            return Err(Fail::No(
                "[COMPRESSIONACTIVE] DEFLATE is already active".into(),
            ));
        }
        // The OK goes out uncompressed; everything after it is compressed.
        self.conn.line(&format!("{tag} OK DEFLATE active"));
        self.conn.start_deflate().await?;
        Ok(Done::Handled)
    }
}
