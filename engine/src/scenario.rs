//! Scenarios: the admin-written TOML that says how one kind of service behaves.
//!
//! One file in `scenarios/` is one service; its `name` is the `{scenario}` in
//! `/genesys/1/service/callback/{scenario}`. Option names follow GMS
//! (`_wait_for_agent`, `_ttl`, ...) so that a GMS admin recognises them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::record::ServiceRecord;
use crate::routing::skills::SkillExpr;
use crate::routing::target::{parse_steps, AgentSet, TargetStep};

/// Media of the interaction the scenario hands to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    Chat,
    Voice,
    Video,
}

/// What happens when the customer does not confirm in time (`_on_user_confirm_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnUserConfirmTimeout {
    /// Go on as if the customer had confirmed.
    ConnectAnyway,
    /// Complete the service with FAIL_USER_NO_CONFIRM.
    Fail,
    /// Free the agent and put the service back in its old place in the queue.
    Requeue,
}

impl<'de> Deserialize<'de> for OnUserConfirmTimeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // GMS writes these in upper case (CONNECT-ANYWAY); accept both spellings.
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "connect-anyway" => Ok(Self::ConnectAnyway),
            "fail" => Ok(Self::Fail),
            "requeue" => Ok(Self::Requeue),
            _ => Err(serde::de::Error::custom(format!(
                "`{s}` is not one of connect-anyway, fail, requeue"
            ))),
        }
    }
}

/// Where the service is routed (`_target`). The simple form is a table:
/// a queue, an optional skill expression, a priority. GMS's URS forms (one
/// target string, or a list of targets tried in order, see
/// [`crate::routing::target`]) fill `steps`; then `queue` is the virtual
/// queue the services are counted under (`_urs_virtual_queue`, or the
/// first group the targets name).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub queue: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<SkillExpr>,
    #[serde(default)]
    pub priority: i32,
    /// The URS targets, in order; empty in the simple form.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<TargetStep>,
}

/// The simple form as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueTarget {
    queue: String,
    #[serde(default)]
    skills: Option<SkillExpr>,
    #[serde(default)]
    priority: i32,
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match toml::Value::deserialize(d)? {
            toml::Value::Table(table) => {
                let t: QueueTarget = toml::Value::Table(table)
                    .try_into()
                    .map_err(|e: toml::de::Error| D::Error::custom(e.message()))?;
                Ok(Target {
                    queue: t.queue,
                    skills: t.skills,
                    priority: t.priority,
                    steps: Vec::new(),
                })
            }
            other => {
                let steps = parse_steps(other).map_err(D::Error::custom)?;
                // Counted under the first group named, unless
                // `_urs_virtual_queue` says otherwise (see `resolve`).
                let queue = steps
                    .iter()
                    .find_map(|s| s.target.group.clone())
                    .unwrap_or_default();
                Ok(Target {
                    queue,
                    skills: None,
                    priority: 0,
                    steps,
                })
            }
        }
    }
}

impl Target {
    /// Applies `_urs_virtual_queue`: the services are counted under it, and
    /// a simple target's queue becomes the group its agents come from.
    fn resolve(&mut self, virtual_queue: Option<&str>) {
        let Some(vq) = virtual_queue else { return };
        if self.steps.is_empty() && vq != self.queue {
            self.steps = vec![TargetStep {
                target: AgentSet {
                    group: Some(self.queue.clone()),
                    agent: None,
                    skills: self.skills.take(),
                },
                timeout: None,
                clear: false,
                skip_if: None,
            }];
        }
        self.queue = vq.to_owned();
    }
}

/// Texts returned to the customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Texts {
    /// `_text` of the create answer.
    pub created: String,
    /// `_display_message` of the agent-available notification.
    pub agent_available: String,
    /// `_label` of the StartChat dialog.
    pub start_chat_label: String,
}

impl Default for Texts {
    fn default() -> Self {
        Texts {
            created: "We will notify you when agent is available".into(),
            agent_available: "An agent is available".into(),
            start_chat_label: "Start Chat".into(),
        }
    }
}

/// `_agent_ready_threshold_passed` of check-queue-position is true when the
/// EWT is at most `eta` and the position at most `position` (or the EWT is unknown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentReadyThreshold {
    #[serde(with = "duration_secs_or_text")]
    pub eta: Duration,
    pub position: usize,
}

