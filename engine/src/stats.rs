//! Rolling queue statistics behind the estimated wait time (EWT).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// How many recent samples the averages cover.
pub const WINDOW: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleKind {
    /// From entering the queue to an agent being reserved.
    Wait,
    /// From connected to completed.
    Handle,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    pub waits: VecDeque<f64>,
    pub handles: VecDeque<f64>,
}

impl QueueStats {
    /// Whether a sample counts: every store keeps only these.
    pub fn accepts(seconds: f64) -> bool {
        seconds.is_finite() && seconds >= 0.0
    }

    pub fn add(&mut self, kind: SampleKind, seconds: f64) {
        if !Self::accepts(seconds) {
            return;
        }
        let samples = match kind {
            SampleKind::Wait => &mut self.waits,
            SampleKind::Handle => &mut self.handles,
        };
        if samples.len() == WINDOW {
            samples.pop_front();
        }
        samples.push_back(seconds);
    }

    pub fn avg_wait(&self) -> Option<f64> {
        average(&self.waits)
    }

    pub fn avg_handle(&self) -> Option<f64> {
        average(&self.handles)
    }

    /// The means the EWT is computed from.
    pub fn averages(&self) -> QueueAverages {
        QueueAverages {
            wait: self.avg_wait(),
            handle: self.avg_handle(),
        }
    }

    /// EWT in seconds for the customer at `position` (1-based): see
    /// [`QueueAverages::eta`].
    pub fn eta(&self, position: usize, capacity: u32) -> Option<u64> {
        self.averages().eta(position, capacity)
    }
}

/// A queue's mean wait and handle times (None without samples): all the
/// EWT needs, so a store can answer them without sending every sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueAverages {
    pub wait: Option<f64>,
    pub handle: Option<f64>,
}

impl QueueAverages {
    /// The mean of `count` samples adding up to `sum`, as [`QueueStats`]
    /// computes it from the samples themselves.
    pub fn mean(sum: f64, count: usize) -> Option<f64> {
        (count > 0).then(|| sum / count as f64)
    }

    /// EWT in seconds for the customer at `position` (1-based), given the
    /// number of conversations the queue's ready agents can hold at once.
    ///
    /// With handle times known and agents ready, the queue drains `capacity`
    /// conversations per average handle time, so the customer waits about
    /// `position × AHT / capacity`. Without ready agents that says nothing, so
    /// the recent average wait stands in. With no data at all: `None` ("n/a").
    pub fn eta(&self, position: usize, capacity: u32) -> Option<u64> {
        match (self.handle, capacity) {
            (Some(aht), c) if c > 0 => Some((position as f64 * aht / c as f64).round() as u64),
            _ => self.wait.map(|w| w.round() as u64),
        }
    }
}

/// The samples' mean: their sum oldest first, over their number (a store
/// that sums them itself must add them in the same order, to the bit).
fn average(samples: &VecDeque<f64>) -> Option<f64> {
    QueueAverages::mean(samples.iter().sum::<f64>(), samples.len())
}

/// One hour of a supervisor's chart: how many services were created,
/// answered (connected to an agent) and completed in it, and how long the
/// answered ones had waited on average.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hour {
    /// The hour's start (UTC, on the hour).
    pub start: chrono::DateTime<chrono::Utc>,
    pub created: u32,
    pub answered: u32,
    pub completed: u32,
    /// From the desired time to the agent; `None` when none was answered.
    pub average_wait_seconds: Option<f64>,
}

