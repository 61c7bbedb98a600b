// Logging setup on spdlog. Lines carry the run's correlation id as `run=<id>` when in a run.
// Never log secrets (API keys, enrollment secrets, tokens): log their ids instead.
#pragma once

#include <string>

#include "spdlog/spdlog.h"

namespace ds {

// Sets the default logger: stderr, ISO UTC timestamps, `program` as the logger name.
// `level`: trace|debug|info|warn|error. Unknown levels fall back to info.
void InitLogging(const std::string& program, const std::string& level);

}  // namespace ds
