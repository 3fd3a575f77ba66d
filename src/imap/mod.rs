//! IMAP4rev1 server (placeholder: being written).

pub mod mime;
pub mod search;

use std::sync::Arc;

use crate::node::Ctx;

/// Binds the IMAP listeners and spawns their accept loops.
pub async fn start(_ctx: Arc<Ctx>) -> anyhow::Result<()> {
    Ok(())
}
