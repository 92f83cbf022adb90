//! TLS pieces of sluice that do not own sockets: the ClientHello peek parser, the proxy
//! CA, the replacement-certificate minter with its cache, and the upstream certificate
//! verifier that classifies failures into the SPEC's error kinds.
//!
//! Must not depend on the proxy's data path or on the policy crate.

pub mod aia;
pub mod ca;
pub mod client_hello;
pub mod crypto;
mod der;
pub mod mint;
pub mod ocsp;
pub mod verify;
