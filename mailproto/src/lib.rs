//! Mail protocol pieces that the proxy (as a client of the back-ends),
//! fulmar-maild (as their server) and provisioning would otherwise each
//! write again:
//!
//! - [`imap`]: the client side of an IMAP connection (greeting, commands
//!   with literals, bounded responses with their raw bytes).
//! - [`sasl`]: SASL PLAIN (RFC 4616) messages, read and written, with the
//!   password kept in a `Secret`.
//! - [`xtext`]: RFC 3461's encoding of XCLIENT values.
//! - [`deflate`]: a stream with IMAP COMPRESS=DEFLATE (RFC 4978) on.
//! - [`xclient`]: the XCLIENT command (Postfix's extension, also Dovecot's
//!   for POP3 and IMAP): the line a proxy sends, the attributes a server
//!   reads.
#![forbid(unsafe_code)]

pub mod deflate;
pub mod imap;
pub mod sasl;
pub mod xclient;
pub mod xtext;
