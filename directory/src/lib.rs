//! The LDAP directory as every fulmar tier reads it, in one place:
//!
//! - [`filter`]: values from clients and operators go into filters through
//!   RFC 4515 escaping and into DNs through RFC 4514 escaping, so no input
//!   changes a filter's or a DN's shape.
//! - [`entry`]: a search result with attribute names matched
//!   case-insensitively (servers echo their own case), and [`home`], the
//!   one routing rule: an account lives on its own `mailHost`, else on its
//!   domain's.
//! - [`pool`]: connections bound as the service DN for searches and
//!   separate ones for the bind check of a user's password, with URL
//!   failover and a timeout on every operation; [`breaker`]: once the
//!   directory has not answered, operations fail at once until a
//!   background probe reconnects.
//! - [`accepted`]: logins the directory accepted lately (keyed hashes),
//!   for while it cannot answer.
//! - `admin` (feature `write`): the entries provisioning adds, changes and
//!   deletes, read with paged searches.
#![forbid(unsafe_code)]

pub mod accepted;
#[cfg(feature = "write")]
pub mod admin;
pub mod breaker;
pub mod entry;
pub mod filter;
pub mod pool;

pub use entry::{Entry, home};
pub use filter::{dn_escape, domain_of, fill, ldap_escape};
pub use pool::{Connection, Pool, Unavailable, check_urls};

/// LDAP result code for a wrong password (or an unknown DN) on bind.
pub const INVALID_CREDENTIALS: u32 = 49;
