#include "common/parallel.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "common/bounded_queue.h"
#include "common/mutex.h"

namespace ds {
namespace {

// A fixed set of threads taking tasks from one queue, unbounded: a ParallelFor caller posts at
// most kSharedPoolThreads tasks and never waits to post. Never destroyed (its threads may still
// be waiting for tasks at exit).
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
    // Never closed, never full: the push always succeeds.
    [[maybe_unused]] const bool queued = tasks_.Push(std::move(task));
  }

 private:
  void Run() {
    while (std::optional<std::function<void()>> task = tasks_.Pop()) (*task)();
  }

  BoundedQueue<std::function<void()>> tasks_{std::numeric_limits<size_t>::max()};
};

// One ParallelFor call. Shared with its helper tasks, which may start after the call returned:
// they then find no index left and never touch `fn`.
struct Loop {
  Loop(size_t n, const std::function<void(size_t)>* fn) : n(n), fn(fn) {}
  const size_t n;
  const std::function<void(size_t)>* const fn;
  std::atomic<size_t> next{0};
  Mutex mu;
  CondVar cv;
  size_t done ABSL_GUARDED_BY(mu) = 0;  // calls returned

  // Takes indices until none is left.
  void Work() {
    size_t finished = 0;
    for (size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
      (*fn)(i);
      ++finished;
    }
    if (finished == 0) return;
    MutexLock lock(&mu);
    done += finished;
    if (done == n) cv.SignalAll();
  }
  // Returns once all n calls returned.
  void AwaitAll() {
    MutexLock lock(&mu);
    while (done != n) cv.Wait(&mu);
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
  loop->AwaitAll();
}

}  // namespace ds
