//! The credentials file (`--auth FILE`): named credentials with a role and
//! an argon2 hash of their secret, and optionally how to check JWTs.
//!
//! ```toml
//! [[credential]]
//! name = "ios-app"              # shown in logs and in a record's history
//! role = "client"               # client | backend | agent | supervisor | admin
//! secret_hash = "$argon2id$..." # printed by `callbackd hash-secret`
//!
//! [[credential]]
//! name = "ann-desktop"
//! role = "agent"
//! agent = "ann"                 # required for role agent, refused for the others
//! secret_hash = "..."
//!
//! [jwt]                         # optional
//! issuer = "https://idp.example"
//! audience = "callbackd"
//! hs256_secret_env = "CALLBACKD_JWT_SECRET"  # or public_key_file, or jwks_file
//! role_claim = "role"           # sub is the agent id
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use argon2::password_hash::PasswordHash;
use serde::Deserialize;

use crate::jwt::{JwtConfig, JwtKeys};
use crate::role::Role;

/// A credential from the file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCredential {
    pub name: String,
    pub role: Role,
    pub agent: Option<String>,
    /// The PHC string (`$argon2id$v=19$…`).
    pub secret_hash: String,
}

/// The whole file, checked: credentials by name, and the JWT settings.
#[derive(Debug, Default)]
pub struct Credentials {
    pub by_name: HashMap<String, FileCredential>,
    pub jwt: Option<JwtConfig>,
    /// `[anonymous] role = "client"`: a caller that presents no credential
    /// acts as a client, so the customer pages (and the site widget) work
    /// on an exposed server; `None`: such a caller is refused.
    pub anonymous: Option<Role>,
}

