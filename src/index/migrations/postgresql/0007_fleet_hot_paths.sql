-- Version 7 (issue 7, a fleet of 10,000 agents on PostgreSQL): cheaper runner rows.

-- Runner rows say whether a registration waits on the runner; with every enrollment of a large
-- fleet long delivered, only the few pending ones are indexed, so that question costs nothing
-- whether one runner is read (every heartbeat) or all of them (janitor, alerts, dashboard).
CREATE INDEX enrollments_pending ON enrollments(runner_id) WHERE status = 'pending';

-- Every heartbeat rewrites its runner's row: free room in each page lets PostgreSQL keep the new
-- version on the same page without touching the table's indexes (a HOT update). Applies to pages
-- written from now on; VACUUM FULL runners rewrites the existing ones.
ALTER TABLE runners SET (fillfactor = 70);
