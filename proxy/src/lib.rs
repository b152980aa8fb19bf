//! Front-end tier: stateless IMAP, POP3 and SMTP proxies. Each login is
//! checked against LDAP on the proxy and the session opened on the
//! account's home back-end instance (`mailHost`).
#![forbid(unsafe_code)]
pub mod admin;
pub mod config;
pub mod conn;
pub mod connections;
pub mod directory;
pub mod imap;
pub mod liveness;
pub mod metrics;
pub mod penalty;
pub mod pop3;
pub mod proxy_protocol;
pub mod registry;
pub mod relay;
pub mod server;
pub mod session;
pub mod smtp;
pub mod stream;
