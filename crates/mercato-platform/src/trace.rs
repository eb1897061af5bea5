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
        let mut trace_id = [0u8; 32];
        Self::with_trace_id(hex(&trace, &mut trace_id))
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
        let mut span_id = [0u8; 16];
        let mut text = String::with_capacity(TRACEPARENT_LENGTH);
        for part in ["00-", trace_id, "-", hex(&span, &mut span_id), "-01"] {
            text.push_str(part);
        }
        Self(text)
    }

    pub fn trace_id(&self) -> &str {
        self.0.get(3..35).unwrap_or_default()
    }
}

/// `00-` + 32 + `-` + 16 + `-01`.
const TRACEPARENT_LENGTH: usize = 55;

/// `bytes` in lowercase hex, written into `out` (twice as long). This runs on every request:
/// the `format!` per byte it replaced was about a seventh of the instructions of a
/// `GET /api/products/:id` (callgrind, 2026-12-04).
fn hex<'a>(bytes: &[u8], out: &'a mut [u8]) -> &'a str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    std::str::from_utf8(&out[..bytes.len() * 2]).unwrap_or_default()
}

/// The trace id of a valid version-00 `traceparent`.
fn parse(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let (Some(version), Some(trace_id), Some(span_id), Some(flags), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let is_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = version == "00"
        && is_hex(trace_id, 32)
        && is_hex(span_id, 16)
        && is_hex(flags, 2)
        && trace_id.bytes().any(|b| b != b'0')
        && span_id.bytes().any(|b| b != b'0');
    valid.then_some(trace_id)
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
    fn bytes_are_written_as_lowercase_hex() {
        let mut out = [0u8; 8];
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff], &mut out), "000fa0ff");
    }

    #[test]
    fn a_new_trace_is_a_valid_traceparent() {
        let context = TraceContext::root();
        assert_eq!(context.0.len(), TRACEPARENT_LENGTH);
        assert_eq!(parse(&context.0), Some(context.trace_id()));
        assert!(context.0.starts_with("00-") && context.0.ends_with("-01"), "{}", context.0);
        assert_ne!(TraceContext::root().trace_id(), context.trace_id());
    }

    #[test]
    fn an_invalid_traceparent_starts_a_new_trace() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-00",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let context = TraceContext::continue_from(bad);
            assert!(parse(&context.0).is_some(), "{bad:?} gives a valid new context");
            assert_ne!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        }
    }
}
