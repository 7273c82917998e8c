//! The timer loop and the sweeper.

use std::sync::Arc;
use std::time::Duration;

use engine::machine::Event;
use engine::record::TimerKind;
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
const TIMER_CONCURRENCY: usize = 64;

/// Longest the timer loop sleeps without looking at the store: a backstop
/// for a wake-up lost while the wake channel was reconnecting.
const TIMER_BACKSTOP: Duration = Duration::from_secs(60);

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
            let results: Vec<Result<bool, ShellError>> = stream::iter(due)
                .map(|timer| async move {
                    if timer.kind == TimerKind::Webhook {
                        // Delivered here, not by the machine: it hears the outcome.
                        return self.deliver_webhooks(&timer.id).await;
                    }
                    let event = Event::TimerFired {
                        kind: timer.kind,
                        due: timer.due,
                    };
                    match self.transition(&timer.id, &event).await {
                        Ok(_) => {
                            let late = (self.now() - timer.due).num_microseconds().unwrap_or(0);
                            let kind = timer.kind.as_str();
                            metrics::histogram!(crate::metrics::TIMER_LATENESS, "kind" => kind)
                                .record(late.max(0) as f64 / 1e6);
                            metrics::counter!(crate::metrics::TIMERS_FIRED, "kind" => kind)
                                .increment(1);
                            Ok(true)
                        }
                        // Re-armed, cancelled or expired meanwhile: nothing to do.
                        Err(ShellError::NotAllowed(_)) | Err(ShellError::UnknownService(_)) => {
                            Ok(false)
                        }
                        Err(e) => Err(e),
                    }
                })
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
