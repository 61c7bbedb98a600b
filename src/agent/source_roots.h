// The folders an agent may read: its own config's --allow-source roots, never the server's word.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "common/status.h"

namespace ds {

// Job sources come from the server. A compromised server (or a man-in-the-middle where TLS is not
// verified) could name /etc or another user's home; the agent reads a source only when its real
// path (symlinks resolved) is one of `roots` or lies below one of them, component by component
// (/data does not admit /data2). No roots admit nothing.
class SourceRoots {
 public:
  explicit SourceRoots(std::vector<std::string> roots) : roots_(std::move(roots)) {}

  // The source's real path when admitted. Errors: NotFound / PermissionDenied when the source
  // cannot be resolved; PermissionDenied (naming the flag) when it lies outside every root.
  [[nodiscard]] absl::StatusOr<std::filesystem::path> Admit(const std::string& source) const;

  const std::vector<std::string>& roots() const { return roots_; }

 private:
  std::vector<std::string> roots_;
};

}  // namespace ds
