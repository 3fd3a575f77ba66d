//! Control socket (placeholder).
use std::sync::Arc;
use crate::node::Ctx;
pub async fn start(_ctx: Arc<Ctx>) -> anyhow::Result<()> { Ok(()) }
