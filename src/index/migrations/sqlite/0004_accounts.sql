-- Version 4: operator accounts. Dashboard users with Argon2id password hashes, their sessions,
-- the brute-force throttle of the login form, the audit log of every admin action, who created
-- which admin token, and runner key rotation.

-- An operator who signs in to the dashboard with a name and a password.
CREATE TABLE users (
  id             INTEGER PRIMARY KEY,
  name           TEXT NOT NULL UNIQUE,
  role           TEXT NOT NULL CHECK (role IN ('admin','viewer')),
  password_hash  TEXT NOT NULL,                  -- Argon2id encoded string ($argon2id$v=19$...)
  created_at     INTEGER NOT NULL,               -- Unix ms
  updated_at     INTEGER NOT NULL,               -- Unix ms, last password or role change
  last_login_at  INTEGER NOT NULL DEFAULT 0      -- Unix ms, 0 = never
);

-- A signed-in dashboard session. The cookie holds the session id; only its hash is stored, so a
-- copy of the index signs nobody in.
CREATE TABLE sessions (
  id_hash       TEXT PRIMARY KEY,                -- SHA-256 hex of the session id
  user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  csrf_token    TEXT NOT NULL,                   -- sent back as X-CSRF-Token on every change
  source_ip     TEXT NOT NULL DEFAULT '',        -- address that signed in
  created_at    INTEGER NOT NULL,                -- Unix ms
  expires_at    INTEGER NOT NULL,                -- Unix ms, absolute end of the session
  last_seen_at  INTEGER NOT NULL                 -- Unix ms, idle expiry counts from here
);
CREATE INDEX sessions_user ON sessions(user_id);

-- Failed sign-ins per subject ('user:NAME' or 'ip:ADDRESS'), for lock-out with back-off.
CREATE TABLE login_failures (
  subject          TEXT PRIMARY KEY,
  failures         INTEGER NOT NULL,             -- consecutive failures since the last success
  last_failure_at  INTEGER NOT NULL,             -- Unix ms
  locked_until     INTEGER NOT NULL DEFAULT 0    -- Unix ms, 0 = not locked
);

-- Every state-changing admin request (and every sign-in), newest last.
CREATE TABLE audit_log (
  id         INTEGER PRIMARY KEY,
  at         INTEGER NOT NULL,                   -- Unix ms
  actor      TEXT NOT NULL,                      -- 'user:NAME', 'token:NAME' or '' (anonymous)
  action     TEXT NOT NULL,                      -- e.g. 'POST /api/v1/admin/runners/{runner}/approve'
  target     TEXT NOT NULL DEFAULT '',           -- e.g. the request path
  result     TEXT NOT NULL,                      -- HTTP status as text ('200', '403', ...)
  details    TEXT NOT NULL DEFAULT '{}',         -- JSON object
  source_ip  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log(at);

-- Who created each admin token (a user or token actor; '' for the bootstrap token).
ALTER TABLE admin_tokens ADD COLUMN created_by TEXT NOT NULL DEFAULT '';

-- Key rotation: an operator asks for it (rotate_requested_at); the next heartbeat, authenticated by
-- the old key, hands the agent a new key whose hash waits in next_key_hash; the first request made
-- with the new key promotes it and the old key stops working.
ALTER TABLE runners ADD COLUMN rotate_requested_at INTEGER NOT NULL DEFAULT 0;  -- Unix ms, 0 = none
ALTER TABLE runners ADD COLUMN next_key_hash TEXT;                               -- SHA-256 hex
CREATE UNIQUE INDEX runners_next_key ON runners(next_key_hash) WHERE next_key_hash IS NOT NULL;