/// The last `hours` whole and current hours up to `now`, oldest first,
/// from the services' own times.
pub fn hourly<'a>(
    records: impl IntoIterator<Item = &'a crate::record::ServiceRecord>,
    now: chrono::DateTime<chrono::Utc>,
    hours: u32,
) -> Vec<Hour> {
    use chrono::{Duration, DurationRound};
    let current = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
    let first = current - Duration::hours(i64::from(hours.max(1)) - 1);
    let mut out: Vec<Hour> = (0..hours.max(1))
        .map(|i| Hour {
            start: first + Duration::hours(i64::from(i)),
            created: 0,
            answered: 0,
            completed: 0,
            average_wait_seconds: None,
        })
        .collect();
    let mut waits = vec![(0.0_f64, 0_u32); out.len()];
    let slot = |t: chrono::DateTime<chrono::Utc>| -> Option<usize> {
        if t < first || t > now {
            return None;
        }
        usize::try_from((t - first).num_hours()).ok()
    };
    for rec in records {
        if let Some(i) = slot(rec.created_at) {
            out[i].created += 1;
        }
        if let Some(at) = rec.connected_at {
            if let Some(i) = slot(at) {
                out[i].answered += 1;
                let waited = (at - rec.desired_time).num_milliseconds().max(0) as f64 / 1000.0;
                waits[i].0 += waited;
                waits[i].1 += 1;
            }
        }
        if let Some(i) = rec.completed_at.and_then(slot) {
            out[i].completed += 1;
        }
    }
    for (hour, (sum, n)) in out.iter_mut().zip(waits) {
        if n > 0 {
            hour.average_wait_seconds = Some(sum / f64::from(n));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        waits: &[f64],
        handles: &[f64],
        position: usize,
        capacity: u32,
        expected: Option<u64>,
    ) {
        let mut stats = QueueStats::default();
        waits.iter().for_each(|w| stats.add(SampleKind::Wait, *w));
        handles
            .iter()
            .for_each(|h| stats.add(SampleKind::Handle, *h));
        assert_eq!(
            stats.eta(position, capacity),
            expected,
            "waits {waits:?} handles {handles:?} pos {position} cap {capacity}"
        );
    }

    #[test]
    fn eta_table() {
        check(&[], &[], 1, 3, None);
        check(&[], &[], 5, 0, None);
        check(&[10.0, 20.0], &[], 2, 0, Some(15));
        check(&[10.0], &[60.0, 120.0], 2, 2, Some(90));
        check(&[10.0], &[60.0], 3, 0, Some(10));
        check(&[], &[30.0], 1, 1, Some(30));
    }

    #[test]
    fn window_keeps_only_recent_samples() {
        let mut stats = QueueStats::default();
        for _ in 0..WINDOW {
            stats.add(SampleKind::Handle, 1000.0);
        }
        for _ in 0..WINDOW {
            stats.add(SampleKind::Handle, 10.0);
        }
        assert_eq!(stats.avg_handle(), Some(10.0));
        stats.add(SampleKind::Wait, f64::NAN);
        stats.add(SampleKind::Wait, -1.0);
        assert_eq!(stats.avg_wait(), None);
    }

    mod hourly {
        use super::super::{hourly, Hour};
        use crate::record::ServiceRecord;
        use chrono::{DateTime, Utc};

        fn at(t: &str) -> DateTime<Utc> {
            t.parse().unwrap()
        }

        /// A record created (wanted) at `created`, answered at `connected`,
        /// completed at `completed`.
        fn rec(created: &str, connected: Option<&str>, completed: Option<&str>) -> ServiceRecord {
            let mut r: ServiceRecord = serde_json::from_value(serde_json::json!({
                "schema": 1, "version": 1, "id": created, "scenario": "s", "state": "completed",
                "created_at": created, "desired_time": created, "expiration_time": created,
                "customer_number": "1", "user_data": {},
                "ticket": {"queue": "q", "priority": 0, "since": created},
            }))
            .unwrap();
            r.connected_at = connected.map(at);
            r.completed_at = completed.map(at);
            r
        }

        fn check(
            records: &[ServiceRecord],
            now: &str,
            hours: u32,
            expected: &[(&str, u32, u32, u32, Option<f64>)],
        ) {
            let got = hourly(records, at(now), hours);
            let want: Vec<Hour> = expected
                .iter()
                .map(
                    |&(start, created, answered, completed, average_wait_seconds)| Hour {
                        start: at(start),
                        created,
                        answered,
                        completed,
                        average_wait_seconds,
                    },
                )
                .collect();
            assert_eq!(got, want);
        }

        #[test]
        fn services_fall_in_the_hours_of_their_own_times() {
            let records = [
                rec(
                    "2026-12-06T08:10:00Z",
                    Some("2026-12-06T08:12:00Z"),
                    Some("2026-12-06T09:05:00Z"),
                ),
                rec("2026-12-06T09:00:00Z", Some("2026-12-06T09:01:00Z"), None),
                rec("2026-12-06T09:59:59Z", None, None),
                // Before the window, answered in it.
                rec("2026-12-06T06:30:00Z", Some("2026-12-06T08:00:00Z"), None),
                // After now: not counted.
                rec("2026-12-06T10:40:00Z", None, None),
            ];
            check(
                &records,
                "2026-12-06T10:30:00Z",
                3,
                &[
                    (
                        "2026-12-06T08:00:00Z",
                        1,
                        2,
                        0,
                        Some((120.0 + 5400.0) / 2.0),
                    ),
                    ("2026-12-06T09:00:00Z", 2, 1, 1, Some(60.0)),
                    ("2026-12-06T10:00:00Z", 0, 0, 0, None),
                ],
            );
        }

        #[test]
        fn at_least_the_current_hour() {
            check(
                &[],
                "2026-12-06T10:30:00Z",
                0,
                &[("2026-12-06T10:00:00Z", 0, 0, 0, None)],
            );
        }
    }
}
