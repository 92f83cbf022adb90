//! The acceptor over the system's GSSAPI (MIT krb5).
//!
//! The acceptor credential is acquired once, with `gss_acquire_cred_from` and a credential
//! store naming the keytab, so that no process-global setting (`KRB5_KTNAME`) is needed.
//! GSSAPI calls block (they read the keytab and the replay cache), so each runs on the
//! blocking pool, at most [`MAX_ACCEPTING`] at once, each within [`ACCEPT_TIMEOUT`]. A
//! replayed ticket is refused by the replay cache; a ticket for another principal, a
//! garbage token, or a negotiation that would need another round (NTLM) is refused.
//!
//! The one module of sluice with `unsafe`: libgssapi wraps neither
//! `gss_acquire_cred_from` nor the import of a name for it.

#![allow(unsafe_code)]

use std::ffi::{c_void, CString};
use std::path::Path;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use libgssapi::context::{SecurityContext, ServerCtx};
use libgssapi::credential::Cred;
use libgssapi::oid::GSS_NT_KRB5_PRINCIPAL;
use libgssapi_sys::{
    gss_OID_desc, gss_acquire_cred_from, gss_buffer_desc, gss_cred_id_t, gss_import_name,
    gss_key_value_element_desc, gss_key_value_set_desc, gss_name_t, gss_release_name, OM_uint32,
    GSS_C_ACCEPT, GSS_S_COMPLETE,
};
use sluice_policy::KerberosSettings;
use tokio::sync::Semaphore;

/// Tickets verified at once; more wait for a place (their own client's bounds apply
/// first, in `auth.rs`).
pub const MAX_ACCEPTING: usize = 4;
/// Limit of one verification, including the wait for a place.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// Not a ticket for us: wrong principal, garbage, replayed, expired, or more rounds.
    Invalid,
    /// No place to verify it within the timeout.
    Busy,
}

/// The acceptor of Negotiate tokens for one service principal.
pub struct Acceptor {
    cred: Cred,
    slots: Arc<Semaphore>,
}

impl Acceptor {
    /// Acquire the acceptor credential of `settings.principal` from `settings.keytab`;
    /// an error names what GSSAPI said.
    pub fn new(settings: &KerberosSettings) -> std::io::Result<Acceptor> {
        let cred = acquire(&settings.keytab, &settings.principal).map_err(|e| {
            std::io::Error::other(format!(
                "auth.kerberos_keytab: no key for {} in {}: {e}",
                settings.principal,
                settings.keytab.display()
            ))
        })?;
        Ok(Acceptor {
            cred,
            slots: Arc::new(Semaphore::new(MAX_ACCEPTING)),
        })
    }

    /// Verify one Negotiate token; the client principal (`alice@CORP.EXAMPLE`).
    pub async fn accept(&self, token: Vec<u8>) -> Result<String, Rejected> {
        let cred = self.cred.clone();
        let slots = Arc::clone(&self.slots);
        let verified = async move {
            let permit = slots.acquire_owned().await.map_err(|_| Rejected::Busy)?;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                accept_token(cred, &token)
            })
            .await
            .unwrap_or(Err(Rejected::Invalid))
        };
        // On a timeout the blocking call runs on to its end, holding its place.
        tokio::time::timeout(ACCEPT_TIMEOUT, verified)
            .await
            .unwrap_or(Err(Rejected::Busy))
    }
}

/// One `gss_accept_sec_context` on a new context: complete at once (a Kerberos AP-REQ,
/// bare or in SPNEGO) or refused.
fn accept_token(cred: Cred, token: &[u8]) -> Result<String, Rejected> {
    let mut context = ServerCtx::new(Some(cred));
    let step = context.step(token, None);
    if let Err(e) = &step {
        tracing::debug!(error = %e, "Negotiate token refused");
    }
    // Another round (an NTLM challenge, a mechanism renegotiation) is not offered.
    if step.is_err() || !context.is_complete() {
        return Err(Rejected::Invalid);
    }
    let source = context.source_name().map_err(|_| Rejected::Invalid)?;
    let principal = source.to_string();
    if principal.is_empty() {
        return Err(Rejected::Invalid);
    }
    Ok(principal)
}

/// `gss_acquire_cred_from` for accepting as `principal`, with the keytab as the
/// credential store.
fn acquire(keytab: &Path, principal: &str) -> Result<Cred, String> {
    let keytab = CString::new(format!("FILE:{}", keytab.display()))
        .map_err(|_| "a NUL in the keytab path".to_string())?;
    let name = import_principal(principal)?;
    let key = c"keytab";
    let mut element = gss_key_value_element_desc {
        key: key.as_ptr(),
        value: keytab.as_ptr(),
    };
    let store = gss_key_value_set_desc {
        count: 1,
        elements: &mut element,
    };
    let mut minor: OM_uint32 = 0;
    let mut cred: gss_cred_id_t = ptr::null_mut();
    // SAFETY: every pointer is valid for the call: `name` (released below), `store` and
    // the strings it points to (alive until the end of this function), and the outputs.
    let major = unsafe {
        gss_acquire_cred_from(
            &mut minor,
            name.0,
            0,
            ptr::null_mut(),
            GSS_C_ACCEPT as i32,
            &store,
            &mut cred,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if major != GSS_S_COMPLETE {
        return Err(libgssapi::error::Error {
            major: libgssapi::error::MajorFlags::from_bits_retain(major),
            minor,
        }
        .to_string());
    }
    // SAFETY: a credential just acquired, owned from here on by the `Cred`.
    Ok(unsafe { Cred::from_c(cred) })
}

/// A GSSAPI name, released when dropped.
struct ImportedName(gss_name_t);

impl Drop for ImportedName {
    fn drop(&mut self) {
        let mut minor: OM_uint32 = 0;
        // SAFETY: a name from gss_import_name, released once.
        unsafe { gss_release_name(&mut minor, &mut self.0) };
    }
}

/// `principal` as a Kerberos principal name (`HTTP/proxy.corp.example@CORP.EXAMPLE`).
fn import_principal(principal: &str) -> Result<ImportedName, String> {
    let oid: &[u8] = &GSS_NT_KRB5_PRINCIPAL;
    let mut oid = gss_OID_desc {
        length: oid.len() as OM_uint32,
        elements: oid.as_ptr() as *mut c_void,
    };
    let mut buffer = gss_buffer_desc {
        length: principal.len(),
        value: principal.as_ptr() as *mut c_void,
    };
    let mut minor: OM_uint32 = 0;
    let mut name: gss_name_t = ptr::null_mut();
    // SAFETY: the buffer and OID point to live memory the call only reads.
    let major = unsafe { gss_import_name(&mut minor, &mut buffer, &mut oid, &mut name) };
    if major != GSS_S_COMPLETE {
        return Err(format!("{principal} is not a Kerberos principal name"));
    }
    Ok(ImportedName(name))
}
