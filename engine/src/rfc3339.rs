//! A record's timestamps in JSON, as chrono writes and reads them, faster.
//!
//! chrono's serde writes a `DateTime<Utc>` through `fmt` (a padded write
//! per field, each digit a `write_char`) and reads it with its general
//! RFC 3339 parser: about 2,600 and 1,900 instructions a timestamp, and a
//! waiting service's record holds eight. Every write to Redis encodes the
//! record and every read decodes it, so this was a tenth of a create.
//!
//! The text is exactly chrono's (`2026-12-07T14:45:29.709469770Z`: UTC with
//! `Z`, the fraction as 3, 6 or 9 digits, only as long as needed, none when
//! zero), so records and answers read as before. What the fast paths do
//! not cover (years outside 0-9999, a leap second, an offset other than
//! `Z`, chrono's relaxed forms) goes to chrono itself.
//!
//! Use with `#[serde(with = "crate::rfc3339")]`, [`option`] for an
//! `Option`, [`map`] for a [`SmallMap`] of timestamps.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Timelike, Utc};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::small_map::SmallMap;

/// The longest text [`write`] makes: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const MAX_LEN: usize = 30;

/// `t` as chrono writes it, into `buf`; its length. None when chrono's own
/// formatting is needed (a year outside 0-9999, a leap second).
pub fn write(t: &DateTime<Utc>, buf: &mut [u8; MAX_LEN]) -> Option<usize> {
    let date = t.date_naive();
    let year = date.year();
    let nanos = t.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    let secs = t.num_seconds_from_midnight();
    let two = |buf: &mut [u8; MAX_LEN], at: usize, n: u32| {
        buf[at] = b'0' + (n / 10) as u8;
        buf[at + 1] = b'0' + (n % 10) as u8;
    };
    two(buf, 0, year as u32 / 100);
    two(buf, 2, year as u32 % 100);
    buf[4] = b'-';
    two(buf, 5, date.month());
    buf[7] = b'-';
    two(buf, 8, date.day());
    buf[10] = b'T';
    two(buf, 11, secs / 3600);
    buf[13] = b':';
    two(buf, 14, secs / 60 % 60);
    buf[16] = b':';
    two(buf, 17, secs % 60);
    let mut len = 19;
    // chrono's AutoSi: milli, micro or nanoseconds, whichever is exact.
    let (digits, mut fraction) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (3, n / 1_000_000),
        n if n % 1_000 == 0 => (6, n / 1_000),
        n => (9, n),
    };
    if digits > 0 {
        buf[len] = b'.';
        for i in (0..digits).rev() {
            buf[len + 1 + i] = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
        len += 1 + digits;
    }
    buf[len] = b'Z';
    Some(len + 1)
}

/// The common shape, `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with 1 to 9
/// fraction digits, read without chrono's parser. None for anything else,
/// valid or not: [`parse`] then asks chrono.
fn parse_fast(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let nanos = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            num(20, 20 + digits.len())? * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?
        .and_hms_nano_opt(num(11, 13)?, num(14, 16)?, num(17, 19)?, nanos)
        .map(|t| t.and_utc())
}

/// A timestamp as chrono's serde reads one: RFC 3339 with its relaxations,
/// any offset, in UTC.
pub fn parse(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match parse_fast(s) {
        Some(t) => Ok(t),
        None => s
            .parse::<DateTime<FixedOffset>>()
            .map(|t| t.with_timezone(&Utc)),
    }
}

pub fn serialize<S: Serializer>(t: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; MAX_LEN];
    match write(t, &mut buf) {
        // Only ASCII digits and punctuation were written.
        Some(len) => serializer.serialize_str(std::str::from_utf8(&buf[..len]).unwrap_or_default()),
        None => t.serialize(serializer),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    struct Text;
    impl Visitor<'_> for Text {
        type Value = DateTime<Utc>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an RFC 3339 formatted date and time string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<DateTime<Utc>, E> {
            parse(s).map_err(E::custom)
        }
    }
    deserializer.deserialize_str(Text)
}

/// A timestamp that (de)serialises through this module: for the values of
/// a map, and for callers that hold one outside a struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rfc3339(pub DateTime<Utc>);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Rfc3339 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize(deserializer).map(Rfc3339)
    }
}

/// `Option<DateTime<Utc>>`; use with `default`, as chrono's would be.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(
        t: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        t.map(Rfc3339).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        Ok(Option::<Rfc3339>::deserialize(deserializer)?.map(|t| t.0))
    }
}

/// A [`SmallMap`] whose values are timestamps (a record's timers).
pub mod map {
    use super::*;

