-- DataSync state index, PostgreSQL dialect, version 1. Mirrors migrations/sqlite/0001_initial.sql.
-- Times are Unix milliseconds (BIGINT, 0 = never); file mtimes are Unix nanoseconds.
-- Names and paths are COLLATE "C": ORDER BY and keyset paging (path > $after) compare bytes, as
-- SQLite's BINARY collation does, whatever the database's default collation is.

-- Runners that share settings (release channel, defaults).
CREATE TABLE runner_groups (
  id          BIGSERIAL PRIMARY KEY,
  name        TEXT COLLATE "C" NOT NULL UNIQUE,
  settings    TEXT NOT NULL DEFAULT '{}',      -- JSON object
  created_at  BIGINT NOT NULL                  -- Unix ms
);

-- One enrolled agent (one PC).
CREATE TABLE runners (
  id                  BIGSERIAL PRIMARY KEY,
  name                TEXT COLLATE "C" NOT NULL UNIQUE,
  status              TEXT NOT NULL CHECK (status IN ('pending','approved','rejected','revoked')),
  group_id            BIGINT REFERENCES runner_groups(id) ON DELETE SET NULL,
  api_key_hash        TEXT UNIQUE,                -- SHA-256 hex of the API key; NULL = no key
  hostname            TEXT NOT NULL DEFAULT '',
  os                  TEXT NOT NULL DEFAULT '',
  machine_id          TEXT NOT NULL DEFAULT '',
  agent_version       TEXT NOT NULL DEFAULT '',
  runtime_state       TEXT NOT NULL DEFAULT '',   -- idle | syncing | ... as last reported
  current_run         TEXT NOT NULL DEFAULT '',   -- correlation id of the run in progress
  jobs_version        BIGINT NOT NULL DEFAULT 0,  -- bumped on every job change
  created_at          BIGINT NOT NULL,            -- Unix ms
  approved_at         BIGINT NOT NULL DEFAULT 0,  -- Unix ms
  last_heartbeat_at   BIGINT NOT NULL DEFAULT 0,  -- Unix ms
  last_activity_at    BIGINT NOT NULL DEFAULT 0   -- Unix ms, last file synced
);

-- A registration waiting for (or past) an operator's decision; the agent polls it by id + secret.
CREATE TABLE enrollments (
  id           TEXT PRIMARY KEY,                 -- UUID
  runner_id    BIGINT NOT NULL REFERENCES runners(id) ON DELETE CASCADE,
  secret_hash  TEXT NOT NULL,                    -- SHA-256 hex of the enrollment secret
  status       TEXT NOT NULL CHECK (status IN ('pending','approved','rejected','delivered')),
  created_at   BIGINT NOT NULL                   -- Unix ms
);
CREATE INDEX enrollments_runner ON enrollments(runner_id);

-- One source folder on one runner.
CREATE TABLE jobs (
  id           BIGSERIAL PRIMARY KEY,
  runner_id    BIGINT NOT NULL REFERENCES runners(id) ON DELETE CASCADE,
  name         TEXT COLLATE "C" NOT NULL,
  source       TEXT NOT NULL,                    -- folder on the runner
  dest_prefix  TEXT NOT NULL,                    -- key prefix in storage
  includes     TEXT NOT NULL DEFAULT '[]',       -- JSON array of globs
  excludes     TEXT NOT NULL DEFAULT '[]',       -- JSON array of globs
  interval_ms  BIGINT NOT NULL,                  -- milliseconds between scheduled runs
  settle_ms    BIGINT NOT NULL,                  -- minimum file age, milliseconds
  enabled      BOOLEAN NOT NULL DEFAULT TRUE,
  created_at   BIGINT NOT NULL,                  -- Unix ms
  UNIQUE (runner_id, name)
);

