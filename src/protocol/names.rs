//! Topic and channel name rules: `^[.a-zA-Z0-9_-]+(#ephemeral)?$`, 1 to 64 characters.

const EPHEMERAL_SUFFIX: &str = "#ephemeral";

/// True when `name` is a valid topic name.
pub fn is_valid_topic_name(name: &str) -> bool {
    is_valid_name(name)
}

/// True when `name` is a valid channel name (the same rule as topics).
pub fn is_valid_channel_name(name: &str) -> bool {
    is_valid_name(name)
}

/// True for names ending in `#ephemeral`: kept in memory only, dropped when unused.
pub fn is_ephemeral(name: &str) -> bool {
    name.ends_with(EPHEMERAL_SUFFIX)
}

fn is_valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 64 {
        return false;
    }
    let stem = name.strip_suffix(EPHEMERAL_SUFFIX).unwrap_or(name);
    !stem.is_empty()
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Go's `%q` rendering of a string, used verbatim in NSQ's error texts.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_nsq_names() {
        for ok in ["a", "test.topic", "a_b-c.d", "x#ephemeral", &"a".repeat(64)] {
            assert!(is_valid_topic_name(ok), "{ok}");
        }
        let long_eph = format!("{}#ephemeral", "a".repeat(54));
        assert!(is_valid_channel_name(&long_eph));
    }

    #[test]
    fn rejects_bad_names() {
        let too_long_eph = format!("{}#ephemeral", "a".repeat(55));
        for bad in [
            "",
            "#ephemeral",
            "a b",
            "a/b",
            "ä",
            "a#eph",
            &"a".repeat(65),
            &too_long_eph,
        ] {
            assert!(!is_valid_topic_name(bad), "{bad}");
        }
    }

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
    }
}
