//! The slots a [`Schedule`] offers; see the module doc of [`super`] for the rules.

use chrono::{DateTime, NaiveDate, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::fmt::Write as _;

use super::Schedule;

/// One bookable slot: `[start, end)` with `end = start + slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Slot {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub seats: u32,
}

/// `2026-11-23T09:00:00.000-05:00`: `t` in zone `tz`, millisecond precision,
/// numeric offset.
pub fn local_time(t: DateTime<Utc>, tz: Tz) -> String {
    let local = t.with_timezone(&tz);
    let offset = local.offset().fix().local_minus_utc();
    let (sign, offset) = if offset < 0 {
        ('-', -offset)
    } else {
        ('+', offset)
    };
    let mut out = wall(&local.naive_local());
    // Availability formats thousands of these: no strftime parsing per call.
    let _ = write!(out, "{sign}{:02}:{:02}", offset / 3600, offset % 3600 / 60);
    out
}

/// `2026-11-23T14:00:00.000Z`
pub fn utc_time(t: DateTime<Utc>) -> String {
    let mut out = wall(&t.naive_utc());
    out.push('Z');
    out
}

/// `2026-11-23T14:00:00.000`
fn wall(t: &chrono::NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    let mut out = String::with_capacity(29);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 1_000_000 % 1000
    );
    out
}

const DAY: i64 = 86_400;
/// Further than any UTC offset (the widest in tzdb, LMT included, is under 16 h).
const OFFSET_BOUND: i64 = 16 * 3600;

/// Seconds of UTC offset at UTC second `ts`.
fn offset_at(tz: Tz, ts: i64) -> i64 {
    match DateTime::from_timestamp(ts, 0) {
        Some(t) => i64::from(
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc(),
        ),
        None => 0,
    }
}

/// The smallest whole second `>= t`.
fn ceil_secs(t: DateTime<Utc>) -> i64 {
    t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0)
}

/// Turns UTC seconds into `DateTime`s, remembering the last date (slots of
/// one day mostly share their UTC date).
struct Instants {
    day: i64,
    date: NaiveDate,
}

impl Instants {
    fn new() -> Self {
        Instants {
            day: 0,
            date: NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default(),
        }
    }

    fn at(&mut self, secs: i64) -> Option<DateTime<Utc>> {
        let day = secs.div_euclid(DAY);
        if day != self.day {
            self.date = DateTime::from_timestamp(day * DAY, 0)?.date_naive();
            self.day = day;
        }
        let time = NaiveTime::from_num_seconds_from_midnight_opt(secs.rem_euclid(DAY) as u32, 0)?;
        Some(self.date.and_time(time).and_utc())
    }
}

/// How UTC maps to local wall time around one local day: one offset, or
/// `before` until the transition at UTC second `at` and `after` from it on.
#[derive(Clone, Copy)]
pub(super) enum Offsets {
    Fixed(i64),
    Change { before: i64, at: i64, after: i64 },
}

