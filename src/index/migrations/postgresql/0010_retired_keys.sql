-- Version 10 (issue 17): a thief holding a runner's key no longer keeps the runner through a key
-- rotation. Once a rotated key is promoted, the key it replaced is kept as a hash; that key used
-- again (past a short grace for requests already in flight) means two parties held it, and the
-- runner is quarantined: both keys are refused until an operator binds a re-enrolled PC
-- (runners replace) or revokes it. Runners read as status 'quarantined' while quarantined_at > 0.
ALTER TABLE runners ADD COLUMN retired_key_hash TEXT;                              -- SHA-256 hex
ALTER TABLE runners ADD COLUMN key_retired_at BIGINT NOT NULL DEFAULT 0;   -- Unix ms
ALTER TABLE runners ADD COLUMN quarantined_at BIGINT NOT NULL DEFAULT 0;   -- Unix ms, 0 = not
CREATE INDEX runners_retired_key ON runners(retired_key_hash) WHERE retired_key_hash IS NOT NULL;
