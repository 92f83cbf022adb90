//! Test support: certificates made in the test, origin servers on loopback, the sluice
//! binary started with a configuration in a temporary folder, and the real clients
//! (curl, openssl) driven against it. Every wait is bounded.

// Each test binary uses a different part of the support code.
#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod clients;
pub mod kdc;
pub mod origin;
pub mod pinned;
pub mod raw;
pub mod redis;
pub mod slapd;
pub mod sluice;
pub mod tls_client;

pub use certs::TestPki;
pub use clients::{curl, fetch, openssl_s_client, CurlOutput};
pub use origin::{Origin, OriginOptions};
pub use sluice::Sluice;
