//! LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819) and SPECIAL-USE's
//! LIST options (RFC 6154) as a client sees them: subscribed names with
//! \Subscribed and \NonExistent, RECURSIVEMATCH's CHILDINFO, several
//! patterns at once, STATUS after each selectable mailbox, unknown
//! options refused with BAD, and a plain LIST left as it was.
mod support;

use support::{Site, line};

#[test]
fn extended_list_selects_and_returns_what_was_asked() {
    let site = Site::new();
    let out = site.python(
        "cl",
        r#"
m = imaplib.IMAP4(MAIL, 143); m.login("ann@fulmar.test", "ann-pw")
print("caps", "LIST-EXTENDED" in m.capabilities, "LIST-STATUS" in m.capabilities)
for name in ["Archive/2024", "Archive/2025", "Work"]:
    m.create(name)
m.append("Work", "(\\Seen)", None, b"Subject: a\r\n\r\nx\r\n")
m.append("Work", None, None, b"Subject: b\r\n\r\nx\r\n")
m.logout()

c = connect()
cmd(c, "LOGIN ann@fulmar.test ann-pw")
# Subscribed, in this order: Archive/2024, a name that does not exist,
# INBOX (subscribed names are listed in the order they were added).
for name in ["Drafts", "Sent", "Trash", "Junk"]:
    cmd(c, f'UNSUBSCRIBE "{name}"')
cmd(c, 'SUBSCRIBE "Archive/2024"'); cmd(c, 'SUBSCRIBE "Gone"'); cmd(c, "SUBSCRIBE INBOX")
print("subscribed", cmd(c, 'LIST (SUBSCRIBED) "" "*"'))
print("recursive", cmd(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"'))
print("status", cmd(c, 'LIST "" ("Work" "Archive/*") RETURN (SUBSCRIBED STATUS (MESSAGES UNSEEN))'))
print("special", cmd(c, 'LIST (SPECIAL-USE) "" "*" RETURN (SPECIAL-USE)'))
print("plain", cmd(c, 'LIST "" "%"'))
for bad in ['LIST (FOO) "" "*"', 'LIST (RECURSIVEMATCH) "" "*"', 'LIST "" "*" RETURN (BAR)']:
    print("bad", cmd(c, bad)[-1][:3])
"#,
    );
    assert_eq!(line(&out, "caps"), "True True", "{out}");
    assert_eq!(
        line(&out, "subscribed"),
        "['* LIST (\\\\HasNoChildren \\\\Subscribed) \"/\" \"Archive/2024\"', \
          '* LIST (\\\\NonExistent \\\\HasNoChildren \\\\Subscribed) \"/\" \"Gone\"', \
          '* LIST (\\\\HasNoChildren \\\\Subscribed) \"/\" \"INBOX\"', \
          'OK LIST completed']",
        "{out}"
    );
    // Archive is not subscribed (nor a mailbox): shown for its child.
    assert_eq!(
        line(&out, "recursive"),
        "['* LIST (\\\\NonExistent \\\\HasChildren) \"/\" \"Archive\" (\"CHILDINFO\" (\"SUBSCRIBED\"))', \
          '* LIST (\\\\NonExistent \\\\HasNoChildren \\\\Subscribed) \"/\" \"Gone\"', \
          '* LIST (\\\\HasNoChildren \\\\Subscribed) \"/\" \"INBOX\"', \
          'OK LIST completed']",
        "{out}"
    );
    assert_eq!(
        line(&out, "status"),
        "['* LIST (\\\\HasNoChildren) \"/\" \"Work\"', \
          '* STATUS \"Work\" (MESSAGES 2 UNSEEN 1)', \
          '* LIST (\\\\HasNoChildren \\\\Subscribed) \"/\" \"Archive/2024\"', \
          '* STATUS \"Archive/2024\" (MESSAGES 0 UNSEEN 0)', \
          '* LIST (\\\\HasNoChildren) \"/\" \"Archive/2025\"', \
          '* STATUS \"Archive/2025\" (MESSAGES 0 UNSEEN 0)', \
          'OK LIST completed']",
        "{out}"
    );
    let special = line(&out, "special");
    for name in ["Drafts", "Sent", "Trash", "Junk"] {
        assert!(
            special.contains(&format!("\\\\{name}) \"/\" \"{name}\"")),
            "{out}"
        );
    }
    assert!(
        !special.contains("Work") && !special.contains("INBOX"),
        "{out}"
    );
    let plain = line(&out, "plain");
    assert!(
        plain.contains("'* LIST (\\\\Noselect \\\\HasChildren) \"/\" \"Archive\"'")
            && !plain.contains("Subscribed"),
        "{out}"
    );
    assert_eq!(out.matches("bad BAD").count(), 3, "{out}");
}
