#include "common/paths.h"

#include "absl/strings/str_cat.h"
#include "common/unicode.h"

namespace ds {
namespace {

// Returns the length of the UTF-8 sequence starting at s[i], or 0 if it is invalid (overlong
// encodings, surrogates and code points above U+10FFFF are invalid).
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)) return 0;
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

}  // namespace

absl::Status ValidateRelativePath(std::string_view path) {
  if (path.empty()) return absl::InvalidArgumentError("path is empty");
  if (path.size() > kMaxPathBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("path is longer than ", kMaxPathBytes, " bytes"));
  }
  if (path.front() == '/') return absl::InvalidArgumentError("path is absolute");
  if (path.size() >= 2 && path[1] == ':') {
    return absl::InvalidArgumentError("path starts with a drive letter");
  }
  for (size_t i = 0; i < path.size();) {
    auto c = static_cast<unsigned char>(path[i]);
    if (c == 0) return absl::InvalidArgumentError("path contains NUL");
    if (c < 0x20 || c == 0x7F) return absl::InvalidArgumentError("path contains a control character");
    if (c == '\\') return absl::InvalidArgumentError("path contains a backslash");
    size_t n = Utf8SequenceLength(path, i);
    if (n == 0) return absl::InvalidArgumentError("path is not valid UTF-8");
    i += n;
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view comp = path.substr(start, end - start);
    if (comp.empty()) return absl::InvalidArgumentError("path has an empty component");
    if (comp == ".") return absl::InvalidArgumentError("path has a '.' component");
    if (comp == "..") return absl::InvalidArgumentError("path has a '..' component");
    if (comp.size() > kMaxComponentBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("path component is longer than ", kMaxComponentBytes, " bytes"));
    }
    start = end + 1;
  }
  return absl::OkStatus();
}

absl::Status ValidateIndexPath(std::string_view path) {
  DS_RETURN_IF_ERROR(ValidateRelativePath(path));
  if (!IsNfc(path)) {
    return absl::InvalidArgumentError("path is not in Unicode NFC (agents normalize names as they scan)");
  }
  return absl::OkStatus();
}

std::string JoinKey(std::string_view prefix, std::string_view path) {
  if (prefix.empty()) return std::string(path);
  if (path.empty()) return std::string(prefix);
  return absl::StrCat(std::string(prefix), "/", std::string(path));
}

}  // namespace ds
