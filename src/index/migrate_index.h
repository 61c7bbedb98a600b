// Moving a whole state index from SQLite to PostgreSQL (`datasync-server migrate-index`), for a lab
// that outgrows one server. Every table is copied with its ids, run ids, hashes and timestamps
// unchanged, so agents, tokens and history carry on as if nothing happened.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"

namespace ds {

struct MigrateIndexOptions {
  size_t batch_rows = 5'000;  // rows per INSERT into the target
  // Called after every batch (and once per empty table) with the rows of `table` copied so far
  // and its total. Runs on the calling thread.
  std::function<void(const std::string& table, int64_t copied, int64_t total)> progress;
};

struct MigrateIndexReport {
  int schema_version = 0;
  // Tables in the order they were copied (parents before children), with their row counts,
  // verified equal in source and target.
  std::vector<std::pair<std::string, int64_t>> tables;
};

// Copies the SQLite index `from_url` ("sqlite:PATH") into the PostgreSQL database `to_url`
// ("postgresql://..."), which must hold no DataSync rows: it is migrated to the current schema
// first, then filled in one transaction, table by table in foreign-key order, in batches of
// options.batch_rows rows; identity sequences are moved past the copied ids; the row count of
// every table is compared before the commit, so the target ends up either a complete copy or
// untouched (still empty).
//
// The source is read in one read transaction (a consistent snapshot) and never written. Rows a
// server writes to the source after that snapshot are not copied, so stop the servers first.
// schema_migrations is not copied: the target records its own migrations.
//
// Errors: InvalidArgument (URL forms), NotFound (no source file), FailedPrecondition (target not
// empty; source schema not the one this binary writes; tables or columns that differ between the
// dialects), Unavailable (target unreachable), Internal (a row PostgreSQL refuses, a count that
// does not match). Messages never contain the target's password.
[[nodiscard]] absl::StatusOr<MigrateIndexReport> MigrateIndex(
    const std::string& from_url, const std::string& to_url,
    const MigrateIndexOptions& options = {});

}  // namespace ds
