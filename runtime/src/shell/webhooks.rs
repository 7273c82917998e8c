//! Delivering a record's webhook events (see `engine::webhook`): when its
//! `TimerKind::Webhook` comes due, the node that claimed the timer POSTs
//! what is pending, in order per subscription, signed as the Standard
//! Webhooks specification says, and reports the round back to the machine
//! (`Event::WebhooksAttempted`), which takes out what was delivered and
//! arms the next retry.
//!
//! The claim's lease keeps other nodes away while a round runs, so a round
//! stops starting POSTs well before the lease ends ([`ROUND_BUDGET`]).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use engine::machine::{Event, TransitionError};
use engine::webhook::{WebhookConfig, WebhookEvent};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tracing::{debug, warn};

use super::{Shell, ShellError};

/// How long one POST may take.
pub const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// No POST starts after this much of a round: with [`POST_TIMEOUT`] the
/// round ends within the timer's lease (10 s).
const ROUND_BUDGET: Duration = Duration::from_secs(3);

/// Recent attempts the store keeps, across nodes, for
/// `GET /api/v1/webhooks/deliveries`.
pub const RECENT_ATTEMPTS: usize = 200;

pub const WEBHOOKS: &str = "callbackd_webhooks_total";

/// The signing keys of the scenarios' subscriptions, by the environment
/// variable each `secret_env` names.
#[derive(Clone, Default)]
pub struct WebhookSecrets(BTreeMap<String, Vec<u8>>);

impl WebhookSecrets {
    /// Adds the secret `value` (Standard Webhooks: `whsec_` and base64) held by `env`.
    pub fn insert(&mut self, env: &str, value: &str) -> Result<(), String> {
        let encoded = value.trim();
        let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| format!("{env}: is not a webhook secret (whsec_ and base64)"))?;
        if key.len() < 16 {
            return Err(format!(
                "{env}: the webhook secret is shorter than 16 bytes"
            ));
        }
        self.0.insert(env.to_owned(), key);
        Ok(())
    }

    pub fn get(&self, env: &str) -> Option<&[u8]> {
        self.0.get(env).map(Vec::as_slice)
    }
}

/// The Standard Webhooks signature of one message: `v1,` and base64 of
/// HMAC-SHA256 over `id.timestamp.body`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// One delivery attempt, as the deliveries view shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub webhook_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub service_id: String,
    pub scenario: String,
    pub url: String,
    pub at: DateTime<Utc>,
    /// The attempt's number (1 for the first).
    pub attempt: u32,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    pub delivered: bool,
    pub error: Option<String>,
}

