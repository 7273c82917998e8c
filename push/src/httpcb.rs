//! `_device_os=httpcb`: notifications POSTed to the URL the scenario names.
//!
//! The body is JSON: `{"id", "service_id", "device_notification_id", "tag",
//! "data"}`, where `data` is what a CometD client would receive. Only a 2xx
//! answer counts; anything else (or no answer in time) is retried with a
//! doubling backoff, up to the scenario's number of attempts. A notification
//! that never got through stays in the outbox, for retrieve-notifications.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::outbound::HttpPost;
use crate::{Audience, Delivery};

/// The `_device_os` of a device that takes its notifications by HTTP POST.
pub const DEVICE_OS: &str = "httpcb";

/// How one scenario wants its HTTP callbacks made.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub url: String,
    /// Attempts in all, at least 1.
    pub attempts: u32,
    /// The wait before the second attempt; it doubles each time, up to [`MAX_BACKOFF`].
    pub backoff: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
}

pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Posts callbacks, at most `max_in_flight` at once.
#[derive(Clone)]
pub struct HttpCallbacks {
    client: Arc<dyn HttpPost>,
    permits: Arc<Semaphore>,
}

/// What became of one callback.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered {
        attempts: u32,
    },
    GaveUp {
        attempts: u32,
        last_error: String,
    },
    /// Too many callbacks were in flight; this one was not tried.
    Busy,
}

impl HttpCallbacks {
    /// `client` must not follow redirects: the scenario names the one URL
    /// a notification may go to.
    pub fn new(client: Arc<dyn HttpPost>, max_in_flight: usize) -> Self {
        HttpCallbacks {
            client,
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    /// Posts `delivery` with retries; resolves when it is delivered or given up.
    pub async fn post(&self, policy: &Policy, delivery: &Delivery) -> Outcome {
        let Ok(_permit) = self.permits.clone().try_acquire_owned() else {
            warn!(service_id = %delivery.service_id, "Too many HTTP callbacks in flight; this one stays in the outbox.");
            return Outcome::Busy;
        };
        let device = match &delivery.audience {
            Audience::Device { device } => Some(device.as_str()),
            Audience::Agent { .. } | Audience::Supervisors | Audience::Room { .. } => None,
        };
        let body = json!({
            "id": delivery.notification,
            "service_id": delivery.service_id,
            "device_notification_id": device,
            "tag": delivery.tag,
            "data": delivery.data,
        });
        let attempts = policy.attempts.max(1);
        let mut wait = policy.backoff.min(MAX_BACKOFF);
        let mut last_error = String::new();
        for attempt in 1..=attempts {
            let sent = self
                .client
                .post_json(&policy.url, &body, policy.timeout)
                .await;
            match sent {
                Ok(status) if (200..300).contains(&status) => {
                    debug!(service_id = %delivery.service_id, tag = %delivery.tag, attempt, "HTTP callback delivered.");
                    return Outcome::Delivered { attempts: attempt };
                }
                Ok(status) => last_error = format!("answered {status}"),
                Err(e) => last_error = e.to_string(),
            }
            debug!(service_id = %delivery.service_id, attempt, error = %last_error, "HTTP callback failed.");
            if attempt < attempts {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_BACKOFF);
            }
        }
        warn!(service_id = %delivery.service_id, tag = %delivery.tag, attempts, error = %last_error, "HTTP callback given up; the notification stays in the outbox.");
        Outcome::GaveUp {
            attempts,
            last_error,
        }
    }
}
