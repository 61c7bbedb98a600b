// Migrations compiled into the binary from migrations/<dialect>/NNNN_name.sql.
#pragma once

#include <string_view>
#include <vector>

namespace ds {

struct Migration {
  int version;             // NNNN from the file name; consecutive from 1
  std::string_view name;   // file name
  std::string_view sql;    // whole file
};

// migrations/sqlite/*.sql and migrations/postgresql/*.sql, in version order.
extern const std::vector<Migration> kSqliteMigrations;
extern const std::vector<Migration> kPostgresMigrations;

}  // namespace ds
