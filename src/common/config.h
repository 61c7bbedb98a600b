// The one place that reads configuration files. A program's flags can all be set in a TOML file
// given with --config; the file supplies defaults that the command line overrides.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ds {

// Returns argv with the TOML file's top-level keys inserted as `--key=value` right after argv[0],
// so later (command-line) occurrences win. Arrays become repeated flags; booleans `--key` when
// true. The file is named by `--config FILE` or `--config=FILE` in argv; without one argv is
// returned unchanged. Errors: NotFound, InvalidArgument (TOML syntax, nested tables).
[[nodiscard]] absl::StatusOr<std::vector<std::string>> ExpandConfigFile(int argc, char** argv);

// The flags a config file's TOML `text` stands for (`--key=value`, in the file's order), as
// ExpandConfigFile inserts them; `file` names it in errors. InvalidArgument as above.
[[nodiscard]] absl::StatusOr<std::vector<std::string>> ConfigFlags(std::string_view text,
                                                                   const std::string& file);

}  // namespace ds
