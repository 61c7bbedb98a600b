// The one path-validation function. Every path that crosses the wire (manifest entries, result
// paths, destination prefixes) goes through ValidateRelativePath before it is used.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace ds {

inline constexpr size_t kMaxPathBytes = 4096;      // whole relative path, bytes
inline constexpr size_t kMaxComponentBytes = 255;  // one path component, bytes

// OK iff `path` is a normalised relative path confined to its root: valid UTF-8, '/'-separated,
// no empty, "." or ".." components, no leading or trailing '/', no NUL or control characters,
// no backslash, no drive letter, and within the length limits. Returns InvalidArgument naming
// the first problem otherwise.
[[nodiscard]] absl::Status ValidateRelativePath(std::string_view path);

// ValidateRelativePath, and in Unicode NFC: the form in which a path enters the index (manifest
// entries, run results). Agents normalize names as they scan, so that the NFC and NFD spellings
// of one name never become two rows; storage operations take any valid relative path (objects
// written under other spellings stay readable, listable and scrubbable).
[[nodiscard]] absl::Status ValidateIndexPath(std::string_view path);

// Joins a validated prefix (may be empty) and a validated relative path with '/'.
std::string JoinKey(std::string_view prefix, std::string_view path);

}  // namespace ds
