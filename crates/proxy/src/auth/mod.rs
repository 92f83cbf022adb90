//! Proxy authentication (`[auth]`): `Proxy-Authorization: Negotiate …` (a Kerberos
//! ticket, [`crate::auth::kerberos`]), or `Basic …` checked against the users file's bcrypt or
//! argon2 hashes, then (for a user not in the file) against the LDAP directory
//! ([`crate::auth::ldap`]). A Kerberos user's groups come from the directory, looked up by its
//! short name.
//!
//! Verifying a hash costs milliseconds of CPU and, for argon2, megabytes of memory, so
//! password checks must not be a way to exhaust the process (SPEC §9):
//! - at most [`hash_slots`] hashes run at once (on the blocking pool); at most
//!   [`MAX_WAITING`] checks wait for a slot, and a client address has at most
//!   [`MAX_PENDING_PER_CLIENT`] checks waiting or running: past either, the answer is 407
//!   at once, without a hash, and counts as a failure;
//! - failures from one client address slow its next checks *before* the hash is
//!   computed (nothing for the first, then 100 ms doubling up to 3 s); a refused
//!   Negotiate token is such a failure too, and a ticket is verified within the same
//!   per-address bound, on a few blocking threads (`kerberos`);
//! - an unknown user costs what a known one does: the password is verified against a
//!   dummy hash with the parameters of the first user's, and refused whatever it gives;
//! - a verified user is remembered for `auth.cache_ttl` with a salted hash of its
//!   password (never the password), so a right password costs one hash (or directory
//!   check) per period, and is still accepted while the directory is down; a directory
//!   that cannot be asked about anyone else is [`Verdict::Unavailable`] (503);
//! - in a fleet (`[cluster]`), failures are counted per address over every node too,
//!   and the slower of the local and the fleet's count applies, so that spreading
//!   guesses over the nodes behind a load balancer does not divide the delay;
//! - both tables are bounded caches ([`TABLE_LIMIT`] entries, least recently used
//!   evicted); no operation scans them.

pub(crate) mod kerberos;
pub mod ldap;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use sluice_policy::{principal_short_name, AuthSettings};
use tokio::sync::Semaphore;

use self::kerberos::Acceptor;
use self::ldap::{Check, Directory};
use crate::cluster::{Cluster, Event};

/// The answer to a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated as this user, member of these groups (DNs; none without LDAP).
    User(String, Vec<String>),
    /// No or wrong credentials: 407.
    Refused,
    /// The directory could not be asked: 503 `auth_unavailable`.
    Unavailable,
}

/// A verified user's password, as SHA-256 of a random salt and the password, and its
/// groups.
#[derive(Clone)]
struct Remembered {
    salt: [u8; 16],
    hash: [u8; 32],
    groups: Vec<String>,
}

impl Remembered {
    fn new(password: &str, groups: Vec<String>) -> Self {
        let salt = rand::random::<[u8; 16]>();
        Remembered {
            salt,
            hash: salted(&salt, password),
            groups,
        }
    }

    fn matches(&self, password: &str) -> bool {
        salted(&self.salt, password) == self.hash
    }
}

fn salted(salt: &[u8; 16], password: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(salt)
        .chain_update(password.as_bytes())
        .finalize()
        .into()
}

/// How long an address's failures are remembered after its last one.
const REMEMBER: Duration = Duration::from_secs(600);
/// Entries kept in each table at most; the least recently used go first.
const TABLE_LIMIT: u64 = 10_000;
/// The delay before checking grows from this, doubling per recent failure.
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(3);
/// Checks waiting for a hash slot, over all clients; more are refused at once.
pub const MAX_WAITING: usize = 128;
/// Checks of one client address waiting (in its delay or for a slot) or hashing; more
/// are refused at once. Above the handful of connections a browser opens together.
pub const MAX_PENDING_PER_CLIENT: u32 = 8;

/// Hashes that may run at once: one per core.
pub fn hash_slots() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Verifies a password against a hash (the real one: [`password_matches`]).
type HashCheck = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

