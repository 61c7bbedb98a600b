#include "common/periodic_worker.h"

#include <atomic>
#include <chrono>
#include <vector>

#include "common/mutex.h"
#include "gtest/gtest.h"

namespace ds {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// Counts calls; a test waits for a number of them.
class Calls {
 public:
  void Add() {
    MutexLock lock(&mu_);
    ++n_;
    cv_.SignalAll();
  }
  // True when `n` calls happened within `timeout`.
  bool WaitFor(int n, milliseconds timeout = milliseconds(5000)) {
    const auto deadline = steady_clock::now() + timeout;
    MutexLock lock(&mu_);
    while (n_ < n && cv_.WaitUntil(&mu_, deadline)) {
    }
    return n_ >= n;
  }
  int count() {
    MutexLock lock(&mu_);
    return n_;
  }

 private:
  Mutex mu_;
  CondVar cv_;
  int n_ ABSL_GUARDED_BY(mu_) = 0;
};

// A test's wait: records each duration asked for and returns at once.
class RecordedWaits {
 public:
  PeriodicWorker::WaitFn Fn() {
    return [this](milliseconds d) {
      MutexLock lock(&mu_);
      waits_.push_back(d);
    };
  }
  std::vector<milliseconds> waits() {
    MutexLock lock(&mu_);
    return waits_;
  }

 private:
  Mutex mu_;
  std::vector<milliseconds> waits_ ABSL_GUARDED_BY(mu_);
};

TEST(PeriodicWorkerTest, CallsEveryIntervalAfterWaitingIt) {
  RecordedWaits waits;
  Calls calls;
  PeriodicWorker w({.name = "test", .interval = milliseconds(250), .wait = waits.Fn()},
                   [&] { calls.Add(); });
  ASSERT_TRUE(calls.WaitFor(5));
  w.Stop();
  const std::vector<milliseconds> got = waits.waits();
  ASSERT_GE(got.size(), 5u);
  for (milliseconds d : got) EXPECT_EQ(d, milliseconds(250));
  // Waits first: never more calls than waits.
  EXPECT_LE(calls.count(), static_cast<int>(got.size()));
}

TEST(PeriodicWorkerTest, CallAtStartCallsBeforeTheFirstWait) {
  Calls calls;
  PeriodicWorker w({.name = "test", .interval = hours(1), .call_at_start = true},
                   [&] { calls.Add(); });
  EXPECT_TRUE(calls.WaitFor(1));
  w.Stop();
  EXPECT_EQ(calls.count(), 1);
}

TEST(PeriodicWorkerTest, WithoutCallAtStartNothingRunsBeforeTheInterval) {
  Calls calls;
  PeriodicWorker w({.name = "test", .interval = hours(1)}, [&] { calls.Add(); });
  EXPECT_FALSE(calls.WaitFor(1, milliseconds(100)));
}

TEST(PeriodicWorkerTest, JitterDrawsEachWaitWithinItsBoundsAndNotAllEqual) {
  RecordedWaits waits;
  Calls calls;
  PeriodicWorker w({.name = "test",
                    .interval = milliseconds(1000),
                    .jitter = 0.2,
                    .wait = waits.Fn(),
                    .seed = 42},
                   [&] { calls.Add(); });
  ASSERT_TRUE(calls.WaitFor(20));
  w.Stop();
  const std::vector<milliseconds> got = waits.waits();
  bool varied = false;
  for (milliseconds d : got) {
    EXPECT_GE(d, milliseconds(800));
    EXPECT_LE(d, milliseconds(1200));
    varied |= d != got.front();
  }
  EXPECT_TRUE(varied);
}

TEST(PeriodicWorkerTest, WakeCallsWithoutWaitingTheInterval) {
  Calls calls;
  PeriodicWorker w({.name = "test", .interval = hours(1)}, [&] { calls.Add(); });
  w.Wake();
  EXPECT_TRUE(calls.WaitFor(1));
  w.Wake();
  EXPECT_TRUE(calls.WaitFor(2));
}

TEST(PeriodicWorkerTest, WakeDuringACallMakesTheNextWaitEndAtOnce) {
  Calls calls;
  std::atomic<int> n{0};
  PeriodicWorker w({.name = "test", .interval = hours(1)}, [&] {
    if (n++ == 0) w.Wake();  // the worker is constructed: the test woke it after that
    calls.Add();
  });
  w.Wake();
  EXPECT_TRUE(calls.WaitFor(2));
}

TEST(PeriodicWorkerTest, StopEndsAWaitAtOnceAndIsIdempotent) {
  Calls calls;
  PeriodicWorker w({.name = "test", .interval = hours(1)}, [&] { calls.Add(); });
  const auto start = steady_clock::now();
  w.Stop();
  w.Stop();
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(calls.count(), 0);
  EXPECT_TRUE(w.stopping());
  w.Wake();  // after Stop: nothing runs
  EXPECT_EQ(calls.count(), 0);
}

TEST(PeriodicWorkerTest, StopLetsARunningCallFinishAndTheCallSeesStopping) {
  std::atomic<bool> saw_stop{false};
  Calls started;
  PeriodicWorker w({.name = "test", .interval = hours(1), .call_at_start = true}, [&] {
    started.Add();
    while (!w.stopping()) std::this_thread::sleep_for(milliseconds(1));
    saw_stop = true;
  });
  ASSERT_TRUE(started.WaitFor(1));
  w.Stop();
  EXPECT_TRUE(saw_stop);
  EXPECT_TRUE(*w.stop_flag());
}

TEST(PeriodicWorkerTest, StopFromInsideTheCallEndsTheThreadAfterIt) {
  Calls calls;
  PeriodicWorker w({.name = "test", .interval = milliseconds(1), .call_at_start = true}, [&] {
    calls.Add();
    w.Stop();
  });
  ASSERT_TRUE(calls.WaitFor(1));
  EXPECT_FALSE(calls.WaitFor(2, milliseconds(100)));
  EXPECT_TRUE(w.stopping());
}

TEST(PeriodicWorkerTest, PacedWaitsWhatEachCallReturns) {
  RecordedWaits waits;
  Calls calls;
  std::atomic<int> n{0};
  auto w = PeriodicWorker::Paced({.name = "test", .call_at_start = true, .wait = waits.Fn()}, [&] {
    calls.Add();
    return milliseconds(100 * ++n);  // a growing back-off
  });
  ASSERT_TRUE(calls.WaitFor(4));
  w->Stop();
  const std::vector<milliseconds> got = waits.waits();
  ASSERT_GE(got.size(), 3u);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], milliseconds(100 * (i + 1))) << i;
}

