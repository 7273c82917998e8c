//! Video: a service's video leg, its rooms (call sessions), and the
//! scenario's `[_video]` table.
//!
//! callbackd orchestrates video calls; it never carries media. A *leg* is
//! the video part of one service (a chat escalated to video, or a booked
//! video appointment): how it was asked for, how it is routed, which agent
//! took it, its rooms and the customer's survey. A *room* is one call
//! session: a unique code, join links for both sides, and what happened in
//! it (ringing, accepted or declined, who joined and left, start and end).
//!
//! Codes, tokens and links are made by the shell (they need randomness and
//! the provider's secrets); the machine only checks and records.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::Party;
use crate::scenario::{duration_secs_or_text, opt_duration_secs_or_text, Target};

/// Letters and digits that cannot be mistaken for each other when read
/// aloud or off a screen: no 0/O, 1/I/L, 2/Z, 5/S, 8/B.
pub const DEFAULT_CODE_ALPHABET: &str = "ACDEFGHJKMNPQRTUVWXY34679";
pub const DEFAULT_CODE_LENGTH: usize = 7;
pub const DEFAULT_ROOM_TTL: Duration = Duration::from_secs(3600);
/// At most this many rooms are kept per service; the oldest ended one goes first.
pub const ROOMS_KEPT: usize = 10;

/// The `[_video]` table of a scenario: how rooms are made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoConfig {
    #[serde(default)]
    pub provider: ProviderConfig,
    #[serde(default = "default_code_length")]
    pub code_length: usize,
    #[serde(default = "default_alphabet")]
    pub code_alphabet: String,
    /// How long a room's code can be used to join (Twilio's VIDEO_CODE_TTL).
    #[serde(with = "duration_secs_or_text", default = "default_room_ttl")]
    pub room_ttl: Duration,
    /// What a customer who opens a booked appointment's link early sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_room: Option<WaitingRoom>,
    #[serde(default)]
    pub survey: SurveyConfig,
}

impl Default for VideoConfig {
    fn default() -> Self {
        VideoConfig {
            provider: ProviderConfig::default(),
            code_length: DEFAULT_CODE_LENGTH,
            code_alphabet: DEFAULT_CODE_ALPHABET.to_owned(),
            room_ttl: DEFAULT_ROOM_TTL,
            waiting_room: None,
            survey: SurveyConfig::default(),
        }
    }
}

fn default_code_length() -> usize {
    DEFAULT_CODE_LENGTH
}
fn default_alphabet() -> String {
    DEFAULT_CODE_ALPHABET.to_owned()
}
fn default_room_ttl() -> Duration {
    DEFAULT_ROOM_TTL
}

/// Where the media goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderConfig {
    /// The built-in WebRTC signalling relay: SDP and ICE pass through the
    /// push channel, the browsers carry the media peer to peer. Join links
    /// are `{base_url}/room/{code}?token=…`.
    Relay {
        /// Handed to the browsers for their `RTCPeerConnection`.
        #[serde(default)]
        ice_servers: Vec<IceServer>,
    },
    /// An external meeting system (Jitsi style). `url` may use `{room}`,
    /// `{jwt}`, `{name}` and `{role}` (customer or agent).
    Template {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jwt: Option<JwtConfig>,
    },
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig::Relay {
            ice_servers: Vec::new(),
        }
    }
}

impl ProviderConfig {
    pub fn name(&self) -> &'static str {
        match self {
            ProviderConfig::Relay { .. } => "relay",
            ProviderConfig::Template { .. } => "template",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// A signed token (HS256) for a meeting system that checks one, as Jitsi's
/// token authentication does. The secret is read from the environment
/// variable `secret_env` at start-up, never from the scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// `iss`: Jitsi's `app_id`.
    pub app_id: String,
    pub secret_env: String,
    /// `aud`.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// `sub`: Jitsi's domain, `*` for any.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// How long a token is good for; the room's TTL when absent.
    #[serde(
        with = "opt_duration_secs_or_text",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<Duration>,
}

fn default_audience() -> String {
    "jitsi".into()
}
fn default_subject() -> String {
    "*".into()
}

/// A booked appointment's waiting room: an image or a video loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitingRoom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The one question asked after a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SurveyConfig {
    pub question: String,
    /// Answers are 1..=scale.
    pub scale: u8,
}

impl Default for SurveyConfig {
    fn default() -> Self {
        SurveyConfig {
            question: "How satisfied are you with your video call?".into(),
            scale: 5,
        }
    }
}

