// Not built: compiled by the ctest tests thread_safety_* (src/common/CMakeLists.txt) with
// -Wthread-safety -Werror=thread-safety, to show the analysis is on. Without DS_READ_UNDER_LOCK it
// reads a guarded member without its mutex, which must not compile.
#include "common/mutex.h"

namespace ds {

class Counter {
 public:
  void Add() {
    MutexLock lock(&mu_);
    ++value_;
  }
  int Get() {
#ifdef DS_READ_UNDER_LOCK
    MutexLock lock(&mu_);
#endif
    return value_;
  }

 private:
  Mutex mu_;
  int value_ ABSL_GUARDED_BY(mu_) = 0;
};

int Use() {
  Counter c;
  c.Add();
  return c.Get();
}

}  // namespace ds
