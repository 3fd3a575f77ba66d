//! Clients shared by the SMTP tests: swaks, Python's smtplib and imaplib, the
//! `clusterd queue` listing, and a raw line-oriented SMTP client for exact replies.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::common::{Node, assert_ok, require_tool};

/// Runs swaks against 127.0.0.1:port; returns (exit success, transcript).
pub fn swaks(port: u16, args: &[&str]) -> (bool, String) {
    require_tool("swaks");
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{port}"), "--timeout", "20"])
        .args(args)
        .output()
        .expect("run swaks");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// swaks on the submission port (STARTTLS, AUTH PLAIN) as `user`.
pub fn swaks_submit(node: &Node, user: &str, pw: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["-tls", "-a", "PLAIN", "-au", user, "-ap", pw];
    all.extend_from_slice(args);
    swaks(node.submission_port, &all)
}

/// Every message in an account's INBOX, fetched over IMAP with Python's imaplib.
pub fn inbox(node: &Node, user: &str, pw: &str) -> Vec<String> {
    let script = r#"
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
m.login(sys.argv[2], sys.argv[3])
typ, data = m.select("INBOX")
n = int(data[0])
for i in range(1, n + 1):
    typ, d = m.fetch(str(i), "(BODY.PEEK[])")
    sys.stdout.write(d[0][1].decode("utf-8", "replace") + "\n=====\n")
m.logout()
"#;
    let out = crate::common::python(script, &[&node.imap_port.to_string(), user, pw]);
    let text = assert_ok(&out, "imap fetch");
    text.split("\n=====\n")
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The outbound queue as `clusterd queue` lists it.
pub fn queue(node: &Node) -> String {
    assert_ok(&node.cli(&["queue"], None), "clusterd queue")
}

/// A line-oriented raw SMTP client.
pub struct Client {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Client {
    /// Connects and returns the client with its greeting.
    pub fn open(port: u16) -> (Client, String) {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let greet = c.reply();
        (c, greet)
    }

    /// Connects and expects a 220 greeting.
    pub fn connect(port: u16) -> Client {
        let (c, greet) = Client::open(port);
        assert!(greet.starts_with("220 "), "greeting: {greet:?}");
        c
    }

    /// Reads one (possibly multi-line) reply; empty at EOF.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    pub fn send(&mut self, data: &[u8]) {
        self.w.write_all(data).unwrap();
    }

    /// Sends a command line and asserts the reply contains `expect`.
    pub fn cmd(&mut self, line: &str, expect: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        let r = self.reply();
        assert!(r.contains(expect), "{line} -> {r:?}, expected {expect}");
        r
    }

    /// Whether the server closed the connection (EOF within the read timeout).
    pub fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut self.r, &mut rest).is_ok()
    }
}
