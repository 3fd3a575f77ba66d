//! The Internet message format, for every part of clusterd that reads or writes mail:
//! IMAP (ENVELOPE, BODYSTRUCTURE and body sections are drawn from the MIME tree and
//! header fields; SEARCH matches [`text::Text`]), the webmail (its search uses the
//! same [`text::Text`] so it finds what IMAP finds; compose builds with [`build`] and
//! [`address`]; list and reader use [`subject`] and [`size`]; form bodies are decoded
//! with [`encoding`]), SMTP (its `Received:` trace field, and the `Message-ID:` and
//! `Date:` a submission lacks, [`submission`]), the HTTP server (request paths are
//! percent-decoded with [`encoding`]) and the outbound queue (its delivery status
//! notifications are built by [`dsn`]).
//!
//! Pure functions of bytes and strings: no I/O (only the trace and origination
//! fields read the clock), and nothing here imports another module of the crate, so every front-end
//! can depend on it.
//!
//! Files: `mime` (the MIME entity tree), `header` (fields, unfolding, MIME parameters),
//! `lexer` (RFC 5322/2045 tokens), `address` (address lists), `encoding` (RFC 2047,
//! quoted-printable, base64, charsets, percent-decoding), `date` (the Date field),
//! `text` (the searchable text) and `normalize` (its Unicode mapping), `build`
//! (writing messages), `dsn` (delivery status notifications, RFC 3464), `subject`
//! (reply and forward prefixes), `size` (sizes for people), `submission` (the
//! origination fields a submission server adds).

pub mod address;
pub mod build;
pub mod date;
pub mod dsn;
pub mod encoding;
pub mod header;
pub mod lexer;
pub mod mime;
pub mod normalize;
pub mod size;
pub mod subject;
pub mod submission;
pub mod text;
