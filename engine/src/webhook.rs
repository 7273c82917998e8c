//! Webhooks: a scenario's subscriptions (`[[_webhook]]`), and the events a
//! transition owes them.
//!
//! An event is written into the record's webhook outbox by the same
//! transition that caused it (so in the same atomic write), and a
//! [`TimerKind::Webhook`](crate::record::TimerKind) is armed for it: the
//! timer is durable and claimed by one node at a time, so delivery survives
//! a node dying between the write and the POST, and happens once across
//! nodes in the normal case. The runtime POSTs what is pending, in order per
//! subscription, and reports back with
//! [`Event::WebhooksAttempted`](crate::machine::Event::WebhooksAttempted),
//! which takes the delivered events out and arms the next retry.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::machine::{AppointmentChange, Effect, Event};
use crate::record::{CallbackReason, ServiceRecord, ServiceState, TimerKind};

/// Every event type a subscription may name.
pub const EVENT_TYPES: [&str; 11] = [
    "service.created",
    "service.routed",
    "service.connected",
    "service.completed",
    "service.cancelled",
    "booking.created",
    "booking.rescheduled",
    "booking.cancelled",
    "room.started",
    "room.ended",
    "survey.answered",
];

/// Attempts before an event is given up (kept in the record's `failed`,
/// for an operator to retry): with [`retry_delay`] that is about two hours
/// of a receiver being down.
pub const MAX_ATTEMPTS: u32 = 16;

/// The first retry's delay; each further one doubles, up to [`RETRY_CAP`].
pub const FIRST_RETRY: Duration = Duration::from_secs(2);
pub const RETRY_CAP: Duration = Duration::from_secs(600);

/// Events a record keeps waiting at most; past it the oldest is dropped
/// (and counted in `dropped`), so a receiver that is gone for good cannot
/// grow a record without bound.
pub const MAX_PENDING: usize = 100;

/// One `[[_webhook]]` of a scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// The environment variable that holds the Standard Webhooks secret
    /// (`whsec_…`); the file never holds it.
    pub secret_env: String,
    /// The event types it wants; absent: every one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
}

impl WebhookConfig {
    pub fn wants(&self, kind: &str) -> bool {
        self.events
            .as_ref()
            .is_none_or(|events| events.iter().any(|e| e == kind))
    }

