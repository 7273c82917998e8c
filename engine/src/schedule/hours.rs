//! Opening hours: one day's ranges (`"09:00-12:30"`), merged, and the week.

use chrono::Weekday;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Minutes in a day: the end `24:00`.
pub(crate) const DAY_MINUTES: u32 = 24 * 60;

/// One day's opening ranges, as written (`["09:00-12:30", "13:30-17:00"]`)
/// and merged: sorted, overlapping and adjacent ranges joined.
///
/// A list that does not parse is kept with its error, so that
/// [`Schedule::validate`](super::Schedule::validate) can name its key; such a
/// day counts as closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayHours {
    text: Vec<String>,
    merged: Result<Vec<(u32, u32)>, String>,
}

impl Default for DayHours {
    fn default() -> Self {
        DayHours {
            text: Vec::new(),
            merged: Ok(Vec::new()),
        }
    }
}

impl DayHours {
    /// Parses and merges `ranges` ("HH:MM-HH:MM", end may be "24:00").
    pub fn new<I, S>(ranges: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let text: Vec<String> = ranges.into_iter().map(Into::into).collect();
        let merged = parse_ranges(&text);
        DayHours { text, merged }
    }

    /// The ranges as written.
    pub fn text(&self) -> &[String] {
        &self.text
    }

    /// No range at all (closed).
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Merged half-open ranges `[start, end)` in minutes since local midnight,
    /// sorted; empty when closed or when the text does not parse.
    pub fn merged(&self) -> &[(u32, u32)] {
        self.merged.as_deref().unwrap_or(&[])
    }

    /// Why the text does not parse, if it does not.
    pub fn error(&self) -> Option<&str> {
        self.merged.as_ref().err().map(String::as_str)
    }
}

impl Serialize for DayHours {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.text.serialize(s)
    }
}

impl<'de> Deserialize<'de> for DayHours {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(d).map(DayHours::new)
    }
}

fn parse_ranges(text: &[String]) -> Result<Vec<(u32, u32)>, String> {
    let mut ranges = text
        .iter()
        .map(|t| parse_range(t))
        .collect::<Result<Vec<_>, _>>()?;
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    Ok(merged)
}

fn parse_range(t: &str) -> Result<(u32, u32), String> {
    let bad = || {
        format!(
            "`{t}` is not a range \"HH:MM-HH:MM\" (hours 00-23, minutes 00-59, the end may be 24:00)"
        )
    };
    let (a, b) = t.split_once('-').ok_or_else(bad)?;
    let a = parse_hhmm(a.trim(), false).ok_or_else(bad)?;
    let b = parse_hhmm(b.trim(), true).ok_or_else(bad)?;
    if a >= b {
        return Err(format!("`{t}`: the start must be before the end"));
    }
    Ok((a, b))
}

/// `HH:MM` to minutes; `24:00` only when `end`.
fn parse_hhmm(s: &str, end: bool) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' || !b[..2].iter().chain(&b[3..]).all(u8::is_ascii_digit) {
        return None;
    }
    let h = u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0');
    let m = u32::from(b[3] - b'0') * 10 + u32::from(b[4] - b'0');
    match (h, m) {
        (0..=23, 0..=59) => Some(h * 60 + m),
        (24, 0) if end => Some(DAY_MINUTES),
        _ => None,
    }
}

/// Weekly opening hours; a day not given is closed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeekHours {
    #[serde(default, skip_serializing_if = "DayHours::is_empty")]
    pub mon: DayHours,
    #[serde(default, skip_serializing_if = "DayHours::is_empty")]
    pub tue: DayHours,
    #[serde(default, skip_serializing_if = "DayHours::is_empty")]
    pub wed: DayHours,
    #[serde(default, skip_serializing_if = "DayHours::is_empty")]
    pub thu: DayHours,
    #[serde(default, skip_serializing_if = "DayHours::is_empty")]
    pub fri: DayHours,
    #[serde(default, skip_serializing_if = "DayHours::is_empty")]
    pub sat: DayHours,
    #[serde(default, skip_serializing_if = "DayHours::is_empty")]
    pub sun: DayHours,
}

impl WeekHours {
    pub fn day(&self, weekday: Weekday) -> &DayHours {
        match weekday {
            Weekday::Mon => &self.mon,
            Weekday::Tue => &self.tue,
            Weekday::Wed => &self.wed,
            Weekday::Thu => &self.thu,
            Weekday::Fri => &self.fri,
            Weekday::Sat => &self.sat,
            Weekday::Sun => &self.sun,
        }
    }
}

/// The TOML key of a weekday.
pub(crate) fn weekday_key(weekday: Weekday) -> &'static str {
    match weekday {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}

pub(crate) const WEEK: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_overlapping_and_adjacent_ranges() {
        let d = DayHours::new(["13:00-17:00", "09:00-12:00", "12:00-13:00", "16:00-18:00"]);
        assert_eq!(d.merged(), &[(540, 1080)]);
        let d = DayHours::new(["09:00-12:30", "13:30-24:00"]);
        assert_eq!(d.merged(), &[(540, 750), (810, 1440)]);
    }

    #[test]
    fn refuses_bad_ranges() {
        for bad in [
            "9:00-17:00",
            "09:00-17:60",
            "24:00-24:00",
            "09:00",
            "17:00-09:00",
            "10:00-10:00",
            "23:00-24:01",
            "00:00-25:00",
        ] {
            assert!(DayHours::new([bad]).error().is_some(), "{bad}");
            assert!(DayHours::new([bad]).merged().is_empty());
        }
        assert_eq!(DayHours::new(["00:00-24:00"]).merged(), &[(0, 1440)]);
        assert_eq!(DayHours::new([" 08:15 - 09:45 "]).merged(), &[(495, 585)]);
    }
}
