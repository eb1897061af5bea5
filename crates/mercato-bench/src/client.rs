//! HTTP against the server: one pooled [`Api`] client, the [`Answer`] of a request, the
//! [`Failure`] a request is counted under (HTTP status and the body's error `code`, API.md's
//! problem details or GraphQL's `errors[].extensions.code`), and signed-in [`Account`]s whose
//! tokens are renewed before they expire.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

/// Longer than the longest answer the server may hold (`Prefer: wait=30`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// A token is renewed this long before the `expiresIn` its login gave.
const RENEW_MARGIN: Duration = Duration::from_secs(60);

/// A client for one server: keeps up to `pool` idle connections, so every worker reuses its own.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub fn new(base: &str, pool: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(pool)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned() })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// `POST /graphql` with this document and variables.
    pub fn graphql(&self, query: &str, variables: Value) -> RequestBuilder {
        self.request(Method::POST, "/graphql")
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&json!({"query": query, "variables": variables}))
    }
}

/// Why a request did not count as a success: grouped by these two in the report.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Failure {
    /// `None` when no answer came (connection refused, timeout).
    pub status: Option<u16>,
    /// The body's error code, or what went wrong (`connect`, `timeout`, `still_pending`, ...);
    /// empty when the body had none.
    pub code: String,
}

impl Failure {
    pub fn new(status: Option<u16>, code: impl Into<String>) -> Self {
        Self { status, code: code.into() }
    }

    /// No answer at all.
    pub fn transport(error: &reqwest::Error) -> Self {
        let code = if error.is_timeout() {
            "timeout"
        } else if error.is_connect() {
            "connect"
        } else if error.is_body() || error.is_decode() {
            "body"
        } else {
            "request"
        };
        Self::new(None, code)
    }

    /// An answer other than the expected one.
    pub fn from_answer(answer: &Answer) -> Self {
        Self::new(Some(answer.status.as_u16()), error_code(&answer.body).unwrap_or_default())
    }

    /// `429`, or a body saying `rate_limited` / `RATE_LIMITED`.
    pub fn is_rate_limited(&self) -> bool {
        self.status == Some(429) || self.code.eq_ignore_ascii_case("rate_limited")
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.status, self.code.is_empty()) {
            (Some(status), true) => write!(f, "{status}"),
            (Some(status), false) => write!(f, "{status} {}", self.code),
            (None, _) => write!(f, "no answer ({})", self.code),
        }
    }
}

/// The error code of a body: API.md's problem details (`code`), or the first GraphQL error's
/// `extensions.code`.
pub fn error_code(body: &Value) -> Option<String> {
    if let Some(code) = body.get("code").and_then(Value::as_str) {
        return Some(code.to_owned());
    }
    body.get("errors")?
        .as_array()?
        .iter()
        .find_map(|error| error.pointer("/extensions/code")?.as_str())
        .map(str::to_owned)
}

/// A status and a body (JSON, or `null` when it was not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// Sends the request and reads the whole answer.
    pub async fn of(request: RequestBuilder) -> Result<Self, Failure> {
        let response = request.send().await.map_err(|error| Failure::transport(&error))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|error| Failure::transport(&error))?;
        Ok(Self { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) })
    }

    /// The body when the status is `expected`.
    pub fn expect(self, expected: StatusCode) -> Result<Value, Failure> {
        if self.status == expected { Ok(self.body) } else { Err(Failure::from_answer(&self)) }
    }

    /// GraphQL's `data` when the answer is `200` without `errors`.
    pub fn graphql_data(self) -> Result<Value, Failure> {
        let has_errors = self.body.get("errors").and_then(Value::as_array).is_some_and(|e| {
            // An empty list is no error.
            !e.is_empty()
        });
        if self.status != StatusCode::OK || has_errors {
            return Err(Failure::from_answer(&self));
        }
        match self.body.get("data") {
            Some(data) if data.is_object() => Ok(data.clone()),
            _ => Err(Failure::new(Some(200), "no_data")),
        }
    }
}

/// Sends a request the run cannot do without (fixtures, invariant checks): a failure is an
/// error that says what was being done, and how to fix it when the server's rate limit refused.
pub async fn require(
    request: RequestBuilder,
    expected: StatusCode,
    what: &str,
) -> anyhow::Result<Value> {
    let response = request.send().await.map_err(|error| {
        anyhow::Error::new(error).context(format!("{what}: no answer from the server"))
    })?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|error| anyhow::Error::new(error).context(format!("{what}: unreadable answer")))?;
    if status != expected {
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let code = error_code(&body).unwrap_or_default();
        let detail = body.get("detail").and_then(Value::as_str).unwrap_or_default();
        let mut message = format!("{what}: the server answered {status} {code}");
        if !detail.is_empty() {
            message.push_str(&format!(" ({detail})"));
        }
        if Failure::new(Some(status.as_u16()), code).is_rate_limited() {
            message.push_str(
                "; the server's rate limit refused it: raise \
                 MERCATO_USERS__RATE_LIMIT__PER_ADDRESS_PER_MINUTE (logins) or \
                 MERCATO_GATEWAY__RATE_LIMIT_PER_MINUTE (GraphQL; 0 turns it off) on the server",
            );
        }
        return Err(anyhow!(message));
    }
    serde_json::from_str(&text).with_context(|| format!("{what}: the answer is not JSON: {text}"))
}