impl Shell {
    /// Delivers what service `id` has pending (its webhook timer came due).
    /// `Ok(true)` when the round was written.
    pub(super) async fn deliver_webhooks(&self, id: &str) -> Result<bool, ShellError> {
        let record = match self.get(id).await {
            Ok(record) => record,
            Err(ShellError::UnknownService(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let scenario = self.scenario(&record.scenario)?.clone();
        let started = Instant::now();
        let (mut delivered, mut failed) = (Vec::new(), Vec::new());
        // A subscription whose event failed gets nothing after it this
        // round: its events arrive in order or not at all.
        let mut blocked = HashSet::new();
        for event in &record.webhooks.pending {
            if blocked.contains(&event.target) {
                continue;
            }
            if started.elapsed() > ROUND_BUDGET {
                break;
            }
            let outcome = match scenario.webhooks.get(event.target) {
                None => Err((
                    None,
                    "the scenario no longer has this subscription".to_owned(),
                )),
                Some(subscription) => self.post_webhook(subscription, event).await,
            };
            let (status, error) = match &outcome {
                Ok(status) => (Some(*status), None),
                Err((status, why)) => (*status, Some(why.clone())),
            };
            self.log_attempt(Attempt {
                webhook_id: event.id.clone(),
                kind: event.kind.clone(),
                service_id: record.id.clone(),
                scenario: record.scenario.clone(),
                url: scenario
                    .webhooks
                    .get(event.target)
                    .map(|s| s.url.clone())
                    .unwrap_or_default(),
                at: self.now(),
                attempt: event.attempts + 1,
                status,
                delivered: outcome.is_ok(),
                error: error.clone(),
            });
            match error {
                None => {
                    metrics::counter!(WEBHOOKS, "outcome" => "delivered").increment(1);
                    delivered.push(event.id.clone());
                }
                Some(why) => {
                    metrics::counter!(WEBHOOKS, "outcome" => "failed").increment(1);
                    debug!(service_id = %record.id, webhook_id = %event.id, error = %why, "Webhook not delivered; will retry.");
                    blocked.insert(event.target);
                    failed.push((event.id.clone(), why));
                }
            }
        }
        let round = Event::WebhooksAttempted { delivered, failed };
        match self.transition(id, &round).await {
            Ok(after) => {
                if let Some(given_up) = after
                    .webhooks
                    .failed
                    .iter()
                    .find(|e| !record.webhooks.failed.iter().any(|f| f.id == e.id))
                {
                    warn!(service_id = %id, webhook_id = %given_up.id, "Webhook given up after its last attempt.");
                }
                Ok(true)
            }
            Err(ShellError::NotAllowed(TransitionError::Unchanged))
            | Err(ShellError::UnknownService(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// POSTs one event; its status when the receiver took it (2xx).
    async fn post_webhook(
        &self,
        subscription: &WebhookConfig,
        event: &WebhookEvent,
    ) -> Result<u16, (Option<u16>, String)> {
        let Some(key) = self.webhook_secrets.get(&subscription.secret_env) else {
            return Err((None, format!("no secret in {}", subscription.secret_env)));
        };
        let body = event.body().to_string();
        let timestamp = self.now().timestamp();
        let headers = [
            ("webhook-id", event.id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            (
                "webhook-signature",
                signature(key, &event.id, timestamp, body.as_bytes()),
            ),
        ];
        match self
            .http
            .post_signed(&subscription.url, body.as_bytes(), &headers, POST_TIMEOUT)
            .await
        {
            Ok(status) if (200..300).contains(&status) => Ok(status),
            Ok(status) => Err((Some(status), format!("HTTP {status}"))),
            Err(e) => Err((None, e.message)),
        }
    }

    /// Adds an attempt to the log every node shares, beside the round (its
    /// POSTs keep to the round's budget). The log is for people: a store
    /// that cannot take it costs a warning, not the delivery.
    fn log_attempt(&self, attempt: Attempt) {
        let Ok(json) = serde_json::to_string(&attempt) else {
            return;
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.log_webhook_attempt(&json, RECENT_ATTEMPTS).await {
                warn!(service_id = %attempt.service_id, error = %e, "Webhook attempt not logged.");
            }
        });
    }

    /// The recent webhook attempts of every node, newest first.
    pub async fn webhook_attempts(&self) -> Result<Vec<Attempt>, ShellError> {
        let logged = self.store.webhook_attempts(RECENT_ATTEMPTS).await?;
        // An entry another version wrote that this one cannot read is left
        // out rather than failing the view.
        Ok(logged
            .iter()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own example: its secret, id,
    /// timestamp and payload give its signature.
    #[test]
    fn signatures_match_the_specifications_example() {
        let mut secrets = WebhookSecrets::default();
        secrets
            .insert("S", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(
                secrets.get("S").unwrap(),
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                body.as_bytes()
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_whsec_base64_of_at_least_16_bytes() {
        let mut secrets = WebhookSecrets::default();
        assert!(secrets.insert("A", "whsec_not base64!").is_err());
        assert!(secrets.insert("B", "whsec_c2hvcnQ=").is_err());
        assert!(secrets
            .insert("C", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .is_ok());
    }
}
