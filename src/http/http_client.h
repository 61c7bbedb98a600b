// The one HTTP client wrapper (libcurl): agent → server, CLI → server, and later Azure Blob.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace ds::http {

struct ClientOptions {
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds timeout{120'000};  // whole request
  std::string ca_file;                          // extra CA bundle for a private PKI; "" = system
  std::string user_agent = "datasync";
  const std::atomic<bool>* cancel = nullptr;    // when set, in-flight requests abort (Cancelled)
};

struct ClientResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names lowercased
};

// Not thread-safe: use one instance per thread. Reuses its connection between calls.
class Client {
 public:
  Client(std::string base_url, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Adds a header sent with every request (e.g. Authorization). Values are never logged.
  void SetDefaultHeader(const std::string& name, const std::string& value);

  // `target` is appended to the base URL ("/api/v1/..."). Unavailable on transport failure
  // (connection refused, DNS, TLS, timeout → DeadlineExceeded); any HTTP status is returned as a
  // response, not an error. `timeout` overrides options.timeout when > 0.
  [[nodiscard]] absl::StatusOr<ClientResponse> Do(
      const std::string& method, const std::string& target, const std::string& body = "",
      const std::vector<std::pair<std::string, std::string>>& headers = {},
      std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

  const std::string& base_url() const { return base_url_; }

 private:
  struct Impl;
  std::string base_url_;
  ClientOptions options_;
  std::vector<std::pair<std::string, std::string>> default_headers_;
  std::unique_ptr<Impl> impl_;
};

// OK for 2xx; otherwise the canonical status for the HTTP status with the problem+json `detail`
// (or the raw body, truncated) as message.
absl::Status StatusFromResponse(const ClientResponse& response);

}  // namespace ds::http
