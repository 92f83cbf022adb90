//! Basic credentials checked against an LDAP directory (SPEC §10): the service account
//! finds the user's entry (the name escaped as RFC 4515 requires), then a bind as that
//! entry with the given password decides.
//!
//! Connections are pooled (at most [`MAX_CONNECTIONS`], idle ones reused) and every
//! operation has a timeout; a directory that cannot be reached or answers garbage makes
//! the check [`Check::Unavailable`], never a success.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sluice_policy::LdapSettings;
use tokio::sync::Semaphore;

/// Connections to the directory at once; more checks wait for one.
pub const MAX_CONNECTIONS: usize = 8;
/// Limit of each connect, bind and search, and of the wait for a connection.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Active Directory's LDAP_MATCHING_RULE_IN_CHAIN: membership through nested groups.
const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";
/// LDAP result code of a bind with a wrong password (or an unknown DN).
const INVALID_CREDENTIALS: u32 = 49;
/// The RDN of the entry an unknown user's password is tried against, under
/// `ldap_user_base`: one no directory has, so the bind fails as a wrong password does.
const NO_SUCH_ENTRY: &str = "cn=sluice-no-such-user-6f1d0c8e";

/// What the directory says of a user name and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The right password; the DNs of the user's groups.
    Valid(Vec<String>),
    Invalid,
    /// The directory could not be asked: not reached, timed out, or an error answer.
    Unavailable,
}

/// What the directory is asked, on one connection.
enum Question<'a> {
    /// Whether this is the user's password (and then its groups).
    Password { user: &'a str, password: &'a str },
    /// The user's groups, as the service account.
    Groups { user: &'a str },
}

enum Answer {
    Password(Check),
    /// `None`: no single entry for the user.
    Groups(Option<Vec<String>>),
}

pub struct Directory {
    settings: LdapSettings,
    tls: Arc<ClientConfig>,
    /// Connections not in use, bound as whoever used them last.
    idle: Mutex<Vec<Ldap>>,
    /// Permits for [`MAX_CONNECTIONS`] connections in use.
    slots: Semaphore,
}

impl Directory {
    pub fn new(settings: &LdapSettings) -> std::io::Result<Directory> {
        Ok(Directory {
            settings: settings.clone(),
            tls: Arc::new(tls_config(settings.ca.as_deref())?),
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(MAX_CONNECTIONS),
        })
    }

    /// Whether `password` is `user`'s. An empty password is refused before any bind: an
    /// empty-password bind is an anonymous bind, and would succeed.
    pub async fn verify(&self, user: &str, password: &str) -> Check {
        if user.is_empty() || password.is_empty() {
            return Check::Invalid;
        }
        match self.ask(Question::Password { user, password }).await {
            Ok(Answer::Password(check)) => check,
            Ok(Answer::Groups(_)) | Err(_) => Check::Unavailable,
        }
    }

    /// The DNs of `user`'s groups, looked up as the service account (for `explain`).
    pub async fn groups_of(&self, user: &str) -> Result<Vec<String>, String> {
        self.member_groups(user)
            .await?
            .ok_or_else(|| format!("no single directory entry for `{user}`"))
    }

    /// The DNs of `user`'s groups, looked up as the service account; `None` when the
    /// directory has no single entry for it; an error when it cannot be asked.
    pub async fn member_groups(&self, user: &str) -> Result<Option<Vec<String>>, String> {
        match self.ask(Question::Groups { user }).await? {
            Answer::Groups(groups) => Ok(groups),
            Answer::Password(_) => Err("the directory answered another question".to_string()),
        }
    }

    /// Ask the directory on one of at most [`MAX_CONNECTIONS`] connections: an idle
    /// pooled one first (the server may have closed it since: then one retry on a fresh
    /// connection), and the connection goes back to the pool after a good answer.
    async fn ask(&self, question: Question<'_>) -> Result<Answer, String> {
        let Ok(Ok(_permit)) = tokio::time::timeout(OPERATION_TIMEOUT, self.slots.acquire()).await
        else {
            return Err("the directory is busy".to_string());
        };
        if let Some(mut ldap) = self.pooled() {
            if let Ok(answer) = self.answer_on(&mut ldap, &question).await {
                self.put_back(ldap);
                return Ok(answer);
            }
        }
        let result = match self.connect().await {
            Ok(mut ldap) => self
                .answer_on(&mut ldap, &question)
                .await
                .map(|answer| (answer, ldap)),
            Err(e) => Err(e),
        };
        match result {
            Ok((answer, ldap)) => {
                self.put_back(ldap);
                Ok(answer)
            }
            Err(e) => {
                tracing::warn!(url = %self.settings.url, error = %e, "LDAP directory unavailable");
                Err(e.to_string())
            }
        }
    }

    async fn answer_on(
        &self,
        ldap: &mut Ldap,
        question: &Question<'_>,
    ) -> ldap3::result::Result<Answer> {
        match *question {
            Question::Password { user, password } => self
                .verify_on(ldap, user, password)
                .await
                .map(Answer::Password),
            Question::Groups { user } => {
                let groups = match self.find(ldap, user).await? {
                    Some(entry) => Some(self.groups(ldap, entry).await?),
                    None => None,
                };
                Ok(Answer::Groups(groups))
            }
        }
    }

