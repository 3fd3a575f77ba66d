//! LIST/LSUB name matching (RFC 3501 6.3.8): `*` matches anything, `%` anything but
//! the hierarchy separator `/`. Names and patterns are UTF-8 here (decoded from
//! modified UTF-7 by the caller).

/// Whether `name` matches `pattern`.
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    matches_at(&p, &n)
}

fn matches_at(p: &[char], n: &[char]) -> bool {
    // Dynamic programming over (pattern position, name position): O(|p| * |n|), so a
    // pattern full of wildcards cannot make it exponential.
    // reach[j]: the pattern prefix consumed so far matches n[..j].
    let mut reach = vec![false; n.len() + 1];
    reach[0] = true;
    for &pc in p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' => {
                let mut on = false;
                for j in 0..=n.len() {
                    on |= reach[j];
                    next[j] = on;
                }
            }
            '%' => {
                let mut on = false;
                for j in 0..=n.len() {
                    on |= reach[j];
                    next[j] = on;
                    if j < n.len() && n[j] == '/' {
                        on = false;
                    }
                }
            }
            c => {
                for j in 0..n.len() {
                    if reach[j] && n[j] == c {
                        next[j + 1] = true;
                    }
                }
            }
        }
        reach = next;
    }
    reach[n.len()]
}

/// The pattern to match names against: reference and mailbox pattern joined
/// (RFC 3501 6.3.8), with a leading `INBOX` in any case made upper case.
pub fn full_pattern(reference: &str, pattern: &str) -> String {
    let joined = if pattern.starts_with('/') {
        pattern.to_string()
    } else {
        format!("{reference}{pattern}")
    };
    let head = joined.split('/').next().unwrap_or("");
    if head.eq_ignore_ascii_case("INBOX") {
        format!("INBOX{}", &joined[head.len()..])
    } else {
        joined
    }
}

/// Every name in `names` plus all their ancestors; ancestors that are not in `names`
/// are marked `false` (they exist only as hierarchy: `\Noselect`).
pub fn with_ancestors<'a>(names: impl Iterator<Item = &'a str>) -> Vec<(String, bool)> {
    let mut all: std::collections::BTreeMap<String, bool> = std::collections::BTreeMap::new();
    for name in names {
        all.insert(name.to_string(), true);
        let mut idx = 0;
        while let Some(p) = name[idx..].find('/') {
            let anc = &name[..idx + p];
            all.entry(anc.to_string()).or_insert(false);
            idx += p + 1;
        }
    }
    all.into_iter().collect()
}

/// Whether any of `names` is a child of `name`.
pub fn has_children<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> bool {
    let prefix = format!("{name}/");
    names.into_iter().any(|n| n.starts_with(&prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(matches("*", "INBOX"));
        assert!(matches("*", "a/b/c"));
        assert!(matches("%", "Sent"));
        assert!(!matches("%", "a/b"));
        assert!(matches("a/%", "a/b"));
        assert!(!matches("a/%", "a/b/c"));
        assert!(matches("a/*", "a/b/c"));
        assert!(matches("S*t", "Sent"));
        assert!(matches("INBOX", "INBOX"));
        assert!(!matches("INBOX", "INBOX/x"));
        assert!(matches("%/%", "a/b"));
        assert!(matches("", ""));
    }

    #[test]
    fn patterns() {
        assert_eq!(full_pattern("", "inbox"), "INBOX");
        assert_eq!(full_pattern("inbox/", "%"), "INBOX/%");
        assert_eq!(full_pattern("a/", "b"), "a/b");
        assert_eq!(full_pattern("Inboxes", "%"), "Inboxes%");
    }

    #[test]
    fn ancestors() {
        let v = with_ancestors(["a/b/c", "x"].into_iter());
        assert_eq!(
            v,
            vec![
                ("a".to_string(), false),
                ("a/b".to_string(), false),
                ("a/b/c".to_string(), true),
                ("x".to_string(), true)
            ]
        );
    }
}
