// The agent's calls to the server during a run, behind one interface: the run's parts are
// unit-tested against a fake (job_run_test.cc), the agent uses HttpAgentServer. Internal to
// src/agent.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "http/http_client.h"
#include "protocol/messages.h"

namespace ds {

// Tries of a call while the server cannot be reached, by default (a brief blip).
inline constexpr int kServerAttempts = 4;
// Manifest entries in one compare request at most.
inline constexpr size_t kCompareBatch = 5'000;
// Results in one `complete` request at most.
inline constexpr size_t kCompleteBatch = 1'000;

// One session with the server. Not thread-safe: one thread at a time (a run makes one session
// per thread that calls the server, with its AgentServerFactory).
// Every call returns Unavailable, DeadlineExceeded or Cancelled when the server could not be
// reached (Unreachable()), else the server's answer or its error with its canonical code.
class AgentServer {
 public:
  virtual ~AgentServer() = default;
  // POST /agent/jobs/{job}/compare; `attempts` tries while the server cannot be reached.
  [[nodiscard]] virtual absl::StatusOr<protocol::CompareResponse> Compare(
      const std::string& job, const protocol::CompareRequest& request, int attempts) = 0;
  // POST /agent/runs/{run}/complete.
  [[nodiscard]] virtual absl::StatusOr<protocol::CompleteResponse> Complete(
      const std::string& run_id, const protocol::CompleteRequest& request) = 0;
  // POST /agent/runs/{run}/grant: a fresh write grant for one planned file.
  [[nodiscard]] virtual absl::StatusOr<protocol::GrantResponse> Grant(
      const std::string& run_id, const protocol::GrantRequest& request) = 0;
};

// Makes another session (for another thread). May be empty: then a run does what needs no
// second session (no copying while scanning, no renewing of an expired write grant).
using AgentServerFactory = std::function<std::unique_ptr<AgentServer>()>;

// A session made on first use, so that a cycle with nothing to say makes none. Not thread-safe.
class LazySession {
 public:
  // REQUIRES: `connect` outlives this.
  explicit LazySession(const AgentServerFactory& connect) : connect_(connect) {}
  // Null when the factory is empty.
  [[nodiscard]] AgentServer* get() {
    if (!session_ && connect_) session_ = connect_();
    return session_.get();
  }
  // A session was made (get() returned one).
  [[nodiscard]] bool made() const { return session_ != nullptr; }

 private:
  const AgentServerFactory& connect_;
  std::unique_ptr<AgentServer> session_;
};

// The server reached over HTTP with `client` (carrying the agent's API key). Transport failures
// and 503 are retried with backoff (300 ms, then ×3) up to the call's attempts, unless `stop` is
// set. `client` is not owned and must outlive the session.
[[nodiscard]] std::unique_ptr<AgentServer> HttpAgentServer(http::Client* client,
                                                           const std::atomic<bool>* stop);
// The same, owning its client.
[[nodiscard]] std::unique_ptr<AgentServer> HttpAgentServer(std::unique_ptr<http::Client> client,
                                                           const std::atomic<bool>* stop);

// The server could not be reached at all (as opposed to answering with an error).
[[nodiscard]] bool Unreachable(const absl::Status& status);

// Sends `results` in requests of at most kCompleteBatch; the last carries `final` (with
// `interrupted` and the run's `error`). Returns the run's state as the server last gave it.
// (Cut short, the accepted batches are sent again later: the server takes a result it already
// has as the same result.)
[[nodiscard]] absl::StatusOr<std::string> ReportResults(
    AgentServer* server, const std::string& run_id,
    const std::vector<protocol::FileResult>& results, bool final, bool interrupted,
    const std::string& error);

}  // namespace ds
