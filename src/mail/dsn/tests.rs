use std::io::Write;
use std::process::{Command, Stdio};

use super::*;
use crate::mail::encoding::qp_decode;
use crate::mail::header::{header_raw, lossy};
use crate::mail::mime::{Kind, Part, parse};

const ORIGINAL: &[u8] = b"Received: from c.example ([192.0.2.1])\r\n\tby mx.cluster.com.ec\r\n\
From: Luis <luis@cluster.com.ec>\r\nTo: ana@example.net, pedro@example.org\r\n\
Subject: Informe mensual\r\nMessage-ID: <m1@cluster.com.ec>\r\n\r\nSECRET BODY LINE\r\n";

fn failed_report<'a>(original: &'a [u8], diagnostic: &'a str) -> Report<'a> {
    Report {
        reporting_mta: "mx.cluster.com.ec",
        from: "MAILER-DAEMON@cluster.com.ec",
        to: "luis@cluster.com.ec",
        queue_id: "Q123",
        arrival: 1_700_000_000,
        now: 1_700_000_600,
        recipients: vec![
            Recipient {
                addr: "ana@example.net",
                action: Action::Failed,
                status: status_of(diagnostic, "5.0.0"),
                diagnostic: Some(diagnostic),
                remote_mta: Some("mx.example.net"),
            },
            Recipient {
                addr: "pedro@example.org",
                action: Action::Failed,
                status: "5.4.4".into(),
                diagnostic: Some("no mail server for example.org (null MX)"),
                remote_mta: None,
            },
        ],
        original,
        will_retry_until: None,
    }
}

/// The three parts of a built notification, checked to be a multipart/report.
fn report_parts(part: &Part<'_>) -> Vec<(String, Vec<u8>)> {
    assert!(part.content_type().is("multipart", "report"));
    let Kind::Multipart(children) = part.kind() else {
        panic!("not a multipart");
    };
    children
        .iter()
        .map(|c| {
            let ct = c.content_type();
            let body = match header_raw(c.header, "Content-Transfer-Encoding").as_deref() {
                Some(b" quoted-printable" | b"quoted-printable") => qp_decode(c.body),
                _ => c.body.to_vec(),
            };
            (format!("{}/{}", ct.ty, ct.subtype), body)
        })
        .collect()
}

/// Text with each run of blanks and line breaks made one space.
fn words(text: &[u8]) -> String {
    String::from_utf8(text.to_vec())
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every line ends in CRLF, is 7-bit and at most 998 octets.
fn assert_wire_clean(raw: &[u8]) {
    assert!(raw.ends_with(b"\r\n"));
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(line.len() <= 998, "line of {} octets", line.len());
        assert!(
            line.iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)),
            "not 7-bit printable: {}",
            lossy(line)
        );
    }
    assert!(
        !raw.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
        "bare LF"
    );
}

#[test]
fn a_bounce_is_a_delivery_report_with_three_parts() {
    let raw = build(&failed_report(
        ORIGINAL,
        "550 5.1.1 <ana@example.net>: no such user",
    ));
    assert_wire_clean(&raw);
    let text = lossy(&raw);
    let msg = parse(&raw);
    let h = msg.header;
    let get = |name| lossy(&header_raw(h, name).unwrap_or_default());
    assert_eq!(
        get("From").trim(),
        "Mail Delivery System <MAILER-DAEMON@cluster.com.ec>"
    );
    assert_eq!(get("To").trim(), "<luis@cluster.com.ec>");
    assert_eq!(get("Subject").trim(), "Undelivered Mail Returned to Sender");
    assert_eq!(get("Date").trim(), "Tue, 14 Nov 2023 22:23:20 +0000");
    assert_eq!(get("Auto-Submitted").trim(), "auto-replied");
    assert_eq!(get("MIME-Version").trim(), "1.0");
    let id = get("Message-ID");
    assert!(
        id.trim().starts_with("<1700000600.Q123.") && id.trim().ends_with("@mx.cluster.com.ec>"),
        "{id}"
    );
    assert_eq!(
        msg.content_type().param("report-type"),
        Some("delivery-status")
    );

    let parts = report_parts(&msg);
    let types: Vec<&str> = parts.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );

    // For people: who, why, what the server said.
    let human = words(&parts[0].1);
    for want in [
        "could not be delivered",
        "Subject: Informe mensual",
        "Sent: Tue, 14 Nov 2023 22:13:20 +0000",
        "ana@example.net",
        "the mailbox does not exist",
        "The server mx.example.net answered: 550 5.1.1 <ana@example.net>: no such user",
        "pedro@example.org",
        "has no mail server",
        "Details: no mail server for example.org (null MX)",
    ] {
        assert!(human.contains(want), "missing {want:?} in\n{human}");
    }

    // For software: per-message fields, then one block per recipient.
    let ds = lossy(&parts[1].1);
    let blocks: Vec<&str> = ds.trim_end().split("\r\n\r\n").collect();
    assert_eq!(blocks.len(), 3, "{ds}");
    assert_eq!(
        blocks[0],
        "Reporting-MTA: dns; mx.cluster.com.ec\r\nX-Clusterd-Queue-ID: Q123\r\n\
         Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000"
    );
    assert_eq!(
        blocks[1],
        "Final-Recipient: rfc822; ana@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Remote-MTA: dns; mx.example.net\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <ana@example.net>: no such user\r\n\
         Last-Attempt-Date: Tue, 14 Nov 2023 22:23:20 +0000"
    );
    assert_eq!(
        blocks[2],
        "Final-Recipient: rfc822; pedro@example.org\r\nAction: failed\r\nStatus: 5.4.4\r\n\
         Diagnostic-Code: X-Clusterd; no mail server for example.org (null MX)\r\n\
         Last-Attempt-Date: Tue, 14 Nov 2023 22:23:20 +0000"
    );

    // The original's header, never its body.
    let headers = lossy(&parts[2].1);
    assert!(headers.starts_with("Received: from c.example ([192.0.2.1])\r\n\tby mx"));
    assert!(
        headers.ends_with("Message-ID: <m1@cluster.com.ec>\r\n"),
        "{headers}"
    );
    assert!(!text.contains("SECRET BODY"), "{text}");
}

