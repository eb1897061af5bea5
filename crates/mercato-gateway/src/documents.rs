//! Documents remembered across requests: parsing a GraphQL document (pest) and validating it
//! cost about a fifth of the CPU of `mercato up` under load, spent again on every request for
//! the same few texts. [`Documents`] remembers both for one schema; the gateway's extension
//! ([`crate::hooks`]) uses it for every request the schema runs: `POST` and `GET /graphql` and
//! WebSocket subscriptions alike. [`PersistedQueries`] remembers the texts of automatic
//! persisted queries by their hash.
//!
//! - **Parsed documents**, keyed by the exact text: a request with a non-empty `query` is given
//!   its parsed document. A text that does not parse is not remembered and is left to
//!   async-graphql, so its refusal is the one it always was. What checks a parsed document still
//!   runs on a remembered one: async-graphql's recursion-depth check and the guards
//!   (aliases, introspection, mutations over `GET`, [`crate::limits`]).
//! - **Validation results**, keyed by (text, operation name), for requests without variables
//!   only: async-graphql's rules are then a function of the schema, the document and the
//!   operation name alone, and a success is given back without running them again. The guards
//!   still check its depth and complexity against the limits every time. With variables the
//!   rules always run, since the values change the outcome (a wrongly typed value, or the
//!   complexity through a connection's `first`). Failures are never remembered.
//! - **Persisted queries** (Apollo's automatic persisted queries, version 1): a request that
//!   names a `sha256Hash` and no text gets the text remembered under that hash, or
//!   `PersistedQueryNotFound`; one that sends both has the hash checked and the text
//!   remembered. Either way the request then goes on as a request with that text, so persisted
//!   queries share the parsed documents and validations of the texts they stand for.
//!
//! Bounds: a parsed document takes 30 to 150 times the bytes of its text (measured on
//! async-graphql 7.2: 3 KB for the 90-byte `product(id)` query, 850 KB for 8 KiB of bare field
//! names), so besides at most [`MAX_ENTRIES`] entries the cache holds at most
//! [`MAX_TOTAL_TEXT_BYTES`] of text (a few dozen MB of documents in the worst case) and skips
//! texts over [`MAX_TEXT_BYTES`] (they are rare, and a client could otherwise fill the budget with
//! a handful of them). A document is remembered once it parses, before the guards look at it:
//! a client sending ever new documents only churns the cache within these bounds. When an entry
//! would go over a bound, every entry is dropped: a hot document is parsed again once, which is
//! cheaper than the bookkeeping of an LRU on every hit, and lookups then need only a read lock.
//! Persisted texts have bounds of their own, [`PersistedQueries::BOUNDS`].

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError, ValidationResult};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Most parsed documents remembered, and, apart, most validation results.
pub const MAX_ENTRIES: usize = 1_024;

/// Longest text remembered. GraphiQL's introspection query is about 1 to 2 KiB; the documents of
/// an application are mostly far shorter.
pub const MAX_TEXT_BYTES: usize = 8 * 1024;

/// Most bytes of text remembered, over all the entries of one of the two caches.
pub const MAX_TOTAL_TEXT_BYTES: usize = 256 * 1024;

/// The request extension of the Apollo persisted-queries protocol.
const PERSISTED_QUERY: &str = "persistedQuery";

/// How much [`Documents`] may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Entries in each of the two caches.
    pub entries: usize,
    /// Bytes of text over the entries of each cache.
    pub total_text_bytes: usize,
    /// Bytes of the longest text remembered.
    pub text_bytes: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            entries: MAX_ENTRIES,
            total_text_bytes: MAX_TOTAL_TEXT_BYTES,
            text_bytes: MAX_TEXT_BYTES,
        }
    }
}

/// What a successful validation is remembered under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValidationKey {
    pub text: String,
    pub operation: Option<String>,
}

/// The parsed documents and validation results of one schema (validation results are only true
/// of the schema they were computed with). Shared by all its requests.
#[derive(Default)]
pub struct Documents {
    bounds: Bounds,
    /// Behind an `Arc` so that a hit copies a pointer under the lock and the document after it.
    parsed: RwLock<Entries<String, Arc<ExecutableDocument>>>,
    validated: RwLock<Entries<ValidationKey, ValidationResult>>,
}

impl Documents {
    pub fn new(bounds: Bounds) -> Self {
        Self { bounds, parsed: RwLock::default(), validated: RwLock::default() }
    }

