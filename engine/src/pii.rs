//! Personal data in logs: customer numbers, names, e-mail addresses and
//! free text never appear whole. [`masked`] keeps a few characters, enough
//! to tell two customers apart when reading a log, not enough to call one.
//!
//! ```
//! use engine::pii::masked;
//! assert_eq!(masked("4082652649").to_string(), "******2649");
//! assert_eq!(masked("bob.markel@example.com").to_string(), "b*********@e******.com");
//! assert_eq!(masked("Bob Markel").to_string(), "B*********");
//! ```

use std::fmt;

/// Shows `text` with most of it hidden; see the module's examples.
pub fn masked(text: &str) -> Masked<'_> {
    Masked(text)
}

/// A value to log in place of personal data.
#[derive(Clone, Copy)]
pub struct Masked<'a>(&'a str);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.trim();
        if let Some((local, domain)) = text.split_once('@') {
            // The domain's last label (`.com`) says little about a person.
            let (host, tld) = domain.rsplit_once('.').unwrap_or((domain, ""));
            write!(f, "{}@{}", first_only(local), first_only(host))?;
            if !tld.is_empty() {
                write!(f, ".{tld}")?;
            }
            return Ok(());
        }
        let digits = text.chars().filter(char::is_ascii_digit).count();
        if digits >= 6 && digits * 2 >= text.chars().count() {
            // A phone number: its last four digits.
            let n = text.chars().count();
            for (i, c) in text.chars().enumerate() {
                let shown = if i + 4 >= n { c } else { '*' };
                write!(f, "{shown}")?;
            }
            return Ok(());
        }
        f.write_str(&first_only(text))
    }
}

impl fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// The first character, the rest as stars (at most 16 of them, so the
/// length of a long text does not show).
fn first_only(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        None => String::new(),
        Some(first) => {
            let rest = chars.count().min(16);
            format!("{first}{}", "*".repeat(rest))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::masked;

    #[test]
    fn check() {
        let table = [
            ("4082652649", "******2649"),
            ("+1 (408) 265-2649", "*************2649"),
            ("0", "0"),
            ("", ""),
            ("bob@example.com", "b**@e******.com"),
            ("a@b", "a@b"),
            ("Bob Markel", "B*********"),
            ("بوب ماركل", "ب********"),
            (
                "billing question about my last invoice, which was wrong",
                "b****************",
            ),
        ];
        for (text, expected) in table {
            assert_eq!(masked(text).to_string(), expected, "{text}");
        }
    }
}
