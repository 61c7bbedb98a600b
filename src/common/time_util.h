// Clocks (injectable for tests), durations and timestamp formatting.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ds {

// Wall clock. Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowUnixMs() const = 0;  // Unix milliseconds
};

// The process-wide real clock; never null, never freed.
const Clock* SystemClock();

// Parses "90", "90s", "15m", "2h", "1d", "500ms" into milliseconds. Rejects negatives and junk.
[[nodiscard]] absl::StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text);
std::string FormatDuration(std::chrono::milliseconds d);  // "1h2m3s", "450ms"

// "2026-11-28T03:14:51.123Z" from Unix milliseconds; empty string for 0.
std::string FormatIsoUtc(int64_t unix_ms);

}  // namespace ds
