#include "agent/server_api.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/time_util.h"
#include "http/http_types.h"

namespace ds {
namespace {

class HttpServer final : public AgentServer {
 public:
  HttpServer(http::Client* client, std::unique_ptr<http::Client> owned,
             const std::atomic<bool>* stop)
      : client_(client), owned_(std::move(owned)), stop_(stop) {}

  absl::StatusOr<protocol::CompareResponse> Compare(const std::string& job,
                                                    const protocol::CompareRequest& request,
                                                    int attempts) override {
    return Post<protocol::CompareResponse>(
        absl::StrCat("/api/v1/agent/jobs/", http::PercentEncode(job), "/compare"),
        protocol::Encode(request), request.run_id, attempts);
  }
  absl::StatusOr<protocol::CompleteResponse> Complete(
      const std::string& run_id, const protocol::CompleteRequest& request) override {
    return Post<protocol::CompleteResponse>(
        absl::StrCat("/api/v1/agent/runs/", run_id, "/complete"), protocol::Encode(request), run_id,
        kServerAttempts);
  }
  absl::StatusOr<protocol::GrantResponse> Grant(const std::string& run_id,
                                                const protocol::GrantRequest& request) override {
    return Post<protocol::GrantResponse>(absl::StrCat("/api/v1/agent/runs/", run_id, "/grant"),
                                         protocol::Encode(request), run_id, kServerAttempts);
  }

 private:
  // POSTs `body` and decodes T. HTTP errors return at once with their canonical code.
  template <typename T>
  absl::StatusOr<T> Post(const std::string& target, const std::string& body,
                         const std::string& run_id, int attempts) {
    std::chrono::milliseconds delay(300);
    for (int attempt = 1;; ++attempt) {
      auto resp = client_->Do("POST", target, body, {{"X-Correlation-Id", run_id}});
      absl::Status st = resp.ok() ? http::StatusFromResponse(*resp) : resp.status();
      if (st.ok()) return protocol::Decode<T>(resp->body);
      if (!Unreachable(st) || attempt >= attempts || (stop_ != nullptr && stop_->load())) {
        return st;
      }
      spdlog::warn("run={} POST {} failed ({}); retrying in {}", run_id, target, st.message(),
                   FormatDuration(delay));
      std::this_thread::sleep_for(delay);
      delay *= 3;
    }
  }

  http::Client* const client_;
  const std::unique_ptr<http::Client> owned_;  // null when client_ is not owned
  const std::atomic<bool>* const stop_;
};

}  // namespace

std::unique_ptr<AgentServer> HttpAgentServer(http::Client* client, const std::atomic<bool>* stop) {
  return std::make_unique<HttpServer>(client, nullptr, stop);
}

std::unique_ptr<AgentServer> HttpAgentServer(std::unique_ptr<http::Client> client,
                                             const std::atomic<bool>* stop) {
  http::Client* raw = client.get();
  return std::make_unique<HttpServer>(raw, std::move(client), stop);
}

bool Unreachable(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status) ||
         absl::IsCancelled(status);
}

absl::StatusOr<std::string> ReportResults(AgentServer* server, const std::string& run_id,
                                          const std::vector<protocol::FileResult>& results,
                                          bool final, bool interrupted, const std::string& error) {
  std::string state;
  size_t off = 0;
  do {
    protocol::CompleteRequest req;
    const size_t end = std::min(results.size(), off + kCompleteBatch);
    req.results.assign(results.begin() + static_cast<long>(off),
                       results.begin() + static_cast<long>(end));
    req.final = final && end == results.size();
    req.interrupted = req.final && interrupted;
    if (req.final) req.error = error;
    DS_ASSIGN_OR_RETURN(protocol::CompleteResponse resp, server->Complete(run_id, req));
    state = std::move(resp.run_state);
    off = end;
  } while (off < results.size());
  return state;
}

}  // namespace ds
