// Shared by the mains: SIGINT/SIGTERM handling by a dedicated sigwait thread.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <functional>
#include <thread>

namespace ds {

// Blocks SIGINT/SIGTERM in the calling thread (call first in main, before any thread starts, so
// every thread inherits the mask) and returns a thread that runs `on_signal` on the first one.
inline std::thread StartSignalThread(std::function<void()> on_signal) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread t([set, on_signal] {
    int sig = 0;
    sigwait(&set, &sig);
    on_signal();
  });
  t.detach();
  return t;
}

}  // namespace ds
