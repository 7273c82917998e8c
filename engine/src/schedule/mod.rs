//! Booked callbacks: the `[_schedule]` table of a scenario and the slots it
//! offers. Pure: every function takes the instants it needs.
//!
//! # Semantics
//!
//! Everything is computed in UTC; business hours are local wall time in
//! [`Schedule::timezone`].
//!
//! - **Open.** An instant `t` is open iff its local wall time (date `D`, time
//!   `h`) has `h` inside one of `D`'s merged ranges. `D`'s ranges are: none if
//!   `D` is in `holidays`; else `exceptions[D]` if present (`[]` = closed);
//!   else `hours[weekday(D)]` (a missing weekday is closed). Ranges are
//!   half-open `[start, end)`; overlapping and adjacent ranges of one day are
//!   merged (`09:00-12:00` + `12:00-17:00` = `09:00-17:00`). `24:00` ends a
//!   day; a range never continues into the next date, so a slot never
//!   crosses local midnight even when both days are open around it.
//! - **Candidates.** For each local date `D` and each merged range `[a, b)`
//!   of `D`: the wall times `a, a + step, a + 2·step, …` while `< b`, with
//!   `step = slot + buffers.between_slots`. Each wall time is resolved to UTC
//!   with the zone's rules: a wall time in a spring-forward gap gives no
//!   instant (it is skipped, not moved), one in a fall-back overlap gives two
//!   (both are candidates: they are different real times).
//! - **Slot.** A candidate `s` is a slot iff every instant of
//!   `[s, s + slot + buffers.before_close)` is open, on the same local date
//!   `D` and in the same merged range. A slot lasts `slot` of real time
//!   (`end = start + slot`), even when an offset transition inside it makes
//!   its wall-clock length differ. This is checked exactly: wall time is
//!   continuous between offset transitions, so only the ends of each
//!   continuous piece are checked (a transition inside the window is found
//!   by comparing offsets at its ends and bisecting to the second).
//! - **Seats.** By (local date of `s`, local hour of `s`):
//!   `capacity.dates[D]` (a number, or a hit in its table), else
//!   `capacity.<weekday>` (likewise), else `capacity.default`. A slot with 0
//!   seats is closed: never returned.
//! - **Order.** Slots come sorted by UTC start, with no start twice.
//! - **Overlaps at a transition.** The grid is in wall time, so next to a
//!   transition two slots may overlap in real time: in a repeated hour both
//!   passes are offered (25-minute slots at 01:00/01:25/01:50 local: 01:50
//!   of the first pass ends after 01:00 of the second starts), and a slot
//!   running over a gap ends later on the wall clock than the next grid
//!   point (45-minute slots: 01:30 EST ends at 03:15 EDT, after 03:00 EDT
//!   starts). [`Schedule::slot_at`] then answers the slot with the latest
//!   start `<= t`, so `slot_at(s.start) == Some(s)` for every slot.
//! - **Bookable window.** A booking made at `now` may start in
//!   `[now + min_notice, now + horizon]` (both ends included).
//!
//! - **Nearest.** [`Schedule::nearest`] ranks by `|start - t|`, the earlier
//!   start first on a tie, and returns its pick sorted by start.
//! - **Bad text.** A day's ranges or a capacity table that does not parse
//!   counts as closed / gives no seats; [`Schedule::validate`] refuses it
//!   naming its key. Two capacity keys of one table covering the same hour
//!   are refused.
//!
//! Days without an offset transition (the offset is the same 16 h before the
//! local day's start and 16 h after its end) are computed with that fixed
//! offset and no time-zone look-up per slot; a day with one is computed with
//! the two offsets and the transition instant (found once, by bisection).
//! This assumes no zone changes offset twice within such a ~56 h window
//! (true of every zone's rules in the tz database since the 1940s).

mod booking;
mod capacity;
mod hours;
mod open;
mod slots;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::scenario::{duration_secs_or_text, opt_duration_secs_or_text};

pub use booking::BookingRefused;
pub use capacity::{Capacity, HourSeats, Seats, MAX_SEATS};
pub use chrono_tz::Tz;
pub use hours::{DayHours, WeekHours};
pub use open::Opening;
pub use slots::{local_time, utc_time, Slot};

/// The longest `horizon`.
pub const MAX_HORIZON: Duration = Duration::from_secs(366 * 86_400);

