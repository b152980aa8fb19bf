//! Which command runs in which state: any state and logging in, then the
//! authenticated state, then the selected state (RFC 3501 §3).
use std::io;

use fulmar_daemon::secret::Secret;
use imap_codec::imap_types::{
    auth::AuthMechanism,
    command::{Command, CommandBody},
    core::Tag,
    fetch::{Macro, MacroOrMessageDataItemNames, MessageDataItemName},
    search::SearchKey,
    status::StatusDataItemName,
};

use super::{
    esearch,
    op::condstore,
    session::{Flow, Session},
};

impl Session {
    /// Commands valid in any state, and logging in.
    pub(super) async fn handle(&mut self, command: Command<'static>) -> io::Result<Flow> {
        let tag = command.tag.clone();
        let authenticated = self.account.is_some();
        match command.body {
            CommandBody::Capability => {
                let caps = format!("* CAPABILITY {}", self.capabilities());
                self.line(&caps);
                self.tagged(&tag, "OK CAPABILITY completed");
            }
            CommandBody::Noop | CommandBody::Check => {
                self.refresh(true);
                self.tagged(&tag, "OK Completed");
            }
            CommandBody::Logout => {
                self.line("* BYE Logging out");
                self.tagged(&tag, "OK LOGOUT completed");
                return Ok(Flow::Close);
            }
            CommandBody::Id { parameters } => {
                self.id(parameters.unwrap_or_default());
                self.line("* ID (\"name\" \"fulmar-maild\")");
                self.tagged(&tag, "OK ID completed");
            }
            CommandBody::StartTLS => return self.starttls(&tag).await,
            CommandBody::Login { username, password } if !authenticated => {
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let password = Secret::new(String::from_utf8_lossy(password.declassify().as_ref()));
                let result = self.service.auth.login(&user, &password).await;
                return self.logged_in(&tag, &user, result).await;
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } if !authenticated => {
                if mechanism != AuthMechanism::Plain {
                    self.tagged(&tag, "NO [CANNOT] Only AUTHENTICATE PLAIN is offered");
                    return Ok(Flow::Continue);
                }
                let data = match initial_response {
                    Some(r) => r.declassify().to_vec(),
                    None => match self.sasl_continuation().await? {
                        Some(d) => d,
                        None => {
                            self.tagged(&tag, "BAD Authentication cancelled");
                            return Ok(Flow::Continue);
                        }
                    },
                };
                let who = data
                    .split(|b| *b == 0)
                    .nth(1)
                    .map(|u| String::from_utf8_lossy(u).into_owned())
                    .unwrap_or_default();
                let result = self.service.auth.plain(&data, self.peer.ip()).await;
                return self.logged_in(&tag, &who, result).await;
            }
            CommandBody::Login { .. } | CommandBody::Authenticate { .. } => {
                self.tagged(&tag, "BAD Already logged in");
            }
            _ if !authenticated => self.tagged(&tag, "BAD Log in first"),
            body => return self.authenticated(&tag, body).await,
        }
        Ok(Flow::Continue)
    }

