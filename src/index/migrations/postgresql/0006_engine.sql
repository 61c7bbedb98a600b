-- Version 6 (issue 7, sync engine): the no-op cycle. An agent sends the digest of its job's
-- manifest first; when it equals the digest of the last run that fully succeeded and nothing
-- has changed the job's synced files since, the server answers "nothing to do" without the list.

-- The manifest digest of each job's last fully succeeded run that sent one. Any change to the
-- job's synced_files (results of any run, reconcile, a redefined job) deletes the row.
CREATE TABLE job_manifests (
  job_id      BIGINT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
  digest      TEXT NOT NULL,                 -- SHA-256 hex over the sorted (path, size, mtime_ns, sha256) manifest
  run_id      TEXT NOT NULL,                 -- the run that established it
  updated_at  BIGINT NOT NULL                 -- Unix ms
);

-- The digest the agent sent with the run's compare ('' = none); becomes the job's on success.
ALTER TABLE sync_runs ADD COLUMN manifest_digest TEXT NOT NULL DEFAULT '';