impl Offsets {
    /// Around the local day whose midnight (read as UTC) is `midnight`:
    /// the offsets 16 h before it and 16 h after the day's end; if they
    /// differ, the transition between them, found by bisection.
    pub(super) fn around(tz: Tz, midnight: i64) -> Offsets {
        let (mut lo, mut hi) = (midnight - OFFSET_BOUND, midnight + DAY + OFFSET_BOUND);
        let (before, after) = (offset_at(tz, lo), offset_at(tz, hi));
        if before == after {
            return Offsets::Fixed(before);
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if offset_at(tz, mid) == before {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Offsets::Change {
            before,
            at: hi,
            after,
        }
    }
}

/// The slot computation's fixed parameters, in seconds.
struct Grid {
    slot: i64,
    step: i64,
    need: i64,
    /// Slot starts must lie in `[lo, hi)` (UTC seconds).
    lo: i64,
    hi: i64,
}

impl Schedule {
    /// Slots whose start lies in `[from, to)`, earliest first.
    pub fn slots(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Slot> {
        let mut out = Vec::new();
        if from >= to || self.slot.is_zero() {
            return out;
        }
        let slot = self.slot.as_secs() as i64;
        let grid = Grid {
            slot,
            step: slot + self.buffers.between_slots.as_secs() as i64,
            need: slot + self.buffers.before_close.as_secs() as i64,
            lo: ceil_secs(from),
            hi: ceil_secs(to),
        };
        // The local date of an instant in [from, to) lies between these; one
        // day more on each side covers a fall-back across midnight.
        let first = from.with_timezone(&self.timezone).date_naive().pred_opt();
        let last = to.with_timezone(&self.timezone).date_naive().succ_opt();
        let (Some(first), Some(last)) = (first, last) else {
            return out;
        };
        let per_day = usize::try_from(DAY / grid.step).unwrap_or(0);
        let days = usize::try_from((to - from).num_days()).unwrap_or(0) + 1;
        out.reserve(days.saturating_mul(per_day).min(1 << 16));
        let mut instants = Instants::new();
        let mut sorted = true;
        let mut day = first;
        while day <= last {
            sorted &= self.day_slots(&grid, day, &mut instants, &mut out);
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
        if !sorted {
            out.sort_unstable_by_key(|s| s.start);
            out.dedup_by_key(|s| s.start);
        }
        out
    }

    /// Pushes the slots of local date `day` that start in `[grid.lo, grid.hi)`.
    /// Returns whether `out` is still sorted (as far as this day goes).
    fn day_slots(
        &self,
        grid: &Grid,
        day: NaiveDate,
        instants: &mut Instants,
        out: &mut Vec<Slot>,
    ) -> bool {
        let ranges = self.ranges_on(day);
        if ranges.is_empty() {
            return true;
        }
        // Local midnight of `day`, read as if it were UTC.
        let midnight = day.and_time(NaiveTime::MIN).and_utc().timestamp();
        if midnight + DAY + OFFSET_BOUND <= grid.lo || midnight - OFFSET_BOUND >= grid.hi {
            return true; // no instant of this day is in the window
        }
        let offsets = Offsets::around(self.timezone, midnight);
        let seats = self.capacity.day(day);
        let day_start = out.len();
        let mut push = |start: i64, wall: i64, out: &mut Vec<Slot>| {
            let seats = seats[(wall / 3600) as usize];
            if seats == 0 || start < grid.lo || start >= grid.hi {
                return;
            }
            let (Some(s), Some(e)) = (instants.at(start), instants.at(start + grid.slot)) else {
                return;
            };
            out.push(Slot {
                start: s,
                end: e,
                seats,
            });
        };
        for &(a, b) in ranges {
            let (a, b) = (i64::from(a) * 60, i64::from(b) * 60);
            match offsets {
                Offsets::Fixed(off) => {
                    // One instant per wall time, and wall time runs like
                    // real time: start at the first grid point in the window.
                    let first_wall = grid.lo - midnight + off;
                    let skip = if first_wall > a {
                        (first_wall - a + grid.step - 1) / grid.step
                    } else {
                        0
                    };
                    let mut wall = a + skip * grid.step;
                    while wall + grid.need <= b && midnight + wall - off < grid.hi {
                        push(midnight + wall - off, wall, out);
                        wall += grid.step;
                    }
                }
                Offsets::Change { before, at, after } => {
                    // A wall time is an instant before the transition read
                    // with the old offset and/or one after it read with the
                    // new: none in a gap, two in an overlap.
                    let mut wall = a;
                    while wall < b {
                        let local = midnight + wall;
                        for (start, valid) in [
                            (local - before, local - before < at),
                            (local - after, local - after >= at),
                        ] {
                            if valid && self.open(offsets, start, start + grid.need, midnight, a, b)
                            {
                                push(start, wall, out);
                            }
                        }
                        wall += grid.step;
                    }
                }
            }
        }
        if matches!(offsets, Offsets::Change { .. }) {
            // Two passes over a repeated hour interleave in UTC.
            out[day_start..].sort_unstable_by_key(|s| s.start);
        }
        // In order unless a fall-back across midnight brought this day's
        // first slot before the previous day's last.
        match (day_start.checked_sub(1), out.get(day_start)) {
            (Some(prev), Some(first)) => out[prev].start < first.start,
            _ => true,
        }
    }

    /// Whether every instant of `[start, end)` (UTC seconds) has a local wall
    /// time on the day of `midnight` within `[a, b)` (seconds since that
    /// midnight). Wall time is continuous on each side of the transition, so
    /// each piece is checked at its ends.
    fn open(&self, offsets: Offsets, start: i64, end: i64, midnight: i64, a: i64, b: i64) -> bool {
        let piece = |p: i64, last: i64, off: i64| {
            p > last || (p + off - midnight >= a && last + off - midnight < b)
        };
        match offsets {
            Offsets::Fixed(off) => piece(start, end - 1, off),
            Offsets::Change { before, at, after } => {
                piece(start, (end - 1).min(at - 1), before) && piece(start.max(at), end - 1, after)
            }
        }
    }

    /// The slot holding `t` (`start <= t < end`), if any. When two slots of
    /// a fall-back overlap hold `t`, the one that starts last.
    pub fn slot_at(&self, t: DateTime<Utc>) -> Option<Slot> {
        let from = t - self.slot_len();
        let to = t + chrono::Duration::nanoseconds(1);
        self.slots(from, to)
            .into_iter()
            .rev()
            .find(|s| s.start <= t && t < s.end)
    }

    /// Where a booking made at `now` may start: `[now + min_notice, now + horizon]`.
    pub fn bookable(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        (now + self.min_notice(), now + self.horizon())
    }

    /// Up to `n` bookable slots nearest to `t` (by `|start - t|`, the earlier
    /// first on a tie), among those for which `has_room(slot)` is true,
    /// searching at most the bookable window; returned sorted by start.
    pub fn nearest(
        &self,
        t: DateTime<Utc>,
        now: DateTime<Utc>,
        n: usize,
        has_room: impl Fn(&Slot) -> bool,
    ) -> Vec<Slot> {
        if n == 0 {
            return Vec::new();
        }
        let (lo, hi) = self.bookable(now);
        let hi = hi + chrono::Duration::nanoseconds(1); // the horizon itself is bookable
        let distance = |s: &Slot| (s.start - t).abs();
        // Search outwards from t, doubling the radius until the n-th nearest
        // slot found is no further than the radius (nothing outside can beat
        // it), or the window is exhausted.
        let mut radius = chrono::Duration::days(1);
        loop {
            let from = t.checked_sub_signed(radius).map_or(lo, |f| f.max(lo));
            let to = t.checked_add_signed(radius).map_or(hi, |f| f.min(hi));
            let covers_all = from == lo && to == hi;
            let mut found: Vec<Slot> = if from < to {
                self.slots(from, to)
                    .into_iter()
                    .filter(|s| has_room(s))
                    .collect()
            } else {
                Vec::new()
            };
            found.sort_by_key(|s| (distance(s), s.start));
            let enough = found.len() >= n && distance(&found[n - 1]) <= radius;
            if enough || covers_all {
                found.truncate(n);
                found.sort_unstable_by_key(|s| s.start);
                return found;
            }
            radius = radius.checked_mul(2).unwrap_or(chrono::Duration::MAX);
        }
    }
}
