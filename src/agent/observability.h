// What the agent tells about itself besides heartbeats: its log records (kept in a ship buffer
// for the server, and in rotating files), its metrics registry and the --metrics-listen port.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "agent/agent.h"
#include "agent/log_buffer.h"
#include "common/metrics.h"
#include "http/http_server.h"

namespace ds {

class AgentObservability {
 public:
  // `server_reachable` feeds the datasync_agent_server_reachable gauge; called from the metrics
  // server's thread.
  AgentObservability(const AgentConfig& config, std::function<bool()> server_reachable)
      : config_(config), server_reachable_(std::move(server_reachable)) {}
  ~AgentObservability() { Stop(); }
  AgentObservability(const AgentObservability&) = delete;
  AgentObservability& operator=(const AgentObservability&) = delete;

  // Opens the ship buffer in the state directory, adds its sink (and the log files' unless
  // config.log_files is false) to the default logger, declares the agent's counters and starts
  // the metrics port if configured. Errors: the buffer cannot be opened, a bad --metrics-listen,
  // the port cannot be bound.
  [[nodiscard]] absl::Status Start();
  // Stops the metrics port and takes the sinks off the logger. Idempotent.
  void Stop();

  // Valid after Start() succeeded. Thread-safe.
  MetricsRegistry& metrics() { return metrics_; }
  LogBuffer& log_buffer() { return *log_buffer_; }

 private:
  void AddLogFiles();
  [[nodiscard]] absl::Status StartMetricsServer();
  std::string MetricsText();

  const AgentConfig& config_;
  const std::function<bool()> server_reachable_;
  MetricsRegistry metrics_;
  std::unique_ptr<LogBuffer> log_buffer_;
  std::vector<std::shared_ptr<spdlog::sinks::sink>> sinks_;
  std::unique_ptr<http::Server> metrics_server_;
};

}  // namespace ds
