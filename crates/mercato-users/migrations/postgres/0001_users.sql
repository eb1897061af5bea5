-- Accounts. `email` is kept as given; `email_lower` is what uniqueness and login compare on.
CREATE TABLE users (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    email VARCHAR(254) NOT NULL,
    email_lower VARCHAR(254) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    role VARCHAR(16) NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT users_email_lower_key UNIQUE (email_lower)
);

-- Refresh tokens, by the SHA-256 of the token. A family is one login's chain of rotations:
-- presenting a spent token revokes its whole family.
CREATE TABLE refresh_tokens (
    token_hash VARCHAR(64) NOT NULL PRIMARY KEY,
    family_id VARCHAR(36) NOT NULL,
    user_id VARCHAR(36) NOT NULL,
    spent SMALLINT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Failed logins per email in the current window, for the rate limit that must hold across
-- replicas and restarts. A login reserves its slot with one conditional update before the password
-- is checked, so parallel guesses cannot all slip under the limit.
CREATE TABLE login_attempts (
    email_lower VARCHAR(254) NOT NULL PRIMARY KEY,
    window_start BIGINT NOT NULL,
    failures BIGINT NOT NULL
);
