#include "common/log.h"

#include "common/escape.h"
#include "spdlog/sinks/stdout_color_sinks.h"

namespace ds {
namespace {

// Escapes control characters in every message before any sink sees it (stderr, server.log, the
// agent's log files, the records it ships), so that no caller, whatever it formats, writes raw
// control bytes to a log.
class EscapingLogger final : public spdlog::logger {
 public:
  using spdlog::logger::logger;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    if (!NeedsTerminalEscape(payload)) return spdlog::logger::sink_it_(msg);
    const std::string escaped = EscapeForTerminal(payload);
    spdlog::details::log_msg copy(msg);
    copy.payload = spdlog::string_view_t(escaped.data(), escaped.size());
    spdlog::logger::sink_it_(copy);
  }
};

}  // namespace

std::shared_ptr<spdlog::logger> MakeLogger(const std::string& name, spdlog::sink_ptr sink) {
  return std::make_shared<EscapingLogger>(name, std::move(sink));
}

void InitLogging(const std::string& program, const std::string& level) {
  auto logger = MakeLogger(program, std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %n: %v", spdlog::pattern_time_type::utc);
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") lvl = spdlog::level::info;
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace ds
