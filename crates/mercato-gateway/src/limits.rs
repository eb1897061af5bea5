//! Guards that refuse a document before anything runs (API.md "Limits"): depth, complexity and
//! alias counts, introspection when it is off, and mutations sent with `GET`. The document size
//! is checked earlier, on the HTTP body ([`crate::http`]). The gateway's extension
//! ([`crate::hooks`]) runs them on every request.
//!
//! [`finish`] also tells the HTTP layer whether a failed request was refused before execution
//! (HTTP 400, no `data`) or failed while running (HTTP 200), and gives every error a code.

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use async_graphql::{ErrorExtensionValues, Positioned, Response, ServerError, ValidationResult};
use serde::Deserialize;

use crate::errors::{BAD_USER_INPUT, INTERNAL, LIMIT_EXCEEDED};

/// The limits, configurable (`[gateway]` in the config file).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Nesting depth (each nested selection set adds one).
    pub max_depth: usize,
    /// Complexity: one per field, a connection's nodes times its `first`.
    pub max_complexity: usize,
    pub max_aliases: usize,
    /// The request body (or `GET` query string) in bytes; larger gets HTTP 413.
    pub max_document_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 2_000,
            max_aliases: 100,
            max_document_bytes: 64 * 1024,
        }
    }
}

/// Marks a request that came over `GET`: it may not run a mutation.
#[derive(Debug, Clone, Copy)]
pub struct ReadOnly;

/// The response header the HTTP layer turns into status 400 (and removes).
pub const REFUSED_HEADER: &str = "x-mercato-refused";

/// `extensions.code` of an automatic persisted query the server does not know yet (the client
/// then sends the whole document).
pub const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";

/// The depth an introspection-only document may reach: the standard introspection query
/// (GraphiQL's, every client generator's) nests 15 deep, and it reads the schema in memory, never
/// a service, so the complexity limit does not apply to it either.
pub const INTROSPECTION_DEPTH: usize = 24;

fn limit_exceeded(message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", LIMIT_EXCEEDED);
    error.extensions = Some(extensions);
    error
}

fn has_code(error: &ServerError) -> bool {
    error.extensions.as_ref().is_some_and(|extensions| extensions.get("code").is_some())
}

fn set_code(error: &mut ServerError, code: &str) {
    error.extensions.get_or_insert_with(ErrorExtensionValues::default).set("code", code);
}

impl Limits {
    /// Checks a parsed document: aliases, introspection when it is off (`allow_introspection`),
    /// and mutations in a request that came over `GET` (`read_only`). Tells whether the document
    /// asks only for introspection fields (see [`Limits::check_validation`]).
    pub fn check_document(
        &self,
        document: &ExecutableDocument,
        allow_introspection: bool,
        read_only: bool,
    ) -> Result<bool, ServerError> {
        let aliases = count_aliases(document);
        if aliases > self.max_aliases {
            return Err(limit_exceeded(format!(
                "the document has {aliases} aliases; at most {} are allowed",
                self.max_aliases
            )));
        }
        if !allow_introspection && asks_for_schema(document) {
            let mut error = ServerError::new("introspection is turned off on this server", None);
            set_code(&mut error, BAD_USER_INPUT);
            return Err(error);
        }
        if read_only && has_mutation(document) {
            let mut error = ServerError::new("mutations must be sent with POST", None);
            set_code(&mut error, BAD_USER_INPUT);
            return Err(error);
        }
        Ok(introspection_only(document))
    }

    /// Checks a validation's depth and complexity. An introspection-only document may nest
    /// [`INTROSPECTION_DEPTH`] deep, and has no complexity limit.
    pub fn check_validation(
        &self,
        result: &ValidationResult,
        introspection_only: bool,
    ) -> Result<(), ServerError> {
        let max_depth = if introspection_only {
            self.max_depth.max(INTROSPECTION_DEPTH)
        } else {
            self.max_depth
        };
        if result.depth > max_depth {
            return Err(limit_exceeded(format!(
                "the document is nested {} deep; at most {max_depth} is allowed",
                result.depth
            )));
        }
        if !introspection_only && result.complexity > self.max_complexity {
            return Err(limit_exceeded(format!(
                "the document's complexity is {}; at most {} is allowed",
                result.complexity, self.max_complexity
            )));
        }
        Ok(())
    }
}

