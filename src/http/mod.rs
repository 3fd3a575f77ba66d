//! HTTP server: the organisation's site from the store's content area (virtual hosts by
//! Host header) over HTTP and HTTPS, with the webmail mounted at `/webmail/`.
//! (Skeleton: filled in by issue 5.)

use std::sync::Arc;

use anyhow::Result;

use crate::node::Ctx;

/// What the HTTP server knows about the connection a request came on; inserted into
/// every request's extensions (the webmail reads it for Secure cookies, rate limits
/// and logs).
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: std::net::SocketAddr,
    pub https: bool,
}

/// Binds `http.listen` and `http.https_listen` and serves them in the background.
pub async fn start(ctx: Arc<Ctx>) -> Result<()> {
    let _webmail: axum::Router = crate::webmail::router(ctx.clone());
    Ok(())
}
