#include "server/command_bus.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

namespace ds {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

TEST(CommandBusTest, NotifyWakesWaiterOfThatRunnerOnly) {
  CommandBus bus;
  std::promise<bool> a, b;
  bus.Wait(1, bus.Sequence(1), steady_clock::now() + milliseconds(5000), [&](bool n) { a.set_value(n); });
  bus.Wait(2, bus.Sequence(2), steady_clock::now() + milliseconds(200), [&](bool n) { b.set_value(n); });
  bus.Notify(1);
  EXPECT_TRUE(a.get_future().get());
  EXPECT_FALSE(b.get_future().get());  // deadline, not notified
}

TEST(CommandBusTest, NotifyBetweenCheckAndWaitIsNotLost) {
  CommandBus bus;
  uint64_t seq = bus.Sequence(7);
  bus.Notify(7);  // a command arrives after the handler looked, before it waits
  std::promise<bool> p;
  bus.Wait(7, seq, steady_clock::now() + milliseconds(10000), [&](bool n) { p.set_value(n); });
  auto f = p.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(2)), std::future_status::ready);
  EXPECT_TRUE(f.get());
}

TEST(CommandBusTest, DestructorFiresRemainingWaiters) {
  std::atomic<int> fired{0};
  {
    CommandBus bus;
    bus.Wait(1, bus.Sequence(1), steady_clock::now() + std::chrono::hours(1), [&](bool) { ++fired; });
  }
  EXPECT_EQ(fired, 1);
}

}  // namespace
}  // namespace ds
