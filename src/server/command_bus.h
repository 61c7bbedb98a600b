// Wakes long-polling agents when a command is queued for them. Waiters are answered from the
// bus's own thread, when notified or when their deadline passes, exactly once.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <thread>

namespace ds {

class CommandBus {
 public:
  enum class Wake { kDeadline, kNotified, kSuperseded };

  CommandBus();
  ~CommandBus();  // fires every remaining waiter with notified=false

  // Current notification sequence of a runner; pass it to Wait to close the race between
  // "checked for commands" and "started waiting".
  uint64_t Sequence(int64_t runner_id);
  // Calls `fire(kNotified)` after the next Notify(runner_id) (immediately if one happened since
  // `seen_sequence`), or `fire(kDeadline)` at `deadline`, or `fire(kSuperseded)` when the same
  // runner starts a newer wait (its previous connection is presumably dead: a killed agent's
  // long-poll must not swallow the next command). `fire` runs on the bus thread, once.
  void Wait(int64_t runner_id, uint64_t seen_sequence,
            std::chrono::steady_clock::time_point deadline, std::function<void(Wake)> fire);
  void Notify(int64_t runner_id);
  // Number of agents currently long-polling.
  size_t WaiterCount();

 private:
  struct Waiter {
    int64_t runner_id;
    std::chrono::steady_clock::time_point deadline;
    std::function<void(Wake)> fire;
    bool notified = false;
    bool superseded = false;
  };
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  // Protected by mu_.
  std::list<Waiter> waiters_;
  std::map<int64_t, uint64_t> sequence_;
  bool stop_ = false;
  std::thread thread_;  // started last
};

}  // namespace ds
