//! Video providers: where a room's code, tokens and join links come from.
//!
//! The engine records rooms; making one needs randomness and secrets, so it
//! happens here. Two providers, chosen by a scenario's `[_video.provider]`:
//!
//! - `relay`: the built-in WebRTC signalling relay. The links point at this
//!   server (`{base}/room/{code}?token=…`); SDP and ICE go through
//!   `POST /api/v1/rooms/{code}/signal` and the push channel.
//! - `template`: an external meeting system in the style of Jitsi. The link
//!   is the admin's template with `{room}`, `{name}`, `{role}` and `{jwt}`
//!   filled in; the token is signed (HS256) with a secret read from the
//!   environment at start-up.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use engine::scenario::Scenarios;
use engine::video::{JwtConfig, ProviderConfig, Room, RoomLink, VideoConfig};
use serde::Serialize;

/// Makes rooms for every scenario; holds the providers' secrets.
pub struct RoomMaker {
    /// Base of the relay's links (`--public-url`, else the listen address).
    link_base: String,
    /// `secret_env` → secret, read once at start-up.
    secrets: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RoomMakerError {
    #[error("scenario `{scenario}`: _video.provider.jwt.secret_env names `{var}`, which is not set in the environment")]
    MissingSecret { scenario: String, var: String },
    #[error("scenario `{scenario}`: the secret in `{var}` is shorter than 32 bytes")]
    ShortSecret { scenario: String, var: String },
}

/// The claims of a Jitsi-style token (`context.user` is what Jitsi shows).
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    room: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    context: ClaimsContext<'a>,
}

#[derive(Serialize)]
struct ClaimsContext<'a> {
    user: ClaimsUser<'a>,
}

#[derive(Serialize)]
struct ClaimsUser<'a> {
    name: &'a str,
    moderator: bool,
    role: &'a str,
}

