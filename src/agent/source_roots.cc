#include "agent/source_roots.h"

#include <algorithm>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "platform/error.h"

namespace ds {
namespace {

// True when `path` is `root` or below it (both absolute and normal, without a trailing slash).
bool IsAtOrBelow(const std::filesystem::path& path, const std::filesystem::path& root) {
  auto [r, p] = std::mismatch(root.begin(), root.end(), path.begin(), path.end());
  return r == root.end() || (std::next(r) == root.end() && r->empty());  // "/a/" ends in ""
}

}  // namespace

absl::StatusOr<std::filesystem::path> SourceRoots::Admit(const std::string& source) const {
  std::error_code ec;
  const std::filesystem::path real = std::filesystem::canonical(source, ec);
  if (ec) return platform::ErrnoToStatus(ec.value(), absl::StrCat("source ", source));
  for (const std::string& root : roots_) {
    // A root that does not exist yet (an instrument folder made later) is taken as written.
    const std::filesystem::path r = std::filesystem::weakly_canonical(root, ec);
    if (!ec && r.is_absolute() && IsAtOrBelow(real, r)) return real;
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "source ", source, " is not under a folder this agent may read (",
      roots_.empty() ? std::string("it allows none") : absl::StrCat("it allows ", absl::StrJoin(roots_, ", ")),
      "); allow it in the agent's own config: --allow-source ", source));
}

}  // namespace ds
