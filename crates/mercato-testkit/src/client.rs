//! [`Client`]: an HTTP client bound to one base URL, with the request shapes every API test
//! sends (a bearer token, a JSON body, extra headers), so test harnesses do not each spell them
//! out.

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

/// A client for one server; redirects are not followed (a test sees what the server said).
#[derive(Debug, Clone)]
pub struct Client {
    pub base_url: String,
    pub http: reqwest::Client,
}

impl Client {
    pub fn new(base_url: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        Self { base_url: base_url.into().trim_end_matches('/').to_owned(), http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `method path` with the token, if any.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `method path` with an optional JSON body, token and extra headers.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = self.request(method.clone(), path, token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request
            .send()
            .await
            .unwrap_or_else(|error| panic!("{method} {path} was not answered: {error}"))
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Response {
        self.send_with(method, path, body, token, &[]).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send(Method::GET, path, None, token).await
    }

    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        self.send(Method::POST, path, Some(body), token).await
    }

    pub async fn patch_json(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        self.send(Method::PATCH, path, Some(body), token).await
    }

    pub async fn put_json(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        self.send(Method::PUT, path, Some(body), token).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.send(Method::DELETE, path, None, token).await
    }
}
