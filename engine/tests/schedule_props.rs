//! Property tests of the slots against an independent brute-force oracle
//! that walks every minute and converts it to local time.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Timelike, Utc};
use engine::schedule::{Schedule, Slot, Tz};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

const ZONES: [&str; 5] = [
    "America/New_York",
    "Europe/London",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "UTC",
];

/// Real offset transitions: (index in `ZONES`, local date).
const TRANSITIONS: [(usize, &str); 18] = [
    (0, "2025-03-09"),
    (0, "2025-11-02"),
    (1, "2025-03-30"),
    (1, "2025-10-26"),
    (3, "2025-04-06"),
    (3, "2025-10-05"),
    (0, "2026-03-08"),
    (0, "2026-11-01"),
    (1, "2026-03-29"),
    (1, "2026-10-25"),
    (3, "2026-04-05"),
    (3, "2026-10-04"),
    (0, "2027-03-14"),
    (0, "2027-11-07"),
    (1, "2027-03-28"),
    (1, "2027-10-31"),
    (3, "2027-04-04"),
    (3, "2027-10-03"),
];

/// Seats of one day: a number, or per hour (None = not in the table).
#[derive(Debug, Clone)]
enum Rule {
    All(u32),
    Hours([Option<u32>; 24]),
}

impl Rule {
    fn at(&self, hour: usize) -> Option<u32> {
        match self {
            Rule::All(n) => Some(*n),
            Rule::Hours(h) => h[hour],
        }
    }

