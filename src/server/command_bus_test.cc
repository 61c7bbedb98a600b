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
  bus.Wait(1, bus.Sequence(1), steady_clock::now() + milliseconds(5000), [&](CommandBus::Wake w) { a.set_value(w == CommandBus::Wake::kNotified); });
  bus.Wait(2, bus.Sequence(2), steady_clock::now() + milliseconds(200), [&](CommandBus::Wake w) { b.set_value(w == CommandBus::Wake::kNotified); });
  bus.Notify(1);
  EXPECT_TRUE(a.get_future().get());
  EXPECT_FALSE(b.get_future().get());  // deadline, not notified
}

TEST(CommandBusTest, NotifyBetweenCheckAndWaitIsNotLost) {
  CommandBus bus;
  uint64_t seq = bus.Sequence(7);
  bus.Notify(7);  // a command arrives after the handler looked, before it waits
  std::promise<bool> p;
  bus.Wait(7, seq, steady_clock::now() + milliseconds(10000), [&](CommandBus::Wake w) { p.set_value(w == CommandBus::Wake::kNotified); });
  auto f = p.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(2)), std::future_status::ready);
  EXPECT_TRUE(f.get());
}

TEST(CommandBusTest, ANewWaitOfTheSameRunnerSupersedesTheOldOne) {
  CommandBus bus;
  std::promise<CommandBus::Wake> old_wait, new_wait;
  bus.Wait(3, bus.Sequence(3), steady_clock::now() + milliseconds(10000),
           [&](CommandBus::Wake w) { old_wait.set_value(w); });
  bus.Wait(3, bus.Sequence(3), steady_clock::now() + milliseconds(10000),
           [&](CommandBus::Wake w) { new_wait.set_value(w); });
  EXPECT_EQ(old_wait.get_future().get(), CommandBus::Wake::kSuperseded);
  bus.Notify(3);
  EXPECT_EQ(new_wait.get_future().get(), CommandBus::Wake::kNotified);
}

TEST(CommandBusTest, DestructorFiresRemainingWaiters) {
  std::atomic<int> fired{0};
  {
    CommandBus bus;
    bus.Wait(1, bus.Sequence(1), steady_clock::now() + std::chrono::hours(1), [&](CommandBus::Wake) { ++fired; });
  }
  EXPECT_EQ(fired, 1);
}

}  // namespace
}  // namespace ds
