//! What a request presents as its credential, read from its headers.
//!
//! | header | form | means |
//! |---|---|---|
//! | `Authorization: Basic …` | base64 of `name:secret` | a file credential (as GMS clients send it) |
//! | `x-api-key: …` | `cbk_<id>_<secret>` | a minted key (as Genesys Widgets send a key) |
//! | `x-api-key: …` | `name:secret` | a file credential |
//! | `Authorization: Bearer …` | either of the above, or a JWT | |
//!
//! A key carries what finds it: a minted key its id, a file credential its
//! name, so checking one never tries every stored hash.

use base64::Engine as _;

use crate::keys::MintedKeyText;

/// A credential as presented, before it is checked.
#[derive(Clone, PartialEq, Eq)]
pub enum Presented {
    /// A credential from the credentials file, by name.
    File { name: String, secret: String },
    /// A key an admin minted for an agent.
    Minted(MintedKeyText),
    /// A token from the contact centre's identity provider.
    Jwt(String),
}

// Never print a secret, not even in a debug log.
impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::File { name, .. } => write!(f, "File({name:?})"),
            Presented::Minted(k) => write!(f, "Minted({:?})", k.id),
            Presented::Jwt(_) => f.write_str("Jwt(…)"),
        }
    }
}

/// Why the headers do not hold a readable credential. The message names
/// the header and never repeats what was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresentError {
    #[error("Authorization: only the Basic and Bearer schemes are accepted")]
    Scheme,
    #[error("Authorization: the Basic credential is not base64 of name:secret")]
    Basic,
    #[error("{0}: is not a key, name:secret or a JWT")]
    Key(&'static str),
    #[error("Authorization and x-api-key both carry a credential; send one")]
    Both,
}

/// Reads the credential from the `Authorization` and `x-api-key` header
/// values; `Ok(None)` when the request carries none.
pub fn from_headers(
    authorization: Option<&str>,
    api_key: Option<&str>,
) -> Result<Option<Presented>, PresentError> {
    let authorization = authorization.map(str::trim).filter(|v| !v.is_empty());
    let api_key = api_key.map(str::trim).filter(|v| !v.is_empty());
    match (authorization, api_key) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(PresentError::Both),
        (None, Some(key)) => key_or_pair(key, "x-api-key").map(Some),
        (Some(auth), None) => {
            let (scheme, rest) = auth.split_once(' ').ok_or(PresentError::Scheme)?;
            let rest = rest.trim();
            if scheme.eq_ignore_ascii_case("basic") {
                basic(rest).map(Some)
            } else if scheme.eq_ignore_ascii_case("bearer") {
                bearer(rest).map(Some)
            } else {
                Err(PresentError::Scheme)
            }
        }
    }
}

/// A bearer value alone (the WebSocket's first frame, CometD's `ext`).
pub fn bearer(value: &str) -> Result<Presented, PresentError> {
    let value = value.trim();
    if looks_like_jwt(value) {
        return Ok(Presented::Jwt(value.to_owned()));
    }
    key_or_pair(value, "Authorization")
}

fn basic(encoded: &str) -> Result<Presented, PresentError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| PresentError::Basic)?;
    let text = String::from_utf8(bytes).map_err(|_| PresentError::Basic)?;
    let (name, secret) = text.split_once(':').ok_or(PresentError::Basic)?;
    if name.is_empty() || secret.is_empty() {
        return Err(PresentError::Basic);
    }
    Ok(Presented::File {
        name: name.to_owned(),
        secret: secret.to_owned(),
    })
}

fn key_or_pair(value: &str, header: &'static str) -> Result<Presented, PresentError> {
    if let Some(key) = MintedKeyText::parse(value) {
        return Ok(Presented::Minted(key));
    }
    match value.split_once(':') {
        Some((name, secret)) if !name.is_empty() && !secret.is_empty() => Ok(Presented::File {
            name: name.to_owned(),
            secret: secret.to_owned(),
        }),
        _ => Err(PresentError::Key(header)),
    }
}

/// Three base64url parts: a JWS in compact form.
fn looks_like_jwt(value: &str) -> bool {
    let parts: Vec<&str> = value.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn check(auth: Option<&str>, key: Option<&str>, expected: Result<Option<&str>, PresentError>) {
        let got = from_headers(auth, key).map(|p| p.map(|p| format!("{p:?}")));
        assert_eq!(
            got,
            expected.map(|e| e.map(str::to_owned)),
            "auth={auth:?} key={key:?}"
        );
    }

    #[test]
    fn headers() {
        let minted = "cbk_abcdefghjkmn_0123456789abcdefghijkmnpqrstuvwx";
        check(None, None, Ok(None));
        check(Some("  "), Some(""), Ok(None));
        check(
            Some(&format!("Basic {}", b64("ios-app:s3cret:with:colons"))),
            None,
            Ok(Some("File(\"ios-app\")")),
        );
        check(
            Some(&format!("basic {}", b64("ios-app"))),
            None,
            Err(PresentError::Basic),
        );
        check(Some("Basic !!!"), None, Err(PresentError::Basic));
        check(
            Some(&format!("Basic {}", b64(":x"))),
            None,
            Err(PresentError::Basic),
        );
        check(None, Some(minted), Ok(Some("Minted(\"abcdefghjkmn\")")));
        check(None, Some("widget:pa55"), Ok(Some("File(\"widget\")")));
        check(
            None,
            Some("justasecret"),
            Err(PresentError::Key("x-api-key")),
        );
        check(
            Some(&format!("Bearer {minted}")),
            None,
            Ok(Some("Minted(\"abcdefghjkmn\")")),
        );
        check(Some("Bearer aaa.bbb.ccc"), None, Ok(Some("Jwt(…)")));
        check(
            Some("Bearer aaa.b b.ccc"),
            None,
            Err(PresentError::Key("Authorization")),
        );
        check(Some("Digest x"), None, Err(PresentError::Scheme));
        check(Some("Bearer"), None, Err(PresentError::Scheme));
        check(Some("Bearer a:b"), Some("a:b"), Err(PresentError::Both));
    }

    #[test]
    fn errors_and_debug_never_show_the_secret() {
        let p = from_headers(None, Some("widget:hunter2")).unwrap().unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
        let e = from_headers(None, Some("hunter2")).unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
    }
}
