//! The balancer's command grammar and configuration edits, as a services
//! file or `fulmar -batch FILE` feeds them: any text is refused with an
//! error or applied, and what fulmar-lbd then writes back (`to_batch`,
//! its services file) reads back as the same configuration.
#![no_main]
use fulmar_lb::{command::CheckDefaults, edit::apply_batch, model::Desired};
use libfuzzer_sys::fuzz_target;

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let defaults = CheckDefaults::default();
    let Ok(desired) = apply_batch(&Desired::default(), &lines(text), &defaults) else {
        return;
    };
    let written = desired.to_batch();
    let read = apply_batch(&Desired::default(), &lines(&written), &defaults)
        .unwrap_or_else(|e| panic!("the written configuration does not read back: {e}\n{written}"));
    assert_eq!(read, desired, "{written}");
});
