//! fulmar-maild answering FETCH for a message anyone could have sent:
//! BODYSTRUCTURE, ENVELOPE and body sections of arbitrary bytes. No panic,
//! no stack overflow (the depth bound), answers of bounded size.
#![no_main]
use fulmar_maild::imap::mime;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // mime::parse catches mail-parser's own panics; libFuzzer's hook would
    // abort on them before they are caught. A panic that escapes still
    // ends the run (libfuzzer-sys aborts on it).
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let msg = mime::parse(data);
    let mut out = Vec::new();
    mime::body_structure(&mut out, &msg, true, mime::Shape::default());
    mime::envelope(&mut out, &msg);
    assert!(
        out.len() <= 64 * data.len() + 4096,
        "{} from {}",
        out.len(),
        data.len()
    );
    let _ = mime::section(&msg, None);
    let _ = mime::body_text(&msg);
    let _ = mime::header_for_search(&msg, "subject");
});