-- The index proper: one row per file of a job that has landed in storage.
CREATE TABLE synced_files (
  job_id     BIGINT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  path       TEXT COLLATE "C" NOT NULL,          -- relative to the job folder, '/'-separated
  size       BIGINT NOT NULL,                    -- bytes
  mtime_ns   BIGINT NOT NULL,                    -- Unix nanoseconds
  sha256     TEXT NOT NULL,                      -- lowercase hex
  synced_at  BIGINT NOT NULL,                    -- Unix ms
  run_id     TEXT NOT NULL,                      -- correlation id of the run that synced it
  PRIMARY KEY (job_id, path)
);

-- One sync cycle of one job; id is the correlation id.
CREATE TABLE sync_runs (
  id              TEXT PRIMARY KEY,              -- UUID correlation id
  seq             BIGSERIAL NOT NULL,            -- insertion order: breaks started_at ties (SQLite: rowid)
  runner_id       BIGINT NOT NULL REFERENCES runners(id) ON DELETE CASCADE,
  job_id          BIGINT REFERENCES jobs(id) ON DELETE SET NULL,
  job_name        TEXT NOT NULL,                 -- kept for history after the job is deleted
  state           TEXT NOT NULL CHECK (state IN ('running','succeeded','partial','failed','abandoned')),
  "trigger"       TEXT NOT NULL DEFAULT '',      -- schedule | command | startup
  files_seen      BIGINT NOT NULL DEFAULT 0,
  files_planned   BIGINT NOT NULL DEFAULT 0,
  files_uploaded  BIGINT NOT NULL DEFAULT 0,
  files_failed    BIGINT NOT NULL DEFAULT 0,
  files_skipped   BIGINT NOT NULL DEFAULT 0,
  bytes_seen      BIGINT NOT NULL DEFAULT 0,     -- bytes
  bytes_uploaded  BIGINT NOT NULL DEFAULT 0,     -- bytes
  started_at      BIGINT NOT NULL,               -- Unix ms
  finished_at     BIGINT NOT NULL DEFAULT 0,     -- Unix ms
  error           TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sync_runs_runner ON sync_runs(runner_id, started_at);
CREATE INDEX sync_runs_job ON sync_runs(job_id, started_at);
CREATE INDEX sync_runs_state ON sync_runs(state);

-- Per-file plan and outcome of a run: what compare asked for and what complete reported.
CREATE TABLE run_files (
  run_id          TEXT NOT NULL REFERENCES sync_runs(id) ON DELETE CASCADE,
  path            TEXT COLLATE "C" NOT NULL,
  planned_reason  TEXT NOT NULL DEFAULT '',      -- new | changed | missing; '' = not planned
  size            BIGINT NOT NULL DEFAULT 0,     -- bytes
  sha256          TEXT NOT NULL DEFAULT '',      -- planned hash
  result          TEXT NOT NULL DEFAULT '',      -- '' pending | uploaded | failed | skipped
  error           TEXT NOT NULL DEFAULT '',
  kept_version    TEXT NOT NULL DEFAULT '',      -- storage key of the previous version kept aside
  PRIMARY KEY (run_id, path)
);

-- Commands for agents ("sync now"); delivered by heartbeat or long-poll.
CREATE TABLE commands (
  id          BIGSERIAL PRIMARY KEY,
  runner_id   BIGINT NOT NULL REFERENCES runners(id) ON DELETE CASCADE,
  type        TEXT NOT NULL,                     -- sync
  job_name    TEXT NOT NULL DEFAULT '',
  run_id      TEXT NOT NULL DEFAULT '',          -- correlation id the run will carry
  state       TEXT NOT NULL CHECK (state IN ('pending','delivered')),
  created_at  BIGINT NOT NULL                    -- Unix ms
);
CREATE INDEX commands_pending ON commands(runner_id, state);

-- API tokens of operators (CLI). Only hashes are stored.
CREATE TABLE admin_tokens (
  id          BIGSERIAL PRIMARY KEY,
  name        TEXT NOT NULL,
  role        TEXT NOT NULL CHECK (role IN ('admin','viewer')),
  token_hash  TEXT NOT NULL UNIQUE,              -- SHA-256 hex
  created_at  BIGINT NOT NULL,                   -- Unix ms
  revoked_at  BIGINT NOT NULL DEFAULT 0          -- Unix ms, 0 = active
);
