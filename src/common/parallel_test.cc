#include "common/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace ds {
namespace {

TEST(ParallelForTest, CallsEveryIndexOnce) {
  std::vector<std::atomic<int>> calls(1000);
  ParallelFor(calls.size(), 16, [&](size_t i) { calls[i].fetch_add(1); });
  for (size_t i = 0; i < calls.size(); ++i) EXPECT_EQ(calls[i].load(), 1) << i;
}

TEST(ParallelForTest, NothingToDoAndOneHelper) {
  ParallelFor(0, 16, [](size_t) { FAIL() << "called with n = 0"; });
  std::vector<size_t> order;
  ParallelFor(5, 1, [&](size_t i) { order.push_back(i); });  // the caller alone, in order
  EXPECT_EQ(order, (std::vector<size_t>{0, 1, 2, 3, 4}));
}

TEST(ParallelForTest, ManyCallersShareTheBoundedPool) {
  // More concurrent callers than pool threads, each asking for 16 helpers: all finish, and no
  // more threads than the callers plus the shared pool ever ran an fn.
  constexpr int kCallers = 24;
  std::mutex mu;
  std::set<std::thread::id> threads;
  std::atomic<int> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&] {
      ParallelFor(64, 16, [&](size_t) {
        {
          std::lock_guard<std::mutex> lock(mu);
          threads.insert(std::this_thread::get_id());
        }
        total.fetch_add(1);
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      });
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(total.load(), kCallers * 64);
  EXPECT_LE(threads.size(), kCallers + kSharedPoolThreads);
}

TEST(ParallelForTest, NestedCallsFinish) {
  // A call made from inside another (so from a pool thread) does not wait for a free pool thread.
  std::atomic<int> total{0};
  ParallelFor(32, 16, [&](size_t) { ParallelFor(32, 16, [&](size_t) { total.fetch_add(1); }); });
  EXPECT_EQ(total.load(), 32 * 32);
}

}  // namespace
}  // namespace ds
