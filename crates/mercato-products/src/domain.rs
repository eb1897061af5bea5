//! Field rules of the catalog (API.md "Products service"), as parsers: a value that passed one
//! is valid, so handlers and queries never re-check.

use mercato_platform::money::Money;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

/// The highest price: 1,000,000.00.
pub const MAX_PRICE: Money = Money::from_cents(100_000_000);
/// The most units a product may have in stock.
pub const MAX_STOCK: i64 = 1_000_000_000;
const MAX_NAME: usize = 200;
const MAX_SKU: usize = 64;
const MAX_DESCRIPTION: usize = 5_000;
const MAX_CATEGORY: usize = 100;

fn no_control(text: &str) -> Result<(), String> {
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
        Err("must not contain control characters".to_owned())
    } else {
        Ok(())
    }
}

fn bounded(text: &str, min: usize, max: usize) -> Result<String, String> {
    let trimmed = text.trim();
    let chars = trimmed.chars().count();
    if chars < min || chars > max {
        return Err(if min == 0 {
            format!("must be at most {max} characters long")
        } else {
            format!("must be {min} to {max} characters long")
        });
    }
    no_control(trimmed)?;
    Ok(trimmed.to_owned())
}

/// 1..200 characters after trimming.
pub fn name(raw: &str) -> Result<String, String> {
    bounded(raw, 1, MAX_NAME)
}

/// At most 5,000 characters (empty is allowed).
pub fn description(raw: &str) -> Result<String, String> {
    bounded(raw, 0, MAX_DESCRIPTION)
}

/// 1..100 characters after trimming.
pub fn category(raw: &str) -> Result<String, String> {
    bounded(raw, 1, MAX_CATEGORY)
}

/// 1..64 of `[A-Za-z0-9._-]`, kept as given (unique case-insensitively).
pub fn sku(raw: &str) -> Result<String, String> {
    let valid = raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if raw.is_empty() || raw.len() > MAX_SKU || !valid {
        return Err(format!("must be 1 to {MAX_SKU} characters of A-Z, a-z, 0-9, `.`, `_`, `-`"));
    }
    Ok(raw.to_owned())
}

/// The sku of a product created without one: unique by construction (the id's random bits).
pub fn generated_sku(id: Uuid) -> String {
    let hex = id.simple().to_string().to_uppercase();
    format!("MRC-{}", &hex[hex.len() - 12..])
}

/// A JSON string's text; any other JSON type is refused with a field error (so one answer can
/// list every bad field, where a typed field would stop the whole body at the first).
pub fn text(raw: &Value) -> Result<&str, String> {
    raw.as_str().ok_or_else(|| "must be a string".to_owned())
}

/// A field a PATCH may change but not clear: `null` is refused.
pub fn not_null<T>(raw: &Option<T>) -> Result<&T, String> {
    raw.as_ref().ok_or_else(|| "must not be null".to_owned())
}

/// 0..=1,000,000.00, as a decimal string or a JSON number with at most two decimals, read from
/// its exact JSON text.
pub fn price(raw: &RawValue) -> Result<Money, String> {
    let price = Money::from_json(raw)?;
    if price > MAX_PRICE {
        return Err(format!("must be at most {MAX_PRICE}"));
    }
    Ok(price)
}

/// A whole number of units, 0..=1,000,000,000.
pub fn stock(raw: &Value) -> Result<i64, String> {
    match raw.as_i64() {
        Some(stock) if (0..=MAX_STOCK).contains(&stock) => Ok(stock),
        Some(_) => Err(format!("must be from 0 to {MAX_STOCK}")),
        None => Err("must be a whole number".to_owned()),
    }
}

/// A stock change: a whole number, its size at most 1,000,000,000.
pub fn delta(raw: &Value) -> Result<i64, String> {
    match raw.as_i64() {
        Some(delta) if (-MAX_STOCK..=MAX_STOCK).contains(&delta) => Ok(delta),
        Some(_) => Err(format!("must be from -{MAX_STOCK} to {MAX_STOCK}")),
        None => Err("must be a whole number".to_owned()),
    }
}

/// For PATCH bodies: `Some(None)` is an explicit `null` (clear the field), `None` is absent.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_are_trimmed_and_counted_in_characters() {
        assert_eq!(name("  Mug "), Ok("Mug".to_owned()));
        assert!(name("   ").is_err());
        assert!(name(&"é".repeat(200)).is_ok());
        assert!(name(&"é".repeat(201)).is_err());
        assert!(name("a\u{0}b").is_err());
    }

    #[test]
    fn skus_are_a_small_alphabet() {
        assert!(sku("MUG-01.blue_2").is_ok());
        for bad in ["", "has space", "ünï", "a/b", &"x".repeat(65)] {
            assert!(sku(bad).is_err(), "{bad:?} was accepted");
        }
        let generated = generated_sku(Uuid::now_v7());
        assert!(sku(&generated).is_ok(), "{generated}");
    }

    #[test]
    fn prices_are_bounded_money() {
        let raw = |text: &str| RawValue::from_string(text.to_owned()).expect("JSON");
        assert_eq!(price(&raw("\"1000000.00\"")), Ok(MAX_PRICE));
        assert!(price(&raw("\"1000000.01\"")).is_err());
        assert!(price(&raw("-1")).is_err());
        assert_eq!(price(&raw("0")), Ok(Money::from_cents(0)));
    }

    #[test]
    fn stock_is_a_whole_number_in_range() {
        assert_eq!(stock(&json!(0)), Ok(0));
        assert_eq!(stock(&json!(MAX_STOCK)), Ok(MAX_STOCK));
        for bad in [json!(-1), json!(MAX_STOCK + 1), json!(1.5), json!("5"), json!(null)] {
            assert!(stock(&bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(delta(&json!(-5)), Ok(-5));
        assert!(delta(&json!(2.5)).is_err());
    }
}
