//! Seats per slot: `default`, per weekday, per date; a number for a whole day
//! or a table of local start hours (`"09-12" = 4`, `"16" = 1`).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::hours::{weekday_key, WEEK};

/// The most seats one slot may have.
pub const MAX_SEATS: u32 = 100_000;

/// `[_schedule.capacity]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Seats of a slot that no weekday or date rule gives.
    #[serde(default = "one")]
    pub default: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mon: Option<Seats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tue: Option<Seats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wed: Option<Seats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thu: Option<Seats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fri: Option<Seats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sat: Option<Seats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sun: Option<Seats>,
    /// Per local date; wins over the weekday's rule.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dates: BTreeMap<NaiveDate, Seats>,
}

fn one() -> u32 {
    1
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            default: 1,
            mon: None,
            tue: None,
            wed: None,
            thu: None,
            fri: None,
            sat: None,
            sun: None,
            dates: BTreeMap::new(),
        }
    }
}

impl Capacity {
    /// The weekday's rule, if any.
    pub fn weekday(&self, weekday: Weekday) -> Option<&Seats> {
        match weekday {
            Weekday::Mon => self.mon.as_ref(),
            Weekday::Tue => self.tue.as_ref(),
            Weekday::Wed => self.wed.as_ref(),
            Weekday::Thu => self.thu.as_ref(),
            Weekday::Fri => self.fri.as_ref(),
            Weekday::Sat => self.sat.as_ref(),
            Weekday::Sun => self.sun.as_ref(),
        }
    }

    /// Seats of a slot starting on local `date` in local `hour` (0..=23):
    /// the date's rule, else the weekday's, else `default`.
    pub fn seats(&self, date: NaiveDate, hour: u32) -> u32 {
        self.dates
            .get(&date)
            .and_then(|r| r.at(hour))
            .or_else(|| self.weekday(date.weekday()).and_then(|r| r.at(hour)))
            .unwrap_or(self.default)
    }

    /// [`Capacity::seats`] for every hour of `date`.
    pub fn day(&self, date: NaiveDate) -> [u32; 24] {
        let by_date = self.dates.get(&date);
        let by_weekday = self.weekday(date.weekday());
        std::array::from_fn(|hour| {
            let hour = hour as u32;
            by_date
                .and_then(|r| r.at(hour))
                .or_else(|| by_weekday.and_then(|r| r.at(hour)))
                .unwrap_or(self.default)
        })
    }

    /// The first problem, as (key below `_schedule.capacity`, why).
    pub(crate) fn check(&self) -> Result<(), (String, String)> {
        if self.default > MAX_SEATS {
            return Err(("default".into(), too_many(self.default)));
        }
        for weekday in WEEK {
            if let Some(rule) = self.weekday(weekday) {
                rule.check()
                    .map_err(|why| (weekday_key(weekday).into(), why))?;
            }
        }
        for (date, rule) in &self.dates {
            rule.check().map_err(|why| (format!("dates.{date}"), why))?;
        }
        Ok(())
    }
}

fn too_many(n: u32) -> String {
    format!("{n} seats is more than the {MAX_SEATS} a slot may have")
}

/// One day's seats: a number for every slot, or a table of start hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seats {
    All(u32),
    Hours(HourSeats),
}

impl Seats {
    /// The seats this rule gives at local start `hour`, if it gives any.
    pub fn at(&self, hour: u32) -> Option<u32> {
        match self {
            Seats::All(n) => Some(*n),
            Seats::Hours(h) => h.at(hour),
        }
    }

    fn check(&self) -> Result<(), String> {
        match self {
            Seats::All(n) if *n > MAX_SEATS => Err(too_many(*n)),
            Seats::All(_) => Ok(()),
            Seats::Hours(h) => h.check(),
        }
    }
}