/// Why the file cannot be used: where (the file, and the entry when there
/// is one) and what is wrong, on one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}{problem}", path.display(), entry.as_ref().map(|e| format!("{e}: ")).unwrap_or_default())]
pub struct FileError {
    pub path: PathBuf,
    pub entry: Option<String>,
    pub problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    credential: Vec<RawCredential>,
    jwt: Option<RawJwt>,
    anonymous: Option<RawAnonymous>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnonymous {
    role: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    name: String,
    role: String,
    agent: Option<String>,
    secret_hash: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    issuer: String,
    audience: String,
    hs256_secret_env: Option<String>,
    public_key_file: Option<PathBuf>,
    jwks_file: Option<PathBuf>,
    #[serde(default = "default_role_claim")]
    role_claim: String,
}

fn default_role_claim() -> String {
    "role".to_owned()
}

impl Credentials {
    /// Reads and checks the file at `path`. `env` looks up environment
    /// variables (the JWT secret), so tests need not set the process's.
    pub fn load(
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, FileError> {
        let text = std::fs::read_to_string(path).map_err(|e| FileError {
            path: path.to_owned(),
            entry: None,
            problem: format!("cannot be read: {e}"),
        })?;
        Credentials::parse(&text, path, env)
    }

    pub fn parse(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, FileError> {
        let fail = |entry: Option<String>, problem: String| FileError {
            path: path.to_owned(),
            entry,
            problem,
        };
        let raw: RawFile = toml::from_str(text)
            .map_err(|e| fail(None, e.message().to_owned() + &line_of(text, e.span())))?;
        let mut by_name = HashMap::new();
        for (i, c) in raw.credential.into_iter().enumerate() {
            let entry = Some(format!("credential[{}] ({})", i + 1, c.name));
            let cred = check_credential(c).map_err(|p| fail(entry.clone(), p))?;
            if by_name.contains_key(&cred.name) {
                return Err(fail(
                    entry,
                    "the name is used by an earlier credential".into(),
                ));
            }
            by_name.insert(cred.name.clone(), cred);
        }
        let jwt = match raw.jwt {
            None => None,
            Some(j) => Some(check_jwt(j, path, &env).map_err(|p| fail(Some("[jwt]".into()), p))?),
        };
        let anonymous = match raw.anonymous {
            None => None,
            Some(a) => match a.role.parse::<Role>() {
                Ok(Role::Client) => Some(Role::Client),
                Ok(other) => {
                    return Err(fail(
                        Some("[anonymous]".into()),
                        format!("role may only be client, not {other}: callers without a credential never act as staff"),
                    ))
                }
                Err(e) => return Err(fail(Some("[anonymous]".into()), format!("role: {e}"))),
            },
        };
        Ok(Credentials {
            by_name,
            jwt,
            anonymous,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty() && self.jwt.is_none()
    }
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|s| {
        format!(
            " (line {})",
            text[..s.start.min(text.len())].lines().count().max(1)
        )
    })
    .unwrap_or_default()
}

fn check_credential(c: RawCredential) -> Result<FileCredential, String> {
    let name_ok = !c.name.is_empty()
        && c.name.chars().count() <= 128
        && c.name.chars().all(|ch| ch.is_ascii_graphic() && ch != ':');
    if !name_ok {
        return Err("name must be 1 to 128 visible ASCII characters without ':'".into());
    }
    let role: Role = c.role.parse().map_err(|e| format!("role: {e}"))?;
    match (role, &c.agent) {
        (Role::Agent, None) => return Err("agent is required for role agent".into()),
        (Role::Agent, Some(a)) if a.trim().is_empty() => {
            return Err("agent must name an agent id".into())
        }
        (r, Some(_)) if r != Role::Agent => {
            return Err(format!("agent is only for role agent, not {r}"))
        }
        _ => {}
    }
    let parsed = PasswordHash::new(&c.secret_hash).map_err(|_| {
        "secret_hash is not a password hash: print one with `callbackd hash-secret`".to_owned()
    })?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "secret_hash uses {}; callbackd takes argon2 hashes",
            parsed.algorithm
        ));
    }
    Ok(FileCredential {
        name: c.name,
        role,
        agent: c.agent,
        secret_hash: c.secret_hash,
    })
}

fn check_jwt(
    j: RawJwt,
    path: &Path,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<JwtConfig, String> {
    if j.issuer.trim().is_empty() || j.audience.trim().is_empty() {
        return Err("issuer and audience must not be empty".into());
    }
    // Relative key files are found next to the credentials file.
    let beside = |p: &Path| {
        if p.is_absolute() {
            p.to_owned()
        } else {
            path.parent().unwrap_or(Path::new(".")).join(p)
        }
    };
    let keys = match (j.hs256_secret_env, j.public_key_file, j.jwks_file) {
        (Some(var), None, None) => {
            let secret = env(&var).filter(|s| !s.is_empty()).ok_or_else(|| {
                format!("hs256_secret_env: the environment variable {var} is not set")
            })?;
            JwtKeys::hs256(secret.as_bytes())
        }
        (None, Some(file), None) => {
            let file = beside(&file);
            let pem = std::fs::read(&file)
                .map_err(|e| format!("public_key_file: {} cannot be read: {e}", file.display()))?;
            JwtKeys::pem(&pem).map_err(|e| format!("public_key_file: {}: {e}", file.display()))?
        }
        (None, None, Some(file)) => {
            let file = beside(&file);
            let json = std::fs::read_to_string(&file)
                .map_err(|e| format!("jwks_file: {} cannot be read: {e}", file.display()))?;
            JwtKeys::jwks(&json).map_err(|e| format!("jwks_file: {}: {e}", file.display()))?
        }
        _ => {
            return Err(
                "give exactly one of hs256_secret_env, public_key_file and jwks_file".into(),
            )
        }
    };
    Ok(JwtConfig {
        issuer: j.issuer,
        audience: j.audience,
        keys,
        role_claim: j.role_claim,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Credentials, FileError> {
        Credentials::parse(text, Path::new("auth.toml"), |_| None)
    }

    #[test]
    fn anonymous_callers_may_only_be_clients() {
        assert_eq!(
            parse("[anonymous]\nrole = \"client\"\n").unwrap().anonymous,
            Some(Role::Client)
        );
        assert_eq!(parse("").unwrap().anonymous, None);
        for role in ["backend", "agent", "supervisor", "admin"] {
            let e = parse(&format!("[anonymous]\nrole = \"{role}\"\n")).unwrap_err();
            assert_eq!(e.entry.as_deref(), Some("[anonymous]"), "{e}");
            assert!(e.problem.contains("only be client"), "{e}");
        }
        let e = parse("[anonymous]\nrole = \"king\"\n").unwrap_err();
        assert!(e.problem.starts_with("role:"), "{e}");
    }
}
