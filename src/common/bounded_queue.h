// A bounded first-in-first-out queue between threads, the one the code uses instead of a deque,
// a mutex and a condition variable written again in each place (ClickHouse's
// ConcurrentBoundedQueue: push, pop, close). Bounded by a number of items and, optionally, by a
// total weight (e.g. bytes) that each item carries.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "common/mutex.h"

namespace ds {

inline constexpr uint64_t kUnboundedWeight = std::numeric_limits<uint64_t>::max();

// Thread-safe. Any number of producers and Pop() consumers; PopBatch() by one consumer at a time.
template <typename T>
class BoundedQueue {
 public:
  // REQUIRES: max_items > 0.
  explicit BoundedQueue(size_t max_items, uint64_t max_weight = kUnboundedWeight)
      : max_items_(max_items), max_weight_(max_weight) {}
  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  // Appends `item`, waiting while the queue is full: max_items queued, or `weight` would take a
  // non-empty queue past max_weight (an item heavier than max_weight goes alone). Returns false,
  // dropping the item, once the queue is closed (also while waiting).
  [[nodiscard]] bool Push(T item, uint64_t weight = 1) {
    MutexLock lock(&mu_);
    if (!closed_ && Full(weight)) {
      ++push_waiters_;
      batch_ready_.Signal();  // a PopBatch caller takes what is there instead of waiting on
      while (!closed_ && Full(weight)) not_full_.Wait(&mu_);
      --push_waiters_;
    }
    if (closed_) return false;
    items_.push_back(Entry{std::move(item), weight});
    weight_ += weight;
    if (pop_waiters_ > 0) item_ready_.Signal();
    if (items_.size() >= batch_items_ || weight_ >= batch_weight_) batch_ready_.Signal();
    return true;
  }

  // Takes the oldest item, waiting for one. nullopt once the queue is closed and empty.
  [[nodiscard]] std::optional<T> Pop() {
    MutexLock lock(&mu_);
    ++pop_waiters_;
    while (items_.empty() && !closed_) item_ready_.Wait(&mu_);
    --pop_waiters_;
    if (items_.empty()) return std::nullopt;
    return TakeOne();
  }

  // Waits until `batch_items` are queued, or their weight reaches `batch_weight`, or a producer
  // waits for room, or the queue is closed, or `timeout` passed; then takes up to batch_items of the oldest (none after a timeout
  // with nothing queued). nullopt once the queue is closed and empty.
  template <typename Rep, typename Period>
  [[nodiscard]] std::optional<std::vector<T>> PopBatch(
      size_t batch_items, uint64_t batch_weight, std::chrono::duration<Rep, Period> timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    MutexLock lock(&mu_);
    batch_items_ = batch_items;
    batch_weight_ = batch_weight;
    while (!closed_ && items_.size() < batch_items && weight_ < batch_weight &&
           push_waiters_ == 0 && batch_ready_.WaitUntil(&mu_, deadline)) {
    }
    batch_items_ = std::numeric_limits<size_t>::max();
    batch_weight_ = kUnboundedWeight;
    if (items_.empty() && closed_) return std::nullopt;
    std::vector<T> batch;
    while (!items_.empty() && batch.size() < batch_items) batch.push_back(TakeOne());
    return batch;
  }

  // Takes everything queued now, without waiting.
  [[nodiscard]] std::vector<T> Drain() {
    MutexLock lock(&mu_);
    std::vector<T> all;
    while (!items_.empty()) all.push_back(TakeOne());
    return all;
  }

  // No more pushes (waiting ones return false); pops take what is left, then get nullopt.
  void Close() {
    MutexLock lock(&mu_);
    closed_ = true;
    not_full_.SignalAll();
    item_ready_.SignalAll();
    batch_ready_.SignalAll();
  }

  bool closed() const {
    MutexLock lock(&mu_);
    return closed_;
  }
  size_t size() const {
    MutexLock lock(&mu_);
    return items_.size();
  }

 private:
  struct Entry {
    T item;
    uint64_t weight;
  };

  bool Full(uint64_t weight) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (items_.size() >= max_items_) return true;
    return !items_.empty() && weight > max_weight_ - std::min(weight_, max_weight_);
  }
  T TakeOne() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Entry e = std::move(items_.front());
    items_.pop_front();
    weight_ -= e.weight;
    not_full_.SignalAll();  // producers wait for different weights
    return std::move(e.item);
  }

  // Constant after construction.
  const size_t max_items_;
  const uint64_t max_weight_;

  mutable Mutex mu_;
  CondVar not_full_, item_ready_, batch_ready_;
  std::deque<Entry> items_ ABSL_GUARDED_BY(mu_);
  uint64_t weight_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  size_t pop_waiters_ ABSL_GUARDED_BY(mu_) = 0;
  size_t push_waiters_ ABSL_GUARDED_BY(mu_) = 0;
  // What the PopBatch caller waits for (unbounded when none waits): Push wakes it only then.
  size_t batch_items_ ABSL_GUARDED_BY(mu_) = std::numeric_limits<size_t>::max();
  uint64_t batch_weight_ ABSL_GUARDED_BY(mu_) = kUnboundedWeight;
};

}  // namespace ds
