#include "server/command_bus.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <map>
#include <thread>
#include <mutex>
#include <string>
#include <vector>

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
  std::atomic<bool> superseded{false};
  {
    CommandBus bus;
    bus.Wait(1, bus.Sequence(1), steady_clock::now() + std::chrono::hours(1), [&](CommandBus::Wake w) {
      ++fired;
      superseded = w == CommandBus::Wake::kSuperseded;  // answered empty: no command handed out
    });
  }
  EXPECT_EQ(fired, 1);
  EXPECT_TRUE(superseded);
}


// A fake index shared by "instances": pending commands and newest long-poll per runner.
struct FakeIndex {
  std::mutex mu;
  std::map<int64_t, bool> pending;
  std::map<int64_t, std::string> newest;
  int checks = 0;

  CommandBus::WaitingCheck Check() {
    return [this](const std::vector<int64_t>& ids)
               -> absl::StatusOr<std::vector<StateIndex::WaitingRunner>> {
      std::lock_guard<std::mutex> lock(mu);
      ++checks;
      std::vector<StateIndex::WaitingRunner> out;
      for (int64_t id : ids) out.push_back({id, pending[id], newest[id]});
      return out;
    };
  }
};

TEST(CommandBusTest, CommandQueuedOnAnotherInstanceWakesWaiterWithinAPollInterval) {
  FakeIndex index;
  CommandBus bus("b", index.Check(), milliseconds(50));
  std::promise<CommandBus::Wake> woken;
  const auto t0 = steady_clock::now();
  bus.Wait(5, bus.Sequence(5), t0 + milliseconds(10000),
           [&](CommandBus::Wake w) { woken.set_value(w); });
  std::this_thread::sleep_for(milliseconds(120));
  {
    std::lock_guard<std::mutex> lock(index.mu);
    index.pending[5] = true;  // instance A enqueued; its Notify never reaches this bus
  }
  auto f = woken.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(2)), std::future_status::ready);
  EXPECT_EQ(f.get(), CommandBus::Wake::kNotified);
  EXPECT_LT(steady_clock::now() - t0, milliseconds(1000));
}

TEST(CommandBusTest, NewerLongPollOnAnotherInstanceSupersedesThisOne) {
  FakeIndex index;
  CommandBus bus("a", index.Check(), milliseconds(50));
  const std::string id = bus.NewPollId();
  EXPECT_EQ(id.rfind("a:", 0), 0u) << id;
  EXPECT_NE(bus.NewPollId(), id);
  {
    std::lock_guard<std::mutex> lock(index.mu);
    index.newest[9] = id;
  }
  std::promise<CommandBus::Wake> old_wait;
  bus.Wait(9, bus.Sequence(9), steady_clock::now() + milliseconds(10000),
           [&](CommandBus::Wake w) { old_wait.set_value(w); }, id);
  std::this_thread::sleep_for(milliseconds(150));
  EXPECT_EQ(bus.WaiterCount(), 1u) << "still the newest long-poll: keeps waiting";
  {
    std::lock_guard<std::mutex> lock(index.mu);
    index.newest[9] = "b:1";  // the agent gave up on this connection and polls instance b
    index.pending[9] = true;  // and a command arrives: the stale wait must not take it
  }
  auto f = old_wait.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(2)), std::future_status::ready);
  EXPECT_EQ(f.get(), CommandBus::Wake::kSuperseded);
}

TEST(CommandBusTest, NoIndexChecksWhileNobodyWaits) {
  FakeIndex index;
  {
    CommandBus bus("a", index.Check(), milliseconds(10));
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_EQ(index.checks, 0);
}

}  // namespace
}  // namespace ds
