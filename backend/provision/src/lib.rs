//! Provisioning: which instance a new account lives on, and the directory
//! entry and mailbox that make it so.
//!
//! - [`config`]: `/etc/fulmar/provision.toml`; [`placement`]: random,
//!   weighted, least used, domain based.
//! - [`directory`]: account and domain entries in LDAP; [`address`]:
//!   address checks and password hashes.
//! - [`imap`], [`mailbox`]: an instance's mailboxes over IMAP as master
//!   user; [`mover`]: `account move`.
//! - [`import`]: CSV and LDIF; [`accounts`]: the operations with their
//!   rollbacks (the `fulmar account|domain` verbs in fulmar-cli);
//!   [`error`]: what they fail with.
#![forbid(unsafe_code)]
pub mod accounts;
pub mod address;
pub mod config;
pub mod directory;
pub mod error;
pub mod imap;
pub mod import;
pub mod mailbox;
pub mod mover;
pub mod placement;
