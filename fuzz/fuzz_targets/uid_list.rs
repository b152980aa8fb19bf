//! fulmar-maild's UID list (`uidlist`), read at every mailbox sync: any
//! bytes a damaged or hostile file holds are refused or read into a list
//! that keeps its invariants and reads back the same once written.
#![no_main]
use fulmar_maild::store::uidlist::{parse_uidlist, render};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(list) = parse_uidlist(text) else {
        return;
    };
    assert!(list.uid_validity != 0);
    assert!(list.first_recent <= list.next_uid);
    for (&uid, base) in &list.by_uid {
        assert!(
            uid != 0 && uid < list.next_uid,
            "{uid} of {}",
            list.next_uid
        );
        assert!(!base.is_empty() && !base.contains('\n'));
    }
    assert_eq!(parse_uidlist(&render(&list)).as_ref(), Some(&list));
});
