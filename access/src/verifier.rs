//! Checking a presented credential, fast on the hot path.
//!
//! A file credential's secret is checked against its argon2 hash, which
//! costs tens of milliseconds by design. Doing that on every request would
//! cut throughput by orders of magnitude, so the verdict is remembered for
//! `VERDICT_TTL`, keyed by a SHA-256 of what was presented (never the
//! secret itself), in a cache of at most `VERDICT_CAPACITY` entries.
//! Refusals are remembered too, so a client repeating a wrong secret costs
//! one hash, not one per request, and an unknown name is refused the same
//! way (checked against a dummy hash, then remembered), so neither timing
//! nor repetition tells which names exist. Requests that present the same
//! new credential at once wait for one hash between them, and at most
//! [`hash_limit`] hashes run at once, whatever is presented. A minted key is
//! checked against the entry the caller read from the store for each
//! request (a fast hash: see `keys`), so a revoked key is refused at once
//! on every node.
//!
//! A JWT's signature and claims cost a few microseconds, a tenth of a
//! create, so an accepted token is remembered too (under a SHA-256 of the
//! token), until `VERDICT_TTL` or until it expires, whichever is first, in
//! a map of its own: tokens cannot push the costly file verdicts out. A
//! refused token is not remembered: it costs no hash, and only tokens the
//! identity provider signed can take room.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use sha2::{Digest, Sha256};

use crate::file::Credentials;
use crate::keys::{MintedKeyText, StoredKey};
use crate::presented::Presented;
use crate::role::{Principal, Role};
use crate::AuthError;

pub const VERDICT_TTL: Duration = Duration::from_secs(300);
pub const VERDICT_CAPACITY: usize = 10_000;

/// What an unknown name's verdict is remembered under, in place of a
/// stored hash: it then costs what a wrong secret for a real name costs,
/// once, so neither timing nor repetition tells which names exist.
const NO_SUCH_CREDENTIAL: &str = "";

/// At most this many password hashes run at once (each takes argon2's
/// 19 MiB and a core for tens of milliseconds); more wait their turn, so
/// a flood of new or wrong secrets cannot take every core and the memory
/// with it.
pub fn hash_limit() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// A counting gate: at most `limit` holders at once.
struct Gate {
    limit: usize,
    running: Mutex<usize>,
    freed: std::sync::Condvar,
    /// The most that ever ran at once.
    most: AtomicUsize,
}

impl Gate {
    fn new(limit: usize) -> Gate {
        Gate {
            limit: limit.max(1),
            running: Mutex::new(0),
            freed: std::sync::Condvar::new(),
            most: AtomicUsize::new(0),
        }
    }

    fn run<T>(&self, work: impl FnOnce() -> T) -> T {
        {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            while *running >= self.limit {
                running = self
                    .freed
                    .wait(running)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            *running += 1;
            self.most.fetch_max(*running, Ordering::Relaxed);
        }
        let out = work();
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        self.freed.notify_one();
        out
    }
}

/// What checking a credential needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The credential is good: the request acts as this principal.
    Principal(Principal),
    /// A minted key: read its entry from the store (by `id`) and call
    /// [`Verifier::check_minted`].
    NeedsStoredKey(MintedKeyText),
}

impl std::fmt::Debug for MintedKeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MintedKeyText({:?})", self.id)
    }
}

/// What a verdict is remembered under: a SHA-256 digest (see [`fingerprint`]).
type Fingerprint = [u8; 32];

/// A check's outcome, and until when it holds.
type Verdict = (Result<Principal, AuthError>, Instant);

/// Verdicts, each until its own deadline, at most `VERDICT_CAPACITY`.
#[derive(Default)]
struct Remembered(Mutex<HashMap<Fingerprint, Verdict>>);

impl Remembered {
    fn get(&self, key: &Fingerprint) -> Option<Result<Principal, AuthError>> {
        let verdicts = self.0.lock().expect("verdicts");
        let (verdict, until) = verdicts.get(key)?;
        (Instant::now() < *until).then(|| verdict.clone())
    }

