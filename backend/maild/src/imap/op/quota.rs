//! QUOTA (RFC 9208): one root per account, read-only for clients.

use imap_codec::imap_types::core::Tag;

use crate::imap::wire::string;
use crate::imap::{session::Session, store_error};

impl Session {
    /// GETQUOTAROOT (with the mailbox) or GETQUOTA: one root, "", for the
    /// whole account, with its STORAGE in KiB (RFC 9208); none when the
    /// account is unlimited.
    pub(in crate::imap) fn quota(&mut self, tag: &Tag, mailbox: Option<&str>) {
        let usage = match self.service.store.quota(self.account()) {
            Ok(usage) => usage,
            Err(e) => return self.tagged(tag, &store_error(&e)),
        };
        if let Some(name) = mailbox {
            let mut line = b"* QUOTAROOT ".to_vec();
            string(&mut line, name.as_bytes());
            if usage.is_some() {
                line.extend_from_slice(b" \"\"");
            }
            self.out.extend_from_slice(&line);
            self.line("");
        }
        match usage {
            Some(u) => {
                self.line(&format!(
                    "* QUOTA \"\" (STORAGE {} {})",
                    u.used.div_ceil(1024),
                    u.limit / 1024
                ));
                self.tagged(tag, "OK Quota reported");
            }
            None if mailbox.is_some() => self.tagged(tag, "OK No quota applies"),
            None => self.tagged(tag, "NO [NONEXISTENT] No quota applies"),
        }
    }
}
