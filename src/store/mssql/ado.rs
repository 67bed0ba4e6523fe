//! ADO.NET connection strings, read just far enough to find the keywords
//! that tiberius does not handle (`Authentication`, `Max Pool Size`,
//! `Tenant ID`) and to hand it the rest unchanged.

use std::ops::Range;

/// One `key=value` of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pair {
    /// The keyword, trimmed, in lower case, inner spaces kept (`user id`).
    pub key: String,
    /// The value, trimmed and unquoted.
    pub value: String,
    /// Where the pair sits in the string.
    span: Range<usize>,
}

/// The pairs of `s`. Values may be quoted as ADO.NET and tiberius allow:
/// `'…'` or `"…"` (the quote doubled inside), or `{…}` (`}}` inside); a
/// `;` inside quotes does not end the pair.
pub(super) fn pairs(s: &str) -> Vec<Pair> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < s.len() {
        let end = pair_end(s, start);
        let segment = &s[start..end];
        if let Some((key, value)) = segment.split_once('=') {
            out.push(Pair {
                key: key.trim().to_ascii_lowercase(),
                value: unquote(value.trim()),
                span: start..end,
            });
        }
        start = end + 1;
    }
    out
}

/// `s` without the pairs whose keyword `drop` selects, the others as they
/// were written.
pub(super) fn without(s: &str, drop: impl Fn(&str) -> bool) -> String {
    pairs(s)
        .into_iter()
        .filter(|p| !drop(&p.key))
        .map(|p| &s[p.span])
        .collect::<Vec<_>>()
        .join(";")
}

/// The end (exclusive) of the pair that starts at `start`.
fn pair_end(s: &str, start: usize) -> usize {
    let bytes = s.as_bytes();
    let mut i = start;
    // Only the value may be quoted: skip the keyword first.
    while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b';' {
        i += 1;
    }
    if i < bytes.len() && bytes[i] == b'=' {
        i += 1;
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let close = match bytes.get(i) {
            Some(b'\'') => Some(b'\''),
            Some(b'"') => Some(b'"'),
            Some(b'{') => Some(b'}'),
            _ => None,
        };
        if let Some(close) = close {
            i += 1;
            while i < bytes.len() {
                if bytes[i] == close {
                    if bytes.get(i + 1) == Some(&close) {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
        }
    }
    while i < bytes.len() && bytes[i] != b';' {
        i += 1;
    }
    i
}

fn unquote(v: &str) -> String {
    let (open, close) = match v.as_bytes().first() {
        Some(b'\'') => ('\'', '\''),
        Some(b'"') => ('"', '"'),
        Some(b'{') => ('{', '}'),
        _ => return v.to_owned(),
    };
    match v.strip_prefix(open).and_then(|v| v.strip_suffix(close)) {
        Some(inner) => inner.replace(&format!("{close}{close}"), &close.to_string()),
        None => v.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_keep_their_semicolons() {
        let s = "Server=tcp:h,1433; User ID = app ;Password='a;b''c';PWD={x}}y;z};Database=\"d\"";
        let got: Vec<(String, String)> = pairs(s).into_iter().map(|p| (p.key, p.value)).collect();
        assert_eq!(
            got,
            [
                ("server", "tcp:h,1433"),
                ("user id", "app"),
                ("password", "a;b'c"),
                ("pwd", "x}y;z"),
                ("database", "d"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(
            without(s, |k| k == "password" || k == "pwd"),
            "Server=tcp:h,1433; User ID = app ;Database=\"d\""
        );
        assert!(pairs("").is_empty() && pairs(";;").is_empty());
        assert_eq!(pairs("a='unclosed;b=c").len(), 1);
    }
}