impl RoomMaker {
    /// Reads the secrets every scenario's provider needs, through `env`
    /// (the process environment in production), refusing to start without one.
    pub fn new(
        scenarios: &Scenarios,
        link_base: String,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<RoomMaker, RoomMakerError> {
        let mut secrets = BTreeMap::new();
        for scenario in scenarios.iter() {
            let Some(ProviderConfig::Template { jwt: Some(jwt), .. }) =
                scenario.video.as_ref().map(|v| &v.provider)
            else {
                continue;
            };
            let secret = env(&jwt.secret_env).ok_or_else(|| RoomMakerError::MissingSecret {
                scenario: scenario.name.clone(),
                var: jwt.secret_env.clone(),
            })?;
            if secret.len() < 32 {
                return Err(RoomMakerError::ShortSecret {
                    scenario: scenario.name.clone(),
                    var: jwt.secret_env.clone(),
                });
            }
            secrets.insert(jwt.secret_env.clone(), secret);
        }
        Ok(RoomMaker { link_base, secrets })
    }

    /// The base of links that leave the request (`--public-url`, else the
    /// listen address).
    pub fn link_base(&self) -> &str {
        &self.link_base
    }

    /// A new room for `service`: a fresh code, a token per side, a link per side.
    /// `customer` and `agent` are the display names put into the links.
    pub fn make(
        &self,
        config: &VideoConfig,
        customer: &str,
        agent: Option<&str>,
        now: DateTime<Utc>,
    ) -> Room {
        let code = random_code(config.code_length, &config.code_alphabet);
        let expires_at = config.room_expiry(now);
        let customer_token = random_token();
        let customer_url = self.link(
            config,
            &code,
            &customer_token,
            customer,
            "customer",
            now,
            expires_at,
        );
        let (agent_url, agent_token) = self.agent_link(config, &code, agent, now, expires_at);
        let customer = RoomLink {
            url: customer_url,
            token: customer_token,
        };
        let agent_link = RoomLink {
            url: agent_url,
            token: agent_token,
        };
        Room::new(config, code, now, customer, agent_link, agent)
    }

    /// A fresh agent link and token for room `code`, naming `agent` (a
    /// room made before its agent was known names "agent").
    pub fn agent_link(
        &self,
        config: &VideoConfig,
        code: &str,
        agent: Option<&str>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> (String, String) {
        let token = random_token();
        let name = agent.unwrap_or("agent");
        let url = self.link(config, code, &token, name, "agent", now, expires_at);
        (url, token)
    }

    /// One side's link: to this server's room page (relay), or the
    /// template filled in with the room, the name, the role and a token.
    #[allow(clippy::too_many_arguments)]
    fn link(
        &self,
        config: &VideoConfig,
        code: &str,
        token: &str,
        name: &str,
        role: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> String {
        match &config.provider {
            ProviderConfig::Relay { .. } => format!("{}/room/{code}?token={token}", self.link_base),
            ProviderConfig::Template { url, jwt } => {
                let signed = jwt
                    .as_ref()
                    .map(|j| self.sign(j, code, name, role, now, expires_at))
                    .unwrap_or_default();
                url.replace("{room}", code)
                    .replace("{name}", &encode(name))
                    .replace("{role}", role)
                    .replace("{jwt}", &signed)
            }
        }
    }

    fn sign(
        &self,
        jwt: &JwtConfig,
        room: &str,
        name: &str,
        role: &str,
        now: DateTime<Utc>,
        room_expires: DateTime<Utc>,
    ) -> String {
        let exp = match jwt.ttl.and_then(|t| chrono::Duration::from_std(t).ok()) {
            Some(ttl) => now + ttl,
            None => room_expires,
        };
        let claims = Claims {
            iss: &jwt.app_id,
            aud: &jwt.audience,
            sub: &jwt.subject,
            room,
            iat: now.timestamp(),
            nbf: now.timestamp() - 10,
            exp: exp.timestamp(),
            context: ClaimsContext {
                user: ClaimsUser {
                    name,
                    moderator: role == "agent",
                    role,
                },
            },
        };
        // Present: `new` refused to start without it.
        let secret = self
            .secrets
            .get(&jwt.secret_env)
            .map(String::as_bytes)
            .unwrap_or_default();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap_or_default()
    }
}

/// `length` characters drawn uniformly from `alphabet` (rejection sampling
/// over random bytes, so no character is likelier than another).
pub fn random_code(length: usize, alphabet: &str) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    let n = chars.len().clamp(1, 256);
    let limit = 256 - 256 % n;
    let mut out = String::with_capacity(length);
    while out.len() < length {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        // Bytes 6 and 8 carry the UUID's fixed version and variant bits:
        // drawing from them would make some characters likelier.
        let random = bytes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 6 && *i != 8)
            .map(|(_, b)| *b);
        for b in random {
            if (b as usize) < limit && out.len() < length {
                out.push(chars[b as usize % n]);
            }
        }
    }
    out
}

/// 128 random bits as hex: a room token.
fn random_token() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    // Two v4 UUIDs hold 244 random bits; 32 hex digits of them are 128 bits
    // once the fixed version/variant digits are skipped.
    a.chars()
        .enumerate()
        .filter(|(i, _)| *i != 12 && *i != 16)
        .map(|(_, c)| c)
        .chain(b.chars().take(2))
        .collect()
}

/// Percent-encodes a display name for a URL.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::video::DEFAULT_CODE_ALPHABET;

    fn scenarios(toml: &str) -> Scenarios {
        Scenarios::new([engine::scenario::Scenario::from_toml(
            std::path::Path::new("v.toml"),
            toml,
        )
        .unwrap()])
    }

    const JITSI: &str = r#"
