//! SMTP server (placeholder: being written).

use std::sync::Arc;

use crate::node::Ctx;

/// Binds the SMTP listeners and spawns their accept loops.
pub async fn start(_ctx: Arc<Ctx>) -> anyhow::Result<()> {
    Ok(())
}