impl AgentReadyThreshold {
    /// Whether a queued service at `position` with this `eta` (seconds)
    /// passes, and why, in GMS's words (`eta <= 60 and position <= 3`).
    pub fn check(&self, position: usize, eta: Option<u64>) -> (bool, String) {
        let Some(eta) = eta else {
            return (true, "eta n/a".to_owned());
        };
        let max_eta = self.eta.as_secs();
        let eta_ok = eta <= max_eta;
        let position_ok = position <= self.position;
        let reason = match (eta_ok, position_ok) {
            (true, true) => format!("eta <= {max_eta} and position <= {}", self.position),
            (false, true) => format!("eta > {max_eta}"),
            (true, false) => format!("position > {}", self.position),
            (false, false) => format!("eta > {max_eta} and position > {}", self.position),
        };
        (eta_ok && position_ok, reason)
    }
}

impl Default for AgentReadyThreshold {
    fn default() -> Self {
        AgentReadyThreshold {
            eta: Duration::from_secs(35),
            position: 5,
        }
    }
}

/// One scenario file, as written by the admin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(rename = "_media_type")]
    pub media_type: MediaType,
    #[serde(rename = "_wait_for_agent")]
    pub wait_for_agent: bool,
    #[serde(rename = "_wait_for_user_confirm", default)]
    pub wait_for_user_confirm: bool,
    /// How long the service is kept after its desired time (`_ttl`).
    #[serde(rename = "_ttl", with = "duration_secs_or_text")]
    pub ttl: Duration,
    #[serde(
        rename = "_user_confirm_timeout",
        with = "duration_secs_or_text",
        default = "default_user_confirm_timeout"
    )]
    pub user_confirm_timeout: Duration,
    #[serde(rename = "_on_user_confirm_timeout", default = "default_on_timeout")]
    pub on_user_confirm_timeout: OnUserConfirmTimeout,
    /// How many times the customer is asked to confirm before the service fails.
    #[serde(rename = "_max_user_confirm_attempts", default = "default_attempts")]
    pub max_user_confirm_attempts: u32,
    /// How long a service may wait in the queue for an agent; none means until `_ttl`.
    #[serde(
        rename = "_find_agent_timeout",
        with = "opt_duration_secs_or_text",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub find_agent_timeout: Option<Duration>,
    #[serde(rename = "_target")]
    pub target: Target,
    /// GMS: the virtual queue the services are counted under (position,
    /// EWT, statistics), whatever agents `_target` names.
    #[serde(
        rename = "_urs_virtual_queue",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub urs_virtual_queue: Option<String>,
    /// Request fields that must be present and non-empty on create.
    #[serde(rename = "_mandatory_fields", default)]
    pub mandatory_fields: Vec<String>,
    #[serde(rename = "_texts", default)]
    pub texts: Texts,
    #[serde(rename = "_agent_ready_threshold", default)]
    pub agent_ready_threshold: AgentReadyThreshold,
    /// Extra `_chat_parameters` of the StartChat dialog (GMS shows `subject`).
    #[serde(rename = "_chat_parameters", default)]
    pub chat_parameters: BTreeMap<String, String>,
    /// Where notifications of services created with `_device_os=httpcb` are
    /// POSTed. Without it, such services are refused.
    #[serde(
        rename = "_httpcb_url",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub httpcb_url: Option<String>,
    /// Attempts per notification, the first included.
    #[serde(rename = "_httpcb_attempts", default = "default_httpcb_attempts")]
    pub httpcb_attempts: u32,
    /// Wait before the second attempt; it doubles after each failure.
    #[serde(
        rename = "_httpcb_backoff",
        with = "duration_secs_or_text",
        default = "default_httpcb_backoff"
    )]
    pub httpcb_backoff: Duration,
    /// How long one attempt may take.
    #[serde(
        rename = "_httpcb_timeout",
        with = "duration_secs_or_text",
        default = "default_httpcb_timeout"
    )]
    pub httpcb_timeout: Duration,
    /// Booked callbacks: business hours and slots. Absent: no booking.
    #[serde(rename = "_schedule", default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::schedule::Schedule>,
    /// Video rooms: provider, codes, TTL, waiting room, survey. A scenario
    /// with it can be the target of a chat's escalation to video, and its
    /// services (media `video`) get a room when an agent takes them.
    #[serde(rename = "_video", default, skip_serializing_if = "Option::is_none")]
    pub video: Option<crate::video::VideoConfig>,
    /// How long only the preferred (assigned) agent may take a service
    /// before the rest of its queue may.
    #[serde(
        rename = "_preferred_agent_timeout",
        with = "duration_secs_or_text",
        default = "default_preferred_agent_timeout"
    )]
    pub preferred_agent_timeout: Duration,
    /// GMS's agent preview (the Voice - User Terminated options of GMS
    /// 8.5): the reserved agent is offered the service and accepts or
    /// rejects it before the customer hears of an agent.
    #[serde(rename = "_agent_preview", default)]
    pub agent_preview: bool,
    /// How long the agent has to answer a preview (GMS default 30 s).
    #[serde(
        rename = "_agent_preview_timeout",
        with = "duration_secs_or_text",
        default = "default_agent_preview_timeout"
    )]
    pub agent_preview_timeout: Duration,
    /// Whether an unanswered preview makes its agent not ready, as an ACD
    /// does with an agent who does not answer (callbackd's default: true).
    #[serde(
        rename = "_agent_preview_timeout_set_notready",
        default = "default_true"
    )]
    pub agent_preview_timeout_set_notready: bool,
    /// How many rejects a service takes: the last of them completes it
    /// (GMS: AGENT_PREVIEW_CANCEL_AFTER_<n>REJECTS); 0, GMS's default, means agents may not reject.
    #[serde(rename = "_agent_preview_allow_reject", default)]
    pub agent_preview_allow_reject: u32,
    /// The user-data keys the preview shows the agent (GMS: comma-separated);
    /// empty shows all of the user data.
    #[serde(
        rename = "_agent_preview_data",
        default,
        with = "comma_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub agent_preview_data: Vec<String>,
    // GMS's throttling and duplicate options (the callback section and
    // Queue Management in the GMS 8.5 options reference), with GMS's names
    // and windows. A limit that is absent is off; the windows and the
    // request-parameter limit take GMS's defaults. Counted per scenario
    // (GMS: per service).
    /// Creates per customer number in 24 h (GMS default 6).
    #[serde(
        rename = "_throttle_customer_number_limit",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub throttle_customer_number_limit: Option<u32>,
    /// Creates in the scenario per `_throttle_ttl_1` (GMS default 500).
    #[serde(
        rename = "_throttle_callbacks_per_service_1",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub throttle_callbacks_per_service_1: Option<u32>,
    #[serde(
        rename = "_throttle_ttl_1",
        with = "duration_secs_or_text",
        default = "default_throttle_ttl_1"
    )]
    pub throttle_ttl_1: Duration,
    /// Creates in the scenario per `_throttle_ttl_2` (GMS default 1000).
    #[serde(
        rename = "_throttle_callbacks_per_service_2",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub throttle_callbacks_per_service_2: Option<u32>,
    #[serde(
        rename = "_throttle_ttl_2",
        with = "duration_secs_or_text",
        default = "default_throttle_ttl_2"
    )]
    pub throttle_ttl_2: Duration,
    /// Request parameters (body fields, or headers) whose every value is
    /// limited to `_throttle_request_parameters_limit` creates in 24 h.
    /// GMS writes them comma-separated (GMS default `_customer_number`).
    #[serde(
        rename = "_throttle_request_parameters",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub throttle_request_parameters: Option<String>,
    #[serde(
        rename = "_throttle_request_parameters_limit",
        default = "default_request_parameters_limit"
    )]
    pub throttle_request_parameters_limit: u32,
    /// A header of a throttled parameter's name wins over the body's value.
    #[serde(
        rename = "_enable_throttle_header_parameters",
        default = "default_true"
    )]
    pub throttle_header_parameters: bool,
    #[serde(rename = "_enable_in_queue_checking", default)]
    pub in_queue_checking: InQueueChecking,
    /// Active (not completed) services the scenario may hold; a create
    /// past it is refused.
    #[serde(
        rename = "max_queued_callbacks_per_service",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_queued_callbacks_per_service: Option<u32>,
    /// GMS: refuse a `_customer_number` that cannot be a phone number
    /// (libphonenumber's rules, see [`crate::phone`]). Off by default.
    #[serde(rename = "_disallow_impossible_phone_numbers", default)]
    pub disallow_impossible_phone_numbers: bool,
    /// GMS: refuse a premium-rate `_customer_number`. Off by default.
    #[serde(rename = "_disallow_premium_phone_numbers", default)]
    pub disallow_premium_phone_numbers: bool,
    /// GMS: the country (ISO 3166 alpha-2) a number without `+` is read
    /// in, for the two checks above (GMS default `US`).
    #[serde(rename = "_default_country", default = "default_country")]
    pub default_country: String,
    /// Where this scenario's events go (`[[_webhook]]`, see
    /// [`crate::webhook`]).
    #[serde(rename = "_webhook", default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<crate::webhook::WebhookConfig>,
    /// GMS: refuse an immediate callback (no `_desired_time`) asked for
    /// while the `[_schedule]`'s business hours are closed. Off by default,
    /// so a scenario that does not set it keeps taking callbacks at any
    /// hour; only valid with a `[_schedule]` (without one a scenario is
    /// always open).
    #[serde(rename = "_enable_reject_out_of_office_hours", default)]
    pub reject_out_of_office_hours: bool,
}

