// Logging setup on spdlog. Lines carry the run's correlation id as `run=<id>` when in a run.
// Never log secrets (API keys, enrollment secrets, tokens): log their ids instead.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

// Debian's abseil has its own string_view type: teach fmt to print it and absl::Status, so
// `spdlog::warn("... {}", status.message())` works. Include this header, not spdlog's, to log.
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename Ctx>
  auto format(absl::string_view s, Ctx& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};
template <>
struct fmt::formatter<absl::Status> : fmt::formatter<fmt::string_view> {
  template <typename Ctx>
  auto format(const absl::Status& s, Ctx& ctx) const {
    std::string text = s.ToString();
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(text), ctx);
  }
};

namespace ds {

// A logger writing to `sink` that escapes control characters in every message
// (EscapeForTerminal) before any of its sinks, added now or later, sees it.
std::shared_ptr<spdlog::logger> MakeLogger(const std::string& name, spdlog::sink_ptr sink);

// Sets the default logger (MakeLogger: messages escaped): stderr, ISO UTC timestamps, `program` as the logger name.
// `level`: trace|debug|info|warn|error. Unknown levels fall back to info.
void InitLogging(const std::string& program, const std::string& level);

}  // namespace ds