    fn put(&self, key: Fingerprint, verdict: Result<Principal, AuthError>, until: Instant) {
        let now = Instant::now();
        let mut verdicts = self.0.lock().expect("verdicts");
        if verdicts.len() >= VERDICT_CAPACITY {
            // Dropping expired verdicts first keeps the bound without an
            // LRU; if all are fresh, start over (a few checks recomputed).
            verdicts.retain(|_, (_, until)| now < *until);
            if verdicts.len() >= VERDICT_CAPACITY {
                verdicts.clear();
            }
        }
        verdicts.insert(key, (verdict, until));
    }
}

pub struct Verifier {
    credentials: Credentials,
    /// File credentials' verdicts.
    verdicts: Remembered,
    /// Accepted JWTs.
    tokens: Remembered,
    /// The credentials being hashed right now, each with the lock its hash
    /// holds, so a request presenting one waits for that verdict.
    hashing: Mutex<HashMap<Fingerprint, Arc<Mutex<()>>>>,
    /// Password hashes run so far.
    hashes: AtomicUsize,
    /// Bounds the hashes that run at once ([`hash_limit`]).
    gate: Gate,
}

impl Verifier {
    pub fn new(credentials: Credentials) -> Verifier {
        Verifier::with_hash_limit(credentials, hash_limit())
    }

    /// A verifier that runs at most `limit` password hashes at once.
    pub fn with_hash_limit(credentials: Credentials, limit: usize) -> Verifier {
        Verifier {
            credentials,
            verdicts: Remembered::default(),
            tokens: Remembered::default(),
            hashing: Mutex::new(HashMap::new()),
            hashes: AtomicUsize::new(0),
            gate: Gate::new(limit),
        }
    }

    /// No credentials configured: the server runs open (loopback only).
    pub fn is_open(&self) -> bool {
        self.credentials.is_empty()
    }

    pub fn check(&self, presented: &Presented) -> Result<Checked, AuthError> {
        match presented {
            Presented::Minted(key) => Ok(Checked::NeedsStoredKey(key.clone())),
            Presented::Jwt(token) => self.check_jwt(token).map(Checked::Principal),
            Presented::File { name, secret } => {
                self.check_file(name, secret).map(Checked::Principal)
            }
        }
    }

    /// A minted key against its stored entry (`None`: there is none, e.g.
    /// it was revoked).
    pub fn check_minted(
        &self,
        key: &MintedKeyText,
        stored: Option<&StoredKey>,
    ) -> Result<Principal, AuthError> {
        match stored {
            Some(s) if s.matches(key) => Ok(Principal {
                name: format!("{}/{}", s.agent, s.name),
                role: Role::Agent,
                agent: Some(s.agent.clone()),
            }),
            _ => Err(AuthError::Refused),
        }
    }

    /// The verdict on `presented` if it is remembered, so a caller on an
    /// async runtime knows whether [`Verifier::check`] will run the slow
    /// hash (and can move it off the runtime's threads).
    pub fn remembered(&self, presented: &Presented) -> Option<Result<Principal, AuthError>> {
        match presented {
            Presented::File { name, secret } => {
                let stored = self
                    .credentials
                    .by_name
                    .get(name)
                    .map_or(NO_SUCH_CREDENTIAL, |c| c.secret_hash.as_str());
                self.verdicts.get(&fingerprint(name, secret, stored))
            }
            Presented::Jwt(token) if self.credentials.jwt.is_some() => {
                self.tokens.get(&token_fingerprint(token))
            }
            _ => None,
        }
    }

    fn check_jwt(&self, token: &str) -> Result<Principal, AuthError> {
        let jwt = self.credentials.jwt.as_ref().ok_or(AuthError::NoJwt)?;
        let key = token_fingerprint(token);
        if let Some(verdict) = self.tokens.get(&key) {
            return verdict;
        }
        let (who, valid_until) = jwt.verify_until(token)?;
        if let Some(until) = valid_until.and_then(|v| token_until(v, SystemTime::now())) {
            self.tokens.put(key, Ok(who.clone()), until);
        }
        Ok(who)
    }

