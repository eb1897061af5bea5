//! Assertions on HTTP answers that every service's tests share: status plus JSON body, problem
//! details with their code, the fields of a `422`.

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Response, StatusCode};
use serde_json::Value;

pub const PROBLEM_JSON: &str = "application/problem+json";

pub fn text(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("expected a string, got {value}")).to_owned()
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|value| value.to_str().unwrap_or("<unreadable>").to_owned())
}

/// Asserts the status and returns the body as JSON, showing the body when either is wrong.
pub async fn json_body(response: Response, status: StatusCode) -> Value {
    let (actual, headers, body) = parts(response).await;
    assert_eq!(actual, status, "unexpected status; body: {body}");
    serde_json::from_str(&body).unwrap_or_else(|error| {
        panic!(
            "the {actual} body is not JSON ({error}); content-type {:?}: {body}",
            header_text(&headers, "content-type")
        )
    })
}

/// Asserts a problem-details answer with this status and code, and returns its body.
pub async fn problem(response: Response, status: StatusCode, code: &str) -> Value {
    let (actual, headers, body) = parts(response).await;
    assert_eq!(actual, status, "unexpected status; body: {body}");
    assert_eq!(
        header_text(&headers, CONTENT_TYPE.as_str()).as_deref(),
        Some(PROBLEM_JSON),
        "a {status} must be problem details; body: {body}"
    );
    let json: Value = serde_json::from_str(&body)
        .unwrap_or_else(|error| panic!("the problem body is not JSON ({error}): {body}"));
    assert_eq!(json["code"], code, "unexpected problem code; body: {body}");
    assert_eq!(json["status"], status.as_u16(), "the problem's status member; body: {body}");
    assert_eq!(json["type"], format!("/problems/{code}"), "the problem's type; body: {body}");
    json
}

/// A `422 validation_failed` answer: returns the fields it names.
pub async fn invalid_fields(response: Response) -> Vec<String> {
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("a validation problem lists its errors: {body}"));
    assert!(!errors.is_empty(), "a validation problem names at least one field: {body}");
    errors.iter().map(|error| text(&error["field"])).collect()
}

pub async fn parts(response: Response) -> (StatusCode, HeaderMap, String) {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.expect("a readable body");
    (status, headers, body)
}

/// `2026-11-21T10:00:00.123Z`-like: a date, `T`, a time, and `Z`.
pub fn assert_rfc3339_utc(stamp: &str) {
    let bytes = stamp.as_bytes();
    let shaped = bytes.len() >= 20
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && stamp.ends_with('Z');
    assert!(shaped, "an RFC 3339 UTC timestamp: {stamp}");
}
