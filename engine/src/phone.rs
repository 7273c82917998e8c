//! GMS's checks of the customer's number: `_disallow_impossible_phone_numbers`,
//! `_disallow_premium_phone_numbers` and `_default_country`, with Google's
//! libphonenumber rules (the `phonenumber` crate), not rules of our own.
//!
//! A number in international form (`+44 …`) is read as it is; any other is
//! read as a number of the scenario's `_default_country` (GMS: `US`).

use std::str::FromStr;

use phonenumber::country::Id;
use phonenumber::Type;

/// The checks a scenario asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhoneRules {
    pub disallow_impossible: bool,
    pub disallow_premium: bool,
    pub default_country: Id,
}

/// Why a number is refused; the message is the answer's (it names no
/// digits, so it can be logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneRefused {
    #[error("is not a possible phone number in {country} or in international form (+…)")]
    Impossible { country: String },
    #[error("is a premium-rate number, which this scenario does not call")]
    Premium,
}

/// The country a `_default_country` names (ISO 3166 alpha-2, any case).
pub fn country(code: &str) -> Option<Id> {
    Id::from_str(&code.trim().to_ascii_uppercase()).ok()
}

impl PhoneRules {
    /// Whether any check is on.
    pub fn any(&self) -> bool {
        self.disallow_impossible || self.disallow_premium
    }

    /// Checks `number` as the scenario asks.
    pub fn check(&self, number: &str) -> Result<(), PhoneRefused> {
        if !self.any() {
            return Ok(());
        }
        let parsed = phonenumber::parse(Some(self.default_country), number)
            .ok()
            .filter(phonenumber::is_valid);
        let Some(parsed) = parsed else {
            // Not a number libphonenumber knows as valid: with only the
            // premium check on, it cannot be a premium one either.
            return if self.disallow_impossible {
                Err(PhoneRefused::Impossible {
                    country: self.default_country.as_ref().to_owned(),
                })
            } else {
                Ok(())
            };
        };
        if self.disallow_premium
            && parsed.number_type(&phonenumber::metadata::DATABASE) == Type::PremiumRate
        {
            return Err(PhoneRefused::Premium);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row: the rules (impossible, premium, country), a number, and
    /// whether it passes (`Ok`) or why not.
    fn check(rules: (bool, bool, &str), number: &str, expected: Result<(), PhoneRefused>) {
        let (disallow_impossible, disallow_premium, code) = rules;
        let rules = PhoneRules {
            disallow_impossible,
            disallow_premium,
            default_country: country(code).expect("a country"),
        };
        assert_eq!(rules.check(number), expected, "{number} under {rules:?}");
    }

    fn impossible(country: &str) -> Result<(), PhoneRefused> {
        Err(PhoneRefused::Impossible {
            country: country.to_owned(),
        })
    }

    #[test]
    fn numbers_under_each_rule() {
        let both_us = (true, true, "US");
        // The seed's number, national and international, with punctuation.
        check(both_us, "4082652649", Ok(()));
        check(both_us, "(408) 265-2649", Ok(()));
        check(both_us, "+1 408 265 2649", Ok(()));
        check(both_us, "+44 20 7946 0958", Ok(()));
        // Too short, too long, letters, nonsense.
        check(both_us, "111", impossible("US"));
        check(both_us, "40826526491234", impossible("US"));
        check(both_us, "call me", impossible("US"));
        check(both_us, "+999 1234 5678", impossible("US"));
        // Premium rate: US 900, UK 09.
        check(both_us, "+1 900 555 0123", Err(PhoneRefused::Premium));
        check(both_us, "+44 909 879 0000", Err(PhoneRefused::Premium));
        // Each rule alone.
        check((false, true, "US"), "111", Ok(()));
        check(
            (false, true, "US"),
            "+1 900 555 0123",
            Err(PhoneRefused::Premium),
        );
        check((true, false, "US"), "+1 900 555 0123", Ok(()));
        check((false, false, "US"), "call me", Ok(()));
        // The default country reads national numbers.
        check((true, true, "GB"), "020 7946 0958", Ok(()));
        check((true, true, "GB"), "111", impossible("GB"));
        check(
            (true, true, "GB"),
            "0909 879 0000",
            Err(PhoneRefused::Premium),
        );
    }

    #[test]
    fn countries_are_iso_codes_in_any_case() {
        assert_eq!(country("us"), Some(Id::US));
        assert_eq!(country(" GB "), Some(Id::GB));
        assert_eq!(country("XX"), None);
        assert_eq!(country("USA"), None);
        assert_eq!(country(""), None);
    }
}