    /// Whether checking `presented` is fast (no password hash to run).
    pub fn is_quick(&self, presented: &Presented) -> bool {
        !matches!(presented, Presented::File { .. }) || self.remembered(presented).is_some()
    }

    fn check_file(&self, name: &str, secret: &str) -> Result<Principal, AuthError> {
        let cred = self.credentials.by_name.get(name);
        let stored = cred.map_or(NO_SUCH_CREDENTIAL, |c| c.secret_hash.as_str());
        let key = fingerprint(name, secret, stored);
        if let Some(verdict) = self.verdicts.get(&key) {
            return verdict;
        }
        // Requests that present a new credential at once (an app's
        // connection pool, a fleet starting) run one hash between them:
        // the first hashes, the others wait for its verdict. Without this
        // each ran its own, each taking argon2's 19 MiB and tens of ms.
        let turn = self
            .hashing
            .lock()
            .expect("hashing")
            .entry(key)
            .or_default()
            .clone();
        let verdict = {
            let _held = turn.lock().unwrap_or_else(PoisonError::into_inner);
            match self.verdicts.get(&key) {
                Some(verdict) => verdict,
                None => self.hash(cred, secret, key),
            }
        };
        let mut hashing = self.hashing.lock().expect("hashing");
        if hashing.get(&key).is_some_and(|t| Arc::ptr_eq(t, &turn)) {
            // Its verdict is remembered: later requests find it there.
            hashing.remove(&key);
        }
        verdict
    }

    /// Checks `secret` against the credential's hash (an unknown name's
    /// against a dummy, so it costs the same), and remembers the verdict
    /// under `key`.
    fn hash(
        &self,
        cred: Option<&crate::FileCredential>,
        secret: &str,
        key: Fingerprint,
    ) -> Result<Principal, AuthError> {
        let verdict = self.gate.run(|| {
            self.hashes.fetch_add(1, Ordering::Relaxed);
            let Some(cred) = cred else {
                let _ = Argon2::default().verify_password(secret.as_bytes(), &dummy_hash());
                return Err(AuthError::Refused);
            };
            PasswordHash::new(&cred.secret_hash)
                .ok()
                .filter(|hash| {
                    Argon2::default()
                        .verify_password(secret.as_bytes(), hash)
                        .is_ok()
                })
                .map(|_| Principal {
                    name: cred.name.clone(),
                    role: cred.role,
                    agent: cred.agent.clone(),
                })
                .ok_or(AuthError::Refused)
        });
        self.verdicts
            .put(key, verdict.clone(), Instant::now() + VERDICT_TTL);
        verdict
    }
}

/// Until when an accepted token is remembered: `VERDICT_TTL` from now, but
/// no later than the start of the last second it is accepted in
/// (`valid_until`, Unix seconds: its `exp` plus the leeway), so it is
/// refused as soon as it expires. `None` if that has passed.
fn token_until(valid_until: u64, now: SystemTime) -> Option<Instant> {
    let end = SystemTime::UNIX_EPOCH + Duration::from_secs(valid_until);
    let left = end.duration_since(now).ok().filter(|d| !d.is_zero())?;
    Some(Instant::now() + left.min(VERDICT_TTL))
}

/// What an accepted token is remembered under.
fn token_fingerprint(token: &str) -> Fingerprint {
    Sha256::digest(token).into()
}

/// What a verdict is remembered under: a hash of what was presented and of
/// the hash it was checked against, never the secret itself. The raw digest,
/// fed piece by piece: this runs on every request, and formatting the input
/// and the digest as text cost ten times the hash.
fn fingerprint(name: &str, secret: &str, secret_hash: &str) -> Fingerprint {
    Sha256::new()
        .chain_update(name)
        .chain_update([0])
        .chain_update(secret)
        .chain_update([0])
        .chain_update(secret_hash)
        .finalize()
        .into()
}

