//! The store as the shell uses it: every call timed and its failures
//! counted ([`crate::metrics::timed`]), whichever store it is.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use engine::record::ServiceRecord;
use engine::stats::{QueueStats, SampleKind};
use engine::store::*;

use crate::metrics::timed;

/// A [`Store`] whose calls are measured.
pub struct MeteredStore(pub Arc<dyn Store>);

#[async_trait]
impl Store for MeteredStore {
    async fn get(&self, id: &str) -> Result<Option<ServiceRecord>, StoreError> {
        timed("get", self.0.get(id)).await
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<ServiceRecord>, StoreError> {
        timed("get_many", self.0.get_many(ids)).await
    }

    async fn put(
        &self,
        record: &ServiceRecord,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        timed("put", self.0.put(record, expected_version)).await
    }

    async fn put_new(&self, record: &ServiceRecord, guard: &CreateGuard) -> Result<(), StoreError> {
        timed("put_new", self.0.put_new(record, guard)).await
    }

    async fn put_new_shared(
        &self,
        record: &Arc<ServiceRecord>,
        guard: &CreateGuard,
    ) -> Result<(), StoreError> {
        timed("put_new", self.0.put_new_shared(record, guard)).await
    }

    async fn find(&self, key: &IndexKey) -> Result<Vec<ServiceRecord>, StoreError> {
        timed("find", self.0.find(key)).await
    }

    async fn queue(&self, queue: &str) -> Result<Vec<QueueEntry>, StoreError> {
        timed("queue", self.0.queue(queue)).await
    }

    async fn queues(&self) -> Result<Vec<String>, StoreError> {
        timed("queues", self.0.queues()).await
    }

    async fn position(&self, queue: &str, id: &str) -> Result<Option<(usize, usize)>, StoreError> {
        timed("position", self.0.position(queue, id)).await
    }

    async fn device_positions(
        &self,
        devices: &[String],
    ) -> Result<Vec<engine::store::DevicePosition>, StoreError> {
        timed("device_positions", self.0.device_positions(devices)).await
    }

    async fn queue_len(&self, queue: &str) -> Result<usize, StoreError> {
        timed("queue_len", self.0.queue_len(queue)).await
    }

    async fn queue_oldest(
        &self,
        queue: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        timed("queue_oldest", self.0.queue_oldest(queue)).await
    }

    async fn census(&self) -> Result<engine::store::Census, StoreError> {
        timed("census", self.0.census()).await
    }

    async fn standing(&self, id: &str) -> Result<Option<engine::store::Standing>, StoreError> {
        timed("standing", self.0.standing(id)).await
    }

    async fn due_timers(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError> {
        timed("due_timers", self.0.due_timers(now, limit)).await
    }

    async fn claim_due_timers(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError> {
        timed(
            "claim_due_timers",
            self.0.claim_due_timers(now, lease, limit),
        )
        .await
    }

    async fn next_timer(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        timed("next_timer", self.0.next_timer()).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        timed("ping", self.0.ping()).await
    }

    async fn put_agent(&self, profile: AgentProfile) -> Result<AgentRecord, StoreError> {
        timed("put_agent", self.0.put_agent(profile)).await
    }

    async fn set_agent_ready(
        &self,
        id: &str,
        ready: bool,
    ) -> Result<Option<AgentRecord>, StoreError> {
        timed("set_agent_ready", self.0.set_agent_ready(id, ready)).await
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        timed("agent", self.0.agent(id)).await
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        timed("agents", self.0.agents()).await
    }

    async fn add_sample(
        &self,
        queue: &str,
        kind: SampleKind,
        seconds: f64,
    ) -> Result<(), StoreError> {
        timed("add_sample", self.0.add_sample(queue, kind, seconds)).await
    }

    async fn queue_stats(&self, queue: &str) -> Result<QueueStats, StoreError> {
        timed("queue_stats", self.0.queue_stats(queue)).await
    }

    async fn seats_taken(
        &self,
        scenario: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<BTreeMap<DateTime<Utc>, u32>, StoreError> {
        timed("seats_taken", self.0.seats_taken(scenario, from, to)).await
    }

    async fn room(&self, code: &str) -> Result<Option<String>, StoreError> {
        timed("room", self.0.room(code)).await
    }

    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        timed("purge_expired", self.0.purge_expired(now)).await
    }

    async fn put_agent_key(&self, key: &AgentKey) -> Result<(), StoreError> {
        timed("put_agent_key", self.0.put_agent_key(key)).await
    }

    async fn agent_key(&self, id: &str) -> Result<Option<AgentKey>, StoreError> {
        timed("agent_key", self.0.agent_key(id)).await
    }

    async fn agent_keys(&self, agent: &str) -> Result<Vec<AgentKey>, StoreError> {
        timed("agent_keys", self.0.agent_keys(agent)).await
    }

    async fn revoke_agent_key(&self, agent: &str, name: &str) -> Result<bool, StoreError> {
        timed("revoke_agent_key", self.0.revoke_agent_key(agent, name)).await
    }

    async fn count_quotas(&self, quotas: &[Quota]) -> Result<QuotaVerdict, StoreError> {
        timed("count_quotas", self.0.count_quotas(quotas)).await
    }

    async fn claim_idempotency(
        &self,
        key: &str,
        lease: chrono::Duration,
    ) -> Result<IdempotencyClaim, StoreError> {
        timed("claim_idempotency", self.0.claim_idempotency(key, lease)).await
    }

    async fn answer_idempotency(
        &self,
        key: &str,
        answer: &str,
        keep: chrono::Duration,
    ) -> Result<(), StoreError> {
        timed(
            "answer_idempotency",
            self.0.answer_idempotency(key, answer, keep),
        )
        .await
    }

    async fn release_idempotency(&self, key: &str) -> Result<(), StoreError> {
        timed("release_idempotency", self.0.release_idempotency(key)).await
    }

    async fn log_webhook_attempt(&self, attempt: &str, keep: usize) -> Result<(), StoreError> {
        timed(
            "log_webhook_attempt",
            self.0.log_webhook_attempt(attempt, keep),
        )
        .await
    }

    async fn webhook_attempts(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        timed("webhook_attempts", self.0.webhook_attempts(limit)).await
    }
}
