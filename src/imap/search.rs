//! The text search keys of SEARCH (RFC 3501 6.4.4) and the sent date are answered by
//! [`crate::mail::text::Text`], which the webmail's search shares; the rules (Dovecot
//! 2.3's) are documented there. `fetch` evaluates the keys with it.

pub use crate::mail::text::Text;