    /// Commands of the authenticated state.
    async fn authenticated(
        &mut self,
        tag: &Tag<'static>,
        body: CommandBody<'static>,
    ) -> io::Result<Flow> {
        let tag = tag.clone();
        let selected = self.selected.is_some();
        match body {
            CommandBody::Namespace => {
                self.line("* NAMESPACE ((\"\" \"/\")) NIL NIL");
                self.tagged(&tag, "OK NAMESPACE completed");
            }
            CommandBody::GetQuotaRoot { mailbox } => {
                let name = self.name_of(&mailbox);
                self.quota(&tag, Some(&name));
            }
            CommandBody::GetQuota { root } => {
                let root: &[u8] = root.as_ref();
                if root.is_empty() {
                    self.quota(&tag, None);
                } else {
                    self.tagged(&tag, "NO [NONEXISTENT] The only quota root is \"\"");
                }
            }
            CommandBody::SetQuota { .. } => {
                self.tagged(&tag, "NO [NOPERM] Quotas are set by the operator");
            }
            CommandBody::Enable { capabilities } => self.enable(&tag, capabilities.as_ref()),
            CommandBody::Select {
                mailbox,
                parameters,
            } => self.open(&tag, &self.name_of(&mailbox), &parameters, false),
            CommandBody::Examine {
                mailbox,
                parameters,
            } => self.open(&tag, &self.name_of(&mailbox), &parameters, true),
            CommandBody::Create { mailbox } => {
                let name = self.name_of(&mailbox);
                let r = self.service.store.create_mailbox(self.account(), &name);
                self.done(&tag, "CREATE", r);
            }
            CommandBody::Delete { mailbox } => {
                let name = self.name_of(&mailbox);
                let r = self.service.store.delete_mailbox(self.account(), &name);
                self.done(&tag, "DELETE", r);
            }
            CommandBody::Rename { from, to } => {
                let (from, to) = (self.name_of(&from), self.name_of(&to));
                let r = self
                    .service
                    .store
                    .rename_mailbox(self.account(), &from, &to);
                self.done(&tag, "RENAME", r);
            }
            CommandBody::Subscribe { mailbox } => {
                let name = self.name_of(&mailbox);
                let r = self
                    .service
                    .store
                    .set_subscribed(self.account(), &name, true);
                self.done(&tag, "SUBSCRIBE", r);
            }
            CommandBody::Unsubscribe { mailbox } => {
                let name = self.name_of(&mailbox);
                let r = self
                    .service
                    .store
                    .set_subscribed(self.account(), &name, false);
                self.done(&tag, "UNSUBSCRIBE", r);
            }
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => self.list(&tag, &reference, &mailbox_wildcard, false),
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => self.list(&tag, &reference, &mailbox_wildcard, true),
            CommandBody::Status {
                mailbox,
                item_names,
            } => {
                self.condstore |= item_names.contains(&StatusDataItemName::HighestModSeq);
                self.status(&tag, &self.name_of(&mailbox), &item_names)
            }
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => self.append(tag, &mailbox, &flags, date, &message),
            CommandBody::Compress { .. } => return self.compress(&tag).await,
            _ if !selected => self.tagged(&tag, "BAD Select a mailbox first"),
            body => return self.in_selected(&tag, body).await,
        }
        Ok(Flow::Continue)
    }

