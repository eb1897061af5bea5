//! W3C trace context for requests, so one trace id follows a request into the events it causes.
//!
//! [`propagate`] (middleware) continues the caller's `traceparent` header (same trace id, a new
//! span id) or starts a new trace, records it on the request span and hands it to handlers as a
//! [`TraceContext`] extension; handlers pass it to the outbox, which stores it in the event's
//! envelope, and consumers record it on their spans.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;

/// The `traceparent` of the current request (`00-<trace id>-<span id>-01`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext(pub String);

impl TraceContext {
    /// A new trace.
    pub fn root() -> Self {
        let mut trace = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut trace);
        Self::with_trace_id(&hex(&trace))
    }

    /// A child of `traceparent` when it is valid, else a new trace.
    pub fn continue_from(traceparent: &str) -> Self {
        match parse(traceparent) {
            Some(trace_id) => Self::with_trace_id(trace_id),
            None => Self::root(),
        }
    }

    fn with_trace_id(trace_id: &str) -> Self {
        let mut span = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut span);
        Self(format!("00-{trace_id}-{}-01", hex(&span)))
    }

    pub fn trace_id(&self) -> &str {
        self.0.get(3..35).unwrap_or_default()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The trace id of a valid version-00 `traceparent`.
fn parse(traceparent: &str) -> Option<&str> {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    let [version, trace_id, span_id, flags] = parts.as_slice() else { return None };
    let is_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = *version == "00"
        && is_hex(trace_id, 32)
        && is_hex(span_id, 16)
        && is_hex(flags, 2)
        && trace_id.bytes().any(|b| b != b'0')
        && span_id.bytes().any(|b| b != b'0');
    valid.then_some(*trace_id)
}

/// Middleware: see the module docs.
pub async fn propagate(mut request: Request, next: Next) -> Response {
    let context = request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .map_or_else(TraceContext::root, TraceContext::continue_from);
    tracing::Span::current().record("trace_id", context.trace_id());
    request.extensions_mut().insert(context);
    next.run(request).await
}

impl<S: Send + Sync> FromRequestParts<S> for TraceContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<TraceContext>().cloned().unwrap_or_else(TraceContext::root))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let child = TraceContext::continue_from(parent);
        assert_eq!(child.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(child.0, parent);
        assert!(parse(&child.0).is_some());
    }

    #[test]
    fn an_invalid_traceparent_starts_a_new_trace() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            let context = TraceContext::continue_from(bad);
            assert!(parse(&context.0).is_some(), "{bad:?} gives a valid new context");
            assert_ne!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        }
    }
}
