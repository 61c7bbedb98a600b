-- Version 5: observability. Agent logs shipped to the server, alert rules and their history,
-- notification channels with an outbox, and runner health from heartbeats.

-- Log records shipped by agents (kept 90 days by default; the janitor prunes older ones).
CREATE TABLE agent_logs (
  id              INTEGER PRIMARY KEY,
  runner_id       INTEGER NOT NULL REFERENCES runners(id) ON DELETE CASCADE,
  seq             INTEGER NOT NULL,              -- agent-side sequence number (de-duplication)
  time_ms         INTEGER NOT NULL,              -- Unix ms, by the agent's clock
  level           TEXT NOT NULL CHECK (level IN ('debug','info','warn','error')),
  message         TEXT NOT NULL,
  correlation_id  TEXT NOT NULL DEFAULT '',      -- run id when logged inside a run
  fields          TEXT NOT NULL DEFAULT '{}',    -- JSON object
  received_at     INTEGER NOT NULL,              -- Unix ms, by the server's clock
  UNIQUE (runner_id, seq)
);
CREATE INDEX agent_logs_time ON agent_logs(time_ms);

-- What the server watches for. kind decides the check, params (JSON) its thresholds; scope
-- narrows it to one runner, group or job ('' = everything).
CREATE TABLE alert_rules (
  id          INTEGER PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  kind        TEXT NOT NULL,                     -- runner_offline | job_no_sync | ...
  severity    TEXT NOT NULL CHECK (severity IN ('info','warning','critical')),
  scope_kind  TEXT NOT NULL DEFAULT '' CHECK (scope_kind IN ('','runner','group','job')),
  scope       TEXT NOT NULL DEFAULT '',          -- runner name, group name or RUNNER/JOB
  params      TEXT NOT NULL DEFAULT '{}',        -- JSON object of thresholds
  enabled     INTEGER NOT NULL DEFAULT 1,        -- boolean
  created_at  INTEGER NOT NULL,                  -- Unix ms
  updated_at  INTEGER NOT NULL                   -- Unix ms
);

-- Alert history: one row per firing of a rule for one subject. At most one active (unresolved)
-- alert per rule and subject (the partial unique index).
CREATE TABLE alerts (
  id               INTEGER PRIMARY KEY,
  rule_id          INTEGER NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
  subject          TEXT NOT NULL,                -- what it is about: runner, RUNNER/JOB, RUNNER/JOB:PATH
  message          TEXT NOT NULL,
  details          TEXT NOT NULL DEFAULT '{}',   -- JSON object
  fired_at         INTEGER NOT NULL,             -- Unix ms
  resolved_at      INTEGER NOT NULL DEFAULT 0,   -- Unix ms, 0 = active
  acknowledged_by  TEXT NOT NULL DEFAULT '',
  acknowledged_at  INTEGER NOT NULL DEFAULT 0    -- Unix ms, 0 = not acknowledged
);
CREATE UNIQUE INDEX alerts_one_active ON alerts(rule_id, subject) WHERE resolved_at = 0;

-- Where alert transitions are sent.
CREATE TABLE notification_channels (
  id               INTEGER PRIMARY KEY,
  name             TEXT NOT NULL UNIQUE,
  kind             TEXT NOT NULL CHECK (kind IN ('webhook','email')),
  config           TEXT NOT NULL DEFAULT '{}',   -- JSON: url, format | smtp_url, from, to, ...
  min_severity     TEXT NOT NULL DEFAULT 'info' CHECK (min_severity IN ('info','warning','critical')),
  enabled          INTEGER NOT NULL DEFAULT 1,   -- boolean
  created_at       INTEGER NOT NULL,             -- Unix ms
  last_success_at  INTEGER NOT NULL DEFAULT 0,   -- Unix ms
  last_error       TEXT NOT NULL DEFAULT '',
  last_error_at    INTEGER NOT NULL DEFAULT 0    -- Unix ms
);

-- The outbox: one row per alert transition and channel, so nothing is sent twice.
CREATE TABLE notification_deliveries (
  id               INTEGER PRIMARY KEY,
  alert_id         INTEGER NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
  transition       TEXT NOT NULL CHECK (transition IN ('fired','resolved')),
  channel_id       INTEGER NOT NULL REFERENCES notification_channels(id) ON DELETE CASCADE,
  attempts         INTEGER NOT NULL DEFAULT 0,
  next_attempt_at  INTEGER NOT NULL,             -- Unix ms
  delivered_at     INTEGER NOT NULL DEFAULT 0,   -- Unix ms, 0 = not yet
  last_error       TEXT NOT NULL DEFAULT '',
  created_at       INTEGER NOT NULL,             -- Unix ms
  UNIQUE (alert_id, transition, channel_id)
);
CREATE INDEX notification_deliveries_due ON notification_deliveries(delivered_at, next_attempt_at);

-- Runner health as last reported by its heartbeat: JSON {disk_free:[{job,path,free_bytes,
-- total_bytes}], backlog_files, backlog_bytes (bytes), current_run:{...}|null,
-- clock_offset_ms (server minus agent clock, ms), at_ms (Unix ms)}.
ALTER TABLE runners ADD COLUMN health TEXT NOT NULL DEFAULT '{}';

-- Default rules (thresholds are params; edit or disable them, they are not recreated).
INSERT INTO alert_rules (name, kind, severity, params, created_at, updated_at) VALUES
  ('runner-offline',        'runner_offline',          'warning',  '{"minutes":15}',   0, 0),
  ('job-not-syncing',       'job_no_sync',             'warning',  '{"hours":24}',     0, 0),
  ('failed-runs',           'consecutive_failed_runs', 'warning',  '{"count":3}',      0, 0),
  ('storage-failing',       'storage_failing',         'critical', '{}',               0, 0),
  ('index-size',            'index_size',              'warning',  '{"percent":80}',   0, 0),
  ('file-changed',          'file_changed_after_sync', 'critical', '{}',               0, 0),
  ('pending-registration',  'pending_registration',    'info',     '{"minutes":60}',   0, 0),
  ('clock-skew',            'clock_skew',              'warning',  '{"seconds":120}',  0, 0),
  ('disk-free',             'disk_free_low',           'warning',  '{"percent":10}',   0, 0),
  ('channel-failing',       'channel_failing',         'warning',  '{}',               0, 0);
