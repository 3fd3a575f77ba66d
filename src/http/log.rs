//! The access log: one line per request in the Combined Log Format
//! (`host ident user [time] "request" status bytes "referer" "user-agent"`).
//!
//! Lines go through a channel to one writer thread that appends them with a buffered
//! writer and flushes whenever the channel runs empty, so a burst costs one write
//! and a lone request shows in the file at once. Quoted fields escape `"`, `\` and
//! non-printable bytes as `\xHH`, so a client cannot forge a line.
//!
//! The file is rotated by size (`http.access_log_max_mb`): once it holds that much,
//! `log` becomes `log.1` (`log.1` becomes `log.2` … up to `http.access_log_keep`,
//! the oldest dropped) and a new `log` is opened, between two batches of lines, so no
//! line is split across files. The writer counts what it wrote, so this costs no
//! system call; something else growing the file (another writer) is not counted.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc;

use anyhow::{Context, Result};

/// A handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<String>,
}

/// What one line records.
pub struct Entry<'a> {
    pub peer: std::net::IpAddr,
    pub method: &'a str,
    pub target: &'a str,
    pub version: http::Version,
    pub status: u16,
    pub bytes: Option<u64>,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
}

/// How the log is rotated: past `max_bytes` (0: never), keeping `keep` old files.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub max_bytes: u64,
    pub keep: u32,
}

/// The open log file and what rotating it needs (used by the writer thread only).
struct Rotating {
    path: std::path::PathBuf,
    w: std::io::BufWriter<std::fs::File>,
    /// Bytes in the current file.
    written: u64,
    rotation: Rotation,
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl Rotating {
    fn open(path: &Path, rotation: Rotation) -> std::io::Result<Rotating> {
        let file = open_append(path)?;
        let written = file.metadata()?.len();
        Ok(Rotating {
            path: path.to_path_buf(),
            w: std::io::BufWriter::with_capacity(64 * 1024, file),
            written,
            rotation,
        })
    }

    /// Appends a batch of lines and flushes; rotates afterwards if the file is full.
    fn write_batch<'a>(&mut self, lines: impl IntoIterator<Item = &'a str>) -> std::io::Result<()> {
        let mut r = Ok(());
        for l in lines {
            if r.is_ok() {
                r = self.w.write_all(l.as_bytes());
                self.written += l.len() as u64;
            }
        }
        r?;
        self.w.flush()?;
        if self.rotation.max_bytes > 0 && self.written >= self.rotation.max_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    /// `log.(keep-1)` → `log.keep` … `log` → `log.1`, then a new `log`.
    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            std::path::PathBuf::from(p)
        };
        let keep = self.rotation.keep;
        if keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(numbered(keep));
            for n in (1..keep).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.w = std::io::BufWriter::with_capacity(64 * 1024, open_append(&self.path)?);
        self.written = 0;
        Ok(())
    }
}

impl AccessLog {
    /// Opens `path` for appending (creating it and its directory) and starts the
    /// writer, which rotates the file as `rotation` says.
    pub fn open(path: &Path, rotation: Rotation) -> Result<AccessLog> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("http.access_log: creating {}", dir.display()))?;
        }
        let mut out = Rotating::open(path, rotation)
            .with_context(|| format!("http.access_log: cannot open {}", path.display()))?;
        let (tx, rx) = mpsc::channel::<String>();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("http-access-log".into())
            .spawn(move || {
                while let Ok(line) = rx.recv() {
                    let mut batch = vec![line];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    if let Err(e) = out.write_batch(batch.iter().map(String::as_str)) {
                        tracing::warn!(error = %e, "http: cannot write the access log {shown}");
                    }
                }
            })
            .context("starting the access-log writer")?;
        Ok(AccessLog { tx })
    }

    pub fn record(&self, e: &Entry<'_>) {
        let _ = self.tx.send(format_line(e, &chrono::Local::now()));
    }
}

