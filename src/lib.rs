//! clusterd: a two-node high-availability appliance serving DNS, web, webmail, SMTP and
//! IMAP from one binary. ARCHITECTURE.md in the repository root is the design: the
//! modules, what each owns and who calls it, the data flows and the replication rules;
//! README.md is the way in.

pub mod authlimit;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod control;
pub mod ctx;
pub mod dkim;
pub mod dns;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod imap;
pub mod mail;
pub mod monitor;
pub mod node;
pub mod outbound;
pub mod perip;
pub mod publish;
pub mod replication;
pub mod smtp;
pub mod store;
pub mod supervise;
pub mod tls;
pub mod webmail;
