#include "platform/stop.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <thread>
#include <utility>

namespace ds::platform {
namespace {

// POSIX: one detached thread sigwait()s for SIGINT/SIGTERM (and SIGHUP with a reload callback).
class SignalStopHandler final : public StopHandler,
                                public std::enable_shared_from_this<SignalStopHandler> {
 public:
  SignalStopHandler(std::function<void()> on_stop, std::function<void()> on_reload)
      : on_stop_(std::move(on_stop)), on_reload_(std::move(on_reload)) {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    if (on_reload_) sigaddset(&set_, SIGHUP);
  }

  // Blocks the signals here and starts the waiting thread (which keeps *this alive).
  void Start() {
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    std::thread([self = shared_from_this()] { self->Wait(); }).detach();
  }

  bool stop_requested() const override { return stopped_.load(); }

  // Wakes the waiting thread with a SIGTERM aimed at it alone.
  void RequestStop() override {
    if (stop_asked_.exchange(true)) return;
    pthread_t t = thread_.load();
    if (t != pthread_t{}) pthread_kill(t, SIGTERM);
  }

 private:
  void Wait() {
    thread_.store(pthread_self());
    int sig = 0;
    while (!stop_asked_.load() && sigwait(&set_, &sig) == 0 && sig == SIGHUP) on_reload_();
    stopped_.store(true);
    on_stop_();
    // Stays, swallowing later requests: RequestStop may still signal this thread safely.
    for (;;) sigwait(&set_, &sig);
  }

  const std::function<void()> on_stop_;
  const std::function<void()> on_reload_;
  sigset_t set_;
  std::atomic<pthread_t> thread_{};
  std::atomic<bool> stop_asked_{false};
  std::atomic<bool> stopped_{false};
};

}  // namespace

std::shared_ptr<StopHandler> StopHandler::Install(std::function<void()> on_stop,
                                                  std::function<void()> on_reload) {
  auto handler = std::make_shared<SignalStopHandler>(std::move(on_stop), std::move(on_reload));
  handler->Start();
  return handler;
}

}  // namespace ds::platform
