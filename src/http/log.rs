//! The access log: one line per request in the Combined Log Format
//! (`host ident user [time] "request" status bytes "referer" "user-agent"`).
//!
//! Lines go through a channel to one writer thread that appends them with a buffered
//! writer and flushes whenever the channel runs empty, so a burst costs one write
//! and a lone request shows in the file at once. Quoted fields escape `"`, `\` and
//! non-printable bytes as `\xHH`, so a client cannot forge a line.

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

impl AccessLog {
    /// Opens `path` for appending (creating it and its directory) and starts the writer.
    pub fn open(path: &Path) -> Result<AccessLog> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("http.access_log: creating {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("http.access_log: cannot open {}", path.display()))?;
        let (tx, rx) = mpsc::channel::<String>();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("http-access-log".into())
            .spawn(move || {
                let mut w = std::io::BufWriter::with_capacity(64 * 1024, file);
                while let Ok(line) = rx.recv() {
                    let mut ok = w.write_all(line.as_bytes()).is_ok();
                    while let Ok(more) = rx.try_recv() {
                        ok &= w.write_all(more.as_bytes()).is_ok();
                    }
                    ok &= w.flush().is_ok();
                    if !ok {
                        tracing::warn!("http: cannot write the access log {shown}");
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
