//! Request headers that change how a write is answered: `Prefer: wait=N` (RFC 7240) and
//! `Idempotency-Key`.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use mercato_platform::ApiError;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The longest `Prefer: wait` honoured; larger values are treated as this.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// The longest `Idempotency-Key` accepted.
pub const MAX_KEY_LENGTH: usize = 255;

/// `Prefer: wait=N`, capped at [`MAX_WAIT`]; `None` when absent or unreadable (a preference
/// the server cannot read is ignored, RFC 7240 §2).
pub fn wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|preference| {
            let first = preference.split(';').next()?.trim();
            let (name, value) = first.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            value.trim().trim_matches('"').parse::<u64>().ok()
        })
        .next()
        .map(|seconds| Duration::from_secs(seconds).min(MAX_WAIT))
}

/// `Preference-Applied: wait=N`.
pub fn applied(wait: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!("wait={}", wait.as_secs()))
        .unwrap_or(HeaderValue::from_static("wait"))
}

/// The `Idempotency-Key`, if sent: 1..=255 visible ASCII characters, else `400 bad_request`.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().ok().map(str::trim).unwrap_or_default();
    if key.is_empty()
        || key.len() > MAX_KEY_LENGTH
        || !key.bytes().all(|byte| byte.is_ascii_graphic() || byte == b' ')
    {
        return Err(ApiError::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters"
        )));
    }
    Ok(Some(key.to_owned()))
}

/// The SHA-256 (hex) of a request's meaning: its JSON body with object keys sorted, so the same
/// body sent with other spacing or key order is the same request.
pub fn fingerprint(route: &str, body: &Value) -> String {
    let mut canonical = String::from(route);
    canonical.push('\n');
    write_canonical(body, &mut canonical);
    hex(&Sha256::digest(canonical.as_bytes()))
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn prefer(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("prefer", HeaderValue::from_str(value).expect("ascii"));
        }
        headers
    }

    #[test]
    fn wait_is_read_from_any_preference_and_capped() {
        assert_eq!(wait(&prefer(&[])), None);
        assert_eq!(wait(&prefer(&["wait=5"])), Some(Duration::from_secs(5)));
        assert_eq!(wait(&prefer(&["respond-async, wait=3"])), Some(Duration::from_secs(3)));
        assert_eq!(
            wait(&prefer(&["return=minimal", "Wait = \"7\""])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(wait(&prefer(&["wait=600"])), Some(MAX_WAIT));
        assert_eq!(wait(&prefer(&["wait=-1"])), None);
        assert_eq!(wait(&prefer(&["wait=soon"])), None);
        assert_eq!(wait(&prefer(&["waiting=4"])), None);
    }

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        let mut headers = HeaderMap::new();
        assert_eq!(idempotency_key(&headers).ok(), Some(None));
        headers.insert("idempotency-key", HeaderValue::from_static("order-42"));
        assert_eq!(idempotency_key(&headers).ok(), Some(Some("order-42".into())));
        headers.insert("idempotency-key", HeaderValue::from_static("  "));
        assert!(idempotency_key(&headers).is_err());
        headers.insert("idempotency-key", HeaderValue::from_str(&"k".repeat(256)).expect("ascii"));
        assert!(idempotency_key(&headers).is_err());
    }

    #[test]
    fn fingerprints_ignore_key_order_but_not_content_or_route() {
        let a = json!({"items": [{"productId": "x", "quantity": 1}], "paymentMethod": "card"});
        let b = json!({"paymentMethod": "card", "items": [{"quantity": 1, "productId": "x"}]});
        let c = json!({"paymentMethod": "card", "items": [{"quantity": 2, "productId": "x"}]});
        assert_eq!(fingerprint("place", &a), fingerprint("place", &b));
        assert_ne!(fingerprint("place", &a), fingerprint("place", &c));
        assert_ne!(fingerprint("place", &a), fingerprint("cancel", &a));
        assert_eq!(fingerprint("place", &a).len(), 64);
    }
}
