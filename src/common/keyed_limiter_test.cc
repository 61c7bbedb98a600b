#include "common/keyed_limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace ds {
namespace {

class FakeClock final : public Clock {
 public:
  int64_t NowUnixMs() const override { return now.load(); }
  std::atomic<int64_t> now{1'700'000'000'000};
};

KeyedLimiter::Policy PerMinute(double n, double burst, size_t max_keys = 10'000) {
  KeyedLimiter::Policy p;
  p.per_minute = n;
  p.burst = burst;
  p.max_keys = max_keys;
  return p;
}

TEST(KeyedLimiterTest, BurstThenRefillPerKey) {
  FakeClock clock;
  KeyedLimiter limiter(PerMinute(6, 3), &clock);  // one token every 10 s
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Acquire("10.0.0.1").allowed) << i;
  KeyedLimiter::Decision d = limiter.Acquire("10.0.0.1");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_ms, 10'000);
  EXPECT_TRUE(limiter.Acquire("10.0.0.2").allowed);  // other keys are not affected
  clock.now += 4'000;
  EXPECT_EQ(limiter.Acquire("10.0.0.1").retry_after_ms, 6'000);
  clock.now += 6'000;
  EXPECT_TRUE(limiter.Acquire("10.0.0.1").allowed);
  EXPECT_FALSE(limiter.Acquire("10.0.0.1").allowed);
  clock.now += 3'600'000;  // refills up to the burst, not beyond
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Acquire("10.0.0.1").allowed) << i;
  EXPECT_FALSE(limiter.Acquire("10.0.0.1").allowed);
}

TEST(KeyedLimiterTest, CheckTakesNothing) {
  FakeClock clock;
  KeyedLimiter limiter(PerMinute(1, 2), &clock);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(limiter.Check("a").allowed);
  EXPECT_EQ(limiter.size(), 0u);  // no bucket for a key that took nothing
  EXPECT_TRUE(limiter.Acquire("a").allowed);
  EXPECT_TRUE(limiter.Check("a").allowed);
  EXPECT_TRUE(limiter.Acquire("a").allowed);
  KeyedLimiter::Decision d = limiter.Check("a");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_ms, 60'000);
}

TEST(KeyedLimiterTest, ZeroRateIsNoLimit) {
  FakeClock clock;
  KeyedLimiter limiter(PerMinute(0, 1), &clock);
  EXPECT_FALSE(limiter.enabled());
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(limiter.Acquire("a").allowed);
  EXPECT_EQ(limiter.size(), 0u);
}

TEST(KeyedLimiterTest, MemoryIsBoundedByForgettingTheLeastRecentlyUsed) {
  FakeClock clock;
  KeyedLimiter limiter(PerMinute(1, 1, /*max_keys=*/100), &clock);
  EXPECT_TRUE(limiter.Acquire("victim").allowed);
  EXPECT_FALSE(limiter.Acquire("victim").allowed);
  for (int i = 0; i < 99; ++i) EXPECT_TRUE(limiter.Acquire("k" + std::to_string(i)).allowed);
  EXPECT_EQ(limiter.size(), 100u);
  EXPECT_FALSE(limiter.Acquire("victim").allowed);  // used again: now the most recent
  for (int i = 0; i < 100'000; ++i) limiter.Acquire("flood" + std::to_string(i));
  EXPECT_EQ(limiter.size(), 100u);
  EXPECT_TRUE(limiter.Acquire("victim").allowed);  // forgotten: a fresh bucket
}

TEST(KeyedLimiterTest, ClockSteppingBackEarnsNothing) {
  FakeClock clock;
  KeyedLimiter limiter(PerMinute(60, 1), &clock);
  EXPECT_TRUE(limiter.Acquire("a").allowed);
  clock.now -= 3'600'000;
  EXPECT_FALSE(limiter.Acquire("a").allowed);
  clock.now += 3'600'000 + 1'000;
  EXPECT_TRUE(limiter.Acquire("a").allowed);
}

TEST(KeyedLimiterTest, ConcurrentCallersGetExactlyTheBurst) {
  FakeClock clock;
  KeyedLimiter limiter(PerMinute(1, 500), &clock);
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        if (limiter.Acquire("shared").allowed) ++allowed;
        limiter.Acquire("t" + std::to_string(t) + "-" + std::to_string(i));
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(allowed.load(), 500);
  EXPECT_EQ(limiter.size(), 1u + 8 * 200);
}

}  // namespace
}  // namespace ds
