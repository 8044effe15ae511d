-- Personal access tokens: long-lived bearer tokens a user creates for scripts and assistants
-- (the MCP server), each limited to scopes. The token is `tfp_<lookup>_<secret>`; only the
-- lookup id (to find the row without scanning) and the SHA-256 of the secret are stored, so a
-- copy of this table cannot be replayed as a token. SHA-256 rather than a slow hash: the
-- secret is 256 random bits, not a password, so there is nothing to brute-force.
--
-- Rows are never deleted: revocation sets `revoked_at`, which every request checks (no cache),
-- so it takes effect at once, and the row keeps a record of what existed.

CREATE TABLE personal_access_tokens (
    id           UUID PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES users (id),
    name         TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    lookup       TEXT NOT NULL UNIQUE,
    secret_hash  BYTEA NOT NULL CHECK (octet_length(secret_hash) = 32),
    scopes       TEXT[] NOT NULL CHECK (cardinality(scopes) >= 1
                     AND scopes <@ ARRAY['tasks:read', 'tasks:write', 'notifications:read']),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
-- The list of a user's live tokens.
CREATE INDEX personal_access_tokens_user ON personal_access_tokens (user_id, created_at)
    WHERE revoked_at IS NULL;

-- API: create, look up on every request, record last use, revoke (an UPDATE). No DELETE:
-- a revoked token stays as a record.
GRANT SELECT, INSERT, UPDATE (last_used_at, revoked_at) ON personal_access_tokens TO taskflow_app;
