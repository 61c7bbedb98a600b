// An agent-wide bandwidth cap shared by concurrent transfers (libcurl's per-transfer cap cannot
// bound the sum of parallel uploads).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>

#include "common/mutex.h"

namespace ds {

// A token bucket in its "virtual scheduling" form (GCRA): every reservation of n bytes moves a
// theoretical finish time forward by n / rate; a caller waits until that time, less the burst
// allowance. Reservations are served in the order they are made, so concurrent transfers share
// the rate fairly by the sizes they ask for. Thread-safe.
class RateLimiter {
 public:
  using NowFn = std::function<int64_t()>;  // monotonic nanoseconds

  // REQUIRES: bytes_per_second > 0. `burst_bytes` may pass at once after an idle spell
  // (0: a tenth of a second's worth, at least 16 KiB). `now` defaults to steady_clock.
  explicit RateLimiter(uint64_t bytes_per_second, uint64_t burst_bytes = 0, NowFn now = nullptr);

  // Reserves `bytes` and returns how long the caller must wait before sending them.
  std::chrono::nanoseconds Reserve(uint64_t bytes);

  // Reserve() then sleep, waking at least every 100 ms to look at `cancel` (may be null).
  // Returns false when cancelled (the reservation is not given back).
  bool Acquire(uint64_t bytes, const std::atomic<bool>* cancel = nullptr);

  uint64_t bytes_per_second() const { return bytes_per_second_; }
  // Bytes reserved so far (everything that went through the cap).
  uint64_t reserved_bytes() const { return reserved_bytes_.load(); }

  // Largest piece a transfer should reserve at once, so that waits stay short and parallel
  // transfers interleave (bytes).
  static constexpr uint64_t kChunkBytes = 64 << 10;

 private:
  // Constant after construction.
  const uint64_t bytes_per_second_;
  const int64_t burst_ns_;  // the burst allowance as time at the full rate
  const NowFn now_;

  std::atomic<uint64_t> reserved_bytes_{0};
  Mutex mu_;
  // Theoretical time all reservations are paid (nanoseconds of now_).
  int64_t finish_ns_ ABSL_GUARDED_BY(mu_) = INT64_MIN;
};

}  // namespace ds
