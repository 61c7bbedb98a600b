// The one path-validation function: no bytes crash it, and a path it accepts really is confined
// (no "..", ".", empty or absolute component, no NUL, backslash or control character, bounded).
// NFC: normalizing any bytes does not crash, is idempotent, and what it returns IsNfc.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/paths.h"
#include "common/unicode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view path(reinterpret_cast<const char*>(data), size);
  if (std::optional<std::string> nfc = ds::ToNfc(path)) {
    if (!ds::IsNfc(*nfc) || ds::ToNfc(*nfc) != nfc) __builtin_trap();
  } else if (ds::IsNfc(path)) {
    __builtin_trap();  // not UTF-8, so not NFC
  }
  if (!ds::ValidateRelativePath(path).ok()) return 0;
  if (ds::ValidateIndexPath(path).ok() != ds::IsNfc(path)) __builtin_trap();
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