#[test]
fn a_delay_warning_says_until_when() {
    let report = Report {
        recipients: vec![Recipient {
            addr: "ana@example.net",
            action: Action::Delayed,
            status: status_of("451 4.3.0 try later", "4.0.0"),
            diagnostic: Some("451 4.3.0 try later"),
            remote_mta: Some("mx.example.net"),
        }],
        will_retry_until: Some(1_700_432_000),
        ..failed_report(ORIGINAL, "")
    };
    let raw = build(&report);
    assert_wire_clean(&raw);
    let msg = parse(&raw);
    assert_eq!(
        lossy(&header_raw(msg.header, "Subject").unwrap()).trim(),
        "Delayed Mail (still being retried)"
    );
    let parts = report_parts(&msg);
    // Short ASCII lines go as they are.
    assert!(lossy(&raw).contains("Content-Transfer-Encoding: 7bit\r\n\r\nThis is the mail system"));
    let human = words(&parts[0].1);
    assert!(human.contains("not been delivered yet"), "{human}");
    assert!(human.contains("no need to send it again"), "{human}");
    assert!(
        human.contains("we keep trying until Sun, 19 Nov 2023 22:13:20 +0000. If it still"),
        "{human}"
    );
    assert!(!human.contains("given up"), "{human}");
    let ds = lossy(&parts[1].1);
    assert!(
        ds.contains(
            "Action: delayed\r\nStatus: 4.3.0\r\nRemote-MTA: dns; mx.example.net\r\n\
             Diagnostic-Code: smtp; 451 4.3.0 try later\r\n\
             Last-Attempt-Date: Tue, 14 Nov 2023 22:23:20 +0000\r\n\
             Will-Retry-Until: Sun, 19 Nov 2023 22:13:20 +0000\r\n"
        ),
        "{ds}"
    );
}

#[test]
fn status_comes_from_the_reply() {
    let cases = [
        (
            "550 5.1.1 <ana@example.net>: no such user",
            "5.0.0",
            "5.1.1",
        ),
        ("550-5.7.1 policy\r\n550 5.7.1 more", "5.0.0", "5.7.1"),
        ("552 5.3.4 message too big", "5.0.0", "5.3.4"),
        ("550 mailbox unavailable", "5.0.0", "5.0.0"),
        ("451 try again later", "4.4.1", "4.0.0"),
        ("421", "4.4.1", "4.0.0"),
        // The class follows the reply code.
        ("550 4.2.2 mailbox full", "5.0.0", "5.2.2"),
        ("  452 4.2.2 over quota", "4.0.0", "4.2.2"),
        // No reply code: the fallback, or an enhanced code standing alone.
        ("connection refused", "4.4.1", "4.4.1"),
        ("", "5.4.4", "5.4.4"),
        ("5.4.4 no route to example.org", "4.0.0", "5.4.4"),
        // Not reply codes.
        ("5500 5.1.1 x", "4.4.1", "4.4.1"),
        ("354 go ahead", "4.0.0", "4.0.0"),
        ("550 5.1 bad", "5.0.0", "5.0.0"),
        ("550 5.1.1234 bad", "5.0.0", "5.0.0"),
        ("550 6.1.1 bad", "5.0.0", "5.0.0"),
    ];
    for (reply, fallback, want) in cases {
        assert_eq!(status_of(reply, fallback), want, "{reply:?}");
    }
    // An invalid status handed to build is reported as the action's generic one.
    let mut report = failed_report(ORIGINAL, "550 x");
    report.recipients[0].status = "bogus".into();
    let raw = lossy(&build(&report));
    assert!(raw.contains("Action: failed\r\nStatus: 5.0.0\r\n"), "{raw}");
}

