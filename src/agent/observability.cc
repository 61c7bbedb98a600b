#include "agent/observability.h"

#include <algorithm>
#include <filesystem>

#include "common/log.h"
#include "http/http_types.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/rotating_file_sink.h"

namespace ds {

absl::Status AgentObservability::Start() {
  std::error_code ec;
  std::filesystem::create_directories(config_.state_dir, ec);
  metrics_.DeclareCounter("datasync_agent_runs_total", "Runs finished by this agent, by state.");
  metrics_.DeclareCounter("datasync_agent_files_uploaded_total", "Files uploaded by this agent.");
  metrics_.DeclareCounter("datasync_agent_bytes_uploaded_total", "Bytes uploaded by this agent.");
  metrics_.DeclareCounter("datasync_agent_heartbeat_failures_total", "Heartbeats that failed.");
  metrics_.DeclareCounter("datasync_agent_log_records_shipped_total", "Log records the server stored.");
  auto buffer = OpenLogBuffer((std::filesystem::path(config_.state_dir) / "agent.db").string(),
                              std::max<int64_t>(10, config_.log_buffer_records));
  if (!buffer.ok()) return buffer.status();
  log_buffer_ = std::move(*buffer);
  sinks_.push_back(MakeLogBufferSink(log_buffer_.get()));
  if (config_.log_files) AddLogFiles();
  auto logger = spdlog::default_logger();
  for (auto& sink : sinks_) logger->sinks().push_back(sink);
  return StartMetricsServer();
}

// <state>/logs/agent.log, 10 MiB × 5, UTC timestamps. Without them the agent still logs to
// stderr and ships its records.
void AgentObservability::AddLogFiles() {
  try {
    auto dir = std::filesystem::path(config_.state_dir) / "logs";
    std::filesystem::create_directories(dir);
    auto file = std::make_shared<spdlog::sinks::rotating_file_sink_mt>((dir / "agent.log").string(),
                                                                      10 << 20, 5);
    file->set_formatter(std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%eZ %l %n: %v",
                                                                     spdlog::pattern_time_type::utc));
    sinks_.push_back(file);
  } catch (const std::exception& e) {
    spdlog::warn("no log files under {}: {}", config_.state_dir, e.what());
  }
}

absl::Status AgentObservability::StartMetricsServer() {
  if (config_.metrics_listen.empty()) return absl::OkStatus();
  http::ServerOptions opts;
  size_t colon = config_.metrics_listen.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("--metrics-listen must be HOST:PORT");
  opts.host = config_.metrics_listen.substr(0, colon);
  try {
    opts.port = static_cast<uint16_t>(std::stoi(config_.metrics_listen.substr(colon + 1)));
  } catch (const std::exception&) {
    return absl::InvalidArgumentError("--metrics-listen must be HOST:PORT");
  }
  opts.io_threads = 1;
  opts.worker_threads = 1;
  opts.max_body_bytes = 1024;
  DS_ASSIGN_OR_RETURN(metrics_server_, http::StartServer(opts, [this](http::Request req, http::Responder respond) {
                        if (req.path != "/metrics" || req.method != "GET") {
                          return respond(http::ProblemResponse(404, "Not Found", "only GET /metrics"));
                        }
                        http::Response r;
                        r.status = 200;
                        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
                        r.body = MetricsText();
                        respond(std::move(r));
                      }));
  spdlog::info("agent metrics on http://{}:{}/metrics", opts.host, metrics_server_->port());
  return absl::OkStatus();
}

void AgentObservability::Stop() {
  if (metrics_server_) metrics_server_->Stop();
  metrics_server_.reset();
  auto logger = spdlog::default_logger();
  auto& sinks = logger->sinks();
  for (auto& mine : sinks_) sinks.erase(std::remove(sinks.begin(), sinks.end(), mine), sinks.end());
  sinks_.clear();
}

std::string AgentObservability::MetricsText() {
  std::vector<MetricFamily> families = metrics_.Families();
  families.push_back({"datasync_agent_log_buffer_records", "Log records waiting to be shipped.", "gauge",
                      {{"", {}, static_cast<double>(log_buffer_->Size())}}});
  families.push_back({"datasync_agent_log_records_dropped_total",
                      "Log records dropped because the ship buffer was full.", "counter",
                      {{"", {}, static_cast<double>(log_buffer_->DroppedTotal())}}});
  families.push_back({"datasync_agent_server_reachable", "1 when the last heartbeat succeeded.", "gauge",
                      {{"", {}, server_reachable_() ? 1.0 : 0.0}}});
  return RenderMetrics(families);
}

}  // namespace ds