    /// Checks the subscription; `Err((key, why))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let url_ok = (self.url.starts_with("http://") || self.url.starts_with("https://"))
            && self.url.len() > "http://x".len()
            && !self.url.chars().any(char::is_whitespace);
        if !url_ok {
            return Err((
                "_webhook.url".into(),
                "must be an http:// or https:// URL".into(),
            ));
        }
        let env_ok = !self.secret_env.is_empty()
            && self
                .secret_env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !env_ok {
            return Err((
                "_webhook.secret_env".into(),
                "must name an environment variable (letters, digits, _)".into(),
            ));
        }
        if let Some(events) = &self.events {
            if events.is_empty() {
                return Err((
                    "_webhook.events".into(),
                    "is empty; leave it out for every event".into(),
                ));
            }
            if let Some(bad) = events.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
                return Err((
                    "_webhook.events".into(),
                    format!("`{bad}` is not one of {}", EVENT_TYPES.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

/// One event on its way to one subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// The Standard Webhooks `webhook-id`: the same on every retry.
    pub id: String,
    /// The subscription: its place in the scenario's `[[_webhook]]` list.
    pub target: usize,
    #[serde(rename = "type")]
    pub kind: String,
    pub at: DateTime<Utc>,
    pub data: Value,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl WebhookEvent {
    /// The body a receiver gets, as the Standard Webhooks specification
    /// shapes it: `type`, `timestamp`, `data`.
    pub fn body(&self) -> Value {
        json!({
            "type": self.kind,
            "timestamp": self.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": self.data,
        })
    }
}

/// A record's webhook outbox.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Webhooks {
    /// Waiting to be delivered, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<WebhookEvent>,
    /// Given up after [`MAX_ATTEMPTS`], for an operator to retry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<WebhookEvent>,
    /// How many events [`MAX_PENDING`] pushed out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u64,
    /// The next event's number in this record.
    #[serde(default)]
    pub next: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Webhooks {
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.failed.is_empty() && self.dropped == 0 && self.next == 0
    }
}

/// The delay before retry `attempt` (1 for the first retry).
pub fn retry_delay(attempt: u32) -> Duration {
    let doubled = FIRST_RETRY.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    doubled.min(RETRY_CAP)
}

/// The event types a change of `before` into `after` (by `event`, with
/// `effects`) owes; `before` is `None` for a create.
pub fn owed(
    before: Option<&ServiceRecord>,
    after: &ServiceRecord,
    event: Option<&Event>,
    effects: &[Effect],
) -> Vec<&'static str> {
    let mut kinds = Vec::new();
    if before.is_none() {
        kinds.push("service.created");
    }
    let from = before.map(|b| b.state);
    if from != Some(after.state) {
        match after.state {
            ServiceState::WaitForUserConfirm => kinds.push("service.routed"),
            ServiceState::Connected => kinds.push("service.connected"),
            ServiceState::Completed if after.reason == Some(CallbackReason::Cancelled) => {
                kinds.push("service.cancelled")
            }
            ServiceState::Completed => kinds.push("service.completed"),
            _ => {}
        }
    }
    for effect in effects {
        if let Effect::Appointment { change } = effect {
            match change {
                AppointmentChange::Booked => kinds.push("booking.created"),
                AppointmentChange::Rescheduled { .. } => kinds.push("booking.rescheduled"),
                AppointmentChange::Cancelled => kinds.push("booking.cancelled"),
                AppointmentChange::Reminder => {}
            }
        }
    }
    let room = |r: &ServiceRecord| {
        r.video.as_ref().and_then(|v| v.last_room()).map(|room| {
            (
                room.code.clone(),
                room.started_at.is_some(),
                room.ended_at.is_some(),
            )
        })
    };
    if let Some((code, started, ended)) = room(after) {
        let (was_started, was_ended) = match before.and_then(room) {
            Some((before_code, s, e)) if before_code == code => (s, e),
            _ => (false, false),
        };
        if started && !was_started {
            kinds.push("room.started");
        }
        if ended && !was_ended && started {
            kinds.push("room.ended");
        }
    }
    if let Some(Event::SurveyAnswered { .. }) = event {
        kinds.push("survey.answered");
    }
    kinds
}

/// Writes the events a change owes into the record's outbox, one per
/// subscription that wants it. (The machine arms the delivery timer.)
pub fn queue(
    rec: &mut ServiceRecord,
    subscriptions: &[WebhookConfig],
    kinds: &[&'static str],
    now: DateTime<Utc>,
) {
    if subscriptions.is_empty() || kinds.is_empty() {
        return;
    }
    for kind in kinds {
        for (target, subscription) in subscriptions.iter().enumerate() {
            if !subscription.wants(kind) {
                continue;
            }
            let webhooks = &mut rec.webhooks;
            webhooks.next += 1;
            let event = WebhookEvent {
                id: format!("msg_{}_{}", rec.id, webhooks.next),
                target,
                kind: (*kind).to_owned(),
                at: now,
                data: data(rec, kind),
                attempts: 0,
                last_error: None,
            };
            let webhooks = &mut rec.webhooks;
            webhooks.pending.push(event);
            if webhooks.pending.len() > MAX_PENDING {
                webhooks.pending.remove(0);
                webhooks.dropped += 1;
            }
        }
    }
}

/// What an event says: the scenario, the service, its GMS state and
/// reason, and what the type is about.
fn data(rec: &ServiceRecord, kind: &str) -> Value {
    let mut data = json!({
        "scenario": rec.scenario,
        "service_id": rec.id,
        "state": rec.state.gms_name(),
        "reason": rec.reason_name(),
    });
    if kind.starts_with("booking.") {
        if let Some(b) = &rec.booking {
            data["slot"] = json!(b.slot);
            data["slot_end"] = json!(b.slot_end);
            data["timezone"] = json!(b.timezone);
        }
    }
    if kind.starts_with("room.") {
        if let Some(room) = rec.video.as_ref().and_then(|v| v.last_room()) {
            data["room"] = json!(room.code);
            data["end_reason"] = json!(room.end_reason);
        }
    }
    if kind == "survey.answered" {
        if let Some(survey) = rec.video.as_ref().and_then(|v| v.survey.as_ref()) {
            data["score"] = json!(survey.score);
            data["scale"] = json!(survey.scale);
        }
    }
    data
}

/// Applies what a delivery round did: `delivered` events leave the outbox;
/// `failed` ones (id, why) count an attempt, and after [`MAX_ATTEMPTS`]
/// move to `failed`. The timer is armed for the next retry while anything
/// waits.
pub fn attempted(
    rec: &mut ServiceRecord,
    delivered: &[String],
    failed: &[(String, String)],
    now: DateTime<Utc>,
) {
    let webhooks = &mut rec.webhooks;
    webhooks.pending.retain(|e| !delivered.contains(&e.id));
    let mut next_retry: Option<DateTime<Utc>> = None;
    let mut given_up = Vec::new();
    for event in webhooks.pending.iter_mut() {
        if let Some((_, why)) = failed.iter().find(|(id, _)| *id == event.id) {
            event.attempts += 1;
            event.last_error = Some(why.clone());
            if event.attempts >= MAX_ATTEMPTS {
                given_up.push(event.id.clone());
            } else {
                let due = now
                    + chrono::Duration::from_std(retry_delay(event.attempts))
                        .unwrap_or_else(|_| chrono::Duration::seconds(600));
                next_retry = Some(next_retry.map_or(due, |d| d.min(due)));
            }
        }
    }
    for id in given_up {
        if let Some(i) = webhooks.pending.iter().position(|e| e.id == id) {
            webhooks.failed.push(webhooks.pending.remove(i));
        }
    }
    rec.timers.remove(&TimerKind::Webhook);
    if !rec.webhooks.pending.is_empty() {
        // What was not tried this round (it waits behind a failed one of
        // its subscription) goes with the earliest retry; nothing tried
        // and nothing failed: look again now.
        rec.timers
            .insert(TimerKind::Webhook, next_retry.unwrap_or(now));
    }
}

/// Puts given-up events back in line (an operator's retry), oldest first.
pub fn retry_failed(rec: &mut ServiceRecord, now: DateTime<Utc>) -> usize {
    let failed = std::mem::take(&mut rec.webhooks.failed);
    let count = failed.len();
    for mut event in failed {
        event.attempts = 0;
        rec.webhooks.pending.push(event);
    }
    rec.webhooks.pending.sort_by_key(|e| (e.at, e.id.clone()));
    if count > 0 {
        rec.timers.insert(TimerKind::Webhook, now);
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_two_seconds_up_to_ten_minutes() {
        let delays: Vec<u64> = (1..=12).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600]);
        assert_eq!(retry_delay(u32::MAX), RETRY_CAP);
    }

    fn config(events: Option<&[&str]>) -> WebhookConfig {
        WebhookConfig {
            url: "https://crm.example/hooks".into(),
            secret_env: "CRM_SECRET".into(),
            events: events.map(|e| e.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn subscriptions_are_checked_by_key() {
        let check = |c: WebhookConfig, expected: Option<&str>| {
            assert_eq!(
                c.validate().err().map(|(k, _)| k).as_deref(),
                expected,
                "{c:?}"
            );
        };
        check(config(None), None);
        check(config(Some(&["service.completed"])), None);
        check(config(Some(&[])), Some("_webhook.events"));
        check(config(Some(&["service.done"])), Some("_webhook.events"));
        check(
            WebhookConfig {
                url: "ftp://x.example".into(),
                ..config(None)
            },
            Some("_webhook.url"),
        );
        check(
            WebhookConfig {
                secret_env: "NOT-A-NAME".into(),
                ..config(None)
            },
            Some("_webhook.secret_env"),
        );
        assert!(config(None).wants("room.ended"));
        assert!(!config(Some(&["service.completed"])).wants("room.ended"));
    }
}
