//! Modified UTF-7 (RFC 3501 5.1.3), the mailbox names of IMAP4rev1: what
//! the store keeps and a client without UTF8=ACCEPT sends. A client that
//! enabled UTF8=ACCEPT (RFC 6855) sends and is shown UTF-8 names, each
//! converted here: printable ASCII but `&` stands for itself, `&` is `&-`,
//! anything else is UTF-16 in base64 (`,` for `/`, no padding) between
//! `&` and `-`.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// A UTF-8 name in modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out.push('-');
        run.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            match c {
                '&' => out.push_str("&-"),
                _ => out.push(c),
            }
        } else {
            run.extend(c.encode_utf16(&mut [0; 2]).iter());
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A modified UTF-7 name in UTF-8; None when it is not valid modified
/// UTF-7 (such a name is shown as it is).
pub fn decode(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let dash = after.find('-')?;
        let encoded = &after[..dash];
        if encoded.is_empty() {
            out.push('&');
        } else {
            let mut bits = 0u32;
            let mut count = 0;
            let mut units = Vec::new();
            for b in encoded.bytes() {
                let v = ALPHABET.iter().position(|&a| a == b)? as u32;
                bits = (bits << 6) | v;
                count += 6;
                if count >= 16 {
                    count -= 16;
                    units.push((bits >> count) as u16);
                    bits &= (1 << count) - 1;
                }
            }
            // Left over: fewer than 6 bits, all zero (no padding allowed).
            if count >= 6 || bits != 0 {
                return None;
            }
            let text = String::from_utf16(&units).ok()?;
            // What ASCII could say itself must not be encoded.
            if text.chars().any(|c| (' '..='~').contains(&c)) {
                return None;
            }
            out.push_str(&text);
        }
        rest = &after[dash + 1..];
    }
    out.push_str(rest);
    // Only printable ASCII outside the encoded runs.
    name.bytes()
        .all(|b| (0x20..=0x7e).contains(&b))
        .then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_both_ways() {
        for (utf8, mutf7) in [
            ("INBOX", "INBOX"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("Tom & Jerry", "Tom &- Jerry"),
            ("😀 smile", "&2D3eAA- smile"),
        ] {
            assert_eq!(encode(utf8), mutf7);
            assert_eq!(decode(mutf7).as_deref(), Some(utf8));
        }
        for bad in ["&", "&Jjo", "&AGE-", "&U,BTF2-", "caf\u{e9}", "&ZeVnLIqe"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
