//! What a back-end believes of a proxy (XCLIENT attributes, xtext) and
//! what a client sends to log in (SASL PLAIN): no panic, and xtext
//! decodes what it encodes.
#![no_main]
use fulmar_mailproto::{sasl::Plain, xclient, xtext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Plain::decode(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(f) = xclient::parse(text) {
            // What is believed is printable: it goes into Received lines.
            for v in [f.addr.as_deref(), f.helo.as_deref()].into_iter().flatten() {
                assert!(!v.chars().any(char::is_control), "{v:?}");
            }
        }
        let _ = xtext::decode(text);
        assert_eq!(xtext::decode(&xtext::encode(text)).as_deref(), Some(text));
    }
});
