// The one path-validation function: no bytes crash it, and a path it accepts really is confined
// (no "..", ".", empty or absolute component, no NUL, backslash or control character, bounded).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/str_split.h"
#include "common/paths.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view path(reinterpret_cast<const char*>(data), size);
  if (!ds::ValidateRelativePath(path).ok()) return 0;
  if (path.empty() || path.size() > ds::kMaxPathBytes) __builtin_trap();
  for (std::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == ".." || part.size() > ds::kMaxComponentBytes) {
      __builtin_trap();
    }
  }
  for (unsigned char c : path) {
    if (c < 0x20 || c == 0x7f || c == '\\') __builtin_trap();
  }
  // A valid path joined under a valid prefix is valid again.
  if (!ds::ValidateRelativePath(ds::JoinKey("prefix", path)).ok() &&
      path.size() + 7 <= ds::kMaxPathBytes) {
    __builtin_trap();
  }
  return 0;
}
