#include "common/rate_limiter.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

struct FakeTime {
  int64_t ns = 1'000'000'000;
  RateLimiter::NowFn fn() {
    return [this] { return ns; };
  }
};

TEST(RateLimiter, BurstPassesWithoutWaiting) {
  FakeTime t;
  RateLimiter limiter(1'000'000, /*burst_bytes=*/100'000, t.fn());
  EXPECT_EQ(limiter.Reserve(100'000), nanoseconds(0));
}

TEST(RateLimiter, SustainedSendingIsPacedAtTheRate) {
  FakeTime t;
  RateLimiter limiter(1'000'000, /*burst_bytes=*/100'000, t.fn());
  EXPECT_EQ(limiter.Reserve(100'000), nanoseconds(0));  // the burst
  // The next 500 kB are paid for at 1 MB/s: 0.5 s after the burst.
  EXPECT_EQ(limiter.Reserve(500'000), milliseconds(500));
}

TEST(RateLimiter, ConcurrentReservationsShareTheRate) {
  // Two transfers reserving alternately: the sum, not each, is held to the rate.
  FakeTime t;
  RateLimiter limiter(1'000'000, /*burst_bytes=*/1, t.fn());
  nanoseconds last{0};
  for (int i = 0; i < 10; ++i) last = limiter.Reserve(100'000);  // 1 MB in total
  EXPECT_GE(last, milliseconds(999));
  EXPECT_LE(last, milliseconds(1000));
}

TEST(RateLimiter, IdleTimeRefillsOnlyUpToTheBurst) {
  FakeTime t;
  RateLimiter limiter(1'000'000, /*burst_bytes=*/100'000, t.fn());
  (void)limiter.Reserve(1'000'000);
  t.ns += 60'000'000'000;  // a minute idle does not bank a minute of bandwidth
  EXPECT_EQ(limiter.Reserve(100'000), nanoseconds(0));
  EXPECT_EQ(limiter.Reserve(100'000), milliseconds(100));
}

TEST(RateLimiter, AcquireStopsWhenCancelled) {
  RateLimiter limiter(1'000, /*burst_bytes=*/1);
  std::atomic<bool> cancel{true};
  EXPECT_FALSE(limiter.Acquire(1'000'000, &cancel));  // would wait 1,000 s
}

}  // namespace
}  // namespace ds
