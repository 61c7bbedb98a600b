// Test-only helpers every index test binary shares (library ds_index_testing): status
// assertions, temp dirs, a free port, and the one list of the schema's tables.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

// ASSERT_OK(status expression); ASSERT_OK_AND_ASSIGN(lhs, statusor expression).
#define ASSERT_OK(expr)                                   \
  do {                                                    \
    const absl::Status ds_test_status_ = (expr);          \
    ASSERT_TRUE(ds_test_status_.ok()) << ds_test_status_; \
  } while (0)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL(DS_STATUS_CONCAT(ds_test_statusor_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  ASSERT_TRUE(tmp.ok()) << tmp.status();          \
  lhs = std::move(*tmp)

namespace ds {

// A fresh directory under testing::TempDir() named `stem`.XXXXXX; empty path on failure.
std::filesystem::path MakeTestTempDir(const std::string& stem);

// A TCP port on 127.0.0.1 that was free a moment ago (nothing listens on it); 0 on failure.
int FreeLocalPort();

// Every table of the current schema except schema_migrations, sorted: both backends must have
// exactly these (migrations tests) and migrate-index copies each of them.
const std::vector<std::string>& ExpectedIndexTables();

}  // namespace ds
