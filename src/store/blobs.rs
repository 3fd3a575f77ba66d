//! Content-addressed bodies (of messages, queue entries, content files):
//! `blobs/<2 hex>/<64 hex>`, immutable, written via a temporary file in `blobs/tmp`,
//! fsynced with their directory before any op refers to them; the Store methods that
//! write and read them.
//!
//! A body that arrives in pieces (SMTP DATA, a large IMAP APPEND literal) goes through
//! a [`BlobSink`]: the caller appends bytes to its buffer, and every [`CHUNK`] bytes
//! are handed to a blocking task that updates the SHA-256 (and, from a chosen offset,
//! the content key's hash) and writes them to the temporary file; `finish` fsyncs it
//! and renames it to its address. So one body costs one buffer of about a chunk,
//! whatever its size, and is hashed and written once. A sink dropped before `finish`
//! (over-size message, closed connection, failed command) removes its temporary file.
//!
//! The standby stores the bodies of replicated ops in batches ([`Store::stage_blob`],
//! [`Store::install_staged`]): each is written to `blobs/tmp/<address>.<random>`
//! without an fsync; once a batch is written, one `syncfs` makes all of them (and the
//! fan-out directories they need) durable, and each is renamed to its address. An
//! address therefore never names a file whose data is not durable. If the node stops
//! after the `syncfs` but before a rename became durable, the next start installs every
//! staged file whose content matches its address ([`prepare`]) instead of dropping it,
//! so an op committed after the batch never names a missing body. This replaces a file
//! fsync and a directory fsync per body with one flush per batch.
//!
//! A body whose address already exists is not written again: the file is reused and
//! its mtime refreshed ([`reuse`]) under the lock the sweep (`store::gc`) holds while
//! it deletes, so a file that a new op is about to name is never swept.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::{BlobId, Result, Store, StoreError};

/// Bytes a [`BlobSink`] gathers before handing them to the file.
pub const CHUNK: usize = 64 * 1024;

/// Held by the sweep (`store::gc`) around "old and unreferenced, so it goes" for each
/// file, and by every writer around "already there, so it is reused" ([`reuse`]): a
/// body that dedups onto an existing file is either refreshed before the sweep looks
/// again (and kept, being young) or finds the file gone and writes it anew.
pub(super) static SWEEP: Mutex<()> = Mutex::new(());

/// Whether `dest` exists; if it does, its mtime is set to now under [`SWEEP`], so the
/// sweep keeps it for its grace period, long enough for the op naming it to commit.
pub(super) fn reuse(dest: &Path) -> bool {
    let _g = SWEEP.lock().unwrap_or_else(|e| e.into_inner());
    touch(dest).is_ok()
}

/// Sets a file's mtime to now (`utimensat` with no times); fails if it is missing.
fn touch(p: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated path that lives for the call; null times mean "now".
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), std::ptr::null(), 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub fn prepare(data_dir: &Path) -> Result<()> {
    fs::create_dir_all(data_dir.join("blobs/tmp"))?;
    // Left-overs of writes interrupted by a crash: a staged body whose content matches
    // its address may be named by a committed op (see the module doc) and is installed;
    // anything else was never referenced and is dropped.
    for e in fs::read_dir(data_dir.join("blobs/tmp"))? {
        let tmp = e?.path();
        if let Some(id) = staged_address(&tmp)
            && let Ok(raw) = fs::read(&tmp)
            && hex::encode(Sha256::digest(&raw)) == id
        {
            let file = File::open(&tmp)?;
            Spool {
                tmp: Some(tmp),
                file,
            }
            .install(data_dir, &id)?;
            continue;
        }
        let _ = fs::remove_file(&tmp);
    }
    Ok(())
}

/// The address a staged file in `blobs/tmp` claims (`<64 hex>.<random>`), if any.
fn staged_address(tmp: &Path) -> Option<String> {
    let name = tmp.file_name()?.to_str()?;
    let (id, _) = name.split_once('.')?;
    is_address(id).then(|| id.to_string())
}