fn default_country() -> String {
    "US".to_owned()
}

/// GMS's `_enable_in_queue_checking`: `true`, `false` or `"strict"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InQueueChecking {
    /// No check (callbackd's default; GMS's is `true`).
    #[default]
    Off,
    /// Refuse a create when the number already has two active services.
    On,
    /// Refuse a create when the number already has one.
    Strict,
}

impl InQueueChecking {
    /// How many active services of one number the scenario allows before
    /// it refuses the next create.
    pub fn max_active(self) -> Option<u32> {
        match self {
            InQueueChecking::Off => None,
            InQueueChecking::On => Some(2),
            InQueueChecking::Strict => Some(1),
        }
    }
}

impl Serialize for InQueueChecking {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            InQueueChecking::Off => s.serialize_bool(false),
            InQueueChecking::On => s.serialize_bool(true),
            InQueueChecking::Strict => s.serialize_str("strict"),
        }
    }
}

impl<'de> Deserialize<'de> for InQueueChecking {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Text(String),
        }
        let wrong = || serde::de::Error::custom("expected true, false or \"strict\"");
        match Raw::deserialize(d).map_err(|_| wrong())? {
            Raw::Flag(true) => Ok(InQueueChecking::On),
            Raw::Flag(false) => Ok(InQueueChecking::Off),
            Raw::Text(t) if t == "strict" => Ok(InQueueChecking::Strict),
            Raw::Text(_) => Err(wrong()),
        }
    }
}