    /// The parsed document of `text`, remembered or parsed now (and remembered). `None` for an
    /// empty text, one over [`Bounds::text_bytes`] and one that does not parse: the caller leaves
    /// those to async-graphql.
    pub fn parsed(&self, text: &str) -> Option<ExecutableDocument> {
        if text.is_empty() || text.len() > self.bounds.text_bytes {
            return None;
        }
        let remembered = read(&self.parsed).get(text);
        if let Some(document) = remembered {
            count("parse", "hit");
            return Some(ExecutableDocument::clone(&document));
        }
        count("parse", "miss");
        let document = async_graphql::parser::parse_query(text).ok()?;
        let evicted = write(&self.parsed).insert(
            text.to_owned(),
            Arc::new(document.clone()),
            text.len(),
            &self.bounds,
        );
        drop(evicted);
        Some(document)
    }

    /// Gives `request` the parsed document of its text, remembered or parsed now. Returns the
    /// key its validation may be remembered under: only for a request without variables, and
    /// only when it was given the document (see the module docs).
    pub fn prepare(&self, request: &mut Request) -> Option<ValidationKey> {
        let document = self.parsed(&request.query)?;
        request.set_parsed_query(document);
        request.variables.is_empty().then(|| ValidationKey {
            text: request.query.clone(),
            operation: request.operation_name.clone(),
        })
    }

    /// The remembered successful validation of `key`.
    pub fn validated(&self, key: &ValidationKey) -> Option<ValidationResult> {
        let remembered = read(&self.validated).get(key);
        count("validation", if remembered.is_some() { "hit" } else { "miss" });
        remembered
    }

    /// Remembers a successful validation. The caller makes sure it was computed without
    /// variables, on the document of `key.text`.
    pub fn remember_validation(&self, key: ValidationKey, result: ValidationResult) {
        if key.text.len() > self.bounds.text_bytes {
            return;
        }
        let bytes = key.text.len();
        let evicted = write(&self.validated).insert(key, result, bytes, &self.bounds);
        drop(evicted);
    }

    /// How many parsed documents are remembered.
    pub fn document_count(&self) -> usize {
        read(&self.parsed).map.len()
    }

    /// How many validation results are remembered.
    pub fn validation_count(&self) -> usize {
        read(&self.validated).map.len()
    }
}

impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documents")
            .field("bounds", &self.bounds)
            .field("documents", &self.document_count())
            .field("validations", &self.validation_count())
            .finish()
    }
}

fn count(step: &'static str, result: &'static str) {
    metrics::counter!("gateway_documents_total", "step" => step, "result" => result).increment(1);
}

/// A lock is only ever held for a map operation, which cannot leave the map half-changed: a
/// poisoned one is still sound.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A map that empties itself rather than grow over its [`Bounds`].
struct Entries<K, V> {
    map: HashMap<K, V>,
    text_bytes: usize,
}

impl<K, V> Default for Entries<K, V> {
    fn default() -> Self {
        Self { map: HashMap::new(), text_bytes: 0 }
    }
}

impl<K: Hash + Eq, V: Clone> Entries<K, V> {
    fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).cloned()
    }

    /// Adds an entry of `text_bytes`, first taking every entry out if it would not fit. The
    /// entries taken out are returned so that the caller drops them after the lock.
    #[must_use = "drop the evicted entries after releasing the lock"]
    fn insert(&mut self, key: K, value: V, text_bytes: usize, bounds: &Bounds) -> HashMap<K, V> {
        let fits_alone = bounds.entries > 0 && text_bytes <= bounds.total_text_bytes;
        if !fits_alone || self.map.contains_key(&key) {
            return HashMap::new();
        }
        let full = self.map.len() >= bounds.entries
            || self.text_bytes + text_bytes > bounds.total_text_bytes;
        let evicted = if full {
            self.text_bytes = 0;
            std::mem::take(&mut self.map)
        } else {
            HashMap::new()
        };
        self.map.insert(key, value);
        self.text_bytes += text_bytes;
        evicted
    }
}

/// The `persistedQuery` request extension of Apollo's protocol.
#[derive(Deserialize)]
struct PersistedQuery {
    version: i32,
    #[serde(rename = "sha256Hash")]
    sha256_hash: String,
}

/// The texts of automatic persisted queries, by the lowercase hex SHA-256 of the text.
#[derive(Default)]
pub struct PersistedQueries {
    texts: RwLock<Entries<String, Arc<str>>>,
}

impl PersistedQueries {
    /// At most 2,048 texts, of at most 64 KiB each (the largest document the gateway takes) and
    /// 4 MiB in all.
    pub const BOUNDS: Bounds =
        Bounds { entries: 2_048, total_text_bytes: 4 * 1024 * 1024, text_bytes: 64 * 1024 };

