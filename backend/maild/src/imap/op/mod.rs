//! The command groups, each an `impl Session` block.
mod auth;
mod copy;
mod fetch;
mod idle;
mod mailbox;
mod quota;
mod search;
mod sort;
mod store;
