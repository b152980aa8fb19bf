//! The command groups, each an `impl Session` block.
mod auth;
pub(in crate::imap) mod condstore;
mod copy;
mod fetch;
mod idle;
mod mailbox;
mod quota;
mod search;
mod sort;
mod store;
