//! HTTP server: the organisation's site from the store's content area (virtual hosts by
//! Host header) over HTTP and HTTPS, with the webmail mounted at `/webmail/`.
//! (Skeleton: filled in by issue 5.)

use std::sync::Arc;

use anyhow::Result;

use crate::node::Ctx;

/// Binds `http.listen` and `http.https_listen` and serves them in the background.
pub async fn start(ctx: Arc<Ctx>) -> Result<()> {
    let _webmail: axum::Router = crate::webmail::router(ctx.clone());
    Ok(())
}