#[test]
fn long_diagnostics_are_folded_and_cut() {
    let words = "lorem ipsum dolor ".repeat(20);
    let long_word = "x".repeat(1500);
    let diag = format!("550 5.7.1 {words}{long_word} end\r\n550 5.7.1 second line");
    let raw = build(&failed_report(ORIGINAL, &diag));
    assert_wire_clean(&raw);
    let msg = parse(&raw);
    let parts = report_parts(&msg);
    let ds = &parts[1].1;
    let start = ds
        .windows(16)
        .position(|w| w == b"Diagnostic-Code:")
        .unwrap();
    let field = &ds[start..];
    let field = &field[..field.windows(3).position(|w| w == b"\r\nL").unwrap()];
    let lines: Vec<&[u8]> = field.split(|&b| b == b'\n').collect();
    assert!(lines.len() >= 8, "not folded: {}", lossy(field));
    for line in &lines[1..] {
        assert!(line.starts_with(b" "), "continuation without blank");
    }
    // Where there are blanks, lines stay short; the long word is split below 998.
    assert!(
        lines.iter().filter(|l| l.len() > 80).count() == 2,
        "{}",
        lossy(field)
    );
    let unfolded = lossy(&unfold(field));
    let want = format!(
        "Diagnostic-Code: smtp; 550 5.7.1 {words}{} {} end 550 5.7.1 second line",
        &long_word[..900],
        &long_word[900..]
    );
    assert_eq!(unfolded, want);

    // A very long reply is cut.
    let huge = format!("550 {}", "word ".repeat(2000));
    let raw = build(&failed_report(ORIGINAL, &huge));
    assert_wire_clean(&raw);
    assert!(raw.len() < 20_000, "{}", raw.len());
    let parts = report_parts(&parse(&raw));
    let human = lossy(&parts[0].1);
    assert!(human.contains(" word w...\r\n"), "not cut: {human}");
    // Wrapped for reading: no line is longer than 76 characters.
    assert!(human.lines().all(|l| l.chars().count() <= 76), "{human}");
}

#[test]
fn non_ascii_stays_readable_and_the_message_7bit() {
    let original = "From: Luis <luis@cluster.com.ec>\r\nSubject: Año nuevo ñandú\r\n\
                    X-Note: =?utf-8?q?caf=C3=A9?=\r\n\r\ncuerpo\r\n";
    let diag = "550 5.1.1 buzón «ana» no existe";
    let mut report = failed_report(original.as_bytes(), diag);
    report.recipients.truncate(1);
    report.recipients.push(Recipient {
        addr: "josé@example.net",
        action: Action::Failed,
        status: "5.1.1".into(),
        diagnostic: None,
        remote_mta: None,
    });
    let raw = build(&report);
    assert_wire_clean(&raw);
    let parts = report_parts(&parse(&raw));
    let human = words(&parts[0].1);
    assert!(human.contains("Subject: Año nuevo ñandú"), "{human}");
    assert!(
        human.contains("answered: 550 5.1.1 buzón «ana» no existe"),
        "{human}"
    );
    assert!(human.contains("josé@example.net"), "{human}");
    let ds = lossy(&parts[1].1);
    assert!(
        ds.contains("Diagnostic-Code: smtp; 550 5.1.1 buz?n ?ana? no existe\r\n"),
        "{ds}"
    );
    assert!(
        ds.contains("Final-Recipient: utf-8; jos\\x{E9}@example.net\r\n"),
        "{ds}"
    );
    // The original header arrives byte for byte once decoded.
    let headers = String::from_utf8(parts[2].1.clone()).unwrap();
    assert_eq!(
        headers,
        "From: Luis <luis@cluster.com.ec>\r\nSubject: Año nuevo ñandú\r\nX-Note: =?utf-8?q?caf=C3=A9?=\r\n"
    );

    // An encoded-word subject is shown decoded.
    let original = b"Subject: =?iso-8859-1?q?A=F1o_nuevo?=\r\n\r\nx\r\n";
    let raw = build(&failed_report(original, "550 5.1.1 no"));
    let parts = report_parts(&parse(&raw));
    assert!(lossy(&parts[0].1).contains("Subject: Año nuevo"));
}

