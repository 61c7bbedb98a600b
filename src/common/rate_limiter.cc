#include "common/rate_limiter.h"

#include <algorithm>
#include <thread>

namespace ds {
namespace {

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t CostNs(uint64_t bytes, uint64_t bytes_per_second) {
  return static_cast<int64_t>(static_cast<long double>(bytes) * 1e9L /
                              static_cast<long double>(bytes_per_second));
}

}  // namespace

RateLimiter::RateLimiter(uint64_t bytes_per_second, uint64_t burst_bytes, NowFn now)
    : bytes_per_second_(std::max<uint64_t>(1, bytes_per_second)),
      burst_ns_(CostNs(burst_bytes != 0 ? burst_bytes
                                        : std::max<uint64_t>(bytes_per_second_ / 10, 16 << 10),
                       bytes_per_second_)),
      now_(now ? std::move(now) : NowFn(SteadyNowNs)) {}

std::chrono::nanoseconds RateLimiter::Reserve(uint64_t bytes) {
  const int64_t now = now_();
  reserved_bytes_ += bytes;
  MutexLock lock(&mu_);
  finish_ns_ = std::max(finish_ns_, now) + CostNs(bytes, bytes_per_second_);
  return std::chrono::nanoseconds(std::max<int64_t>(0, finish_ns_ - burst_ns_ - now));
}

bool RateLimiter::Acquire(uint64_t bytes, const std::atomic<bool>* cancel) {
  auto remaining = Reserve(bytes);
  constexpr std::chrono::nanoseconds kSlice = std::chrono::milliseconds(100);
  while (remaining.count() > 0) {
    if (cancel != nullptr && cancel->load()) return false;
    const auto step = std::min(remaining, kSlice);
    std::this_thread::sleep_for(step);
    remaining -= step;
  }
  return cancel == nullptr || !cancel->load();
}

}  // namespace ds
