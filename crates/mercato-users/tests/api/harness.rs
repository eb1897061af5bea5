//! Spawning the users service on a fresh database, and the requests tests send it.
//!
//! Every test gets its own [`TestApp`]: its own database (dropped when the app is), its own
//! signing keys and a bootstrap admin with known credentials.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mercato_platform::auth::{Claims, Role};
use mercato_platform::http::{Operations, finish};
use mercato_store::{Database, PoolSettings};
pub use mercato_testkit::http::{
    PROBLEM_JSON, assert_rfc3339_utc, invalid_fields, json_body, parts, problem, text,
};
use mercato_testkit::{TestDatabase, TestServer};
use mercato_users::{AdminCredentials, SigningKeys, UsersConfig, UsersService};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "root@mercato.test";
pub const ADMIN_PASSWORD: &str = "bootstrap-admin-secret-1";
/// A password every test user may share: valid, and not the admin's.
pub const PASSWORD: &str = "correct horse battery";

/// The users service, served on a local port over its own database.
pub struct TestApp {
    pub server: TestServer,
    pub client: reqwest::Client,
    pub keys: SigningKeys,
    pub admin_email: String,
    pub admin_password: String,
    /// Declared last so that it is dropped last: dropping it drops the database.
    pub db: TestDatabase,
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub token: String,
    pub refresh_token: String,
}

pub async fn spawn_app(db: TestDatabase) -> TestApp {
    spawn_app_with(db, |_| {}).await
}

// Set field by field: `UsersConfig` may gain fields the tests need not know.
#[allow(clippy::field_reassign_with_default)]
pub async fn spawn_app_with(db: TestDatabase, configure: impl FnOnce(&mut UsersConfig)) -> TestApp {
    let mut config = UsersConfig::default();
    config.admin = Some(AdminCredentials {
        email: ADMIN_EMAIL.to_owned(),
        password: secrecy::SecretString::from(ADMIN_PASSWORD),
    });
    configure(&mut config);
    let keys = SigningKeys::generate();
    let server = serve(&db.url, keys.clone(), config).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    TestApp {
        server,
        client,
        keys,
        admin_email: ADMIN_EMAIL.to_owned(),
        admin_password: ADMIN_PASSWORD.to_owned(),
        db,
    }
}

/// Starts the users service over the database at `url` and serves it with the shared plumbing.
async fn serve(url: &str, keys: SigningKeys, config: UsersConfig) -> TestServer {
    let database = Database::connect(url, &PoolSettings::default())
        .unwrap_or_else(|error| panic!("connecting to {url}: {error:#}"));
    let service = UsersService::start(database, keys, config)
        .await
        .unwrap_or_else(|error| panic!("the users service starts on {url}: {error:#}"));
    let readiness = service.readiness();
    let openapi = service.openapi();
    let routes = service.router();
    let app = finish(
        routes,
        Operations { readiness, metrics: mercato_platform::metrics::recorder(), openapi },
    );
    TestServer::start(app).await
}

impl TestApp {
    /// Another instance of the service over the same database and keys (a restart, or a
    /// replica), started with the default config changed by `configure` (no bootstrap admin
    /// unless `configure` sets one).
    pub async fn another_instance(&self, configure: impl FnOnce(&mut UsersConfig)) -> TestServer {
        let mut config = UsersConfig::default();
        configure(&mut config);
        serve(&self.db.url, self.keys.clone(), config).await
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Response {
        let mut request = self.client.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .unwrap_or_else(|error| panic!("{method} {path} was not answered: {error}"))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send(Method::GET, path, None, token).await
    }

    /// `GET path` with query parameters, encoded by the client (so `%` and `_` arrive as given).
    pub async fn get_query(
        &self,
        path: &str,
        query: &[(&str, &str)],
        token: Option<&str>,
    ) -> Response {
        let mut request = self.client.get(self.url(path)).query(query);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path} {query:?} was not answered: {error}"))
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

    /// A request with the given header value as `Authorization`, whatever its scheme.
    pub async fn get_with_authorization(&self, path: &str, authorization: &str) -> Response {
        self.client
            .get(self.url(path))
            .header(reqwest::header::AUTHORIZATION, authorization)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path} was not answered: {error}"))
    }

    pub async fn register(&self, name: &str, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/users",
            &json!({"name": name, "email": email, "password": password}),
            None,
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json("/api/auth/login", &json!({"email": email, "password": password}), None)
            .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_json("/api/auth/refresh", &json!({"refreshToken": refresh_token}), None).await
    }

    /// Registers a user (`201` expected) and returns it.
    pub async fn create_user(&self, name: &str, email: &str, password: &str) -> Value {
        json_body(self.register(name, email, password).await, StatusCode::CREATED).await
    }

    /// Registers and logs in a customer with [`PASSWORD`].
    pub async fn token_for(&self, name: &str, email: &str) -> Session {
        self.token_for_with(name, email, PASSWORD).await
    }

    pub async fn token_for_with(&self, name: &str, email: &str, password: &str) -> Session {
        let user = self.create_user(name, email, password).await;
        let auth = json_body(self.login(email, password).await, StatusCode::OK).await;
        Session {
            id: text(&user["id"]),
            token: text(&auth["token"]),
            refresh_token: text(&auth["refreshToken"]),
        }
    }

    /// Logs in the bootstrap admin.
    pub async fn admin(&self) -> Session {
        let auth =
            json_body(self.login(&self.admin_email, &self.admin_password).await, StatusCode::OK)
                .await;
        Session {
            id: text(&auth["user"]["id"]),
            token: text(&auth["token"]),
            refresh_token: text(&auth["refreshToken"]),
        }
    }

    /// An access token signed with the service's real key.
    pub fn mint(&self, sub: &str, role: Role, iat: i64, exp: i64, iss: &str) -> String {
        self.keys
            .sign(&Claims {
                sub: sub.to_owned(),
                role,
                iat,
                exp,
                iss: iss.to_owned(),
                jti: Uuid::now_v7().to_string(),
            })
            .expect("the service's key signs a token")
    }
}

pub fn now() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).expect("a clock after 1970");
    i64::try_from(elapsed.as_secs()).expect("seconds fit in i64")
}

/// Asserts that `user` has exactly the public user shape, and no secret in it.
pub fn assert_user_shape(user: &Value) {
    let object = user.as_object().unwrap_or_else(|| panic!("a user is an object: {user}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["createdAt", "email", "id", "name", "role", "updatedAt"],
        "a user has exactly these members: {user}"
    );
    let id = text(&user["id"]);
    let parsed = Uuid::parse_str(&id).unwrap_or_else(|_| panic!("the id is a UUID: {id}"));
    assert_eq!(parsed.get_version_num(), 7, "ids are UUIDv7: {id}");
    for stamp in ["createdAt", "updatedAt"] {
        assert_rfc3339_utc(&text(&user[stamp]));
    }
    let serialised = user.to_string();
    assert!(!serialised.contains("$argon2"), "a user never carries a hash: {user}");
    assert!(
        !serialised.to_lowercase().contains("password"),
        "a user never carries a password: {user}"
    );
}

/// The decoded JSON of a JWT's header and payload.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3, "a JWT has three segments: {token}");
    let decode = |segment: &str| -> Value {
        let bytes = URL_SAFE_NO_PAD
            .decode(segment)
            .unwrap_or_else(|error| panic!("a JWT segment is base64url ({error}): {segment}"));
        serde_json::from_slice(&bytes).expect("a JWT segment is JSON")
    };
    (decode(segments[0]), decode(segments[1]))
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64_json(value: &Value) -> String {
    b64(value.to_string().as_bytes())
}
