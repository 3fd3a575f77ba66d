//! The webmail at `/webmail/`: server-rendered pages over the store's mailbox API.
//! (Skeleton: filled in by issue 5.)

use std::sync::Arc;

use crate::node::Ctx;

/// The webmail's routes, relative to its mount point `/webmail`.
pub fn router(ctx: Arc<Ctx>) -> axum::Router {
    axum::Router::new()
        .route("/", axum::routing::get(|| async { "webmail" }))
        .with_state(ctx)
}
