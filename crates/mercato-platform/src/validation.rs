//! [`Fields`]: parse every field of a request body, then answer one `422` that lists them all.

use crate::error::{ApiError, FieldError};

/// Collects field errors while parsing a request body, so that one answer lists them all.
#[derive(Debug, Default)]
pub struct Fields(Vec<FieldError>);

impl Fields {
    /// Parses a required field: missing is an error.
    pub fn required<R, T>(
        &mut self,
        field: &str,
        raw: Option<R>,
        parse: impl FnOnce(R) -> Result<T, String>,
    ) -> Option<T> {
        match raw {
            Some(raw) => self.optional(field, Some(raw), parse),
            None => {
                self.0.push(FieldError::new(field, "is required"));
                None
            }
        }
    }

    /// Parses an optional field: missing is fine.
    pub fn optional<R, T>(
        &mut self,
        field: &str,
        raw: Option<R>,
        parse: impl FnOnce(R) -> Result<T, String>,
    ) -> Option<T> {
        match parse(raw?) {
            Ok(value) => Some(value),
            Err(message) => {
                self.0.push(FieldError::new(field, message));
                None
            }
        }
    }

    pub fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// How many field errors so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Err(422)` listing every field that failed, else `Ok`.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() { Ok(()) } else { Err(ApiError::Validation(self.0)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failing_field_is_listed_once() {
        let mut fields = Fields::default();
        let name = fields.required("name", None::<&str>, |raw| Ok::<_, String>(raw.to_owned()));
        let age =
            fields.optional("age", Some("x"), |raw| raw.parse::<u8>().map_err(|e| e.to_string()));
        let ok =
            fields.optional("ok", Some("7"), |raw| raw.parse::<u8>().map_err(|e| e.to_string()));
        assert_eq!((name, age, ok), (None, None, Some(7)));
        let Err(ApiError::Validation(errors)) = fields.finish() else { panic!("expected 422") };
        let names: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(names, ["name", "age"]);
    }
}
