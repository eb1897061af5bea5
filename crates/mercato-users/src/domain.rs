//! The users service's domain values, parsed at the edge so that invalid ones cannot exist.
//!
//! Lengths count Unicode characters (API.md), not bytes.

use secrecy::{ExposeSecret, SecretString};

/// A display name: 1..100 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            return Err("must not be empty".into());
        }
        if chars > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters, got {chars}", Self::MAX_CHARS));
        }
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address as the user typed it; compared and kept unique lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    given: String,
    lower: String,
}

impl Email {
    pub const MAX_CHARS: usize = 254;

    /// A pragmatic check of `local@domain`: what a user can mistype is refused; exotic but
    /// valid RFC 5322 forms (quoted local parts, IP literals) are not supported.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let given = raw.trim();
        let invalid = || format!("`{}` is not a valid email address", truncate(given, 40));
        if given.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        let (local, domain) = given.split_once('@').ok_or_else(invalid)?;
        let local_ok = !local.is_empty()
            && local.chars().count() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && !"@<>()[]\\,;:\"".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.chars().count() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err(invalid());
        }
        Ok(Self { given: given.to_owned(), lower: given.to_lowercase() })
    }

    /// The address as given (what the user sees).
    pub fn as_str(&self) -> &str {
        &self.given
    }

    /// The key uniqueness and login compare on.
    pub fn lower(&self) -> &str {
        &self.lower
    }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// A new password: 8..128 characters. Kept secret: never logged, never displayed.
#[derive(Debug)]
pub struct Password(SecretString);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let chars = raw.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&chars) {
            return Err(format!(
                "must be {} to {} characters long",
                Self::MIN_CHARS,
                Self::MAX_CHARS
            ));
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn secret(&self) -> &SecretString {
        &self.0
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

pub use mercato_platform::validation::Fields;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_counted_in_characters() {
        assert_eq!(UserName::parse("  Ada  ").map(|n| n.0), Ok("Ada".to_owned()));
        assert!(UserName::parse("   ").is_err());
        assert!(UserName::parse(&"é".repeat(100)).is_ok(), "100 two-byte characters fit");
        assert!(UserName::parse(&"😀".repeat(100)).is_ok());
        assert!(UserName::parse(&"a".repeat(101)).is_err());
        assert!(UserName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn emails_keep_their_case_and_compare_lower_cased() {
        let email = Email::parse(" Ada.Lovelace@Example.COM ").ok();
        assert_eq!(email.as_ref().map(Email::as_str), Some("Ada.Lovelace@Example.COM"));
        assert_eq!(email.as_ref().map(Email::lower), Some("ada.lovelace@example.com"));
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@b..com",
            ".a@b.com",
            "a.@b.com",
            "a@-b.com",
            "a@b-.com",
            "a@b.com.",
            "a<b@c.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["a@b.co", "first.last+tag@sub.example.org", "x_y-z@müller.de"] {
            assert!(Email::parse(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn emails_longer_than_254_characters_are_refused() {
        let domain = format!("{}.{}.{}.com", "a".repeat(63), "b".repeat(63), "c".repeat(63));
        let fits = format!("{}@{domain}", "l".repeat(254 - domain.len() - 1));
        assert_eq!(fits.len(), 254);
        assert!(Email::parse(&fits).is_ok());
        let longer = format!("{}@{domain}", "l".repeat(254 - domain.len()));
        assert!(Email::parse(&longer).is_err());
    }

    #[test]
    fn passwords_are_8_to_128_characters() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"p".repeat(128)).is_ok());
        assert!(Password::parse(&"p".repeat(129)).is_err());
        assert!(Password::parse(&"ü".repeat(8)).is_ok(), "characters, not bytes");
    }

    #[test]
    fn field_errors_are_collected_in_order() {
        let mut fields = Fields::default();
        let name = fields.required("name", None, UserName::parse);
        let email = fields.required("email", Some("nope"), Email::parse);
        let password = fields.optional("password", None, Password::parse);
        assert!(name.is_none() && email.is_none() && password.is_none());
        match fields.finish() {
            Err(mercato_platform::ApiError::Validation(errors)) => {
                let names: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(names, ["name", "email"]);
            }
            other => panic!("expected validation errors, got {other:?}"),
        }
    }
}