/// Whether `name` is a content address (64 hex digits).
pub(super) fn is_address(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A replicated op's body written to `blobs/tmp` but not yet durable nor at its
/// address ([`Store::stage_blob`]).
#[derive(Debug)]
pub struct Staged {
    /// None once installed.
    tmp: Option<PathBuf>,
    id: BlobId,
}

impl Drop for Staged {
    fn drop(&mut self) {
        // Never installed (the batch failed): nothing names it.
        if let Some(tmp) = &self.tmp {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// Writes `raw` as a staged file (no fsync); `None` when its address is already
/// there. The fan-out directory it will go to is created now, so the batch's `syncfs`
/// covers it.
fn stage(data_dir: &Path, raw: &[u8]) -> Result<(BlobId, Option<Staged>)> {
    let id = hex::encode(Sha256::digest(raw));
    let dest = path(data_dir, &id);
    if reuse(&dest) {
        return Ok((id, None));
    }
    fs::create_dir_all(dest.parent().expect("blob path has a parent"))?;
    let tmp = data_dir
        .join("blobs/tmp")
        .join(format!("{id}.{}", super::new_id()));
    let written = File::create(&tmp).and_then(|mut f| f.write_all(raw));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e.into());
    }
    Ok((id.clone(), Some(Staged { tmp: Some(tmp), id })))
}

/// Makes staged files durable with one `syncfs`, then renames each to its address.
fn install_staged(data_dir: &Path, staged: Vec<Staged>) -> Result<()> {
    if staged.is_empty() {
        return Ok(());
    }
    let dir = File::open(data_dir.join("blobs"))?;
    // SAFETY: syncfs on a descriptor this function owns for the whole call.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    for mut s in staged {
        let dest = path(data_dir, &s.id);
        if !reuse(&dest) {
            let tmp = s.tmp.take().expect("staged once");
            fs::rename(&tmp, &dest)?;
        }
    }
    Ok(())
}

pub fn path(data_dir: &Path, blob: &str) -> PathBuf {
    let fan = blob.get(..2).unwrap_or("xx");
    data_dir.join("blobs").join(fan).join(blob)
}

pub fn write(data_dir: &Path, raw: &[u8]) -> Result<(BlobId, u64)> {
    let id = hex::encode(Sha256::digest(raw));
    if !reuse(&path(data_dir, &id)) {
        let mut spool = Spool::create(data_dir)?;
        spool.file.write_all(raw)?;
        spool.install(data_dir, &id)?;
    }
    Ok((id, raw.len() as u64))
}

/// A body as stored: its address, its size, and the content key of a delivery
/// ([`super::content_key`]) when one was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub blob: BlobId,
    pub size: u64,
    pub key: Option<String>,
}

/// A temporary file in `blobs/tmp` (blocking); removed when dropped unless installed.
struct Spool {
    tmp: Option<PathBuf>,
    file: File,
}

impl Spool {
    fn create(data_dir: &Path) -> Result<Spool> {
        let tmp = data_dir.join("blobs/tmp").join(super::new_id());
        let file = File::create(&tmp)?;
        Ok(Spool {
            tmp: Some(tmp),
            file,
        })
    }

