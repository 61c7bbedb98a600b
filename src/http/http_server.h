// The HTTP/1.1 server (Boost.Beast inside http_server.cc only). Asio io threads do the network
// I/O; every request is handed to a worker pool, where handlers may block (database work).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "http/http_types.h"

namespace ds::http {

// Sends the response for one request. Call exactly once, from any thread, at any later time
// (long-poll handlers keep it and answer when an event arrives or their deadline passes).
using Responder = std::function<void(Response)>;
using Handler = std::function<void(Request request, Responder respond)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;                      // 0 = pick a free port
  int io_threads = 2;
  int worker_threads = 8;
  size_t max_body_bytes = 32 << 20;       // bytes; larger bodies get 413
  // The body limit of one request, chosen once its header is read (e.g. small for callers
  // without credentials); capped at max_body_bytes. A larger declared body gets 413 before any
  // of it is read. Called on an io thread for every request: must be quick. Unset:
  // max_body_bytes for every request.
  std::function<size_t(const RequestHead&)> body_limit_for;
  std::chrono::seconds idle_timeout{75};  // keep-alive connections idle longer are closed
  // Requests for which this returns true (e.g. a fleet's heartbeats) run on their own
  // `priority_threads` workers, so they never queue behind slow requests on the others. Called on
  // an io thread for every request: must be quick. Unset: one pool for all.
  std::function<bool(const Request&)> is_priority;
  int priority_threads = 2;
  // HTTPS: PEM files of the certificate chain and its private key. Both empty: plain HTTP.
  // Server::ReloadTls() reads them again.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Strict-Transport-Security value sent on every HTTPS response; "" = none.
  std::string hsts = "max-age=31536000";
};

class Server {
 public:
  virtual ~Server() = default;
  virtual uint16_t port() const = 0;
  // True when serving HTTPS (ServerOptions::tls_cert_file was given).
  virtual bool tls() const = 0;
  // Reads the certificate and key files again: connections accepted from now on use them, open
  // ones keep the certificate they started with. On error (unreadable files, a key that does not
  // match) the previous certificate stays in use. FailedPrecondition on a plain-HTTP server.
  // Thread-safe.
  [[nodiscard]] virtual absl::Status ReloadTls() = 0;
  // Stops accepting, closes connections, joins all threads. Idempotent.
  virtual void Stop() = 0;
};

// What the accept loop does after accept() fails (EMFILE, ENFILE, ENOBUFS, ...): it pauses,
// 50 ms doubling to 1 s, instead of retrying at once (the listening socket stays readable, so an
// immediate retry spins at full CPU), and logs at most one line per second with the number of
// failures since the previous line. Not thread-safe: the accept loop is one chain of handlers.
class AcceptBackoff {
 public:
  static constexpr std::chrono::milliseconds kFirstPause{50};
  static constexpr std::chrono::milliseconds kMaxPause{1000};
  static constexpr std::chrono::milliseconds kLogInterval{1000};

  struct Decision {
    std::chrono::milliseconds pause;  // before the next accept
    std::optional<std::string> log;   // a line to log now, if any
  };
  // Records a failure with `error` (e.g. "Too many open files") at `now`.
  Decision Failed(const std::string& error, std::chrono::steady_clock::time_point now);
  // An accept succeeded: the next failure pauses kFirstPause again.
  void Succeeded();

 private:
  std::chrono::milliseconds next_pause_ = kFirstPause;
  std::optional<std::chrono::steady_clock::time_point> last_log_;
  int64_t unlogged_ = 0;  // failures since the last line
};

// Binds and starts serving. Unavailable when the address cannot be bound; InvalidArgument when
// the TLS certificate or key cannot be loaded.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Server>> StartServer(const ServerOptions& options,
                                                                  Handler handler);

}  // namespace ds::http