    /// Resolves the request's `persistedQuery` extension, if it has one: afterwards the request
    /// holds the text and no longer the extension. A hash without a text that is not remembered
    /// gives `PersistedQueryNotFound` (the client then sends the text along); a text whose hash
    /// is not the one named is refused.
    pub fn resolve(&self, request: &mut Request) -> Result<(), ServerError> {
        let Some(value) = request.extensions.remove(PERSISTED_QUERY) else { return Ok(()) };
        let persisted: PersistedQuery = async_graphql::from_value(value).map_err(|_| {
            ServerError::new("the persistedQuery extension is not {version, sha256Hash}", None)
        })?;
        if persisted.version != 1 {
            return Err(ServerError::new(
                format!("only version 1 of persistedQuery is known, not {}", persisted.version),
                None,
            ));
        }
        if request.query.is_empty() {
            let remembered = read(&self.texts).get(persisted.sha256_hash.as_str());
            count("persisted", if remembered.is_some() { "hit" } else { "miss" });
            let text =
                remembered.ok_or_else(|| ServerError::new("PersistedQueryNotFound", None))?;
            request.query = text.to_string();
            return Ok(());
        }
        let hash = sha256_hex(&request.query);
        if persisted.sha256_hash != hash {
            return Err(ServerError::new("the sha256Hash is not the SHA-256 of the query", None));
        }
        let bytes = request.query.len();
        if bytes <= Self::BOUNDS.text_bytes {
            let text: Arc<str> = request.query.as_str().into();
            let evicted = write(&self.texts).insert(hash, text, bytes, &Self::BOUNDS);
            drop(evicted);
        }
        Ok(())
    }

    /// How many texts are remembered.
    pub fn count(&self) -> usize {
        read(&self.texts).map.len()
    }
}

impl std::fmt::Debug for PersistedQueries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistedQueries").field("texts", &self.count()).finish()
    }
}

