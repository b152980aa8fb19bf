//! SEARCHRES (RFC 5182): SEARCH RETURN (SAVE) keeps its result as `$`;
//! FETCH, STORE, COPY, UID commands and SEARCH use it; it follows the
//! mailbox (an expunged message leaves it, numbers are as they are now);
//! SAVE with MIN keeps the minimum only; `$` as the argument of a key
//! (SUBJECT $) is a string; a reselect or a failed SEARCH empties it.
mod support;

use support::{Site, line};

#[test]
fn dollar_names_the_saved_result_as_the_mailbox_now_has_it() {
    let site = Site::new();
    let out = site.python(
        "cl",
        r#"
m = imaplib.IMAP4(MAIL, 143); m.login("ann@fulmar.test", "ann-pw")
print("caps", "SEARCHRES" in m.capabilities)
for i in range(6):
    subject = "costs $5" if i == 0 else f"m{i}"
    flags = "(\\Flagged)" if i % 2 == 1 else None
    m.append("INBOX", flags, None, f"Subject: {subject}\r\n\r\nx\r\n".encode())
m.logout()

a, b = connect(), connect()
cmd(a, "LOGIN ann@fulmar.test ann-pw"); cmd(b, "LOGIN ann@fulmar.test ann-pw")
cmd(a, "SELECT INBOX"); cmd(b, "SELECT INBOX")
print("save", cmd(a, "SEARCH RETURN (SAVE) FLAGGED"))
print("fetch", cmd(a, "FETCH $ (UID)"))
cmd(b, "UID STORE 2 +FLAGS.SILENT (\\Deleted)"); cmd(b, "EXPUNGE")
print("noop", cmd(a, "NOOP"))
print("by number", cmd(a, "FETCH $ (UID)"))
print("by uid", cmd(a, "UID SEARCH UID $"))
print("search", cmd(a, "SEARCH $"), cmd(a, "SEARCH NOT $"), cmd(a, "SEARCH OR $ SUBJECT $"))
print("min", cmd(a, "UID SEARCH RETURN (SAVE MIN) UNFLAGGED"))
print("min fetch", cmd(a, "UID FETCH $ (FLAGS)"))
print("store", cmd(a, "STORE $ +FLAGS (\\Seen)"))
print("copy", cmd(a, "COPY $ Trash")[-1][:12])
print("bad charset", cmd(a, "SEARCH RETURN (SAVE) CHARSET X-NONE ALL")[-1][:14])
print("emptied", cmd(a, "FETCH $ (UID)"))
cmd(a, "SEARCH RETURN (SAVE) ALL")
cmd(a, "EXAMINE INBOX")
print("reselected", cmd(a, "FETCH $ (UID)"))
"#,
    );
    assert_eq!(line(&out, "caps"), "True", "{out}");
    // SAVE alone: no untagged answer.
    assert_eq!(line(&out, "save"), "['OK SEARCH completed']", "{out}");
    assert_eq!(
        line(&out, "fetch"),
        "['* 2 FETCH (UID 2)', '* 4 FETCH (UID 4)', '* 6 FETCH (UID 6)', 'OK FETCH completed']",
        "{out}"
    );
    assert_eq!(
        line(&out, "noop"),
        "['* 2 EXPUNGE', 'OK Completed']",
        "{out}"
    );
    // UIDs 4 and 6 are now messages 3 and 5.
    assert_eq!(
        line(&out, "by number"),
        "['* 3 FETCH (UID 4)', '* 5 FETCH (UID 6)', 'OK FETCH completed']",
        "{out}"
    );
    assert_eq!(
        line(&out, "by uid"),
        "['* SEARCH 4 6', 'OK SEARCH completed']",
        "{out}"
    );
    // `$`, NOT `$`, and SUBJECT `$` (a string: message 1's "costs $5").
    assert_eq!(
        line(&out, "search"),
        "['* SEARCH 3 5', 'OK SEARCH completed'] ['* SEARCH 1 2 4', 'OK SEARCH completed'] \
         ['* SEARCH 1 3 5', 'OK SEARCH completed']",
        "{out}"
    );
    assert_eq!(
        line(&out, "min"),
        "['* ESEARCH (TAG \"t15\") UID MIN 1', 'OK SEARCH completed']",
        "{out}"
    );
    assert_eq!(
        line(&out, "min fetch"),
        "['* 1 FETCH (UID 1 FLAGS (\\\\Recent))', 'OK FETCH completed']",
        "{out}"
    );
    assert_eq!(
        line(&out, "store"),
        "['* 1 FETCH (FLAGS (\\\\Seen \\\\Recent))', 'OK STORE completed']",
        "{out}"
    );
    assert_eq!(line(&out, "copy"), "OK [COPYUID ", "{out}");
    assert_eq!(line(&out, "bad charset"), "NO [BADCHARSET", "{out}");
    assert_eq!(line(&out, "emptied"), "['OK FETCH completed']", "{out}");
    assert_eq!(line(&out, "reselected"), "['OK FETCH completed']", "{out}");
}
