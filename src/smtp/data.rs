//! The DATA transparency of RFC 5321 4.5.2 over chunks of input, however the client's
//! bytes were split by the network: the end of data (a line that is only `.`), the
//! removal of the leading dot a client adds to lines that start with one, and lines
//! ending in a bare LF normalised to CRLF (tolerated from clients, stored as CRLF).
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
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            at: At::LineStart,
            cr: false,
        }
    }
}

impl Decoder {
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
                At::Dot | At::DotCr if b == b'\n' => {
                    *self = Decoder::default();
                    return (i + 1, true);
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

    /// What the line-by-line reading did before: each line (to its LF) with the
    /// terminator made CRLF, the end at `.`, one leading dot removed.
    fn by_lines(input: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(p) = input[pos..].iter().position(|&b| b == b'\n') {
            let mut line = input[pos..pos + p + 1].to_vec();
            pos += p + 1;
            if !line.ends_with(b"\r\n") {
                line.pop();
                line.extend_from_slice(b"\r\n");
            }
            if line == b".\r\n" {
                return Some((out, pos));
            }
            let skip = usize::from(line[0] == b'.');
            out.extend_from_slice(&line[skip..]);
        }
        None
    }

    fn decode_split(input: &[u8], cuts: &[usize]) -> (Vec<u8>, usize, bool) {
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
                    return (out, used, true);
                }
                chunk = &chunk[n..];
            }
            from = to;
        }
        (out, used, false)
    }

    const SAMPLES: &[&[u8]] = &[
        b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
        b"..starts with a dot\r\nbare lf\nend\r\n.\r\n",
        b".\r\n",
        b".\n",
        b"\r\n.\r\n",
        b"a\r\r\n.\rX\r\n..\r\n...\r\n.x\n.\r\nMAIL FROM:<a@b>\r\n",
        b"\n\n\r\n.\n",
        b"line\r\n.\r\r\n.\r\n",
    ];

    #[test]
    fn equals_line_by_line_reading_at_every_split() {
        for s in SAMPLES {
            let (want, want_used) = by_lines(s).expect("sample ends");
            for a in 0..=s.len() {
                for b in a..=s.len() {
                    let (got, used, end) = decode_split(s, &[a, b]);
                    assert!(end, "{s:?} split at {a},{b}");
                    assert_eq!(used, want_used, "{s:?} split at {a},{b}");
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
        let (out, used, end) = decode_split(b"abc\r\n.x\r\n..\r", &[3, 7]);
        assert!(!end);
        assert_eq!(used, 12);
        assert_eq!(out, b"abc\r\nx\r\n.\r");
    }
}