impl Scenario {
    /// The checks of the customer's number this scenario asks for.
    pub fn phone_rules(&self) -> crate::phone::PhoneRules {
        let disallow_impossible = self.disallow_impossible_phone_numbers;
        let disallow_premium = self.disallow_premium_phone_numbers;
        crate::phone::PhoneRules {
            disallow_impossible,
            disallow_premium,
            // Checked when the scenario is loaded, and read only by a check
            // that is on: finding it compares the code with every
            // country's (about 650 instructions a create).
            default_country: if disallow_impossible || disallow_premium {
                crate::phone::country(&self.default_country).unwrap_or(phonenumber::country::Id::US)
            } else {
                phonenumber::country::Id::US
            },
        }
    }

    /// The request parameters `_throttle_request_parameters` names.
    pub fn throttle_parameters(&self) -> impl Iterator<Item = &str> {
        self.throttle_request_parameters
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }
}

/// Every throttle counts creates in a day unless GMS names another window.
pub const THROTTLE_DAY: Duration = Duration::from_secs(86_400);

fn default_throttle_ttl_1() -> Duration {
    Duration::from_secs(300)
}
fn default_throttle_ttl_2() -> Duration {
    Duration::from_secs(3600)
}
fn default_request_parameters_limit() -> u32 {
    6
}
fn default_true() -> bool {
    true
}

