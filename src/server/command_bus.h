// Wakes long-polling agents when a command is queued for them. Waiters are answered from the
// bus's own thread, when notified or when their deadline passes, exactly once.
//
// With several server instances on one index, a command queued through instance A must reach an
// agent long-polling instance B, and a long-poll the agent abandoned on A must not swallow that
// command. Notify() only reaches waiters of this instance; for the rest the bus asks the index
// (a `WaitingCheck`) about every `poll_interval` while anyone waits: waiters whose runner has
// pending commands are notified, and waiters that are no longer their runner's newest long-poll
// (recorded in the index by whichever instance holds it) are superseded.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"
#include "index/state_index.h"

namespace ds {

class CommandBus {
 public:
  enum class Wake { kDeadline, kNotified, kSuperseded };

  // Answers for the given runner ids (ascending, distinct); typically
  // StateIndex::CheckWaitingRunners. Runs on the bus thread.
  using WaitingCheck = std::function<absl::StatusOr<std::vector<StateIndex::WaitingRunner>>(
      const std::vector<int64_t>& runner_ids)>;

  // In-process only: no check, poll ids "local:N".
  CommandBus();
  // `instance_id` prefixes poll ids and must be unique among the instances sharing the index.
  // `check` (may be empty: in-process only) runs every `poll_interval` while anyone waits.
  CommandBus(std::string instance_id, WaitingCheck check, std::chrono::milliseconds poll_interval);
  // Fires every remaining waiter with kSuperseded: a stopping instance hands out no commands.
  ~CommandBus();

  // A long-poll id unique across instances ("<instance_id>:<n>"), to record in the index with
  // StateIndex::RecordLongPoll before Wait.
  std::string NewPollId();
  // Current notification sequence of a runner; pass it to Wait to close the race between
  // "checked for commands" and "started waiting".
  uint64_t Sequence(int64_t runner_id);
  // Calls `fire(kNotified)` after the next Notify(runner_id) (immediately if one happened since
  // `seen_sequence`) or once the index shows pending commands for the runner; or `fire(kDeadline)`
  // at `deadline`; or `fire(kSuperseded)` when the same runner starts a newer wait, on this
  // instance or (when `poll_id` is not empty and was recorded) on another one: its previous
  // connection is presumably dead, and a killed agent's long-poll must not swallow the next
  // command. `fire` runs on the bus thread, once.
  void Wait(int64_t runner_id, uint64_t seen_sequence,
            std::chrono::steady_clock::time_point deadline, std::function<void(Wake)> fire,
            std::string poll_id = "");
  void Notify(int64_t runner_id);
  // Number of agents currently long-polling this instance.
  size_t WaiterCount();

 private:
  struct Waiter {
    int64_t runner_id;
    std::chrono::steady_clock::time_point deadline;
    std::function<void(Wake)> fire;
    std::string poll_id;  // "" = not recorded in the index
    uint64_t serial = 0;  // order of arrival
    bool notified = false;
    bool superseded = false;
  };
  void Loop();
  // Asks the index about the current waiters and marks them. Releases mu_ during the query.
  void CheckIndex() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes the waiters to answer now (notified, superseded, past their deadline; all of them when
  // stopping) and lowers `*next` to the earliest remaining deadline.
  std::vector<std::pair<std::function<void(Wake)>, Wake>> TakeDue(
      std::chrono::steady_clock::time_point now, std::chrono::steady_clock::time_point* next)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const std::string instance_id_;
  const WaitingCheck check_;
  const std::chrono::milliseconds poll_interval_;

  Mutex mu_;
  CondVar cv_;
  std::list<Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, uint64_t> sequence_ ABSL_GUARDED_BY(mu_);
  uint64_t next_serial_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_poll_ ABSL_GUARDED_BY(mu_) = 0;
  // The last check failed (logged once per streak).
  bool check_failing_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // started last
};

}  // namespace ds