/// A signed-in token and when to renew it.
#[derive(Debug, Clone)]
struct Session {
    token: String,
    renew_at: Instant,
}

/// An account the run acts as. Access tokens live 15 minutes by default; a run that lasts
/// longer signs in again before the token expires, rather than measuring `401`s.
#[derive(Debug)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub password: String,
    pub role: String,
    session: tokio::sync::Mutex<Session>,
}

impl Account {
    /// `POST /api/auth/login`.
    pub async fn sign_in(api: &Api, email: &str, password: &str) -> anyhow::Result<Self> {
        let (payload, session) = login(api, email, password).await?;
        Ok(Self {
            id: payload.pointer("/user/id").and_then(Value::as_str).unwrap_or_default().to_owned(),
            email: email.to_owned(),
            password: password.to_owned(),
            role: payload
                .pointer("/user/role")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            session: tokio::sync::Mutex::new(session),
        })
    }

    /// A token valid for at least another minute.
    pub async fn token(&self, api: &Api) -> Result<String, Failure> {
        let mut session = self.session.lock().await;
        if Instant::now() >= session.renew_at {
            let (_, renewed) = login(api, &self.email, &self.password)
                .await
                .map_err(|_| Failure::new(None, "token_renewal"))?;
            *session = renewed;
        }
        Ok(session.token.clone())
    }
}

async fn login(api: &Api, email: &str, password: &str) -> anyhow::Result<(Value, Session)> {
    let request = api
        .request(Method::POST, "/api/auth/login")
        .json(&json!({"email": email, "password": password}));
    let payload = require(request, StatusCode::OK, &format!("signing in as {email}")).await?;
    let token = payload
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("signing in as {email}: the answer has no token: {payload}"))?
        .to_owned();
    let lifetime =
        Duration::from_secs(payload.get("expiresIn").and_then(Value::as_u64).unwrap_or(900));
    let renew_at = Instant::now() + lifetime.saturating_sub(RENEW_MARGIN);
    Ok((payload, Session { token, renew_at }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_code_comes_from_problem_details_or_graphql_extensions() {
        let problem =
            json!({"type": "/problems/invalid_state", "status": 409, "code": "invalid_state"});
        assert_eq!(error_code(&problem).as_deref(), Some("invalid_state"));
        let graphql = json!({"data": null, "errors": [
            {"message": "slow down"},
            {"message": "slow down", "extensions": {"code": "RATE_LIMITED"}}
        ]});
        assert_eq!(error_code(&graphql).as_deref(), Some("RATE_LIMITED"));
        assert_eq!(error_code(&json!({"errors": []})), None);
        assert_eq!(error_code(&Value::Null), None);
    }

    #[test]
    fn graphql_errors_with_http_200_are_failures() {
        let answer = Answer {
            status: StatusCode::OK,
            body: json!({"data": {"product": null}, "errors": [{"message": "x", "extensions": {"code": "INTERNAL"}}]}),
        };
        assert_eq!(answer.graphql_data(), Err(Failure::new(Some(200), "INTERNAL")));
        let answer =
            Answer { status: StatusCode::OK, body: json!({"data": {"product": {"id": "1"}}}) };
        assert_eq!(answer.graphql_data(), Ok(json!({"product": {"id": "1"}})));
        let answer = Answer {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: json!({"errors": [{"message": "x", "extensions": {"code": "RATE_LIMITED"}}]}),
        };
        let failure = answer.graphql_data().expect_err("a failure");
        assert!(failure.is_rate_limited());
        assert_eq!(failure.to_string(), "429 RATE_LIMITED");
    }

    #[test]
    fn an_unexpected_status_keeps_the_code_of_its_body() {
        let answer =
            Answer { status: StatusCode::CONFLICT, body: json!({"code": "update_in_progress"}) };
        assert_eq!(
            answer.expect(StatusCode::OK),
            Err(Failure::new(Some(409), "update_in_progress"))
        );
        let answer = Answer { status: StatusCode::BAD_GATEWAY, body: Value::Null };
        let failure = answer.expect(StatusCode::OK).expect_err("a failure");
        assert_eq!(failure.to_string(), "502");
        assert!(!failure.is_rate_limited());
        assert_eq!(Failure::new(None, "connect").to_string(), "no answer (connect)");
    }
}
