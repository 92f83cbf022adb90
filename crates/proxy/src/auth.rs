//! Basic proxy authentication (`[auth]`): `Proxy-Authorization: Basic …` checked against
//! the users file's bcrypt or argon2 hashes. Verifying a hash costs milliseconds of CPU,
//! so it runs on the blocking pool and successes are remembered for a while; failures
//! from one client address are answered more and more slowly, to make guessing slow.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};
use sluice_policy::AuthSettings;

/// How long a verified user:password pair is trusted without verifying it again.
const REMEMBER: Duration = Duration::from_secs(600);
/// Entries kept in each table at most; past that the table starts afresh.
const TABLE_LIMIT: usize = 10_000;
/// The delay before answering a failure grows from this, doubling per recent failure.
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(3);

pub struct Authenticator {
    users: HashMap<String, String>,
    realm: String,
    /// SHA-256 of the decoded `user:password` → the user and when it was verified.
    verified: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    /// Recent failures per client address: how many, and the last one.
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Authenticator {
    /// `None` when no users file is configured: no authentication.
    pub fn new(settings: &AuthSettings) -> Option<Self> {
        settings.users_file.as_ref()?;
        Some(Authenticator {
            users: settings.users.iter().cloned().collect(),
            realm: settings.realm.clone(),
            verified: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// The `Proxy-Authenticate` value of a 407.
    pub fn challenge(&self) -> String {
        format!("Basic realm=\"{}\"", self.realm)
    }

    /// The user named by a valid `Proxy-Authorization` header, or `None` (answer 407)
    /// after the failure delay for `client`.
    pub async fn check(&self, header: Option<&[u8]>, client: IpAddr) -> Option<String> {
        let user = match header.and_then(basic_credentials) {
            Some(credentials) => self.verify(credentials).await,
            None => None,
        };
        match &user {
            Some(_) => {
                lock(&self.failures).remove(&client);
            }
            None => {
                // A request without credentials is the normal first step, not a guess.
                if header.is_some() {
                    tokio::time::sleep(self.note_failure(client)).await;
                }
            }
        }
        user
    }

    async fn verify(&self, credentials: Vec<u8>) -> Option<String> {
        let key: [u8; 32] = Sha256::digest(&credentials).into();
        if let Some((user, at)) = lock(&self.verified).get(&key) {
            if at.elapsed() < REMEMBER {
                return Some(user.clone());
            }
        }
        let text = String::from_utf8(credentials).ok()?;
        let (user, password) = text.split_once(':')?;
        let hash = self.users.get(user)?.clone();
        let password = password.to_string();
        let matched = tokio::task::spawn_blocking(move || password_matches(&password, &hash))
            .await
            .unwrap_or(false);
        if !matched {
            return None;
        }
        let mut verified = lock(&self.verified);
        if verified.len() >= TABLE_LIMIT {
            verified.clear();
        }
        verified.insert(key, (user.to_string(), Instant::now()));
        Some(user.to_string())
    }

    /// Count a failure of `client` and say how long to wait before answering.
    fn note_failure(&self, client: IpAddr) -> Duration {
        let mut failures = lock(&self.failures);
        if failures.len() >= TABLE_LIMIT {
            failures.retain(|_, (_, last)| last.elapsed() < REMEMBER);
        }
        let entry = failures.entry(client).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= REMEMBER {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
        failure_delay(entry.0)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The delay before answering the `n`-th recent failure: nothing for the first (a typo),
/// then 100 ms doubling up to 3 s.
fn failure_delay(n: u32) -> Duration {
    if n <= 1 {
        return Duration::ZERO;
    }
    FIRST_DELAY
        .saturating_mul(1 << (n - 2).min(16))
        .min(MAX_DELAY)
}

/// The decoded `user:password` of a `Basic` header value.
fn basic_credentials(value: &[u8]) -> Option<Vec<u8>> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
}

/// bcrypt (`$2a$`, `$2b$`, `$2y$`) or argon2 (PHC string).
fn password_matches(password: &str, hash: &str) -> bool {
    if hash.starts_with("$argon2") {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        PasswordHash::new(hash).is_ok_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    } else {
        bcrypt::verify(password, hash).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_decoded() {
        assert_eq!(
            basic_credentials(b"Basic YWxpY2U6c2VjcmV0"),
            Some(b"alice:secret".to_vec())
        );
        assert_eq!(
            basic_credentials(b"basic  YWxpY2U6c2VjcmV0 "),
            Some(b"alice:secret".to_vec())
        );
        assert_eq!(basic_credentials(b"Bearer abc"), None);
        assert_eq!(basic_credentials(b"Basic !!!"), None);
    }

    #[test]
    fn failures_are_answered_more_and_more_slowly() {
        assert_eq!(failure_delay(1), Duration::ZERO);
        assert_eq!(failure_delay(2), Duration::from_millis(100));
        assert_eq!(failure_delay(3), Duration::from_millis(200));
        assert_eq!(failure_delay(40), MAX_DELAY);
    }

    #[test]
    fn bcrypt_and_argon2_hashes_verify() {
        let bcrypt_hash = bcrypt::hash("secret", 4).unwrap();
        assert!(password_matches("secret", &bcrypt_hash));
        assert!(!password_matches("Secret", &bcrypt_hash));
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).unwrap();
        let argon = argon2::Argon2::default()
            .hash_password(b"hunter2", &salt)
            .unwrap()
            .to_string();
        assert!(password_matches("hunter2", &argon));
        assert!(!password_matches("hunter3", &argon));
    }
}