/// `[_schedule]`: when booked callbacks may start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// IANA zone of the business hours.
    pub timezone: Tz,
    /// Slot length: whole minutes, 5..=120.
    #[serde(with = "duration_secs_or_text")]
    pub slot: Duration,
    /// No slot starts before `now + min_notice`.
    #[serde(with = "duration_secs_or_text", default)]
    pub min_notice: Duration,
    /// No slot starts after `now + horizon`.
    #[serde(with = "duration_secs_or_text", default = "default_horizon")]
    pub horizon: Duration,
    /// Calendar summary and mail subject.
    #[serde(default = "default_title")]
    pub title: String,
    /// Template of the appointment's link: `{base_url}` and `{service_id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_url: Option<String>,
    /// Local dates closed all day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holidays: Vec<NaiveDate>,
    #[serde(default)]
    pub buffers: Buffers,
    #[serde(default)]
    pub hours: WeekHours,
    /// A date's ranges replace its weekday's; `[]` closes it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exceptions: BTreeMap<NaiveDate, DayHours>,
    #[serde(default)]
    pub capacity: Capacity,
    #[serde(default)]
    pub notifications: Notifications,
}

fn default_horizon() -> Duration {
    Duration::from_secs(30 * 86_400)
}
fn default_title() -> String {
    "Callback appointment".into()
}

/// `[_schedule.buffers]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Buffers {
    /// Gap between the end of one slot and the start of the next.
    #[serde(with = "duration_secs_or_text")]
    pub between_slots: Duration,
    /// A slot must end at least this long before closing.
    #[serde(with = "duration_secs_or_text")]
    pub before_close: Duration,
    /// The service enters the queue this long before its slot.
    #[serde(with = "duration_secs_or_text")]
    pub enter_queue: Duration,
}

/// `[_schedule.notifications]`: every one is off unless set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notifications {
    /// Confirmation, reschedule and cancel e-mails with an ICS to the customer.
    pub customer_email: bool,
    /// The same ICS to the agents of the scenario's queue.
    pub agent_email: bool,
    /// A reminder this long before the slot.
    #[serde(
        with = "opt_duration_secs_or_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub reminder: Option<Duration>,
    pub reminder_email: bool,
    pub reminder_sms: bool,
    /// Where reminder SMS are POSTed; required with `reminder_sms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sms_url: Option<String>,
    /// The create field holding the customer's e-mail address.
    pub email_field: String,
    /// The create field holding the customer's phone number.
    pub phone_field: String,
    /// The create field holding the customer's name.
    pub name_field: String,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications {
            customer_email: false,
            agent_email: false,
            reminder: None,
            reminder_email: false,
            reminder_sms: false,
            sms_url: None,
            email_field: "email".into(),
            phone_field: "_customer_number".into(),
            name_field: "name".into(),
        }
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    // Every duration here is validated far below chrono's limit.
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Schedule {
    /// Slot length.
    pub fn slot_len(&self) -> chrono::Duration {
        chrono_duration(self.slot)
    }

    pub fn min_notice(&self) -> chrono::Duration {
        chrono_duration(self.min_notice)
    }

    pub fn horizon(&self) -> chrono::Duration {
        chrono_duration(self.horizon)
    }

    pub fn between_slots(&self) -> chrono::Duration {
        chrono_duration(self.buffers.between_slots)
    }

    pub fn before_close(&self) -> chrono::Duration {
        chrono_duration(self.buffers.before_close)
    }

    /// How long before its slot a booked service enters the queue.
    pub fn enter_queue(&self) -> chrono::Duration {
        chrono_duration(self.buffers.enter_queue)
    }

    /// How long before its slot the reminder goes out, if one does.
    pub fn reminder(&self) -> Option<chrono::Duration> {
        self.notifications.reminder.map(chrono_duration)
    }

    /// `join_url` with `{base_url}` and `{service_id}` filled in, if set.
    pub fn render_join_url(&self, base_url: &str, service_id: &str) -> Option<String> {
        let url = self.join_url.as_ref()?;
        Some(
            url.replace("{base_url}", base_url.trim_end_matches('/'))
                .replace("{service_id}", service_id),
        )
    }

    /// Local `date`'s merged opening ranges, in minutes since local midnight:
    /// none on a holiday, else the date's exception, else its weekday's hours.
    pub fn ranges_on(&self, date: NaiveDate) -> &[(u32, u32)] {
        if self.holidays.contains(&date) {
            return &[];
        }
        match self.exceptions.get(&date) {
            Some(day) => day.merged(),
            None => self.hours.day(chrono::Datelike::weekday(&date)).merged(),
        }
    }

    /// The first problem, as (key path like `_schedule.hours.mon`, why).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |key: &str, why: String| Err((format!("_schedule.{key}"), why));
        let day = Duration::from_secs(86_400);

        let slot = self.slot.as_secs();
        if self.slot.subsec_nanos() != 0
            || (slot / 60) * 60 != slot
            || !(5..=120).contains(&(slot / 60))
        {
            return err(
                "slot",
                "must be whole minutes between 5m and 120m (2h)".into(),
            );
        }
        if self.horizon.is_zero() || self.horizon > MAX_HORIZON {
            return err(
                "horizon",
                "must be greater than zero and at most 366 days".into(),
            );
        }
        if self.min_notice >= self.horizon {
            return err("min_notice", "must be shorter than horizon".into());
        }
        if self.title.trim().is_empty() {
            return err("title", "must not be empty".into());
        }
        if let Some(url) = &self.join_url {
            check_join_url(url).or_else(|why| err("join_url", why))?;
        }
        for (key, d) in [
            ("buffers.between_slots", self.buffers.between_slots),
            ("buffers.before_close", self.buffers.before_close),
        ] {
            if d.subsec_nanos() != 0 || d > day {
                return err(key, "must be whole seconds and at most 24h".into());
            }
        }
        if self.buffers.enter_queue >= self.horizon {
            return err("buffers.enter_queue", "must be shorter than horizon".into());
        }
        for weekday in hours::WEEK {
            if let Some(why) = self.hours.day(weekday).error() {
                return err(
                    &format!("hours.{}", hours::weekday_key(weekday)),
                    why.into(),
                );
            }
        }
        for (date, day) in &self.exceptions {
            if let Some(why) = day.error() {
                return err(&format!("exceptions.{date}"), why.into());
            }
        }
        self.capacity
            .check()
            .or_else(|(key, why)| err(&format!("capacity.{key}"), why))?;

        let n = &self.notifications;
        if n.reminder.is_some_and(|r| r.is_zero()) {
            return err("notifications.reminder", "must be greater than zero".into());
        }
        if n.reminder.is_some_and(|r| r > MAX_HORIZON) {
            return err("notifications.reminder", "must be at most 366 days".into());
        }
        if n.reminder.is_none() {
            for (key, on) in [
                ("reminder_email", n.reminder_email),
                ("reminder_sms", n.reminder_sms),
            ] {
                if on {
                    return err(
                        &format!("notifications.{key}"),
                        "is true but no `reminder` says how long before the slot".into(),
                    );
                }
            }
        }
        match &n.sms_url {
            Some(url) if !is_http_url(url) => {
                return err(
                    "notifications.sms_url",
                    "must be an http:// or https:// URL".into(),
                );
            }
            None if n.reminder_sms => {
                return err(
                    "notifications.sms_url",
                    "is required when reminder_sms = true".into(),
                );
            }
            _ => {}
        }
        for (key, field) in [
            ("email_field", &n.email_field),
            ("phone_field", &n.phone_field),
            ("name_field", &n.name_field),
        ] {
            if field.trim().is_empty() {
                return err(&format!("notifications.{key}"), "must name a field".into());
            }
        }
        Ok(())
    }
}

