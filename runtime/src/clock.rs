//! Where "now" comes from on a node. The engine never reads the wall clock
//! (it defines [`Clock`] and is handed one); the runtime picks which.

use chrono::{DateTime, Utc};
pub use engine::clock::Clock;

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that follows tokio's time, so `tokio::time::pause()` in tests
/// moves the engine's "now" together with the timers.
pub struct TokioClock {
    base_utc: DateTime<Utc>,
    base: tokio::time::Instant,
}

impl TokioClock {
    pub fn new(base_utc: DateTime<Utc>) -> Self {
        TokioClock {
            base_utc,
            base: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.base;
        self.base_utc + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::zero())
    }
}
