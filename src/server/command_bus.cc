#include "server/command_bus.h"

#include <vector>

namespace ds {

CommandBus::CommandBus() : thread_([this] { Loop(); }) {}

CommandBus::~CommandBus() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t CommandBus::Sequence(int64_t runner_id) {
  std::lock_guard<std::mutex> lock(mu_);
  return sequence_[runner_id];
}

void CommandBus::Wait(int64_t runner_id, uint64_t seen_sequence,
                      std::chrono::steady_clock::time_point deadline,
                      std::function<void(Wake)> fire) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& w : waiters_) {
      if (w.runner_id == runner_id) w.superseded = true;
    }
    Waiter w{runner_id, deadline, std::move(fire)};
    w.notified = sequence_[runner_id] != seen_sequence;
    waiters_.push_back(std::move(w));
  }
  cv_.notify_all();
}

void CommandBus::Notify(int64_t runner_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++sequence_[runner_id];
    for (auto& w : waiters_) {
      if (w.runner_id == runner_id) w.notified = true;
    }
  }
  cv_.notify_all();
}

size_t CommandBus::WaiterCount() {
  std::lock_guard<std::mutex> lock(mu_);
  return waiters_.size();
}

void CommandBus::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    auto now = std::chrono::steady_clock::now();
    std::vector<std::pair<std::function<void(Wake)>, Wake>> due;
    auto next = now + std::chrono::seconds(60);
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (stop_ || it->notified || it->superseded || it->deadline <= now) {
        Wake why = it->superseded ? Wake::kSuperseded : it->notified ? Wake::kNotified : Wake::kDeadline;
        due.emplace_back(std::move(it->fire), why);
        it = waiters_.erase(it);
      } else {
        next = std::min(next, it->deadline);
        ++it;
      }
    }
    if (!due.empty()) {
      lock.unlock();
      for (auto& [fire, why] : due) fire(why);
      lock.lock();
      continue;
    }
    if (stop_) return;
    cv_.wait_until(lock, next);
  }
}

}  // namespace ds
