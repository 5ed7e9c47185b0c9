//! Passwords in URLs. Every message, log line, `Debug` output and binding that
//! shows a URL shows it through [`redact`], the one copy of the rule.

/// The text with every URL password replaced by `***`: the password of each
/// `scheme://user:password@host` (also in comma-separated node lists) and the
/// value of every `password=` query parameter. Text without secrets is returned
/// unchanged.
pub fn redact(text: &str) -> String {
    // Query values first: hiding one may remove a `://` inside it, and the URLs are
    // then cut where the remaining `://` are, so a second redaction changes nothing.
    redact_userinfo(&redact_query_passwords(text))
}

/// `user:password@` becomes `user:***@` in each stretch that follows a `://` (or,
/// without any `://`, in the whole text). A stretch ends where the next URL begins,
/// so a node list `redis://:a@h1,redis://:b@h2` hides both passwords.
fn redact_userinfo(text: &str) -> String {
    let mut starts: Vec<usize> = text.match_indices("://").map(|(i, _)| i + 3).collect();
    if starts.is_empty() {
        starts.push(0);
    }
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..starts[0]]);
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(text.len(), |next| next - 3);
        let stretch = &text[start..end];
        match stretch.rfind('@') {
            Some(at) => {
                let userinfo = &stretch[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&stretch[at..]);
            }
            None => out.push_str(stretch),
        }
        if end < text.len() {
            out.push_str("://");
        }
    }
    out
}

/// `password=…` (any case, after `?` or `&`) keeps its key and loses its value.
fn redact_query_passwords(text: &str) -> String {
    const KEY: &str = "password=";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find(KEY) {
        let key_start = search + found;
        let value_start = key_start + KEY.len();
        search = value_start;
        // `sslpassword=` and `password=` both count; a word ending in "password" does not.
        let before = lower[..key_start].trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_');
        if !(before.ends_with('?') || before.ends_with('&')) {
            continue;
        }
        let value_end = text[value_start..]
            .find(['&', '#', ',', ' '])
            .map_or(text.len(), |i| value_start + i);
        out.push_str(&text[copied..value_start]);
        out.push_str("***");
        copied = value_end;
        search = value_end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn hides_passwords_and_keeps_the_rest() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("redis://:secret@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact("rediss://u:p@ss@h:6380/"), "rediss://u:***@h:6380/");
        assert_eq!(
            redact("redis://:a1@h1:7000,redis://:b2@h2:7001"),
            "redis://:***@h1:7000,redis://:***@h2:7001"
        );
        assert_eq!(
            redact("redis+cluster://u:pa,ss@h1:7000,h2:7001"),
            "redis+cluster://u:***@h1:7000,h2:7001"
        );
        assert_eq!(
            redact("postgres://h/db?user=u&password=secret&sslmode=verify-full"),
            "postgres://h/db?user=u&password=***&sslmode=verify-full"
        );
        assert_eq!(
            redact("mysql://h/db?sslPassword=secret"),
            "mysql://h/db?sslPassword=***"
        );
        assert_eq!(redact("u:secret@h"), "u:***@h");
        // Found by the `urls` fuzz target: a query value holding `://`.
        let text = "postgres:/@e?a=u&password=s:b://u?d=u&pa//s";
        assert_eq!(redact(&redact(text)), redact(text));
        assert_eq!(redact(text), "postgres:***@e?a=u&password=***&pa//s");
        for plain in [
            "sqlite://qtask.db",
            "db",
            "redis://h:1/",
            "postgres://u@h/db",
            "",
            "a://",
            "://",
        ] {
            assert_eq!(redact(plain), plain);
        }
    }
}
