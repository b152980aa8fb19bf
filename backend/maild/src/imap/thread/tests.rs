use super::*;
use crate::imap::sort::base_subject_of;

/// A message: its number (also its mailbox position), subject, sent
/// date, Message-ID and References.
fn msg(id: u32, subject: &str, date: i64, message_id: &str, references: &[&str]) -> Keys {
    let (subject, reply) = base_subject_of(subject);
    Keys {
        id,
        position: id as usize,
        date,
        subject: subject.to_ascii_uppercase(),
        reply,
        message_id: (!message_id.is_empty()).then(|| message_id.to_string()),
        references: references.iter().map(|r| r.to_string()).collect(),
        ..Keys::default()
    }
}

#[test]
fn ordered_subject_threads() {
    let threads = ordered_subject(vec![
        msg(1, "b", 10, "", &[]),
        msg(2, "Re: a", 30, "", &[]),
        msg(3, "a", 20, "", &[]),
        msg(4, "Re: B", 40, "", &[]),
        msg(5, "c", 5, "", &[]),
        msg(6, "Fwd: a", 50, "", &[]),
    ]);
    assert_eq!(threads, "(5)(1 4)(3 (2)(6))");
}

#[test]
fn references_build_the_conversation_tree() {
    // 1 starts; 2 and 3 answer 1; 4 answers 3; 5 is alone.
    let threads = references(vec![
        msg(1, "plan", 10, "a@x", &[]),
        msg(2, "Re: plan", 20, "b@x", &["a@x"]),
        msg(3, "Re: plan", 30, "c@x", &["a@x"]),
        msg(4, "Re: plan", 40, "d@x", &["a@x", "c@x"]),
        msg(5, "other", 5, "e@x", &[]),
    ]);
    assert_eq!(threads, "(5)(1 (2)(3 4))");
}

#[test]
fn a_lost_parent_keeps_its_answers_together() {
    // Both answer a message not in the set: a dummy at the top holds them
    // (several children); with one child the dummy goes.
    let threads = references(vec![
        msg(1, "Re: gone", 20, "b@x", &["lost@x"]),
        msg(2, "Re: gone", 10, "c@x", &["lost@x"]),
        msg(3, "solo", 30, "d@x", &["lost2@x"]),
    ]);
    assert_eq!(threads, "((2)(1))(3)");
}

#[test]
fn a_dummy_in_the_middle_is_replaced_by_its_children() {
    // 2 refers to 1 through a message that is missing.
    let threads = references(vec![
        msg(1, "a", 10, "a@x", &[]),
        msg(2, "Re: a", 20, "c@x", &["a@x", "missing@x"]),
        msg(3, "Re: a", 30, "d@x", &["a@x", "missing@x"]),
    ]);
    assert_eq!(threads, "(1 (2)(3))");
}

#[test]
fn same_subject_threads_are_joined() {
    // No references at all: replies join the thread of the original.
    let threads = references(vec![
        msg(1, "Re: hello", 20, "b@x", &[]),
        msg(2, "hello", 10, "a@x", &[]),
        msg(3, "Fwd: hello", 30, "c@x", &[]),
        // Two non-replies with one subject: a dummy holds both.
        msg(4, "news", 40, "d@x", &[]),
        msg(5, "news", 50, "e@x", &[]),
        // An empty subject joins nothing.
        msg(6, "", 60, "f@x", &[]),
        msg(7, "", 70, "g@x", &[]),
    ]);
    assert_eq!(threads, "(2 (1)(3))((4)(5))(6)(7)");
}

#[test]
fn loops_and_duplicate_ids_are_harmless() {
    let threads = references(vec![
        // Each claims the other as its parent: the later claim would make
        // a loop and is not made.
        msg(1, "x", 10, "a@x", &["b@x"]),
        msg(2, "y", 20, "b@x", &["a@x"]),
        // Its own id in its references.
        msg(3, "z", 30, "c@x", &["c@x"]),
        // The id of 3 again: a message of its own.
        msg(4, "w", 40, "c@x", &[]),
    ]);
    assert_eq!(threads, "(2 1)(3)(4)");
}

#[test]
fn a_truncated_references_is_corrected_by_the_message_itself() {
    // 3's References say c's parent is a; c itself says b.
    let threads = references(vec![
        msg(1, "t", 10, "a@x", &[]),
        msg(2, "t", 20, "b@x", &["a@x"]),
        msg(3, "t", 40, "d@x", &["a@x", "c@x"]),
        msg(4, "t", 30, "c@x", &["a@x", "b@x"]),
    ]);
    assert_eq!(threads, "(1 2 4 3)");
}
