//! BINARY (RFC 3516): a part's content with its content-transfer-encoding
//! undone (base64, quoted-printable; 7bit, 8bit and binary as they are),
//! never converted to another charset.
use std::num::NonZeroU32;

use base64::Engine;
use mail_parser::{Message, MimeHeaders};

use super::mime::{resolve, slice};

/// Why a part has no binary form.
#[derive(Debug, PartialEq, Eq)]
pub enum NoBinary {
    /// The section names no part.
    NoPart,
    /// RFC 3516's `[UNKNOWN-CTE]`: an encoding this server cannot undo.
    UnknownCte(String),
}

/// The decoded content of the part `path` names; the whole message for an
/// empty path.
pub fn content(msg: &Message, path: &[NonZeroU32]) -> Result<Vec<u8>, NoBinary> {
    if path.is_empty() {
        return Ok(msg.raw_message().to_vec());
    }
    let (m, part) = resolve(msg, path).ok_or(NoBinary::NoPart)?;
    let raw = slice(m, part.offset_body, part.offset_end).ok_or(NoBinary::NoPart)?;
    let encoding = part
        .content_transfer_encoding()
        .unwrap_or("7bit")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "7bit" | "8bit" | "binary" => Ok(raw.to_vec()),
        "base64" => Ok(base64(raw)),
        "quoted-printable" => Ok(quoted_printable(raw)),
        other => Err(NoBinary::UnknownCte(other.to_string())),
    }
}

/// Base64 with line breaks and anything outside the alphabet skipped, as
/// mail readers do; a broken tail is dropped, not fatal.
fn base64(raw: &[u8]) -> Vec<u8> {
    let clean: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/'))
        .collect();
    let whole = clean.len() / 4 * 4;
    let engine = base64::engine::general_purpose::STANDARD_NO_PAD;
    let mut out = engine.decode(&clean[..whole]).unwrap_or_default();
    // A last group of 2 or 3 characters still holds 1 or 2 bytes.
    if clean.len() - whole >= 2 {
        out.extend(engine.decode(&clean[whole..]).unwrap_or_default());
    }
    out
}

/// Quoted-printable (RFC 2045 6.7): `=XX` is a byte, `=` at a line end a
/// soft break; a malformed `=` stays as it is.
fn quoted_printable(raw: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'=' {
            if raw[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if raw[i + 1..].starts_with(b"\n") {
                i += 2;
                continue;
            }
            if let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_undone() {
        assert_eq!(base64(b"AAEC\r\n/w=="), [0, 1, 2, 255]);
        assert_eq!(base64(b"aGk"), b"hi");
        assert_eq!(
            quoted_printable(b"caf=C3=A9 =\r\nsoft=3Dbreak =zz"),
            "café soft=break =zz".as_bytes()
        );
        let msg = crate::imap::mime::parse(
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
              Content-Transfer-Encoding: base64\r\n\r\nAAEC/w==\r\n--b\r\n\
              Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n--b--\r\n",
        );
        let one = [NonZeroU32::new(1).unwrap()];
        let two = [NonZeroU32::new(2).unwrap()];
        let three = [NonZeroU32::new(3).unwrap()];
        assert_eq!(content(&msg, &one).unwrap(), [0, 1, 2, 255]);
        assert_eq!(
            content(&msg, &two),
            Err(NoBinary::UnknownCte("x-uuencode".into()))
        );
        assert_eq!(content(&msg, &three), Err(NoBinary::NoPart));
    }
}
