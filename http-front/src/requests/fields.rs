//! Rules shared by many fields: ids, bounded text, times and zones. Every
//! length counts characters, never bytes, so a name in any script gets the
//! same room.

use chrono::{DateTime, Utc};
use engine::schedule::Tz;

use crate::error::AppError;

/// Ids are ours (`<scenario-free uuid>`); anything else is refused before a lookup.
pub fn check_id(field: &str, id: &str) -> Result<(), AppError> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(AppError::field(
            field,
            "is not a valid id (letters, digits, '-' and '_', at most 128)",
        ));
    }
    Ok(())
}

/// Whether `value` has no control characters.
pub fn printable(value: &str) -> bool {
    !value.chars().any(char::is_control)
}

/// Whether `value` has at most `n` characters.
pub fn fits(value: &str, n: usize) -> bool {
    // A character is at least a byte: most values are short enough to fit
    // by their length alone, without counting.
    value.len() <= n || value.chars().count() <= n
}

/// `value` is at most `n` printable characters.
pub fn at_most(field: &str, value: &str, n: usize) -> Result<(), AppError> {
    if !fits(value, n) || !printable(value) {
        return Err(AppError::field(
            field,
            format!("must be at most {n} printable characters"),
        ));
    }
    Ok(())
}

/// A time as GMS clients send it: ISO 8601 with a zone, or without one (UTC).
/// Years outside 1970..=9999 are refused: nobody books them, and chrono's
/// extended years would overflow the arithmetic that follows.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    use chrono::Datelike;
    let t = match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()?
            .and_utc(),
    };
    (1970..=9999).contains(&t.year()).then_some(t)
}

/// `text` as a time, or the error naming `field` (`example` says what a time looks like).
pub fn time(field: &str, text: &str, example: &str) -> Result<DateTime<Utc>, AppError> {
    parse_time(text)
        .ok_or_else(|| AppError::field(field, format!("`{text}` is not an ISO-8601 {example}")))
}

/// `text` as an IANA zone, or the error naming `field`.
pub fn zone(field: &str, text: &str) -> Result<Tz, AppError> {
    text.parse::<Tz>().map_err(|_| {
        AppError::field(
            field,
            format!("`{text}` is not an IANA time zone such as Europe/London"),
        )
    })
}

#[cfg(test)]
mod tests {
    /// A length counts characters, not bytes, whichever way `fits` takes.
    #[test]
    fn fits_counts_characters() {
        let check = |value: &str, n: usize, expected: bool| {
            assert_eq!(super::fits(value, n), expected, "{value:?} in {n}");
        };
        check("", 0, true);
        check("abc", 3, true);
        check("abcd", 3, false);
        // Two bytes each: fits by characters, not by bytes.
        check("ééé", 3, true);
        check("éééé", 3, false);
        // Four bytes each.
        check("😀😀", 2, true);
        check("😀😀😀", 2, false);
    }
}