name = "v"
_media_type = "video"
_wait_for_agent = true
_ttl = "1h"
_target = { queue = "video" }
[_video]
room_ttl = "10m"
provider = { kind = "template", url = "https://meet.example/{room}?jwt={jwt}#name={name}", jwt = { app_id = "callbackd", secret_env = "JITSI_SECRET", subject = "meet.example" } }
"#;

    #[test]
    fn codes_have_the_length_and_alphabet_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let code = random_code(7, DEFAULT_CODE_ALPHABET);
            assert_eq!(code.chars().count(), 7);
            assert!(code.chars().all(|c| DEFAULT_CODE_ALPHABET.contains(c)));
            assert!(seen.insert(code), "25^7 codes: a repeat in 10,000 is ~1e-3");
        }
        let code = random_code(12, "ABCDEFGHJK");
        assert!(code.len() == 12 && code.chars().all(|c| "ABCDEFGHJK".contains(c)));
    }

    #[test]
    fn every_character_of_the_alphabet_is_about_as_likely() {
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..20_000 {
            for c in random_code(10, DEFAULT_CODE_ALPHABET).chars() {
                *counts.entry(c).or_insert(0u32) += 1;
            }
        }
        // 200,000 draws over 25 characters: 8,000 each, sd 88; the bounds
        // are 5.7 sd. Drawing from a UUID's fixed version and variant bytes
        // put some characters 10-15% off, far outside them.
        assert_eq!(counts.len(), 25);
        assert!(
            counts.values().all(|&n| (7_500..8_500).contains(&n)),
            "{counts:?}"
        );
    }

    #[test]
    fn relay_links_point_here_with_a_token_per_side() {
        let s = scenarios(&JITSI.replace(
            "provider = { kind = \"template\", url = \"https://meet.example/{room}?jwt={jwt}#name={name}\", jwt = { app_id = \"callbackd\", secret_env = \"JITSI_SECRET\", subject = \"meet.example\" } }",
            "",
        ));
        let maker = RoomMaker::new(&s, "https://cb.example".into(), |_| None).unwrap();
        let config = s.get("v").unwrap().video.clone().unwrap();
        let room = maker.make(&config, "Fatima", Some("a-1"), Utc::now());
        assert_eq!(room.provider, "relay");
        assert_eq!(room.customer_token.len(), 32);
        assert_ne!(room.customer_token, room.agent_token);
        assert_eq!(
            room.customer_url,
            format!(
                "https://cb.example/room/{}?token={}",
                room.code, room.customer_token
            )
        );
        assert_eq!(
            room.agent_url,
            format!(
                "https://cb.example/room/{}?token={}",
                room.code, room.agent_token
            )
        );
        assert_eq!((room.expires_at - room.opened_at).num_seconds(), 600);
    }

    #[test]
    fn template_links_carry_a_signed_token_per_side() {
        let s = scenarios(JITSI);
        let secret = "0123456789abcdef0123456789abcdef";
        let maker = RoomMaker::new(&s, "https://cb.example".into(), |var| {
            (var == "JITSI_SECRET").then(|| secret.to_owned())
        })
        .unwrap();
        let config = s.get("v").unwrap().video.clone().unwrap();
        let room = maker.make(&config, "Fatima Al-Ali", Some("a-1"), Utc::now());
        let prefix = format!("https://meet.example/{}?jwt=", room.code);
        for (url, name, moderator) in [
            (&room.customer_url, "Fatima Al-Ali", false),
            (&room.agent_url, "a-1", true),
        ] {
            let rest = url.strip_prefix(&prefix).unwrap();
            let (jwt, fragment) = rest.split_once('#').unwrap();
            assert_eq!(fragment, format!("name={}", encode(name)));
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
            validation.set_audience(&["jitsi"]);
            validation.set_issuer(&["callbackd"]);
            let data = jsonwebtoken::decode::<serde_json::Value>(
                jwt,
                &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
                &validation,
            )
            .expect("a valid HS256 token");
            assert_eq!(data.claims["room"], room.code.as_str());
            assert_eq!(data.claims["sub"], "meet.example");
            assert_eq!(data.claims["context"]["user"]["name"], name);
            assert_eq!(data.claims["context"]["user"]["moderator"], moderator);
            assert_eq!(
                data.claims["exp"].as_i64().unwrap(),
                room.expires_at.timestamp()
            );
            // A token signed with another secret does not verify.
            assert!(jsonwebtoken::decode::<serde_json::Value>(
                jwt,
                &jsonwebtoken::DecodingKey::from_secret(b"another secret, 32 bytes long!!!"),
                &validation,
            )
            .is_err());
        }
    }

    #[test]
    fn a_missing_or_short_secret_stops_start_up() {
        let s = scenarios(JITSI);
        let err = RoomMaker::new(&s, String::new(), |_| None).err().unwrap();
        assert!(err.to_string().contains("JITSI_SECRET"), "{err}");
        let err = RoomMaker::new(&s, String::new(), |_| Some("short".into()))
            .err()
            .unwrap();
        assert!(err.to_string().contains("shorter than 32"), "{err}");
    }
}