fn dummy_hash() -> PasswordHash<'static> {
    use std::sync::OnceLock;
    static DUMMY: OnceLock<String> = OnceLock::new();
    let text = DUMMY.get_or_init(|| crate::hash_secret("callbackd: no such credential"));
    PasswordHash::new(text).expect("our own hash parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> Verifier {
        let file = format!(
            "[[credential]]\nname = \"app\"\nrole = \"client\"\nsecret_hash = \"{}\"\n",
            crate::hash_secret("s3cret-s3cret")
        );
        Verifier::new(
            Credentials::parse(&file, std::path::Path::new("auth.toml"), |_| None).unwrap(),
        )
    }

    /// Eight requests presenting the same new credential at once run one
    /// hash between them and all get its verdict, good or bad.
    #[test]
    fn a_credential_presented_by_many_at_once_is_hashed_once() {
        let verifier = verifier();
        for (secret, good) in [("s3cret-s3cret", true), ("wrong-wrong", false)] {
            let before = verifier.hashes.load(Ordering::Relaxed);
            let presented = Presented::File {
                name: "app".into(),
                secret: secret.into(),
            };
            let start = std::sync::Barrier::new(8);
            let verdicts: Vec<_> = std::thread::scope(|s| {
                let checks: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            verifier.check(&presented)
                        })
                    })
                    .collect();
                checks.into_iter().map(|c| c.join().unwrap()).collect()
            });
            for verdict in &verdicts {
                match verdict {
                    Ok(Checked::Principal(p)) => assert!(good && p.name == "app", "{p:?}"),
                    Err(AuthError::Refused) => assert!(!good),
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(
                verifier.hashes.load(Ordering::Relaxed) - before,
                1,
                "{secret}"
            );
            assert!(verifier.hashing.lock().unwrap().is_empty());
        }
    }

    /// An unknown name is refused like a wrong secret for a real one: one
    /// hash the first time, then remembered, so neither timing nor
    /// repeating tells which names exist.
    #[test]
    fn an_unknown_name_costs_what_a_wrong_secret_costs() {
        let verifier = verifier();
        for name in ["app", "nobody"] {
            let presented = Presented::File {
                name: name.into(),
                secret: "wrong-wrong".into(),
            };
            let before = verifier.hashes.load(Ordering::Relaxed);
            assert!(verifier.remembered(&presented).is_none(), "{name}");
            assert_eq!(verifier.check(&presented), Err(AuthError::Refused));
            assert_eq!(verifier.check(&presented), Err(AuthError::Refused));
            assert_eq!(
                verifier.hashes.load(Ordering::Relaxed) - before,
                1,
                "{name}"
            );
            assert_eq!(
                verifier.remembered(&presented),
                Some(Err(AuthError::Refused))
            );
            assert!(verifier.is_quick(&presented));
        }
    }

    /// Many new secrets at once (a flood of guesses) run at most the
    /// limit's hashes at a time; every one is still answered.
    #[test]
    fn password_hashes_run_at_most_the_limit_at_once() {
        let file = format!(
            "[[credential]]\nname = \"app\"\nrole = \"client\"\nsecret_hash = \"{}\"\n",
            crate::hash_secret("s3cret-s3cret")
        );
        let verifier = Verifier::with_hash_limit(
            Credentials::parse(&file, std::path::Path::new("auth.toml"), |_| None).unwrap(),
            2,
        );
        let start = std::sync::Barrier::new(8);
        let verdicts: Vec<_> = std::thread::scope(|s| {
            let checks: Vec<_> = (0..8)
                .map(|i| {
                    let (verifier, start) = (&verifier, &start);
                    s.spawn(move || {
                        start.wait();
                        verifier.check(&Presented::File {
                            name: if i % 2 == 0 {
                                "app".into()
                            } else {
                                format!("guess-{i}")
                            },
                            secret: format!("guess-secret-{i}"),
                        })
                    })
                })
                .collect();
            checks.into_iter().map(|c| c.join().unwrap()).collect()
        });
        assert!(verdicts.iter().all(|v| *v == Err(AuthError::Refused)));
        assert_eq!(verifier.hashes.load(Ordering::Relaxed), 8);
        assert_eq!(verifier.gate.most.load(Ordering::Relaxed), 2);
    }
}
