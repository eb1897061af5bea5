//! [`Money`]: whole cents inside, a decimal string with two decimals at the edge (`"19.99"`).
//!
//! Input accepts a string or a JSON number with at most two decimals; nothing goes through a
//! float on the way in (a number is read from its JSON text) or out.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// An amount in the deployment's one currency, in cents. Never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

impl Money {
    /// The largest amount the contract allows anywhere: 1,000,000,000.00 (a total of many lines).
    pub const MAX_CENTS: i64 = 100_000_000_000;

    pub const fn from_cents(cents: i64) -> Self {
        Self(cents)
    }

    pub const fn cents(self) -> i64 {
        self.0
    }

    /// Parses `"19.99"`, `"19.9"`, `"19"` (and the same as JSON numbers). No sign, no exponent,
    /// at most two decimals, at most [`Money::MAX_CENTS`].
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) || text.ends_with('.') {
            return Err("must be a decimal amount such as \"19.99\"".to_owned());
        }
        if fraction.len() > 2 {
            return Err("must have at most two decimals".to_owned());
        }
        if whole.len() > 12 {
            return Err("is too large".to_owned());
        }
        let whole: i64 = whole.parse().map_err(|_| "is too large".to_owned())?;
        let cents = match fraction.len() {
            0 => 0,
            1 => fraction.parse::<i64>().unwrap_or(0) * 10,
            _ => fraction.parse::<i64>().unwrap_or(0),
        };
        let total = whole.checked_mul(100).and_then(|c| c.checked_add(cents));
        match total {
            Some(total) if total <= Self::MAX_CENTS => Ok(Self(total)),
            _ => Err("is too large".to_owned()),
        }
    }

    /// Parses a JSON string or number from its exact text (see [`Money::parse`]): a number is
    /// never read through a float, so `1.0000000000000001` is refused, not rounded.
    pub fn from_json(raw: &RawValue) -> Result<Self, String> {
        let text = raw.get().trim();
        if text.starts_with('"') {
            let inner: String = serde_json::from_str(text)
                .map_err(|_| "must be a decimal string such as \"19.99\"".to_owned())?;
            return Self::parse(&inner).map_err(|e| negative_hint(&inner, e));
        }
        if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            return Self::parse(text).map_err(|e| negative_hint(text, e));
        }
        Err("must be a decimal string such as \"19.99\" or a number".to_owned())
    }

    pub fn checked_mul(self, quantity: i64) -> Option<Self> {
        self.0.checked_mul(quantity).map(Self)
    }

    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }
}

fn negative_hint(text: &str, error: String) -> String {
    if text.trim_start().starts_with('-') { "must not be negative".to_owned() } else { error }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^\d+\.\d{2}$"))
            .examples(["19.99"])
            .description(Some("A decimal amount with two decimals"))
            .into()
    }
}

impl utoipa::ToSchema for Money {}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("valid JSON")
    }

    #[test]
    fn amounts_parse_to_exact_cents() {
        assert_eq!(Money::parse("19.99"), Ok(Money(1999)));
        assert_eq!(Money::parse("19.9"), Ok(Money(1990)));
        assert_eq!(Money::parse("19"), Ok(Money(1900)));
        assert_eq!(Money::parse("0.01"), Ok(Money(1)));
        assert_eq!(Money::parse("0"), Ok(Money(0)));
        assert_eq!(Money::from_json(&raw("19.99")), Ok(Money(1999)));
        assert_eq!(Money::from_json(&raw("\"19.99\"")), Ok(Money(1999)));
        assert_eq!(Money::from_json(&raw("0.1")), Ok(Money(10)));
        assert_eq!(Money::from_json(&raw("1000000")), Ok(Money(100_000_000)));
    }

    #[test]
    fn malformed_amounts_are_refused() {
        for bad in ["", ".5", "5.", "1.999", "-1", "+1", "1e3", "1,00", "abc", " 1 2", "0x10"] {
            assert!(Money::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Money::from_json(&raw("1.999")).is_err());
        assert!(Money::from_json(&raw("1.0000000000000001")).is_err(), "never rounded");
        assert!(Money::from_json(&raw("1e2")).is_err());
        assert_eq!(Money::from_json(&raw("-1")), Err("must not be negative".to_owned()));
        assert_eq!(Money::from_json(&raw("\"-1\"")), Err("must not be negative".to_owned()));
        assert!(Money::from_json(&raw("true")).is_err());
        assert!(Money::from_json(&raw("null")).is_err());
        assert!(Money::from_json(&raw("[1]")).is_err());
        assert!(Money::parse("99999999999999999999").is_err());
    }

    #[test]
    fn amounts_print_with_two_decimals() {
        assert_eq!(Money(1999).to_string(), "19.99");
        assert_eq!(Money(5).to_string(), "0.05");
        assert_eq!(Money(100_000_000).to_string(), "1000000.00");
        assert_eq!(serde_json::to_string(&Money(1990)).ok().as_deref(), Some("\"19.90\""));
    }
}
