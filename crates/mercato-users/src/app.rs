//! [`UsersService`]: the service assembled from its database, signing key and config.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::FromRef;
use mercato_bus::Outbox;
use mercato_contracts::{UserCreated, UserDeleted, UserUpdated};
use mercato_platform::ApiError;
use mercato_platform::auth::{Claims, Role, TokenVerifier};
use mercato_platform::health::Readiness;
use mercato_platform::rate_limit::FixedWindow;
use mercato_platform::time::Timestamp;
use mercato_platform::trace::TraceContext;
use mercato_store::sqlx::AnyConnection;
use mercato_store::{Database, is_unique_violation};
use secrecy::SecretString;
use uuid::Uuid;

use crate::config::UsersConfig;
use crate::db::{self, refresh_tokens, users, users::User};
use crate::domain::{Email, Password, UserName};
use crate::http::auth::AuthPayload;
use crate::http::users::{UserResponse, email_taken};
use crate::passwords::Passwords;
use crate::tokens::{SigningKeys, new_refresh_token, refresh_token_hash};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub(crate) db: Database,
    pub(crate) outbox: Outbox,
    pub(crate) keys: SigningKeys,
    pub(crate) verifier: TokenVerifier,
    pub(crate) passwords: Passwords,
    pub(crate) config: Arc<UsersConfig>,
    pub(crate) address_limiter: Arc<FixedWindow<IpAddr>>,
}

impl FromRef<AppState> for TokenVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

impl AppState {
    /// Hashes the password and stores a new account; a taken email is `409 email_taken`.
    pub(crate) async fn create_user(
        &self,
        name: UserName,
        email: Email,
        password: &Password,
        role: Role,
        trace: Option<&TraceContext>,
    ) -> Result<User, ApiError> {
        let now = Timestamp::now();
        let user = User {
            id: Uuid::now_v7(),
            name: name.as_str().to_owned(),
            email: email.as_str().to_owned(),
            password_hash: self.passwords.hash(password.secret()).await?,
            role,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.db.begin().await?;
        match users::insert(&self.db, &mut tx, &user).await {
            Ok(()) => {}
            Err(error) if is_unique_violation(&error) => return Err(email_taken()),
            Err(error) => return Err(error.into()),
        }
        let event = UserCreated {
            user_id: user.id,
            name: user.name.clone(),
            email: user.email.clone(),
            role: user.role.as_str().to_owned(),
        };
        self.outbox.write(&mut tx, event, now.millis(), trace.map(|t| t.0.clone())).await?;
        tx.commit().await?;
        self.outbox.notify();
        tracing::info!(user_id = %user.id, role = user.role.as_str(), "user registered");
        Ok(user)
    }

    /// Records `user.updated` for `user`'s current state in the caller's transaction.
    pub(crate) async fn user_updated(
        &self,
        conn: &mut AnyConnection,
        user: &User,
        trace: Option<&TraceContext>,
    ) -> Result<(), ApiError> {
        let event = UserUpdated {
            user_id: user.id,
            name: user.name.clone(),
            email: user.email.clone(),
            role: user.role.as_str().to_owned(),
        };
        self.outbox
            .write(conn, event, user.updated_at.millis(), trace.map(|t| t.0.clone()))
            .await?;
        Ok(())
    }

    /// Records `user.deleted` in the caller's transaction.
    pub(crate) async fn user_deleted(
        &self,
        conn: &mut AnyConnection,
        user_id: Uuid,
        trace: Option<&TraceContext>,
    ) -> Result<(), ApiError> {
        let event = UserDeleted { user_id };
        self.outbox
            .write(conn, event, Timestamp::now().millis(), trace.map(|t| t.0.clone()))
            .await?;
        Ok(())
    }

    /// Issues an access token and the next refresh token of `family`, within the caller's
    /// transaction.
    pub(crate) async fn open_session(
        &self,
        conn: &mut AnyConnection,
        user: &User,
        family: Uuid,
    ) -> Result<AuthPayload, ApiError> {
        let now = Timestamp::now();
        let refresh_token = new_refresh_token();
        refresh_tokens::insert(
            &self.db,
            conn,
            &refresh_token_hash(&refresh_token),
            family,
            user.id,
            now.plus(self.config.refresh_token_ttl),
        )
        .await?;
        let ttl = self.config.access_token_ttl;
        let claims = Claims {
            sub: user.id.to_string(),
            role: user.role,
            iat: now.seconds(),
            exp: now.plus(ttl).seconds(),
            iss: self.config.issuer.clone(),
            jti: Uuid::now_v7().to_string(),
        };
        Ok(AuthPayload {
            token: self.keys.sign(&claims)?,
            token_type: "Bearer",
            expires_in: ttl.as_secs(),
            refresh_token,
            user: UserResponse::from(user),
        })
    }
}

/// The users service, ready to serve.
#[derive(Clone)]
pub struct UsersService {
    state: AppState,
}

impl std::fmt::Debug for UsersService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsersService").field("db", &self.state.db).finish_non_exhaustive()
    }
}

