-- Version 3: scale-out. Several server instances share one index; these tables let them divide
-- background work and hand agents' long-polls over between them.

-- A named, expiring claim on a piece of background work ("janitor"): one instance holds it and
-- renews it while alive; when it stops renewing, another takes it once expires_at has passed.
CREATE TABLE leases (
  name         TEXT PRIMARY KEY,                 -- what is claimed, e.g. 'janitor'
  holder       TEXT NOT NULL,                    -- instance id (host:pid:random)
  acquired_at  INTEGER NOT NULL,                 -- Unix ms, when this holder took it
  expires_at   INTEGER NOT NULL                  -- Unix ms, free for anyone after this
);

-- The newest long-poll (GET /agent/commands?wait=) of each runner, whichever instance holds it.
-- An older long-poll of the same runner still parked on another instance belongs to a connection
-- the agent has given up on: it is answered empty instead of being handed the next command.
CREATE TABLE long_polls (
  runner_id   INTEGER PRIMARY KEY REFERENCES runners(id) ON DELETE CASCADE,
  poll_id     TEXT NOT NULL,                     -- instance id + sequence number
  started_at  INTEGER NOT NULL                   -- Unix ms
);
