// The one path-validation function: no bytes crash it, and a path it accepts really is confined
// (no "..", ".", empty or absolute component, no NUL, backslash or control character, bounded).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/paths.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view path(reinterpret_cast<const char*>(data), size);
  if (!ds::ValidateRelativePath(path).ok()) return 0;
  if (path.empty() || path.size() > ds::kMaxPathBytes) __builtin_trap();
  for (size_t start = 0; start <= path.size();) {
    const size_t end = std::min(path.find('/', start), path.size());
    const std::string_view part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == ".." || part.size() > ds::kMaxComponentBytes) {
      __builtin_trap();
    }
    start = end + 1;
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