impl VideoConfig {
    /// Checks the table; errors are (key, why).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, why: &str| Err((format!("_video.{k}"), why.to_owned()));
        if !(4..=32).contains(&self.code_length) {
            return err("code_length", "must be 4 to 32");
        }
        let chars: Vec<char> = self.code_alphabet.chars().collect();
        let mut unique = chars.clone();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != chars.len() || !chars.iter().all(|c| c.is_ascii_alphanumeric()) {
            return err("code_alphabet", "must be distinct ASCII letters and digits");
        }
        if chars.len() < 10 {
            return err("code_alphabet", "must have at least 10 characters");
        }
        if self.room_ttl < Duration::from_secs(10) || self.room_ttl > Duration::from_secs(86_400) {
            return err("room_ttl", "must be 10s to 24h");
        }
        if !(2..=10).contains(&self.survey.scale) {
            return err("survey.scale", "must be 2 to 10");
        }
        if self.survey.question.trim().is_empty() {
            return err("survey.question", "must not be empty");
        }
        match &self.provider {
            ProviderConfig::Relay { ice_servers } => {
                for s in ice_servers {
                    if s.urls.is_empty()
                        || !s.urls.iter().all(|u| {
                            u.starts_with("stun:")
                                || u.starts_with("turn:")
                                || u.starts_with("turns:")
                        })
                    {
                        return err(
                            "provider.ice_servers",
                            "each needs urls that start with stun:, turn: or turns:",
                        );
                    }
                }
            }
            ProviderConfig::Template { url, jwt } => {
                let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
                if !scheme_ok || !url.contains("{room}") || url.chars().any(char::is_whitespace) {
                    return err(
                        "provider.url",
                        "must be an http(s) URL holding {room} (and {jwt} for a token)",
                    );
                }
                if let Some(jwt) = jwt {
                    if !url.contains("{jwt}") {
                        return err("provider.url", "must hold {jwt} when provider.jwt is set");
                    }
                    if jwt.app_id.trim().is_empty() {
                        return err("provider.jwt.app_id", "must not be empty");
                    }
                    let env_ok = !jwt.secret_env.is_empty()
                        && jwt
                            .secret_env
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !env_ok {
                        return err(
                            "provider.jwt.secret_env",
                            "must name an environment variable (letters, digits, '_')",
                        );
                    }
                }
            }
        }
        if let Some(w) = &self.waiting_room {
            if w.image.is_some() == w.video.is_some() {
                return err("waiting_room", "must set exactly one of image and video");
            }
            let url = w
                .image
                .as_deref()
                .or(w.video.as_deref())
                .unwrap_or_default();
            if !(url.starts_with("https://") || url.starts_with("http://") || url.starts_with('/'))
            {
                return err(
                    "waiting_room",
                    "image or video must be an http(s) URL or a path on this server",
                );
            }
        }
        Ok(())
    }

    /// When a room opened at `opened_at` can no longer be joined.
    pub fn room_expiry(&self, opened_at: DateTime<Utc>) -> DateTime<Utc> {
        // `validate` keeps room_ttl within a day; the hour is a fallback only.
        opened_at + chrono::Duration::from_std(self.room_ttl).unwrap_or(chrono::Duration::hours(1))
    }

    /// Whether `code` could have been made by this config (a cheap check
    /// before a lookup).
    pub fn is_code(&self, code: &str) -> bool {
        code.chars().count() == self.code_length
            && code.chars().all(|c| self.code_alphabet.contains(c))
    }
}

/// Whether `code` could be a room code of any config (used before a
/// lookup by code, when the scenario is not known yet).
pub fn looks_like_code(code: &str) -> bool {
    (4..=32).contains(&code.len()) && code.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Where the video leg is routed (the seed's routingData).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingData {
    pub queue: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<String>,
    pub priority: i32,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_agent: Option<String>,
}

impl RoutingData {
    /// A scenario's `_target` as routing data: where a service goes when
    /// its request brings no routingData of its own.
    pub fn from_target(target: &Target) -> RoutingData {
        RoutingData {
            queue: target.queue.clone(),
            skills: target.skills.as_ref().map(|s| s.as_str().to_owned()),
            priority: target.priority,
            attributes: BTreeMap::new(),
            preferred_agent: None,
        }
    }
}

/// How the video leg found its agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoRoute {
    /// The chat's agent, still connected, took the video too.
    SameAgent,
    /// The preferred (assigned) agent took it before its timeout.
    PreferredAgent,
    /// Routed by queue, skills and priority.
    Queue,
}

/// The video part of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoLeg {
    #[serde(with = "crate::rfc3339")]
    pub requested_at: DateTime<Utc>,
    pub requested_by: Party,
    /// The scenario whose `[_video]` table made the rooms.
    pub scenario: String,
    pub routing: RoutingData,
    /// The chat conversation this video continues, when it came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// The agent the video leg is with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed: Option<VideoRoute>,
    #[serde(
        default,
        with = "crate::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub connected_at: Option<DateTime<Utc>>,
    /// Call sessions, oldest first; only the last can be live.
    #[serde(default)]
    pub rooms: Vec<Room>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survey: Option<SurveyAnswer>,
}