impl Serialize for Seats {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Seats::All(n) => s.serialize_u32(*n),
            Seats::Hours(h) => h.text.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Seats {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SeatsVisitor;

        impl<'de> Visitor<'de> for SeatsVisitor {
            type Value = Seats;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of seats, or a table of hours (\"09-12\" = 4) to seats")
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Seats, E> {
                u32::try_from(n)
                    .map(Seats::All)
                    .map_err(|_| E::custom(format!("{n} seats is too many")))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Seats, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(format!("{n} seats is negative")))
                    .and_then(|n| self.visit_u64(n))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Seats, A::Error> {
                let text = BTreeMap::<String, u32>::deserialize(
                    de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(Seats::Hours(HourSeats::new(text)))
            }
        }

        d.deserialize_any(SeatsVisitor)
    }
}

/// Seats by local start hour: keys `"HH"` or `"HH-HH"` (end exclusive).
///
/// A table whose keys do not parse, or overlap, is kept with its error for
/// [`Schedule::validate`](super::Schedule::validate); it gives no seats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourSeats {
    text: BTreeMap<String, u32>,
    by_hour: Result<Box<[Option<u32>; 24]>, String>,
}

impl HourSeats {
    pub fn new(text: BTreeMap<String, u32>) -> Self {
        let by_hour = parse_hours(&text);
        HourSeats { text, by_hour }
    }

    /// The table as written.
    pub fn text(&self) -> &BTreeMap<String, u32> {
        &self.text
    }

    /// Seats at local start `hour`, if the table lists it.
    pub fn at(&self, hour: u32) -> Option<u32> {
        let by_hour = self.by_hour.as_ref().ok()?;
        *by_hour.get(hour as usize)?
    }

    fn check(&self) -> Result<(), String> {
        self.by_hour.as_ref().map_err(Clone::clone)?;
        match self.text.values().find(|n| **n > MAX_SEATS) {
            Some(n) => Err(too_many(*n)),
            None => Ok(()),
        }
    }
}

fn parse_hours(text: &BTreeMap<String, u32>) -> Result<Box<[Option<u32>; 24]>, String> {
    let mut by_hour: [Option<u32>; 24] = [None; 24];
    let mut owner: [Option<&str>; 24] = [None; 24];
    for (key, seats) in text {
        let (from, to) = parse_hour_key(key).ok_or_else(|| {
            format!(
                "`{key}` is not a start hour \"HH\" (00-23) or an hour range \"HH-HH\" (end exclusive, after the start, at most 24)"
            )
        })?;
        for hour in from..to {
            if let Some(other) = owner[hour] {
                return Err(format!("hour {hour:02} is in both `{other}` and `{key}`"));
            }
            owner[hour] = Some(key);
            by_hour[hour] = Some(*seats);
        }
    }
    Ok(Box::new(by_hour))
}

fn parse_hour_key(key: &str) -> Option<(usize, usize)> {
    let hour = |s: &str| -> Option<usize> {
        let s = s.trim();
        (!s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match key.split_once('-') {
        None => {
            let h = hour(key)?;
            (h <= 23).then_some((h, h + 1))
        }
        Some((a, b)) => {
            let (a, b) = (hour(a)?, hour(b)?);
            (a <= 23 && b <= 24 && a < b).then_some((a, b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, u32)]) -> HourSeats {
        HourSeats::new(pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect())
    }

    #[test]
    fn hour_keys() {
        let t = table(&[("09-12", 4), ("16", 1), ("22-24", 0)]);
        assert_eq!(t.check(), Ok(()));
        assert_eq!(t.at(8), None);
        assert_eq!(t.at(9), Some(4));
        assert_eq!(t.at(11), Some(4));
        assert_eq!(t.at(12), None);
        assert_eq!(t.at(16), Some(1));
        assert_eq!(t.at(23), Some(0));
        for bad in ["24", "12-12", "13-12", "9-25", "x", "", "1-2-3", "-3"] {
            assert!(table(&[(bad, 1)]).check().is_err(), "{bad}");
        }
        assert!(table(&[("09-12", 1), ("11", 2)]).check().is_err());
        assert!(table(&[("09", MAX_SEATS + 1)]).check().is_err());
    }
}
