//! HTTP, telemetry, config and auth plumbing that every Mercato service shares.
//!
//! A service builds its own `axum::Router` from its handlers; this crate gives it the pieces every
//! service needs to speak the contract of `API.md` the same way:
//!
//! - [`error`]: [`ApiError`], the one error type handlers return, rendered as RFC 9457 problem
//!   details (`application/problem+json`). 5xx bodies never carry internals: the cause travels in
//!   a response extension and is logged once by [`http`]'s middleware with the request id.
//! - [`extract`]: `Json`, `Path` and `Query` extractors whose rejections are problem details
//!   (`415`, `413`, `400 malformed_json`, `422 validation_failed` with the failing field, `400
//!   bad_request` for malformed paths and queries).
//! - [`http`]: [`http::finish`] wraps a service router with request ids, tracing, metrics, the 1 MiB
//!   body limit, problem-detail fallbacks and the operational endpoints (`/health/*`, `/metrics`).
//! - [`auth`]: access-token claims and the [`auth::TokenVerifier`] every service and the gateway
//!   use to check a bearer token themselves (JWKS fetched and cached, or keys handed in-process).
//! - [`health`], [`metrics`], [`telemetry`], [`shutdown`], [`rate_limit`]: readiness checks,
//!   Prometheus, `tracing` set-up, SIGTERM/Ctrl-C, fixed-window limits.
//! - [`trace`]: W3C `traceparent` continued from the request into the events it causes.
//! - [`pagination`], [`time`], [`money`]: cursor pages, RFC 3339 timestamps kept as epoch
//!   milliseconds, amounts kept as cents and shown as decimal strings.
//! - [`validation`]: [`validation::Fields`] collects every invalid field of a body into one `422`.
//!
//! It must not know any service's resources.

pub mod auth;
pub mod error;
pub mod extract;
pub mod health;
pub mod http;
pub mod metrics;
pub mod money;
pub mod pagination;
pub mod rate_limit;
pub mod shutdown;
pub mod telemetry;
pub mod time;
pub mod trace;
pub mod validation;

pub use error::{ApiError, FieldError};