impl UsersService {
    /// Migrates the database, and makes sure the configured admin exists.
    pub async fn start(
        database: Database,
        keys: SigningKeys,
        config: UsersConfig,
    ) -> anyhow::Result<Self> {
        database.migrate(&db::MIGRATIONS).await.context("migrating the users database")?;
        database
            .migrate(&mercato_bus::MIGRATIONS)
            .await
            .context("migrating the users database's outbox")?;
        let verifier = TokenVerifier::with_keys(&config.issuer, &keys.jwks())?;
        let passwords = Passwords::new(config.hashing)?;
        let address_limiter =
            FixedWindow::new(config.rate_limit.per_address_per_minute, Duration::from_secs(60));
        let admin = config.admin.clone();
        let service = Self {
            state: AppState {
                outbox: Outbox::new(database.clone()),
                db: database,
                keys,
                verifier,
                passwords,
                config: Arc::new(config),
                address_limiter: Arc::new(address_limiter),
            },
        };
        if let Some(admin) = admin {
            service.ensure_admin(&admin.email, &admin.password).await?;
        }
        Ok(service)
    }

    /// The service's routes (with state) and their OpenAPI document.
    pub fn routes(&self) -> (Router, utoipa::openapi::OpenApi) {
        crate::http::routes(self.state.clone())
    }

    pub fn router(&self) -> Router {
        self.routes().0
    }

    pub fn openapi(&self) -> utoipa::openapi::OpenApi {
        self.routes().1
    }

    /// A verifier of this service's tokens for services in the same process.
    pub fn verifier(&self) -> TokenVerifier {
        self.state.verifier.clone()
    }

    /// The service's readiness checks (its database, and its outbox backlog as detail).
    pub fn readiness(&self) -> Readiness {
        let mut readiness = Readiness::default();
        readiness.add_database("users.database", self.state.db.clone());
        readiness.add("users.outbox", self.state.outbox.backlog_check());
        readiness
    }

    /// The service's outbox (its relay publishes it onto the bus).
    pub fn outbox(&self) -> Outbox {
        self.state.outbox.clone()
    }

    pub fn database(&self) -> &Database {
        &self.state.db
    }

    /// True when an account with `email` exists.
    pub async fn account_exists(&self, email: &str) -> anyhow::Result<bool> {
        let mut conn = self.state.db.pool().acquire().await?;
        Ok(users::find_by_email(&self.state.db, &mut conn, &email.trim().to_lowercase())
            .await?
            .is_some())
    }

    /// Makes sure an account with `email` exists with role admin and this password: creates it,
    /// or promotes it and sets the password.
    pub async fn ensure_admin(
        &self,
        raw_email: &str,
        raw_password: &SecretString,
    ) -> anyhow::Result<()> {
        use secrecy::ExposeSecret;
        let email =
            Email::parse(raw_email).map_err(|error| anyhow::anyhow!("admin email: {error}"))?;
        let password = Password::parse(raw_password.expose_secret())
            .map_err(|error| anyhow::anyhow!("admin password: {error}"))?;
        let state = &self.state;
        let mut conn = state.db.pool().acquire().await?;
        let existing = users::find_by_email(&state.db, &mut conn, email.lower()).await?;
        drop(conn);
        match existing {
            None => {
                let name = UserName::parse("Administrator").map_err(anyhow::Error::msg)?;
                match state.create_user(name, email, &password, Role::Admin, None).await {
                    Ok(_) => Ok(()),
                    // Another replica created it a moment ago: make sure of it again.
                    Err(ApiError::Conflict { .. }) => {
                        Box::pin(self.ensure_admin(raw_email, raw_password)).await
                    }
                    Err(error) => Err(anyhow::anyhow!("creating the admin account: {error:?}")),
                }
            }
            Some(mut user) => {
                let same_password =
                    state.passwords.verify(password.secret(), Some(&user.password_hash)).await?;
                if same_password && user.role == Role::Admin {
                    return Ok(());
                }
                user.role = Role::Admin;
                if !same_password {
                    user.password_hash = state.passwords.hash(password.secret()).await?;
                }
                user.updated_at = Timestamp::now();
                let mut tx = state.db.begin().await?;
                users::update(&state.db, &mut tx, &user).await?;
                state.user_updated(&mut tx, &user, None).await?;
                tx.commit().await?;
                state.outbox.notify();
                tracing::info!(user_id = %user.id, "bootstrap admin updated");
                Ok(())
            }
        }
    }
}
