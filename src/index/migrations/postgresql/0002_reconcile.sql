-- Version 2: background reconciles (rebuild a job's index rows from storage).
-- Mirrors migrations/sqlite/0002_reconcile.sql.

-- One reconcile of one job. At most one queued or running per job (the partial unique index).
CREATE TABLE reconciles (
  id              TEXT PRIMARY KEY,                -- UUID
  job_id          BIGINT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  state           TEXT NOT NULL CHECK (state IN ('queued','running','succeeded','failed')),
  verify          BOOLEAN NOT NULL DEFAULT FALSE,  -- re-hash every object
  claimed_by      TEXT NOT NULL DEFAULT '',        -- worker (server instance) running it
  requested_at    BIGINT NOT NULL,                 -- Unix ms
  started_at      BIGINT NOT NULL DEFAULT 0,       -- Unix ms
  updated_at      BIGINT NOT NULL DEFAULT 0,       -- Unix ms, last progress write
  finished_at     BIGINT NOT NULL DEFAULT 0,       -- Unix ms
  files_expected  BIGINT NOT NULL DEFAULT 0,       -- estimate for the ETA
  files_seen      BIGINT NOT NULL DEFAULT 0,
  bytes_seen      BIGINT NOT NULL DEFAULT 0,       -- bytes
  rows_added      BIGINT NOT NULL DEFAULT 0,
  rows_removed    BIGINT NOT NULL DEFAULT 0,
  rows_updated    BIGINT NOT NULL DEFAULT 0,
  rows_unchanged  BIGINT NOT NULL DEFAULT 0,
  mismatches      BIGINT NOT NULL DEFAULT 0,       -- checksum mismatches found
  temp_files      BIGINT NOT NULL DEFAULT 0,       -- leftovers of interrupted uploads
  report          TEXT NOT NULL DEFAULT '{}',      -- JSON: bounded lists of mismatches, temp files
  error           TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX reconciles_one_active ON reconciles(job_id) WHERE state IN ('queued','running');
CREATE INDEX reconciles_state ON reconciles(state, requested_at);
-- Newest-first run lists; seq breaks started_at ties as SQLite's rowid does.
CREATE INDEX sync_runs_started ON sync_runs(started_at, seq);

-- Machine facts of each registration, so a replacement request can be bound to an existing runner.
ALTER TABLE enrollments ADD COLUMN hostname TEXT NOT NULL DEFAULT '';
ALTER TABLE enrollments ADD COLUMN os TEXT NOT NULL DEFAULT '';
ALTER TABLE enrollments ADD COLUMN machine_id TEXT NOT NULL DEFAULT '';
ALTER TABLE enrollments ADD COLUMN agent_version TEXT NOT NULL DEFAULT '';
