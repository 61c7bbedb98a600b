-- Version 9 (issue 17): a second registration under a pending runner's name no longer supersedes
-- the first; the operator sees every pending enrollment and chooses one. Each enrollment keeps
-- where it came from (hostname, os, machine id and agent version are there since version 2).
ALTER TABLE enrollments ADD COLUMN address TEXT NOT NULL DEFAULT '';  -- caller's address as the server saw it (trusted-proxy aware)
