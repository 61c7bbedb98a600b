// Shared by the daemons' mains: every flag can also come from a TOML file given with --config
// (ds::ExpandConfigFile inserts its keys before the real arguments; the command line wins).
#pragma once

#include <CLI/CLI.hpp>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"

namespace ds {

// An app whose single-valued options keep their last value, so command-line flags override the
// config file's. REQUIRES: options are added after this call.
inline void PreferLastValue(CLI::App& app) {
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

// Parses argv, with the --config file expanded, into `app`. Returns the exit status when main()
// must stop here (help: 0, usage or config error: 2), nullopt to go on.
inline std::optional<int> ParseCommandLine(CLI::App& app, int argc, char** argv, const char* program) {
  auto args = ExpandConfigFile(argc, argv);
  if (!args.ok()) {
    std::cerr << program << ": " << args.status().message() << "\n";
    return 2;
  }
  std::vector<char*> av;
  for (auto& s : *args) av.push_back(s.data());
  try {
    app.parse(static_cast<int>(av.size()), av.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return std::nullopt;
}

}  // namespace ds
