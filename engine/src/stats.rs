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

    /// EWT in seconds for the customer at `position` (1-based), given the
    /// number of conversations the queue's ready agents can hold at once.
    ///
    /// With handle times known and agents ready, the queue drains `capacity`
    /// conversations per average handle time, so the customer waits about
    /// `position × AHT / capacity`. Without ready agents that says nothing, so
    /// the recent average wait stands in. With no data at all: `None` ("n/a").
    pub fn eta(&self, position: usize, capacity: u32) -> Option<u64> {
        match (self.avg_handle(), capacity) {
            (Some(aht), c) if c > 0 => Some((position as f64 * aht / c as f64).round() as u64),
            _ => self.avg_wait().map(|w| w.round() as u64),
        }
    }
}

fn average(samples: &VecDeque<f64>) -> Option<f64> {
    if samples.is_empty() {
        None
    } else {
        Some(samples.iter().sum::<f64>() / samples.len() as f64)
    }
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
}
