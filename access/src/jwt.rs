//! JWTs from the contact centre's identity provider, so agent desktops
//! keep their single sign-on. Issuer, audience and expiry are checked;
//! the role comes from a claim (`role_claim`), and `sub` is the agent id.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::role::{Principal, Role};
use crate::AuthError;

/// Seconds past `exp` a token is still accepted (clocks differ).
pub const LEEWAY_SECS: u64 = 30;

/// How tokens are checked.
pub struct JwtConfig {
    pub issuer: String,
    pub audience: String,
    pub keys: JwtKeys,
    pub role_claim: String,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("role_claim", &self.role_claim)
            .finish_non_exhaustive()
    }
}

/// The keys a token's signature is checked with.
pub enum JwtKeys {
    /// A shared secret (HS256).
    Hs256(DecodingKey),
    /// One public key from a PEM file: RS256 for RSA, ES256 for P-256.
    Pem(DecodingKey, Algorithm),
    /// A JWK set: the token's `kid` picks the key, the key its algorithm.
    Jwks(JwkSet),
}

impl JwtKeys {
    pub fn hs256(secret: &[u8]) -> JwtKeys {
        JwtKeys::Hs256(DecodingKey::from_secret(secret))
    }

    pub fn pem(pem: &[u8]) -> Result<JwtKeys, String> {
        if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            return Ok(JwtKeys::Pem(k, Algorithm::RS256));
        }
        if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            return Ok(JwtKeys::Pem(k, Algorithm::ES256));
        }
        Err("is not an RSA or EC (P-256) public key in PEM".into())
    }

    pub fn jwks(json: &str) -> Result<JwtKeys, String> {
        let set: JwkSet =
            serde_json::from_str(json).map_err(|e| format!("is not a JWK set: {e}"))?;
        if set.keys.is_empty() {
            return Err("holds no keys".into());
        }
        for k in &set.keys {
            DecodingKey::from_jwk(k).map_err(|e| format!("a key cannot be used: {e}"))?;
        }
        Ok(JwtKeys::Jwks(set))
    }
}

impl JwtConfig {
    /// Checks `token` and says who it names.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_until(token).map(|(who, _)| who)
    }

    /// [`JwtConfig::verify`], and the last second (Unix time) the token is
    /// accepted in: its `exp` plus [`LEEWAY_SECS`].
    pub fn verify_until(&self, token: &str) -> Result<(Principal, Option<u64>), AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::BadToken("not a JWT".into()))?;
        let (key, alg) = match &self.keys {
            JwtKeys::Hs256(k) => (k.clone(), Algorithm::HS256),
            JwtKeys::Pem(k, alg) => (k.clone(), *alg),
            JwtKeys::Jwks(set) => {
                let jwk = match &header.kid {
                    Some(kid) => set.find(kid),
                    None if set.keys.len() == 1 => set.keys.first(),
                    None => None,
                }
                .ok_or_else(|| AuthError::BadToken("no key for its kid".into()))?;
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|_| AuthError::BadToken("its key cannot be used".into()))?;
                let alg = jwk
                    .common
                    .key_algorithm
                    .and_then(|a| a.to_string().parse().ok())
                    .unwrap_or(header.alg);
                (key, alg)
            }
        };
        // The algorithm is ours, never the token's: a token cannot choose
        // `none` or turn a public key into an HMAC secret.
        if header.alg != alg {
            return Err(AuthError::BadToken(format!(
                "is signed with {:?}, expected {alg:?}",
                header.alg
            )));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        let data = decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            AuthError::BadToken(
                match e.kind() {
                    K::ExpiredSignature => "has expired",
                    K::InvalidAudience => "is for another audience",
                    K::InvalidIssuer => "is from another issuer",
                    K::InvalidSignature => "has a signature that does not verify",
                    K::MissingRequiredClaim(_) => "lacks exp, iss, aud or sub",
                    _ => "cannot be read",
                }
                .into(),
            )
        })?;
        let claims = data.claims;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AuthError::BadToken("has no sub".into()))?;
        let role: Role = claims
            .get(&self.role_claim)
            .and_then(Value::as_str)
            .ok_or_else(|| AuthError::BadToken(format!("has no {} claim", self.role_claim)))?
            .parse()
            .map_err(|_| {
                AuthError::BadToken(format!(
                    "has a {} claim that is not a role",
                    self.role_claim
                ))
            })?;
        // Validation required a numeric `exp`; a fractional one counts
        // from its whole second, as jsonwebtoken reads it.
        let exp = claims
            .get("exp")
            .and_then(|e| e.as_u64().or_else(|| e.as_f64().map(|f| f as u64)));
        let who = Principal {
            name: sub.to_owned(),
            role,
            agent: (role == Role::Agent).then(|| sub.to_owned()),
        };
        Ok((who, exp.map(|e| e.saturating_add(LEEWAY_SECS))))
    }
}
