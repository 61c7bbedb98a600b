#include "platform/stop.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace ds::platform {
namespace {

bool WaitFor(const std::atomic<int>& v, int want) {
  for (int i = 0; i < 500 && v.load() < want; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return v.load() >= want;
}

// One process-wide handler (as in a main): signals reach its thread, a stop runs once.
TEST(StopHandler, ReloadsThenStopsOnce) {
  std::atomic<int> stops{0}, reloads{0};
  auto h = StopHandler::Install([&] { ++stops; }, [&] { ++reloads; });
  EXPECT_FALSE(h->stop_requested());
  ASSERT_EQ(::kill(::getpid(), SIGHUP), 0);
  ASSERT_TRUE(WaitFor(reloads, 1));
  ASSERT_EQ(::kill(::getpid(), SIGHUP), 0);
  ASSERT_TRUE(WaitFor(reloads, 2));
  EXPECT_EQ(stops.load(), 0);
  ASSERT_EQ(::kill(::getpid(), SIGTERM), 0);
  ASSERT_TRUE(WaitFor(stops, 1));
  EXPECT_TRUE(h->stop_requested());
  h->RequestStop();  // after the stop: nothing more runs
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(stops.load(), 1);
  EXPECT_EQ(reloads.load(), 2);
}

// Each test case runs in its own process (gtest_discover_tests), so each may install one.
TEST(StopHandler, RequestStopRunsTheCallbackOnce) {
  std::atomic<int> stops{0};
  auto h = StopHandler::Install([&] { ++stops; });
  h->RequestStop();
  h->RequestStop();
  ASSERT_TRUE(WaitFor(stops, 1));
  EXPECT_TRUE(h->stop_requested());
  ASSERT_EQ(::kill(::getpid(), SIGINT), 0);  // swallowed by the handler's thread
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(stops.load(), 1);
}

}  // namespace
}  // namespace ds::platform
