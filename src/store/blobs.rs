//! Content-addressed bodies (of messages, queue entries, content files):
//! `blobs/<2 hex>/<64 hex>`, immutable, written via a temporary file, fsynced with their
//! directory before any op refers to them; the Store methods that write and read them.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{BlobId, Result, Store, StoreError};

pub fn prepare(data_dir: &Path) -> Result<()> {
    fs::create_dir_all(data_dir.join("blobs/tmp"))?;
    // Left-overs of writes interrupted by a crash: never referenced, safe to drop.
    for e in fs::read_dir(data_dir.join("blobs/tmp"))? {
        let _ = fs::remove_file(e?.path());
    }
    Ok(())
}

pub fn path(data_dir: &Path, blob: &str) -> PathBuf {
    let fan = blob.get(..2).unwrap_or("xx");
    data_dir.join("blobs").join(fan).join(blob)
}

pub fn write(data_dir: &Path, raw: &[u8]) -> Result<(BlobId, u64)> {
    let id = hex::encode(Sha256::digest(raw));
    let dest = path(data_dir, &id);
    if dest.exists() {
        return Ok((id, raw.len() as u64));
    }
    let dir = dest.parent().expect("blob path has a parent");
    if !dir.exists() {
        fs::create_dir_all(dir)?;
        File::open(data_dir.join("blobs"))?.sync_all()?;
    }
    let tmp = data_dir
        .join("blobs/tmp")
        .join(format!("{id}.{}", super::new_id()));
    let mut f = File::create(&tmp)?;
    f.write_all(raw)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, &dest)?;
    File::open(dir)?.sync_all()?;
    Ok((id, raw.len() as u64))
}

impl Store {
    /// Writes a body file durably and returns its address and size.
    pub async fn put_blob(&self, raw: Vec<u8>) -> Result<(BlobId, u64)> {
        let dir = self.inner.dir.clone();
        tokio::task::spawn_blocking(move || write(&dir, &raw))
            .await
            .map_err(StoreError::BlobTask)?
    }

    /// The bytes of a stored message body.
    pub async fn read_blob(&self, blob: &str) -> Result<Vec<u8>> {
        Ok(tokio::fs::read(path(&self.inner.dir, blob)).await?)
    }

    /// Several message files in one trip to the blocking pool (a FETCH or SEARCH over
    /// many messages would otherwise pay a thread hand-off per message); each result in
    /// the order of `blobs`.
    pub async fn read_blobs(&self, blobs: Vec<String>) -> Result<Vec<Result<Vec<u8>>>> {
        let dir = self.inner.dir.clone();
        tokio::task::spawn_blocking(move || {
            blobs
                .iter()
                .map(|b| Ok(std::fs::read(path(&dir, b))?))
                .collect()
        })
        .await
        .map_err(StoreError::BlobTask)
    }

    /// Synchronous variant for code already on a blocking thread.
    pub fn read_blob_blocking(&self, blob: &str) -> Result<Vec<u8>> {
        Ok(std::fs::read(path(&self.inner.dir, blob))?)
    }

    /// The first `max` bytes of a stored message body (enough for its header and
    /// MIME structure; the webmail's message list reads this). Blocking.
    pub fn read_blob_prefix_blocking(&self, blob: &str, max: usize) -> Result<Vec<u8>> {
        use std::io::Read;
        let f = std::fs::File::open(path(&self.inner.dir, blob))?;
        let mut out = Vec::new();
        f.take(max as u64).read_to_end(&mut out)?;
        Ok(out)
    }

    /// Which of `blobs` this node does not hold.
    pub fn missing_blobs<'a>(&self, blobs: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        blobs
            .into_iter()
            .filter(|b| !path(&self.inner.dir, b).exists())
            .cloned()
            .collect()
    }
}