    /// Makes the file durable under its address `id` (a body already there wins:
    /// same name, same bytes).
    fn install(mut self, data_dir: &Path, id: &str) -> Result<()> {
        let dest = path(data_dir, id);
        if reuse(&dest) {
            return Ok(());
        }
        let dir = dest.parent().expect("blob path has a parent");
        if !dir.exists() {
            fs::create_dir_all(dir)?;
            File::open(data_dir.join("blobs"))?.sync_all()?;
        }
        self.file.sync_all()?;
        let tmp = self.tmp.take().expect("a spool is installed once");
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        File::open(dir)?.sync_all()?;
        Ok(())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Some(tmp) = &self.tmp {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// The hashes of a body being written: its address, and the content key's hash from
/// byte `key_from` on.
struct Hashes {
    all: Sha256,
    key: Option<(u64, Sha256)>,
    size: u64,
}

impl Hashes {
    fn update(&mut self, bytes: &[u8]) {
        self.all.update(bytes);
        if let Some((from, key)) = &mut self.key {
            let end = self.size + bytes.len() as u64;
            if end > *from {
                let skip = from.saturating_sub(self.size) as usize;
                key.update(&bytes[skip..]);
            }
        }
        self.size += bytes.len() as u64;
    }
}

/// A body written as it arrives; see the module documentation. Bytes go into
/// [`BlobSink::buf`] (the caller may still change what is there: nothing before it
/// has reached the file), and [`BlobSink::flush`] hands them over once
/// [`BlobSink::wants_flush`] says so.
pub struct BlobSink {
    dir: PathBuf,
    buf: Vec<u8>,
    spool: Option<Spool>,
    hashes: Hashes,
}

impl BlobSink {
    /// The bytes not yet handed to the file.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Bytes taken so far (handed over and buffered).
    pub fn len(&self) -> u64 {
        self.hashes.size + self.buf.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks for the content key of a delivery, hashed from byte `from` of the body
    /// (which must not have reached the file yet).
    pub fn key_from(&mut self, from: u64) {
        assert!(
            from >= self.hashes.size,
            "content key start already written"
        );
        self.hashes.key = Some((from, Sha256::new()));
    }

    pub fn wants_flush(&self) -> bool {
        self.buf.len() >= CHUNK
    }

    /// Hashes and writes the buffered bytes (on a blocking task); the buffer is
    /// reused.
    pub async fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let dir = self.dir.clone();
        let buf = std::mem::take(&mut self.buf);
        let spool = self.spool.take();
        let mut hashes = std::mem::replace(&mut self.hashes, Hashes::empty());
        let (spool, hashes, mut buf) = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut spool = match spool {
                Some(s) => s,
                None => Spool::create(&dir)?,
            };
            hashes.update(&buf);
            spool.file.write_all(&buf)?;
            Ok((spool, hashes, buf))
        })
        .await
        .map_err(StoreError::BlobTask)??;
        buf.clear();
        self.spool = Some(spool);
        self.hashes = hashes;
        self.buf = buf;
        Ok(())
    }

    /// Writes what is left and makes the body durable under its address.
    pub async fn finish(self) -> Result<StoredBlob> {
        let BlobSink {
            dir,
            buf,
            spool,
            mut hashes,
        } = self;
        tokio::task::spawn_blocking(move || -> Result<StoredBlob> {
            hashes.update(&buf);
            let id = hex::encode(hashes.all.finalize());
            let key = hashes.key.map(|(_, k)| hex::encode(k.finalize()));
            let spool = match spool {
                Some(s) => Some(s),
                // All of it is here: no file unless the address is new.
                None if reuse(&path(&dir, &id)) => None,
                None => Some(Spool::create(&dir)?),
            };
            if let Some(mut spool) = spool {
                spool.file.write_all(&buf)?;
                spool.install(&dir, &id)?;
            }
            Ok(StoredBlob {
                blob: id,
                size: hashes.size,
                key,
            })
        })
        .await
        .map_err(StoreError::BlobTask)?
    }
}

impl Hashes {
    fn empty() -> Hashes {
        Hashes {
            all: Sha256::new(),
            key: None,
            size: 0,
        }
    }
}

impl Store {
    /// Writes a replicated op's body without making it durable (see the module doc):
    /// its address and the staged file to hand to [`Store::install_staged`] (`None`
    /// when the body is already here).
    pub async fn stage_blob(&self, raw: Vec<u8>) -> Result<(BlobId, Option<Staged>)> {
        let dir = self.inner.dir.clone();
        tokio::task::spawn_blocking(move || stage(&dir, &raw))
            .await
            .map_err(StoreError::BlobTask)?
    }

    /// Makes a batch of staged bodies durable (one `syncfs`) and puts each at its
    /// address. Only then may an op naming them be committed.
    pub async fn install_staged(&self, staged: Vec<Staged>) -> Result<()> {
        let dir = self.inner.dir.clone();
        tokio::task::spawn_blocking(move || install_staged(&dir, staged))
            .await
            .map_err(StoreError::BlobTask)?
    }

    /// Writes a body file durably and returns its address and size.
    pub async fn put_blob(&self, raw: Vec<u8>) -> Result<(BlobId, u64)> {
        let dir = self.inner.dir.clone();
        tokio::task::spawn_blocking(move || write(&dir, &raw))
            .await
            .map_err(StoreError::BlobTask)?
            .map_err(|e| self.note_failure(e))
    }

    /// A body to be written in pieces ([`BlobSink`]); `first` is its start (e.g. the
    /// trace header that goes before what the client sends).
    pub fn blob_sink(&self, first: &[u8]) -> BlobSink {
        let mut buf = Vec::with_capacity(CHUNK + 16 * 1024);
        buf.extend_from_slice(first);
        BlobSink {
            dir: self.inner.dir.clone(),
            buf,
            spool: None,
            hashes: Hashes::empty(),
        }
    }

    /// The file holding a stored body (for readers that stream it).
    pub fn blob_path(&self, blob: &str) -> PathBuf {
        path(&self.inner.dir, blob)
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

    /// Which of `blobs` this node does not hold; those it holds are refreshed
    /// ([`reuse`]) so the sweep keeps them until the snapshot naming them is in.
    pub fn missing_blobs<'a>(&self, blobs: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        blobs
            .into_iter()
            .filter(|b| !reuse(&path(&self.inner.dir, b)))
            .cloned()
            .collect()
    }
}
