// Stop requests from outside: SIGINT/SIGTERM (and SIGHUP as reload) on POSIX; console Ctrl+C
// and the service control manager's stop on Windows.
#pragma once

#include <functional>
#include <memory>

namespace ds::platform {

// Runs callbacks on a dedicated thread when the process is asked to stop or to reload.
class StopHandler {
 public:
  virtual ~StopHandler() = default;

  // Installs the handler. Call first in main, before any other thread starts (POSIX: the signals
  // are blocked in the calling thread and so in every thread it starts later). `on_stop` runs
  // once, on the handler's thread, at the first stop request; later requests are ignored. With
  // `on_reload`, SIGHUP runs it each time until the stop request (Windows: never); without it
  // SIGHUP keeps its default action. At most one StopHandler per process; the returned object
  // may be dropped: the handler stays installed for the life of the process.
  static std::shared_ptr<StopHandler> Install(std::function<void()> on_stop,
                                              std::function<void()> on_reload = nullptr);

  // True once a stop was requested (from outside or by RequestStop).
  virtual bool stop_requested() const = 0;

  // Requests a stop as if from outside (a Windows service's stop; tests): `on_stop` runs on the
  // handler's thread as for a signal.
  virtual void RequestStop() = 0;
};

}  // namespace ds::platform
