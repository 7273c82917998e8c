//! Office hours: whether the business hours are open at an instant, the
//! opening periods of each local day, and the next opening. These answer
//! GMS's Calendar Service and `_enable_reject_out_of_office_hours`; slots
//! and seats play no part (a time can be open with no slot left).
//!
//! An instant is open iff its local wall time lies in one of its local
//! date's merged ranges (the rule of the module doc of [`super`]). An
//! opening is a maximal real-time interval of one range of one local date:
//! usually the range itself, one unbroken interval across a spring-forward
//! gap, and two intervals when a range lies inside the repeated hour of a
//! fall-back (its wall times happen twice).

use chrono::{DateTime, NaiveTime, Timelike, Utc};
use serde::Serialize;

use super::slots::Offsets;
use super::Schedule;

/// One opening period, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Opening {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Schedule {
    /// Whether the business hours are open at `t`.
    pub fn is_open(&self, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&self.timezone).naive_local();
        // Ranges are whole minutes, so whole seconds decide: 16:59:59.999 is
        // before a 17:00 end.
        let secs = i64::from(local.time().num_seconds_from_midnight());
        self.ranges_on(local.date())
            .iter()
            .any(|&(a, b)| i64::from(a) * 60 <= secs && secs < i64::from(b) * 60)
    }

    /// The openings that intersect `[from, to]` (both ends included, so a
    /// single instant lists the opening holding it), whole, sorted by start.
    pub fn openings(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Opening> {
        let mut out = Vec::new();
        if to < from {
            return out;
        }
        // An opening of local date D lies within D's day; one day more on
        // each side covers every zone's offset.
        let first = from.with_timezone(&self.timezone).date_naive().pred_opt();
        let last = to.with_timezone(&self.timezone).date_naive().succ_opt();
        let (Some(mut day), Some(last)) = (first, last) else {
            return out;
        };
        while day <= last {
            let ranges = self.ranges_on(day);
            if !ranges.is_empty() {
                let midnight = day.and_time(NaiveTime::MIN).and_utc().timestamp();
                let offsets = Offsets::around(self.timezone, midnight);
                for &(a, b) in ranges {
                    let (a, b) = (midnight + i64::from(a) * 60, midnight + i64::from(b) * 60);
                    for (s, e) in pieces(offsets, a, b) {
                        let (Some(start), Some(end)) = (instant(s), instant(e)) else {
                            continue;
                        };
                        if start <= to && end > from {
                            out.push(Opening { start, end });
                        }
                    }
                }
            }
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
        // A fall-back across midnight can bring a day's first opening
        // before the previous day's last.
        out.sort_unstable_by_key(|o| o.start);
        out
    }

    /// The first open instant in `[t, t + within]`: `t` itself when open.
    pub fn next_opening(
        &self,
        t: DateTime<Utc>,
        within: chrono::Duration,
    ) -> Option<DateTime<Utc>> {
        if self.is_open(t) {
            return Some(t);
        }
        let to = t.checked_add_signed(within)?;
        // Closed at t: every opening that intersects the window starts after t.
        self.openings(t, to).first().map(|o| o.start)
    }
}

/// The real-time intervals (UTC seconds) whose wall time lies in `[a, b)`
/// (local seconds, read as UTC): one per offset in force, joined when they
/// touch.
fn pieces(offsets: Offsets, a: i64, b: i64) -> Vec<(i64, i64)> {
    match offsets {
        Offsets::Fixed(off) => vec![(a - off, b - off)],
        Offsets::Change { before, at, after } => {
            let mut out: Vec<(i64, i64)> = Vec::with_capacity(2);
            let first = (a - before, (b - before).min(at));
            let second = ((a - after).max(at), b - after);
            for (s, e) in [first, second] {
                if s >= e {
                    continue;
                }
                match out.last_mut() {
                    Some(last) if last.1 == s => last.1 = e,
                    _ => out.push((s, e)),
                }
            }
            out
        }
    }
}

fn instant(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0)
}
