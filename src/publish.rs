//! Publishing a directory into the store's content area: what `clusterd content
//! publish DIR` does through the control socket, and what the active node does
//! with `http.publish_dir` (polled). The directory's files become the content under
//! a root (`www/…`), each compared by its content address with what is stored, so
//! only changed files are written (and replication sends those as block deltas);
//! stored files under the root that the directory no longer has are removed.
//! Hidden files (a path component starting with `.`) and anything but regular files
//! are left out.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::ctx::Ctx;
use crate::store::ContentEntry;

/// What publishing changes.
#[derive(Debug, Default)]
pub struct Plan {
    /// Content path and the file to store there.
    pub put: Vec<(String, PathBuf)>,
    /// Content paths to remove.
    pub delete: Vec<String>,
    pub unchanged: usize,
}

/// Compares `dir` with the stored entries under `root` (`stored`: the content list
/// for that prefix).
pub fn plan(dir: &Path, root: &str, stored: &[ContentEntry]) -> Result<Plan> {
    let root = root.trim_matches('/');
    let mut files = Vec::new();
    walk(dir, dir, &mut files).with_context(|| format!("reading {}", dir.display()))?;
    files.sort();
    let mut out = Plan::default();
    let mut seen = std::collections::HashSet::new();
    for (rel, file) in files {
        let path = format!("{root}/{rel}");
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let id = hex::encode(Sha256::digest(&bytes));
        match stored.iter().find(|e| e.path == path) {
            Some(e) if e.blob == id => out.unchanged += 1,
            _ => out.put.push((path.clone(), file)),
        }
        seen.insert(path);
    }
    let prefix = format!("{root}/");
    for e in stored {
        if e.path.starts_with(&prefix) && !seen.contains(&e.path) {
            out.delete.push(e.path.clone());
        }
    }
    Ok(out)
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let ft = e.file_type()?;
        let path = e.path();
        if ft.is_dir() {
            walk(base, &path, out)?;
        } else if ft.is_file() {
            let rel = path
                .strip_prefix(base)
                .expect("under the base")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path));
        }
    }
    Ok(())
}

/// A cheap fingerprint of a tree (paths, sizes, mtimes) to notice changes.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut files = Vec::new();
    let _ = walk(dir, dir, &mut files);
    let mut out: Vec<_> = files
        .into_iter()
        .filter_map(|(_, p)| {
            let md = std::fs::metadata(&p).ok()?;
            Some((p, md.len(), md.modified().ok()?))
        })
        .collect();
    out.sort();
    out
}

/// How often the active node looks at `http.publish_dir`.
pub const POLL: Duration = Duration::from_millis(500);

/// Publishes `dir` into `root` on the store now; returns (written, removed).
pub async fn publish(ctx: &Ctx, dir: &Path, root: &str) -> Result<(usize, usize)> {
    let stored = ctx
        .store
        .content_list(&format!("{}/", root.trim_matches('/')))
        .await?;
    let plan = plan(dir, root, &stored)?;
    for (path, file) in &plan.put {
        let data = tokio::fs::read(file).await?;
        ctx.store.put_content(path, data).await?;
    }
    for path in &plan.delete {
        ctx.store.delete_content(path).await?;
    }
    Ok((plan.put.len(), plan.delete.len()))
}

/// Watches `http.publish_dir` while this node is active (and once when it becomes
/// active): changed files are published at once.
pub fn watch(ctx: Arc<Ctx>) {
    let Some(dir) = ctx.cfg.http.publish_dir.clone() else {
        return;
    };
    let root = ctx.cfg.http.publish_root.clone();
    tokio::spawn(async move {
        let mut last = None;
        let mut was_writable = false;
        loop {
            tokio::time::sleep(POLL).await;
            let writable = ctx.store.is_writable();
            if !writable {
                was_writable = false;
                continue;
            }
            let now = fingerprint(&dir);
            if was_writable && last.as_ref() == Some(&now) {
                continue;
            }
            was_writable = true;
            match publish(&ctx, &dir, &root).await {
                Ok((0, 0)) => {}
                Ok((written, removed)) => tracing::info!(
                    dir = %dir.display(),
                    root = %root,
                    written,
                    removed,
                    "http: published the site directory"
                ),
                Err(e) => tracing::error!(dir = %dir.display(), "http: publishing failed: {e:#}"),
            }
            last = Some(now);
        }
    });
}
