//! Who may call callbackd, and as what.
//!
//! - `role`: the roles (`client < backend < supervisor < admin`, and
//!   `agent` apart) and the `Principal` a request acts as.
//! - `presented`: reading a credential from a request's headers (Basic,
//!   `x-api-key`, Bearer), without ever printing a secret.
//! - `file`: the credentials file (`--auth FILE`): names, roles, argon2
//!   hashes, and the JWT settings.
//! - `keys`: keys an admin mints for an agent (`cbk_<id>_<secret>`); the
//!   store keeps only their hash.
//! - `jwt`: tokens from an identity provider (HS256, RS256, ES256, JWKS).
//! - `verifier`: checking a credential, with remembered verdicts so the
//!   slow hash runs once per credential, not once per request.
//!
//! This crate knows no HTTP and no store: `http-front` hands it header
//! values and the stored key entries it read.

pub mod file;
pub mod jwt;
pub mod keys;
pub mod presented;
pub mod role;
pub mod verifier;

pub use file::{Credentials, FileCredential, FileError};
pub use keys::{mint, MintedKeyText, StoredKey};
pub use presented::{from_headers, PresentError, Presented};
pub use role::{Principal, Role};
pub use verifier::{Checked, Verifier};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;

/// Why a credential is refused. The messages never repeat what was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Unknown name or key, or a wrong secret: one answer for both, so a
    /// caller cannot learn which names exist.
    #[error("the credential is not valid")]
    Refused,
    #[error("the token {0}")]
    BadToken(String),
    #[error("this server does not take JWTs")]
    NoJwt,
}

/// The argon2id hash of `secret`, as the credentials file takes it
/// (`callbackd hash-secret`).
pub fn hash_secret(secret: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any input")
        .to_string()
}
