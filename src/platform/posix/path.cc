#include "platform/path.h"

#include <stdlib.h>

#include "platform/posix/internal.h"

namespace ds::platform {

std::filesystem::path PathFromUtf8(std::string_view utf8) {
  return std::filesystem::path(std::string(utf8));
}

std::string PathToUtf8(const std::filesystem::path& path) { return path.native(); }

absl::StatusOr<std::filesystem::path> RealPath(const std::filesystem::path& path) {
  char* real = ::realpath(path.c_str(), nullptr);
  if (real == nullptr) return internal::Errno("resolve", path.native());
  std::filesystem::path out(real);
  ::free(real);
  return out;
}

}  // namespace ds::platform
