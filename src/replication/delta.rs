//! Block deltas for changed content files, as rsync computes them: the old version
//! (the base, which the peer holds) is cut into fixed blocks indexed by a rolling
//! checksum; a window slides over the new version, and wherever its checksum names a
//! base block with the same bytes the delta says "copy that block", elsewhere it
//! carries the literal bytes. The sender holds both versions, so a candidate block is
//! confirmed by comparing bytes, not by a second hash; the receiver checks the
//! rebuilt file against its content address (SHA-256) anyway.
//!
//! Encoding: `CDD1`, the block size (u32 BE), then instructions: `C` start block
//! (u32) and count (u32) of base blocks to copy, or `L` a length (u32) and that many
//! literal bytes.

use std::collections::HashMap;

use anyhow::{Result, bail};

const MAGIC: &[u8; 4] = b"CDD1";

/// The block size for a base of `len` bytes: about its square root, 1–16 KiB.
fn block_size(len: usize) -> usize {
    ((len as f64).sqrt() as usize).clamp(1024, 16 * 1024)
}

/// rsync's weak checksum of a window: (sum, weighted sum), each mod 2^16.
#[derive(Clone, Copy)]
struct Rolling {
    a: u32,
    b: u32,
    len: u32,
}

impl Rolling {
    fn new(window: &[u8]) -> Rolling {
        let (mut a, mut b) = (0u32, 0u32);
        let n = window.len() as u32;
        for (i, &x) in window.iter().enumerate() {
            a = a.wrapping_add(x as u32);
            b = b.wrapping_add((n - i as u32).wrapping_mul(x as u32));
        }
        Rolling { a, b, len: n }
    }

    /// Slides the window one byte: `out` leaves, `inp` enters.
    fn roll(&mut self, out: u8, inp: u8) {
        self.a = self.a.wrapping_sub(out as u32).wrapping_add(inp as u32);
        self.b = self
            .b
            .wrapping_sub(self.len.wrapping_mul(out as u32))
            .wrapping_add(self.a);
    }

    fn digest(&self) -> u32 {
        (self.a & 0xffff) | (self.b << 16)
    }
}

/// The delta that rebuilds `new` from `base`.
pub fn encode(base: &[u8], new: &[u8]) -> Vec<u8> {
    let bs = block_size(base.len());
    let mut index: HashMap<u32, Vec<u32>> = HashMap::new();
    for (i, block) in base.chunks_exact(bs).enumerate() {
        index
            .entry(Rolling::new(block).digest())
            .or_default()
            .push(i as u32);
    }
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(bs as u32).to_be_bytes());
    let mut copy: Option<(u32, u32)> = None;
    let flush_copy = |out: &mut Vec<u8>, copy: &mut Option<(u32, u32)>| {
        if let Some((start, n)) = copy.take() {
            out.push(b'C');
            out.extend_from_slice(&start.to_be_bytes());
            out.extend_from_slice(&n.to_be_bytes());
        }
    };
    let literal = |out: &mut Vec<u8>, bytes: &[u8]| {
        if !bytes.is_empty() {
            out.push(b'L');
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
        }
    };
    let (mut pos, mut lit_start) = (0usize, 0usize);
    let mut sum = (new.len() >= bs).then(|| Rolling::new(&new[..bs]));
    while let Some(r) = sum.as_mut() {
        let window = &new[pos..pos + bs];
        let hit = index.get(&r.digest()).and_then(|cands| {
            cands.iter().copied().find(|&i| {
                let at = i as usize * bs;
                &base[at..at + bs] == window
            })
        });
        if let Some(i) = hit {
            if lit_start < pos {
                flush_copy(&mut out, &mut copy);
                literal(&mut out, &new[lit_start..pos]);
            }
            copy = match copy {
                Some((start, n)) if start + n == i => Some((start, n + 1)),
                _ => {
                    flush_copy(&mut out, &mut copy);
                    Some((i, 1))
                }
            };
            pos += bs;
            lit_start = pos;
            sum = (pos + bs <= new.len()).then(|| Rolling::new(&new[pos..pos + bs]));
        } else if pos + bs < new.len() {
            r.roll(new[pos], new[pos + bs]);
            pos += 1;
        } else {
            sum = None;
        }
    }
    flush_copy(&mut out, &mut copy);
    literal(&mut out, &new[lit_start..]);
    out
}