/// Gives every error of a finished request a code. A request that failed before it `executed`
/// was refused: its errors are `BAD_USER_INPUT` unless they carry a code, it gets no `data`, and
/// [`REFUSED_HEADER`] tells the HTTP layer to answer 400. An unknown persisted query is the
/// exception: `PERSISTED_QUERY_NOT_FOUND`, answered 200, as Apollo clients expect.
pub fn finish(mut response: Response, executed: bool) -> Response {
    let refused = !executed && response.is_err();
    let mut unknown_persisted_query = false;
    for error in &mut response.errors {
        if has_code(error) {
            continue;
        }
        if error.message == "PersistedQueryNotFound" {
            unknown_persisted_query = true;
            set_code(error, PERSISTED_QUERY_NOT_FOUND);
        } else if refused || error.message.starts_with("Failed to parse") {
            set_code(error, BAD_USER_INPUT);
        } else {
            tracing::warn!(error = %error.message, "a GraphQL error without a code");
            error.message = "internal error".to_owned();
            set_code(error, INTERNAL);
        }
    }
    if refused && !unknown_persisted_query {
        response.data = async_graphql::Value::Null;
        response.http_headers.insert(REFUSED_HEADER, http::HeaderValue::from_static("1"));
    }
    response
}

fn has_mutation(document: &ExecutableDocument) -> bool {
    match &document.operations {
        DocumentOperations::Single(operation) => operation.node.ty == OperationType::Mutation,
        DocumentOperations::Multiple(operations) => {
            operations.values().any(|operation| operation.node.ty == OperationType::Mutation)
        }
    }
}

/// True when an operation selects `__schema` or `__type` at its root.
fn asks_for_schema(document: &ExecutableDocument) -> bool {
    fn in_set(set: &Positioned<SelectionSet>) -> bool {
        set.node.items.iter().any(|selection| match &selection.node {
            Selection::Field(field) => {
                matches!(field.node.name.node.as_str(), "__schema" | "__type")
            }
            Selection::InlineFragment(fragment) => in_set(&fragment.node.selection_set),
            Selection::FragmentSpread(_) => false,
        })
    }
    let fragments =
        document.fragments.values().any(|fragment| in_set(&fragment.node.selection_set));
    fragments
        || match &document.operations {
            DocumentOperations::Single(operation) => in_set(&operation.node.selection_set),
            DocumentOperations::Multiple(operations) => {
                operations.values().any(|operation| in_set(&operation.node.selection_set))
            }
        }
}

/// True when every operation selects only introspection fields at its root.
fn introspection_only(document: &ExecutableDocument) -> bool {
    fn root_is_introspection(set: &Positioned<SelectionSet>) -> bool {
        set.node.items.iter().all(|selection| match &selection.node {
            Selection::Field(field) => field.node.name.node.starts_with("__"),
            Selection::InlineFragment(fragment) => {
                root_is_introspection(&fragment.node.selection_set)
            }
            // A spread's fragment may select anything: not introspection-only.
            Selection::FragmentSpread(_) => false,
        })
    }
    match &document.operations {
        DocumentOperations::Single(operation) => {
            root_is_introspection(&operation.node.selection_set)
        }
        DocumentOperations::Multiple(operations) => operations
            .values()
            .all(|operation| root_is_introspection(&operation.node.selection_set)),
    }
}

/// Every alias in the document's operations and fragments.
pub fn count_aliases(document: &ExecutableDocument) -> usize {
    fn in_set(set: &Positioned<SelectionSet>) -> usize {
        set.node
            .items
            .iter()
            .map(|selection| match &selection.node {
                Selection::Field(field) => {
                    usize::from(field.node.alias.is_some()) + in_set(&field.node.selection_set)
                }
                Selection::InlineFragment(fragment) => in_set(&fragment.node.selection_set),
                Selection::FragmentSpread(_) => 0,
            })
            .sum()
    }
    let operations: usize = match &document.operations {
        DocumentOperations::Single(operation) => in_set(&operation.node.selection_set),
        DocumentOperations::Multiple(operations) => {
            operations.values().map(|operation| in_set(&operation.node.selection_set)).sum()
        }
    };
    operations
        + document
            .fragments
            .values()
            .map(|fragment| in_set(&fragment.node.selection_set))
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_counted_everywhere() {
        let document = async_graphql::parser::parse_query(
            "query { a: me { id } b: me { x: id } ...F } fragment F on Query { c: me { id } }",
        );
        assert_eq!(document.map(|document| count_aliases(&document)).ok(), Some(4));
    }

    #[test]
    fn only_a_document_of_introspection_fields_is_introspection() {
        let only = |text: &str| {
            async_graphql::parser::parse_query(text).map(|d| introspection_only(&d)).ok()
        };
        assert_eq!(only("{ __schema { types { name } } __typename }"), Some(true));
        assert_eq!(only("query A { __type(name: \"Order\") { name } }"), Some(true));
        assert_eq!(only("{ __schema { types { name } } me { id } }"), Some(false));
        assert_eq!(only("{ ...F } fragment F on Query { __typename }"), Some(false));
    }

    #[test]
    fn a_mutation_is_found_among_operations() {
        let read = async_graphql::parser::parse_query("query A { me { id } }");
        assert_eq!(read.map(|document| has_mutation(&document)).ok(), Some(false));
        let write = async_graphql::parser::parse_query(
            "query A { me { id } } mutation B { deleteUser(id: 1) }",
        );
        assert_eq!(write.map(|document| has_mutation(&document)).ok(), Some(true));
    }
}
