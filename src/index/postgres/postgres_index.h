// The PostgreSQL implementation of StateIndex (several servers, one database). Only index.cc
// includes this.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "common/status.h"
#include "index/state_index.h"

namespace ds {

struct PostgresPoolOptions {
  size_t max_connections = 8;  // opened lazily, kept open while healthy
  // How long a call waits for a free connection before failing with Unavailable.
  std::chrono::milliseconds acquire_timeout{5000};
  // Bounds each connection attempt (libpq connect_timeout, whole seconds, at least 2) unless the
  // connection string sets its own.
  std::chrono::seconds connect_timeout{5};
  // Bounds waits for row locks held by other sessions (SET lock_timeout): like SQLite's busy
  // timeout, a longer wait fails with Unavailable.
  std::chrono::milliseconds lock_timeout{5000};
};

// Returns an index over the PostgreSQL database named by `conninfo`, a libpq connection string
// (URI "postgresql://user:password@host:port/db?param=value" or "postgres://...", or
// "host=... dbname=..." key/value form). Does not connect (connections are opened lazily, up to
// options.max_connections, by the first calls that need them) and does not migrate.
// InvalidArgument when `conninfo` does not parse. Messages never contain the password.
// Thread-safe: the returned index may be used from any number of threads; a call blocks while
// all connections are busy, for at most options.acquire_timeout.
[[nodiscard]] absl::StatusOr<std::unique_ptr<StateIndex>> OpenPostgresIndex(
    const std::string& conninfo, const PostgresPoolOptions& options = {});

}  // namespace ds
