//! Negotiate (SPNEGO/Kerberos) tickets verified with the keytab of `auth.kerberos_keytab`
//! (SPEC §10).
//!
//! Verifying needs the system's GSSAPI, and building against it needs its headers and
//! libclang (Debian: `libkrb5-dev libclang-dev`). So that `cargo build` works on a machine
//! without them, Negotiate is the cargo feature `kerberos` (`scripts/test` builds with
//! it); without it an `auth.kerberos_keytab` is refused when sluice starts, saying how to
//! build one that has it.

#[cfg(not(feature = "kerberos"))]
mod absent;
#[cfg(feature = "kerberos")]
mod gss;

#[cfg(not(feature = "kerberos"))]
pub use absent::Acceptor;
#[cfg(feature = "kerberos")]
pub use gss::Acceptor;

/// A Negotiate token larger than this is refused unread: a Kerberos ticket with a
/// large PAC is a few KiB, and a request head is bounded anyway.
pub const MAX_TOKEN: usize = 64 * 1024;
