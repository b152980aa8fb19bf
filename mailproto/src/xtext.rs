//! xtext (RFC 3461 §4): `+XX` for every byte outside `!`..`~` and for `+`
//! and `=`, so a value never breaks an XCLIENT line or an attribute.

/// Encodes `value` as xtext.
pub fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Decodes an xtext value; None when malformed (a `+` not followed by two
/// hex digits) or not UTF-8.
pub fn decode(value: &str) -> Option<String> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        if b == b'+' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext_escapes() {
        assert_eq!(encode("mx.example"), "mx.example");
        assert_eq!(encode("a b=c+d"), "a+20b+3Dc+2Bd");
    }

    #[test]
    fn xtext() {
        assert_eq!(decode("198.18.0.1").as_deref(), Some("198.18.0.1"));
        assert_eq!(decode("a+2Bb+3D").as_deref(), Some("a+b="));
        assert_eq!(decode("bad+2"), None);
        assert_eq!(decode("bad+zz"), None);
        assert_eq!(
            decode(&encode("a b=c+d\r\n")).as_deref(),
            Some("a b=c+d\r\n")
        );
    }
}