pub struct Authenticator {
    users: HashMap<String, String>,
    /// Verified in place of an unknown user's hash, so that it costs the same.
    dummy: String,
    realm: String,
    check_hash: HashCheck,
    /// Permits to run a hash; a permit is held until the hash ends, even if the client
    /// has gone.
    slots: Arc<Semaphore>,
    /// Checks waiting for a permit of `slots`.
    waiting: Arc<AtomicUsize>,
    /// The LDAP directory (`auth.ldap_url`), asked about users not in the file.
    directory: Option<Directory>,
    /// Basic credentials are checked (a users file or a directory).
    basic: bool,
    /// Negotiate tickets are verified (`auth.kerberos_keytab`).
    negotiate: Option<Acceptor>,
    /// A Kerberos user's groups, by principal, for `auth.cache_ttl`.
    principals: Cache<String, Vec<String>>,
    /// Verified users and their passwords, salted and hashed, for `auth.cache_ttl`.
    verified: Cache<String, Remembered>,
    /// Per client address: recent failures and checks in progress.
    clients: Cache<IpAddr, Arc<ClientState>>,
    /// The fleet, told each failure and success; its failure counts read locally.
    fleet: Cluster,
}

/// What is known of one client address.
#[derive(Default)]
struct ClientState {
    /// Recent failures and when the last was.
    failures: Mutex<(u32, Option<Instant>)>,
    /// Checks in progress (delayed, waiting or hashing).
    pending: AtomicU32,
}

impl ClientState {
    /// Recent failures, forgetting them [`REMEMBER`] after the last.
    fn recent_failures(&self) -> u32 {
        match *lock(&self.failures) {
            (n, Some(last)) if last.elapsed() < REMEMBER => n,
            _ => 0,
        }
    }

    fn note_failure(&self) {
        let mut failures = lock(&self.failures);
        let recent = match *failures {
            (n, Some(last)) if last.elapsed() < REMEMBER => n,
            _ => 0,
        };
        *failures = (recent.saturating_add(1), Some(Instant::now()));
    }
}

/// One check in progress of a client; counted in `pending` until dropped.
struct Pending(Arc<ClientState>);

impl Pending {
    fn enter(state: Arc<ClientState>) -> Option<Pending> {
        let taken = state
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_PENDING_PER_CLIENT).then_some(n + 1)
            })
            .is_ok();
        // Made only when counted: a `Pending` dropped uncounted would free a place.
        taken.then(|| Pending(state))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A check of a client address let through its back-off; counted among the address's
/// checks in progress until dropped.
struct Attempt {
    client: IpAddr,
    /// The address's recent failures when the check began.
    recent: u32,
    pending: Pending,
}