TEST(PeriodicWorkerTest, PacedZeroCallsAgainWithoutWaitingAndStopStillEndsIt) {
  Calls calls;
  auto w = PeriodicWorker::Paced({.name = "test", .call_at_start = true}, [&] {
    calls.Add();
    return milliseconds(0);  // a backlog: at once again
  });
  ASSERT_TRUE(calls.WaitFor(50));
  w->Stop();
  const int after = calls.count();
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_EQ(calls.count(), after);
}

TEST(PeriodicWorkerTest, PacedWaitIsJittered) {
  RecordedWaits waits;
  Calls calls;
  auto w = PeriodicWorker::Paced(
      {.name = "test", .jitter = 0.5, .call_at_start = true, .wait = waits.Fn(), .seed = 7}, [&] {
        calls.Add();
        return milliseconds(1000);
      });
  ASSERT_TRUE(calls.WaitFor(10));
  w->Stop();
  bool varied = false;
  const std::vector<milliseconds> got = waits.waits();
  for (milliseconds d : got) {
    EXPECT_GE(d, milliseconds(500));
    EXPECT_LE(d, milliseconds(1500));
    varied |= d != got.front();
  }
  EXPECT_TRUE(varied);
}

TEST(PeriodicWorkerTest, PacedWakeEndsALongWait) {
  Calls calls;
  auto w = PeriodicWorker::Paced({.name = "test", .call_at_start = true}, [&] {
    calls.Add();
    return hours(1);
  });
  ASSERT_TRUE(calls.WaitFor(1));
  w->Wake();
  EXPECT_TRUE(calls.WaitFor(2));
}

}  // namespace
}  // namespace ds