/// The lowercase hex SHA-256 of `text`, as Apollo clients send it.
fn sha256_hex(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(entries: usize, total_text_bytes: usize, text_bytes: usize) -> Documents {
        Documents::new(Bounds { entries, total_text_bytes, text_bytes })
    }

    fn key(text: &str, operation: Option<&str>) -> ValidationKey {
        ValidationKey { text: text.to_owned(), operation: operation.map(str::to_owned) }
    }

    fn result(depth: usize) -> ValidationResult {
        ValidationResult { cache_control: Default::default(), complexity: depth * 10, depth }
    }

    #[test]
    fn a_remembered_document_is_the_parse_of_its_text() {
        let documents = Documents::default();
        // One operation and no fragments: those are in hash maps, whose `Debug` order varies.
        let text = "query A($id: ID!) { user(id: $id) { id name } me { id } }";
        let parsed = async_graphql::parser::parse_query(text).ok().map(|d| format!("{d:?}"));
        let first = documents.parsed(text).map(|d| format!("{d:?}"));
        let second = documents.parsed(text).map(|d| format!("{d:?}"));
        assert_eq!(first, parsed);
        assert_eq!(second, parsed);
        assert_eq!(documents.document_count(), 1);
        let other = documents.parsed("{ __typename }").map(|d| format!("{d:?}"));
        assert_ne!(other, parsed);
        assert_eq!(documents.document_count(), 2);
    }

    #[test]
    fn an_empty_unparsable_or_long_text_is_not_remembered() {
        let documents = small(8, 1024, 16);
        assert!(documents.parsed("").is_none());
        assert!(documents.parsed("{ me { id }").is_none());
        assert!(documents.parsed("{ me { id name email } }").is_none());
        assert_eq!(documents.document_count(), 0);
        assert!(documents.parsed("{ me { id } }").is_some());
        assert_eq!(documents.document_count(), 1);
    }

    #[test]
    fn the_cache_never_holds_more_entries_than_its_bound() {
        let documents = small(4, 1024, 1024);
        for n in 0..50 {
            assert!(documents.parsed(&format!("{{ a{n} }}")).is_some());
            documents.remember_validation(key(&format!("{{ a{n} }}"), None), result(n));
            assert!(documents.document_count() <= 4);
            assert!(documents.validation_count() <= 4);
        }
        assert!(documents.document_count() >= 1);
        let last = key("{ a49 }", None);
        assert_eq!(documents.validated(&last).map(|r| r.depth), Some(49));
    }

    #[test]
    fn the_cache_never_holds_more_text_than_its_bound() {
        let documents = small(100, 40, 16);
        for n in 10..60 {
            assert!(documents.parsed(&format!("{{ a{n} }}")).is_some());
            let entries = read(&documents.parsed);
            let bytes: usize = entries.map.keys().map(String::len).sum();
            assert_eq!(bytes, entries.text_bytes);
            assert!(bytes <= 40, "{bytes} bytes remembered");
        }
    }

    #[test]
    fn validations_are_told_apart_by_operation_name() {
        let documents = Documents::default();
        let text = "query A { __typename } query B { __typename }";
        documents.remember_validation(key(text, Some("A")), result(1));
        assert_eq!(documents.validated(&key(text, Some("A"))).map(|r| r.depth), Some(1));
        assert!(documents.validated(&key(text, Some("B"))).is_none());
        assert!(documents.validated(&key(text, None)).is_none());
        documents.remember_validation(key(text, Some("B")), result(2));
        assert_eq!(documents.validated(&key(text, Some("B"))).map(|r| r.depth), Some(2));
        assert_eq!(documents.validated(&key(text, Some("A"))).map(|r| r.depth), Some(1));
    }

    #[test]
    fn a_zero_bound_remembers_nothing() {
        let documents = small(0, 0, 1024);
        assert!(documents.parsed("{ __typename }").is_some());
        assert_eq!(documents.document_count(), 0);
    }

    fn persisted(query: &str, hash: &str) -> Request {
        let mut request = Request::new(query);
        let extension = async_graphql::value!({ "version": 1, "sha256Hash": hash });
        request.extensions.insert(PERSISTED_QUERY.to_owned(), extension);
        request
    }

    const TYPENAME: &str = "{ __typename }";
    // printf '%s' '{ __typename }' | sha256sum
    const TYPENAME_HASH: &str = "7f56e67dd21ab3f30d1ff8b7bed08893f0a0db86449836189b361dd1e56ddb4b";

    #[test]
    fn a_persisted_query_is_learned_from_its_text_then_run_by_hash() {
        let persisted_queries = PersistedQueries::default();
        let mut unknown = persisted("", TYPENAME_HASH);
        let error = persisted_queries.resolve(&mut unknown).err().map(|e| e.message);
        assert_eq!(error.as_deref(), Some("PersistedQueryNotFound"));

        let mut registering = persisted(TYPENAME, TYPENAME_HASH);
        assert!(persisted_queries.resolve(&mut registering).is_ok());
        assert_eq!(registering.query, TYPENAME);
        assert!(registering.extensions.is_empty());
        assert_eq!(persisted_queries.count(), 1);

        let mut by_hash = persisted("", TYPENAME_HASH);
        assert!(persisted_queries.resolve(&mut by_hash).is_ok());
        assert_eq!(by_hash.query, TYPENAME);
        assert!(by_hash.extensions.is_empty());
    }

    #[test]
    fn a_text_under_another_hash_or_a_bad_extension_is_refused_and_not_learned() {
        let persisted_queries = PersistedQueries::default();
        let other_hash = "0".repeat(64);
        assert!(persisted_queries.resolve(&mut persisted(TYPENAME, &other_hash)).is_err());
        let mut version_2 = persisted(TYPENAME, TYPENAME_HASH);
        version_2.extensions.insert(
            PERSISTED_QUERY.to_owned(),
            async_graphql::value!({ "version": 2, "sha256Hash": TYPENAME_HASH }),
        );
        assert!(persisted_queries.resolve(&mut version_2).is_err());
        let mut malformed = Request::new(TYPENAME);
        malformed.extensions.insert(PERSISTED_QUERY.to_owned(), async_graphql::value!("x"));
        assert!(persisted_queries.resolve(&mut malformed).is_err());
        assert_eq!(persisted_queries.count(), 0);

        // A request without the extension is left as it is.
        let mut plain = Request::new(TYPENAME);
        assert!(persisted_queries.resolve(&mut plain).is_ok());
        assert_eq!(plain.query, TYPENAME);
    }

    #[test]
    fn a_request_without_variables_gets_a_validation_key_and_one_with_them_does_not() {
        let documents = Documents::default();
        let mut plain = Request::new(TYPENAME).operation_name("A");
        assert_eq!(documents.prepare(&mut plain), Some(key(TYPENAME, Some("A"))));
        let variables = async_graphql::Variables::from_json(serde_json::json!({ "x": 1 }));
        let mut with_variables = Request::new(TYPENAME).variables(variables);
        assert_eq!(documents.prepare(&mut with_variables), None);
        assert_eq!(documents.prepare(&mut Request::new("{ nope")), None);
    }
}
