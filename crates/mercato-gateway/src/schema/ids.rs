//! Ids in arguments are checked before they go into a service's URL: a non-UUID is
//! `BAD_USER_INPUT` naming the argument (and can never reach another route).

use async_graphql::{ID, Result};

use crate::errors::bad_field;

/// The id as a canonical UUID string.
pub fn uuid(field: &str, id: &ID) -> Result<String> {
    uuid::Uuid::parse_str(id.as_str())
        .map(|uuid| uuid.to_string())
        .map_err(|_| bad_field(field, "is not a UUID"))
}
