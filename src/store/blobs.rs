//! Content-addressed message bodies: `blobs/<2 hex>/<64 hex>`, immutable, written via a
//! temporary file, fsynced with their directory before any op refers to them.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{BlobId, Result};

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
