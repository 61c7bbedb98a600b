// OpenStateIndex: the one place that knows every index dialect and maps a URL scheme onto it.
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "index/sqlite/sqlite_index.h"
#include "index/state_index.h"

namespace ds {
namespace {

using IndexOpener = absl::StatusOr<std::unique_ptr<StateIndex>> (*)(const std::string& url);

// "sqlite:PATH": creates PATH's directory, then opens (or creates) the database file.
absl::StatusOr<std::unique_ptr<StateIndex>> OpenSqliteUrl(const std::string& url) {
  const std::string path = url.substr(url.find(':') + 1);
  if (path.empty()) return absl::InvalidArgumentError("index URL \"sqlite:\" has no path");
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return ErrnoStatus(ec.value(), absl::StrCat("creating index directory ", dir.string()));
  }
  return OpenSqliteIndex(path);
}

struct Dialect {
  std::string_view scheme;
  IndexOpener open;  // receives the whole URL
};

// A new dialect (PostgreSQL: "postgresql", "postgres") is one more entry here.
constexpr Dialect kDialects[] = {
    {"sqlite", &OpenSqliteUrl},
};

}  // namespace

absl::StatusOr<std::unique_ptr<StateIndex>> OpenStateIndex(const std::string& url) {
  const size_t colon = url.find(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError("index URL has no scheme: expected sqlite:PATH");
  }
  const std::string scheme = url.substr(0, colon);
  for (const Dialect& dialect : kDialects) {
    if (scheme == dialect.scheme) return dialect.open(url);
  }
  // Only the scheme is quoted: the rest of a database URL may hold a password.
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported index URL scheme \"", scheme, "\": expected sqlite:PATH"));
}

}  // namespace ds
