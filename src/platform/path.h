// Paths: UTF-8 everywhere inside DataSync; the native encoding only at the OS boundary.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace ds::platform {

// A native path from UTF-8 (POSIX: the bytes as they are; Windows: UTF-16 via u8path).
[[nodiscard]] std::filesystem::path PathFromUtf8(std::string_view utf8);

// UTF-8 of a native path (POSIX: the bytes as they are, even when they are not valid UTF-8;
// Windows: from UTF-16, unpaired surrogates replaced).
[[nodiscard]] std::string PathToUtf8(const std::filesystem::path& path);

// The absolute path of `path` with every symbolic link (reparse point) resolved and no "." or
// ".." left (realpath / GetFinalPathNameByHandleW). Errors: NotFound (missing or dangling),
// others from the OS (ErrnoToStatus).
[[nodiscard]] absl::StatusOr<std::filesystem::path> RealPath(const std::filesystem::path& path);

}  // namespace ds::platform
