-- Accounts shared by the fleet: tenants, users, API keys, revoked token
-- ids and server settings (the JWT secret, the OTP key), so an account
-- made through any node works on every node and a token one node signed
-- every node accepts. Times are Unix milliseconds (the `Timestamp` the
-- single-node store keeps), written by the node that made the row.

CREATE TABLE tenants (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    created_ms bigint NOT NULL
);

CREATE TABLE users (
    id               text PRIMARY KEY,
    username         text NOT NULL,
    -- The username lowercased by the node (Rust's `to_lowercase`, not the
    -- database's locale): logins are case-insensitive, names unique so.
    username_key     text NOT NULL UNIQUE,
    -- argon2id PHC string.
    password_hash    text NOT NULL,
    -- admin | tenant
    role             text NOT NULL CHECK (role IN ('admin', 'tenant')),
    -- A tenant user's tenant; a user of a tenant not on record is refused,
    -- checked by the insert itself, so none lands behind a purge.
    tenant           text REFERENCES tenants (id),
    created_ms       bigint NOT NULL,
    -- Bumped on every password change; tokens carry it.
    password_version bigint NOT NULL CHECK (password_version >= 0)
);
CREATE INDEX users_by_tenant ON users (tenant);

CREATE TABLE api_keys (
    id         text PRIMARY KEY,
    tenant     text NOT NULL REFERENCES tenants (id),
    name       text NOT NULL,
    -- Hex SHA-256 of the key: the key itself is never stored.
    hash       text NOT NULL,
    -- The key's first characters, for listings.
    prefix     text NOT NULL,
    created_ms bigint NOT NULL,
    revoked_ms bigint
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant);
CREATE INDEX api_keys_live_by_hash ON api_keys (hash) WHERE revoked_ms IS NULL;

-- Token ids revoked (a logout) until the token would have expired anyway.
CREATE TABLE revoked_tokens (
    jti        text PRIMARY KEY,
    expires_ms bigint NOT NULL
);
CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_ms);

-- Server settings: the first value written for a key stays.
CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);