    fn toml(&self) -> String {
        match self {
            Rule::All(n) => n.to_string(),
            Rule::Hours(h) => {
                // Runs of equal seats become "HH-HH" keys.
                let mut keys = Vec::new();
                let mut i = 0;
                while i < 24 {
                    let Some(n) = h[i] else {
                        i += 1;
                        continue;
                    };
                    let mut j = i + 1;
                    while j < 24 && h[j] == Some(n) {
                        j += 1;
                    }
                    if j - i == 1 {
                        keys.push(format!("\"{i:02}\" = {n}"));
                    } else {
                        keys.push(format!("\"{i:02}-{j:02}\" = {n}"));
                    }
                    i = j;
                }
                format!("{{ {} }}", keys.join(", "))
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Config {
    zone: &'static str,
    slot: i64,
    between: i64,
    before_close: i64,
    /// Ranges in minutes, Monday first, as written (unmerged, maybe overlapping).
    week: Vec<Vec<(u32, u32)>>,
    exceptions: Vec<(NaiveDate, Vec<(u32, u32)>)>,
    holidays: Vec<NaiveDate>,
    default_seats: u32,
    weekday_seats: Vec<Option<Rule>>,
    date_seats: Vec<(NaiveDate, Rule)>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

fn hhmm(m: u32) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

fn ranges_toml(ranges: &[(u32, u32)]) -> String {
    let items: Vec<String> = ranges
        .iter()
        .map(|(a, b)| format!("\"{}-{}\"", hhmm(*a), hhmm(*b)))
        .collect();
    format!("[{}]", items.join(", "))
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Config {
    fn toml(&self) -> String {
        let mut t = format!(
            "timezone = \"{}\"\nslot = \"{}m\"\nhorizon = \"366d\"\n",
            self.zone, self.slot
        );
        let holidays: Vec<String> = self.holidays.iter().map(|d| format!("\"{d}\"")).collect();
        t += &format!("holidays = [{}]\n", holidays.join(", "));
        t += &format!(
            "[buffers]\nbetween_slots = \"{}m\"\nbefore_close = \"{}m\"\n",
            self.between, self.before_close
        );
        t += "[hours]\n";
        for (day, ranges) in DAYS.iter().zip(&self.week) {
            if !ranges.is_empty() {
                t += &format!("{day} = {}\n", ranges_toml(ranges));
            }
        }
        t += "[exceptions]\n";
        for (date, ranges) in &self.exceptions {
            t += &format!("\"{date}\" = {}\n", ranges_toml(ranges));
        }
        t += &format!("[capacity]\ndefault = {}\n", self.default_seats);
        for (day, rule) in DAYS.iter().zip(&self.weekday_seats) {
            if let Some(rule) = rule {
                t += &format!("{day} = {}\n", rule.toml());
            }
        }
        t += "[capacity.dates]\n";
        for (date, rule) in &self.date_seats {
            t += &format!("\"{date}\" = {}\n", rule.toml());
        }
        t
    }

    fn tz(&self) -> Tz {
        self.zone.parse().unwrap()
    }

    /// The merged ranges of local `date`, in seconds, computed here.
    fn ranges_on(&self, date: NaiveDate) -> Vec<(i64, i64)> {
        if self.holidays.contains(&date) {
            return Vec::new();
        }
        // The last exception of a date wins, as in a TOML table (dates are unique here).
        let raw = match self.exceptions.iter().find(|(d, _)| *d == date) {
            Some((_, r)) => r.clone(),
            None => self.week[date.weekday().num_days_from_monday() as usize].clone(),
        };
        let mut raw: Vec<(i64, i64)> = raw
            .into_iter()
            .map(|(a, b)| (i64::from(a) * 60, i64::from(b) * 60))
            .collect();
        raw.sort();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (a, b) in raw {
            if let Some(last) = merged.last_mut() {
                if a <= last.1 {
                    last.1 = last.1.max(b);
                    continue;
                }
            }
            merged.push((a, b));
        }
        merged
    }

    fn seats(&self, date: NaiveDate, hour: usize) -> u32 {
        let by_date = self
            .date_seats
            .iter()
            .find(|(d, _)| *d == date)
            .and_then(|(_, r)| r.at(hour));
        let by_weekday = || {
            self.weekday_seats[date.weekday().num_days_from_monday() as usize]
                .as_ref()
                .and_then(|r| r.at(hour))
        };
        by_date.or_else(by_weekday).unwrap_or(self.default_seats)
    }

    /// Brute force: is every minute of `[start, start + need)` (and its last
    /// second) on local `date`, inside the merged range `range`?
    fn open(&self, start: DateTime<Utc>, date: NaiveDate, range: (i64, i64)) -> bool {
        let tz = self.tz();
        let need = (self.slot + self.before_close) * 60;
        let inside = |t: DateTime<Utc>| {
            let local = t.with_timezone(&tz);
            let wall = i64::from(local.time().num_seconds_from_midnight());
            local.date_naive() == date && range.0 <= wall && wall < range.1
        };
        (0..need / 60).all(|m| inside(start + Duration::minutes(m)))
            && inside(start + Duration::seconds(need - 1))
    }

    /// Every slot the rules give in `[from, to)`, by brute force.
    fn expected(&self) -> Vec<Slot> {
        let tz = self.tz();
        let step = (self.slot + self.between) * 60;
        let mut out = Vec::new();
        let mut date = self.from.date_naive() - Duration::days(2);
        while date <= self.to.date_naive() + Duration::days(2) {
            for (a, b) in self.ranges_on(date) {
                let mut wall = a;
                while wall < b {
                    let local = date.and_hms_opt(0, 0, 0).unwrap() + Duration::seconds(wall);
                    let instants: Vec<DateTime<Utc>> = match tz.from_local_datetime(&local) {
                        LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
                        LocalResult::Ambiguous(x, y) => {
                            vec![x.with_timezone(&Utc), y.with_timezone(&Utc)]
                        }
                        LocalResult::None => vec![],
                    };
                    for start in instants {
                        if start < self.from || start >= self.to {
                            continue;
                        }
                        let seats = self.seats(date, (wall / 3600) as usize);
                        if seats > 0 && self.open(start, date, (a, b)) {
                            out.push(Slot {
                                start,
                                end: start + Duration::minutes(self.slot),
                                seats,
                            });
                        }
                    }
                    wall += step;
                }
            }
            date = date.succ_opt().unwrap();
        }
        out.sort_by_key(|s| s.start);
        out
    }
}

fn ranges() -> impl Strategy<Value = Vec<(u32, u32)>> {
    prop::collection::vec((0u32..1440, 1u32..=720), 0..=3).prop_map(|v| {
        v.into_iter()
            .map(|(a, len)| (a, (a + len).min(1440)))
            .collect()
    })
}

fn rule() -> impl Strategy<Value = Rule> {
    prop_oneof![
        (0u32..4).prop_map(Rule::All),
        prop::collection::vec(prop::option::weighted(0.4, 0u32..4), 24).prop_map(|v| {
            let mut h = [None; 24];
            h.copy_from_slice(&v);
            Rule::Hours(h)
        }),
    ]
}

fn day(n: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + Duration::days(n)
}

/// Night ranges (transitions happen between 00:00 and 03:00 local).
fn night_ranges() -> impl Strategy<Value = Vec<(u32, u32)>> {
    prop::collection::vec((0u32..300, 1u32..=240), 1..=3)
        .prop_map(|v| v.into_iter().map(|(a, len)| (a, a + len)).collect())
}

fn config() -> impl Strategy<Value = Config> {
    // A zone and a date near which to look: mostly one of the zone's own
    // transitions, else any day of 2025-2027 in any zone.
    let base = prop_oneof![
        3 => (0..TRANSITIONS.len()).prop_map(|i| {
            let (zone, date) = TRANSITIONS[i];
            (zone, date.parse::<NaiveDate>().unwrap())
        }),
        2 => (0..ZONES.len(), (0i64..3 * 365).prop_map(day)),
    ];
    (
        (
            base,
            5i64..=120,
            prop_oneof![Just(0i64), 0i64..=30],
            prop_oneof![Just(0i64), 0i64..=60],
            prop::collection::vec(ranges(), 7),
            prop::option::weighted(0.6, night_ranges()),
        ),
        (
            prop::collection::vec((-3i64..=3, ranges()), 0..=2),
            prop::collection::vec(-3i64..=3, 0..=2),
            0u32..4,
            prop::collection::vec(prop::option::weighted(0.5, rule()), 7),
            prop::collection::vec((-3i64..=3, rule()), 0..=2),
            0i64..48 * 60,
            1i64..48 * 60,
        ),
    )
        .prop_map(
            |(
                ((zone, base), slot, between, before_close, week, night),
                (exceptions, holidays, default_seats, weekday_seats, date_seats, at, len),
            )| {
                let near = |d: i64| base + Duration::days(d);
                let mut exceptions: Vec<(NaiveDate, Vec<(u32, u32)>)> = night
                    .map(|r| (base, r))
                    .into_iter()
                    .chain(exceptions.into_iter().map(|(d, r)| (near(d), r)))
                    .collect();
                // Stable: the night ranges win on the transition date.
                exceptions.sort_by_key(|(d, _)| *d);
                exceptions.dedup_by_key(|(d, _)| *d);
                let mut date_seats: Vec<(NaiveDate, Rule)> =
                    date_seats.into_iter().map(|(d, r)| (near(d), r)).collect();
                date_seats.sort_by_key(|(d, _)| *d);
                date_seats.dedup_by_key(|(d, _)| *d);
                // A window of up to two days starting within a day and a
                // half before the base date's midnight (UTC) and a half after.
                let from = base.and_hms_opt(0, 0, 0).unwrap().and_utc() - Duration::hours(36)
                    + Duration::minutes(at);
                Config {
                    zone: ZONES[zone],
                    slot,
                    between,
                    before_close,
                    week,
                    exceptions,
                    holidays: holidays.into_iter().map(near).collect(),
                    default_seats,
                    weekday_seats,
                    date_seats,
                    from,
                    to: from + Duration::minutes(len),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn slots_match_the_brute_force_oracle(cfg in config()) {
        let toml = cfg.toml();
        let schedule: Schedule = toml::from_str(&toml)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{toml}")))?;
        prop_assert_eq!(schedule.validate(), Ok(()), "{}", toml);
        let tz = cfg.tz();
        let slots = schedule.slots(cfg.from, cfg.to);

        // (2) Sorted, no start twice.
        prop_assert!(slots.windows(2).all(|w| w[0].start < w[1].start), "not sorted: {:?}", slots);

        for slot in &slots {
            let local = slot.start.with_timezone(&tz);
            let date = local.date_naive();
            let wall = i64::from(local.time().num_seconds_from_midnight());
            prop_assert!(cfg.from <= slot.start && slot.start < cfg.to);
            prop_assert_eq!(slot.end - slot.start, Duration::minutes(cfg.slot));
            // (1) Inside business hours, every minute, by brute force, on
            // the wall-time grid of its range.
            let range = cfg.ranges_on(date).into_iter().find(|(a, b)| *a <= wall && wall < *b);
            prop_assert!(range.is_some(), "{:?} starts outside hours\n{}", slot, toml);
            let range = range.unwrap();
            prop_assert!(cfg.open(slot.start, date, range), "{:?} leaves hours\n{}", slot, toml);
            prop_assert_eq!((wall - range.0) % ((cfg.slot + cfg.between) * 60), 0);
            // (4) Seats by the capacity rule.
            prop_assert!(slot.seats > 0);
            prop_assert_eq!(slot.seats, cfg.seats(date, (wall / 3600) as usize));
            // (3) slot_at finds it.
            prop_assert_eq!(schedule.slot_at(slot.start), Some(*slot));
        }

        // Nothing missing either: exactly the oracle's slots.
        prop_assert_eq!(&slots, &cfg.expected(), "{}", toml);
    }
}