    pub fn serialize<K, S>(
        map: &SmallMap<K, DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error>
    where
        K: Serialize + Ord,
        S: Serializer,
    {
        serializer.collect_map(map.iter().map(|(k, t)| (k, Rfc3339(*t))))
    }

    pub fn deserialize<'de, K, D>(deserializer: D) -> Result<SmallMap<K, DateTime<Utc>>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        D: Deserializer<'de>,
    {
        let map = SmallMap::<K, Rfc3339>::deserialize(deserializer)?;
        Ok(map.into_iter().map(|(k, t)| (k, t.0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDateTime, TimeZone};

    use super::*;

    /// chrono's own text for `t` (its serde, as records were written).
    fn chrono_text(t: &DateTime<Utc>) -> String {
        serde_json::to_value(t)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn ours(t: &DateTime<Utc>) -> String {
        serde_json::to_value(Rfc3339(*t))
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Timestamps across the years with every kind of fraction: a fixed
    /// pseudo-random walk, so a failure names a timestamp that comes back.
    fn samples() -> Vec<DateTime<Utc>> {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let max = Utc
            .with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
            .unwrap()
            .timestamp();
        let mut out = Vec::new();
        for i in 0..20_000 {
            let secs = (next() % (max as u64 + 1)) as i64;
            let nanos = match i % 4 {
                0 => 0,
                1 => (next() % 1_000) as u32 * 1_000_000,
                2 => (next() % 1_000_000) as u32 * 1_000,
                _ => (next() % 1_000_000_000) as u32,
            };
            out.push(Utc.timestamp_opt(secs, nanos).unwrap());
        }
        // The edges of the fast path and just past them.
        for (y, mo, d, h, mi, s, ns) in [
            (0, 1, 1, 0, 0, 0, 0),
            (9999, 12, 31, 23, 59, 59, 999_999_999),
            (-1, 12, 31, 23, 59, 59, 1),
            (10000, 1, 1, 0, 0, 0, 0),
            (2024, 2, 29, 12, 0, 0, 100),
            (1970, 1, 1, 0, 0, 0, 1_000),
        ] {
            let date = NaiveDate::from_ymd_opt(y, mo, d).unwrap();
            out.push(date.and_hms_nano_opt(h, mi, s, ns).unwrap().and_utc());
        }
        // A leap second (chrono keeps it as 1e9 or more nanoseconds).
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap();
        out.push(NaiveDateTime::and_utc(&leap));
        out
    }

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        for t in samples() {
            assert_eq!(ours(&t), chrono_text(&t), "{t:?}");
        }
    }

    #[test]
    fn timestamps_read_back_as_written() {
        for t in samples() {
            let text = chrono_text(&t);
            let back: Rfc3339 = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert_eq!(back.0, t, "{text}");
        }
    }

    /// `input` reads as chrono reads it: the same time, or an error.
    fn check(input: &str, expected: Option<&str>) {
        let chrono: Option<DateTime<Utc>> = serde_json::from_value(serde_json::json!(input)).ok();
        let ours = parse(input).ok();
        assert_eq!(ours, chrono, "{input}: chrono disagrees");
        assert_eq!(
            ours.map(|t| chrono_text(&t)).as_deref(),
            expected,
            "{input}"
        );
    }

    #[test]
    fn timestamps_read_as_chrono_reads_them() {
        check("2026-12-07T14:45:29Z", Some("2026-12-07T14:45:29Z"));
        check("2026-12-07T14:45:29.7Z", Some("2026-12-07T14:45:29.700Z"));
        check(
            "2026-12-07T14:45:29.1234Z",
            Some("2026-12-07T14:45:29.123400Z"),
        );
        check(
            "2026-12-07T14:45:29.123456789Z",
            Some("2026-12-07T14:45:29.123456789Z"),
        );
        // Past the fast path: chrono's forms and offsets.
        check("2026-12-07T14:45:29+02:00", Some("2026-12-07T12:45:29Z"));
        check(
            "2026-12-07T14:45:29.5-01:30",
            Some("2026-12-07T16:15:29.500Z"),
        );
        check("2026-12-07 14:45:29Z", Some("2026-12-07T14:45:29Z"));
        check("2026-12-07t14:45:29z", Some("2026-12-07T14:45:29Z"));
        check(
            "2026-12-07T14:45:29.1234567891Z",
            Some("2026-12-07T14:45:29.123456789Z"),
        );
        check("2016-12-31T23:59:60Z", Some("2016-12-31T23:59:60Z"));
        // Wrong: both refuse.
        check("2026-02-30T00:00:00Z", None);
        check("2026-12-07T24:00:00Z", None);
        check("2026-12-07T14:60:00Z", None);
        check("2026-13-07T14:45:29Z", None);
        check("2026-12-07T14:45:29.Z", None);
        check("2026-12-07T14:45:29", None);
        check("2026-12-07T1a:45:29Z", None);
        check("2026-12-07", None);
        check("", None);
        check("tomorrow", None);
    }

    #[test]
    fn options_and_maps_keep_their_shape() {
        let t = Utc.with_ymd_and_hms(2026, 12, 7, 14, 45, 29).unwrap();
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Holder {
            #[serde(default, with = "option", skip_serializing_if = "Option::is_none")]
            at: Option<DateTime<Utc>>,
            #[serde(default, with = "map")]
            timers: SmallMap<String, DateTime<Utc>>,
        }
        let full = Holder {
            at: Some(t),
            timers: SmallMap::from([("b".to_owned(), t), ("a".to_owned(), t)]),
        };
        let text = serde_json::to_string(&full).unwrap();
        assert_eq!(
            text,
            r#"{"at":"2026-12-07T14:45:29Z","timers":{"a":"2026-12-07T14:45:29Z","b":"2026-12-07T14:45:29Z"}}"#
        );
        assert_eq!(serde_json::from_str::<Holder>(&text).unwrap(), full);
        let empty: Holder = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.at, None);
        let null: Holder = serde_json::from_str(r#"{"at":null}"#).unwrap();
        assert_eq!(null.at, None);
        assert!(serde_json::from_str::<Holder>(r#"{"at":"soon"}"#).is_err());
    }
}