fn is_http_url(url: &str) -> bool {
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    scheme_ok && url.len() >= "http://x".len() && !url.chars().any(char::is_whitespace)
}

/// Non-empty, braces only around `{base_url}` and `{service_id}`.
fn check_join_url(url: &str) -> Result<(), String> {
    if url.trim().is_empty() {
        return Err("must not be empty".into());
    }
    let mut rest = url;
    while let Some(i) = rest.find(['{', '}']) {
        if rest[i..].starts_with('}') {
            return Err("has a `}` that closes no placeholder".into());
        }
        let after = &rest[i + 1..];
        let close = after.find('}').ok_or("has a `{` that is never closed")?;
        let name = &after[..close];
        if name != "base_url" && name != "service_id" {
            return Err(format!(
                "has the placeholder `{{{name}}}`; only {{base_url}} and {{service_id}} exist"
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::scenario::{Scenario, ScenarioError};

    const BASE: &str = r#"
name = "booked"
_media_type = "video"
_wait_for_agent = true
_ttl = "1h"
[_target]
queue = "q"
"#;

    fn parse(schedule: &str) -> Result<Scenario, ScenarioError> {
        Scenario::from_toml(Path::new("booked.toml"), &format!("{BASE}{schedule}"))
    }

    fn key_of(schedule: &str) -> String {
        let e = parse(schedule).expect_err("should be refused");
        e.key.clone().unwrap_or_else(|| panic!("no key in {e}"))
    }

    const FULL: &str = r#"
[_schedule]
timezone = "Europe/London"
slot = "15m"
min_notice = "1h"
horizon = "14d"
title = "Video appointment"
join_url = "{base_url}/video/{service_id}"
holidays = ["2026-12-25", "2026-12-26"]

[_schedule.buffers]
between_slots = "10m"
before_close = "15m"
enter_queue = "2m"

[_schedule.hours]
mon = ["09:00-12:30", "13:30-17:00"]
tue = ["09:00-12:00", "12:00-17:00"]
sat = ["10:00-13:00"]

[_schedule.exceptions]
"2026-12-24" = ["09:00-12:00"]
"2026-12-31" = []

[_schedule.capacity]
default = 2
mon = { "09-12" = 4, "16" = 1 }
sat = 1
[_schedule.capacity.dates]
"2026-12-24" = 1
"2026-12-31" = { "09-11" = 2 }

[_schedule.notifications]
customer_email = true
agent_email = true
reminder = "15m"
reminder_email = true
reminder_sms = true
sms_url = "http://127.0.0.1:9999/sms"
"#;

    #[test]
    fn parses_the_full_table() {
        let s = parse(FULL).unwrap().schedule.unwrap();
        assert_eq!(s.timezone, chrono_tz::Europe::London);
        assert_eq!(s.slot_len(), chrono::Duration::minutes(15));
        assert_eq!(s.min_notice(), chrono::Duration::hours(1));
        assert_eq!(s.horizon(), chrono::Duration::days(14));
        assert_eq!(s.enter_queue(), chrono::Duration::minutes(2));
        assert_eq!(s.between_slots(), chrono::Duration::minutes(10));
        assert_eq!(s.before_close(), chrono::Duration::minutes(15));
        assert_eq!(s.reminder(), Some(chrono::Duration::minutes(15)));
        assert_eq!(s.title, "Video appointment");
        assert_eq!(s.join_url.as_deref(), Some("{base_url}/video/{service_id}"));
        assert_eq!(s.hours.mon.merged(), &[(540, 750), (810, 1020)]);
        assert_eq!(s.hours.tue.merged(), &[(540, 1020)]);
        assert!(s.hours.wed.merged().is_empty());
        let d = |t: &str| t.parse::<NaiveDate>().unwrap();
        assert_eq!(s.ranges_on(d("2026-12-24")), &[(540, 720)]);
        assert!(s.ranges_on(d("2026-12-25")).is_empty());
        assert!(s.ranges_on(d("2026-12-31")).is_empty());
        assert_eq!(s.notifications.email_field, "email");
        assert_eq!(s.notifications.phone_field, "_customer_number");
        assert_eq!(s.notifications.name_field, "name");
        assert!(s.notifications.reminder_sms);

        // Round trip through TOML.
        let text = toml::to_string(&s).unwrap();
        let back: Schedule = toml::from_str(&text).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn defaults() {
        let s = parse("[_schedule]\ntimezone = \"UTC\"\nslot = 900\n")
            .unwrap()
            .schedule
            .unwrap();
        assert_eq!(s.min_notice(), chrono::Duration::zero());
        assert_eq!(s.horizon(), chrono::Duration::days(30));
        assert_eq!(s.title, "Callback appointment");
        assert_eq!(s.capacity.default, 1);
        assert_eq!(s.reminder(), None);
        assert_eq!(s.notifications, Notifications::default());
        assert!(parse("").unwrap().schedule.is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let head = "[_schedule]\ntimezone = \"Europe/London\"\nslot = \"15m\"\n";
        let cases: &[(&str, &str)] = &[
            ("[_schedule]\ntimezone = \"Mars/Olympus\"\nslot = \"15m\"\n", "_schedule.timezone"),
            ("[_schedule]\ntimezone = \"UTC\"\nslot = \"3m\"\n", "_schedule.slot"),
            ("[_schedule]\ntimezone = \"UTC\"\nslot = \"150m\"\n", "_schedule.slot"),
            ("[_schedule]\ntimezone = \"UTC\"\nslot = \"90s\"\n", "_schedule.slot"),
            ("[_schedule]\ntimezone = \"UTC\"\nslot = \"15m\"\ncolour = 1\n", "_schedule.colour"),
            ("[_schedule]\ntimezone = \"UTC\"\nslot = \"15m\"\nhorizon = \"367d\"\n", "_schedule.horizon"),
            ("[_schedule]\ntimezone = \"UTC\"\nslot = \"15m\"\nhorizon = \"1d\"\nmin_notice = \"2d\"\n", "_schedule.min_notice"),
            ("[_schedule]\ntimezone = \"UTC\"\nslot = \"15m\"\njoin_url = \"\"\n", "_schedule.join_url"),
            ("[_schedule]\ntimezone = \"UTC\"\nslot = \"15m\"\njoin_url = \"{base}/x\"\n", "_schedule.join_url"),
            ("[_schedule]\ntimezone = \"UTC\"\nslot = \"15m\"\njoin_url = \"/x/{service_id\"\n", "_schedule.join_url"),
            ("[_schedule]\ntimezone = \"UTC\"\nslot = \"15m\"\nholidays = [\"2026-02-30\"]\n", "_schedule.holidays"),
        ];
        for (toml, key) in cases {
            assert_eq!(&key_of(toml), key, "{toml}");
        }
        let cases: &[(&str, &str)] = &[
            (
                "[_schedule.hours]\nmon = [\"09:00-25:00\"]\n",
                "_schedule.hours.mon",
            ),
            (
                "[_schedule.hours]\nfri = [\"17:00-09:00\"]\n",
                "_schedule.hours.fri",
            ),
            (
                "[_schedule.hours]\nsun = [\"09:60-10:00\"]\n",
                "_schedule.hours.sun",
            ),
            (
                "[_schedule.hours]\nmonday = [\"09:00-10:00\"]\n",
                "_schedule.hours.monday",
            ),
            (
                "[_schedule.exceptions]\n\"2026-12-24\" = [\"9-12\"]\n",
                "_schedule.exceptions.2026-12-24",
            ),
            (
                "[_schedule.buffers]\nenter_queue = \"31d\"\n",
                "_schedule.buffers.enter_queue",
            ),
            (
                "[_schedule.buffers]\nlunch = \"1h\"\n",
                "_schedule.buffers.lunch",
            ),
            (
                "[_schedule.capacity]\ndefault = 100001\n",
                "_schedule.capacity.default",
            ),
            (
                "[_schedule.capacity]\nmon = { \"25\" = 1 }\n",
                "_schedule.capacity.mon",
            ),
            (
                "[_schedule.capacity]\ntue = { \"12-09\" = 1 }\n",
                "_schedule.capacity.tue",
            ),
            (
                "[_schedule.capacity]\nwed = { \"09-12\" = 1, \"10\" = 2 }\n",
                "_schedule.capacity.wed",
            ),
            (
                "[_schedule.capacity]\nsat = 200000\n",
                "_schedule.capacity.sat",
            ),
            (
                "[_schedule.capacity.dates]\n\"2026-12-24\" = { \"9\" = 100001 }\n",
                "_schedule.capacity.dates.2026-12-24",
            ),
            (
                "[_schedule.notifications]\nreminder_sms = true\nreminder = \"15m\"\n",
                "_schedule.notifications.sms_url",
            ),
            (
                "[_schedule.notifications]\nreminder_email = true\n",
                "_schedule.notifications.reminder_email",
            ),
            (
                "[_schedule.notifications]\nreminder_sms = true\nsms_url = \"http://x/sms\"\n",
                "_schedule.notifications.reminder_sms",
            ),
            (
                "[_schedule.notifications]\nreminder = \"15m\"\nsms_url = \"ftp://x/sms\"\n",
                "_schedule.notifications.sms_url",
            ),
            (
                "[_schedule.notifications]\nemail_field = \"\"\n",
                "_schedule.notifications.email_field",
            ),
        ];
        for (toml, key) in cases {
            assert_eq!(&key_of(&format!("{head}{toml}")), key, "{toml}");
        }
        // The reason says why.
        let e = parse(&format!(
            "{head}[_schedule.notifications]\nreminder_sms = true\nreminder = \"15m\"\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("reminder_sms"), "{e}");
        let e = parse(&format!(
            "{head}[_schedule.hours]\nmon = [\"09:00-25:00\"]\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("09:00-25:00"), "{e}");
    }

    #[test]
    fn join_url_template() {
        assert!(check_join_url("{base_url}/video/{service_id}").is_ok());
        assert!(check_join_url("https://meet.example/{service_id}?x=1").is_ok());
        assert!(check_join_url("https://meet.example/static").is_ok());
        assert!(check_join_url("{base_url}}").is_err());
        assert!(check_join_url("{{base_url}}").is_err());
        assert!(check_join_url("  ").is_err());
        let s: Schedule = toml::from_str(
            "timezone = \"UTC\"\nslot = \"15m\"\njoin_url = \"{base_url}/video/{service_id}\"\n",
        )
        .unwrap();
        assert_eq!(
            s.render_join_url("https://cb.example/", "abc").as_deref(),
            Some("https://cb.example/video/abc")
        );
    }
}