fn default_agent_preview_timeout() -> Duration {
    Duration::from_secs(30)
}

/// GMS writes lists as one comma-separated string; a TOML array is taken too.
mod comma_list {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        List(Vec<String>),
    }

    pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.join(","))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        let items = match Either::deserialize(d)? {
            Either::Text(t) => t.split(',').map(str::to_owned).collect(),
            Either::List(l) => l,
        };
        Ok(items
            .into_iter()
            .map(|i| i.trim().to_owned())
            .filter(|i| !i.is_empty())
            .collect())
    }
}

fn default_preferred_agent_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_httpcb_attempts() -> u32 {
    5
}
fn default_httpcb_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_httpcb_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_user_confirm_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_on_timeout() -> OnUserConfirmTimeout {
    OnUserConfirmTimeout::Fail
}
fn default_attempts() -> u32 {
    3
}

impl Scenario {
    /// How this scenario's rooms are made: its `[_video]` table, or the
    /// defaults (the built-in relay) for a video scenario without one.
    pub fn video_config(&self) -> Option<std::borrow::Cow<'_, crate::video::VideoConfig>> {
        match (&self.video, self.media_type) {
            (Some(v), _) => Some(std::borrow::Cow::Borrowed(v)),
            (None, MediaType::Video) => Some(std::borrow::Cow::Owned(Default::default())),
            (None, _) => None,
        }
    }
}

/// A scenario file that cannot be used, with the file, the key and why.
#[derive(Debug, thiserror::Error)]
pub struct ScenarioError {
    pub file: PathBuf,
    pub key: Option<String>,
    pub reason: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{}: key `{}`: {}", self.file.display(), key, self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

/// Durations are GMS-style whole seconds (`86400`) or humantime text (`"24h"`, `"500ms"`).
pub(crate) mod duration_secs_or_text {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(i64),
        Text(String),
    }

    pub fn parse(raw_secs: Option<i64>, raw_text: Option<&str>) -> Result<Duration, String> {
        if let Some(s) = raw_secs {
            return u64::try_from(s).map(Duration::from_secs).map_err(|_| {
                format!("{s} is negative; a duration is seconds >= 0 or text like \"30s\"")
            });
        }
        let text = raw_text.unwrap_or_default();
        humantime::parse_duration(text.trim())
            .map_err(|e| format!("`{text}` is not a duration ({e}); write seconds or text like \"30s\", \"5m\", \"24h\""))
    }

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a duration: seconds or text like \"30s\"")
        })? {
            Raw::Secs(s) => parse(Some(s), None),
            Raw::Text(t) => parse(None, Some(&t)),
        }
        .map_err(serde::de::Error::custom)
    }
}

pub(crate) mod opt_duration_secs_or_text {
    use super::*;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => duration_secs_or_text::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        duration_secs_or_text::deserialize(d).map(Some)
    }
}

