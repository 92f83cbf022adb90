//! A build without the `kerberos` feature: there is no acceptor, and asking for one says
//! how to build a sluice that has it.

use std::convert::Infallible;

use sluice_policy::KerberosSettings;

/// No value of this type exists: Negotiate is not in this build.
pub enum Acceptor {}

impl Acceptor {
    /// Always an error naming the missing build feature.
    pub fn new(_settings: &KerberosSettings) -> std::io::Result<Acceptor> {
        Err(std::io::Error::other(
            "auth.kerberos_keytab: this sluice was built without Negotiate/Kerberos; \
             build it with `cargo build --release --features kerberos` \
             (Debian: apt-get install libkrb5-dev libclang-dev)",
        ))
    }

    /// Unreachable: there is no acceptor to ask.
    pub async fn accept(&self, _token: Vec<u8>) -> Result<String, Infallible> {
        match *self {}
    }
}
