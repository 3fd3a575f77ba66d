//! The DATA transparency of RFC 5321 4.5.2 over chunks of input, however the client's
//! bytes were split by the network: the end of data (a line that is only `.`), the
//! removal of the leading dot a client adds to lines that start with one, and lines
//! ending in a bare LF normalised to CRLF (tolerated from clients, stored as CRLF).
//! Only `CRLF . CRLF` ends the data: a `.` line that starts after a bare LF or ends
//! in one (`\n.\n`, `\r\n.\n`, `\n.\r\n`) is the SMTP smuggling primitive (a
//! receiver that reads it as the end runs what follows as commands). Such a line is
//! kept as data and noted ([`Decoder::smuggled`]); the session refuses the message
//! at the real end, as Postfix's `smtpd_forbid_bare_newline`.
//! No I/O and no limits here: the session driver counts what comes out.
//!
//! Lines are found with `memchr` (the crate the Rust ecosystem uses for byte search,
//! SIMD on x86-64): a 100 KB message is ~1,300 lines, and a byte-by-byte scan showed
//! in the profile of the SMTP bench.

/// The decoder's position in the input: at the start of a line (and whether a dot,
/// or a dot and a CR, were seen there and held back), or inside a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    LineStart,
    Dot,
    DotCr,
    Inside,
}

#[derive(Debug, Clone)]
pub struct Decoder {
    at: At,
    /// The last byte written out was a CR (so an LF ends the line as it is).
    cr: bool,
    /// The current line began after a CRLF (the DATA command's counts as one).
    after_crlf: bool,
    /// A `.` line next to a bare LF was seen (see the module doc).
    smuggled: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            at: At::LineStart,
            cr: false,
            after_crlf: true,
            smuggled: false,
        }
    }
}

impl Decoder {
    /// Whether the data held a `.` line next to a bare LF (the message must be
    /// refused). Stays set after the end (a decoder serves one message).
    pub fn smuggled(&self) -> bool {
        self.smuggled
    }