/// One call session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Room {
    /// Unique among stored services (the store refuses a duplicate).
    pub code: String,
    /// `relay` or `template`.
    pub provider: String,
    #[serde(with = "crate::rfc3339")]
    pub opened_at: DateTime<Utc>,
    /// After this, a room nobody started can no longer be joined.
    #[serde(with = "crate::rfc3339")]
    pub expires_at: DateTime<Utc>,
    pub customer_url: String,
    pub agent_url: String,
    /// Secrets that prove which side a room request comes from.
    pub customer_token: String,
    pub agent_token: String,
    /// The agent a template room's agent link (and its signed token) names.
    /// A room made before its agent was known names nobody; when an agent
    /// takes it, the shell makes that agent's link ([`crate::machine::Event::AgentLinked`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_agent: Option<String>,
    /// When the other side was asked to answer.
    #[serde(
        default,
        with = "crate::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ringing_at: Option<DateTime<Utc>>,
    #[serde(
        default,
        with = "crate::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub accepted_at: Option<DateTime<Utc>>,
    #[serde(
        default,
        with = "crate::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub declined_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<Party>,
    #[serde(default)]
    pub participants: Vec<RoomParticipant>,
    /// Both sides are in.
    #[serde(
        default,
        with = "crate::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(
        default,
        with = "crate::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<RoomEnd>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomParticipant {
    pub party: Party,
    /// The agent's id, or the customer's chat nickname.
    pub name: String,
    #[serde(with = "crate::rfc3339")]
    pub joined_at: DateTime<Utc>,
    #[serde(
        default,
        with = "crate::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub left_at: Option<DateTime<Utc>>,
}

/// Why a room ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomEnd {
    /// One side left a call that had started.
    Left,
    /// The called side declined.
    Declined,
    /// Nobody started it before its code expired.
    Expired,
    /// The agent completed the service with `force`.
    Forced,
    /// The service ended (cancelled, TTL) while the room was live.
    ServiceEnded,
}

/// One side's way into a room: its link and the token that proves the side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomLink {
    pub url: String,
    pub token: String,
}

impl Room {
    /// A room just opened with `code` under `config`, nobody asked or in it
    /// yet. `agent` is the agent the agent link was made for, if any: only
    /// a template link names its agent (a relay link names nobody).
    pub fn new(
        config: &VideoConfig,
        code: String,
        opened_at: DateTime<Utc>,
        customer: RoomLink,
        agent_link: RoomLink,
        agent: Option<&str>,
    ) -> Room {
        let named_agent = match config.provider {
            ProviderConfig::Template { .. } => agent.map(str::to_owned),
            ProviderConfig::Relay { .. } => None,
        };
        Room {
            code,
            provider: config.provider.name().to_owned(),
            opened_at,
            expires_at: config.room_expiry(opened_at),
            customer_url: customer.url,
            agent_url: agent_link.url,
            customer_token: customer.token,
            agent_token: agent_link.token,
            named_agent,
            ringing_at: None,
            accepted_at: None,
            declined_at: None,
            answered_by: None,
            participants: Vec::new(),
            started_at: None,
            ended_at: None,
            end_reason: None,
        }
    }

    pub fn is_live(&self) -> bool {
        self.ended_at.is_none()
    }

    /// Whether `party` is in the room now.
    pub fn is_in(&self, party: Party) -> bool {
        self.participants
            .iter()
            .any(|p| p.party == party && p.left_at.is_none())
    }

    /// `ringing`, `accepted`, `started`, `ended` or `open` (nobody asked yet).
    pub fn status(&self) -> &'static str {
        if self.ended_at.is_some() {
            "ended"
        } else if self.started_at.is_some() {
            "started"
        } else if self.accepted_at.is_some() {
            "accepted"
        } else if self.ringing_at.is_some() {
            "ringing"
        } else {
            "open"
        }
    }

    /// The side a token belongs to.
    pub fn party_of(&self, token: &str) -> Option<Party> {
        if constant_time_eq(token, &self.customer_token) {
            Some(Party::Client)
        } else if constant_time_eq(token, &self.agent_token) {
            Some(Party::Agent)
        } else {
            None
        }
    }

    /// Whether this room's agent link must be made again for `agent`:
    /// template links carry the agent's name; relay links name nobody.
    pub fn needs_agent_link(&self, agent: &str) -> bool {
        self.provider == "template" && self.named_agent.as_deref() != Some(agent)
    }

    pub fn url_for(&self, party: Party) -> &str {
        match party {
            Party::Agent => &self.agent_url,
            _ => &self.customer_url,
        }
    }
}

/// Compares secrets without leaking where they differ through timing.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurveyAnswer {
    pub question: String,
    pub score: u8,
    pub scale: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(with = "crate::rfc3339")]
    pub at: DateTime<Utc>,
}

impl VideoLeg {
    pub fn last_room(&self) -> Option<&Room> {
        self.rooms.last()
    }

    pub fn live_room(&self) -> Option<&Room> {
        self.rooms.last().filter(|r| r.is_live())
    }

    pub fn live_room_mut(&mut self) -> Option<&mut Room> {
        self.rooms.last_mut().filter(|r| r.is_live())
    }

    /// Adds a room, dropping the oldest ended ones beyond [`ROOMS_KEPT`].
    pub fn push_room(&mut self, room: Room) {
        while self.rooms.len() >= ROOMS_KEPT {
            self.rooms.remove(0);
        }
        self.rooms.push(room);
    }

    /// Whether a call took place (a room started and ended): the survey may be answered.
    pub fn had_call(&self) -> bool {
        self.rooms
            .iter()
            .any(|r| r.started_at.is_some() && r.ended_at.is_some())
    }
}
