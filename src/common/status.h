// Project-wide error handling: absl::Status / absl::StatusOr plus the two propagation macros.
// Every function that can fail returns one of these; exceptions from libraries are converted at
// the adapter edge and never cross a module boundary.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define DS_STATUS_CONCAT_INNER(a, b) a##b
#define DS_STATUS_CONCAT(a, b) DS_STATUS_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define DS_RETURN_IF_ERROR(expr)               \
  do {                                         \
    ::absl::Status ds_status_ = (expr);        \
    if (!ds_status_.ok()) return ds_status_;   \
  } while (0)

// `lhs = *expr` when `expr` (an absl::StatusOr) is OK; otherwise returns its status.
#define DS_ASSIGN_OR_RETURN(lhs, expr) \
  DS_ASSIGN_OR_RETURN_IMPL(DS_STATUS_CONCAT(ds_statusor_, __LINE__), lhs, expr)
#define DS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(*tmp)

// NOTE: Debian's abseil is built with its own absl::string_view (not std::string_view), so
// absl::StrCat and friends do not accept std::string_view: wrap such arguments in std::string().
