//! Inspection engines for sluice (SPEC §3 steps 2–3 and the block page): the anti-virus
//! clients, the spooling of bodies while they are scanned, and block-page templates.
//!
//! - [`Scanner`] is what the data path calls: built from `[anti_virus]`, it scans a
//!   response ([`Scanner::scan_response`]) or an upload ([`Scanner::scan_request`]) held
//!   in a [`SpooledBody`] and returns a [`ScanOutcome`]; [`AvVerdict::decide`] applies
//!   `on_oversize` / `on_error` to it.
//! - [`icap`] is the ICAP client (RFC 3507) and its pure response parser; [`clamd`] the
//!   ClamAV daemon client (`INSTREAM`).
//! - [`spool`] holds bodies: in memory up to a threshold and a shared budget, then in an
//!   anonymous temporary file, readable again for forwarding.
//! - [`decode`] undoes a body's `Content-Encoding` for the scan (the client still gets
//!   the encoded bytes).
//! - [`render_template`] fills a custom block-page template.
//!
//! Anti-phishing lists are not here: they are pure and loaded with the configuration,
//! so they live in the policy crate (`sluice_policy::PhishingList`).
//!
//! This crate owns the sockets to the engines and their timers, and must not depend on
//! the proxy crate or know about client connections: it gets HTTP heads and a body, and
//! answers with an outcome. The parsers ([`icap::parse`], [`clamd::parse_reply`]) do no
//! I/O.

pub mod clamd;
pub mod decode;
pub mod engine;
pub mod icap;
pub mod scan;
pub mod spool;
mod template;

pub use engine::{AvVerdict, BlockCause, Scanner};
pub use scan::{ScanError, ScanOutcome, UNNAMED_THREAT};
pub use spool::{SpoolError, SpoolReader, SpoolWriter, SpooledBody, Spooler};
pub use template::{render_template, BlockPageFields};
