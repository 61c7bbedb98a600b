#include "common/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ds {
namespace {

// A fixed set of threads taking tasks from one queue. Never destroyed (its threads may still be
// waiting for tasks at exit).
class SharedPool {
 public:
  SharedPool() {
    for (size_t i = 0; i < kSharedPoolThreads; ++i) {
      std::thread([this] { Run(); }).detach();
    }
  }

  static SharedPool& Get() {
    static SharedPool* pool = new SharedPool();
    return *pool;
  }

  void Post(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }

 private:
  void Run() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return !tasks_.empty(); });
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
};

// One ParallelFor call. Shared with its helper tasks, which may start after the call returned:
// they then find no index left and never touch `fn`.
struct Loop {
  Loop(size_t n, const std::function<void(size_t)>* fn) : n(n), fn(fn) {}
  const size_t n;
  const std::function<void(size_t)>* const fn;
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::condition_variable cv;
  size_t done = 0;  // calls returned; guarded by mu

  // Takes indices until none is left.
  void Work() {
    size_t finished = 0;
    for (size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
      (*fn)(i);
      ++finished;
    }
    if (finished == 0) return;
    std::lock_guard<std::mutex> lock(mu);
    done += finished;
    if (done == n) cv.notify_all();
  }
};

}  // namespace

void ParallelFor(size_t n, size_t max_helpers, const std::function<void(size_t)>& fn) {
  const size_t helpers = std::min({n, max_helpers, kSharedPoolThreads + 1});
  if (helpers <= 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  auto loop = std::make_shared<Loop>(n, &fn);
  for (size_t h = 1; h < helpers; ++h) SharedPool::Get().Post([loop] { loop->Work(); });
  loop->Work();
  std::unique_lock<std::mutex> lock(loop->mu);
  loop->cv.wait(lock, [&] { return loop->done == n; });
}

}  // namespace ds