    /// Commands of the selected state.
    async fn in_selected(
        &mut self,
        tag: &Tag<'static>,
        body: CommandBody<'static>,
    ) -> io::Result<Flow> {
        let tag = tag.clone();
        match body {
            CommandBody::Close => {
                if !self.selected().read_only {
                    self.expunge(None, false);
                }
                self.selected = None;
                self.saved.clear();
                self.tagged(&tag, "OK CLOSE completed");
            }
            CommandBody::Unselect => {
                self.selected = None;
                self.saved.clear();
                self.tagged(&tag, "OK UNSELECT completed");
            }
            CommandBody::Expunge => {
                self.refresh(true);
                if self.read_only(&tag) {
                    return Ok(Flow::Continue);
                }
                self.expunge(None, true);
                let code = self.expunged_highest();
                self.tagged(&tag, &format!("OK {code}EXPUNGE completed"));
            }
            CommandBody::ExpungeUid { sequence_set } => {
                self.refresh(true);
                if self.read_only(&tag) {
                    return Ok(Flow::Continue);
                }
                self.expunge(Some(&sequence_set), true);
                let code = self.expunged_highest();
                self.tagged(&tag, &format!("OK {code}UID EXPUNGE completed"));
            }
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => {
                self.refresh(uid);
                let charset_ok = charset.as_ref().is_none_or(|c| {
                    let c = c.as_ref().to_ascii_uppercase();
                    c == "US-ASCII" || c == "UTF-8"
                });
                if !charset_ok {
                    // A failed SEARCH (SAVE) leaves `$` empty (RFC 5182 2.1).
                    if self.search_return.take().is_some_and(|o| o.save) {
                        self.saved.clear();
                    }
                    self.tagged(&tag, "NO [BADCHARSET (US-ASCII UTF-8)] Unknown charset");
                    return Ok(Flow::Continue);
                }
                let key = SearchKey::And(criteria);
                let (found, highest) = self.search(&key, uid);
                self.save_result(&found, uid);
                // RFC 7162 3.1.5: with a MODSEQ key, the highest of what
                // matched ends the answer.
                let highest = highest.filter(|_| condstore::names_modseq(&key));
                self.condstore |= highest.is_some();
                // IMAP4rev2 answers a SEARCH without RETURN as RETURN (ALL).
                let all = esearch::Return {
                    all: true,
                    ..Default::default()
                };
                let line = match self.search_return.take().or(self.rev2.then_some(all)) {
                    // SAVE alone answers nothing but OK.
                    Some(options) if !options.answers() => None,
                    Some(options) => {
                        let answer = esearch::answer(tag.as_ref(), uid, options, &found);
                        Some(match highest {
                            Some(h) => format!("{answer} MODSEQ {h}"),
                            None => answer,
                        })
                    }
                    None => {
                        let list: String = found.iter().map(|n| format!(" {n}")).collect();
                        Some(match highest {
                            Some(h) => format!("* SEARCH{list} (MODSEQ {h})"),
                            None => format!("* SEARCH{list}"),
                        })
                    }
                };
                if let Some(line) = line {
                    self.line(&line);
                }
                self.tagged(&tag, "OK SEARCH completed");
            }
            CommandBody::Sort {
                sort_criteria,
                charset,
                search_criteria,
                uid,
            } => {
                self.refresh(uid);
                let key = SearchKey::And(search_criteria);
                self.sort(&tag, sort_criteria.as_ref(), &charset, key, uid);
            }
            CommandBody::Thread {
                algorithm,
                charset,
                search_criteria,
                uid,
            } => {
                self.refresh(uid);
                let key = SearchKey::And(search_criteria);
                self.thread(&tag, &algorithm, &charset, key, uid);
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => {
                self.refresh(uid);
                let items = match macro_or_item_names {
                    MacroOrMessageDataItemNames::Macro(m) => {
                        let mut items = vec![
                            MessageDataItemName::Flags,
                            MessageDataItemName::InternalDate,
                            MessageDataItemName::Rfc822Size,
                        ];
                        if matches!(m, Macro::All | Macro::Full) {
                            items.push(MessageDataItemName::Envelope);
                        }
                        if matches!(m, Macro::Full) {
                            items.push(MessageDataItemName::Body);
                        }
                        items
                    }
                    MacroOrMessageDataItemNames::MessageDataItemNames(items) => items,
                };
                let mut items = items;
                match self.targets(&sequence_set, uid) {
                    Some(mut targets) => {
                        if let Err(why) = self.fetch_vanished(&modifiers, &sequence_set, uid) {
                            self.tagged(&tag, why);
                            return Ok(Flow::Continue);
                        }
                        self.fetch_modifiers(&modifiers, &mut targets, &mut items);
                        let no = self.fetch(&targets, &items, uid).await?;
                        self.note_pending_expunges();
                        match no {
                            None => self.tagged(&tag, "OK FETCH completed"),
                            Some(no) => self.tagged(&tag, &no),
                        }
                    }
                    None => self.tagged(&tag, "BAD No such message"),
                }
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => {
                self.refresh(uid);
                if self.read_only(&tag) {
                    return Ok(Flow::Continue);
                }
                let Some(mut targets) = self.targets(&sequence_set, uid) else {
                    self.tagged(&tag, "BAD No such message");
                    return Ok(Flow::Continue);
                };
                let modified = self.unchanged_since(&modifiers, &mut targets);
                let stored = self.store(&targets, kind, response, &flags, uid);
                self.note_pending_expunges();
                match stored {
                    Ok(()) if modified.is_empty() => self.tagged(&tag, "OK STORE completed"),
                    Ok(()) => {
                        let view = &self.selected().view;
                        let mut ids: Vec<u32> = modified
                            .iter()
                            .map(|&i| if uid { view[i].uid } else { i as u32 + 1 })
                            .collect();
                        ids.sort_unstable();
                        let set = super::uid_set(&ids);
                        self.tagged(&tag, &format!("OK [MODIFIED {set}] Conditional STORE"));
                    }
                    Err(e) => self.tagged(&tag, &super::store_error(&e)),
                }
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => {
                self.refresh(uid);
                self.copy(&tag, &sequence_set, &self.name_of(&mailbox), uid, false);
            }
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => {
                self.refresh(uid);
                if self.read_only(&tag) {
                    return Ok(Flow::Continue);
                }
                self.copy(&tag, &sequence_set, &self.name_of(&mailbox), uid, true);
            }
            CommandBody::Idle => return self.idle(&tag).await,
            _ => self.tagged(&tag, "BAD Command not supported"),
        }
        Ok(Flow::Continue)
    }
}