impl Scenario {
    /// Parses and validates one scenario file's text.
    pub fn from_toml(file: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let mut scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError {
            file: file.to_owned(),
            key: e.span().and_then(|span| key_at(text, span.start)),
            reason: e.to_string().trim().to_owned(),
        })?;
        if let Some(vq) = &scenario.urs_virtual_queue {
            if vq.trim().is_empty() || vq.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ScenarioError {
                    file: file.to_owned(),
                    key: Some("_urs_virtual_queue".into()),
                    reason: "must be a non-empty name without spaces".into(),
                });
            }
        }
        let vq = scenario.urs_virtual_queue.clone();
        scenario.target.resolve(vq.as_deref());
        scenario.validate(file)?;
        Ok(scenario)
    }

    fn validate(&self, file: &Path) -> Result<(), ScenarioError> {
        let err = |key: &str, reason: &str| ScenarioError {
            file: file.to_owned(),
            key: Some(key.to_owned()),
            reason: reason.to_owned(),
        };
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !name_ok {
            return Err(err("name", "must be non-empty and use only letters, digits, '-', '_' and '.' (it is part of the URL)"));
        }
        if self.wait_for_user_confirm && !self.wait_for_agent {
            return Err(err(
                "_wait_for_user_confirm",
                "is true but _wait_for_agent is false; a customer can only confirm once an agent waits",
            ));
        }
        if self.ttl.is_zero() {
            return Err(err("_ttl", "must be greater than zero"));
        }
        if self.wait_for_user_confirm && self.user_confirm_timeout.is_zero() {
            return Err(err("_user_confirm_timeout", "must be greater than zero"));
        }
        if self.max_user_confirm_attempts == 0 {
            return Err(err("_max_user_confirm_attempts", "must be at least 1"));
        }
        if self.find_agent_timeout.is_some_and(|d| d.is_zero()) {
            return Err(err("_find_agent_timeout", "must be greater than zero"));
        }
        if self.target.queue.trim().is_empty() {
            if !self.target.steps.is_empty() {
                return Err(err(
                    "_urs_virtual_queue",
                    "must be set: no target in _target names a group of agents (…@StatServer.GA) to count the services under",
                ));
            }
            return Err(err("_target.queue", "must name a queue"));
        }
        if let Some(url) = &self.httpcb_url {
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !scheme_ok || url.len() < "http://x".len() || url.chars().any(char::is_whitespace) {
                return Err(err("_httpcb_url", "must be an http:// or https:// URL"));
            }
        }
        if !(1..=20).contains(&self.httpcb_attempts) {
            return Err(err("_httpcb_attempts", "must be between 1 and 20"));
        }
        if self.httpcb_backoff > Duration::from_secs(60) {
            return Err(err("_httpcb_backoff", "must be at most 60s"));
        }
        if self.httpcb_timeout.is_zero() {
            return Err(err("_httpcb_timeout", "must be greater than zero"));
        }
        for webhook in &self.webhooks {
            webhook.validate().map_err(|(key, why)| err(&key, &why))?;
        }
        if crate::phone::country(&self.default_country).is_none() {
            return Err(err(
                "_default_country",
                "must be a two-letter ISO 3166 country code such as US or GB",
            ));
        }
        if let Some(schedule) = &self.schedule {
            schedule.validate().map_err(|(key, why)| err(&key, &why))?;
        }
        if self.reject_out_of_office_hours && self.schedule.is_none() {
            return Err(err(
                "_enable_reject_out_of_office_hours",
                "is true but the scenario has no _schedule: without business hours it is always open",
            ));
        }
        if let Some(video) = &self.video {
            video.validate().map_err(|(key, why)| err(&key, &why))?;
        }
        let t = self;
        for (key, limit) in [
            (
                "_throttle_customer_number_limit",
                t.throttle_customer_number_limit,
            ),
            (
                "_throttle_callbacks_per_service_1",
                t.throttle_callbacks_per_service_1,
            ),
            (
                "_throttle_callbacks_per_service_2",
                t.throttle_callbacks_per_service_2,
            ),
            (
                "_throttle_request_parameters_limit",
                Some(t.throttle_request_parameters_limit),
            ),
            (
                "max_queued_callbacks_per_service",
                t.max_queued_callbacks_per_service,
            ),
        ] {
            if limit == Some(0) {
                return Err(err(key, "must be at least 1 (leave it out for no limit)"));
            }
        }
        for (key, ttl) in [
            ("_throttle_ttl_1", t.throttle_ttl_1),
            ("_throttle_ttl_2", t.throttle_ttl_2),
        ] {
            if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(7 * 86_400) {
                return Err(err(key, "must be between 1s and 7 days"));
            }
        }
        if t.throttle_parameters()
            .any(|p| p.len() > 64 || p.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(err(
                "_throttle_request_parameters",
                "must be comma-separated names of at most 64 characters",
            ));
        }
        if self.preferred_agent_timeout.is_zero()
            || self.preferred_agent_timeout > Duration::from_secs(86_400)
        {
            return Err(err(
                "_preferred_agent_timeout",
                "must be more than 0s and at most 24h",
            ));
        }
        if self.agent_preview && !self.wait_for_agent {
            return Err(err(
                "_agent_preview",
                "is true but _wait_for_agent is false; an agent previews a service it is reserved for from the queue",
            ));
        }
        if self.agent_preview
            && (self.agent_preview_timeout.is_zero()
                || self.agent_preview_timeout > Duration::from_secs(86_400))
        {
            return Err(err(
                "_agent_preview_timeout",
                "must be more than 0s and at most 24h",
            ));
        }
        Ok(())
    }
}

