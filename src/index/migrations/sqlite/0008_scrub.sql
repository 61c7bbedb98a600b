-- Version 8 (issue 16): the continuous storage scrub.

-- One scrub of one job: storage listed against the index, findings healed. At most one queued or
-- running per job (the partial unique index).
CREATE TABLE scrubs (
  id                TEXT PRIMARY KEY,                -- UUID
  job_id            INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  state             TEXT NOT NULL CHECK (state IN ('queued','running','succeeded','failed')),
  trigger_kind      TEXT NOT NULL CHECK (trigger_kind IN ('schedule','operator')),
  rehash_fraction   REAL NOT NULL DEFAULT 0,         -- 0..1: share of objects re-hashed
  claimed_by        TEXT NOT NULL DEFAULT '',        -- worker (server instance) running it
  requested_at      INTEGER NOT NULL,                -- Unix ms
  started_at        INTEGER NOT NULL DEFAULT 0,      -- Unix ms
  updated_at        INTEGER NOT NULL DEFAULT 0,      -- Unix ms, last progress write
  finished_at       INTEGER NOT NULL DEFAULT 0,      -- Unix ms
  objects_listed    INTEGER NOT NULL DEFAULT 0,
  bytes_listed      INTEGER NOT NULL DEFAULT 0,      -- bytes
  objects_rehashed  INTEGER NOT NULL DEFAULT 0,
  missing           INTEGER NOT NULL DEFAULT 0,      -- index rows whose object storage lost
  extra             INTEGER NOT NULL DEFAULT 0,      -- objects the index lacked
  size_mismatches   INTEGER NOT NULL DEFAULT 0,
  hash_mismatches   INTEGER NOT NULL DEFAULT 0,
  temp_files        INTEGER NOT NULL DEFAULT 0,      -- temp debris seen
  healed            INTEGER NOT NULL DEFAULT 0,      -- findings acted on
  unhealed          INTEGER NOT NULL DEFAULT 0,      -- findings that could not be healed
  report            TEXT NOT NULL DEFAULT '{}',      -- JSON: bounded lists of findings
  error             TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX scrubs_one_active ON scrubs(job_id) WHERE state IN ('queued','running');
CREATE INDEX scrubs_state ON scrubs(state, requested_at);
CREATE INDEX scrubs_job ON scrubs(job_id, requested_at);

-- Files a scrub found lost or corrupted in storage whose index row it removed, so that the
-- runner re-uploads them. A `complete` that uploads the path clears its row (healed); a row still
-- here after the runner completed a run is reported as unhealed by the next scrub.
CREATE TABLE scrub_lost (
  job_id          INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  path            TEXT NOT NULL,
  size            INTEGER NOT NULL,                -- bytes, of the removed row
  sha256          TEXT NOT NULL,                   -- of the removed row
  kind            TEXT NOT NULL,                   -- missing | size | hash
  detected_at     INTEGER NOT NULL,                -- Unix ms
  scrub_id        TEXT NOT NULL,                   -- the scrub that found it
  PRIMARY KEY (job_id, path)
);

INSERT INTO alert_rules (name, kind, severity, params, created_at, updated_at) VALUES
  ('storage-drift', 'storage_drift', 'critical', '{}', 0, 0);
