//! CATENATE's message, built from its parts (`imap::catenate`): literals
//! as given, and the messages or parts the URLs name, read from the
//! account's own mailboxes. Any URL that names nothing readable fails the
//! whole APPEND with `[BADURL]`; a message over `max_message_size` with
//! `[TOOBIG]` (RFC 4469 5).
use imap_codec::{
    CommandCodec,
    decode::Decoder,
    imap_types::{
        IntoStatic,
        command::CommandBody,
        fetch::{MacroOrMessageDataItemNames, MessageDataItemName, Section},
    },
};

use crate::imap::{
    catenate::{self, Part},
    mime,
    session::Session,
};

/// A URL's `;SECTION=` as FETCH's BODY[section] reads it.
fn section(text: &str) -> Option<Section<'static>> {
    let command = format!("x FETCH 1 BODY.PEEK[{text}]\r\n");
    let (_, parsed) = CommandCodec::default().decode(command.as_bytes()).ok()?;
    let CommandBody::Fetch {
        macro_or_item_names: MacroOrMessageDataItemNames::MessageDataItemNames(items),
        ..
    } = parsed.body
    else {
        return None;
    };
    match items.into_iter().next()? {
        MessageDataItemName::BodyExt {
            section: Some(section),
            partial: None,
            ..
        } => Some(section.into_static()),
        _ => None,
    }
}

impl Session {
    /// The message CATENATE's parts make, or the tagged answer refusing it.
    pub(in crate::imap) fn catenated(&self, parts: &[Part]) -> Result<Vec<u8>, String> {
        let max = self.service.config.max_message_size;
        let mut out = Vec::new();
        for part in parts {
            match part {
                Part::Text(text) => out.extend_from_slice(text),
                Part::Url(url) => {
                    let data = tokio::task::block_in_place(|| self.url_data(url));
                    // The URL is echoed as it came, but never a `]` or a line end.
                    let shown: String = url
                        .chars()
                        .filter(|c| !matches!(c, ']' | '\r' | '\n'))
                        .collect();
                    out.extend(
                        data.ok_or_else(|| format!("NO [BADURL {shown}] Nothing to read there"))?,
                    );
                }
            }
            if out.len() as u64 > max {
                return Err(format!("NO [TOOBIG] The message would be over {max} bytes"));
            }
        }
        if out.is_empty() {
            return Err("NO The message would be empty".into());
        }
        Ok(out)
    }

    /// What a URL names: a message of the account's, a part of one, or a
    /// range of either; None when it names nothing readable.
    fn url_data(&self, text: &str) -> Option<Vec<u8>> {
        let url = catenate::url(text, self.account())?;
        let mailbox = match url.mailbox {
            Some(m) => m,
            None => self.selected.as_ref()?.name.clone(),
        };
        let listed = self.service.store.sync(self.account(), &mailbox).ok()?;
        if url.uid_validity.is_some_and(|v| v != listed.uid_validity) {
            return None;
        }
        let i = listed
            .messages
            .binary_search_by_key(&url.uid, |m| m.uid)
            .ok()?;
        let raw = std::fs::read(&listed.messages[i].path).ok()?;
        let mut data = match &url.section {
            None => raw,
            Some(text) => mime::section(&mime::parse(&raw), Some(&section(text)?))?,
        };
        if let Some((offset, length)) = url.partial {
            let start = usize::try_from(offset).ok()?.min(data.len());
            let end = match length {
                Some(l) => start
                    .saturating_add(usize::try_from(l).ok()?)
                    .min(data.len()),
                None => data.len(),
            };
            data = data[start..end].to_vec();
        }
        Some(data)
    }
}
