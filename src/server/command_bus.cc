#include "server/command_bus.h"

#include <algorithm>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace ds {

CommandBus::CommandBus() : CommandBus("local", nullptr, std::chrono::seconds(1)) {}

CommandBus::CommandBus(std::string instance_id, WaitingCheck check,
                       std::chrono::milliseconds poll_interval)
    : instance_id_(std::move(instance_id)),
      check_(std::move(check)),
      poll_interval_(std::max(poll_interval, std::chrono::milliseconds(10))),
      thread_([this] { Loop(); }) {}

CommandBus::~CommandBus() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  thread_.join();
}

std::string CommandBus::NewPollId() {
  MutexLock lock(&mu_);
  return absl::StrCat(instance_id_, ":", ++next_poll_);
}

uint64_t CommandBus::Sequence(int64_t runner_id) {
  MutexLock lock(&mu_);
  return sequence_[runner_id];
}

void CommandBus::Wait(int64_t runner_id, uint64_t seen_sequence,
                      std::chrono::steady_clock::time_point deadline,
                      std::function<void(Wake)> fire, std::string poll_id) {
  {
    MutexLock lock(&mu_);
    for (auto& w : waiters_) {
      if (w.runner_id == runner_id) w.superseded = true;
    }
    Waiter w{runner_id, deadline, std::move(fire), std::move(poll_id)};
    w.serial = ++next_serial_;
    w.notified = sequence_[runner_id] != seen_sequence;
    waiters_.push_back(std::move(w));
  }
  cv_.SignalAll();
}

void CommandBus::Notify(int64_t runner_id) {
  {
    MutexLock lock(&mu_);
    ++sequence_[runner_id];
    for (auto& w : waiters_) {
      if (w.runner_id == runner_id) w.notified = true;
    }
  }
  cv_.SignalAll();
}

size_t CommandBus::WaiterCount() {
  MutexLock lock(&mu_);
  return waiters_.size();
}

void CommandBus::CheckIndex() {
  std::set<int64_t> ids;
  for (const Waiter& w : waiters_) {
    if (!w.notified && !w.superseded) ids.insert(w.runner_id);
  }
  if (ids.empty()) return;
  // Results describe the index as of the query: they may only supersede waiters that already
  // existed then (a newer one recorded its poll id after the query read the old one).
  const uint64_t asked_at = next_serial_;
  mu_.Unlock();
  absl::StatusOr<std::vector<StateIndex::WaitingRunner>> state =
      check_(std::vector<int64_t>(ids.begin(), ids.end()));
  mu_.Lock();
  if (!state.ok()) {
    if (!check_failing_) {
      spdlog::warn("command bus: cannot check the index for other instances' commands: {}",
                   state.status());
    }
    check_failing_ = true;
    return;
  }
  if (check_failing_) spdlog::info("command bus: index checks work again");
  check_failing_ = false;
  std::map<int64_t, const StateIndex::WaitingRunner*> by_runner;
  for (const auto& r : *state) by_runner[r.runner_id] = &r;
  for (Waiter& w : waiters_) {
    auto it = by_runner.find(w.runner_id);
    if (it == by_runner.end()) continue;
    if (it->second->pending_commands) w.notified = true;
    if (w.serial <= asked_at && !w.poll_id.empty() && !it->second->newest_poll_id.empty() &&
        it->second->newest_poll_id != w.poll_id) {
      w.superseded = true;
    }
  }
}

std::vector<std::pair<std::function<void(CommandBus::Wake)>, CommandBus::Wake>> CommandBus::TakeDue(
    std::chrono::steady_clock::time_point now, std::chrono::steady_clock::time_point* next) {
  std::vector<std::pair<std::function<void(Wake)>, Wake>> due;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (stop_ || it->notified || it->superseded || it->deadline <= now) {
      // A stopping instance answers empty: commands stay pending for the agent's next poll
      // (on another instance) instead of going to a connection about to be dropped.
      Wake why = stop_ || it->superseded ? Wake::kSuperseded
                 : it->notified          ? Wake::kNotified
                                         : Wake::kDeadline;
      due.emplace_back(std::move(it->fire), why);
      it = waiters_.erase(it);
    } else {
      *next = std::min(*next, it->deadline);
      ++it;
    }
  }
  return due;
}

void CommandBus::Loop() {
  using Clock = std::chrono::steady_clock;
  MutexLock lock(&mu_);
  Clock::time_point next_check = Clock::now() + poll_interval_;
  for (;;) {
    auto now = Clock::now();
    if (check_ && !stop_ && now >= next_check) {
      next_check = now + poll_interval_;
      if (!waiters_.empty()) {
        CheckIndex();
        now = Clock::now();
      }
    }
    auto next = now + std::chrono::seconds(60);
    if (check_ && !waiters_.empty()) next = std::min(next, next_check);
    std::vector<std::pair<std::function<void(Wake)>, Wake>> due = TakeDue(now, &next);
    if (!due.empty()) {
      mu_.Unlock();  // `fire` may call back into the bus
      for (auto& [fire, why] : due) fire(why);
      mu_.Lock();
      continue;
    }
    if (stop_) return;
    cv_.WaitUntil(&mu_, next);
  }
}

}  // namespace ds