/// One Combined Log Format line, with its newline.
pub fn format_line<Tz: chrono::TimeZone>(e: &Entry<'_>, now: &chrono::DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let mut s = String::with_capacity(160);
    use std::fmt::Write as _;
    let version = match e.version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    };
    let _ = write!(
        s,
        "{} - - [{}] \"",
        e.peer,
        now.format("%d/%b/%Y:%H:%M:%S %z")
    );
    escape_into(&mut s, e.method.as_bytes());
    s.push(' ');
    escape_into(&mut s, e.target.as_bytes());
    let _ = write!(s, " {version}\" {} ", e.status);
    match e.bytes {
        Some(n) if n > 0 => {
            let _ = write!(s, "{n}");
        }
        _ => s.push('-'),
    }
    for field in [e.referer, e.user_agent] {
        s.push_str(" \"");
        match field {
            Some(v) => escape_into(&mut s, v),
            None => s.push('-'),
        }
        s.push('"');
    }
    s.push('\n');
    s
}

fn escape_into(s: &mut String, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                use std::fmt::Write as _;
                let _ = write!(s, "\\x{b:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn rotates_by_size_keeping_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let rotation = Rotation {
            max_bytes: 1000,
            keep: 2,
        };
        // 100-byte lines, numbered; a batch of 3 at a time.
        let line = |n: usize| format!("{n:06} {}\n", "x".repeat(92));
        let mut out = Rotating::open(&path, rotation).unwrap();
        let mut n = 0;
        for _ in 0..18 {
            let batch: Vec<String> = (n..n + 3).map(line).collect();
            n += 3;
            out.write_batch(batch.iter().map(String::as_str)).unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let (cur, one, two) = (
            read(&path),
            read(&dir.path().join("access.log.1")),
            read(&dir.path().join("access.log.2")),
        );
        assert!(!dir.path().join("access.log.3").exists());
        // Each rotated file was closed once it held 1000 bytes or more (whole
        // batches: 1200); the newest lines are in the current file.
        assert_eq!(one.len(), 1200);
        assert_eq!(two.len(), 1200);
        assert!(cur.len() < 1000);
        assert!(cur.ends_with(&line(53)));
        // Contiguous across the files, oldest first, no line split.
        let all = format!("{two}{one}{cur}");
        let nums: Vec<usize> = all.lines().map(|l| l[..6].parse().unwrap()).collect();
        let first = nums[0];
        assert_eq!(nums, (first..54).collect::<Vec<_>>());

        // A restart appends to the current file and counts what is in it.
        drop(out);
        let mut out = Rotating::open(&path, rotation).unwrap();
        let before = cur.len() as u64;
        assert_eq!(out.written, before);
        let fill: Vec<String> = (54..64).map(line).collect();
        out.write_batch(fill.iter().map(String::as_str)).unwrap();
        assert_eq!(read(&path), "");
        assert!(read(&dir.path().join("access.log.1")).starts_with(&cur));
    }

    #[test]
    fn the_writer_thread_rotates_a_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/access.log");
        let log = AccessLog::open(
            &path,
            Rotation {
                max_bytes: 2000,
                keep: 1,
            },
        )
        .unwrap();
        let e = Entry {
            peer: "10.0.0.10".parse().unwrap(),
            method: "GET",
            target: "/",
            version: http::Version::HTTP_11,
            status: 200,
            bytes: Some(10),
            referer: None,
            user_agent: None,
        };
        for _ in 0..100 {
            log.record(&e);
        }
        let rotated = path.with_file_name("access.log.1");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !rotated.exists() {
            assert!(std::time::Instant::now() < deadline, "never rotated");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(std::fs::metadata(&rotated).unwrap().len() >= 2000);
        assert!(!path.with_file_name("access.log.2").exists());
    }

    #[test]
    fn combined_log_format() {
        let now = chrono::FixedOffset::west_opt(5 * 3600)
            .unwrap()
            .with_ymd_and_hms(2026, 11, 3, 14, 5, 9)
            .unwrap();
        let e = Entry {
            peer: "10.0.0.10".parse().unwrap(),
            method: "GET",
            target: "/index.html?a=\"b\"",
            version: http::Version::HTTP_11,
            status: 200,
            bytes: Some(3072),
            referer: None,
            user_agent: Some(b"curl/7.88.1\n\xff"),
        };
        assert_eq!(
            format_line(&e, &now),
            "10.0.0.10 - - [03/Nov/2026:14:05:09 -0500] \"GET /index.html?a=\\\"b\\\" HTTP/1.1\" \
             200 3072 \"-\" \"curl/7.88.1\\x0A\\xFF\"\n"
        );
        let e = Entry {
            status: 304,
            bytes: Some(0),
            version: http::Version::HTTP_2,
            ..e
        };
        assert!(format_line(&e, &now).contains("HTTP/2.0\" 304 - "));
    }
}
