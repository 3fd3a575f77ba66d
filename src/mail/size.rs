//! Sizes for people: bytes, KB or MB (binary units), as the webmail's list, reader
//! and compose pages show them.

/// 532 B, 12 KB (rounded up), 3.4 MB.
pub fn human_size(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{} KB", n.div_ceil(1024))
    } else {
        format!("{:.1} MB", n as f64 / (1024.0 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(532), "532 B");
        assert_eq!(human_size(1025), "2 KB");
        assert_eq!(human_size(3 * 1024 * 1024 + 400 * 1024), "3.4 MB");
        assert_eq!(human_size(1536), "2 KB");
    }
}
