// The agent's log ship buffer: every log line at info level and above (debug when enabled) is
// kept in a table of <state-dir>/agent.db with an increasing sequence number until the server has
// stored it (POST /agent/logs, idempotent by seq). Bounded: when full, the oldest debug lines go
// first (then the oldest lines of any level), and a warning line says how many were dropped. It
// survives server outages and agent restarts. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "protocol/messages.h"
#include "spdlog/sinks/sink.h"

namespace ds {

class LogBuffer {
 public:
  virtual ~LogBuffer() = default;
  // Never logs (it is fed by the logger). Errors are counted, not reported.
  virtual void Append(int64_t time_ms, const std::string& level, const std::string& message,
                      const std::string& correlation_id, const std::string& fields_json) = 0;
  // The oldest `limit` records, ascending seq.
  [[nodiscard]] virtual absl::StatusOr<std::vector<protocol::LogRecord>> Peek(size_t limit) = 0;
  // Forgets records with seq <= up_to_seq (the server holds them).
  [[nodiscard]] virtual absl::Status Remove(int64_t up_to_seq) = 0;
  virtual int64_t Size() = 0;          // records waiting
  virtual int64_t DroppedTotal() = 0;  // records dropped since start
};

// `max_records` >= 10.
[[nodiscard]] absl::StatusOr<std::unique_ptr<LogBuffer>> OpenLogBuffer(const std::string& db_path,
                                                                       int64_t max_records);

// An spdlog sink feeding `buffer` (which must outlive it). A `run=<uuid>` in the message becomes
// the correlation id, other `key=value` words become fields.
std::shared_ptr<spdlog::sinks::sink> MakeLogBufferSink(LogBuffer* buffer);

}  // namespace ds