/// The key of the `key = value` line holding byte `offset`, for error messages.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let key = line.split('=').next()?.trim();
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.\"".contains(c));
    if !(plain && line.contains('=')) {
        return None;
    }
    let key = key.trim_matches('"');
    // Inside a `[table]`, name the key by its whole path (`_schedule.timezone`).
    let table = text[..start].lines().rev().find_map(|l| {
        let l = l.trim();
        (l.starts_with('[') && l.ends_with(']') && !l.starts_with("[["))
            .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned())
    });
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_owned(),
    })
}

/// The scenario whose `[_video]` makes rooms when a request names none.
pub const DEFAULT_VIDEO_SCENARIO: &str = "video-immediate";

/// Why no scenario can make a request's rooms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VideoScenarioError {
    #[error("scenario `{0}` does not exist")]
    Unknown(String),
    #[error("scenario `{0}` has no [_video] table and is not a video scenario")]
    NotVideo(String),
    #[error("is required: no `{DEFAULT_VIDEO_SCENARIO}` scenario is loaded to make rooms")]
    NoDefault,
}

/// All scenarios, by name.
#[derive(Debug, Clone, Default)]
pub struct Scenarios {
    by_name: BTreeMap<String, std::sync::Arc<Scenario>>,
}

impl Scenarios {
    pub fn new(list: impl IntoIterator<Item = Scenario>) -> Self {
        Scenarios {
            by_name: list
                .into_iter()
                .map(|s| (s.name.clone(), std::sync::Arc::new(s)))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&std::sync::Arc<Scenario>> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &std::sync::Arc<Scenario>> {
        self.by_name.values()
    }

    /// The scenario whose `[_video]` makes a service's rooms: the one
    /// `named` (when not blank), else the video scenario of `record`'s leg,
    /// else `record`'s own when it is a video scenario, else
    /// [`DEFAULT_VIDEO_SCENARIO`].
    pub fn video_for(
        &self,
        named: Option<&str>,
        record: Option<&ServiceRecord>,
    ) -> Result<std::sync::Arc<Scenario>, VideoScenarioError> {
        let usable = |s: &&std::sync::Arc<Scenario>| s.video_config().is_some();
        if let Some(name) = named.map(str::trim).filter(|n| !n.is_empty()) {
            let s = self
                .get(name)
                .ok_or_else(|| VideoScenarioError::Unknown(name.to_owned()))?;
            if !usable(&s) {
                return Err(VideoScenarioError::NotVideo(name.to_owned()));
            }
            return Ok(s.clone());
        }
        let leg = record
            .and_then(|r| r.video.as_ref())
            .and_then(|v| self.get(&v.scenario))
            .filter(usable);
        let own = record.and_then(|r| self.get(&r.scenario)).filter(usable);
        leg.or(own)
            .or_else(|| self.get(DEFAULT_VIDEO_SCENARIO).filter(usable))
            .cloned()
            .ok_or(VideoScenarioError::NoDefault)
    }

    /// Reads every `*.toml` of `dir`. Refuses a bad file, or two files with one name.
    pub fn load_dir(dir: &Path) -> Result<Scenarios, ScenarioError> {
        let io_err = |file: &Path, e: std::io::Error| ScenarioError {
            file: file.to_owned(),
            key: None,
            reason: e.to_string(),
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| io_err(dir, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut by_name = BTreeMap::new();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| io_err(&file, e))?;
            let scenario = Scenario::from_toml(&file, &text)?;
            if by_name.contains_key(&scenario.name) {
                return Err(ScenarioError {
                    file,
                    key: Some("name".into()),
                    reason: format!("scenario `{}` is defined twice", scenario.name),
                });
            }
            by_name.insert(scenario.name.clone(), std::sync::Arc::new(scenario));
        }
        if by_name.is_empty() {
            return Err(ScenarioError {
                file: dir.to_owned(),
                key: None,
                reason: "holds no *.toml scenario".into(),
            });
        }
        Ok(Scenarios { by_name })
    }
}
