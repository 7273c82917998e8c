//! The timer loop and the sweeper.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use engine::machine::Event;
use engine::record::{ServiceRecord, TimerKind};
use engine::store::{DueTimer, TIMER_BACKSTOP};
use tokio::sync::watch;
use tracing::{info, warn};

use super::{Shell, ShellError};

/// How long a claimed timer is hidden from the other nodes. If this node
/// dies before firing it, another node fires it when the lease ends.
const TIMER_LEASE: chrono::Duration = chrono::Duration::seconds(10);

/// How many due timers one node fires at once. Firing is mostly waiting
/// for the store (on Redis, for its fsync), so many at once: at 10,000
/// timers a second on two nodes (bench-timer-lateness), 16 gave a lateness
/// p50 of 0.8 s and p99 of 1.4 s; 64 gave p50 7-544 ms and p99 179-905 ms
/// from run to run on a shared 2-core machine.
///
/// A claim's timers fire as one batch: the loop claims again when the
/// whole batch has fired. Claiming again as soon as 16 of 64 slots were
/// free (the claim and read running while the others fired) was slower in
/// that bench: p99 2.7-6.2 s against 0.7-1.9 s, the same hour, with claims
/// of 11 timers on average against 256 at most.
const TIMER_CONCURRENCY: usize = 64;

/// How often records past their TTL are swept out of the embedded store.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

impl Shell {
    /// Fires every timer that is due now, several at a time (a backlog after
    /// an outage must not be worked off one round trip after another).
    pub async fn fire_due_timers(&self) -> Result<usize, ShellError> {
        use futures_util::stream::{self, StreamExt};
        let mut fired = 0;
        loop {
            let due = self
                .store
                .claim_due_timers(self.now(), TIMER_LEASE, 256)
                .await?;
            if due.is_empty() {
                return Ok(fired);
            }
            // The claimed services in one read, not one round trip each,
            // and each once (`with_records` gives a service's record to
            // each of its timers).
            let mut ids: Vec<String> = due
                .iter()
                .filter(|timer| timer.kind != TimerKind::Webhook)
                .map(|timer| timer.id.clone())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let records = self.store.get_many(&ids).await?;
            let results: Vec<Result<bool, ShellError>> = stream::iter(with_records(due, records))
                .map(|(timer, record)| self.fire_timer(timer, record))
                .buffer_unordered(TIMER_CONCURRENCY)
                .collect()
                .await;
            let before = fired;
            for result in results {
                // A timer that failed stays claimed; it comes due again after the lease.
                fired += usize::from(result?);
            }
            if fired == before {
                // Nothing in this batch could fire; asking again would spin.
                return Ok(fired);
            }
        }
    }

