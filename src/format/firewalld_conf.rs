//! `firewalld.conf`: `KEY=value` lines, `#` comments. Only what we need when firewalld is
//! not running: reading `RFC3964_IPv4` and setting it without disturbing other lines.

/// firewalld's value for `RFC3964_IPv4`: true unless the file says `no` (firewalld's
/// fallback is yes; like firewalld, the last assignment wins).
pub fn rfc3964_ipv4(text: &str) -> bool {
    value(text, "RFC3964_IPv4").is_none_or(|v| !v.eq_ignore_ascii_case("no"))
}

fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .rev()
        .filter_map(|line| line.trim().split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
}

/// The text with every `key=` line set to `value`, or the assignment appended.
pub fn set(text: &str, key: &str, value: &str) -> String {
    let mut found = false;
    let mut out = String::with_capacity(text.len() + key.len() + value.len() + 2);
    for line in text.split_inclusive('\n') {
        let is_key = line
            .trim()
            .split_once('=')
            .is_some_and(|(k, _)| k.trim() == key);
        if is_key {
            found = true;
            out.push_str(&format!("{key}={value}"));
            if line.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(line);
        }
    }
    if !found {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("{key}={value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_commented_means_yes() {
        assert!(rfc3964_ipv4(""));
        assert!(rfc3964_ipv4("# RFC3964_IPv4=no\n"));
        assert!(rfc3964_ipv4("RFC3964_IPv4=yes\n"));
        assert!(!rfc3964_ipv4("RFC3964_IPv4=yes\nRFC3964_IPv4 = No\n"));
    }

    #[test]
    fn set_replaces_in_place_or_appends() {
        assert_eq!(
            set("A=1\nRFC3964_IPv4=yes\n# c\n", "RFC3964_IPv4", "no"),
            "A=1\nRFC3964_IPv4=no\n# c\n"
        );
        assert_eq!(set("A=1", "RFC3964_IPv4", "no"), "A=1\nRFC3964_IPv4=no\n");
    }
}
