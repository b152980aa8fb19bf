//! The command groups, each an `impl Session` block.
mod auth;
mod catenate;
pub(in crate::imap) mod condstore;
mod copy;
mod fetch;
mod idle;
mod list;
mod mailbox;
pub(in crate::imap) mod qresync;
mod quota;
mod search;
mod searchres;
mod sort;
mod store;