/// Rebuilds the new version from `base` and a delta made by [`encode`].
pub fn decode(base: &[u8], delta: &[u8]) -> Result<Vec<u8>> {
    if delta.len() < 8 || &delta[..4] != MAGIC {
        bail!("not a block delta");
    }
    let bs = u32::from_be_bytes(delta[4..8].try_into().unwrap()) as usize;
    if bs == 0 {
        bail!("block delta with block size 0");
    }
    let mut out = Vec::new();
    let mut at = 8usize;
    let word = |at: usize| -> Result<u32> {
        match delta.get(at..at + 4) {
            Some(b) => Ok(u32::from_be_bytes(b.try_into().unwrap())),
            None => bail!("block delta truncated"),
        }
    };
    while at < delta.len() {
        match delta[at] {
            b'C' => {
                let (start, n) = (word(at + 1)? as usize, word(at + 5)? as usize);
                let from = start * bs;
                let to = from + n * bs;
                let Some(bytes) = base.get(from..to) else {
                    bail!("block delta copies past the end of its base");
                };
                out.extend_from_slice(bytes);
                at += 9;
            }
            b'L' => {
                let n = word(at + 1)? as usize;
                let Some(bytes) = delta.get(at + 5..at + 5 + n) else {
                    bail!("block delta truncated");
                };
                out.extend_from_slice(bytes);
                at += 5 + n;
            }
            other => bail!("block delta has an unknown instruction {other:#x}"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 33) as u8
            })
            .collect()
    }

    #[test]
    fn one_changed_byte_costs_about_one_block() {
        let base = data(1 << 20, 1);
        let mut new = base.clone();
        new[500_000] ^= 0xff;
        let d = encode(&base, &new);
        assert!(
            d.len() < 2 * block_size(base.len()) + 64,
            "{} bytes",
            d.len()
        );
        assert_eq!(decode(&base, &d).unwrap(), new);
    }

    #[test]
    fn insertions_deletions_and_unrelated_content_round_trip() {
        let base = data(200_000, 2);
        let mut inserted = base.clone();
        inserted.splice(1234..1234, b"hello, inserted bytes".iter().copied());
        let mut removed = base.clone();
        removed.drain(50_000..50_700);
        let other = data(150_000, 3);
        for new in [
            inserted.clone(),
            removed,
            other.clone(),
            Vec::new(),
            base.clone(),
        ] {
            let d = encode(&base, &new);
            assert_eq!(decode(&base, &d).unwrap(), new);
        }
        // An insertion shifts everything after it; the rolling sum still finds it.
        assert!(encode(&base, &inserted).len() < 3 * block_size(base.len()) + 64);
        // Unchanged: copies, and the base's last partial block as literal bytes.
        assert!(encode(&base, &base).len() < block_size(base.len()) + 32);
        // Nothing in common: about the size of the new file.
        assert!(encode(&base, &other).len() >= other.len());
        // Small or empty bases work too.
        assert_eq!(decode(b"", &encode(b"", b"abc")).unwrap(), b"abc");
    }

    #[test]
    fn malformed_deltas_are_errors() {
        let base = data(10_000, 4);
        assert!(decode(&base, b"nope").is_err());
        let mut d = encode(&base, &base);
        d.truncate(d.len() - 2);
        assert!(decode(&base, &d).is_err());
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&1024u32.to_be_bytes());
        bad.push(b'C');
        bad.extend_from_slice(&1000u32.to_be_bytes());
        bad.extend_from_slice(&1u32.to_be_bytes());
        assert!(decode(&base, &bad).is_err());
        bad[8] = b'X';
        assert!(decode(&base, &bad).is_err());
    }
}