    /// Decodes `input` into `out` up to the end-of-data line. Returns how many bytes
    /// of `input` were used and whether the end of data was reached (the bytes after
    /// it are left to the caller: pipelined commands).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.at {
                At::LineStart if b == b'.' => {
                    self.at = At::Dot;
                    i += 1;
                    continue;
                }
                At::DotCr if b == b'\n' && self.after_crlf => {
                    let smuggled = self.smuggled;
                    *self = Decoder::default();
                    self.smuggled = smuggled;
                    return (i + 1, true);
                }
                At::Dot | At::DotCr if b == b'\n' => {
                    // Not the end: kept as an empty line of data, and the message is
                    // refused.
                    self.smuggled = true;
                    out.extend_from_slice(b"\r\n");
                    self.at = At::LineStart;
                    self.cr = false;
                    self.after_crlf = false;
                    i += 1;
                    continue;
                }
                At::Dot if b == b'\r' => {
                    self.at = At::DotCr;
                    i += 1;
                    continue;
                }
                At::DotCr => {
                    // ".\rX": the dot goes (it is stuffing), the CR stays.
                    out.push(b'\r');
                    self.cr = true;
                }
                _ => {}
            }
            self.at = At::Inside;
            let rest = &input[i..];
            match memchr::memchr(b'\n', rest) {
                Some(p) => {
                    out.extend_from_slice(&rest[..p]);
                    let cr = if p == 0 {
                        self.cr
                    } else {
                        rest[p - 1] == b'\r'
                    };
                    if !cr {
                        out.push(b'\r');
                    }
                    out.push(b'\n');
                    self.at = At::LineStart;
                    self.cr = false;
                    self.after_crlf = cr;
                    i += p + 1;
                }
                None => {
                    out.extend_from_slice(rest);
                    self.cr = rest.last() == Some(&b'\r');
                    i = input.len();
                }
            }
        }
        (input.len(), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the line-by-line reading did before, with the end rule of the module
    /// doc: each line (to its LF) with the terminator made CRLF, the end at a `.`
    /// line ended by CRLF after a CRLF, one leading dot removed; whether a `.` line
    /// next to a bare LF was seen.
    fn by_lines(input: &[u8]) -> Option<(Vec<u8>, usize, bool)> {
        let mut out = Vec::new();
        let mut pos = 0;
        let mut after_crlf = true;
        let mut smuggled = false;
        while let Some(p) = input[pos..].iter().position(|&b| b == b'\n') {
            let mut line = input[pos..pos + p + 1].to_vec();
            pos += p + 1;
            let crlf = line.ends_with(b"\r\n");
            if !crlf {
                line.pop();
                line.extend_from_slice(b"\r\n");
            }
            if line == b".\r\n" {
                if crlf && after_crlf {
                    return Some((out, pos, smuggled));
                }
                smuggled = true;
            }
            after_crlf = crlf;
            let skip = usize::from(line[0] == b'.');
            out.extend_from_slice(&line[skip..]);
        }
        None
    }

    fn decode_split(input: &[u8], cuts: &[usize]) -> (Vec<u8>, usize, bool, bool) {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        let mut used = 0;
        let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c < input.len()).collect();
        bounds.push(input.len());
        let mut from = 0;
        for to in bounds {
            let mut chunk = &input[from.max(used)..to];
            while !chunk.is_empty() {
                let (n, end) = d.feed(chunk, &mut out);
                used += n;
                if end {
                    return (out, used, true, d.smuggled());
                }
                chunk = &chunk[n..];
            }
            from = to;
        }
        (out, used, false, d.smuggled())
    }

    /// Every one ends; those with a `.` line next to a bare LF end later, at a
    /// proper `CRLF . CRLF`.
    const SAMPLES: &[&[u8]] = &[
        b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
        b"..starts with a dot\r\nbare lf\nend\r\n.\r\n",
        b".\r\n",
        b".\n\r\n.\r\n",
        b"\r\n.\r\n",
        b"a\r\r\n.\rX\r\n..\r\n...\r\n.x\n.\r\nMAIL FROM:<a@b>\r\n.\r\n",
        b"\n\n\r\n.\nDATA\r\n.\r\n",
        b"line\r\n.\r\r\n.\r\n",
        b"body\n.\nMAIL FROM:<x@y>\r\n\r\n.\r\n",
        b"body\r\n.\nRCPT TO:<x@y>\r\n.\r\n",
        b"body\n.\r\nQUIT\r\n.\r\n",
    ];

    #[test]
    fn equals_line_by_line_reading_at_every_split() {
        for s in SAMPLES {
            let (want, want_used, want_smuggled) = by_lines(s).expect("sample ends");
            for a in 0..=s.len() {
                for b in a..=s.len() {
                    let (got, used, end, smuggled) = decode_split(s, &[a, b]);
                    assert!(end, "{s:?} split at {a},{b}");
                    assert_eq!(used, want_used, "{s:?} split at {a},{b}");
                    assert_eq!(smuggled, want_smuggled, "{s:?} split at {a},{b}");
                    assert_eq!(
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(&want),
                        "{s:?} split at {a},{b}"
                    );
                }
            }
        }
    }

    #[test]
    fn without_the_end_line_it_wants_more() {
        let (out, used, end, _) = decode_split(b"abc\r\n.x\r\n..\r", &[3, 7]);
        assert!(!end);
        assert_eq!(used, 12);
        assert_eq!(out, b"abc\r\nx\r\n.\r");
    }

    #[test]
    fn a_dot_line_next_to_a_bare_lf_is_data_and_noted() {
        for (input, smuggled) in [
            (&b"a\n.\nb\r\n.\r\n"[..], true),
            (b"a\r\n.\nb\r\n.\r\n", true),
            (b"a\n.\r\nb\r\n.\r\n", true),
            (b"a\nb\r\n.\r\n", false),
        ] {
            let (out, used, end, got) = decode_split(input, &[]);
            assert!(end && used == input.len(), "{input:?}");
            assert_eq!(got, smuggled, "{input:?}");
            assert!(out.ends_with(b"b\r\n"), "{input:?}: {out:?}");
        }
        let mut d = Decoder::default();
        d.feed(b"\n.\n\r\n.\r\n", &mut Vec::new());
        assert!(d.smuggled());
    }
}
