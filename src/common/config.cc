#include "common/config.h"

#include <toml++/toml.h>

#include <charconv>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"

namespace ds {
namespace {

absl::StatusOr<std::string> ScalarToString(const toml::node& node, const std::string& key) {
  if (auto s = node.value<std::string>()) return *s;
  // A float is not asked for as an integer: toml++ converts it unchecked (UB past int64, found
  // by fuzz_config).
  if (const auto* d = node.as_floating_point()) {
    // Shortest text that reads back as the same double (an ostream would round to 6 digits).
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d->get());
    if (ec == std::errc()) return std::string(buf, end);
  }
  if (auto i = node.value<int64_t>()) return std::to_string(*i);
  return absl::InvalidArgumentError(absl::StrCat("config key '", key, "' has an unsupported type"));
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ConfigFlags(std::string_view text, const std::string& file) {
  toml::table table;
  try {
    table = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat("config ", file, ": ", std::string(e.description())));
  }
  std::vector<std::string> flags;
  for (const auto& [k, node] : table) {
    std::string key(k.str());
    if (key == "config") continue;
    if (node.is_table()) {
      return absl::InvalidArgumentError(absl::StrCat("config ", file, ": nested table '", key, "' is not supported"));
    }
    if (auto b = node.value_exact<bool>()) {
      if (*b) flags.push_back("--" + key);
      continue;
    }
    if (const toml::array* arr = node.as_array()) {
      for (const auto& el : *arr) {
        DS_ASSIGN_OR_RETURN(std::string v, ScalarToString(el, key));
        flags.push_back(absl::StrCat("--", key, "=", v));
      }
      continue;
    }
    DS_ASSIGN_OR_RETURN(std::string v, ScalarToString(node, key));
    flags.push_back(absl::StrCat("--", key, "=", v));
  }
  return flags;
}

absl::StatusOr<std::vector<std::string>> ExpandConfigFile(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  std::string file;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) file = args[i + 1];
    if (args[i].rfind("--config=", 0) == 0) file = args[i].substr(9);
  }
  if (file.empty()) return args;
  DS_ASSIGN_OR_RETURN(std::string text, ReadFileToString(file, 1 << 20));
  DS_ASSIGN_OR_RETURN(std::vector<std::string> flags, ConfigFlags(text, file));
  args.insert(args.begin() + 1, flags.begin(), flags.end());
  return args;
}

}  // namespace ds
