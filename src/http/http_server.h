// The HTTP/1.1 server (Boost.Beast inside http_server.cc only). Asio io threads do the network
// I/O; every request is handed to a worker pool, where handlers may block (database work).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
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
  std::chrono::seconds idle_timeout{75};  // keep-alive connections idle longer are closed
  // Requests for which this returns true (e.g. a fleet's heartbeats) run on their own
  // `priority_threads` workers, so they never queue behind slow requests on the others. Called on
  // an io thread for every request: must be quick. Unset: one pool for all.
  std::function<bool(const Request&)> is_priority;
  int priority_threads = 2;
};

class Server {
 public:
  virtual ~Server() = default;
  virtual uint16_t port() const = 0;
  // Stops accepting, closes connections, joins all threads. Idempotent.
  virtual void Stop() = 0;
};

// Binds and starts serving. Unavailable when the address cannot be bound.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Server>> StartServer(const ServerOptions& options,
                                                                  Handler handler);

}  // namespace ds::http
