//! Text search as Dovecot 2.3.19 answers it: each rule of `text`'s documentation has
//! a test here named after it.

use super::*;

/// A message from text with LF line ends (made CRLF).
fn crlf(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in s {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn with_subject(subject: &[u8]) -> Vec<u8> {
    crlf(&[b"From: a@b.c\nSubject: ", subject, b"\n\nbody\n"].concat())
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// (subject as sent, needle, expected) for SUBJECT.
fn check_subjects(rule: &str, cases: &[(&str, &str, bool)]) {
    for &(subject, needle, want) in cases {
        let raw = with_subject(subject.as_bytes());
        let got = Text::new(&raw).subject(needle.as_bytes());
        assert_eq!(got, want, "{rule}: SUBJECT {needle:?} in {subject:?}");
    }
}

#[test]
fn case_insensitive_by_unicode_titlecase() {
    check_subjects(
        "titlecase",
        &[
            ("ñandú bird", "ÑANDÚ", true),
            ("ÑANDÚ bird", "ñandú", true),
            ("=?utf-8?Q?=C3=B1and=C3=BA?=", "ÑANDÚ", true),
            ("Straße", "STRASSE", false),
            ("Straße", "STRAßE", true),
            ("Straße", "ẞ", false),
            ("Ǆemal", "ǆemal", true),
            ("Ǆemal", "ǅemal", true),
            ("ΣΟΦΟΣ", "σοφος", true),
            ("σοφος", "ΣΟΦΟΣ", true),
            ("KELVIN \u{212a}", "kelvin k", true),
            ("micro\u{b5}", "microμ", true),
            ("İstanbul", "istanbul", false),
            ("İstanbul", "i\u{307}stanbul", true),
            ("dotless ı", "I", true),
            ("geo ა", "Ა", false),
            ("ᾳ", "Α", true),
            ("Cherokee ꭰ", "Ꭰ", true),
        ],
    );
}

#[test]
fn decomposition_lets_base_letters_match() {
    check_subjects(
        "decomposition",
        &[
            ("café", "cafe", true),
            ("cafe", "café", false),
            ("ñandú", "nandu", false),
            ("ñandú", "ANDU", true),
            ("ñandú", "n\u{303}andu\u{301}", true),
            ("n\u{303}andu\u{301}", "ñandú", true),
            ("ñandú", "\u{301}", true),
            ("한", "ᄒ", true),
            ("\u{212b}", "a\u{30a}", true),
        ],
    );
}

#[test]
fn decomposition_is_one_level_deep() {
    check_subjects(
        "one level",
        &[
            ("ǖ", "ü", false),
            ("ǖ", "u", false),
            ("ǖ", "ǖ", true),
            ("ệ", "e", false),
            ("ᾀ", "ἀ", false),
        ],
    );
}

#[test]
fn compatibility_decomposition_is_not_case_mapped_again() {
    check_subjects(
        "compatibility",
        &[
            ("ﬀ", "ff", false),
            ("ﬀ", "ﬀ", true),
            ("ﬁsh", "fish", false),
            ("ĳ", "ij", true),
            ("ＡＢＣ", "abc", true),
            ("ａｂｃ", "ＡＢＣ", true),
            ("half\u{bd}", "half1", true),
            ("sup\u{b2}", "sup2", true),
            ("ord\u{aa}", "orda", false),
            ("nbsp\u{a0}here", "nbsp here", true),
            ("\u{2103}", "°C", true),
            ("roman ⅰ", "I", true),
            ("circ ⓐ", "A", true),
        ],
    );
}

#[test]
fn header_matches_decoded_encoded_words_not_raw_text() {
    check_subjects(
        "RFC 2047",
        &[
            ("=?iso-8859-1?Q?caf=E9?= au lait", "café", true),
            ("=?iso-8859-1?Q?caf=E9?= au lait", "CAFÉ", true),
            ("=?iso-8859-1?Q?caf=E9?= au lait", "caf=E9", false),
            ("=?iso-8859-1?Q?caf=E9?= au lait", "iso-8859", false),
            ("=?UTF-8?B?Y2Fmw6k=?=", "café", true),
            ("=?utf-8?B?w7E?= unpadded", "ñ unpadded", true),
            ("=?windows-1252?Q?=80uro?=", "€uro", true),
            ("=?utf-7?Q?+AOk-?=", "é", true),
            ("=?utf-8?Q?x_y=5F?=", "x y_", true),
        ],
    );
}

#[test]
fn encoded_words_are_decoded_anywhere_and_joined() {
    check_subjects(
        "encoded words",
        &[
            ("=?utf-8?Q?a?= =?utf-8?Q?b?=", "ab", true),
            ("=?utf-8?Q?a?=\n =?utf-8?Q?b?=", "ab", true),
            ("pre=?utf-8?Q?mid?=post", "premidpost", true),
            ("k =?utf-8?Q?a?=(c) =?utf-8?Q?b?= k", "k a(c) b k", true),
            (
                "\"=?utf-8?Q?a=C3=B1?=\" (=?utf-8?Q?b=C3=B1?=)",
                "\"añ\" (bñ)",
                true,
            ),
            (
                "=?utf-8?Q?x?=   y  =?utf-8?Q?z?=   =?utf-8?Q?w?=",
                "x y zw",
                true,
            ),
            ("=?utf-8?Q?broken", "=?utf-8?q?broken", true),
            ("=?utf-8?X?bad?= q", "?X?bad?= q", true),
        ],
    );
}

#[test]
fn unknown_charset_words_are_decoded_but_not_case_mapped() {
    check_subjects(
        "unknown charset",
        &[
            ("=?x-unknown?Q?ABC_def?= tail", "abc", true),
            ("=?x-unknown?Q?ABC_def?= tail", "ABC def", false),
            ("=?x-unknown?Q?abc?= tail", "abc", false),
            ("=?x-unknown?Q?caf=E9?=", "\u{fffd}", true),
            ("=?iso-8859-1*en?Q?caf=E9?=", "caf", false),
        ],
    );
}

#[test]
fn invalid_utf8_runs_become_one_replacement_character() {
    let cases: &[(&[u8], &str, bool)] = &[
        (b"raw \xc3\xb1and\xc3\xba", "raw ñandú", true),
        (b"latin caf\xe9 end", "latin caf\u{fffd} end", true),
        (b"a\x80\x80b", "a\u{fffd}b", true),
        (b"a\xe9\xe9b", "a\u{fffd}b", true),
        (b"a\xed\xa0\x80b", "a\u{fffd}b", true),
        (b"a\xe9b\xe9c", "a\u{fffd}b\u{fffd}c", true),
        (b"=?us-ascii?Q?caf=E9?=", "caf\u{fffd}", true),
        (b"=?utf-8?q?ab=C3?= end", "ab\u{fffd} end", true),
        (b"=?utf-8?q?=C3?= =?utf-8?q?=B1?= end", "\u{fffd} end", true),
        (
            b"=?utf-8?q?=C3?= =?utf-8?q?=B1?= end",
            "\u{fffd}\u{fffd}",
            false,
        ),
    ];
    for &(subject, needle, want) in cases {
        let raw = with_subject(subject);
        let got = Text::new(&raw).subject(needle.as_bytes());
        assert_eq!(got, want, "SUBJECT {needle:?} in {subject:?}");
    }
}

#[test]
fn header_keeps_whitespace_but_one_leading_blank_and_fold_line_breaks() {
    let raw = crlf(
            b"From: a@b.c\nX-Foo:  a  b\t\tc\nX-Tab:\tx\nX-Fold: p\n  q\nX-Enc: =?utf-8?Q?a__b?=\n\nbody\n",
        );
    let t = Text::new(&raw);
    let cases: &[(&str, &str, bool)] = &[
        ("X-Foo", " a  b\t\tc", true),
        ("X-Foo", "  a", false),
        ("X-Foo", "a b", false),
        ("X-Tab", "x", true),
        ("X-Tab", "\tx", false),
        ("X-Fold", "p  q", true),
        ("X-Fold", "p q", false),
        ("X-Fold", "p\r\n", false),
        ("X-Enc", "a  b", true),
        ("x-fold", "P  Q", true),
    ];
    for &(name, needle, want) in cases {
        assert_eq!(
            t.header(name, needle.as_bytes()),
            want,
            "HEADER {name} {needle:?}"
        );
    }
}

#[test]
fn subject_compresses_whitespace_before_decoding() {
    check_subjects(
        "LWSP",
        &[
            ("  lead  and   trail  ", "lead and trail ", true),
            ("  lead  and   trail  ", " lead", false),
            ("  lead  and   trail  ", "trail  ", false),
            ("a  b\t\tc", "a b c", true),
            ("hello\n  world", "hello world", true),
            ("hello\n\tworld", "hello world", true),
            ("hello\n  world", "hello  world", false),
            ("=?utf-8?Q?a__b?= c", "a  b c", true),
        ],
    );
}

#[test]
fn repeated_fields_are_joined_with_crlf() {
    let raw = crlf(b"X-Foo: first\nX-Bar: mid\nX-Foo: second\nSubject: s\n\nbody\n");
    let t = Text::new(&raw);
    for (needle, want) in [
        ("first\r\nsecond", true),
        ("first\r\nsecond\r\n", true),
        ("first second", false),
        ("firstsecond", false),
        ("mid", false),
    ] {
        assert_eq!(t.header("X-Foo", needle.as_bytes()), want, "{needle:?}");
    }
}

#[test]
fn empty_needle_matches_when_the_field_exists() {
    let raw = crlf(b"From: a@b.c\nX-Empty:\nSubject: s\n\nbody\n");
    let t = Text::new(&raw);
    assert!(t.header("X-Empty", b""));
    assert!(t.header("x-empty", b"\r\n"));
    assert!(!t.header("X-Nope", b""));
    assert!(t.address("From", b""));
    assert!(!t.address("Bcc", b""));
    let raw = crlf(b"From: a@b.c\n\nbody\n");
    assert!(!Text::new(&raw).subject(b""));
}

#[test]
fn header_keys_see_only_the_top_level_header() {
    let raw = crlf(
            b"From: x@y.z\nSubject: top\nContent-Type: message/rfc822\n\nSubject: nested\nFrom: nested@n.n\n\nbody\n",
        );
    let t = Text::new(&raw);
    assert!(t.subject(b"top"));
    assert!(!t.subject(b"nested"));
    assert!(!t.header("Subject", b"nested"));
    assert!(!t.address("From", b"nested"));
    assert!(t.text(b"nested"));
}

#[test]
fn header_names_end_at_the_colon_and_lines_without_one_are_skipped() {
    let raw = crlf(b"From: x@y.z\nNo colon line\nSubject: after\nX-Name : spaced\n\nbody\n");
    let t = Text::new(&raw);
    assert!(t.subject(b"after"));
    assert!(t.header("X-Name", b"spaced"));
    assert!(t.text(b"no colon line\r\n"));
    assert!(t.text(b"x-name : spaced"));
}

#[test]
fn address_fields_are_matched_as_rewritten_address_lists() {
    let cases: &[(&str, &str, bool)] = &[
        (
            "Anna Smith <anna@example.org>",
            "\"Anna Smith\" <anna@example.org>",
            true,
        ),
        ("Anna Smith <anna@example.org>", "Anna Smith <anna", false),
        ("Anna    Smith <anna@example.org>", "\"Anna Smith\"", true),
        ("Anna <anna@example.org>", "Anna <anna@example.org>", true),
        (
            "=?utf-8?Q?J=C3=B6rg?= Mueller <jorg@Example.COM>",
            "Jörg Mueller <jorg@example.com>",
            true,
        ),
        (
            "=?utf-8?Q?J=C3=B6rg?= Mueller <jorg@Example.COM>",
            "\"Jörg",
            false,
        ),
        (
            "\"=?utf-8?Q?J=C3=B6rg?=\" <j@x.org>",
            "Jörg <j@x.org>",
            true,
        ),
        (
            "=?utf-8?Q?M=C3=BCller=2C_Hans?= <x@y.z>",
            "Müller, Hans <x@y.z>",
            true,
        ),
        ("Jörg Müller <x@y.z>", "\"Jörg Müller\" <x@y.z>", true),
        ("anna@example.org", "<anna@example.org>\r\n", true),
        ("<anna@example.org>", "<anna@example.org>", true),
        (
            "anna@example.org (Anna Smith)",
            "\"Anna Smith\" <anna@example.org>",
            true,
        ),
        ("x@y.z (Anna) (Smith)", "Smith <x@y.z>", true),
        (
            "Anna  (Comment) Smith <x@y.z>",
            "\"Anna Smith\" <x@y.z>",
            true,
        ),
        ("Anna  (Comment) Smith <x@y.z>", "Comment", false),
        (
            "\"Smith, Anna\" <anna@example.org>",
            "\"Smith, Anna\" <",
            true,
        ),
        ("a.b <x@y.z>", "\"a.b\" <x@y.z>", true),
        ("a . b <x@y.z>", "\"a . b\" <x@y.z>", true),
        ("O'Brien <x@y.z>", "O'Brien <x@y.z>", true),
        ("\"a\\\"b\" <x@y.z>", "\"a\\\"b\" <x@y.z>", true),
        ("\"\" <x@y.z>", "<x@y.z>", true),
        ("\"\" <x@y.z>", "\"\"", false),
        ("\"  \" <x@y.z>", "\"  \" <x@y.z>", true),
        (
            "Group: carl@example.com, dan@example.com;",
            "Group: <carl@example.com>, <dan@example.com>;",
            true,
        ),
        ("undisclosed-recipients:;", "undisclosed-recipients:;", true),
        ("G1: a@b;, G2: ;, c@d", "G1: <a@b>;, G2:;, <c@d>", true),
        (
            "g: x@y.z, ;",
            "g: <x@y.z>, <MISSING_MAILBOX@MISSING_DOMAIN>;",
            true,
        ),
        (
            "just some text",
            "\"just some text\" <MISSING_MAILBOX@MISSING_DOMAIN>",
            true,
        ),
        ("x", "<x@MISSING_DOMAIN>", true),
        ("x (c)", "c <x@MISSING_DOMAIN>", true),
        ("\"x\"", "x <MISSING_MAILBOX@MISSING_DOMAIN>", true),
        ("<>", "<MISSING_MAILBOX@MISSING_DOMAIN>", true),
        ("@y.z", "<MISSING_MAILBOX@y.z>", true),
        ("Name <x@y.z", "Name <x@SYNTAX_ERROR>", true),
        ("x <", "x <MISSING_MAILBOX@SYNTAX_ERROR>", true),
        (",x@y.z", "<MISSING_MAILBOX@MISSING_DOMAIN>, <x@y.z>", true),
        ("x@y.z,", "<x@y.z>\r\n", true),
        (
            "x@y.z, , w@v.u",
            "<x@y.z>, <MISSING_MAILBOX@MISSING_DOMAIN>, <w@v.u>",
            true,
        ),
        ("a@b c@d", "c@d", false),
        ("Name <x@y.z> junk, a@b", "a@b", false),
        ("x @ y . z", "<x@y.z>", true),
        ("\"quoted local\"@y.z", "<\"quoted local\"@y.z>", true),
        ("x@[1.2.3.4]", "<x@[1.2.3.4]>", true),
        ("<@route,@r2:x@y.z>", "<@route,@r2:x@y.z>", true),
        ("(only comment)", "@", false),
    ];
    for &(from, needle, want) in cases {
        let raw = crlf(format!("From: {from}\nSubject: x\n\nbody\n").as_bytes());
        let got = Text::new(&raw).address("From", needle.as_bytes());
        assert_eq!(got, want, "FROM {needle:?} in {from:?}");
    }
}

#[test]
fn header_from_is_not_rewritten() {
    let raw = crlf(b"From: Anna   Smith <anna@example.org>\nSubject: x\n\nbody\n");
    let t = Text::new(&raw);
    assert!(t.header("From", b"Anna   Smith <anna"));
    assert!(!t.header("From", b"\"Anna Smith\""));
    assert!(t.address("From", b"\"Anna Smith\""));
    assert!(!t.address("From", b"Anna   Smith"));
}

fn mixed() -> Vec<u8> {
    crlf(
            b"From: Outer <outer@x.org>\nSubject: outer subj\nContent-Type: multipart/mixed; boundary=\"ZZ\"\n\n\
preambletext\n--ZZ\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\nX-Part-Header: parthdr\n\n\
Caf=E9 cr=E8me soft=\nbreak word  two   spaces=20\nline1\nline2\n\
--ZZ\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n\
PHA+w5FhbmTDuiA8Yj5ib2xkPC9iPiZhbXA7IGh0bWw8L3A+\n\
--ZZ\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nYXR0YWNoc2VjcmV0\n\
--ZZ\nContent-Type: message/rfc822\n\nFrom: Inner <inner@x.org>\nSubject: =?utf-8?Q?inner_subj_=C3=BC?=\n\ninnerbody\n\
--ZZ\nContent-Type: application/pdf\n\nrawpdftext\n\
--ZZ\nContent-Type: text/csv\n\ncsvtext\n\
--ZZ\nContent-Type: image/png\n\npngtext\n\
--ZZ\n\nnoctpart\n\
--ZZ\nContent-Type: message/delivery-status\n\nReporting-MTA: dsn; mtaname\n\
--ZZ\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogYjY0aW5uZXIKCmI2NGlubmVyYm9keQo=\n\
--ZZ\nContent-Type: text\n\nbaretext\n\
--ZZ\nContent-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\nuuraw\n\
--ZZ\nContent-Type: multipart/digest; boundary=EE\n\n--EE\n\nSubject: digestsubj\n\ndigestbody\n--EE--\n\
--ZZ--\nepiloguetext\n",
        )
}

#[test]
fn body_searches_text_and_message_parts_only() {
    let raw = mixed();
    let t = Text::new(&raw);
    let cases = [
        ("Café crème", true),
        ("ñandú", true),
        ("<b>bold</b>&amp;", true),
        ("innerbody", true),
        ("csvtext", true),
        ("noctpart", true),
        ("mtaname", true),
        ("digestbody", true),
        ("attachsecret", false),
        ("rawpdftext", false),
        ("pngtext", false),
        ("b64inner", false),
        ("baretext", false),
        ("uuraw", false),
        ("preambletext", false),
        ("epiloguetext", false),
        ("parthdr", false),
        ("Content-Type", false),
        ("inner subj", false),
        ("digestsubj", false),
        ("outer subj", false),
        ("", true),
    ];
    for (needle, want) in cases {
        assert_eq!(t.body(needle.as_bytes()), want, "BODY {needle:?}");
    }
}

#[test]
fn text_is_every_header_block_with_its_body() {
    let raw = mixed();
    let t = Text::new(&raw);
    let cases = [
        ("outer subj", true),
        ("From: Outer <outer@x.org>\r\n", true),
        ("parthdr\r\n\r\nCafé", true),
        ("inner subj ü", true),
        ("Subject: inner subj ü\r\n\r\ninnerbody", true),
        ("digestsubj", true),
        ("image/png", true),
        ("Reporting-MTA", true),
        ("innerbody", true),
        ("pngtext", false),
        ("preambletext", false),
        ("boundary=\"ZZ\"\r\n\r\nContent", false),
        ("Content-Type: message/rfc822\r\n\r\nFrom", false),
        ("lines2\r\nContent", false),
        ("=?utf-8?Q?inner", false),
        ("", true),
    ];
    for (needle, want) in cases {
        assert_eq!(t.text(needle.as_bytes()), want, "TEXT {needle:?}");
    }
    let raw = crlf(
        b"From: a@b.c\nSubject:   lead  and\n  more\nX-Multi: one\nX-Multi: two\n\nbodystart\n",
    );
    let t = Text::new(&raw);
    assert!(t.text(b"Subject:   lead  and  more\r\nX-Multi: one\r\nX-Multi: two\r\n\r\nbodystart"));
}

#[test]
fn body_parts_are_searched_separately() {
    let raw = crlf(
            b"Subject: s\nContent-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\npart1\n--B\nContent-Type: text/plain\n\npart2\n--B--\n",
        );
    let t = Text::new(&raw);
    assert!(t.body(b"part1") && t.body(b"part2"));
    for needle in ["part1part2", "part1\r\npart2", "part1\npart2", "part1\r\n"] {
        assert!(!t.body(needle.as_bytes()), "{needle:?}");
    }
}

#[test]
fn body_decodes_transfer_encodings_and_charsets() {
    let cases: &[(&[u8], &str, bool)] = &[
            (b"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\ncaf=E9 cr=E8me\n", "café crème", true),
            (b"Content-Type: text/plain; charset=\"UTF-8\"\nContent-Transfer-Encoding: BASE64\n\nY2Fmw6kgdXBwZXI=\n", "café upper", true),
            (b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\nY2Fmw6kgdXBwZXI=\n", "Y2Fm", false),
            (b"Content-Type: text/plain; charset=iso-8859-1\n\nlatin8 caf\xe9\n", "latin8 café", true),
            (b"Content-Type: text/plain; charset=iso-8859-1\n\nlat \x80 end\n", "lat \u{80} end", true),
            (b"Content-Type: text/plain; charset=windows-1252\n\nwin \x80uro\n", "win €uro", true),
            (b"Content-Type: text/plain; charset=iso-8859-15\n\niso15 \xa4uro\n", "iso15 €uro", true),
            (b"Content-Type: text/plain; charset=koi8-r\n\nkoi \xf0\xd2\xc9\xd7\xc5\xd4\n", "koi привет", true),
            (b"Content-Type: text/plain; charset=utf-16\nContent-Transfer-Encoding: base64\n\n//51AHQAZgAxADYAdABlAHgAdAA=\n", "utf16text", true),
            (b"Content-Type: text/plain; charset=x-unknown\n\nUNKBODY lowbody caf\xc3\xa9\n", "unkbody LOWBODY café", true),
            (b"Content-Type: text/plain; charset=us-ascii\n\nascii \xc3\xa9t\xc3\xa9 more\n", "ascii été more", true),
            (b"Content-Type: text/plain\n\nnocharset caf\xe9 and utf8 \xc3\xb1\n", "caf\u{fffd} and utf8 ñ", true),
            (b"Content-Type: text/plain;\n charset=\"iso-8859-1\"; format=flowed\n\nfolded caf\xe9\n", "folded café", true),
            (b"Content-Type: TEXT/PLAIN\n\nuppertype\n", "uppertype", true),
        ];
    assert_bodies(cases);
}

#[test]
fn body_line_breaks_follow_the_transfer_encoding() {
    let cases: &[(&[u8], &str, bool)] = &[
        (b"\nline1\nline2\n", "line1\nline2\n", true),
        (b"\nline1\nline2\n", "line1\r\nline2", false),
        (b"\ncr1\rcr2 end\n", "cr1\rcr2", true),
        (
            b"Content-Transfer-Encoding: quoted-printable\n\nqp1\nqp2 qpcr=0D=0Aqq qplf=0Aqq\n",
            "qp1\r\nqp2",
            true,
        ),
        (
            b"Content-Transfer-Encoding: quoted-printable\n\nqp1\nqp2 qpcr=0D=0Aqq qplf=0Aqq\n",
            "qpcr\r\nqq qplf\nqq",
            true,
        ),
        (
            b"Content-Transfer-Encoding: quoted-printable\n\nqp1\nqp2\n",
            "qp1\nqp2",
            false,
        ),
        (
            b"Content-Transfer-Encoding: base64\n\nYjY0Y3JsZjENCmI2NGNybGYyIGI2NGxmMQpiNjRsZjI=\n",
            "b64crlf1\r\nb64crlf2 b64lf1\nb64lf2",
            true,
        ),
        (
            b"Content-Transfer-Encoding: base64\n\nYjY0Y3JsZjENCmI2NGNybGYyIGI2NGxmMQpiNjRsZjI=\n",
            "b64crlf1\nb64crlf2",
            false,
        ),
        (b"\nno trailing newline", "newline", true),
        (b"\nends with newline\n", "newline\n", true),
    ];
    assert_bodies(cases);
}

#[test]
fn quoted_printable_and_base64_are_decoded_leniently() {
    let qp = crlf(
            b"Subject: s\nContent-Transfer-Encoding: quoted-printable\n\nsoft=\nbreak qa=ZZb qc=3dd trailing   \nqe= \nf q=\ng last=\n",
        );
    let t = Text::new(&qp);
    for (needle, want) in [
        ("softbreak", true),
        ("soft=", false),
        ("qa=zzb qc=d trailing\r\nqef qg last", true),
        ("trailing ", false),
    ] {
        assert_eq!(t.body(needle.as_bytes()), want, "{needle:?}");
    }
    let b64 = crlf(b"Subject: s\nContent-Transfer-Encoding: base64\n\nYWJj\n!!ZGVm\n");
    let t = Text::new(&b64);
    assert!(t.body(b"abc"));
    assert!(!t.body(b"def"));
}

#[test]
fn body_replaces_invalid_utf8_and_drops_an_incomplete_tail() {
    let cases: &[(&[u8], &str, bool)] = &[
        (b"zz\xe9\nnext\n", "zz\u{fffd}\nnext", true),
        (b"zz\xe2\x82\n", "zz\u{fffd}\n", true),
        (b"zz\xe9\xe9 x\n", "zz\u{fffd} x", true),
        (b"zz\xc3", "zz\u{fffd}", false),
        (b"zz\xc3", "zz", true),
        (b"zz\xe9\n", "zz\u{fffd}", false),
        (b"zz\xb1", "zz\u{fffd}", true),
    ];
    for &(body, needle, want) in cases {
        let raw = [crlf(b"From: a@b.c\nSubject: s\n\n").as_slice(), body].concat();
        let got = Text::new(&raw).body(needle.as_bytes());
        assert_eq!(got, want, "BODY {needle:?} in {body:?}");
    }
}

#[test]
fn multipart_boundaries_match_by_prefix_innermost_first() {
    let cases: &[(&[u8], &str, bool)] = &[
            (b"Content-Type: multipart/mixed; boundary=BB\n\n--BBextra\nContent-Type: text/plain\n\nprefixpart\n--BB \nContent-Type: text/plain\n\nspacepart\n--BB--\n", "prefixpart", true),
            (b"Content-Type: multipart/mixed; boundary=BB\n\n--BBextra\nContent-Type: text/plain\n\nprefixpart\n--BB \nContent-Type: text/plain\n\nspacepart\n--BB--\n", "spacepart", true),
            (b"Content-Type: multipart/mixed; boundary=BB\n\n--BB\nContent-Type: multipart/alternative; boundary=BB2\n\n--BB2\nContent-Type: text/plain\n\ninnerA\n--BB\nContent-Type: text/plain\n\nouterB\n--BB--\n", "innerA", true),
            (b"Content-Type: multipart/mixed; boundary=BB\n\n--BB\nContent-Type: multipart/alternative; boundary=BB2\n\n--BB2\nContent-Type: text/plain\n\ninnerA\n--BB\nContent-Type: text/plain\n\nouterB\n--BB--\n", "outerB", true),
            (b"Content-Type: multipart/mixed\n\n--BB\nContent-Type: text/plain\n\nnoboundary\n--BB--\n", "noboundary", false),
            (b"Content-Type: multipart/mixed; boundary=\"BB\"\n\n--BB\nContent-Type: text/plain\n\nnoclose\n", "noclose\n", true),
            (b"Content-Type: garbage\n\ngarbagetype\n", "garbagetype", false),
            (b"Content-Type: message/rfc822\n\nSubject: toplevelrfc\n\ntoprfcbody\n", "toprfcbody", true),
        ];
    assert_bodies(cases);
}

/// Each expectation is what Dovecot 2.3.19 answered for the same message.
#[test]
fn parts_are_split_by_the_first_content_type_and_decoded_by_the_last() {
    let cases: &[(&[u8], &str, bool)] = &[
            (b"Content-Type: text/plain\nContent-Type: multipart/mixed; boundary=B\n\n--B\n\npartone\n--B--\n", "partone", false),
            (b"Content-Type: multipart/mixed; boundary=B\nContent-Type: text/plain\n\npre\n--B\n\npartone\n--B--\n", "partone", true),
            (b"Content-Type: multipart/mixed; boundary=B\nContent-Type: text/plain\n\npre\n--B\n\npartone\n--B--\n", "pre", false),
            (b"Content-Type: image/png\nContent-Type: text/plain\n\nlasttext\n", "lasttext", true),
            (b"Content-Type: text/plain\nContent-Type: image/png\n\nlastimage\n", "lastimage", false),
            (b"Content-Transfer-Encoding: base64\nContent-Transfer-Encoding: 7bit\n\naGVsbG93b3JsZA==\n", "aGVsbG93", true),
            (b"Content-Transfer-Encoding: 7bit\nContent-Transfer-Encoding: base64\n\naGVsbG93b3JsZA==\n", "helloworld", true),
            (b"Content-Type: text/plain garbage\n\ngarbagetail\n", "garbagetail", false),
            (b"Content-Type: multipart/mixed; boundary=\"\"\n\n--\n\nemptyboundary\n----\n", "emptyboundary", true),
            (b"Content-Type: multipart/mixed; boundary*0=a; boundary*1=b\n\n--ab\n\nrfc2231\n--ab--\n", "rfc2231", true),
            (b"Content-Type: multipart/mixed; foo; boundary=B\n\n--B\n\nafterbadparam\n--B--\n", "afterbadparam", false),
            (b"Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nSubject: inner\n\nencodedinner\n", "encodedinner", true),
        ];
    assert_bodies(cases);
    let raw = crlf(
            b"Subject: s\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeA0KDQp5DQo=\n",
        );
    assert!(Text::new(&raw).text(b"U3ViamVj"));
    assert!(!Text::new(&raw).body(b"U3ViamVj"));
}

#[test]
fn garbage_in_an_address_list_reads_as_a_missing_address() {
    for (value, needle, want) in [
        (";, @, x@y", "<MISSING_MAILBOX@MISSING_DOMAIN>", true),
        (";, @, x@y", "x@y", false),
        ("x@y, ;", "<x@y>, <MISSING_MAILBOX@MISSING_DOMAIN>", true),
        ("x@y ;, z@w", "MISSING", false),
    ] {
        let raw = crlf(format!("From: a@b\nBcc: {value}\n\nbody\n").as_bytes());
        assert_eq!(
            Text::new(&raw).address("Bcc", needle.as_bytes()),
            want,
            "BCC {needle:?} in {value:?}"
        );
    }
}

/// BODY `needle` in a message with a common header followed by `part` (its own
/// header lines and body) matches as `want` says.
fn assert_bodies(cases: &[(&[u8], &str, bool)]) {
    for &(part, needle, want) in cases {
        let raw = crlf(&[b"From: a@b.c\nSubject: s\n", part].concat());
        let got = Text::new(&raw).body(needle.as_bytes());
        assert_eq!(
            got,
            want,
            "BODY {needle:?} in {:?}",
            String::from_utf8_lossy(part)
        );
    }
}

#[test]
fn needle_ends_at_nul() {
    let raw = crlf(b"From: a@b.c\nX-Foo: first\nSubject: s\n\nbody\n");
    assert!(Text::new(&raw).header("X-Foo", b"first\0zzz"));
    assert!(Text::new(&raw).body(b"\0zzz"));
}

#[test]
fn sent_date_is_the_date_as_written_or_the_epoch() {
    let epoch = date(1970, 1, 1);
    let cases: &[(Option<&str>, NaiveDate)] = &[
        (Some("Mon, 1 Jan 2024 23:30:00 -0500"), date(2024, 1, 1)),
        (Some("Mon, 1 Jan 2024 00:30:00 +0900"), date(2024, 1, 1)),
        (
            Some("Mon, 15 Jan 2024 23:30:00 -0500 (EST)"),
            date(2024, 1, 15),
        ),
        (Some("Mon, 1 Jan 2024 23:30:00 +2500"), date(2024, 1, 1)),
        (Some("Mon, 1 Jan 2024 23:30:00 XYZ"), date(2024, 1, 1)),
        (Some("Mon, 1 Jan 2024 10:00:00"), date(2024, 1, 1)),
        (None, epoch),
        (Some(""), epoch),
        (Some("garbage"), epoch),
        (Some("2024-01-05T10:00:00Z"), epoch),
        (
            Some("=?utf-8?Q?Mon=2C_1_Jan_2024_10=3A00=3A00_+0000?="),
            epoch,
        ),
        (Some("1 Jan 99 10:00:00 GMT"), date(1999, 1, 1)),
        (Some("Mon, 01 Jan 24 10:00:00 +0000"), date(2024, 1, 1)),
        (Some("Mon, 01 Jan 69 10:00:00 +0000"), date(2069, 1, 1)),
        (Some("Mon, 01 Jan 70 10:00:00 +0000"), date(1970, 1, 1)),
        (Some("1 Jan 124 10:00:00 +0000"), epoch),
        (Some("1 Jan 02024 10:00:00 +0000"), epoch),
        (Some("Mon, 1 Jan 2024 23:30 -0500"), date(2024, 1, 1)),
        (Some("Mon 1 Jan 2024 23:30:00 -0500"), epoch),
        (Some("Mon ,1 Jan 2024 10:00:00 +0000"), date(2024, 1, 1)),
        (Some("Monday, 1 Jan 2024 10:00:00 +0000"), epoch),
        (Some("Foo, 1 Jan 2024 10:00:00 +0000"), date(2024, 1, 1)),
        (Some(", 1 Jan 2024 10:00:00 +0000"), epoch),
        (
            Some("(comment) Mon, 1 Jan 2024 10:00:00 +0000"),
            date(2024, 1, 1),
        ),
        (Some("Mon, 1 Jan 2024\n 10:00:00 +0000"), date(2024, 1, 1)),
        (Some("1 January 2024 10:00:00 +0000"), date(2024, 1, 1)),
        (Some("1 JAN 2024 10:00:00 +0000"), date(2024, 1, 1)),
        (Some("1 Ja 2024 10:00:00 +0000"), epoch),
        (Some("001 Jan 2024 10:00:00 +0000"), epoch),
        (Some("0 Jan 2024 10:00:00 +0000"), epoch),
        (Some("1-Jan-2024 10:00:00 +0000"), epoch),
        (Some("1 Jan 2024 9:05:03 +0000"), date(2024, 1, 1)),
        (Some("1 Jan 2024 09:5:03 +0000"), epoch),
        (Some("1 Jan 2024 10 : 00 : 00 +0000"), date(2024, 1, 1)),
        (Some("1 Jan 2024 10.00.00 +0000"), date(2024, 1, 1)),
        (Some("1 Jan 2024 10,00,00 +0000"), epoch),
        (Some("1 Jan 2024 10"), epoch),
        (Some("1 Jan 2024"), epoch),
        (Some("1 Jan 2024 10:00:00+0000"), epoch),
        (Some("1 Jan 2024 10:00:00.123 +0000"), epoch),
        (Some("1 Jan 2024 10:00:00 ,"), epoch),
        (Some("1 Jan 2024 10:00:00 \"zone\""), epoch),
        (Some("1 Jan 2024 10:00:00 garbage"), date(2024, 1, 1)),
        (Some("1 Jan 2024 10:00:00 +0000 ,"), date(2024, 1, 1)),
        (Some("31 Feb 2024 10:00:00 +0000"), epoch),
        (Some("29 Feb 2024 10:00:00 +0000"), date(2024, 2, 29)),
        (Some("29 Feb 2023 10:00:00 +0000"), epoch),
        (Some("1 Jan 2024 10:00:60 +0000"), date(2024, 1, 1)),
        (Some("1 Jan 2024 10:00:61 +0000"), epoch),
        (Some("1 Jan 2024 24:00:00 +0000"), epoch),
        (Some("1 Jan 1899 10:00:00 +0000"), epoch),
        (Some("31 Dec 1969 23:59:59 +0000"), epoch),
        (Some("Thu, 01 Jan 1970 00:30:00 -0100"), date(1970, 1, 1)),
        (Some("Thu, 01 Jan 1970 00:30:00 +0100"), date(2106, 2, 7)),
        (Some("Mon, 01 Jan 1969 10:00:00 +0000"), date(2105, 2, 7)),
        (Some("Thu, 01 Jan 1900 10:00:00 +0000"), date(2036, 2, 7)),
        (Some("Thu, 01 Jan 9999 10:00:00 +0000"), date(2105, 1, 29)),
        (Some("Thu, 01 Jan 2100 10:00:00 +0000"), date(2100, 1, 1)),
    ];
    for &(value, want) in cases {
        let header = match value {
            Some(v) => format!("Date: {v}\n"),
            None => String::new(),
        };
        let raw = crlf(format!("From: a@b.c\n{header}Subject: s\n\nbody\n").as_bytes());
        let got = Text::new(&raw).sent_date(1_700_000_000);
        assert_eq!(got, Some(want), "Date: {value:?}");
    }
}

#[test]
fn sent_date_uses_the_first_date_field() {
    let raw =
        crlf(b"Date: Mon, 3 Jan 2024 10:00:00 +0000\nDate: Mon, 4 Jan 2024 10:00:00 +0000\n\nx\n");
    assert_eq!(Text::new(&raw).sent_date(0), Some(date(2024, 1, 3)));
    let raw = crlf(b"Date: garbage\nDate: Mon, 4 Jan 2024 10:00:00 +0000\n\nx\n");
    assert_eq!(Text::new(&raw).sent_date(0), Some(date(1970, 1, 1)));
}
