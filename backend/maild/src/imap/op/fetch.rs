//! FETCH: flags, dates, sizes, envelopes, body structures and sections.
use std::io;

use imap_codec::imap_types::fetch::{MessageDataItemName, Section};

use crate::imap::binary::{self, NoBinary};
use crate::imap::search;
use crate::imap::wire::{binary_literal, internal_date, literal, nliteral};

/// RFC 3516: a FETCH of a part BINARY cannot decode fails.
fn unknown_cte(cte: &str) -> String {
    let cte: String = cte
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(40)
        .collect();
    format!("NO [UNKNOWN-CTE] Cannot decode the transfer encoding {cte:?}")
}
use crate::imap::{mime, op::condstore::modseq_item, section_spec, session::Session};
use crate::store::FlagChange;

/// `1.2` for a BINARY section path.
fn binary_section(path: &[std::num::NonZeroU32]) -> String {
    path.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

impl Session {
    /// Answers FETCH for the targets; Some(answer) when it must end with
    /// NO (a part in a transfer encoding BINARY cannot undo).
    pub(in crate::imap) async fn fetch(
        &mut self,
        targets: &[usize],
        items: &[MessageDataItemName<'_>],
        uid: bool,
    ) -> io::Result<Option<String>> {
        let needs_content = items.iter().any(|i| {
            !matches!(
                i,
                MessageDataItemName::Flags
                    | MessageDataItemName::Uid
                    | MessageDataItemName::InternalDate
                    | MessageDataItemName::Rfc822Size
                    | MessageDataItemName::ModSeq
            )
        });
        let marks_seen = items.iter().any(|i| {
            matches!(
                i,
                MessageDataItemName::BodyExt { peek: false, .. }
                    | MessageDataItemName::Binary { peek: false, .. }
                    | MessageDataItemName::Rfc822
                    | MessageDataItemName::Rfc822Text
            )
        });
        // \Seen first, for all: the MODSEQ each change took is then
        // learnt in one sync.
        let mut seen_now = vec![false; targets.len()];
        if marks_seen && !self.selected().read_only {
            for (k, &i) in targets.iter().enumerate() {
                let message = self.selected().view[i].clone();
                if message.flags.contains('S') {
                    continue;
                }
                let seen = FlagChange::Add("S".into());
                if let Ok(updated) =
                    tokio::task::block_in_place(|| self.service.store.set_flags(&message, &seen))
                {
                    self.selected.as_mut().expect("selected").view_mut()[i] = updated;
                    seen_now[k] = true;
                }
            }
            if self.condstore && seen_now.contains(&true) {
                self.learn_modseqs();
            }
        }
        for (k, &i) in targets.iter().enumerate() {
            let message = self.selected().view[i].clone();
            let flags_changed = seen_now[k];
            let raw = if needs_content {
                match std::fs::read(&message.path) {
                    Ok(r) => Some(r),
                    // Expunged by another session since the view was made:
                    // RFC 3501 lets us answer with nothing for it.
                    Err(_) => continue,
                }
            } else {
                None
            };
            let parsed = raw.as_deref().map(mime::parse);
            let mut out = format!("* {} FETCH (", i + 1).into_bytes();
            let mut first = true;
            let mut sep = |out: &mut Vec<u8>| {
                if !first {
                    out.push(b' ');
                }
                first = false;
            };
            if uid && !items.iter().any(|i| matches!(i, MessageDataItemName::Uid)) {
                sep(&mut out);
                out.extend_from_slice(format!("UID {}", message.uid).as_bytes());
            }
            for item in items {
                sep(&mut out);
                match item {
                    MessageDataItemName::Uid => {
                        out.extend_from_slice(format!("UID {}", message.uid).as_bytes())
                    }
                    MessageDataItemName::Flags => out.extend_from_slice(
                        format!("FLAGS {}", self.selected().flags(&message)).as_bytes(),
                    ),
                    MessageDataItemName::InternalDate => out.extend_from_slice(
                        format!(
                            "INTERNALDATE {}",
                            internal_date(search::internal_time(&message))
                        )
                        .as_bytes(),
                    ),
                    MessageDataItemName::Rfc822Size => {
                        out.extend_from_slice(format!("RFC822.SIZE {}", message.size).as_bytes())
                    }
                    MessageDataItemName::ModSeq => {
                        out.extend_from_slice(format!("MODSEQ ({})", message.modseq).as_bytes())
                    }
                    MessageDataItemName::Envelope => {
                        out.extend_from_slice(b"ENVELOPE ");
                        mime::envelope(&mut out, parsed.as_ref().expect("content"));
                    }
                    MessageDataItemName::BodyStructure => {
                        out.extend_from_slice(b"BODYSTRUCTURE ");
                        mime::body_structure(
                            &mut out,
                            parsed.as_ref().expect("content"),
                            true,
                            self.service.config.mime_shape(),
                        );
                    }
                    MessageDataItemName::Body => {
                        out.extend_from_slice(b"BODY ");
                        mime::body_structure(
                            &mut out,
                            parsed.as_ref().expect("content"),
                            false,
                            self.service.config.mime_shape(),
                        );
                    }
                    MessageDataItemName::Rfc822 => {
                        out.extend_from_slice(b"RFC822 ");
                        literal(&mut out, raw.as_deref().unwrap_or_default());
                    }
                    MessageDataItemName::Rfc822Header => {
                        out.extend_from_slice(b"RFC822.HEADER ");
                        let header = mime::section(
                            parsed.as_ref().expect("content"),
                            Some(&Section::Header(None)),
                        );
                        nliteral(&mut out, header.as_deref());
                    }
                    MessageDataItemName::Rfc822Text => {
                        out.extend_from_slice(b"RFC822.TEXT ");
                        let text = mime::section(
                            parsed.as_ref().expect("content"),
                            Some(&Section::Text(None)),
                        );
                        nliteral(&mut out, text.as_deref());
                    }
                    MessageDataItemName::BodyExt {
                        section, partial, ..
                    } => {
                        let data =
                            mime::section(parsed.as_ref().expect("content"), section.as_ref());
                        out.extend_from_slice(
                            format!("BODY[{}]", section_spec(section.as_ref())).as_bytes(),
                        );
                        let data = match (partial, data) {
                            (Some((origin, count)), Some(d)) => {
                                out.extend_from_slice(format!("<{origin}>").as_bytes());
                                let start = (*origin as usize).min(d.len());
                                let end = start.saturating_add(count.get() as usize).min(d.len());
                                Some(d[start..end].to_vec())
                            }
                            (_, d) => d,
                        };
                        out.push(b' ');
                        nliteral(&mut out, data.as_deref());
                    }
                    MessageDataItemName::Binary {
                        section, partial, ..
                    } => {
                        let decoded = binary::content(parsed.as_ref().expect("content"), section);
                        out.extend_from_slice(
                            format!("BINARY[{}]", binary_section(section)).as_bytes(),
                        );
                        match decoded {
                            Ok(d) => {
                                let d = match partial {
                                    Some((origin, count)) => {
                                        out.extend_from_slice(format!("<{origin}>").as_bytes());
                                        let start = (*origin as usize).min(d.len());
                                        let end =
                                            start.saturating_add(count.get() as usize).min(d.len());
                                        d[start..end].to_vec()
                                    }
                                    None => d,
                                };
                                out.push(b' ');
                                binary_literal(&mut out, &d);
                            }
                            Err(NoBinary::NoPart) => out.extend_from_slice(b" NIL"),
                            Err(NoBinary::UnknownCte(cte)) => {
                                return Ok(Some(unknown_cte(&cte)));
                            }
                        }
                    }
                    MessageDataItemName::BinarySize { section } => {
                        let size = match binary::content(parsed.as_ref().expect("content"), section)
                        {
                            Ok(d) => d.len(),
                            Err(NoBinary::NoPart) => 0,
                            Err(NoBinary::UnknownCte(cte)) => return Ok(Some(unknown_cte(&cte))),
                        };
                        out.extend_from_slice(
                            format!("BINARY.SIZE[{}] {size}", binary_section(section)).as_bytes(),
                        );
                    }
                }
            }
            if flags_changed
                && !items
                    .iter()
                    .any(|i| matches!(i, MessageDataItemName::Flags))
            {
                out.extend_from_slice(
                    format!(" FLAGS {}", self.selected().flags(&message)).as_bytes(),
                );
                if !items.contains(&MessageDataItemName::ModSeq) {
                    out.extend_from_slice(modseq_item(self.condstore, &message).as_bytes());
                }
            }
            out.extend_from_slice(b")\r\n");
            self.out.extend_from_slice(&out);
            // Large fetches stream out instead of growing one buffer.
            if self.out.len() > 256 * 1024 {
                self.flush().await?;
            }
        }
        Ok(None)
    }
}
