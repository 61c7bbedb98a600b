// Shared by the mains: SIGINT/SIGTERM (and, when asked for, SIGHUP) handling by a dedicated
// sigwait thread.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <functional>
#include <thread>

namespace ds {

// Blocks SIGINT/SIGTERM in the calling thread (call first in main, before any thread starts, so
// every thread inherits the mask) and returns a thread that runs `on_signal` on the first one.
// With `on_hangup`, SIGHUP is blocked too and runs `on_hangup` (on that thread) each time it
// arrives, until the first SIGINT/SIGTERM; without it SIGHUP keeps its default action.
inline std::thread StartSignalThread(std::function<void()> on_signal,
                                     std::function<void()> on_hangup = nullptr) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  if (on_hangup) sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread t([set, on_signal, on_hangup] {
    int sig = 0;
    while (sigwait(&set, &sig) == 0 && sig == SIGHUP) on_hangup();
    on_signal();
  });
  t.detach();
  return t;
}

}  // namespace ds