    /// Fires one claimed timer: `record` is its service as just read (none:
    /// gone). Answers whether it fired.
    async fn fire_timer(
        &self,
        timer: DueTimer,
        record: Option<ServiceRecord>,
    ) -> Result<bool, ShellError> {
        if timer.kind == TimerKind::Webhook {
            // Delivered here, not by the machine: it hears the outcome.
            return self.deliver_webhooks(&timer.id).await;
        }
        let Some(record) = record else {
            // Expired or removed since it was armed: nothing to do.
            return Ok(false);
        };
        let event = Event::TimerFired {
            kind: timer.kind,
            due: timer.due,
        };
        match self.transition_on(record, &event).await {
            Ok(_) => {
                let late = (self.now() - timer.due).num_microseconds().unwrap_or(0);
                let kind = timer.kind.as_str();
                use crate::metrics::kept;
                kept::histogram(crate::metrics::TIMER_LATENESS, &[("kind", kind)])
                    .record(late.max(0) as f64 / 1e6);
                kept::counter(crate::metrics::TIMERS_FIRED, &[("kind", kind)]).increment(1);
                Ok(true)
            }
            // Re-armed, cancelled or expired meanwhile: nothing to do.
            Err(ShellError::NotAllowed(_)) | Err(ShellError::UnknownService(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn timer_task(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
        mut wakeups: Option<watch::Receiver<()>>,
    ) {
        use std::sync::atomic::Ordering;
        let mut failing = false;
        loop {
            // Awake: every timer armed from now on wakes it again, until it
            // has looked at the store and says how long it sleeps.
            self.timer_sleeps_until.store(i64::MIN, Ordering::SeqCst);
            let result = self.fire_due_timers().await;
            // Sleep until the next due timer; a newly armed earlier one (here,
            // or on another node through `wakeups`) wakes us.
            let next = match result {
                Ok(_) => self.store.next_timer().await,
                Err(e) => Err(e.into_store_error()),
            };
            let sleep_for = match next {
                Ok(next) => {
                    if std::mem::take(&mut failing) {
                        info!("Timers are firing again.");
                    }
                    next.map_or(TIMER_BACKSTOP, |due| {
                        (due - self.now()).to_std().unwrap_or(Duration::ZERO)
                    })
                    .min(TIMER_BACKSTOP)
                }
                Err(e) => {
                    // One warning per outage, not one per retry.
                    if !std::mem::replace(&mut failing, true) {
                        warn!(error = %e, "Timers cannot be read; retrying every second.");
                    }
                    Duration::from_secs(1)
                }
            };
            let until = self.now()
                + chrono::Duration::from_std(sleep_for).unwrap_or(chrono::Duration::zero());
            self.timer_sleeps_until
                .store(until.timestamp_millis(), Ordering::SeqCst);
            let other_node = async {
                match wakeups.as_mut() {
                    Some(rx) => {
                        if rx.changed().await.is_err() {
                            std::future::pending::<()>().await
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.timer_wake.notified() => {}
                _ = other_node => {}
                _ = tokio::time::sleep(sleep_for) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    pub(super) async fn sweeper_task(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = shutdown.changed() => return,
            }
            match self.store.purge_expired(self.now()).await {
                Ok(0) => {}
                Ok(n) => info!(purged = n, "Expired services removed."),
                Err(e) => warn!(error = %e, "Sweeping expired services failed."),
            }
        }
    }
}

/// Pairs each claimed timer with its service's record (`None`: not
/// found). A service with two timers due gets its record with each: cloned
/// for all but the last of them.
fn with_records(
    due: Vec<DueTimer>,
    records: Vec<ServiceRecord>,
) -> Vec<(DueTimer, Option<ServiceRecord>)> {
    let mut records: HashMap<String, ServiceRecord> = records
        .into_iter()
        .map(|record| (record.id.clone(), record))
        .collect();
    let last: HashMap<&str, usize> = due
        .iter()
        .enumerate()
        .map(|(i, timer)| (timer.id.as_str(), i))
        .collect();
    let paired: Vec<Option<ServiceRecord>> = due
        .iter()
        .enumerate()
        .map(|(i, timer)| {
            if last[timer.id.as_str()] == i {
                records.remove(&timer.id)
            } else {
                records.get(&timer.id).cloned()
            }
        })
        .collect();
    due.into_iter().zip(paired).collect()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use engine::machine::{self, NewService};
    use engine::record::TimerKind;
    use engine::store::DueTimer;
    use engine::testing::{new_service, ScenarioBuilder};

    /// `due` names the claimed timers' services, `stored` the services
    /// read; `expected` is the id of the record each timer gets ('-': none).
    fn check(due: &[&str], stored: &[&str], expected: &[&str]) {
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap();
        let scenario = std::sync::Arc::new(ScenarioBuilder::chat_delay().parse().unwrap());
        let timers = due
            .iter()
            .map(|id| DueTimer {
                id: id.to_string(),
                kind: TimerKind::Ttl,
                due: at,
            })
            .collect();
        let records = stored
            .iter()
            .map(|id| {
                let new = NewService {
                    id: id.to_string(),
                    ..new_service()
                };
                machine::create(new, &scenario, at).record
            })
            .collect();
        let got: Vec<String> = super::with_records(timers, records)
            .into_iter()
            .map(|(timer, record)| {
                let record = record.map_or("-".to_owned(), |r| r.id);
                assert!(
                    record == "-" || record == timer.id,
                    "{timer:?} got {record}"
                );
                record
            })
            .collect();
        assert_eq!(got, expected, "due {due:?}, stored {stored:?}");
    }

    #[test]
    fn claimed_timers_get_their_records() {
        check(&[], &[], &[]);
        check(&["a", "b"], &["b", "a"], &["a", "b"]);
        // Gone since the timer was armed.
        check(&["a", "b"], &["b"], &["-", "b"]);
        // Two timers of one service, both with its record.
        check(&["a", "b", "a"], &["a", "b"], &["a", "b", "a"]);
        check(&["a", "a", "a"], &["a"], &["a", "a", "a"]);
    }
}
