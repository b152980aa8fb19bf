//! SASL PLAIN (RFC 4616): `authzid NUL authcid NUL password`.
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use fulmar_daemon::secret::Secret;

/// A decoded PLAIN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plain {
    /// Who to act as; empty: the authcid itself.
    pub authzid: String,
    /// Whose password this is.
    pub authcid: String,
    pub password: Secret,
}

impl Plain {
    /// Decodes the (base64-decoded) message; None unless exactly three
    /// UTF-8 fields.
    pub fn decode(message: &[u8]) -> Option<Plain> {
        let mut fields = message.split(|b| *b == 0);
        let (authzid, authcid, password) = (fields.next()?, fields.next()?, fields.next()?);
        if fields.next().is_some() {
            return None;
        }
        Some(Plain {
            authzid: String::from_utf8(authzid.to_vec()).ok()?,
            authcid: String::from_utf8(authcid.to_vec()).ok()?,
            password: Secret::from_utf8(password.to_vec())?,
        })
    }

    /// Whether it asks to act as someone other than the authcid (proxy
    /// authorization, which only a master user may do).
    pub fn acts_for_another(&self) -> bool {
        !self.authzid.is_empty() && self.authzid != self.authcid
    }
}

/// The base64 initial response for `authcid` with `password`, acting for
/// `authzid` (empty: for itself).
pub fn plain_response(authzid: &str, authcid: &str, password: &Secret) -> Secret {
    let message = format!("{authzid}\0{authcid}\0{}", password.expose());
    Secret::new(BASE64.encode(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_reads_back_what_it_writes() {
        let response = plain_response("ann@x.test", "provision", &Secret::new("s3cret"));
        let message = BASE64.decode(response.expose()).unwrap();
        assert_eq!(message, b"ann@x.test\0provision\0s3cret");
        let plain = Plain::decode(&message).unwrap();
        assert_eq!(plain.authcid, "provision");
        assert_eq!(plain.password.expose(), "s3cret");
        assert!(plain.acts_for_another());
        assert!(!Plain::decode(b"\0ann\0pw").unwrap().acts_for_another());
        assert!(!Plain::decode(b"ann\0ann\0pw").unwrap().acts_for_another());
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [&b"only\0two"[..], b"a\0b\0c\0d", b"none", b"a\0b\0\xff"] {
            assert_eq!(Plain::decode(bad), None, "{bad:?}");
        }
    }
}
