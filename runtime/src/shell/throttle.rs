//! GMS's throttles and duplicate guards on create, and idempotent creates.
//!
//! Every count lives in the store (`Store::count_quotas`, the guard of
//! `Store::put_new`, the idempotency claims), so the limits hold for all the
//! nodes sharing it together, not per node.

use std::time::Duration;

use engine::scenario::{Scenario, THROTTLE_DAY};
use engine::store::{CreateGuard, IdempotencyClaim, Quota, QuotaVerdict};

use super::{Shell, ShellError};

/// How long a create may hold its idempotency key before another request
/// with the key may run: longer than the API's request timeout.
pub const IDEMPOTENCY_LEASE: Duration = Duration::from_secs(60);
/// How long the answer to an idempotent create is kept for retries.
pub const IDEMPOTENCY_KEEP: Duration = THROTTLE_DAY;

/// What a create is counted by, besides its scenario: its customer number
/// and the values of the scenario's `_throttle_request_parameters`, as the
/// request carried them.
pub struct CreateRequest<'a> {
    pub customer_number: &'a str,
    /// (parameter name, value), header or body as the scenario says.
    pub parameters: Vec<(&'a str, String)>,
}

/// The store's guard for a create in `scenario`.
pub fn create_guard(scenario: &Scenario) -> CreateGuard {
    CreateGuard {
        max_active_for_customer: scenario.in_queue_checking.max_active(),
        max_active_in_scenario: scenario.max_queued_callbacks_per_service,
    }
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// `300 s`, `1 h`, `24 h`: how a window reads in an error message.
fn window_text(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else {
        format!("{s} s")
    }
}

impl Shell {
    /// Counts a create against its scenario's throttles, all or none; a
    /// refusal names what was exceeded and when it may be retried.
    pub async fn admit_create(
        &self,
        scenario: &Scenario,
        request: &CreateRequest<'_>,
    ) -> Result<(), ShellError> {
        let name = &scenario.name;
        // (quota, what a refusal says)
        let mut quotas: Vec<(Quota, String)> = Vec::new();
        let mut push = |key: String, limit: u32, window: Duration, what: String| {
            let text = format!(
                "{what}: more than {limit} callbacks in {}",
                window_text(window)
            );
            quotas.push((
                Quota {
                    key,
                    limit,
                    window: chrono(window),
                },
                text,
            ));
        };
        if let Some(limit) = scenario.throttle_customer_number_limit {
            push(
                format!("cust:{name}:{}", request.customer_number),
                limit,
                THROTTLE_DAY,
                "_customer_number".to_owned(),
            );
        }
        for (i, limit, ttl) in [
            (
                1,
                scenario.throttle_callbacks_per_service_1,
                scenario.throttle_ttl_1,
            ),
            (
                2,
                scenario.throttle_callbacks_per_service_2,
                scenario.throttle_ttl_2,
            ),
        ] {
            if let Some(limit) = limit {
                push(
                    format!("scn{i}:{name}"),
                    limit,
                    ttl,
                    format!("_throttle_callbacks_per_service_{i} of scenario {name}"),
                );
            }
        }
        for (param, value) in &request.parameters {
            push(
                format!("param:{name}:{param}:{value}"),
                scenario.throttle_request_parameters_limit,
                THROTTLE_DAY,
                (*param).to_owned(),
            );
        }
        if quotas.is_empty() {
            return Ok(());
        }
        let only: Vec<Quota> = quotas.iter().map(|(q, _)| q.clone()).collect();
        match self.store.count_quotas(&only).await? {
            QuotaVerdict::Counted => Ok(()),
            QuotaVerdict::Exceeded { quota, retry_at } => {
                let wait = (retry_at - self.now()).to_std().unwrap_or_default();
                let what = quotas
                    .get(quota)
                    .map(|(_, text)| text.clone())
                    .unwrap_or_else(|| "a throttle".to_owned());
                Err(ShellError::Throttled {
                    what,
                    retry_after: wait,
                })
            }
        }
    }

    /// Claims an idempotency key for a create. `scope` keeps keys of
    /// different scenarios (and, once requests carry credentials, of
    /// different callers) apart.
    pub async fn claim_create_key(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<IdempotencyClaim, ShellError> {
        Ok(self
            .store
            .claim_idempotency(&idempotency_key(scope, key), chrono(IDEMPOTENCY_LEASE))
            .await?)
    }

    /// Keeps the first answer to a create for the retries of its key.
    pub async fn answer_create_key(
        &self,
        scope: &str,
        key: &str,
        answer: &str,
    ) -> Result<(), ShellError> {
        Ok(self
            .store
            .answer_idempotency(
                &idempotency_key(scope, key),
                answer,
                chrono(IDEMPOTENCY_KEEP),
            )
            .await?)
    }

    /// Gives the key up after a failed create, so a retry runs afresh.
    pub async fn release_create_key(&self, scope: &str, key: &str) -> Result<(), ShellError> {
        Ok(self
            .store
            .release_idempotency(&idempotency_key(scope, key))
            .await?)
    }
}

fn idempotency_key(scope: &str, key: &str) -> String {
    format!("create:{scope}:{key}")
}