    /// Bind as the service account and find `user`'s one entry (`None`: none or several).
    async fn find(
        &self,
        ldap: &mut Ldap,
        user: &str,
    ) -> ldap3::result::Result<Option<SearchEntry>> {
        let settings = &self.settings;
        ldap.with_timeout(OPERATION_TIMEOUT)
            .simple_bind(&settings.bind_dn, &settings.bind_password.0)
            .await?
            .success()?;
        let filter = settings.user_filter.replace("{user}", &ldap_escape(user));
        let (entries, _) = ldap
            .with_timeout(OPERATION_TIMEOUT)
            .search(
                &settings.user_base,
                Scope::Subtree,
                &filter,
                vec!["memberOf"],
            )
            .await?
            .success()?;
        Ok(<[_; 1]>::try_from(entries)
            .ok()
            .map(|[entry]| SearchEntry::construct(entry)))
    }

    /// Find `user`'s entry as the service account, then bind as it.
    async fn verify_on(
        &self,
        ldap: &mut Ldap,
        user: &str,
        password: &str,
    ) -> ldap3::result::Result<Check> {
        // No entry, or several: nobody to bind as. A bind is made all the same, as an
        // entry that does not exist, so that an unknown name costs the directory (and
        // the client's wait) what a wrong password does: no user-enumeration oracle.
        let Some(entry) = self.find(ldap, user).await? else {
            let dn = format!("{NO_SUCH_ENTRY},{}", self.settings.user_base);
            ldap.with_timeout(OPERATION_TIMEOUT)
                .simple_bind(&dn, password)
                .await?;
            return Ok(Check::Invalid);
        };
        let bind = ldap
            .with_timeout(OPERATION_TIMEOUT)
            .simple_bind(&entry.dn, password)
            .await?;
        match bind.rc {
            0 => Ok(Check::Valid(self.groups(ldap, entry).await?)),
            INVALID_CREDENTIALS => Ok(Check::Invalid),
            _ => Err(bind
                .success()
                .err()
                .unwrap_or(ldap3::LdapError::EndOfStream)),
        }
    }

    /// The DNs of the groups of the user at `entry`: its `memberOf` values, and the
    /// entries under `ldap_group_base` whose `member` or `uniqueMember` is the user
    /// (directly, or through nested groups where the directory knows Active Directory's
    /// LDAP_MATCHING_RULE_IN_CHAIN; others ignore that component of the filter).
    async fn groups(
        &self,
        ldap: &mut Ldap,
        entry: SearchEntry,
    ) -> ldap3::result::Result<Vec<String>> {
        let settings = &self.settings;
        let mut groups = entry.attrs.get("memberOf").cloned().unwrap_or_default();
        if settings.group_base.is_empty() {
            return Ok(groups);
        }
        ldap.with_timeout(OPERATION_TIMEOUT)
            .simple_bind(&settings.bind_dn, &settings.bind_password.0)
            .await?
            .success()?;
        let dn = ldap_escape(&entry.dn);
        let filter = format!("(|(member={dn})(uniqueMember={dn})(member:{IN_CHAIN}:={dn}))");
        let (entries, _) = ldap
            .with_timeout(OPERATION_TIMEOUT)
            .search(&settings.group_base, Scope::Subtree, &filter, vec!["1.1"])
            .await?
            .success()?;
        for group in entries {
            let dn = SearchEntry::construct(group).dn;
            if !groups.iter().any(|g| g.eq_ignore_ascii_case(&dn)) {
                groups.push(dn);
            }
        }
        Ok(groups)
    }

    fn pooled(&self) -> Option<Ldap> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(mut ldap) = idle.pop() {
            if !ldap.is_closed() {
                return Some(ldap);
            }
        }
        None
    }

    fn put_back(&self, ldap: Ldap) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_CONNECTIONS {
            idle.push(ldap);
        }
    }

    async fn connect(&self) -> ldap3::result::Result<Ldap> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(OPERATION_TIMEOUT)
            .set_starttls(self.settings.starttls)
            .set_config(Arc::clone(&self.tls));
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.settings.url).await?;
        ldap3::drive!(conn);
        Ok(ldap)
    }
}

/// The system roots and the certificates of `ca` (`auth.ldap_ca`).
fn tls_config(ca: Option<&Path>) -> std::io::Result<ClientConfig> {
    let invalid = |e: &dyn std::fmt::Display| std::io::Error::other(format!("auth.ldap_ca: {e}"));
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is no reason to refuse the others.
        let _ = roots.add(cert);
    }
    if let Some(ca) = ca {
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| invalid(&e))? {
            roots
                .add(cert.map_err(|e| invalid(&e))?)
                .map_err(|e| invalid(&e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4515: a user name cannot widen the filter it is put in.
    #[test]
    fn user_names_are_escaped_in_filters() {
        assert_eq!(ldap_escape("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(ldap_escape("a\\b\0"), "a\\5cb\\00");
    }
}