#[test]
fn the_original_header_is_bounded_and_normalised() {
    let mut original = b"Subject: big\nX-Folded: a\n b\n".to_vec();
    for i in 0..2000 {
        original.extend_from_slice(format!("X-Filler-{i}: {}\n", "y".repeat(100)).as_bytes());
    }
    original.extend_from_slice(b"\nbody\n");
    let raw = build(&failed_report(&original, "550 5.1.1 no"));
    assert_wire_clean(&raw);
    // Lines up to 998 octets stay unencoded.
    assert!(
        lossy(&raw).contains(
            "Content-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: 7bit\r\n\r\nSubject: big\r\n"
        )
    );
    let parts = report_parts(&parse(&raw));
    let headers = &parts[2].1;
    assert!(headers.len() <= MAX_ORIGINAL_HEADER, "{}", headers.len());
    assert!(headers.len() > MAX_ORIGINAL_HEADER - 200);
    assert!(headers.starts_with(b"Subject: big\r\nX-Folded: a\r\n b\r\nX-Filler-0: "));
    assert!(headers.ends_with(b"yy\r\n"));
}

/// Python's `email` package, a parser that is not ours, reads the notification as
/// RFC 3464 and RFC 6522 describe it.
#[test]
fn python_email_reads_the_report() {
    const SCRIPT: &str = r#"
import email, json, sys
from email.header import decode_header, make_header
msg = email.message_from_binary_file(sys.stdin.buffer)
parts = msg.get_payload()
status = parts[1].get_payload()
original = email.message_from_bytes(parts[2].get_payload(decode=True))
norm = lambda v: " ".join(str(v).split())
json.dump({
    "type": msg.get_content_type(),
    "report_type": msg.get_param("report-type"),
    "auto": msg["Auto-Submitted"],
    "parts": [p.get_content_type() for p in parts],
    "text": parts[0].get_payload(decode=True).decode(parts[0].get_content_charset()),
    "per_message": {k: norm(v) for k, v in status[0].items()},
    "recipients": [{k: norm(v) for k, v in b.items()} for b in status[1:]],
    "original_subject": str(make_header(decode_header(original["Subject"]))),
    "defects": [str(d) for p in msg.walk() for d in p.defects],
}, sys.stdout)
"#;
    let long = format!(
        "550 5.1.1 <ana@example.net>: {}",
        "no such user here ".repeat(20)
    );
    let original =
        "From: luis@cluster.com.ec\r\nSubject: =?utf-8?q?Informe_a=C3=B1o?=\r\n\r\nbody\r\n";
    let raw = build(&failed_report(original.as_bytes(), &long));
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for this test");
    child.stdin.take().unwrap().write_all(&raw).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 failed: {}",
        lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["type"], "multipart/report");
    assert_eq!(v["report_type"], "delivery-status");
    assert_eq!(v["auto"], "auto-replied");
    assert_eq!(
        v["parts"],
        serde_json::json!([
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ])
    );
    assert!(
        v["text"].as_str().unwrap().contains("Subject: Informe año"),
        "{v}"
    );
    assert_eq!(v["per_message"]["Reporting-MTA"], "dns; mx.cluster.com.ec");
    assert_eq!(
        v["per_message"]["Arrival-Date"],
        "Tue, 14 Nov 2023 22:13:20 +0000"
    );
    let rcpts = v["recipients"].as_array().unwrap();
    assert_eq!(rcpts.len(), 2, "{v}");
    assert_eq!(rcpts[0]["Final-Recipient"], "rfc822; ana@example.net");
    assert_eq!(rcpts[0]["Action"], "failed");
    assert_eq!(rcpts[0]["Status"], "5.1.1");
    assert_eq!(rcpts[0]["Remote-MTA"], "dns; mx.example.net");
    assert_eq!(
        rcpts[0]["Diagnostic-Code"],
        format!("smtp; {}", long.trim_end())
    );
    assert_eq!(rcpts[1]["Final-Recipient"], "rfc822; pedro@example.org");
    assert_eq!(rcpts[1]["Status"], "5.4.4");
    assert_eq!(v["original_subject"], "Informe año");
    assert_eq!(v["defects"], serde_json::json!([]), "{v}");
}
