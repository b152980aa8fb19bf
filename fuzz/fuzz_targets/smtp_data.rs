//! The proxy's DATA scanner (`fulmar_proxy::smtp::data`), which decides
//! where a message ends and whether it smuggles a bare LF: whatever the
//! bytes and however TCP splits them into reads, it must agree with a scan
//! of the whole stream at once. The first bytes choose the read sizes.
#![no_main]
use fulmar_proxy::smtp::data::{Scanner, whole};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    let cuts = usize::from(cuts % 8).min(rest.len());
    let (sizes, stream) = rest.split_at(cuts);
    let mut scanner = Scanner::default();
    let (mut at, mut end) = (0, None);
    let mut reads = sizes
        .iter()
        .map(|s| usize::from(*s).max(1))
        .chain(std::iter::repeat(usize::MAX));
    while at < stream.len() && end.is_none() {
        let n = reads.next().expect("endless").min(stream.len() - at);
        let chunk = &stream[at..at + n];
        let (body, found) = scanner.scan(chunk);
        assert!(body <= n && found.is_none_or(|e| e >= body && e <= n));
        end = found.map(|e| at + e);
        at += n;
    }
    assert_eq!((end, scanner.bare_lf), whole(stream), "reads {sizes:?}");
});