/// One check waiting for a hash slot; counted in `waiting` until dropped.
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Authenticator {
    /// `None` when neither a users file, a directory nor a keytab is configured: no
    /// authentication.
    pub fn new(settings: &AuthSettings) -> std::io::Result<Option<Self>> {
        let directory = settings.ldap.as_ref().map(Directory::new).transpose()?;
        let negotiate = settings.kerberos.as_ref().map(Acceptor::new).transpose()?;
        let authenticator = Self::with(
            settings,
            directory,
            hash_slots(),
            Arc::new(password_matches),
        );
        Ok(authenticator.map(|a| Authenticator { negotiate, ..a }))
    }

    /// With `slots` hashes at once, each verified by `check_hash`.
    fn with(
        settings: &AuthSettings,
        directory: Option<Directory>,
        slots: usize,
        check_hash: HashCheck,
    ) -> Option<Self> {
        let basic = settings.users_file.is_some() || directory.is_some();
        if !basic && settings.kerberos.is_none() {
            return None;
        }
        let first = settings.users.first().map(|(_, hash)| hash.as_str());
        Some(Authenticator {
            users: settings.users.iter().cloned().collect(),
            dummy: first.and_then(dummy_like).unwrap_or_else(default_dummy),
            realm: settings.realm.clone(),
            check_hash,
            slots: Arc::new(Semaphore::new(slots.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            directory,
            basic,
            negotiate: None,
            principals: Cache::builder()
                .max_capacity(TABLE_LIMIT)
                .time_to_live(settings.cache_ttl)
                .build(),
            verified: Cache::builder()
                .max_capacity(TABLE_LIMIT)
                .time_to_live(settings.cache_ttl)
                .build(),
            clients: Cache::builder()
                .max_capacity(TABLE_LIMIT)
                .time_to_idle(REMEMBER)
                .build(),
            fleet: Cluster::alone(),
        })
    }

    /// Sharing the back-off with the fleet.
    pub fn in_fleet(mut self, fleet: Cluster) -> Self {
        self.fleet = fleet;
        self
    }

    /// A failure of `client`, here and over the fleet.
    fn failed(&self, client: IpAddr, state: &ClientState) {
        state.note_failure();
        self.fleet.tell(Event::AuthFailed(client));
    }

    /// Begin a check of `client` under its back-off: counted among its checks in
    /// progress (past [`MAX_PENDING_PER_CLIENT`]: `None` at once, and a failure), then
    /// delayed by its recent failures. Slowed before the hash or the ticket is verified,
    /// so that guessing costs the guesser time, not us work.
    async fn attempt(&self, client: IpAddr) -> Option<Attempt> {
        // Parallel first checks of an address share one state: `get_with` makes it once.
        let state = self.clients.get_with(client, Default::default);
        let Some(pending) = Pending::enter(Arc::clone(&state)) else {
            self.failed(client, &state);
            return None;
        };
        let recent = self.recent_failures(client, &state);
        tokio::time::sleep(failure_delay(recent + 1)).await;
        Some(Attempt {
            client,
            recent,
            pending,
        })
    }

    /// The right password or a valid ticket: the address's failures are forgotten,
    /// here and (if it had any) over the fleet.
    fn passed(&self, attempt: Attempt) {
        self.clients.invalidate(&attempt.client);
        if attempt.recent > 0 {
            self.fleet.tell(Event::AuthPassed(attempt.client));
        }
    }

    /// A wrong password or a refused ticket: one more failure of the address.
    fn refused(&self, attempt: Attempt) {
        self.failed(attempt.client, &attempt.pending.0);
    }

    /// Recent failures of `client`: the larger of this node's and the fleet's count.
    fn recent_failures(&self, client: IpAddr, state: &ClientState) -> u32 {
        state
            .recent_failures()
            .max(self.fleet.auth_failures(client))
    }

    /// The `Proxy-Authenticate` values of a 407, one header each: `Negotiate` first,
    /// then `Basic` (SPEC §10).
    pub fn challenges(&self) -> Vec<String> {
        let negotiate = self.negotiate.as_ref().map(|_| "Negotiate".to_string());
        let basic = self
            .basic
            .then(|| format!("Basic realm=\"{}\"", self.realm));
        negotiate.into_iter().chain(basic).collect()
    }

    /// What a request's `Proxy-Authorization` header is worth.
    pub async fn check(&self, header: Option<&[u8]>, client: IpAddr) -> Verdict {
        // A request without credentials is the normal first step, not a guess.
        let Some(header) = header else {
            return Verdict::Refused;
        };
        if let Some(acceptor) = &self.negotiate {
            if let Some(token) = negotiate_token(header) {
                return self.check_ticket(acceptor, token, client).await;
            }
        }
        if !self.basic {
            return Verdict::Refused;
        }
        let credentials = basic_credentials(header).unwrap_or_default();
        let text = String::from_utf8(credentials).unwrap_or_default();
        let (user, password) = text.split_once(':').unwrap_or(("", &text));
        let remembered = self.verified.get(user);
        if let Some(known) = remembered.as_ref().filter(|r| r.matches(password)) {
            return Verdict::User(user.to_string(), known.groups.clone());
        }
        let Some(attempt) = self.attempt(client).await else {
            return Verdict::Refused;
        };
        match self.verify(user, password).await {
            Check::Valid(groups) => {
                self.passed(attempt);
                let remembered = Remembered::new(password, groups.clone());
                self.verified.insert(user.to_string(), remembered);
                Verdict::User(user.to_string(), groups)
            }
            // A remembered user with another password: wrong, whether or not the
            // directory could have said so.
            Check::Unavailable if remembered.is_none() => Verdict::Unavailable,
            Check::Invalid | Check::Unavailable => {
                self.refused(attempt);
                Verdict::Refused
            }
        }
    }

    /// A Negotiate token (`None`: not a token, or too large to be one), verified after
    /// the client's failure delay and within its bound of checks in progress; the user
    /// is the client principal, its groups those of its short name in the directory.
    async fn check_ticket(
        &self,
        acceptor: &Acceptor,
        token: Option<Vec<u8>>,
        client: IpAddr,
    ) -> Verdict {
        let Some(attempt) = self.attempt(client).await else {
            return Verdict::Refused;
        };
        let accepted = match token {
            Some(token) => acceptor.accept(token).await.ok(),
            None => None,
        };
        let Some(principal) = accepted else {
            self.refused(attempt);
            return Verdict::Refused;
        };
        self.passed(attempt);
        match self.principal_groups(&principal).await {
            Some(groups) => Verdict::User(principal, groups),
            None => Verdict::Unavailable,
        }
    }

    /// A Kerberos user's groups: remembered, or those of its short name in the
    /// directory (none without a directory, or without an entry there); `None` when the
    /// directory cannot be asked.
    async fn principal_groups(&self, principal: &str) -> Option<Vec<String>> {
        let Some(directory) = &self.directory else {
            return Some(Vec::new());
        };
        if let Some(groups) = self.principals.get(principal) {
            return Some(groups);
        }
        let short = principal_short_name(principal);
        match directory.member_groups(short).await {
            Ok(groups) => {
                let groups = groups.unwrap_or_default();
                self.principals
                    .insert(principal.to_string(), groups.clone());
                Some(groups)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the groups of a Kerberos user cannot be looked up");
                None
            }
        }
    }

    /// `user`'s groups for `explain`: remembered from its last check, or looked up in
    /// the directory (a Kerberos principal by its short name, when Negotiate is on);
    /// none for a user of the file or without a directory.
    pub async fn groups_of(&self, user: &str) -> Result<Vec<String>, String> {
        if let Some(known) = self.verified.get(user) {
            return Ok(known.groups);
        }
        if let Some(groups) = self.principals.get(user) {
            return Ok(groups);
        }
        let user = match &self.negotiate {
            Some(_) => principal_short_name(user),
            None => user,
        };
        match &self.directory {
            Some(directory) if !self.users.contains_key(user) => directory.groups_of(user).await,
            _ => Ok(Vec::new()),
        }
    }

    /// A user of the file: its hash. Anyone else: the directory, or (without one) the
    /// dummy hash, so that an unknown user costs what a known one does.
    async fn verify(&self, user: &str, password: &str) -> Check {
        let known = self.users.get(user);
        if let (None, Some(directory)) = (known, &self.directory) {
            return directory.verify(user, password).await;
        }
        let hash = known.unwrap_or(&self.dummy).clone();
        let matched = self.hash(password.to_string(), hash).await;
        if matched && known.is_some() {
            Check::Valid(Vec::new())
        } else {
            Check::Invalid
        }
    }

    /// Run one hash check in a slot; `false` at once when too many wait.
    async fn hash(&self, password: String, hash: String) -> bool {
        let waiting = Waiting(Arc::clone(&self.waiting));
        if waiting.0.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            return false;
        }
        let Ok(permit) = Arc::clone(&self.slots).acquire_owned().await else {
            return false;
        };
        drop(waiting);
        let check_hash = Arc::clone(&self.check_hash);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            check_hash(&password, &hash)
        })
        .await
        .unwrap_or(false)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The delay before checking the `n`-th attempt since the last success: nothing for the
/// first (or after a typo), then 100 ms doubling up to 3 s.
fn failure_delay(n: u32) -> Duration {
    if n <= 1 {
        return Duration::ZERO;
    }
    FIRST_DELAY
        .saturating_mul(1 << (n - 2).min(16))
        .min(MAX_DELAY)
}

/// Whether a `Proxy-Authorization` value is of the `Negotiate` scheme.
pub fn is_negotiate(value: &[u8]) -> bool {
    negotiate_token(value).is_some()
}

/// The token of a `Negotiate` header value: `None` when the scheme is another,
/// `Some(None)` when the token is missing, too large or not base64.
fn negotiate_token(value: &[u8]) -> Option<Option<Vec<u8>>> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("negotiate") {
        return None;
    }
    let encoded = encoded.trim();
    if encoded.is_empty() || encoded.len() > kerberos::MAX_TOKEN * 4 / 3 + 4 {
        return Some(None);
    }
    Some(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok(),
    )
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

/// A hash no password is known for, costing what `hash` costs to verify: the same
/// algorithm and parameters, a random salt and output of the same sizes. `None` for a
/// hash that is neither bcrypt nor argon2.
fn dummy_like(hash: &str) -> Option<String> {
    if hash.starts_with("$argon2") {
        // $argon2id$v=19$m=…,t=…,p=…$SALT$OUTPUT, both unpadded standard base64.
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        let mut fields = hash.rsplitn(3, '$');
        let output = b64.decode(fields.next()?).ok()?;
        let salt = b64.decode(fields.next()?).ok()?;
        let head = fields.next()?;
        return Some(format!(
            "{head}${}${}",
            b64.encode(random_bytes(salt.len())),
            b64.encode(random_bytes(output.len()))
        ));
    }
    // $2b$CC$ then 22 characters of salt (16 bytes) and 31 of output (23 bytes).
    let cost = hash
        .strip_prefix("$2")?
        .get(1..)?
        .strip_prefix('$')?
        .get(..2)?;
    let bcrypt64 = base64::engine::GeneralPurpose::new(
        &base64::alphabet::BCRYPT,
        base64::engine::general_purpose::NO_PAD,
    );
    let salt = bcrypt64.encode(random_bytes(16));
    let output = bcrypt64.encode(random_bytes(23));
    Some(format!("$2b${cost}${salt}{output}"))
}

/// A dummy argon2id hash with the defaults `sluice user add` uses.
fn default_dummy() -> String {
    let params = argon2::Params::default();
    dummy_like(&format!(
        "$argon2id$v=19$m={},t={},p={}$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        params.m_cost(),
        params.t_cost(),
        params.p_cost()
    ))
    .unwrap_or_default()
}

fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
    fn negotiate_tokens_are_decoded_within_bounds() {
        assert_eq!(
            negotiate_token(b"Negotiate YWJj"),
            Some(Some(b"abc".to_vec()))
        );
        assert_eq!(
            negotiate_token(b"negotiate  YWJj "),
            Some(Some(b"abc".to_vec()))
        );
        assert_eq!(negotiate_token(b"Negotiate"), Some(None));
        assert_eq!(negotiate_token(b"Negotiate !!!"), Some(None));
        let huge = format!("Negotiate {}", "A".repeat(200_000));
        assert_eq!(negotiate_token(huge.as_bytes()), Some(None));
        assert_eq!(negotiate_token(b"Basic YWJj"), None);
        assert_eq!(negotiate_token(b"\xff\xfe"), None);
    }

    proptest::proptest! {
        /// Whatever a client puts in the header, reading it ends without a panic, and
        /// only the `Negotiate` scheme is taken for a token.
        #[test]
        fn any_header_is_read_without_panicking(value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let token = negotiate_token(&value);
            let text = String::from_utf8_lossy(&value);
            let scheme = text.trim().split(' ').next().unwrap_or_default().to_ascii_lowercase();
            proptest::prop_assert!(token.is_none() || scheme == "negotiate");
        }
    }

    #[test]
    fn failures_are_answered_more_and_more_slowly() {
        assert_eq!(failure_delay(1), Duration::ZERO);
        assert_eq!(failure_delay(2), Duration::from_millis(100));
        assert_eq!(failure_delay(3), Duration::from_millis(200));
        assert_eq!(failure_delay(40), MAX_DELAY);
    }

    fn argon2_hash(password: &str) -> String {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).unwrap();
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn bcrypt_and_argon2_hashes_verify() {
        let bcrypt_hash = bcrypt::hash("secret", 4).unwrap();
        assert!(password_matches("secret", &bcrypt_hash));
        assert!(!password_matches("Secret", &bcrypt_hash));
        let argon = argon2_hash("hunter2");
        assert!(password_matches("hunter2", &argon));
        assert!(!password_matches("hunter3", &argon));
    }

    /// The dummy must be a hash the verifier accepts as well-formed and runs in full
    /// with the same parameters; one it rejected early would make unknown users cheap.
    #[test]
    fn dummies_have_the_parameters_of_the_hash_they_imitate() {
        use argon2::password_hash::PasswordHash;
        let argon = argon2_hash("hunter2");
        let dummy = dummy_like(&argon).unwrap();
        let (real, fake) = (
            PasswordHash::new(&argon).unwrap(),
            PasswordHash::new(&dummy).unwrap(),
        );
        assert_eq!(real.algorithm, fake.algorithm);
        assert_eq!(real.version, fake.version);
        assert_eq!(real.params, fake.params);
        assert_eq!(real.salt.unwrap().len(), fake.salt.unwrap().len());
        assert_eq!(real.hash.unwrap().len(), fake.hash.unwrap().len());
        assert_ne!(argon, dummy);
        let costly = bcrypt::hash("secret", 6)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        let dummy = dummy_like(&costly).unwrap();
        assert!(dummy.starts_with("$2b$06$") && dummy.len() == costly.len());
        assert_eq!(bcrypt::verify("secret", &dummy).ok(), Some(false));
        let default = PasswordHash::new(&default_dummy()).unwrap().to_string();
        assert!(default.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(dummy_like("plain text"), None);
    }

    /// Counts hashes running at once and the hashes verified. A hash waits while the
    /// test holds `gate` for writing.
    #[derive(Default)]
    struct Probe {
        running: AtomicUsize,
        most: AtomicUsize,
        hashes: Mutex<Vec<String>>,
        gate: std::sync::RwLock<()>,
    }

    fn probed(users: &[(&str, &str)], slots: usize) -> (Authenticator, Arc<Probe>) {
        let probe = Arc::new(Probe::default());
        let counting = Arc::clone(&probe);
        let check: HashCheck = Arc::new(move |password: &str, hash: &str| {
            let _open = counting.gate.read();
            let now = counting.running.fetch_add(1, Ordering::SeqCst) + 1;
            counting.most.fetch_max(now, Ordering::SeqCst);
            lock(&counting.hashes).push(hash.to_string());
            std::thread::sleep(Duration::from_millis(5));
            counting.running.fetch_sub(1, Ordering::SeqCst);
            password == "right"
        });
        let settings = AuthSettings {
            users_file: Some(PathBuf::from("users")),
            users: users
                .iter()
                .map(|(u, h)| (u.to_string(), h.to_string()))
                .collect(),
            realm: "test".into(),
            cache_ttl: Duration::from_secs(600),
            ldap: None,
            kerberos: None,
        };
        (
            Authenticator::with(&settings, None, slots, check).unwrap(),
            probe,
        )
    }

    fn basic(credentials: &str) -> Vec<u8> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        format!("Basic {encoded}").into_bytes()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_wrong_passwords_never_run_more_hashes_than_the_slots() {
        let argon = argon2_hash("unused");
        let (auth, probe) = probed(&[("alice", &argon)], 2);
        let auth = Arc::new(auth);
        // Many addresses (each within its own pending bound), all at once.
        let checks: Vec<_> = (0..64u8)
            .map(|i| {
                let auth = Arc::clone(&auth);
                tokio::spawn(async move {
                    let client = IpAddr::from([127, 0, 1, i]);
                    auth.check(Some(&basic("alice:wrong")), client).await
                })
            })
            .collect();
        for check in checks {
            assert_eq!(check.await.unwrap(), Verdict::Refused);
        }
        assert_eq!(lock(&probe.hashes).len(), 64, "every check was hashed");
        let most = probe.most.load(Ordering::SeqCst);
        assert!((1..=2).contains(&most), "{most} hashes at once, two slots");
        // A right password is still accepted, and then remembered (no second hash).
        let client = IpAddr::from([127, 0, 2, 1]);
        let right = basic("alice:right");
        assert_eq!(
            auth.check(Some(&right), client).await,
            Verdict::User("alice".into(), Vec::new())
        );
        assert_eq!(
            auth.check(Some(&right), client).await,
            Verdict::User("alice".into(), Vec::new())
        );
        assert_eq!(lock(&probe.hashes).len(), 65);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_address_gets_a_bounded_number_of_checks_in_progress() {
        let argon = argon2_hash("unused");
        let (auth, probe) = probed(&[("alice", &argon)], 1);
        let auth = Arc::new(auth);
        let client = IpAddr::from([127, 0, 0, 2]);
        // No hash ends until every guess has been answered or is in progress.
        let gate = probe.gate.write();
        let checks: Vec<_> = (0..40)
            .map(|_| {
                let auth = Arc::clone(&auth);
                tokio::spawn(async move { auth.check(Some(&basic("alice:wrong")), client).await })
            })
            .collect();
        let refused = 40 - MAX_PENDING_PER_CLIENT;
        let state = || auth.clients.get(&client).unwrap();
        for _ in 0..1000 {
            if auth.clients.get(&client).is_some() && state().recent_failures() >= refused {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(state().recent_failures(), refused, "refused at once");
        drop(gate);
        for check in checks {
            assert_eq!(check.await.unwrap(), Verdict::Refused);
        }
        assert_eq!(lock(&probe.hashes).len(), MAX_PENDING_PER_CLIENT as usize);
        // Every refusal, hashed or not, counts towards the address's delay.
        assert_eq!(state().recent_failures(), 40);
    }

    #[tokio::test]
    async fn an_unknown_user_is_hashed_like_a_known_one() {
        let argon = argon2_hash("unused");
        let (auth, probe) = probed(&[("alice", &argon)], 1);
        let client = IpAddr::from([127, 0, 0, 3]);
        // The probe accepts "right" for any hash: an unknown user still gets in never.
        for credentials in ["mallory:right", "alice:wrong", "no colon", ":"] {
            assert_eq!(
                auth.check(Some(&basic(credentials)), client).await,
                Verdict::Refused
            );
        }
        auth.clients.invalidate(&client);
        assert_eq!(
            auth.check(Some(b"Basic !!"), client).await,
            Verdict::Refused
        );
        let hashes = lock(&probe.hashes).clone();
        assert_eq!(hashes.len(), 5, "one hash per attempt, known user or not");
        let params = |h: &str| h.rsplitn(3, '$').nth(2).unwrap().to_string();
        assert!(hashes.iter().all(|h| params(h) == params(&argon)));
        assert_eq!(hashes[1], argon);
        assert_eq!(hashes[0], auth.dummy);
    }

    #[tokio::test]
    async fn failures_slow_the_next_check_before_its_hash() {
        let argon = argon2_hash("unused");
        let (auth, probe) = probed(&[("alice", &argon)], 1);
        let client = IpAddr::from([127, 0, 0, 4]);
        let wrong = basic("alice:wrong");
        assert_eq!(auth.check(Some(&wrong), client).await, Verdict::Refused);
        assert_eq!(auth.check(Some(&wrong), client).await, Verdict::Refused);
        // A third guess waits 200 ms before its hash runs: a timer of 50 ms, set first,
        // always fires before the end of that delay, however slow the machine.
        let check = auth.check(Some(&wrong), client);
        tokio::pin!(check);
        let poll = tokio::time::timeout(Duration::from_millis(50), &mut check).await;
        assert!(poll.is_err(), "still in its delay");
        assert_eq!(lock(&probe.hashes).len(), 2, "not hashed during the delay");
        assert_eq!(check.await, Verdict::Refused);
        assert_eq!(lock(&probe.hashes).len(), 3);
    }

    #[tokio::test]
    async fn failures_counted_by_the_fleet_slow_a_first_check_here() {
        let argon = argon2_hash("unused");
        let (auth, probe) = probed(&[("alice", &argon)], 1);
        let redis = sluice_policy::RedisSettings {
            url: sluice_policy::Secret("redis://127.0.0.1:1".into()),
            password: None,
            ca: None,
        };
        let fleet = Cluster::new(&redis, &[1; 32]).unwrap();
        let client = IpAddr::from([127, 0, 0, 5]);
        // What the link learned from Redis: two failures of this address elsewhere.
        fleet.inner().unwrap().auth_failures.insert(client, 2);
        let auth = auth.in_fleet(fleet);
        // This node never saw the address, yet its first guess waits 200 ms before its
        // hash: a timer of 50 ms, set first, always fires before the end of that delay.
        let wrong = basic("alice:wrong");
        let check = auth.check(Some(&wrong), client);
        tokio::pin!(check);
        let poll = tokio::time::timeout(Duration::from_millis(50), &mut check).await;
        assert!(poll.is_err(), "in the fleet's delay");
        assert_eq!(lock(&probe.hashes).len(), 0, "not hashed during the delay");
        assert_eq!(check.await, Verdict::Refused);
    }
}
