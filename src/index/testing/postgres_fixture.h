// Test-only: a throwaway PostgreSQL 15 server for the index tests (library ds_index_testing).
//
// One cluster per test binary, started on first use: initdb + pg_ctl (as the `postgres` user via
// runuser when running as root) in a fresh directory under /tmp, listening on 127.0.0.1:<free
// port> and on a unix socket in that directory, with fsync off. A gtest Environment stops it
// (pg_ctl -m fast) and removes the directory when the binary's tests are done (an atexit handler
// does the same if the Environment's TearDown never ran). Nothing on the machine outside that
// directory is used or changed.
//
// Thread-safety: both functions may be called from any thread.
#pragma once

#include <string>

#include "common/status.h"

namespace ds {

// A fresh, empty database on the test cluster. Its default collation is ICU "en-US" (not byte
// order), so queries that must order byte-wise have to say so, as they must on a real server.
struct TestPostgresDatabase {
  std::string name;        // t_<n>
  std::string url;         // postgresql://test@127.0.0.1:PORT/t_<n> (TCP)
  std::string socket_url;  // postgresql:///t_<n>?host=DIR&port=PORT&user=test (unix socket)
};

// Creates a fresh database, starting the cluster first if this binary has none yet.
// FailedPrecondition (naming the missing path) when /usr/lib/postgresql/15/bin/initdb is not
// installed: tests must then fail, not skip. Internal (with the server's log) when the cluster
// does not start.
[[nodiscard]] absl::StatusOr<TestPostgresDatabase> CreateTestPostgresDatabase();

// Runs `sql` (one or more statements, no results) as superuser `test` on database `dbname` of
// the running test cluster, e.g. to forge a future schema version or to kill connections.
// REQUIRES: CreateTestPostgresDatabase() succeeded in this process.
[[nodiscard]] absl::Status ExecTestPostgresSql(const std::string& dbname, const std::string& sql);

// First column of the first row of `sql` on `dbname`, as text ("" for NULL or no row).
// REQUIRES: as ExecTestPostgresSql.
[[nodiscard]] absl::StatusOr<std::string> QueryTestPostgresValue(const std::string& dbname,
                                                                 const std::string& sql);

}  // namespace ds
