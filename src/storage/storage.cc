#include "storage/storage.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "storage/dir/dir_storage.h"

namespace ds {

absl::StatusOr<StorageUrl> ParseStorageUrl(std::string_view text) {
  StorageUrl url;
  url.text = std::string(text);
  if (text.empty()) return absl::InvalidArgumentError("storage URL is empty");
  if (text.rfind("file://", 0) == 0) {
    std::string_view p = text.substr(7);
    if (p.empty() || p.front() != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("storage URL '", std::string(text), "' must be file:///ABSOLUTE/PATH"));
    }
    url.scheme = "file";
    url.path = std::filesystem::path(p).lexically_normal().string();
  } else if (text.find("://") != std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported storage URL scheme in '", std::string(text),
                                                   "' (supported: file://)"));
  } else {
    url.scheme = "file";
    url.path = std::filesystem::absolute(std::filesystem::path(text)).lexically_normal().string();
  }
  while (url.path.size() > 1 && url.path.back() == '/') url.path.pop_back();
  url.text = absl::StrCat("file://", url.path);
  return url;
}

absl::StatusOr<std::unique_ptr<Storage>> OpenStorage(const StorageUrl& url) {
  if (url.scheme == "file") return OpenDirStorage(url.path);
  return absl::InvalidArgumentError(absl::StrCat("unsupported storage scheme '", url.scheme, "'"));
}

}  // namespace ds
