// The SQLite implementation of StateIndex (the embedded default). Only index.cc includes this.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "index/state_index.h"

namespace ds {

// Opens (creating if missing) the SQLite database file at `path` in WAL mode with foreign keys
// on and a 5 s busy timeout. Does not migrate. REQUIRES: the parent directory of `path` exists.
// Unavailable when the file cannot be opened or is locked; Internal for other SQLite errors.
[[nodiscard]] absl::StatusOr<std::unique_ptr<StateIndex>> OpenSqliteIndex(const std::string& path);

}  // namespace ds
