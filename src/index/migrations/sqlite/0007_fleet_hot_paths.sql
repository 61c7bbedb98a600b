-- Version 7 (issue 7, a fleet of 10,000 agents): cheaper runner rows.

-- Runner rows say whether a registration waits on the runner; with every enrollment of a large
-- fleet long delivered, only the few pending ones are indexed, so that question costs nothing
-- whether one runner is read (every heartbeat) or all of them (janitor, alerts, dashboard).
-- (PostgreSQL's version also leaves free room in runners' pages; SQLite has no such setting.)
CREATE INDEX enrollments_pending ON enrollments(runner_id) WHERE status = 'pending';
